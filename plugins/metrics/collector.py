"""aribot's Prometheus metrics, in a private registry per App: counters and histograms fed by bus
events, and the figures that live on live ``Call`` objects (pacing error, dropped RTP packets,
pacer slips) harvested from them every few seconds, at each scrape and when a call ends."""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from collections import Counter as Tally
from dataclasses import dataclass, field
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from aribot.core import events as ev

log = logging.getLogger("aribot.metrics")
OWNER = "metrics"          # owner of the bus subscriptions (the plugin's name)
HARVEST_EVERY_S = 5.0      # live calls' samples are folded in this often (and at each scrape)
LABEL_VALUES_MAX = 50      # distinct values kept per label; later ones are counted as "other"

TURN_LATENCY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)
PACING_ERROR_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02)
TOOL_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
CONNECT_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
CALL_DURATION_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
CALL_COST_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class BoundedLabel:
    """Keeps a label's cardinality bounded: the first ``limit`` distinct values, then "other"."""

    def __init__(self, limit: int = LABEL_VALUES_MAX) -> None:
        self.limit = limit
        self.seen: set[str] = set()

    def __call__(self, value: str) -> str:
        value = value or "unknown"
        if value in self.seen:
            return value
        if len(self.seen) >= self.limit:
            return "other"
        self.seen.add(value)
        return value


def end_reason_label(reason: str) -> str:
    """The reason's kind only: ``end_call: caller is done`` → ``end_call`` (free text stays out)."""
    return reason.split(":", 1)[0].strip()


@dataclass
class _Tracked:
    """How much of one call's per-call figures has been counted already."""

    call: Any
    pacing_seen: int = 0
    slips_seen: int = 0
    dropped_seen: Tally[str] = field(default_factory=Tally)


class BulkHistogram:
    """A Prometheus histogram whose counts aribot keeps itself, for figures that come in bulk:
    the pacing error of every RTP frame of every live call, folded in every few seconds. The
    client library's Histogram.observe() takes a lock and runs Python per value; at 300 calls one
    harvest was ~20 000 calls of it, a stall of the event loop that paces RTP (the capacity
    benchmark's pacing p99 at 300 calls: 3.9-4.2 ms with the old way, 0.83 ms with the metrics
    plugin off). Here a value costs one C bisect, and the harvest yields between calls."""

    def __init__(self, name: str, documentation: str, bounds: tuple[float, ...]) -> None:
        self.name, self.documentation, self.bounds = name, documentation, tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last: above every bound (+Inf only)
        self.sum = 0.0

    def observe_many(self, values: list[float]) -> None:
        bounds, counts = self.bounds, self.counts
        for value in values:
            counts[bisect_left(bounds, value)] += 1  # le is inclusive: the first bound >= value
        self.sum += sum(values)

    def family(self) -> HistogramMetricFamily:
        buckets, total = [], 0
        for bound, count in zip(self.bounds, self.counts):
            total += count
            buckets.append((floatToGoString(bound), total))
        buckets.append(("+Inf", total + self.counts[-1]))
        return HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=self.sum)


class AribotMetrics:
    """The metrics of one App. ``registry`` is private to it (other plugins may register their
    own collectors there: ``app.extensions["metrics"].registry``)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.registry = CollectorRegistry()
        self._tracked: dict[str, _Tracked] = {}
        self._usage_seconds: dict[str, float] = {}   # call id → the seconds its backend reported so far
        self._cost: dict[str, float] = {}            # call id → its cost so far (the cost plugin's CostUpdated)
        self._reason, self._drop, self._code = BoundedLabel(), BoundedLabel(), BoundedLabel()
        self._status, self._tool, self._rollover = BoundedLabel(), BoundedLabel(), BoundedLabel()
        self._backend = BoundedLabel()
        self._harvester: asyncio.Task[None] | None = None
        m = dict(registry=None)  # yielded by collect() below, after a harvest
        self.calls_started = Counter("aribot_calls_started", "Calls that entered aribot's Stasis app.", **m)
        self.calls_ended = Counter("aribot_calls_ended", "Calls that ended, by end reason (its kind, before any ':').",
                                   ["reason"], **m)
        self.call_duration = Histogram("aribot_call_duration_seconds", "Call duration from StasisStart to cleanup.",
                                       buckets=CALL_DURATION_BUCKETS, **m)
        self.turn_latency = Histogram("aribot_turn_latency_seconds", "Per turn: the caller stopped speaking "
                                      "(Realtime speech_stopped) to the first RTP frame of the AI's answer.",
                                      buckets=TURN_LATENCY_BUCKETS, **m)
        self.pacing_error = BulkHistogram("aribot_pacing_error_seconds", "How late each outgoing RTP frame was "
                                          "sent after its absolute 20 ms deadline.", PACING_ERROR_BUCKETS)
        self.pacing_slips = Counter("aribot_pacing_slips", "Times a call's pacer fell more than 3 frames behind "
                                    "and re-anchored its clock.", **m)
        self.rtp_dropped = Counter("aribot_rtp_dropped_packets", "Incoming RTP packets dropped, by reason.",
                                   ["reason"], **m)
        self.ai_connect = Histogram("aribot_ai_connect_seconds", "A call's speech backend session: connect to "
                                    "configured.", buckets=CONNECT_BUCKETS, **m)
        self.ai_reconnects = Counter("aribot_ai_reconnects", "New AI sessions that took over mid-call, by why "
                                     "(closed_<code>, expired, max_session_s …).", ["reason"], **m)
        self.ai_reconnect_gap = Histogram("aribot_ai_reconnect_gap_seconds", "From the old AI session's end to the "
                                          "new one being ready.", buckets=CONNECT_BUCKETS, **m)
        self.ai_errors = Counter("aribot_ai_errors", "Errors the speech backend reported and connection failures, "
                                 "by code.", ["code", "fatal"], **m)
        self.ai_seconds = Counter("aribot_ai_session_seconds", "Session time the speech service counted (services "
                                  "billed by time).", **m)
        self.responses = Counter("aribot_responses", "AI responses finished, by status.", ["status"], **m)
        self.barge_ins = Counter("aribot_barge_ins", "Times a caller interrupted the AI.", **m)
        self.tool_duration = Histogram("aribot_tool_duration_seconds", "Function tool run time, by tool.", ["tool"],
                                       buckets=TOOL_DURATION_BUCKETS, **m)
        self.tool_errors = Counter("aribot_tool_errors", "Function tool runs that failed, by tool.", ["tool"], **m)
        self.tokens = Counter("aribot_tokens", "AI tokens used (services billed by tokens), by direction and modality.",
                              ["direction", "modality"], **m)
        self.cached_tokens = Counter("aribot_cached_input_tokens", "Input tokens served from the service's cache "
                                     "(part of aribot_tokens_total{direction=\"input\"}).", **m)
        self.cost = Counter("aribot_cost_usd", "AI service cost in USD by the [cost] prices (the cost plugin), by "
                            "speech backend.", ["backend"], **m)
        self.call_cost = Histogram("aribot_call_cost_usd", "A call's AI service cost in USD, observed when a metered "
                                   "call ends.", buckets=CALL_COST_BUCKETS, **m)
        for direction in ("input", "output"):
            for modality in ("text", "audio"):
                self.tokens.labels(direction, modality)
        self._metrics = [value for value in vars(self).values() if isinstance(value, (Counter, Histogram))]
        self.registry.register(self)

    # --- life -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Subscribe to the bus and start the periodic harvest of live calls."""
        subscribe = self.app.bus.subscribe
        for event_type, receiver in ((ev.CallStarted, self._on_started), (ev.CallEnded, self._on_ended),
                                     (ev.BotAudioStarted, self._on_bot_audio), (ev.BackendReady, self._on_ready),
                                     (ev.BackendError, self._on_backend_error),
                                     (ev.ResponseDone, self._on_response_done),
                                     (ev.BargeIn, lambda e: self.barge_ins.inc()),
                                     (ev.ToolFinished, self._on_tool_finished)):
            subscribe(event_type, receiver, owner=OWNER)
        subscribe(ev.BackendRollover, self._on_rollover, owner=OWNER)
        subscribe(ev.UsageUpdated, self._on_usage, owner=OWNER)
        subscribe(ev.CostUpdated, self._on_cost, owner=OWNER)
        self._harvester = asyncio.create_task(self._harvest_periodically(), name="metrics-harvest")

    def stop(self) -> None:
        self.app.bus.disconnect_owner(OWNER)
        if self._harvester is not None:
            self._harvester.cancel()
            self._harvester = None

    async def _harvest_periodically(self) -> None:
        while True:
            await asyncio.sleep(HARVEST_EVERY_S)
            try:
                self._track_new()
                for call_id, tracked in list(self._tracked.items()):  # a call per loop step: RTP goes on
                    self._harvest_tracked(call_id, tracked)
                    await asyncio.sleep(0)
            except Exception:
                log.exception("metrics: harvesting live calls failed; next try in %.0f s", HARVEST_EVERY_S)

    # --- Collector --------------------------------------------------------------------------------
    def describe(self) -> Iterator[Metric]:
        """Every name this collector exposes (the registry refuses another collector's clash)."""
        yield from self._read_at_scrape()
        yield self.pacing_error.family()
        for metric in self._metrics:
            yield from metric.describe()

    def collect(self) -> Iterator[Metric]:
        self.harvest()
        yield from self._read_at_scrape()
        yield self.pacing_error.family()
        for metric in self._metrics:
            yield from metric.collect()

    def _read_at_scrape(self) -> Iterator[Metric]:
        served = sum(1 for call in self.app.calls.values() if not getattr(call, "overflow", False))
        yield GaugeMetricFamily("aribot_calls_live", "Calls being served now (not those refused for capacity).",
                                value=served)
        yield GaugeMetricFamily("aribot_ari_connected", "1 while the ARI event WebSocket is connected.",
                                value=1 if self.app.ari_connected else 0)
        yield GaugeMetricFamily("aribot_draining", "1 while aribot stops taking new calls (shutting down).",
                                value=1 if self.app.draining else 0)
        yield CounterMetricFamily("aribot_event_receiver_errors", "Bus event receivers (plugins) that raised.",
                                  value=self.app.bus.receiver_errors)

    # --- per-call figures read from live Call objects -----------------------------------------------
    def harvest(self) -> None:
        """Fold in what live calls measured since the last harvest (all at once: at a scrape)."""
        self._track_new()
        for call_id, tracked in list(self._tracked.items()):
            self._harvest_tracked(call_id, tracked)

    def _track_new(self) -> None:
        for call_id, call in list(self.app.calls.items()):
            if call_id not in self._tracked:
                self._tracked[call_id] = _Tracked(call)

    def _harvest_tracked(self, call_id: str, tracked: _Tracked) -> None:
        self._harvest_call(tracked)
        if call_id not in self.app.calls and tracked.call.done.is_set():
            self._tracked.pop(call_id, None)  # its CallEnded was missed (plugin enabled meanwhile)

    def _harvest_call(self, tracked: _Tracked) -> None:
        call = tracked.call
        lateness = call.metrics.pacing_lateness
        # a tick a hair early counts as on time
        self.pacing_error.observe_many([max(0.0, value_ms) / 1000 for value_ms in lateness.since(tracked.pacing_seen)])
        tracked.pacing_seen = lateness.count
        if (slips := call.metrics.pacing_slips) > tracked.slips_seen:
            self.pacing_slips.inc(slips - tracked.slips_seen)
            tracked.slips_seen = slips
        for reason, count in call.endpoint.dropped.items():
            if count > tracked.dropped_seen[reason]:
                self.rtp_dropped.labels(self._drop(reason)).inc(count - tracked.dropped_seen[reason])
                tracked.dropped_seen[reason] = count

    # --- bus receivers ----------------------------------------------------------------------------
    def _on_started(self, event: ev.CallStarted) -> None:
        self.calls_started.inc()
        call = self.app.calls.get(event.call_id)
        if call is not None and event.call_id not in self._tracked:
            self._tracked[event.call_id] = _Tracked(call)

    def _on_ended(self, event: ev.CallEnded) -> None:
        self._usage_seconds.pop(event.call_id, None)
        cost = self._cost.pop(event.call_id, None)
        if cost is not None:
            self.call_cost.observe(cost)
        self.calls_ended.labels(self._reason(end_reason_label(event.reason))).inc()
        self.call_duration.observe(max(0.0, event.duration_s))
        tracked = self._tracked.pop(event.call_id, None)
        if tracked is not None:
            self._harvest_call(tracked)
            return
        for reason, count in (event.stats.get("rtp_dropped") or {}).items():  # a call never seen live
            if count:
                self.rtp_dropped.labels(self._drop(str(reason))).inc(count)

    def _on_bot_audio(self, event: ev.BotAudioStarted) -> None:
        if event.latency_ms is not None:
            self.turn_latency.observe(max(0.0, event.latency_ms) / 1000)

    def _on_ready(self, event: ev.BackendReady) -> None:
        self.ai_connect.observe(max(0.0, event.connect_ms) / 1000)

    def _on_rollover(self, event: ev.BackendRollover) -> None:
        self.ai_reconnects.labels(self._rollover(str(event.reason))).inc()
        self.ai_reconnect_gap.observe(max(0.0, float(event.gap_ms)) / 1000)

    def _on_backend_error(self, event: ev.BackendError) -> None:
        self.ai_errors.labels(self._code(event.code), "true" if event.fatal else "false").inc()

    def _on_usage(self, event: ev.UsageUpdated) -> None:
        """Seconds are cumulative per call: only what grew since the call's last report is added;
        tokens are one more answer's."""
        if event.tokens:
            self._count_tokens(event.tokens)
        if event.seconds is None:
            return
        last = self._usage_seconds.get(event.call_id, 0.0)
        if event.seconds > last:
            self.ai_seconds.inc(event.seconds - last)
            self._usage_seconds[event.call_id] = event.seconds

    def _on_cost(self, event: ev.CostUpdated) -> None:
        """``usd`` is the call's total so far: only what it grew by is added."""
        usd = float(event.usd)
        last = self._cost.get(event.call_id, 0.0)
        self._cost[event.call_id] = max(usd, last)
        if usd > last:
            self.cost.labels(self._backend(event.backend)).inc(usd - last)

    def _on_response_done(self, event: ev.ResponseDone) -> None:
        self.responses.labels(self._status(event.status)).inc()
        if event.usage:
            self._count_tokens(event.usage)

    def _count_tokens(self, usage: dict[str, Any]) -> None:
        for direction in ("input", "output"):
            details = usage.get(f"{direction}_token_details") or {}
            parts = {m: int(details.get(f"{m}_tokens") or 0) for m in ("text", "audio", "image")}
            for modality, count in parts.items():
                if count > 0:
                    self.tokens.labels(direction, modality).inc(count)
            rest = int(usage.get(f"{direction}_tokens") or 0) - sum(parts.values())
            if rest > 0:  # a total without (complete) details
                self.tokens.labels(direction, "other").inc(rest)
        cached = int((usage.get("input_token_details") or {}).get("cached_tokens") or 0)
        if cached > 0:
            self.cached_tokens.inc(cached)

    def _on_tool_finished(self, event: ev.ToolFinished) -> None:
        known = set(self.app.tools.tools) | set(self.app.settings.tools.manual or ())
        tool = self._tool(event.tool if event.tool in known else "unknown")
        self.tool_duration.labels(tool).observe(max(0.0, event.duration_ms) / 1000)
        if event.error:
            self.tool_errors.labels(tool).inc()
