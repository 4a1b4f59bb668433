"""The NiceGUI dashboard with NiceGUI's simulated user: every page and action, fed by real bus
events of a real App (no Asterisk needed here; the real-call actions are in the integration tests)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from nicegui import ui
from nicegui.testing import user_simulation

from aribot.core import events as ev
from aribot.core.app import App
from aribot.core.settings import SettingsError
from aribot.plugins.ui_nicegui import check_access
from aribot.plugins.ui_nicegui.live import LiveState
from aribot.plugins.ui_nicegui.pages import Dashboard
from aribot.plugins.ui_nicegui.server import BasicAuth, is_loopback
from tests.lab.wait import until
from tests.unit.dashboard_server import dashboard_app


class FakeCall:
    """Stands in for a live core Call where no Asterisk runs: what the pages read, and end()
    recorded. The actions that talk to the AI (instruct, manual answers, session changes) are
    tested on real calls against the strict fake (tests/integration/test_dashboard.py): this
    stand-in has no such methods, so a page that calls one here fails."""

    def __init__(self, call_id: str) -> None:
        self.id, self.caller_number, self.extension = call_id, "4915112345", "100"
        self.channel = SimpleNamespace(context="from-sipp")
        self.done: list[tuple[str, Any]] = []

    def spawn(self, coro: Any) -> None:
        asyncio.ensure_future(coro)

    async def end(self, reason: str, **kw: Any) -> None:
        self.done.append(("end", reason, kw))

    def levels(self) -> tuple[float, float]:
        return 0.5, 0.25


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> App:
    return dashboard_app(monkeypatch, tmp_path, TOOLS__TRANSFER_CALL__ALLOWED='["200", "300@sales"]')


def started(app: App, call_id: str = "c1") -> FakeCall:
    call = FakeCall(call_id)
    app.calls[call_id] = call  # type: ignore[assignment]
    app.bus.emit(call, ev.CallStarted(call_id=call_id, channel_id=call_id, caller_number=call.caller_number,
                                      extension="100"))
    return call


def dashboard(app: App) -> Dashboard:
    state = LiveState(keep_s=60)
    app.bus.subscribe(None, state.on_event, owner="ui_nicegui")
    return Dashboard(app, state)


async def test_live_calls_page_follows_the_bus(app: App) -> None:
    board = dashboard(app)
    async with user_simulation(root=board.root) as user:
        await user.open("/")
        await user.should_see("No calls right now.")
        table = user.find(marker="live-calls").elements.pop()
        call = started(app)
        app.bus.emit(call, ev.ActivationOpened(call_id="c1", mode="vad"))
        app.bus.emit(call, ev.ToolCalled(call_id="c1", tool="lookup_order", tool_call_id="t1", arguments="{}"))
        row = await wait_row(table, lambda r: r["tool"] == "lookup_order")
        assert (row["caller"], row["extension"], row["mode"], row["state"]) == ("4915112345", "100", "vad", "listening")
        await user.should_not_see("No calls right now.")
        app.bus.emit(call, ev.CallEnded(call_id="c1", reason="caller_hangup", duration_s=3.0))
        await wait_row(table, lambda r: r["state"] == "ended (caller_hangup)")
        await user.open("/call/c1")
        await user.should_see("Call from 4915112345 to 100")


async def wait_row(table: Any, matches: Any) -> dict:
    return await until(lambda: next((r for r in table.rows if matches(r)), None), "a matching row")


async def test_call_view_streams_words_marks_barge_ins_and_shows_tools(app: App) -> None:
    board = dashboard(app)
    call = started(app)
    async with user_simulation(root=board.root) as user:
        await user.open("/call/c1")
        await user.should_see("Call from 4915112345 to 100")
        for word in ("Where ", "is ", "my order?"):
            app.bus.emit(call, ev.TranscriptDelta(call_id="c1", role="caller", item_id="u1", text=word))
        await user.should_see("Where is my order?")
        app.bus.emit(call, ev.TranscriptDelta(call_id="c1", role="assistant", item_id="a1", text="Let me"))
        app.bus.emit(call, ev.BargeIn(call_id="c1", item_id="a1", played_ms=400, dropped_ms=900))
        await user.should_see("(interrupted)")
        app.bus.emit(call, ev.BotAudioStarted(call_id="c1", response_id="r1", item_id="a1", latency_ms=812.4))
        await user.should_see("AI answered in 812 ms")
        app.bus.emit(call, ev.ToolCalled(call_id="c1", tool="lookup_order", tool_call_id="t1", arguments='{"id": 7}'))
        app.bus.emit(call, ev.ToolFinished(call_id="c1", tool="lookup_order", tool_call_id="t1",
                                           result='{"status": "shipped"}', duration_ms=41.0))
        await user.should_see('tool lookup_order({"id": 7}) → {"status": "shipped"} in 41 ms')


async def test_call_view_timeline_says_what_happened_in_order_and_the_cost_so_far(app: App) -> None:
    board = dashboard(app)
    call = started(app)
    t0 = board.state.calls["c1"].started_at
    events = [ev.CallAnswered(call_id="c1", ts=t0 + 0.2),
              ev.BackendReady(call_id="c1", session_id="s1", connect_ms=183.2, backend="gpt_live", ts=t0 + 0.5),
              ev.ActivationOpened(call_id="c1", mode="vad", reason="caller spoke", ts=t0 + 1.2),
              ev.SpeechStarted(call_id="c1", item_id="u1", ts=t0 + 1.3),          # not in the timeline
              ev.BargeIn(call_id="c1", item_id="a1", played_ms=400, dropped_ms=900, ts=t0 + 4.0),
              ev.DtmfReceived(call_id="c1", digit="7", masked=True, ts=t0 + 5.0),
              ev.ToolCalled(call_id="c1", tool="lookup_order", tool_call_id="t1", arguments='{"id": 7}', ts=t0 + 6.0),
              ev.ToolFinished(call_id="c1", tool="lookup_order", tool_call_id="t1", result="",
                              error="timed out", duration_ms=5000.4, ts=t0 + 11.0),
              ev.BackendRollover(call_id="c1", reason="expired", attempt=1, replayed_items=4, gap_ms=312.0,
                                 ts=t0 + 61.0),
              ev.BackendError(call_id="c1", code="rate_limit_exceeded", message="slow down", ts=t0 + 62.0),
              ev.CostUpdated(call_id="c1", usd=0.01234, backend="gpt_live", ts=t0 + 62.5)]
    async with user_simulation(root=board.root) as user:
        await user.open("/call/c1")
        for event in events:
            app.bus.emit(call, event)
        await user.should_see("AI error rate_limit_exceeded: slow down")
        await user.should_see("cost so far $0.0123", marker="call-cost")
        box = next(iter(user.find(marker="timeline").elements))
        lines = [e.text for e in box.default_slot.children]   # in the order shown
        assert lines == ["0:00.2  answered", "0:00.5  AI connected (gpt_live) in 183 ms",
                         "0:01.2  listening (vad: caller spoke)",
                         "0:04.0  barge-in: the AI stopped after 400 ms (900 ms not played)",
                         "0:05.0  key x", '0:06.0  tool lookup_order({"id": 7})',
                         "0:11.0  tool lookup_order failed: timed out in 5000 ms",
                         "1:01.0  AI session renewed (expired, attempt 1, 312 ms gap)",
                         "1:02.0  AI error rate_limit_exceeded: slow down"]


async def test_call_view_draws_one_bubble_per_turn_with_words_and_no_empty_element(app: App) -> None:
    """Quasar draws each child of a q-chat-message as a bubble of its own: a turn must have one
    child, and a turn without words yet (the caller started speaking) no message at all."""
    board = dashboard(app)
    call = started(app)
    async with user_simulation(root=board.root) as user:
        await user.open("/call/c1")
        app.bus.emit(call, ev.SpeechStarted(call_id="c1", item_id="u1"))
        app.bus.emit(call, ev.TranscriptDelta(call_id="c1", role="assistant", item_id="a1", text="Good morning"))
        await user.should_see("Good morning")
        app.bus.emit(call, ev.Transcript(call_id="c1", role="caller", item_id="u1", text="Hello there"))
        await user.should_see("Hello there")
        app.bus.emit(call, ev.BotAudioStarted(call_id="c1", response_id="r1", item_id="a1", latency_ms=731.6))
        await user.should_see("answered in 732 ms")   # on the AI's turn it measures
        app.bus.emit(call, ev.BargeIn(call_id="c1", item_id="a1", played_ms=400, dropped_ms=900))
        await user.should_see("(interrupted)")
        app.bus.emit(call, ev.BotAudioStarted(call_id="c1", response_id="r2", item_id="a2", latency_ms=650.0))
        await user.should_see("AI answered in 732 ms, 650 ms")
        messages = [e for e in user.client.layout.descendants() if isinstance(e, ui.chat_message)]
        assert len(messages) == 2                     # a2 has audio but no words yet: no message
        for message in messages:
            assert len(message.default_slot.children) == 1  # one bubble
            texts = [e.text for e in message.descendants() if isinstance(e, ui.label)]
            assert texts and all(t.strip() for t in texts), texts
        words = [[e.text for e in m.descendants() if isinstance(e, ui.label)] for m in messages]
        assert words == [["Hello there"], ["Good morning", "answered in 732 ms", "(interrupted)"]]  # caller first


async def test_call_view_drops_the_turns_a_long_calls_view_forgot(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    from aribot.plugins.ui_nicegui import live

    monkeypatch.setattr(live, "KEEP_TURNS", 3)
    board = dashboard(app)
    call = started(app)
    async with user_simulation(root=board.root) as user:
        await user.open("/call/c1")
        for n in range(5):
            app.bus.emit(call, ev.Transcript(call_id="c1", role="caller", item_id=f"u{n}", text=f"words {n}"))
            await user.should_see(f"words {n}")
        await user.should_not_see("words 1")
        messages = [e for e in user.client.layout.descendants() if isinstance(e, ui.chat_message)]
        assert [[e.text for e in m.descendants() if isinstance(e, ui.label)] for m in messages] == [
            ["words 2"], ["words 3"], ["words 4"]]


async def test_call_actions_transfer_to_a_target_in_another_context_and_hang_up(app: App) -> None:
    board = dashboard(app)
    call = started(app)
    async with user_simulation(root=board.root) as user:
        await user.open("/call/c1")
        user.find(marker="transfer").click()
        await user.should_see("Choose an allowed target first.")
        user.find(marker="transfer-target").click()
        user.find("300@sales").click()
        user.find(marker="transfer").click()
        await user.should_see("Transferring to 300")
        user.find("Hang up").click()
        await user.should_see("Hanging up")
    ends = {("end", "operator_transfer"), ("end", "operator_hangup")}
    await until(lambda: ends <= {done[:2] for done in call.done}, "the transfer and the hang-up to reach the call")
    transfer = next(d for d in call.done if d[0] == "end" and d[1] == "operator_transfer")
    assert transfer[2]["target"] == {"context": "sales", "extension": "300", "priority": 1}
    assert ("end", "operator_hangup", {"action": "hangup"}) in call.done


async def test_session_page_saves_for_new_calls(app: App) -> None:
    board = dashboard(app)
    async with user_simulation(root=board.root) as user:
        await user.open("/session")
        user.find(marker="instructions").clear().type("You are a pirate.")
        user.find(marker="voice").click()
        user.find("cedar").click()
        user.find(marker="tool-send_dtmf").click()
        user.find("Save for new calls").click()
        await user.should_see("Saved for new calls")
        assert app.overrides["instructions"] == "You are a pirate." and app.overrides["voice"] == "cedar"
        assert "send_dtmf" not in app.overrides["tools"] and "end_call" in app.overrides["tools"]
        user.find("Apply to this call").click()
        await user.should_see("Choose a live call")


async def test_plugins_page_toggles_a_plugin_for_new_calls(app: App) -> None:
    board = dashboard(app)
    async with user_simulation(root=board.root) as user:
        await user.open("/plugins")
        await user.should_see("tools_current_time")
        user.find(marker="plugin-tools_current_time").click()
        await user.should_see("tools_current_time disabled for new calls")
        assert "current_time" not in app.tools.tools
        user.find(marker="plugin-tools_current_time").click()
        await user.should_see("tools_current_time enabled for new calls")
        assert "current_time" in app.tools.tools


def test_access_needs_a_password_off_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.7")
    with pytest.raises(SettingsError, match="ui.password"):
        check_access(SimpleNamespace(host="0.0.0.0", password=""))
    check_access(SimpleNamespace(host="0.0.0.0", password="s3cret"))
    check_access(SimpleNamespace(host="127.0.0.1", password=""))


async def test_basic_auth_middleware_refuses_without_the_password() -> None:
    async def page(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"dashboard"})

    guarded = BasicAuth(page, "aribot", "s3cret")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(guarded), base_url="http://x") as client:
        refused = await client.get("/")
        wrong = await client.get("/", auth=("aribot", "nope"))
        allowed = await client.get("/", auth=("aribot", "s3cret"))
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
    assert wrong.status_code == 401 and allowed.status_code == 200 and allowed.text == "dashboard"


def test_ui_is_not_imported_by_the_core() -> None:
    import subprocess
    import sys
    code = "import aribot.core.app, aribot.core.call, aribot.core.conversation, sys; print('nicegui' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


_ = ui  # the pages use NiceGUI's global ui; imported here so a missing NiceGUI fails loudly


async def test_setup_page_shows_each_check(app: App) -> None:
    board = dashboard(app)
    async with user_simulation(root=board.root) as user:
        await user.open("/setup")
        await user.should_see("FAIL ari_login")              # ARI is unreachable in this test
        await user.should_see("SKIP ari_app")
        await user.should_see("OK settings")
        await user.should_see("FAIL backend")                 # no OpenAI key is set
        user.find("Run the checks again").click()
        await user.should_see("FAIL ari_login")


async def test_history_pages_search_and_show_a_record(app: App, tmp_path: Path) -> None:
    from aribot.plugins.history.store import HistoryStore

    store = HistoryStore(tmp_path / "history.sqlite3")
    await store.open()
    for event in (ev.CallStarted(call_id="h1", channel_id="h1", caller_number="4930555", extension="100"),
                  ev.Transcript(call_id="h1", role="caller", item_id="u1", text="Is the shop open on Sunday?"),
                  ev.Transcript(call_id="h1", role="caller", item_id="u0", text=""),   # nothing understood
                  ev.SpeechStopped(call_id="h1", item_id="u1"),
                  ev.BotAudioStarted(call_id="h1", response_id="r1", item_id="a1", latency_ms=612.0),
                  ev.Transcript(call_id="h1", role="assistant", item_id="a1", text="No, it is closed on Sundays."),
                  ev.ToolFinished(call_id="h1", tool="opening_hours", tool_call_id="t1", result='"closed"',
                                  duration_ms=3.0),
                  ev.CallEnded(call_id="h1", reason="caller_hangup", duration_s=42.0),
                  ev.CallStarted(call_id="h2", channel_id="h2", caller_number="4989111", extension="200"),
                  ev.CallEnded(call_id="h2", reason="no_input", duration_s=20.0)):
        await store.record(event)
    app.extensions["history"] = store
    board = dashboard(app)
    try:
        async with user_simulation(root=board.root) as user:
            await user.open("/history")
            await user.should_see("4930555")
            await user.should_see("4989111")
            user.find(marker="history-caller").type("4930")
            user.find("Search").click()
            await user.should_see("caller_hangup")
            await user.should_not_see("4989111")
            user.find(marker="history-since").type("not a date")
            user.find("Search").click()
            await user.should_see("is not a date like")
            user.find(marker="history-since").clear()
            user.find(marker="history-text").type("Sunday")
            user.find("Search").click()
            await user.should_see("4930555")
            await user.open("/history/h1")
            await user.should_see("No, it is closed on Sundays.")
            await user.should_see("ended: caller_hangup")
            await user.should_see('opening_hours() → "closed" in 3 ms')
            messages = [e for e in user.client.layout.descendants() if isinstance(e, ui.chat_message)]
            assert [m.props.get("stamp") for m in messages] == [None, "answered in 612 ms"]   # no empty turn
            await user.open("/history/unknown")
            await user.should_see("No record of this call.")
    finally:
        await store.close()


async def test_history_page_lists_the_latest_calls_at_once_by_pages_and_filters_by_reason_and_backend(
        app: App, tmp_path: Path) -> None:
    from aribot.plugins.history.store import HistoryStore
    from aribot.plugins.ui_nicegui.pages import HISTORY_PAGE

    store = HistoryStore(tmp_path / "history.sqlite3")
    await store.open()
    total = HISTORY_PAGE + 3
    for n in range(total):  # call n started n minutes after the first: the last is the newest
        call_id, start = f"h{n}", 1_790_000_000.0 + 60 * n
        backend, reason = ("gpt_live", "max_duration") if n % 2 else ("openai_realtime", "caller_hangup")
        await store.record(ev.CallStarted(call_id=call_id, ts=start, channel_id=call_id,
                                          caller_number=f"49301{n:05d}", extension="100"))
        await store.record(ev.CallEnded(call_id=call_id, ts=start + 5, reason=reason, duration_s=5.0,
                                        stats={"backend": backend}))
    app.extensions["history"] = store
    board = dashboard(app)

    def listed(user: Any) -> list[str]:
        rows = [e for e in user.client.layout.descendants() if "history-row" in e._markers]
        return [[c.text for c in row.descendants() if isinstance(c, ui.label)][0] for row in rows]

    try:
        async with user_simulation(root=board.root) as user:
            await user.open("/history")   # no search needed
            await user.should_see(f"calls 1–{HISTORY_PAGE}, newest first")
            assert listed(user) == [f"49301{n:05d}" for n in range(total - 1, total - 1 - HISTORY_PAGE, -1)]
            await user.should_not_see(marker="history-newer")
            user.find(marker="history-older").click()
            await user.should_see(f"calls {HISTORY_PAGE + 1}–{total}, newest first")
            assert listed(user) == [f"49301{n:05d}" for n in range(2, -1, -1)]
            await user.should_not_see(marker="history-older")
            user.find(marker="history-newer").click()
            await user.should_see(f"calls 1–{HISTORY_PAGE}, newest first")
            user.find(marker="history-backend").elements.pop().value = "gpt_live"
            user.find(marker="history-reason").elements.pop().value = "max_duration"
            user.find("Search").click()
            await user.should_see(f"calls 1–{total // 2}, newest first")
            assert listed(user) == [f"49301{n:05d}" for n in range(total - 1, -1, -1) if n % 2]
            user.find(marker="history-reason").elements.pop().value = "caller_hangup"
            user.find("Search").click()
            await user.should_see("No calls found.")
    finally:
        await store.close()


def test_the_live_view_shows_keys_as_dtmf_mask_says() -> None:
    state = LiveState(keep_s=60)
    state.on_event(ev.CallStarted(call_id="c1", channel_id="c1", caller_number="100", extension="100"))
    for key in "47":
        state.on_event(ev.DtmfReceived(call_id="c1", digit=key))                 # masked: the default
    state.on_event(ev.DtmfReceived(call_id="c1", digit="1", masked=False))
    assert state.calls["c1"].dtmf == "xx1"


def test_a_long_call_keeps_only_its_latest_turns_tools_and_keys() -> None:
    from aribot.plugins.ui_nicegui import live
    state = LiveState(keep_s=60)
    state.on_event(ev.CallStarted(call_id="c1", channel_id="c1", caller_number="100", extension="100"))
    for i in range(live.KEEP_TURNS + 20):
        state.on_event(ev.Transcript(call_id="c1", role="caller", item_id=f"u{i}", text=f"turn {i}"))
    for i in range(live.KEEP_TOOLS + 5):
        state.on_event(ev.ToolCalled(call_id="c1", tool="lookup", tool_call_id=f"t{i}", arguments="{}"))
    for _ in range(live.KEEP_KEYS + 10):
        state.on_event(ev.DtmfReceived(call_id="c1", digit="5", masked=False))
    view = state.calls["c1"]
    assert len(view.turns) == live.KEEP_TURNS and view.turns[-1].text == f"turn {live.KEEP_TURNS + 19}"
    assert len(view.tools) == live.KEEP_TOOLS and view.tools[-1].tool_call_id == f"t{live.KEEP_TOOLS + 4}"
    assert view.dtmf == "5" * live.KEEP_KEYS


@pytest.mark.parametrize(("event", "line"), [
    (ev.OutboundOutcome(call_id="c1", outcome="machine", detail="beep after 6.1 s"),
     "outbound call: machine (beep after 6.1 s)"),
    (ev.OutboundOutcome(call_id="c1", outcome="busy", detail=""), "outbound call: busy"),
    (ev.TransferProgress(call_id="c1", stage="no_answer", target="200@sales", detail="no answer within 5 s"), None),
    (ev.ListenStarted(call_id="c1", operator="aribot", client="127.0.0.1:5"), "listen-in started by aribot"),
    (ev.SpeechStarted(call_id="c1", item_id="i1"), None),
])
def test_the_timeline_says_what_a_telephony_event_means(event: ev.Event, line: str | None) -> None:
    from aribot.plugins.ui_nicegui.timeline import describe

    text = describe(event.name, event.to_json())
    if isinstance(event, ev.TransferProgress):
        assert text is not None and "200@sales" in text and "no answer" in text
    else:
        assert text == line
