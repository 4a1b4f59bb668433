"""Bad input from Asterisk costs only itself: a malformed ARI event (captured real events, mutated)
gives one log line naming the event type and the channel and what aribot did, and the event stream
goes on; handling that raises anyway is contained the same way; a call's event queue is bounded;
the ARI event task that dies anyway shows in /healthz (503, a short reason without Asterisk's
address) and comes back by itself."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given

from aribot.core import app as app_module
from aribot.core import call as call_module
from aribot.core.app import App, configure
from aribot.core.ari_events import AriEvent, AriEventError, Channel, parse_event
from aribot.core.call import Call
from aribot.sandbox.ports import free_tcp_port
from tests.contract.ari_docs import CAPTURES
from tests.unit.mutations import mutate, mutations

CAPTURED = [json.loads(line) for path in sorted(CAPTURES.glob("*.jsonl"))
            for line in path.read_text().splitlines() if line.strip()]
START = CAPTURED[0]                       # the caller's StasisStart
CALLER = START["channel"]["id"]
LEG = next(e["channel"]["id"] for e in CAPTURED[1:] if e["type"] == "StasisStart")
PLAYBACK = next(e for e in CAPTURED if e["type"] == "PlaybackStarted")
DTMF = next(e for e in CAPTURED if e["type"] == "ChannelDtmfReceived")


class InertCall(Call):
    """A real Call (constructor, event queue, event handling) that does not run: no ARI requests."""

    async def run(self) -> None:
        pass


def write_settings(folder: Path, ari_url: str = "http://127.0.0.1:1", extra: str = "") -> Path:
    path = folder / "settings.toml"
    path.write_text(f'[ari]\nurl = "{ari_url}"\nreconnect_min_delay = 0.05\nreconnect_max_delay = 0.3\n'
                    f'[http]\nport = 0\n[ui]\nenabled = false\n[history]\nenabled = false\n{extra}')
    return path


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> App:
    monkeypatch.setattr(app_module, "Call", InertCall)
    return App(*configure(write_settings(tmp_path)))


def problems_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("aribot") and r.levelno >= logging.WARNING]


def another_caller(number: int) -> dict[str, Any]:
    return mutate(START, ("channel", "id"), f"9999.{number}")


# (what is wrong, the malformed event, a call is set up for it)
ISSUE_CASES = {
    "caller is a string": (mutate(START, ("channel", "caller"), "alice"), True),
    "priority is not a number": (mutate(START, ("channel", "dialplan", "priority"), "abc"), True),
    "dialplan is a list": (mutate(START, ("channel", "dialplan"), ["x"]), True),
    "channelvars is a string": (mutate(START, ("channel", "channelvars"), "A=1"), True),
    "args is a string": (mutate(START, ("args",), "100"), True),
    "args holds objects": (mutate(START, ("args",), [{"extension": "100"}, None]), True),
    "channel without id": (mutate(START, ("channel", "id"), None), False),
    "channel is a string": (mutate(START, ("channel",), "PJSIP/x"), False),
    "channel id is a number": (mutate(START, ("channel", "id"), 5), False),
    "type is not a string": (mutate(START, ("type",), ["StasisStart"]), False),
}


@pytest.mark.parametrize("case", list(ISSUE_CASES), ids=list(ISSUE_CASES))
async def test_one_malformed_event_costs_only_itself(app: App, caplog: pytest.LogCaptureFixture, case: str) -> None:
    event, makes_call = ISSUE_CASES[case]
    app._on_message(json.dumps(event))                      # nothing escapes the handler
    lines = problems_logged(caplog)
    assert len(lines) == 1, lines                            # one line: type, channel, what aribot did
    if isinstance(event["type"], str):
        assert event["type"] in lines[0]
    channel = event["channel"]
    if isinstance(channel, dict) and isinstance(channel.get("id"), str):
        assert channel["id"] in lines[0]
    assert ("taken as empty and the event handled" if makes_call else "ignored") in lines[0]
    assert (CALLER in app.calls) is makes_call
    if makes_call:
        assert app.calls[CALLER].caller_number == ""
    app._on_message(json.dumps(another_caller(1)))          # the stream goes on
    assert "9999.1" in app.calls and len(problems_logged(caplog)) == 1


async def test_malformed_fields_of_a_live_calls_events_are_taken_as_empty(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    app._on_message(json.dumps(START))
    call = app.calls[CALLER]
    events = [mutate(DTMF, ("digit",), 5), mutate(DTMF, ("duration_ms",), "long"),
              mutate(PLAYBACK, ("playback", "target_uri"), ["channel:x"]), mutate(PLAYBACK, ("playback",), "pb-1")]
    for event in events:
        event = mutate(event, ("channel", "id"), CALLER) if "channel" in event else event
        app._on_message(json.dumps(event))
    assert len(problems_logged(caplog)) == len(events)
    while not call._events.empty():
        call._on_ari_event(call._events.get_nowait())     # the call's own handling does not raise
    assert len(problems_logged(caplog)) == len(events)


async def test_handling_that_raises_anyway_is_one_line_and_the_new_caller_is_not_left_waiting(
    app: App, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused: list[str] = []

    async def refuse(channel_id: str) -> None:
        refused.append(channel_id)

    def broken(self: Call, *args: Any) -> None:
        raise RuntimeError("a bug in setting up the call")

    monkeypatch.setattr(app, "_refuse", refuse)
    monkeypatch.setattr(InertCall, "__init__", broken)
    app._on_message(json.dumps(START))
    await asyncio.sleep(0)
    (line,) = problems_logged(caplog)
    assert "StasisStart" in line and CALLER in line and "RuntimeError" in line
    assert "continued in the dialplan" in line and refused == [CALLER]
    assert app.bad_events == 1


@given(event=mutations(CAPTURED))
def test_no_mutation_of_a_captured_event_makes_parsing_raise(event: dict[str, Any]) -> None:
    try:
        parsed = parse_event(json.dumps(event))
    except AriEventError:
        return
    assert isinstance(parsed, AriEvent) and isinstance(parsed.type, str)
    assert parsed.channel is None or isinstance(parsed.channel, Channel) and parsed.channel.id
    if parsed.channel is not None:
        assert all(isinstance(getattr(parsed.channel, name), str) for name in (
            "id", "name", "state", "caller_number", "caller_name", "context", "exten", "protocol_id"))
        assert isinstance(parsed.channel.priority, int) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in parsed.channel.channelvars.items())
        assert isinstance(parsed.channel.is_media_leg, bool)
    for name in ("bridge_id", "playback_id", "playback_channel_id"):
        assert getattr(parsed, name) is None or isinstance(getattr(parsed, name), str)
    assert all(isinstance(a, str) for a in parsed.args)
    assert isinstance(parsed.digit, str) and isinstance(parsed.application, str)
    assert isinstance(parsed.playback_state, str)
    assert isinstance(parsed.number("duration"), int) and isinstance(parsed.number("duration_ms"), int)


def test_no_mutation_of_a_captured_event_escapes_the_router_or_the_call(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every mutated event goes through the App's router and, when it is for the live call (its
    caller or its media leg), through that Call's own handling: nothing escapes either, and each
    event logs at most one line."""
    monkeypatch.setattr(app_module, "Call", InertCall)
    server = App(*configure(write_settings(tmp_path)))
    loop = asyncio.new_event_loop()
    handler = logging.Handler()
    lines: list[logging.LogRecord] = []
    handler.emit = lines.append  # type: ignore[method-assign]
    logging.getLogger("aribot").addHandler(handler)

    async def one(event: dict[str, Any]) -> None:
        server.calls.clear()
        server._legs.clear()
        call = InertCall(server, Channel.from_json(START["channel"]), ["100"])
        call.leg_id = LEG
        server.calls[CALLER] = call
        server.register_leg(call)
        del lines[:]
        server._on_message(json.dumps(event))
        said = [r.getMessage() for r in lines if r.levelno >= logging.WARNING]
        assert len(said) <= 1 and all("\n" not in line and len(line) < 1000 for line in said), said
        for live in list(server.calls.values()):
            while not live._events.empty():
                live._on_ari_event(live._events.get_nowait())

    tried: list[str] = []

    @given(event=mutations(CAPTURED, keep_type=True))
    def check(event: dict[str, Any]) -> None:
        tried.append(event["type"])
        loop.run_until_complete(one(event))

    try:
        check()
        assert len(tried) >= 100 and len(set(tried)) >= 8
    finally:
        logging.getLogger("aribot").removeHandler(handler)
        loop.run_until_complete(server.bus.drain())
        loop.close()


async def test_a_calls_event_queue_is_bounded_and_drops_are_counted_once(
    app: App, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(call_module, "EVENT_QUEUE", 50)
    call = InertCall(app, Channel.from_json(START["channel"]), ["100"])
    talking = parse_event(json.dumps(mutate(CAPTURED[12], ("channel", "id"), CALLER)))
    for _ in range(80):
        call.deliver(talking)
    assert call._events.qsize() == 50 and call.dropped_events == 30
    (line,) = problems_logged(caplog)
    assert CALLER in line and "dropping new ones" in line


# --- the events WebSocket and /healthz ------------------------------------------------------------

class FakeAri:
    """Asterisk's ARI as far as the events WebSocket goes: every REST request answers 404."""

    def __init__(self) -> None:
        self.sockets: list[web.WebSocketResponse] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> str:
        server = web.Application()
        server.router.add_get("/ari/events", self._events)
        server.router.add_route("*", "/ari/{tail:.*}", self._other)
        self.runner = web.AppRunner(server, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        for ws in self.sockets:
            await ws.close()
        if self.runner is not None:
            await self.runner.cleanup()

    async def _events(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        async for _msg in ws:
            pass
        return ws

    async def _other(self, request: web.Request) -> web.Response:
        return web.json_response({"message": "Resource not found"}, status=404)

    async def send(self, event: dict[str, Any]) -> None:
        await self.sockets[-1].send_str(json.dumps(event))


@pytest.fixture
async def ari() -> AsyncIterator[FakeAri]:
    fake = FakeAri()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def running(ari: FakeAri, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[App]:
    monkeypatch.setattr(app_module, "Call", InertCall)
    server = App(*configure(write_settings(tmp_path, f"http://127.0.0.1:{ari.port}")))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def healthz(server: App) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{server.http.port}/healthz") as resp:
        return resp.status, await resp.json()


async def wait_for(predicate: Any, what: str, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"no {what} within {timeout} s"
        await asyncio.sleep(0.01)


async def test_the_event_stream_goes_on_after_an_event_whose_handling_raises(
    ari: FakeAri, running: App, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    await asyncio.wait_for(running.stream.connected.wait(), 5)
    original = App.route

    def route(self: App, event: AriEvent) -> None:
        if event.channel_id == CALLER:
            raise KeyError("a bug somewhere in the handling")
        original(self, event)

    monkeypatch.setattr(App, "route", route)
    caplog.clear()
    await ari.send(mutate(START, ("channel", "caller"), "alice"))   # malformed, and its handling raises
    await ari.send(another_caller(2))
    await wait_for(lambda: "9999.2" in running.calls, "call for the next event")
    assert running.ari_connected and running.stream.connects == 1 and running.bad_events == 1
    assert (await healthz(running))[0] == 200
    about = [line for line in problems_logged(caplog) if CALLER in line]
    assert len([line for line in about if "malformed fields" in line]) == 1
    assert len([line for line in about if "could not be handled (KeyError" in line]) == 1


async def test_healthz_names_no_address_while_asterisk_is_unreachable(tmp_path: Path) -> None:
    port = free_tcp_port()
    server = App(*configure(write_settings(tmp_path, f"http://127.0.0.1:{port}")))
    await server.start()
    try:
        await wait_for(lambda: server.stream.last_error, "connection attempt")
        status, body = await healthz(server)
        assert status == 503 and body["ari"] == "disconnected"
        assert str(port) not in body["error"] and "127.0.0.1" not in body["error"], body
        assert body["error"].startswith("Asterisk unreachable")
        assert str(port) in server.stream.last_error          # the log keeps the detail
    finally:
        await server.stop()


async def test_an_ari_event_task_that_dies_shows_in_healthz_and_comes_back(
    ari: FakeAri, running: App, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    await asyncio.wait_for(running.stream.connected.wait(), 5)
    assert (await healthz(running))[0] == 200
    original = running.stream.run
    deaths = [RuntimeError("the event task died")]

    async def dying_run() -> None:
        if deaths:
            raise deaths.pop()
        await original()

    # the task dies (a bug no guard caught): force it, by cancelling the running task's WebSocket
    # and letting the next run() fail outright
    monkeypatch.setattr(running.stream, "run", dying_run)
    task = running._stream_task
    assert task is not None
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    status, body = await healthz(running)
    assert status == 503 and body["error"] == "the ARI event task stopped; restarting", body
    await wait_for(lambda: running._stream_task is not task and running._stream_task.done(), "the failing restart")
    status, body = await healthz(running)
    assert status == 503 and str(ari.port) not in json.dumps(body)
    await wait_for(lambda: running.ari_connected, "reconnect", timeout=5)
    assert (await healthz(running))[0] == 200
    await ari.send(another_caller(3))                      # and events flow again
    await wait_for(lambda: "9999.3" in running.calls, "call after the restart")
    assert any("ARI event task ended unexpectedly" in line for line in problems_logged(caplog))
