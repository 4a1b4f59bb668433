"""RealtimeSession's own response requests: one at a time, retried after a racing VAD response,
correlated by metadata (or without it), tool outputs answered after their response is done."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest

from aribot.core.backend import SessionSetup
from aribot.plugins.local_backend.realtime.errors import ProtocolError
from aribot.plugins.local_backend.realtime.ga_schema import client_event_specs
from aribot.plugins.openai_realtime.client import RealtimeConfig
from aribot.plugins.openai_realtime.session import RealtimeBackend
from tests.unit.backend_host import RecordingHost


class StrictConnection:
    """Takes the session's frames as the strict fake server does: each must pass the fake's GA
    client-event rules (the same specs its protocol engine applies), or the test fails with the
    fake's own error. The server side is played by each test, event by event."""

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.specs = client_event_specs(azure=False)

    async def send(self, event: dict) -> None:
        kind = event.get("type")
        assert kind in self.specs, f"{kind!r} is not a GA client event"
        try:
            self.specs[kind](json.loads(json.dumps(event)), "")
        except ProtocolError as error:
            raise AssertionError(f"the strict fake refuses {kind}: {error}") from None
        self.sent.append(event)


def make_session() -> tuple[RealtimeBackend, StrictConnection]:
    setup = SessionSetup(audio_format="ulaw", instructions="be brief", voice="marin", tools=[])
    session = RealtimeBackend(RecordingHost(), setup, RealtimeConfig(url="ws://127.0.0.1:9/v1/realtime"))
    conn = StrictConnection()
    session.conn, session.ready = conn, True  # type: ignore[assignment]
    return session, conn


def creates(conn: StrictConnection) -> list[dict]:
    return [e for e in conn.sent if e["type"] == "response.create"]


async def test_request_waits_for_the_active_response_and_retries_after_a_race() -> None:
    session, conn = make_session()
    await session.handle({"type": "response.created", "response": {"id": "vad1"}})
    answered = await session.request_response("say hi")
    assert creates(conn) == []                                   # a response is active: wait
    await session.handle({"type": "response.done", "response": {"id": "vad1", "status": "completed"}})
    first = creates(conn)
    assert len(first) == 1 and first[0]["response"]["instructions"] == "say hi"
    # a VAD response raced ours: the server refuses our create; aribot retries after it is done
    await session.handle({"type": "response.created", "response": {"id": "vad2"}})
    await session.handle({"type": "error", "error": {"type": "invalid_request_error",
                          "code": "conversation_already_has_active_response", "message": "busy",
                          "event_id": first[0]["event_id"]}})
    await session.handle({"type": "response.done", "response": {"id": "vad2", "status": "completed"}})
    assert len(creates(conn)) == 2 and not answered.done()
    tag = creates(conn)[1]["response"]["metadata"]
    await session.handle({"type": "response.created", "response": {"id": "r3", "metadata": tag}})
    await session.handle({"type": "response.done", "response": {"id": "r3", "metadata": tag, "status": "completed"}})
    assert answered.result() == "completed"


async def test_a_server_that_does_not_echo_metadata_still_resolves_requests() -> None:
    session, conn = make_session()
    first = await session.request_response()
    second = await session.request_response()
    assert len(creates(conn)) == 1
    await session.handle({"type": "response.created", "response": {"id": "a"}})
    await session.handle({"type": "response.done", "response": {"id": "a", "status": "cancelled"}})
    assert first.result() == "cancelled" and len(creates(conn)) == 2
    await session.handle({"type": "response.created", "response": {"id": "b"}})
    await session.handle({"type": "response.done", "response": {"id": "b", "status": "completed"}})
    assert second.result() == "completed"


async def test_tool_output_then_one_response_create_after_response_done() -> None:
    session, conn = make_session()
    await session.handle({"type": "response.created", "response": {"id": "r1"}})
    await session.handle({"type": "response.function_call_arguments.done", "response_id": "r1",
                          "call_id": "call_1", "name": "lookup", "arguments": "{}"})
    for task in list(session._tasks):
        await task
    assert session.host.tool_runs == [("lookup", "call_1", "{}", "r1")]   # core runs it (RecordingHost here)
    outputs = [e for e in conn.sent if e["type"] == "conversation.item.create"]
    assert outputs[0]["item"] == {"type": "function_call_output", "call_id": "call_1", "output": '{"ok": true}'}
    assert creates(conn) == []                                   # r1 is still active
    await session.handle({"type": "response.done", "response": {"id": "r1", "status": "completed"}})
    assert len(creates(conn)) == 1


# --- caller audio into the session --------------------------------------------------------------

class WritableConnection(StrictConnection):
    """send_now() writes at once unless ``busy`` (a full socket buffer): then send() must be used."""

    def __init__(self) -> None:
        super().__init__()
        self.busy = False
        self.direct = 0

    def send_now(self, message: str) -> bool:
        if self.busy:
            return False
        self.direct += 1
        self.sent.append(json.loads(message))
        return True

    async def send(self, event: dict | str) -> None:
        self.sent.append(json.loads(event) if isinstance(event, str) else event)


def audio_session(frames_per_append: int) -> tuple[RealtimeBackend, WritableConnection]:
    session, _ = make_session()
    session._frames_per_append = frames_per_append
    conn = WritableConnection()
    session.conn = conn  # type: ignore[assignment]
    return session, conn


def appended(conn: StrictConnection) -> list[bytes]:
    return [base64.b64decode(e["audio"]) for e in conn.sent if e["type"] == "input_audio_buffer.append"]


async def test_frames_are_written_at_once_and_queue_in_order_while_the_socket_is_busy() -> None:
    session, conn = audio_session(1)
    frames = [bytes([n]) * 160 for n in range(10)]
    for frame in frames[:3]:
        session.feed(frame, time.perf_counter())
    assert conn.direct == 3 and appended(conn) == frames[:3]     # no task needed
    conn.busy = True
    session.feed(frames[3], time.perf_counter())                 # the socket is full: queued
    conn.busy = False
    session.feed(frames[4], time.perf_counter())                 # behind it, not before it
    assert appended(conn) == frames[:3]
    sender = asyncio.ensure_future(session._send_audio())
    for _ in range(10):
        await asyncio.sleep(0)
    session.feed(frames[5], time.perf_counter())                 # queue drained: direct again
    assert appended(conn) == frames[:6] and conn.direct == 4
    sender.cancel()
    assert session.stats["appended_frames"] == 6 and session.host.metrics.inbound_latency.count == 6


async def test_append_frames_gathers_frames_and_a_rollover_carries_the_partial_batch() -> None:
    session, conn = audio_session(3)
    frames = [bytes([n]) * 160 for n in range(8)]
    for frame in frames:
        session.feed(frame, time.perf_counter())
    assert appended(conn) == [b"".join(frames[0:3]), b"".join(frames[3:6])]
    session.ready = False                                        # the socket closed: a rollover
    session.feed(b"\x09" * 160, None)
    await session._stop_sender()
    assert [payload for payload, _t in session._pending] == [b"".join(frames[6:8]), b"\x09" * 160]


async def test_cancelled_responses_are_remembered_up_to_a_bound(monkeypatch) -> None:
    from aribot.plugins.openai_realtime import session as realtime_session
    monkeypatch.setattr(realtime_session, "MAX_IDS", 3)
    session, _conn = make_session()
    for i in range(5):                      # five barge-ins, each cancelling the active response
        session._cancel_noted(f"resp_{i}")
    assert list(session.cancelled) == ["resp_2", "resp_3", "resp_4"]   # the oldest forgotten first
    assert "resp_4" in session.cancelled and "resp_0" not in session.cancelled


async def test_speech_stopped_dates_the_callers_last_word_from_the_audio_that_carried_it(monkeypatch) -> None:
    """Server VAD reports speech_stopped with audio_end_ms = the end of the silence it waited for
    (silence_duration_ms, 500 by default): the caller's last word is the audio 500 ms before, and
    the turn's response latency counts from when that audio reached aribot, not from the event."""
    from aribot.core import events as ev
    from aribot.plugins.openai_realtime import session as realtime_session

    session, _conn = audio_session(1)
    base = 1000.0
    for n in range(100):                          # 2 s of caller audio, frame n arrived at base + n·20 ms
        session.feed(bytes([n]) * 160, base + n * 0.02)
    monkeypatch.setattr(realtime_session.time, "perf_counter", lambda: base + 10.0)
    for end_ms in (1800, 5000, None):             # 1300 ms = the end of frame 64, which arrived at base + 1.28
        await session.on_input_audio_buffer_speech_stopped(
            {"type": "input_audio_buffer.speech_stopped", "item_id": "u1",
             **({"audio_end_ms": end_ms} if end_ms is not None else {})})
    stopped = session.host.of(ev.SpeechStopped)
    assert [e.item_id for e in stopped] == ["u1"] * 3
    assert stopped[0].silence_ms == pytest.approx((10.0 - 1.30) * 1000)
    assert stopped[1].silence_ms is None          # audio it never had: not dated
    assert stopped[2].silence_ms is None          # nothing said: not dated
