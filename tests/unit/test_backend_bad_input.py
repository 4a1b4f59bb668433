"""Bad input from the AI service costs only itself. Against the strict fakes over real WebSockets:
malformed server events mid-session (``response: null``, ``delta: 5``, ``error: "text"``, ``item``
a list …) are logged, one line each with the event type and the call, and skipped; the session
goes on and the next answer reaches the call byte for byte. Property tests: any mutation of the
events the fakes really send never raises out of a backend's event handling. A session that
fails anyway ends the call politely (fallback, reason ``ai_failed``). Queues toward a slow
service are bounded."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given

from aribot.core import events as ev
from aribot.core.backend import BackendType, Capabilities, SessionLost, SessionSetup, SpeechBackend
from aribot.core.conversation import Conversation
from aribot.plugins.gpt_live import session as live
from aribot.plugins.gpt_live.session import GptLiveBackend, GptLiveConfig
from aribot.plugins.local_backend.realtime.script import Script as RealtimeScript
from aribot.plugins.local_backend.realtime.script import Turn as RealtimeTurn
from aribot.plugins.openai_realtime import session as realtime
from aribot.plugins.openai_realtime.client import RealtimeConfig
from aribot.plugins.openai_realtime.session import RealtimeBackend
from tests.fake_gpt_live import FakeGptLiveServer
from tests.fake_gpt_live import Script as LiveScript
from tests.fake_gpt_live import Turn as LiveTurn
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab.audio import silence, speech
from tests.lab.wait import until
from tests.unit.backend_host import RecordingHost
from tests.unit.mutations import mutations

KEY = "test-key"
TOOLS = [{"type": "function", "name": "current_time", "description": "the time now",
          "parameters": {"type": "object", "properties": {}}}]
SETUP = SessionSetup(audio_format="ulaw", instructions="Answer briefly.", voice="marin", tools=TOOLS)


def lines_about(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and needle in r.getMessage() and "c1" in r.getMessage()]


def frames(audio: bytes) -> list[bytes]:
    return [audio[i:i + 160] for i in range(0, len(audio), 160)]


# --- OpenAI Realtime ------------------------------------------------------------------------------

REALTIME_BAD = [   # (the event type the log line names, the raw frame)
    ("response.created", {"type": "response.created", "event_id": "e1", "response": None}),
    ("response.output_audio.delta", {"type": "response.output_audio.delta", "event_id": "e2", "delta": 5,
                                     "item_id": "i1", "response_id": "r1", "output_index": 0, "content_index": 0}),
    ("response.output_item.added", {"type": "response.output_item.added", "event_id": "e3", "item": ["x"]}),
    ("response.output_item.done", {"type": "response.output_item.done", "event_id": "e4", "item": "x"}),
    ("response.done", {"type": "response.done", "event_id": "e5", "response": None}),
    ("response.output_audio.delta", {"type": "response.output_audio.delta", "delta": "AAAA",
                                     "item_id": {"x": 1}, "response_id": []}),
    ("response.function_call_arguments.done", {"type": "response.function_call_arguments.done", "response_id": [],
                                               "call_id": "call_1", "name": "current_time", "arguments": "{}"}),
]


def realtime_backend(url: str, host: RecordingHost | None = None) -> tuple[RealtimeBackend, RecordingHost]:
    host = host or RecordingHost()
    return RealtimeBackend(host, SETUP, RealtimeConfig(url=url, api_key=KEY)), host


@pytest.fixture
async def realtime_server() -> AsyncIterator[FakeRealtimeServer]:
    async with FakeRealtimeServer(api_key=KEY) as server:
        yield server


async def test_realtime_malformed_events_mid_session_are_skipped_and_the_next_answer_plays(
    realtime_server: FakeRealtimeServer, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = speech(400, seed=1), speech(600, seed=2)
    realtime_server.script = RealtimeScript(turns=[RealtimeTurn.audio(first, "First."),
                                                   RealtimeTurn.audio(second, "Second.")], speed=8.0)
    backend, host = realtime_backend(realtime_server.url)
    await backend.start()
    serving = asyncio.create_task(backend.serve())
    conn = await realtime_server.wait_for_connection()
    assert await asyncio.wait_for(await backend.request_response(), 5) == "completed"
    for _kind, bad in REALTIME_BAD:
        await conn.send_raw(json.dumps(bad))
    await conn.send_raw(json.dumps({"type": "error", "event_id": "e9", "error": "text"}))
    said = await backend.request_response()
    assert await asyncio.wait_for(said, 5) == "completed"
    assert not serving.done()                                           # the session went on
    assert backend.stats["bad_events"] == len(REALTIME_BAD)
    assert bytes(conn.responses[1].audio) == second
    played = b"".join(iter(host.playout.pop, None))
    assert played.endswith(second)                                      # the next answer, byte for byte
    for kind in {kind for kind, _bad in REALTIME_BAD}:
        expected = sum(1 for k, _bad in REALTIME_BAD if k == kind)
        assert len(lines_about(caplog, f"Realtime {kind} event is malformed")) == expected
    assert lines_about(caplog, "Realtime error unknown: text")          # a text error is still reported
    await backend.close()
    assert await asyncio.wait_for(serving, 5) is None


async def realtime_corpus() -> list[dict[str, Any]]:
    """Every event the strict fake sends in a session with a caller turn (VAD, transcription), an
    answer, a tool call and the answer after it, and an error."""
    script = RealtimeScript(turns=[RealtimeTurn.audio(speech(300, seed=3), "Hello."),
                                   RealtimeTurn.function_call("current_time", {}),
                                   RealtimeTurn.audio(speech(300, seed=4), "It is noon.")],
                            caller_transcripts=["What time is it?"], speed=float("inf"))
    async with FakeRealtimeServer(api_key=KEY, script=script) as server:
        backend, host = realtime_backend(server.url)
        await backend.start()
        serving = asyncio.create_task(backend.serve())
        conn = await server.wait_for_connection()
        for frame in frames(silence(200) + speech(600, seed=5) + silence(800)):
            backend.feed(frame, None)
        await conn.wait_for_response_done(0)
        await backend.request_response()
        await conn.wait_for_response_done(2)
        await conn.send_event({"type": "error", "error": {"type": "invalid_request_error", "code": "x",
                                                          "message": "boom", "param": None, "event_id": None}})
        await conn.wait_for_event_type("error")
        await backend.close()
        await asyncio.wait_for(serving, 5)
        return [event for _at, event in conn.sent]


class Wire:
    """The socket side of a backend in a property test: takes everything, never blocks."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def send(self, event: Any) -> None:
        self.sent.append(event)

    def send_now(self, message: str) -> bool:
        self.sent.append(message)
        return True

    async def close(self) -> None:
        pass


def run_property(corpus_of: Callable[[], Any], check: Callable[[dict[str, Any]], Any], kinds_at_least: int) -> None:
    """Build the corpus, then ``check`` each mutated event on one event loop; records of the
    aribot loggers are collected in ``check.lines``."""
    loop = asyncio.new_event_loop()
    try:
        corpus = loop.run_until_complete(corpus_of())
        kinds = {event["type"] for event in corpus}
        assert len(kinds) >= kinds_at_least, kinds

        tried: list[str] = []

        @given(event=mutations(corpus, keep_type=True))
        def one(event: dict[str, Any]) -> None:
            tried.append(event["type"])
            loop.run_until_complete(check(event))

        one()
        assert len(tried) >= 100 and len(set(tried)) >= kinds_at_least // 2   # a search, not a token run
    finally:
        loop.run_until_complete(asyncio.sleep(0.05))   # spawned tool runs finish
        loop.close()


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def lines() -> Any:
    handler = Lines()
    logging.getLogger("aribot").addHandler(handler)
    yield handler
    logging.getLogger("aribot").removeHandler(handler)


def test_no_mutation_of_a_realtime_event_escapes_the_backend(lines: Lines) -> None:
    async def check(event: dict[str, Any]) -> None:
        backend, host = realtime_backend("ws://127.0.0.1:9/v1/realtime")
        backend.conn, backend.ready = Wire(), True   # type: ignore[assignment]
        del lines.records[:]
        await backend.handle(event)                   # nothing escapes
        if backend.stats.get("bad_events"):
            about = [r.getMessage() for r in lines.records if "malformed" in r.getMessage()]
            assert len(about) == 1 and event["type"][:80] in about[0] and "call c1" in about[0]

    run_property(realtime_corpus, check, kinds_at_least=15)


async def test_realtime_appends_waiting_for_a_slow_socket_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    class Stuck(Wire):
        def send_now(self, message: str) -> bool:
            return False

        async def send(self, event: Any) -> None:
            await asyncio.Event().wait()   # the service never reads

    backend, _host = realtime_backend("ws://127.0.0.1:9/v1/realtime")
    backend.conn, backend.ready = Stuck(), True   # type: ignore[assignment]
    for n in range(realtime.SEND_BACKLOG + 40):
        backend.feed(bytes([n % 250]) * 160, None)
    assert backend._outq.qsize() == realtime.SEND_BACKLOG
    assert backend.stats["send_backlog_dropped"] == 40
    assert backend._outq.get_nowait()[0] == bytes([40]) * 160           # the oldest went, the newest stay
    assert len(lines_about(caplog, "not keeping up")) == 1


# --- GPT-Live -------------------------------------------------------------------------------------

LIVE_BAD = [
    ("response.event", {"type": "response.event", "event": "x"}),
    ("response.event", {"type": "response.event", "event": {"type": "response.output_item.done", "item": ["x"]}}),
    ("response.event", {"type": "response.event", "event": {"type": "response.completed",
                                                            "response": {"usage": {"input_tokens": "abc"}}}}),
]


@pytest.fixture(autouse=True)
def quick_timers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "UTTERANCE_END_S", 0.25)
    monkeypatch.setattr(live, "SPEECH_WAIT_S", 2.0)


def live_backend(url: str) -> tuple[GptLiveBackend, RecordingHost]:
    host = RecordingHost()
    cfg = GptLiveConfig(url=url, api_key=KEY, responses_model="gpt-5.5")
    return GptLiveBackend(host, SETUP, cfg), host


@pytest.fixture
async def live_server() -> AsyncIterator[FakeGptLiveServer]:
    async with FakeGptLiveServer(api_key=KEY, script=LiveScript(usage_interval_s=None)) as server:
        yield server


async def test_gpt_live_malformed_events_mid_session_are_skipped_and_the_next_answer_plays(
    live_server: FakeGptLiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = speech(400, seed=6), speech(500, seed=7)
    live_server.script = LiveScript(turns=[LiveTurn.speech(first, "First.", on="append"),
                                           LiveTurn.speech(second, "Second.", on="append")], usage_interval_s=None)
    backend, host = live_backend(live_server.url)
    await backend.start()
    conn = live_server.connections[-1]
    serving = asyncio.create_task(backend.serve())
    assert await asyncio.wait_for(await backend.request_response("Greet."), 5) == "completed"
    for _kind, bad in LIVE_BAD:
        await conn.send_raw(json.dumps(bad))
    for odd in ({"type": "error", "error": "text"}, {"type": "session.usage.updated", "usage": "lots"},
                {"type": "session.output_audio.delta", "delta": 5}):
        await conn.send_raw(json.dumps(odd))                            # handled as they are, one line or none
    said = await backend.request_response("Go on.")
    assert await asyncio.wait_for(said, 5) == "completed"
    assert not serving.done()
    assert host.playout.received_ms("live-out-2") == 500
    played = b"".join(iter(host.playout.pop, None))
    assert played.endswith(second)                                      # the next answer, byte for byte
    assert backend.stats["bad_events"] == len(LIVE_BAD)
    assert len(lines_about(caplog, "GPT-Live response.event event is malformed")) == len(LIVE_BAD)
    assert lines_about(caplog, "GPT-Live error unknown: text")            # a text error is still reported
    assert lines_about(caplog, "GPT-Live audio delta is not valid base64; dropped")
    await backend.close()
    await asyncio.wait_for(serving, 5)


async def live_corpus() -> list[dict[str, Any]]:
    script = LiveScript(turns=[LiveTurn.speech(speech(300, seed=8), "Hello.", on="append"),
                               LiveTurn.function_call("current_time", {}, answer="It is noon.", on="append"),
                               LiveTurn.speech(speech(300, seed=9), "It is noon.", on="backend")],
                        caller_transcripts=["What time is it?"], usage_interval_s=0.2)
    async with FakeGptLiveServer(api_key=KEY, script=script) as server:
        backend, _host = live_backend(server.url)
        await backend.start()
        conn = server.connections[-1]
        serving = asyncio.create_task(backend.serve())
        await asyncio.wait_for(await backend.request_response("Greet."), 5)
        await backend.request_response("What time is it?")
        await conn.wait_for_turn(2)
        await conn.emit({"type": "error", "event_id": "evt_x", "error": {
            "type": "invalid_request_error", "code": "rate_limit_exceeded", "message": "slow down", "param": None}})
        await until(lambda: backend.stats["errors"], "the error event")
        await backend.close()
        await asyncio.wait_for(serving, 5)
        return [event for _at, event in conn.sent]


def test_no_mutation_of_a_gpt_live_event_escapes_the_backend(lines: Lines) -> None:
    async def check(event: dict[str, Any]) -> None:
        backend, host = live_backend("ws://127.0.0.1:9/v1/live/sessions")
        backend.conn, backend.ready = Wire(), True   # type: ignore[assignment]
        del lines.records[:]
        lost = await backend.handle(event)            # nothing escapes
        assert lost is None or isinstance(lost, SessionLost)
        if backend.stats.get("bad_events"):
            about = [r.getMessage() for r in lines.records if "malformed" in r.getMessage()]
            assert len(about) == 1 and str(event["type"])[:80] in about[0] and "call c1" in about[0]
        if backend._quiet is not None:
            backend._quiet.cancel()

    run_property(live_corpus, check, kinds_at_least=6)


async def test_gpt_live_frames_waiting_for_a_slow_socket_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    gate = asyncio.Event()

    class Stuck(Wire):
        def send_now(self, message: str) -> bool:
            return False

        async def send(self, event: Any) -> None:
            await gate.wait()   # the service reads nothing until the gate opens

    backend, _host = live_backend("ws://127.0.0.1:9/v1/live/sessions")
    backend.conn, backend.ready = Stuck(), True   # type: ignore[assignment]
    for n in range(live.SEND_BACKLOG + 30):
        backend.feed(bytes([n % 250]) * 160, None)
    assert len(backend._tasks) == live.SEND_BACKLOG and backend.stats["send_backlog_dropped"] == 30
    assert len(lines_about(caplog, "not keeping up")) == 1
    gate.set()
    await until(lambda: not backend._tasks, "the waiting frames sent")
    backend.feed(b"\x01" * 160, None)                                   # room again once they are sent
    assert len(backend._tasks) == 1 and backend.stats["send_backlog_dropped"] == 30
    await until(lambda: not backend._tasks, "the frame sent")


# --- a session that fails anyway -----------------------------------------------------------------

class FailingBackend(SpeechBackend):
    """A backend whose serve() raises (a bug, or input it did not expect) after a moment."""

    capabilities = Capabilities(turn_events=False, truncation=False, tools="none")

    async def start(self) -> None:
        self.ready = True

    async def serve(self) -> SessionLost | None:
        await asyncio.sleep(0.01)
        raise AttributeError("'NoneType' object has no attribute 'get'")

    async def close(self) -> None:
        pass

    def feed(self, frame: bytes, received_at: float | None) -> None:
        pass

    responding = False
    caller_speaking = False

    async def add_text(self, role: str, text: str) -> None:
        pass

    async def request_response(self, instructions: str | None = None, tag: str = "") -> asyncio.Future[str]:
        raise NotImplementedError

    async def end_turn(self) -> asyncio.Future[str]:
        raise NotImplementedError

    async def interrupt(self, cancel: bool) -> None:
        pass

    async def update(self, change: Any) -> str:
        return ""


class EndingCall(RecordingHost):
    """The part of a Call a Conversation uses: ``fail`` records how the call was ended."""

    def __init__(self) -> None:
        super().__init__(SimpleNamespace(ai=SimpleNamespace(connect_timeout=5.0, reconnect_attempts=2,
                                                            max_session_s=0, reconnect_filler=[],
                                                            input_buffer_ms=1000)))
        self.failures: list[tuple[str, str]] = []

    @property
    def stopping(self) -> bool:
        return bool(self.failures)

    def fail(self, reason: str, detail: str = "") -> None:
        self.failures.append((reason, detail))

    async def wait_playout(self, limit: float = 30.0) -> None:
        pass


@pytest.mark.parametrize("where", ["serve", "start", "resume"])
async def test_a_session_that_fails_anyway_ends_the_call_politely(where: str) -> None:
    class Failing(FailingBackend):
        can_resume = where == "resume"

        async def start(self) -> None:
            if where == "start":
                raise KeyError("expires_at")
            self.ready = True

        async def serve(self) -> SessionLost | None:
            await asyncio.sleep(0.01)
            if where == "resume":
                return SessionLost("closed_1006", "dropped")
            raise AttributeError("'NoneType' object has no attribute 'get'")

        async def resume(self) -> int:
            raise TypeError("a bug in resume")

    call = EndingCall()
    kind = BackendType("failing", Failing, Failing.capabilities)
    conversation = Conversation(call, kind, SETUP)   # type: ignore[arg-type]
    await asyncio.wait_for(conversation.run(), 5)
    assert len(call.failures) == 1                                       # the call ends with the fallback
    reason, detail = call.failures[0]
    if where == "resume":   # each new session failed: the give-up after the tries
        assert reason == "ai_closed" and "2 new session(s) failed" in detail
    else:
        assert reason == "ai_failed" and detail.startswith("backend failing: the session failed (")
    assert any(e.fatal for e in call.of(ev.BackendError))
