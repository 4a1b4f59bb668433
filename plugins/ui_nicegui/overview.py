"""The dashboard's home page: today's figures at a glance (tiles and two charts) above the live calls.

``DayStats`` counts today (local midnight to now; it starts again at midnight) from bus events,
with cheap synchronous receivers, and is seeded at start-up from the call history, so a restart
does not zero the day. Nothing here asks Asterisk. Memory stays bounded on a busy day (100k
calls, 1M turns): counts, 24 hourly buckets and latency histograms, never one entry per call
or turn (only the live calls are kept one by one).

Response latency is ``BotAudioStarted.latency_ms`` (the caller stopped talking → the first AI
audio sent). It is kept in histograms of buckets of 1 ms below 1 s, 10 ms below 10 s, 100 ms below
100 s (and one bucket for anything longer): at most ~2,800 buckets a histogram, so a median or
p95 (nearest rank) is off by at most half a bucket (0.5 ms, 5 ms, 50 ms; ≤ 0.5 %). After a
restart the history's latencies come rounded to whole ms, then bucketed the same way.

How a call ends (``CallEnded.reason``; a reason's kind is what comes before a ":") counts as
one of:

* **transferred**: ``transfer`` (the transfer_call tool), ``operator_transfer`` (the dashboard),
  any kind starting with either, and ``dtmf`` (the DTMF "dialplan" handler: the caller is sent on
  in the dialplan);
* **failed**: aribot could not serve the call: ``answer_failed``, ``media_setup_failed``,
  ``media_leg_lost``, ``internal_error``, ``ai_failed``, ``ai_unavailable``, ``ai_closed``,
  ``asterisk_restarted``, ``crashed`` (found open after a crash), ``overload`` (refused beyond
  ``[call] max_concurrent``), and any kind starting with ``failed`` or ending in ``_failed``,
  ``_error`` or ``_refused``;
* **answered**: any other reason of a call that was answered (``caller_hangup``, ``end_call``,
  ``tool``, ``operator_hangup``, ``no_input``, ``max_duration``, ``max_cost``, ``shutdown`` …);
* **abandoned**: any other reason of a call never answered (the caller hung up while it rang).

Calls, outcomes and cost count for the day the call started (a call that runs past midnight
belongs to the day before); latencies, barge-ins and tool calls for the moment they happen.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import time
from bisect import bisect_left
from collections import Counter, OrderedDict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import accumulate
from typing import Any, Callable

from nicegui import ui

from aribot.core import events as ev

log = logging.getLogger("aribot.ui")
EXTENSION = "day_stats"     # app.extensions key of the running DayStats
OWNER = "ui_nicegui"        # bus owner: unplugged with the dashboard plugin
SEED_WAIT_S = 30.0          # how long start-up seeding waits for the history plugin to open its store
KEEP_ENDED = 1000           # ended calls whose late cost updates still count
HOURS = [f"{hour:02d}:00" for hour in range(24)]

TRANSFERRED = ("transfer", "operator_transfer")
TRANSFERRED_KINDS = {"dtmf"}
FAILED_KINDS = {"answer_failed", "media_setup_failed", "media_leg_lost", "internal_error", "ai_failed",
                "ai_unavailable", "ai_closed", "asterisk_restarted", "crashed", "overload"}
OUTCOMES = ("answered", "transferred", "failed", "abandoned")


def outcome(reason: str, answered: bool) -> str:
    """answered, transferred, failed or abandoned: how a call that ended for ``reason`` counts."""
    kind = (reason or "").split(":", 1)[0].strip().lower()
    if kind.startswith(TRANSFERRED) or kind in TRANSFERRED_KINDS:
        return "transferred"
    if kind in FAILED_KINDS or kind.startswith("failed") or kind.endswith(("_failed", "_error", "_refused")):
        return "failed"
    return "answered" if answered else "abandoned"


def bucket(ms: float) -> float:
    """The latency histogram's bucket of ``ms`` (see the module's docstring for the precision)."""
    ms = max(0.0, float(ms))
    if ms < 1000:
        return float(round(ms))
    if ms < 10_000:
        return float(round(ms, -1))
    if ms < 100_000:
        return float(round(ms, -2))
    return 100_000.0


def percentiles(histogram: Counter[float], *ps: float) -> list[float | None]:
    """Nearest-rank percentiles of a histogram (None when it is empty)."""
    values = sorted(histogram)
    running = list(accumulate(histogram[value] for value in values))
    if not running or not running[-1]:
        return [None] * len(ps)
    return [values[bisect_left(running, max(1, math.ceil(p / 100 * running[-1])))] for p in ps]


def day_bounds(now: float) -> tuple[float, float]:
    """Local midnight before ``now`` and the next one (a DST day is 23 or 25 hours long)."""
    today = date.fromtimestamp(now)
    start = datetime(today.year, today.month, today.day)
    return start.timestamp(), (start + timedelta(days=1)).timestamp()


def hour_of(ts: float) -> int:
    return time.localtime(ts).tm_hour


@dataclass
class _Call:
    started_at: float
    today: bool             # started today: counted in today's calls, outcomes and cost
    answered: bool = False
    cost: float = 0.0       # the latest cumulative CostUpdated.usd


@dataclass(frozen=True)
class Figures:
    """A snapshot of today's figures, for the page."""

    version: int
    live: int
    calls: int
    outcomes: dict[str, int]
    latency_p50: float | None
    latency_p95: float | None
    barge_ins: int
    tool_calls: int
    tool_errors: int
    cost_usd: float
    calls_per_hour: list[int]
    latency_p50_per_hour: list[float | None]
    latency_p95_per_hour: list[float | None]
    latencies: int = 0       # how many responses the latency figures are of
    seeded: bool = False     # today before aribot's start came from the history


class DayStats:
    """Today's figures from bus events (``on_event``) plus, once, the history (``seed``)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.live: dict[str, _Call] = {}
        self._ended: OrderedDict[str, _Call] = OrderedDict()
        self.version = 0
        self.listening_since = clock()   # events before this come from the history, after it from the bus
        self.seeded = False
        self.seeder: asyncio.Task[None] | None = None
        self._cached: Figures | None = None
        self._handlers: dict[type, Callable[[Any], None]] = {
            ev.CallStarted: self._started, ev.CallAnswered: self._answered, ev.CallEnded: self._ended_call,
            ev.BotAudioStarted: self._latency, ev.BargeIn: self._barge_in, ev.ToolCalled: self._tool_called,
            ev.ToolFinished: self._tool_finished, ev.CostUpdated: self._cost}
        self._reset(clock())

    @property
    def event_types(self) -> list[type]:
        """The event types this counts (subscribe to these only: no transcript deltas)."""
        return list(self._handlers)

    # --- the day ------------------------------------------------------------------------------
    def _reset(self, now: float) -> None:
        self.day_start, self.day_end = day_bounds(now)
        self.calls = 0
        self.calls_per_hour = [0] * 24
        self.outcomes: Counter[str] = Counter()
        self.latency: Counter[float] = Counter()
        self.latency_per_hour: list[Counter[float]] = [Counter() for _ in range(24)]
        self._hourly: list[list[float | None]] = [[None, None] for _ in range(24)]   # (p50, p95) by hour
        self._hours_changed: set[int] = set()   # whose percentiles are to be computed again
        self.barge_ins = self.tool_calls = self.tool_errors = 0
        self.cost_usd = 0.0
        for call in self.live.values():   # still live, but yesterday's
            call.today = False
        self._ended.clear()
        self.version += 1

    def roll(self) -> None:
        """Start a new day if local midnight has passed."""
        now = self._clock()
        if now >= self.day_end:
            self._reset(now)

    # --- bus receivers --------------------------------------------------------------------------
    def on_event(self, event: ev.Event) -> None:
        """Bus receiver: cheap, synchronous, ignores what it does not count."""
        handler = self._handlers.get(type(event))
        if handler is not None:
            self.roll()
            handler(event)

    def _started(self, event: ev.CallStarted) -> None:
        today = event.ts >= self.day_start
        self.live[event.call_id] = _Call(event.ts, today)
        if today:
            self.calls += 1
            self.calls_per_hour[hour_of(event.ts)] += 1
        self.version += 1

    def _answered(self, event: ev.CallAnswered) -> None:
        call = self.live.get(event.call_id)
        if call is not None:
            call.answered = True

    def _ended_call(self, event: ev.CallEnded) -> None:
        call = self.live.pop(event.call_id, None)
        if call is None:
            return   # started before DayStats listened: the history's seeding counts it
        if call.today:
            self.outcomes[outcome(event.reason, call.answered)] += 1
            self._ended[event.call_id] = call
            if len(self._ended) > KEEP_ENDED:
                self._ended.popitem(last=False)
        self.version += 1

    def _latency(self, event: ev.BotAudioStarted) -> None:
        if event.latency_ms is not None and event.ts >= self.day_start:
            self._add_latency(hour_of(event.ts), event.latency_ms, 1)
            self.version += 1

    def _add_latency(self, hour: int, ms: float, count: int) -> None:
        value = bucket(ms)
        self.latency[value] += count
        self.latency_per_hour[hour][value] += count
        self._hours_changed.add(hour)

    def _barge_in(self, event: ev.BargeIn) -> None:
        if event.ts >= self.day_start:
            self.barge_ins += 1
            self.version += 1

    def _tool_called(self, event: ev.ToolCalled) -> None:
        if event.ts >= self.day_start:
            self.tool_calls += 1
            self.version += 1

    def _tool_finished(self, event: ev.ToolFinished) -> None:
        if event.error and event.ts >= self.day_start:
            self.tool_errors += 1
            self.version += 1

    def _cost(self, event: ev.CostUpdated) -> None:
        call = self.live.get(event.call_id) or self._ended.get(event.call_id)
        if call is None or not call.today:
            return
        usd = float(event.usd)
        if usd != call.cost:   # cumulative: add what changed since its last update
            self.cost_usd += usd - call.cost
            call.cost = usd
            self.version += 1

    # --- the history ----------------------------------------------------------------------------
    def seed(self, summary: dict[str, Any]) -> None:
        """Add what ``HistoryStore.day_summary(day_start, listening_since)`` found of today."""
        for call_id, started_at, answered, end_reason, cost in summary.get("calls", ()):
            if started_at < self.day_start or call_id in self.live:
                continue
            self.calls += 1
            self.calls_per_hour[hour_of(started_at)] += 1
            self.cost_usd += float(cost or 0.0)
            if end_reason is None:   # live when the dashboard started (the plugin enabled mid-call)
                self.live[call_id] = _Call(started_at, True, bool(answered), float(cost or 0.0))
            else:
                self.outcomes[outcome(end_reason, bool(answered))] += 1
        for hour, ms, count in summary.get("latencies", ()):
            self._add_latency(int(hour) % 24, ms, int(count))
        self.barge_ins += int(summary.get("barge_ins", 0))
        self.tool_calls += int(summary.get("tool_calls", 0))
        self.tool_errors += int(summary.get("tool_errors", 0))
        self.seeded = True
        self.version += 1

    async def seed_from(self, store: Any) -> None:
        """Seed today from a HistoryStore (what it recorded before this DayStats listened)."""
        await store.flush()
        self.roll()
        since = self.day_start
        summary = await store.day_summary(since, self.listening_since)
        if since == self.day_start:   # (midnight did not pass meanwhile)
            self.seed(summary)

    async def seed_when_ready(self, app: Any, wait_s: float = SEED_WAIT_S, poll_s: float = 0.2) -> None:
        """Seed from the history plugin's store once it is open (plugins start in any order)."""
        deadline = time.monotonic() + wait_s
        while (store := app.extensions.get("history")) is None:
            if time.monotonic() >= deadline:
                log.info("overview: no call history to start today's figures from; they count from now")
                return
            await asyncio.sleep(poll_s)
        try:
            await self.seed_from(store)
        except (sqlite3.Error, RuntimeError) as exc:   # HistoryError is a RuntimeError
            log.warning("overview: could not read today's calls from the history (%s); figures count from now", exc)

    # --- figures ----------------------------------------------------------------------------------
    def figures(self) -> Figures:
        """Today's figures (computed again only when something changed)."""
        self.roll()
        if self._cached is not None and self._cached.version == self.version:
            return self._cached
        p50, p95 = percentiles(self.latency, 50, 95)
        for hour in self._hours_changed:   # mostly the current hour only: past hours keep theirs
            self._hourly[hour] = percentiles(self.latency_per_hour[hour], 50, 95)
        self._hours_changed.clear()
        hourly = self._hourly
        self._cached = Figures(
            version=self.version, live=len(self.live), calls=self.calls,
            outcomes={name: self.outcomes.get(name, 0) for name in OUTCOMES},
            latency_p50=p50, latency_p95=p95, barge_ins=self.barge_ins, tool_calls=self.tool_calls,
            tool_errors=self.tool_errors, cost_usd=round(self.cost_usd, 6), calls_per_hour=list(self.calls_per_hour),
            latency_p50_per_hour=[h[0] for h in hourly], latency_p95_per_hour=[h[1] for h in hourly],
            latencies=sum(self.latency.values()), seeded=self.seeded)
        return self._cached


def start_day_stats(app: Any) -> DayStats:
    """Count today from the bus (call from the plugin's startup) and seed it from the history."""
    stats = DayStats()
    for event_type in stats.event_types:
        app.bus.subscribe(event_type, stats.on_event, owner=OWNER)
    app.extensions[EXTENSION] = stats
    stats.seeder = asyncio.get_running_loop().create_task(stats.seed_when_ready(app), name="overview-seed")
    return stats


def stop_day_stats(app: Any) -> None:
    """Stop seeding (the plugin's shutdown); the bus receivers go with the plugin's owner."""
    stats = app.extensions.pop(EXTENSION, None)
    if stats is not None and stats.seeder is not None:
        stats.seeder.cancel()


# --- the page -------------------------------------------------------------------------------------
def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} ms"


TILES: list[tuple[str, str, Callable[[Figures], str]]] = [
    ("live", "Live calls", lambda f: str(f.live)),
    ("calls", "Calls today", lambda f: str(f.calls)),
    ("answered", "Answered", lambda f: str(f.outcomes["answered"])),
    ("transferred", "Transferred", lambda f: str(f.outcomes["transferred"])),
    ("failed", "Failed", lambda f: str(f.outcomes["failed"])),
    ("abandoned", "Hung up before answer", lambda f: str(f.outcomes["abandoned"])),
    ("latency-p50", "AI response, median", lambda f: _ms(f.latency_p50)),
    ("latency-p95", "AI response, p95", lambda f: _ms(f.latency_p95)),
    ("barge-ins", "Barge-ins", lambda f: str(f.barge_ins)),
    ("tools", "Tool calls", lambda f: str(f.tool_calls)),
    ("tool-errors", "Tool errors", lambda f: str(f.tool_errors)),
    ("cost", "AI cost today", lambda f: f"${f.cost_usd:.4f}" if f.cost_usd < 1 else f"${f.cost_usd:,.2f}"),
]


def calls_chart(figures: Figures) -> dict[str, Any]:
    """The echart options of today's calls per hour."""
    return {"animation": False,   # a redraw animates nothing: the page stays cheap with 50 calls live
            "title": {"text": "Calls per hour", "textStyle": {"fontSize": 14}},
            "tooltip": {"trigger": "axis"}, "grid": {"left": 40, "right": 16, "bottom": 24},
            "xAxis": {"type": "category", "data": HOURS}, "yAxis": {"type": "value", "minInterval": 1},
            "series": [{"name": "calls", "type": "bar", "data": list(figures.calls_per_hour)}]}


def latency_chart(figures: Figures) -> dict[str, Any]:
    """The echart options of today's AI response latency per hour (median and p95, ms)."""
    return {"animation": False,
            "title": {"text": "AI response latency (ms)", "left": 0, "textStyle": {"fontSize": 14}},
            "tooltip": {"trigger": "axis"}, "legend": {"top": 0, "right": 0},
            "grid": {"left": 48, "right": 16, "bottom": 24, "top": 40},
            "xAxis": {"type": "category", "data": HOURS}, "yAxis": {"type": "value"},
            "series": [{"name": name, "type": "line", "connectNulls": True, "showSymbol": True, "symbolSize": 8,
                        "data": list(data)}
                       for name, data in (("median", figures.latency_p50_per_hour),
                                          ("p95", figures.latency_p95_per_hour))]}


def overview_page(dashboard: Any) -> None:
    """The home page: today's tiles and charts, then the live calls. One timer redraws what
    changed, at most ``dashboard.interval``; figures are computed once per change for all pages."""
    stats: DayStats | None = dashboard.app.extensions.get(EXTENSION)
    ui.label("Today").classes("text-2xl")
    if stats is None:
        ui.label("Today's figures are not counted (the overview did not start).")
        dashboard.live_calls()
        return
    figures = stats.figures()
    values: dict[str, ui.label] = {}
    with ui.row().classes("w-full gap-4"):
        for name, label, text in TILES:
            with ui.card().classes("items-center min-w-36 gap-0").mark(f"tile-{name}"):
                values[name] = ui.label(text(figures)).classes("text-3xl font-bold").mark(f"tile-{name}-value")
                ui.label(label).classes("text-sm text-gray-500")
    with ui.row().classes("w-full gap-4 no-wrap"):
        calls = ui.echart(calls_chart(figures)).classes("w-1/2 h-64").mark("chart-calls")
        latency = ui.echart(latency_chart(figures)).classes("w-1/2 h-64").mark("chart-latency")
    dashboard.live_calls()
    seen = [figures.version]

    def tick() -> None:
        figures = stats.figures()
        if figures.version == seen[0]:
            return
        seen[0] = figures.version
        for name, _label, text in TILES:
            if values[name].text != (shown := text(figures)):
                values[name].set_text(shown)
        for chart, options in ((calls, calls_chart(figures)), (latency, latency_chart(figures))):
            data = [series["data"] for series in options["series"]]
            if [series["data"] for series in chart.options["series"]] != data:
                for series, new in zip(chart.options["series"], data):
                    series["data"] = new
                chart.update()

    ui.timer(dashboard.interval, tick)
