"""The dashboard's overview: today's figures from bus events (DayStats), the midnight reset, the
seeding from a real call history, and the home page's tiles and charts (NiceGUI's simulated user).
Every expected figure is worked out by hand in the comments."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from nicegui import ui
from nicegui.testing import user_simulation

from aribot.core import events as ev
from aribot.core.app import App
from aribot.core.events import EventBus
from aribot.plugins.history.store import HistoryStore
from aribot.plugins.ui_nicegui.live import LiveState
from aribot.plugins.ui_nicegui.overview import (
    EXTENSION,
    DayStats,
    bucket,
    outcome,
    overview_page,
    percentiles,
    start_day_stats,
    stop_day_stats,
)
from aribot.plugins.ui_nicegui.pages import Dashboard
from tests.lab.wait import until
from tests.unit.dashboard_server import dashboard_app


def at(hour: int, minute: int = 0, second: int = 0, day: int = 7) -> float:
    """Epoch seconds of a local time on 2026-12-``day`` (the tests' "today" is the 7th)."""
    return datetime(2026, 12, day, hour, minute, second).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def a_call(call_id: str, start: float, *, answered: bool = True, latencies: tuple[float | None, ...] = (),
           barge_ins: int = 0, tools: tuple[str, ...] = (), costs: tuple[float, ...] = (),
           reason: str | None = None) -> list[ev.Event]:
    """One call's events a minute apart from ``start``: answer, AI answers with these latencies
    (None: one with no latency, e.g. the greeting), barge-ins, tool calls (each the error it ends
    with, "" = success), cumulative costs, then the end (``reason`` None: still live)."""
    ts = iter(start + 60 * n for n in range(1, 100))
    events: list[ev.Event] = [ev.CallStarted(call_id=call_id, ts=start, channel_id=call_id, caller_number="4930111",
                                             extension="100")]
    if answered:
        events.append(ev.CallAnswered(call_id=call_id, ts=start + 1))
    for n, latency in enumerate(latencies):
        events.append(ev.SpeechStopped(call_id=call_id, ts=next(ts), item_id=f"u{n}"))
        events.append(ev.BotAudioStarted(call_id=call_id, ts=next(ts), response_id=f"r{n}", item_id=f"a{n}",
                                         latency_ms=latency))
    for n in range(barge_ins):
        events.append(ev.BargeIn(call_id=call_id, ts=next(ts), item_id=f"a{n}", played_ms=300, dropped_ms=900))
    for n, error in enumerate(tools):
        events.append(ev.ToolCalled(call_id=call_id, ts=next(ts), tool="lookup", tool_call_id=f"t{n}", arguments="{}"))
        events.append(ev.ToolFinished(call_id=call_id, ts=next(ts), tool="lookup", tool_call_id=f"t{n}",
                                      result="" if error else '"ok"', error=error, duration_ms=12.0))
    for usd in costs:
        events.append(ev.CostUpdated(call_id=call_id, ts=next(ts), usd=usd, backend="openai_realtime"))
    if reason is not None:
        events.append(ev.CallEnded(call_id=call_id, ts=next(ts), reason=reason, duration_s=60.0))
    return events


def the_day() -> list[ev.Event]:
    """A realistic day up to 15:00, in time order (see test_figures_of_a_day_from_bus_events)."""
    events = [
        # c0 began yesterday: live this morning, but not one of today's calls (nor its cost, nor its end)
        ev.CallStarted(call_id="c0", ts=at(23, 50, day=6), channel_id="c0"),
        ev.CostUpdated(call_id="c0", ts=at(0, 10), usd=0.40, backend="openai_realtime"),
        ev.CallEnded(call_id="c0", ts=at(0, 20), reason="caller_hangup", duration_s=1800.0),
        *a_call("c1", at(9, 5), latencies=(400, 500), barge_ins=1, tools=("",), costs=(0.05, 0.12),
                reason="end_call: the caller is done"),
        *a_call("c2", at(9, 20), latencies=(600, 700, 3000), tools=("timeout",), costs=(0.30,), reason="transfer"),
        *a_call("c3", at(10, 10), latencies=(None, 800), reason="ai_failed"),
        *a_call("c4", at(10, 20), answered=False, reason="caller_hangup"),
        *a_call("c5", at(11, 0), answered=False, reason="overload"),
        *a_call("c6", at(14, 0), latencies=(900, 1000, 1234, 1500), barge_ins=2, costs=(0.08,)),
        *a_call("c7", at(14, 30), reason="operator_transfer"),
        # a cost update of c1 that arrives after its end still counts
        ev.CostUpdated(call_id="c1", ts=at(14, 40), usd=0.15, backend="openai_realtime"),
    ]
    return sorted(events, key=lambda e: e.ts)


def listening(clock: Clock) -> tuple[EventBus, DayStats]:
    bus, stats = EventBus(), DayStats(clock=clock)
    for event_type in stats.event_types:
        bus.subscribe(event_type, stats.on_event, owner="ui_nicegui")
    return bus, stats


@pytest.mark.parametrize("reason, answered, expected", [
    ("transfer", True, "transferred"), ("operator_transfer", True, "transferred"),
    ("transfer_to_sales", True, "transferred"), ("dtmf", True, "transferred"),
    ("ai_failed", True, "failed"), ("ai_unavailable", True, "failed"), ("ai_closed", True, "failed"),
    ("media_setup_failed", False, "failed"), ("internal_error", True, "failed"), ("overload", False, "failed"),
    ("crashed", True, "failed"), ("asterisk_restarted", True, "failed"), ("failed: no route", True, "failed"),
    ("caller_hangup", True, "answered"), ("end_call: bye", True, "answered"), ("no_input", True, "answered"),
    ("max_duration", True, "answered"), ("operator_hangup", True, "answered"), ("shutdown", True, "answered"),
    ("caller_hangup", False, "abandoned"),
])
def test_how_an_end_reason_counts(reason: str, answered: bool, expected: str) -> None:
    assert outcome(reason, answered) == expected


def test_latency_buckets_and_nearest_rank_percentiles() -> None:
    assert [bucket(v) for v in (812.4, 812.6, 1234, 12_345, 250_000, -3)] == [812, 813, 1230, 12_300, 100_000, 0]
    from collections import Counter
    assert percentiles(Counter(), 50, 95) == [None, None]
    # 1..100 ms once each: the 50th value is 50, the 95th is 95
    assert percentiles(Counter({float(v): 1 for v in range(1, 101)}), 50, 95) == [50, 95]


def test_figures_of_a_day_from_bus_events() -> None:
    clock = Clock(at(15))
    bus, stats = listening(clock)
    sender = object()
    for event in the_day():
        bus.emit(sender, event)
    figures = stats.figures()
    assert bus.receiver_errors == 0
    assert figures.live == 1                        # c6 (c0 ended at 00:20)
    assert figures.calls == 7                       # c1..c7; c0 started yesterday
    # c1 end_call → answered; c2 transfer, c7 operator_transfer; c3 ai_failed, c5 overload; c4 never answered
    assert figures.outcomes == {"answered": 1, "transferred": 2, "failed": 2, "abandoned": 1}
    # latencies (the greeting's None is not one): 400 500 600 700 800 900 1000 1230 1500 3000 (1234 → 1230)
    # nearest rank: the median is the 5th of 10 = 800, p95 the 10th = 3000
    assert (figures.latencies, figures.latency_p50, figures.latency_p95) == (10, 800, 3000)
    assert (figures.barge_ins, figures.tool_calls, figures.tool_errors) == (3, 2, 1)
    assert figures.cost_usd == pytest.approx(0.15 + 0.30 + 0.08)   # c1's latest 0.15, not 0.05 + 0.12 + 0.15
    assert figures.calls_per_hour == [0] * 9 + [2, 2, 1, 0, 0, 2] + [0] * 9
    # 09:00: 400 500 600 700 3000 → the 3rd and the 5th; 10:00: 800; 14:00: 900 1000 1230 1500 → 2nd, 4th
    assert figures.latency_p50_per_hour[9:15] == [600, 800, None, None, None, 1000]
    assert figures.latency_p95_per_hour[9:15] == [3000, 800, None, None, None, 1500]
    assert figures.latency_p50_per_hour[:9] == [None] * 9
    assert stats.figures() is figures               # nothing changed: not computed again


def test_midnight_starts_a_new_day_and_keeps_the_live_calls() -> None:
    clock = Clock(at(15))
    bus, stats = listening(clock)
    for event in the_day():
        bus.emit(None, event)
    before = stats.figures().version
    clock.now = at(0, 0, 5, day=8)
    figures = stats.figures()
    assert figures.version != before
    assert figures.live == 1                        # c6 goes on past midnight
    assert (figures.calls, figures.latencies, figures.latency_p50, figures.cost_usd) == (0, 0, None, 0.0)
    assert figures.outcomes == {"answered": 0, "transferred": 0, "failed": 0, "abandoned": 0}
    assert figures.calls_per_hour == [0] * 24 and (figures.barge_ins, figures.tool_calls) == (0, 0)
    # yesterday's c6: its cost and its end belong to yesterday; its next answer is today's
    bus.emit(None, ev.CostUpdated(call_id="c6", ts=at(0, 1, day=8), usd=0.20, backend="openai_realtime"))
    bus.emit(None, ev.BotAudioStarted(call_id="c6", ts=at(0, 2, day=8), response_id="r9", item_id="a9",
                                      latency_ms=700))
    bus.emit(None, ev.CallEnded(call_id="c6", ts=at(0, 3, day=8), reason="caller_hangup", duration_s=600.0))
    for event in a_call("d1", at(0, 30, day=8), latencies=(450,), costs=(0.02,), reason="caller_hangup"):
        bus.emit(None, event)
    figures = stats.figures()
    assert (figures.live, figures.calls, figures.cost_usd) == (0, 1, 0.02)
    assert figures.outcomes["answered"] == 1
    assert (figures.latencies, figures.latency_p50) == (2, 450)     # 450 and 700: the 1st of 2
    assert figures.calls_per_hour[0] == 1


async def test_seeded_from_the_history_then_counting_on_from_the_bus(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "history.sqlite3")
    await store.open()
    try:
        history = [
            *a_call("y1", at(22, 0, day=6), latencies=(5000,), tools=("boom",), costs=(1.0,), reason="transfer"),
            *a_call("c1", at(9, 5), latencies=(400, 500), barge_ins=1, tools=("",), costs=(0.05, 0.12),
                    reason="end_call: the caller is done"),
            *a_call("c2", at(9, 20), latencies=(600, 700, 3000), tools=("timeout",), costs=(0.30,),
                    reason="transfer"),
            *a_call("c3", at(10, 0), answered=False, reason="caller_hangup"),
            *a_call("c9", at(11, 0), latencies=(2000,), costs=(0.02,)),   # live when the dashboard starts
            # after the dashboard listened: the bus brings it, not the history
            *a_call("c10", at(12, 30), latencies=(100,), reason="caller_hangup"),
        ]
        for event in sorted(history, key=lambda e: e.ts):
            await store.record(event)
        summary = await store.day_summary(at(0), at(12))
        assert sorted(summary["calls"]) == [("c1", at(9, 5), 1, "end_call: the caller is done", 0.12),
                                            ("c2", at(9, 20), 1, "transfer", 0.30),
                                            ("c3", at(10, 0), 0, "caller_hangup", None),
                                            ("c9", at(11, 0), 1, None, 0.02)]
        assert sorted(summary["latencies"]) == [(9, 400, 1), (9, 500, 1), (9, 600, 1), (9, 700, 1), (9, 3000, 1),
                                                (11, 2000, 1)]
        assert (summary["barge_ins"], summary["tool_calls"], summary["tool_errors"]) == (1, 2, 1)

        clock = Clock(at(12))
        bus, stats = listening(clock)
        assert stats.listening_since == at(12)
        await stats.seed_from(store)
        figures = stats.figures()
        assert figures.seeded
        assert (figures.live, figures.calls) == (1, 4)                     # c9 live; c1 c2 c3 c9 (not y1)
        assert figures.outcomes == {"answered": 1, "transferred": 1, "failed": 0, "abandoned": 1}
        # 400 500 600 700 2000 3000: the median is the 3rd of 6 = 600, p95 the 6th = 3000
        assert (figures.latencies, figures.latency_p50, figures.latency_p95) == (6, 600, 3000)
        assert (figures.barge_ins, figures.tool_calls, figures.tool_errors) == (1, 2, 1)
        assert figures.cost_usd == pytest.approx(0.12 + 0.30 + 0.02)
        assert figures.calls_per_hour[9:12] == [2, 1, 1]

        # the bus goes on from there: c9's cost grows and it ends; c10 comes in full
        clock.now = at(13)
        bus.emit(None, ev.CostUpdated(call_id="c9", ts=at(12, 10), usd=0.05, backend="openai_realtime"))
        bus.emit(None, ev.CallEnded(call_id="c9", ts=at(12, 20), reason="caller_hangup", duration_s=80 * 60.0))
        for event in a_call("c10", at(12, 30), latencies=(100,), reason="caller_hangup"):
            bus.emit(None, event)
        figures = stats.figures()
        assert (figures.live, figures.calls) == (0, 5)
        assert figures.outcomes["answered"] == 3                          # c1, c9, c10
        assert figures.cost_usd == pytest.approx(0.12 + 0.30 + 0.05)
        assert (figures.latencies, figures.latency_p50) == (7, 600)      # 100 added: the 4th of 7 is 600
    finally:
        await store.close()


# --- the page ---------------------------------------------------------------------------------------
@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> App:
    return dashboard_app(monkeypatch, tmp_path)


def tile(user: Any, name: str) -> str:
    """The big number of a tile."""
    (label,) = user.find(marker=f"tile-{name}-value").elements
    return label.text


def chart(user: Any, name: str) -> dict[str, Any]:
    (element,) = user.find(marker=f"chart-{name}").elements
    return element.options


async def test_overview_page_shows_the_figures_and_follows_the_bus(app: App, tmp_path: Path) -> None:
    import time

    store = HistoryStore(tmp_path / "history.sqlite3")
    await store.open()
    now = time.time()
    earlier = max(now - 600, datetime.fromtimestamp(now).replace(hour=0, minute=0, second=1).timestamp())
    for event in a_call("h1", earlier, latencies=(500,), costs=(0.25,), reason="caller_hangup"):
        await store.record(event)
    app.extensions["history"] = store
    state = LiveState(keep_s=60)
    app.bus.subscribe(None, state.on_event, owner="ui_nicegui")
    board = Dashboard(app, state)
    stats = start_day_stats(app)
    assert app.extensions[EXTENSION] is stats
    try:
        await until(lambda: stats.seeded, "the seeding from the history")
        async with user_simulation(root=lambda: ui.sub_pages({"/": lambda: overview_page(board)})) as user:
            await user.open("/")
            await user.should_see("Calls today")
            await user.should_see("No calls right now.")                 # the live calls table below
            assert (tile(user, "calls"), tile(user, "answered"), tile(user, "latency-p50")) == ("1", "1", "500 ms")
            assert tile(user, "cost") == "$0.2500"
            assert chart(user, "calls")["series"][0]["data"][time.localtime(earlier).tm_hour] == 1

            sender = object()
            t = time.time()
            for event in (ev.CallStarted(call_id="c1", ts=t, channel_id="c1", caller_number="4915112345",
                                         extension="100"),
                          ev.CallAnswered(call_id="c1", ts=t),
                          ev.BotAudioStarted(call_id="c1", ts=t, response_id="r1", item_id="a1", latency_ms=900),
                          ev.BotAudioStarted(call_id="c1", ts=t, response_id="r2", item_id="a2", latency_ms=1500),
                          ev.BargeIn(call_id="c1", ts=t, item_id="a2", played_ms=200, dropped_ms=800),
                          ev.ToolCalled(call_id="c1", ts=t, tool="lookup", tool_call_id="t1", arguments="{}"),
                          ev.ToolFinished(call_id="c1", ts=t, tool="lookup", tool_call_id="t1", result="",
                                          error="timeout"),
                          ev.CostUpdated(call_id="c1", ts=t, usd=0.5, backend="openai_realtime")):
                app.bus.emit(sender, event)
            await until(lambda: tile(user, "live") == "1", "the live call on its tile")
            # 500 900 1500: the median is the 2nd of 3, p95 the 3rd
            assert [tile(user, name) for name in ("calls", "latency-p50", "latency-p95", "barge-ins", "tools",
                                                  "tool-errors", "cost")] == [
                "2", "900 ms", "1500 ms", "1", "1", "1", "$0.7500"]
            (table,) = user.find(marker="live-calls").elements                # the live calls, below
            await until(lambda: [r["caller"] for r in table.rows] == ["4915112345"], "the call in the table")
            latency = chart(user, "latency")
            hour_now = time.localtime(t).tm_hour
            assert [s["name"] for s in latency["series"]] == ["median", "p95"]
            assert latency["series"][1]["data"][hour_now] == 1500
            assert sum(chart(user, "calls")["series"][0]["data"]) == 2

            app.bus.emit(sender, ev.CallEnded(call_id="c1", reason="transfer", duration_s=30.0))
            await until(lambda: tile(user, "transferred") == "1", "the transfer on its tile")
            assert (tile(user, "live"), tile(user, "answered"), tile(user, "failed")) == ("0", "1", "0")
    finally:
        stop_day_stats(app)
        await store.close()
