"""The metrics plugin without Asterisk: events and live-call figures → Prometheus samples, one
private registry per App, the /metrics route, and ``Samples.since`` it reads pacing error with."""

from __future__ import annotations

import asyncio
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import aribot.plugins.metrics as metrics_plugin
from aribot.core import events as ev
from aribot.core.events import EventBus
from aribot.core.metrics import CallMetrics, Samples
from aribot.plugins.metrics import SLOT
from aribot.plugins.metrics.collector import BoundedLabel
from tests.lab.prometheus import Exposition

REPO = Path(__file__).resolve().parents[2]


def fake_app() -> SimpleNamespace:
    """What the plugin uses of core.app.App."""
    webapp = web.Application()
    metrics_plugin.register_routes(webapp)
    return SimpleNamespace(settings=SimpleNamespace(tools=SimpleNamespace(manual=["ask_a_person"])), bus=EventBus(),
                           extensions={}, http=SimpleNamespace(web=webapp), calls={}, ari_connected=True,
                           draining=False, tools=SimpleNamespace(tools={"lookup": object(), "end_call": object()}))


def fake_call() -> SimpleNamespace:
    return SimpleNamespace(metrics=CallMetrics(), endpoint=SimpleNamespace(dropped=Counter()), done=asyncio.Event())


def scrape(app: Any) -> Exposition:
    """Every sample of the App's registry, parsed back by the Prometheus text parser."""
    return Exposition.parse(generate_latest(app.extensions["metrics"].registry).decode())


def value(exposition: Exposition, name: str, **labels: str) -> float:
    """The series' value; fails if the metric or its label names do not exist (tests/lab/prometheus.py)."""
    return exposition.value(name, **labels)


@dataclass(frozen=True, kw_only=True)
class ResponseDoneWithUsage(ev.ResponseDone):
    """ResponseDone as it will be once the core passes the Realtime ``response.usage`` on."""

    usage: dict


async def test_events_and_live_calls_become_metrics_of_their_own_app_only() -> None:
    app, other = fake_app(), fake_app()
    metrics_plugin.startup(app)
    metrics_plugin.startup(other)
    call = fake_call()
    app.calls["c1"] = call
    app.bus.emit(None, ev.CallStarted(call_id="c1", channel_id="c1"))
    app.bus.emit(None, ev.BackendReady(call_id="c1", session_id="s", connect_ms=300.0))
    for ms in (0.05, 0.7, 4.0):
        call.metrics.pacing_lateness.add(ms)
    call.endpoint.dropped["wrong_source"] += 2
    live = scrape(app)
    assert value(live, "aribot_calls_live") == 1 and value(scrape(other), "aribot_calls_live") == 0
    refused = app.calls["c0"] = fake_call()
    refused.overflow = True                                      # refused for capacity: not a live call
    assert value(scrape(app), "aribot_calls_live") == 1
    del app.calls["c0"]
    assert value(live, "aribot_pacing_error_seconds_count") == 3
    assert value(live, "aribot_pacing_error_seconds_bucket", le="0.001") == 2
    assert value(live, "aribot_rtp_dropped_packets_total", reason="wrong_source") == 2
    assert value(live, "aribot_ai_connect_seconds_count") == 1

    app.bus.emit(None, ev.BotAudioStarted(call_id="c1", response_id="r1", item_id="i1", latency_ms=640.0))
    app.bus.emit(None, ev.BotAudioStarted(call_id="c1", response_id="r2", item_id="i2"))   # no caller stop: no turn
    app.bus.emit(None, ev.ToolFinished(call_id="c1", tool="lookup", tool_call_id="t1", result="{}", duration_ms=1200))
    app.bus.emit(None, ev.ToolFinished(call_id="c1", tool="made_up", tool_call_id="t2", result="", error="unknown"))
    app.bus.emit(None, ev.BackendError(call_id="c1", code="closed_1011", message="", fatal=True))
    app.bus.emit(None, ResponseDoneWithUsage(call_id="c1", response_id="r1", status="completed", usage={
        "total_tokens": 300, "input_tokens": 200, "output_tokens": 100,
        "input_token_details": {"text_tokens": 120, "audio_tokens": 80, "cached_tokens": 64},
        "output_token_details": {"text_tokens": 10, "audio_tokens": 90}}))
    app.bus.emit(None, ev.ResponseDone(call_id="c1", response_id="r2", status="cancelled"))
    app.bus.emit(None, ev.BargeIn(call_id="c1", item_id="i2", played_ms=400, dropped_ms=600))
    call.metrics.pacing_lateness.add(-0.01)                     # a tick a hair early counts as on time
    call.endpoint.dropped["wrong_source"] += 1
    del app.calls["c1"]
    app.bus.emit(None, ev.CallEnded(call_id="c1", reason="end_call: the caller said thanks", duration_s=42.0))
    after = scrape(app)
    assert value(after, "aribot_calls_live") == 0 and value(after, "aribot_calls_started_total") == 1
    assert value(after, "aribot_calls_ended_total", reason="end_call") == 1      # the kind, not the free text
    assert value(after, "aribot_call_duration_seconds_bucket", le="60.0") == 1
    assert value(after, "aribot_turn_latency_seconds_count") == 1
    assert value(after, "aribot_turn_latency_seconds_sum") == 0.64
    assert value(after, "aribot_pacing_error_seconds_count") == 4
    assert value(after, "aribot_pacing_error_seconds_bucket", le="0.0001") == 2
    assert value(after, "aribot_rtp_dropped_packets_total", reason="wrong_source") == 3
    assert value(after, "aribot_tool_duration_seconds_count", tool="lookup") == 1
    assert value(after, "aribot_tool_duration_seconds_bucket", tool="lookup", le="1.0") == 0
    assert value(after, "aribot_tool_errors_total", tool="lookup") == 0
    assert value(after, "aribot_tool_errors_total", tool="unknown") == 1       # the model's name stays out
    assert value(after, "aribot_ai_errors_total", code="closed_1011", fatal="true") == 1
    assert value(after, "aribot_responses_total", status="completed") == 1
    assert value(after, "aribot_responses_total", status="cancelled") == 1
    assert value(after, "aribot_barge_ins_total") == 1
    assert value(after, "aribot_tokens_total", direction="input", modality="audio") == 80
    assert value(after, "aribot_tokens_total", direction="output", modality="text") == 10
    assert value(after, "aribot_cached_input_tokens_total") == 64
    untouched = scrape(other)                                    # the other App saw none of it
    assert value(untouched, "aribot_calls_started_total") == 0 and value(untouched, "aribot_barge_ins_total") == 0
    assert value(untouched, "aribot_pacing_error_seconds_count") == 0
    metrics_plugin.shutdown(app)
    metrics_plugin.shutdown(other)
    assert "metrics" not in app.extensions and app.http.web[SLOT].metrics is None


async def test_route_serves_the_text_format_and_503_once_stopped(aiohttp_client) -> None:
    app = fake_app()
    metrics_plugin.startup(app)
    client = await aiohttp_client(app.http.web)
    response = await client.get("/metrics")
    assert response.status == 200 and response.headers["Content-Type"] == CONTENT_TYPE_LATEST
    names = {family.name for family in text_string_to_metric_families(await response.text())}
    assert {"aribot_calls_live", "aribot_calls_ended", "aribot_turn_latency_seconds", "aribot_pacing_error_seconds",
            "aribot_rtp_dropped_packets", "aribot_ai_reconnects", "aribot_tool_duration_seconds",
            "aribot_tool_errors", "aribot_tokens"} <= names
    metrics_plugin.shutdown(app)
    assert (await client.get("/metrics")).status == 503


async def test_realtime_rollovers_are_counted_by_reason() -> None:
    app = fake_app()
    metrics_plugin.startup(app)
    for reason, gap_ms in (("closed_1011", 700.0), ("max_session_s", 150.0), ("closed_1011", 900.0)):
        app.bus.emit(None, ev.BackendRollover(call_id="c1", reason=reason, attempt=1, replayed_items=4,
                                               gap_ms=gap_ms))
    samples = scrape(app)
    assert value(samples, "aribot_ai_reconnects_total", reason="closed_1011") == 2
    assert value(samples, "aribot_ai_reconnects_total", reason="max_session_s") == 1
    assert value(samples, "aribot_ai_reconnect_gap_seconds_count") == 3
    assert value(samples, "aribot_ai_reconnect_gap_seconds_bucket", le="0.75") == 2
    metrics_plugin.shutdown(app)


def test_bounded_label_and_entry_point() -> None:
    label = BoundedLabel(limit=2)
    assert [label(v) for v in ("a", "b", "c", "a", "")] == ["a", "b", "other", "a", "other"]
    entry_points = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]["aribot"]
    assert entry_points["metrics"] == "aribot.plugins.metrics"


def test_samples_since_returns_the_new_ones_oldest_first_across_the_ring() -> None:
    samples = Samples(capacity=4)
    assert samples.since(0) == []
    for n in range(3):
        samples.add(float(n))
    assert samples.since(0) == [0.0, 1.0, 2.0] and samples.since(2) == [2.0]
    for n in range(3, 10):                       # the ring wraps: it keeps 6, 7, 8, 9
        samples.add(float(n))
    assert samples.since(7) == [7.0, 8.0, 9.0]
    assert samples.since(3) == [6.0, 7.0, 8.0, 9.0]   # older new ones were overwritten
    assert samples.since(10) == [] and samples.since(9) == [9.0]
    samples.add(10.0)                            # newest at index 2, oldest kept (7) at index 3
    assert samples.since(6) == [7.0, 8.0, 9.0, 10.0] and samples.since(8) == [8.0, 9.0, 10.0]


def test_bulk_histogram_exposes_what_the_client_library_would() -> None:
    """The pacing histogram is counted by aribot (a bisect per value, no lock): its exposition
    must equal prometheus_client's own Histogram fed the same values, edges included."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from aribot.plugins.metrics.collector import PACING_ERROR_BUCKETS, BulkHistogram

    values = [0.0, 0.0001, 0.00011, 0.0009, 0.001, 0.004, 0.02, 0.5]
    reference_registry = CollectorRegistry()
    reference = Histogram("h_seconds", "doc", buckets=PACING_ERROR_BUCKETS, registry=reference_registry)
    for v in values:
        reference.observe(v)
    bulk = BulkHistogram("h_seconds", "doc", PACING_ERROR_BUCKETS)
    bulk.observe_many(values[:3])
    bulk.observe_many(values[3:])

    class One:
        def collect(self):
            yield bulk.family()

    ours_registry = CollectorRegistry()
    ours_registry.register(One())

    def lines(registry: CollectorRegistry) -> dict[str, float]:
        return {name: float(number) for name, number in (line.rsplit(" ", 1) for line in
                generate_latest(registry).decode().splitlines() if line.startswith("h_seconds_"))
                if not name.endswith("_created")}

    ours, reference = lines(ours_registry), lines(reference_registry)
    assert ours.keys() == reference.keys() and len(ours) == len(PACING_ERROR_BUCKETS) + 3  # buckets, +Inf, count, sum
    assert all(abs(ours[name] - reference[name]) < 1e-12 for name in ours)
