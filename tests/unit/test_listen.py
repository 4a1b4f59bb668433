"""Listen in (plugins/ui_nicegui/listen.py) against the real dashboard server (uvicorn on a real
socket) with a real WebSocket client: the socket needs a one-time token of its call, the
dashboard's Origin and password rules hold, the audio reaching the client is stereo with the
caller on the left and the AI on the right (known payloads fed through the call's real tap and
pacer), a slow browser costs bounded memory, the call's end closes the socket, and each session
is a ListenStarted / ListenStopped pair on the bus and in the call's history timeline."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from aribot.core import events as ev
from aribot.core.app import App
from aribot.core.ari_events import Channel
from aribot.core.call import Call
from aribot.core.playout import Pacer
from aribot.core.rtp import RtpSender
from aribot.plugins.ui_nicegui import listen
from tests.unit.dashboard_server import start_dashboard

PASSWORD = "dashboard-s3cret-0123"
CALLER, AI = 0x11, 0x22      # the bytes fed on each side (µ-law, neither is silence 0xFF)


class Endpoint:
    """Where the pacer's RTP packets go (no socket)."""

    def __init__(self) -> None:
        self.sent = 0

    def send(self, packet: bytes) -> None:
        self.sent += 1


def live_call(app: App, call_id: str = "c1") -> Call:
    """A real Call in the App's registry, with a real pacer (idle silence off: the AI side is
    silent between answers, as by default)."""
    call = Call(app, Channel(id=call_id, name=f"PJSIP/sipp-{call_id}", caller_number="100"), [])
    call.pacer = Pacer(call.playout, RtpSender(0), Endpoint(), call.metrics)  # type: ignore[arg-type]
    app.calls[call_id] = call
    return call


@pytest.fixture
async def dashboard(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[tuple[str, App]]:
    async for started in start_dashboard(monkeypatch, tmp_path):
        yield started


def recorder(app: App) -> list[ev.Event]:
    seen: list[ev.Event] = []
    for kind in (ev.ListenStarted, ev.ListenStopped):
        app.bus.subscribe(kind, seen.append, owner="test")
    return seen


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "aribot.ui" and "refused" in r.getMessage()]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def ws_url(base: str, call_id: str, token: str | None) -> str:
    return f"{base.replace('http', 'ws', 1)}/listen/{call_id}" + (f"?token={token}" if token is not None else "")


async def refused_status(http: aiohttp.ClientSession, url: str, **kw: Any) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        async with http.ws_connect(url, **kw):
            pass
    return refused.value.status


async def test_the_socket_needs_a_fresh_token_of_its_own_call(dashboard: tuple[str, App],
                                                              caplog: pytest.LogCaptureFixture,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    base, app = dashboard
    live_call(app, "c1")
    live_call(app, "c2")
    seen = recorder(app)
    async with aiohttp.ClientSession() as http:
        other = listen.mint_token(app, "c2")
        assert other is not None
        expired_soon = listen.TOKEN_TTL_S
        monkeypatch.setattr(listen, "TOKEN_TTL_S", 0.05)
        expired = listen.mint_token(app, "c1")
        monkeypatch.setattr(listen, "TOKEN_TTL_S", expired_soon)
        await asyncio.sleep(0.1)
        for token, why in ((None, "no valid listen token"), ("", "no valid listen token"),
                           ("guessed-0123456789", "no valid listen token"), (other, "another call"),
                           (expired, "expired")):
            caplog.clear()
            assert await refused_status(http, ws_url(base, "c1", token)) == 403, token
            lines = refusals(caplog)
            assert len(lines) == 1 and "listen-in to call 'c1'" in lines[0] and why in lines[0], lines
        token = listen.mint_token(app, "c1")
        async with http.ws_connect(ws_url(base, "c1", token)) as ws:
            header = await ws.receive_json()
            assert header == {"format": "ulaw", "rate": 8000, "channels": 2, "interleaved": True, "chunk_ms": 100}
        caplog.clear()
        assert await refused_status(http, ws_url(base, "c1", token)) == 403   # single use
        assert len(refusals(caplog)) == 1
        assert listen.mint_token(app, "no-such-call") is None
    await until(lambda: len(seen) == 2)
    assert [type(e) for e in seen] == [ev.ListenStarted, ev.ListenStopped]   # the refusals made no session


async def test_a_foreign_origin_is_refused_before_the_token(dashboard: tuple[str, App],
                                                            caplog: pytest.LogCaptureFixture) -> None:
    base, app = dashboard
    live_call(app)
    token = listen.mint_token(app, "c1")
    async with aiohttp.ClientSession() as http:
        assert await refused_status(http, ws_url(base, "c1", token), headers={"Origin": "http://evil.example"}) == 403
        assert any("WebSocket /listen/c1" in line for line in refusals(caplog))
        port = base.rsplit(":", 1)[1]
        async with http.ws_connect(ws_url(base, "c1", token), headers={"Origin": f"http://127.0.0.1:{port}"}) as ws:
            assert (await ws.receive_json())["channels"] == 2   # the token was not spent by the refusal


async def test_with_a_password_the_operator_is_the_basic_auth_user(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    async for base, app in start_dashboard(monkeypatch, tmp_path, password=PASSWORD):
        live_call(app)
        seen = recorder(app)
        token = listen.mint_token(app, "c1")
        async with aiohttp.ClientSession() as http:
            assert await refused_status(http, ws_url(base, "c1", token)) == 401
            wrong = {"Authorization": basic("aribot", "not-the-password-123")}
            assert await refused_status(http, ws_url(base, "c1", token), headers=wrong) == 401
            right = {"Authorization": basic("aribot", PASSWORD)}
            async with http.ws_connect(ws_url(base, "c1", token), headers=right) as ws:
                await ws.receive_json()
        await until(lambda: len(seen) == 2)
        started, stopped = seen
        assert isinstance(started, ev.ListenStarted) and started.operator == "aribot"
        assert started.client.startswith("127.0.0.1:")
        assert isinstance(stopped, ev.ListenStopped) and stopped.operator == "aribot"


async def test_listen_in_off_refuses_everything(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    async for base, app in start_dashboard(monkeypatch, tmp_path, listen_in="false"):
        live_call(app)
        assert listen.mint_token(app, "c1") is None
        listen._tokens["forged-token"] = ("c1", time.monotonic() + 60, app)
        async with aiohttp.ClientSession() as http:
            assert await refused_status(http, ws_url(base, "c1", "forged-token")) == 403
        assert any("ui.listen_in = false" in line for line in refusals(caplog))


async def test_caller_on_the_left_ai_on_the_right_aligned_in_time(dashboard: tuple[str, App]) -> None:
    """Known bytes through the real tap: the caller's RTP payloads (Call._on_caller_audio, what
    the RTP endpoint calls) and the AI's audio sent by the call's pacer; the client gets both
    channels advancing by elapsed time, padded with µ-law silence where a side had nothing."""
    base, app = dashboard
    call = live_call(app)
    token = listen.mint_token(app, "c1")
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(ws_url(base, "c1", token)) as ws:
            assert (await ws.receive_json())["format"] == "ulaw"
            await until(lambda: call.listeners)
            assert call.pacer is not None and call.pacer.on_frame is not None   # tapped while listened to
            began = time.monotonic()
            call.play_audio("item-1", bytes([AI]) * 8000, time.perf_counter())  # 1 s of AI speech
            for _ in range(50):                                                  # 1 s of caller speech
                call._on_caller_audio(bytes([CALLER]) * 160, time.perf_counter())
                await asyncio.sleep(0.02)
            data = bytearray()
            while time.monotonic() - began < 1.6:
                msg = await ws.receive(timeout=2)
                assert msg.type == aiohttp.WSMsgType.BINARY
                data += msg.data
            elapsed = time.monotonic() - began
    assert len(data) % 2 == 0
    left, right = data[0::2], data[1::2]
    assert set(left) <= {CALLER, 0xFF} and set(right) <= {AI, 0xFF}   # nothing crossed sides
    assert 7000 <= left.count(CALLER) <= 8000 and right.count(AI) == 8000   # the AI's second entirely
    assert abs(len(left) / 8000 - elapsed) < 0.4, (len(left), elapsed)       # both advance by time
    assert left.find(CALLER) != -1 and abs(left.find(CALLER) - right.find(AI)) < 800   # aligned (< 100 ms)
    await until(lambda: not call.listeners)
    assert call.pacer.on_frame is None   # untapped when nobody listens


async def test_the_end_of_the_call_closes_the_socket(dashboard: tuple[str, App]) -> None:
    base, app = dashboard
    call = live_call(app)
    seen = recorder(app)
    token = listen.mint_token(app, "c1")
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(ws_url(base, "c1", token)) as ws:
            await ws.receive_json()
            await until(lambda: call.listeners)
            call.finish("caller_hangup")
            while (msg := await ws.receive(timeout=3)).type == aiohttp.WSMsgType.BINARY:
                pass
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1000 and msg.extra == "call ended"
    await until(lambda: len(seen) == 2)
    assert [e.name for e in seen] == ["call.listen_started", "call.listen_stopped"]
    assert seen[1].seconds >= 0 and not call.listeners


async def test_a_sessions_events_land_in_the_call_history(dashboard: tuple[str, App]) -> None:
    base, app = dashboard
    call = live_call(app)
    token = listen.mint_token(app, "c1")
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(ws_url(base, "c1", token)) as ws:
            await ws.receive_json()
            await ws.receive(timeout=2)
    await until(lambda: not call.listeners)
    store = app.extensions["history"]
    await store.flush()
    record = await store.get("c1")
    kinds = [e["type"] for e in record["timeline"]]
    assert kinds == ["call.listen_started", "call.listen_stopped"], kinds
    assert record["timeline"][0]["data"]["operator"] == "local"


async def test_the_teardown_closes_listeners_before_call_ended(dashboard: tuple[str, App]) -> None:
    """Call._teardown closes every listener (ListenStopped is emitted) before CallEnded."""
    _base, app = dashboard
    call = live_call(app)
    order: list[str] = []
    app.bus.subscribe(None, lambda e: order.append(e.name), owner="test")

    class Sink:
        async def send_bytes(self, data: bytes) -> None:
            pass

    listener = listen.Listener(call, "local", "test", "ulaw")
    call.add_listener(listener)
    call.ari = None   # type: ignore[assignment]  # no ARI here: the teardown's deletes fail, logged

    async def no_ari(*_a: Any, **_kw: Any) -> None:
        return None

    call._delete = no_ari  # type: ignore[method-assign]
    call.caller_left.set()
    await asyncio.wait_for(call._teardown(), 5)
    assert order.index("call.listen_stopped") < order.index("call.ended"), order
    assert not call.listeners and call.pacer is not None and call.pacer.on_frame is None


async def test_a_slow_browser_costs_bounded_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """A socket that never takes a message: at most QUEUE_CHUNKS wait (the oldest dropped,
    counted); a side fed faster than real time keeps at most SLACK_S (the oldest dropped, counted)."""
    monkeypatch.setattr(listen, "QUEUE_CHUNKS", 3)

    class Call_:
        id, state, stopping = "c1", "talking", False
        listeners: list[Any] = []

        def remove_listener(self, _listener: Any) -> None:
            pass

        def emit(self, _event: ev.Event) -> None:
            pass

    class Stuck:
        async def send_bytes(self, data: bytes) -> None:
            await asyncio.Event().wait()

    listener = listen.Listener(Call_(), "local", "test", "ulaw")
    tasks = [asyncio.ensure_future(listener.run()), asyncio.ensure_future(listener.send_loop(Stuck()))]
    for _ in range(10):                              # 10 × 0.1 s, caller audio 5× faster than real time
        listener.caller_audio(bytes([CALLER]) * 4000)
        await asyncio.sleep(0.1)
        assert len(listener.queue) <= 3
        assert len(listener.caller) <= listen.SLACK_S * 8000 + 4000
    listener.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert listener.dropped_chunks >= 3 and listener.dropped_bytes > 0


async def test_a_client_that_takes_no_message_does_not_hold_the_call(dashboard: tuple[str, App],
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """A real client that never takes a message: the session's queue stays bounded while the call
    goes on, and the call's end still finishes the session. (A client that stops reading the TCP
    socket altogether takes minutes to fill loopback's buffers; the stalled send is the test above.)"""
    base, app = dashboard
    call = live_call(app)
    token = listen.mint_token(app, "c1")
    caplog.set_level(logging.INFO, "aribot.ui")
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(ws_url(base, "c1", token)):
            await until(lambda: call.listeners)
            listener = call.listeners[0]
            for _ in range(20):
                call._on_caller_audio(bytes([CALLER]) * 160, time.perf_counter())
                await asyncio.sleep(0.05)
                assert len(listener.queue) <= listen.QUEUE_CHUNKS
            call.finish("caller_hangup")
            await until(lambda: not call.listeners)
    assert any("stopped listening" in r.getMessage() for r in caplog.records)


async def until(predicate: Any, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
    return value


def test_the_header_and_interleaving() -> None:
    """Sans-IO: a chunk is caller/AI byte pairs, padded with the format's silence (A-law 0xD5)."""
    loop = FakeLoop()

    class Call_:
        id = "c1"

    listener = listen.Listener(Call_(), "local", "t", "alaw", loop=loop)
    assert json.loads(listener.header())["format"] == "alaw"
    listener.caller_audio(b"\x01\x02\x03")
    listener.ai_audio(b"\x09")
    loop.now = listen.DELAY_S + 4.5 / 8000
    assert listener.cut() == bytes([1, 9, 2, 0xD5, 3, 0xD5, 0xD5, 0xD5])
    assert listener.cut() is None


class FakeLoop:
    now = 0.0

    def time(self) -> float:
        return self.now


def test_a_stalled_loop_yields_at_most_a_queue_of_audio() -> None:
    loop = FakeLoop()

    class Call_:
        id = "c1"

    listener = listen.Listener(Call_(), "local", "t", "ulaw", loop=loop)
    loop.now = 30.0
    chunk = listener.cut()
    assert chunk is not None and len(chunk) == 2 * int(listen.QUEUE_CHUNKS * listen.CHUNK_S * 8000)
    loop.now = 30.1
    assert len(listener.cut() or b"") == 2 * 800


# --- the pacing cost of listening: .venv/bin/python -m tests.unit.test_listen [calls] [seconds] ----------------
async def pacing_figures(calls: int, seconds: float, listened: int) -> dict[str, float]:
    """``calls`` pacers with idle silence (a frame every 20 ms each, as on a busy server), the
    first ``listened`` of them tapped by a Listener whose task cuts chunks for a socket; pacing
    lateness (frame sent − its deadline) p50/p99/max in ms over all calls, and CPU share."""
    from aribot.core.metrics import CallMetrics, percentile
    from aribot.core.playout import Playout

    class Quiet:
        id, state, stopping = "bench", "talking", False

        def remove_listener(self, _listener: Any) -> None:
            pass

        def emit(self, _event: ev.Event) -> None:
            pass

    class Sink:
        async def send_bytes(self, data: bytes) -> None:
            pass

    pacers = [Pacer(Playout(), RtpSender(0), Endpoint(), CallMetrics(), idle_silence=True)  # type: ignore[arg-type]
              for _ in range(calls)]
    listeners = [listen.Listener(Quiet(), "bench", "-", "ulaw") for _ in range(listened)]
    for pacer, listener in zip(pacers, listeners):
        pacer.on_frame = listener.ai_audio

    async def caller_side() -> None:   # the caller's RTP: 160 bytes per 20 ms per listened call
        while True:
            for listener in listeners:
                listener.caller_audio(b"\x11" * 160)
            await asyncio.sleep(0.02)

    tasks = [asyncio.ensure_future(c) for listener in listeners for c in (listener.run(), listener.send_loop(Sink()))]
    tasks.append(asyncio.ensure_future(caller_side()))
    cpu = time.process_time()
    for pacer in pacers:
        pacer.start()
    await asyncio.sleep(seconds)
    cpu = time.process_time() - cpu
    for pacer in pacers:
        pacer.stop()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    late = [v for pacer in pacers for v in pacer.metrics.pacing_lateness.values()]
    return {"p50": percentile(late, 50) or 0.0, "p99": percentile(late, 99) or 0.0, "max": max(late),
            "cpu": 100 * cpu / seconds}


def tap_cost_ns(frames: int = 200_000) -> tuple[float, float]:
    """Per frame: the pacer's check with nobody listening, and a listener's append (ns)."""
    listener = listen.Listener(type("C", (), {"id": "x"})(), "bench", "-", "ulaw", loop=FakeLoop())
    frame, off = b"\xff" * 160, None
    began = time.perf_counter()
    for _ in range(frames):
        if off is not None:
            off(frame)
    idle = (time.perf_counter() - began) / frames * 1e9
    on = listener.ai_audio
    began = time.perf_counter()
    for n in range(frames):
        if on is not None:
            on(frame)
        if n % 5 == 0:
            listener.ai.clear()   # what the listener's task does every 100 ms
    return idle, (time.perf_counter() - began) / frames * 1e9


if __name__ == "__main__":
    import sys

    n_calls = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    span = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
    idle_ns, append_ns = tap_cost_ns()
    print(f"per frame: no listener {idle_ns:.0f} ns (the loop and the None check), "
          f"a listener's append {append_ns:.0f} ns")
    for tapped in (0, 1, n_calls):
        figures = asyncio.run(pacing_figures(n_calls, span, tapped))
        print(f"{n_calls} calls, {tapped} listened, {span:g} s: pacing lateness p50 {figures['p50']:.3f} ms, "
              f"p99 {figures['p99']:.3f} ms, max {figures['max']:.3f} ms; CPU {figures['cpu']:.1f} % of a core")

