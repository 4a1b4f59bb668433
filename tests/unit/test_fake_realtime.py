"""Tests of the fake OpenAI Realtime server itself, driven by a plain ``websockets`` client."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import math
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from aribot.plugins.local_backend.realtime.ids import BASE62
from tests.fake_realtime import FakeBugError, FakeConnection, FakeRealtimeServer, Script, Turn, default_audio
from tests.lab.wait import until
from tests.unit.timing import ManualClock

MODEL = "gpt-realtime"
SPEECH = bytes([0x10]) * 160  # one loud 20 ms µ-law frame
SILENCE = b"\xff" * 160  # one silent 20 ms µ-law frame
PCMU = {"type": "audio/pcmu"}
AUDIO_TURN_ORDER = [
    "response.created",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
    # deltas ...
    "response.output_audio.done",
    "response.output_audio_transcript.done",
    "response.content_part.done",
    "response.output_item.done",
    "conversation.item.done",
    "rate_limits.updated",
    "response.done",
]


class Client:
    """A minimal Realtime client on ``websockets`` that keeps every event it received."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(event))

    async def recv(self, timeout: float = 3.0) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.events.append(event)
        return event

    async def until(self, event_type: str, timeout: float = 3.0) -> dict[str, Any]:
        """Receive until an event of ``event_type`` arrives and return it."""
        deadline = time.monotonic() + timeout
        while True:
            event = await self.recv(max(0.01, deadline - time.monotonic()))
            if event["type"] == event_type:
                return event

    async def error(self) -> dict[str, Any]:
        error: dict[str, Any] = (await self.until("error"))["error"]
        return error

    async def append(self, audio: bytes, frame_bytes: int = 160) -> None:
        for offset in range(0, len(audio), frame_bytes):
            chunk = base64.b64encode(audio[offset:offset + frame_bytes]).decode()
            await self.send({"type": "input_audio_buffer.append", "audio": chunk})

    async def update(self, session: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
        """Send a session.update and return the session.updated or error event."""
        event: dict[str, Any] = {"type": "session.update", "session": session}
        if event_id:
            event["event_id"] = event_id
        await self.send(event)
        while True:
            reply = await self.recv()
            if reply["type"] in ("session.updated", "error"):
                return reply

    def types(self) -> list[str]:
        return [event["type"] for event in self.events]


@pytest.fixture
async def make_server() -> AsyncIterator[Callable[..., Any]]:
    """Start fake servers with a given Script (and a ``clock`` to pause on: real time if none);
    each is checked for fake bugs on teardown."""
    servers: list[FakeRealtimeServer] = []

    async def factory(clock: ManualClock | None = None, **script: Any) -> FakeRealtimeServer:
        script.setdefault("speed", math.inf)
        server = FakeRealtimeServer(script=Script(**script))
        if clock is not None:
            server.clock = clock
        servers.append(await server.start())
        return server

    yield factory
    for server in servers:
        async with asyncio.timeout(10):  # a hang guard: a response stuck on a test's clock must not block stop()
            await server.stop()
        server.assert_no_fake_bugs()


async def open_client(server: FakeRealtimeServer, *, model: str = MODEL, headers: dict[str, str] | None = None,
                      azure: bool = False) -> Client:
    url = (server.azure_url if azure else server.url) + f"?model={model}"
    ws = await connect(url, additional_headers=headers or {"Authorization": "Bearer test-key"}, max_size=None)
    client = Client(ws)
    assert (await client.recv())["type"] == "session.created"
    return client


async def pcmu_session(server: FakeRealtimeServer, **session: Any) -> tuple[Client, FakeConnection]:
    """A connected client whose session uses µ-law both ways (plus ``session`` overrides)."""
    client = await open_client(server)
    audio: dict[str, Any] = {"input": {"format": PCMU}, "output": {"format": PCMU}}
    for key in ("turn_detection", "transcription"):
        if key in session:
            audio["input"][key] = session.pop(key)
    if "voice" in session:
        audio["output"]["voice"] = session.pop("voice")
    reply = await client.update({"type": "realtime", "audio": audio, **session})
    assert reply["type"] == "session.updated", reply
    return client, await server.wait_for_connection(len(server.connections) - 1)


def b64len(event: dict[str, Any]) -> int:
    return len(base64.b64decode(event["delta"]))


# ----- handshake and authentication -----------------------------------------------------------

async def test_session_created_has_real_ga_defaults(make_server: Callable[..., Any]) -> None:
    server = await make_server()
    before = int(time.time())
    ws = await connect(server.url + "?model=gpt-realtime-mini", additional_headers={"Authorization": "Bearer test-key"})
    created = json.loads(await ws.recv())
    session = created["session"]
    assert created["type"] == "session.created"
    assert re.fullmatch(r"event_[0-9A-Za-z]{21}", created["event_id"])
    assert re.fullmatch(r"sess_[0-9A-Za-z]{21}", session["id"])
    assert session["object"] == "realtime.session" and session["type"] == "realtime"
    assert session["model"] == "gpt-realtime-mini"
    assert session["output_modalities"] == ["audio"]
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["output"] == {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy",
                                          "speed": 1.0}
    assert session["audio"]["input"]["turn_detection"] == {
        "type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 200,
        "idle_timeout_ms": None, "create_response": True, "interrupt_response": True}
    assert session["audio"]["input"]["transcription"] is None
    assert session["audio"]["input"]["noise_reduction"] is None
    assert (session["tools"], session["tool_choice"], session["max_output_tokens"]) == ([], "auto", "inf")
    assert (session["tracing"], session["truncation"], session["prompt"], session["include"]) == (
        None, "auto", None, None)
    assert before + 3600 <= session["expires_at"] <= int(time.time()) + 3600
    conn = await server.wait_for_connection()
    assert conn.model == "gpt-realtime-mini" and conn.headers["authorization"] == "Bearer test-key"
    await ws.close()


async def test_ids_are_base62_and_time_ordered() -> None:
    from aribot.plugins.local_backend.realtime.ids import call_id, event_id

    ids = [event_id() for _ in range(200)]
    assert ids == sorted(ids) and len(set(ids)) == 200
    assert all(set(i[len("event_"):]) <= set(BASE62) for i in ids)
    assert re.fullmatch(r"call_[0-9A-Za-z]{16}", call_id())


async def test_azure_path_takes_api_key_header(make_server: Callable[..., Any]) -> None:
    server = await make_server()
    client = await open_client(server, model="my-deployment", headers={"api-key": "test-key"}, azure=True)
    conn = await server.wait_for_connection()
    assert conn.azure and conn.model == "my-deployment"
    await client.ws.close()


@pytest.mark.parametrize(
    ("path", "status"),
    [("/v1/realtime", 400), ("/v1/other?model=gpt-realtime", 404), ("/openai/realtime?model=x", 404),
     ("/openai/v1/realtime?model=x&api-version=2025-04-01-preview", 400)],
)
async def test_handshake_rejects_bad_paths(make_server: Callable[..., Any], path: str, status: int) -> None:
    server = await make_server()
    with pytest.raises(InvalidStatus) as caught:
        await connect(f"ws://127.0.0.1:{server.port}{path}", additional_headers={"Authorization": "Bearer test-key"})
    assert caught.value.response.status_code == status
    assert server.connections == []


async def test_fault_injection_refuse_status_and_accept_delay(make_server: Callable[..., Any]) -> None:
    clock = ManualClock()
    server = await make_server(clock=clock)
    for status in (500, 403):
        server.refuse_status = status
        with pytest.raises(InvalidStatus) as caught:
            await open_client(server)
        assert caught.value.response.status_code == status
    server.refuse_status = None
    server.accept_delay_s = 0.3
    opening = asyncio.ensure_future(open_client(server))
    delay = await clock.next_timer()                  # the handshake waits on the server's clock
    assert delay.when == clock.now + 0.3 and server.connections == [] and not opening.done()
    clock.advance_to(delay.when)
    client = await opening
    assert len(server.connections) == 1
    await client.ws.close()


@pytest.mark.parametrize(
    ("headers", "azure"),
    [({}, False), ({"Authorization": "Bearer wrong"}, False), ({"api-key": "test-key"}, False),
     ({"api-key": "wrong"}, True), ({"Authorization": "Bearer test-key"}, True)],
)
async def test_bad_key_gets_error_then_close_3000(make_server: Callable[..., Any], headers: dict[str, str],
                                                  azure: bool) -> None:
    server = await make_server()
    url = (server.azure_url if azure else server.url) + "?model=gpt-realtime"
    async with connect(url, additional_headers=headers) as ws:
        error = json.loads(await ws.recv())
        assert error["type"] == "error"
        assert error["error"]["code"] == "invalid_api_key" and error["error"]["type"] == "invalid_request_error"
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 3000 and ws.close_reason == "invalid_request_error.invalid_api_key"
    conn = await server.wait_for_connection()
    assert conn.closed_code == 3000 and conn.closed_by == "server"


async def test_beta_header_is_refused(make_server: Callable[..., Any]) -> None:
    server = await make_server()
    headers = {"Authorization": "Bearer test-key", "OpenAI-Beta": "realtime=v1"}
    async with connect(server.url + "?model=gpt-realtime", additional_headers=headers) as ws:
        error = json.loads(await ws.recv())["error"]
        assert "Beta API is no longer supported" in error["message"]
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 3000


async def test_max_session_s_closes_1001_with_exact_reason(make_server: Callable[..., Any]) -> None:
    clock = ManualClock()
    server = await make_server(max_session_s=0.3, clock=clock)
    client = await open_client(server)
    expiry = await clock.next_timer()
    assert expiry.when == clock.now + 0.3 and not server.connections[0].closed
    clock.advance_to(expiry.when)
    with pytest.raises(ConnectionClosed):
        await client.until("never", timeout=3)
    assert client.ws.close_code == 1001
    assert client.ws.close_reason == "Your session hit the maximum duration of 60 minutes."


# ----- client event validation ----------------------------------------------------------------

async def test_event_level_errors(make_server: Callable[..., Any]) -> None:
    server = await make_server()
    client = await open_client(server)
    await client.send({"event_id": "e1"})
    assert await client.error() == {"type": "invalid_request_error", "code": "invalid_event",
                                    "message": "The 'type' field is missing.", "param": None, "event_id": "e1"}
    await client.send({"type": "scooby.dooby.doo", "event_id": "e2"})
    error = await client.error()
    assert (error["code"], error["param"], error["event_id"]) == ("invalid_value", "type", "e2")
    assert error["message"].startswith("Invalid value: 'scooby.dooby.doo'. Supported values are: ")
    await client.ws.send("{not json")
    assert (await client.error())["code"] == "invalid_json"
    await client.ws.send(b"\x00\x01")
    assert (await client.error())["code"] == "invalid_event"
    await client.send({"type": "input_audio_buffer.append", "audio": "AAAA", "foo": 1})
    assert (await client.error())["message"] == "Unknown parameter: 'foo'."
    await client.send({"type": "input_audio_buffer.append"})
    assert (await client.error())["message"] == "Missing required parameter: 'audio'."
    await client.send({"type": "input_audio_buffer.append", "audio": "not base64!"})
    assert (await client.error())["param"] == "audio"
    await client.send({"type": "output_audio_buffer.clear"})
    assert (await client.error())["code"] == "invalid_value"
    conn = await server.wait_for_connection()
    assert len(conn.errors_sent) == 8 and conn.input_audio == b""


async def test_session_update_without_type_changes_nothing(make_server: Callable[..., Any]) -> None:
    server = await make_server()
    client = await open_client(server)
    conn = await server.wait_for_connection()
    before = json.loads(json.dumps(conn.session))
    reply = await client.update({"instructions": "hi", "audio": {"input": {"format": PCMU}}}, event_id="evt_1")
    assert reply["error"] == {"type": "invalid_request_error", "code": "missing_required_parameter",
                              "message": "Missing required parameter: 'session.type'.", "param": "session.type",
                              "event_id": "evt_1"}
    assert conn.session == before
    assert conn.session_updates[-1]["accepted"] is False


@pytest.mark.parametrize(
    ("session", "param"),
    [
        ({"modalities": ["audio", "text"]}, "session.modalities"),
        ({"voice": "marin"}, "session.voice"),
        ({"input_audio_format": "g711_ulaw"}, "session.input_audio_format"),
        ({"output_audio_format": "g711_ulaw"}, "session.output_audio_format"),
        ({"turn_detection": {"type": "server_vad"}}, "session.turn_detection"),
        ({"temperature": 0.8}, "session.temperature"),
        ({"input_audio_transcription": {"model": "whisper-1"}}, "session.input_audio_transcription"),
        ({"max_response_output_tokens": 100}, "session.max_response_output_tokens"),
        ({"audio": {"input": {"input_audio_noise_reduction": {"type": "near_field"}}}},
         "session.audio.input.input_audio_noise_reduction"),
        ({"audio": {"output": {"format": {"type": "audio/pcmu", "rate": 8000}}}}, "session.audio.output.format.rate"),
        ({"audio": {"input": {"turn_detection": {"type": "semantic_vad", "threshold": 0.5}}}},
         "session.audio.input.turn_detection.threshold"),
        ({"tools": [{"type": "function", "name": "f", "strict": True}]}, "session.tools[0].strict"),
        ({"id": "sess_x"}, "session.id"),
    ],
)
async def test_session_update_refuses_unknown_and_beta_keys(make_server: Callable[..., Any], session: dict[str, Any],
                                                            param: str) -> None:
    server = await make_server()
    client = await open_client(server)
    reply = await client.update({"type": "realtime", "instructions": "x", **session}, event_id="e9")
    assert reply["error"] == {"type": "invalid_request_error", "code": "unknown_parameter",
                              "message": f"Unknown parameter: '{param}'.", "param": param, "event_id": "e9"}
    conn = await server.wait_for_connection()
    assert conn.session["instructions"] != "x"  # the whole update was refused


async def test_nested_tool_form_is_refused(make_server: Callable[..., Any]) -> None:
    server = await make_server()
    client = await open_client(server)
    tool = {"type": "function", "function": {"name": "lookup_order", "parameters": {"type": "object"}}}
    reply = await client.update({"type": "realtime", "tools": [tool]})
    assert reply["error"]["code"] == "missing_required_parameter"
    assert reply["error"]["message"] == "Missing required parameter: 'session.tools[0].name'."


@pytest.mark.parametrize(
    ("session", "param"),
    [
        ({"type": "session"}, "session.type"),
        ({"audio": {"input": {"format": {"type": "g711_ulaw"}}}}, "session.audio.input.format.type"),
        ({"audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}, "session.audio.input.format.rate"),
        ({"audio": {"output": {"voice": "bob"}}}, "session.audio.output.voice"),
        ({"audio": {"output": {"speed": 2.0}}}, "session.audio.output.speed"),
        ({"audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 1.5}}}},
         "session.audio.input.turn_detection.threshold"),
        ({"audio": {"input": {"turn_detection": {"type": "server_vad", "idle_timeout_ms": 1000}}}},
         "session.audio.input.turn_detection.idle_timeout_ms"),
        ({"audio": {"input": {"turn_detection": {"type": "vad"}}}}, "session.audio.input.turn_detection.type"),
        ({"audio": {"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "fast"}}}},
         "session.audio.input.turn_detection.eagerness"),
        ({"audio": {"input": {"transcription": {"model": "whisper-2"}}}}, "session.audio.input.transcription.model"),
        ({"output_modalities": ["audio", "text"]}, "session.output_modalities"),
        ({"max_output_tokens": 5000}, "session.max_output_tokens"),
        ({"tool_choice": "sometimes"}, "session.tool_choice"),
        ({"model": "gpt-realtime-mini"}, "session.model"),
        ({"reasoning": {"effort": "low"}}, "session.reasoning"),
    ],
)
async def test_session_update_refuses_bad_values(make_server: Callable[..., Any], session: dict[str, Any],
                                                 param: str) -> None:
    server = await make_server()
    client = await open_client(server)
    reply = await client.update({"type": "realtime", **session})
    assert reply["type"] == "error"
    assert (reply["error"]["code"], reply["error"]["param"]) == ("invalid_value", param), reply


async def test_session_update_type_errors_and_transcription_sessions(make_server: Callable[..., Any]) -> None:
    server = await make_server()
    client = await open_client(server)
    reply = await client.update({"type": "realtime", "instructions": 5})
    assert reply["error"]["code"] == "invalid_type"
    assert reply["error"]["message"] == ("Invalid type for 'session.instructions': expected a string, but got an "
                                         "integer instead.")
    reply = await client.update({"type": "transcription"})
    assert reply["error"]["code"] == "fake_unsupported"


async def test_session_update_merges_partially(make_server: Callable[..., Any]) -> None:
    server = await make_server()
    client = await open_client(server)
    first = await client.update({"type": "realtime", "instructions": "Be brief.",
                                 "audio": {"output": {"voice": "marin"}}})
    assert first["session"]["instructions"] == "Be brief."
    assert first["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    second = await client.update({"type": "realtime", "audio": {
        "input": {"format": PCMU, "turn_detection": {"type": "server_vad", "silence_duration_ms": 600}}}})
    session = second["session"]
    assert session["instructions"] == "Be brief." and session["audio"]["output"]["voice"] == "marin"
    assert session["audio"]["input"]["format"] == PCMU
    assert session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 600
    assert session["audio"]["input"]["turn_detection"]["prefix_padding_ms"] == 300
    assert session["id"] == client.events[0]["session"]["id"] and "expires_at" in session
    third = await client.update({"type": "realtime", "model": MODEL, "tools": [
        {"type": "function", "name": "lookup_order", "description": "d", "parameters": {"type": "object"}}],
        "audio": {"input": {"turn_detection": None}}})
    assert third["session"]["audio"]["input"]["turn_detection"] is None
    assert third["session"]["tools"][0]["name"] == "lookup_order"
    conn = await server.wait_for_connection()
    assert conn.session == third["session"]
    assert [u["accepted"] for u in conn.session_updates] == [True, True, True]


# ----- VAD-driven turns -----------------------------------------------------------------------

async def test_vad_turn_full_event_order_and_audio(make_server: Callable[..., Any]) -> None:
    reply_audio = default_audio(1500)
    server = await make_server(turns=[Turn.audio(reply_audio, "Your order 42 has shipped.")])
    client, conn = await pcmu_session(server, transcription={"model": "gpt-4o-mini-transcribe"})
    await client.append(SILENCE * 50 + SPEECH * 100 + SILENCE * 20)
    await client.until("response.done")
    if "conversation.item.input_audio_transcription.completed" not in client.types():
        await client.until("conversation.item.input_audio_transcription.completed")
    types = [t for t in client.types() if not t.startswith("conversation.item.input_audio_transcription")]
    start = types.index("input_audio_buffer.speech_started")
    assert types[start:start + 5] == ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                                      "input_audio_buffer.committed", "conversation.item.added",
                                      "conversation.item.done"]
    response_types = [t for t in types[start + 5:] if not t.endswith(".delta")]
    assert response_types == AUDIO_TURN_ORDER
    started, stopped = (next(e for e in client.events if e["type"] == t) for t in
                        ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped"))
    assert started["audio_start_ms"] == 1000 - 300 and stopped["audio_end_ms"] == 3000 + 200
    assert started["item_id"] == stopped["item_id"]
    user_item = next(e for e in client.events if e["type"] == "conversation.item.added")["item"]
    assert user_item == {"id": started["item_id"], "type": "message", "status": "completed", "role": "user",
                         "content": [{"type": "input_audio", "transcript": None}]}
    deltas = [e for e in client.events if e["type"] == "response.output_audio.delta"]
    sizes = [b64len(e) for e in deltas]
    assert b"".join(base64.b64decode(e["delta"]) for e in deltas) == reply_audio
    assert len(set(sizes)) > 1 and any(size % 160 for size in sizes)
    assert all(100 <= size <= 1200 for size in sizes[:-1])
    transcript_deltas = [e for e in client.events if e["type"] == "response.output_audio_transcript.delta"]
    assert "".join(e["delta"] for e in transcript_deltas) == "Your order 42 has shipped."
    assert all(e["obfuscation"] for e in transcript_deltas)
    done = next(e for e in client.events if e["type"] == "response.done")["response"]
    assert done["status"] == "completed" and done["status_details"] is None
    assert done["output"][0]["content"] == [{"type": "output_audio", "transcript": "Your order 42 has shipped."}]
    assert done["audio"]["output"]["format"] == PCMU and done["usage"]["total_tokens"] > 0
    completed = next(e for e in client.events if e["type"].endswith("transcription.completed"))
    assert completed["transcript"] == "caller turn 1" and completed["item_id"] == started["item_id"]
    record = conn.responses[0]
    assert (record.kind, record.trigger, record.status) == ("audio", "vad", "completed")
    assert record.audio == reply_audio and conn.input_audio == SILENCE * 50 + SPEECH * 100 + SILENCE * 20
    assert conn.audio_before_pcmu is False and len(conn.speech_started_times) == 1


async def test_audio_before_pcmu_is_flagged(make_server: Callable[..., Any]) -> None:
    server = await make_server()
    client = await open_client(server)
    conn = await server.wait_for_connection()
    await client.append(SILENCE * 3)
    await conn.wait_for_input_audio(480)
    assert conn.audio_before_pcmu is True
    assert conn.protocol.audio.clock_ms == pytest.approx(480 / 48)


async def test_paced_output_is_faster_than_real_time_but_not_instant(make_server: Callable[..., Any]) -> None:
    clock = ManualClock()
    server = await make_server(speed=4.0, clock=clock, turns=[Turn.audio(default_audio(800), "Hello.")])
    client, conn = await pcmu_session(server)
    start = clock.now
    await client.append(SPEECH * 10 + SILENCE * 10)
    pauses: list[tuple[float, float]] = []  # (when the server's pause ends, ms of audio sent by then)
    while not pauses or pauses[-1][1] < 800:
        pause = await clock.next_timer()
        pauses.append((pause.when - start, len(conn.responses[0].audio) / 8))
        clock.advance_to(pause.when)
    await client.until("response.done")
    deltas = [b64len(e) / 8 for e in client.events if e["type"] == "response.output_audio.delta"]
    assert [ms for _when, ms in pauses] == list(itertools.accumulate(deltas))  # one pause after each delta
    assert len(pauses) > 1 and all(when == pytest.approx(ms / 1000 / 4) for when, ms in pauses)
    assert clock.now - start == pytest.approx(0.2)  # 800 ms of audio at 4x real time


async def test_barge_in_cancels_response(make_server: Callable[..., Any]) -> None:
    server = await make_server(speed=1.0, clock=ManualClock(),  # the answer waits after its first delta
                               turns=[Turn.audio(default_audio(3000), "A long answer that goes on.")])
    client, conn = await pcmu_session(server)
    await client.append(SPEECH * 10 + SILENCE * 10)
    delta = await client.until("response.output_audio.delta")
    await client.append(SPEECH * 5)
    await client.until("input_audio_buffer.speech_started")
    after = []
    while (event := await client.recv())["type"] != "response.done":
        after.append(event)
    assert "response.output_audio.delta" not in [e["type"] for e in after]
    assert [e["type"] for e in after] == AUDIO_TURN_ORDER[4:-1]
    item_done = next(e for e in after if e["type"] == "response.output_item.done")["item"]
    assert item_done["status"] == "incomplete"
    assert event["response"]["status"] == "cancelled"
    assert event["response"]["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    record = conn.responses[0]
    assert (record.status, record.cancel_reason, record.late_deltas_sent) == ("cancelled", "turn_detected", 0)
    received = b"".join(base64.b64decode(e["delta"]) for e in client.events
                        if e["type"] == "response.output_audio.delta")
    assert record.audio == received == base64.b64decode(delta["delta"])
    await client.send({"type": "conversation.item.truncate", "item_id": delta["item_id"], "content_index": 0,
                       "audio_end_ms": len(received) // 8})
    truncated = await client.until("conversation.item.truncated")
    assert truncated["audio_end_ms"] == len(received) // 8
    await client.append(SILENCE * 15)
    await client.until("input_audio_buffer.speech_stopped")
    await client.until("response.created")
    assert conn.truncations[0].accepted and len(conn.responses) == 2


async def test_barge_in_with_late_deltas(make_server: Callable[..., Any]) -> None:
    server = await make_server(speed=1.0, clock=ManualClock(), late_deltas_after_interrupt=2,
                               turns=[Turn.audio(default_audio(3000), "A long answer.")])
    client, conn = await pcmu_session(server)
    await client.append(SPEECH * 10 + SILENCE * 10)
    await client.until("response.output_audio.delta")
    await client.append(SPEECH * 5)
    await client.until("input_audio_buffer.speech_started")
    await client.until("response.done")
    types = client.types()
    index = len(types) - 1 - types[::-1].index("input_audio_buffer.speech_started")
    late = [t for t in types[index:] if t == "response.output_audio.delta"]
    assert len(late) == 2 and conn.responses[0].late_deltas_sent == 2


async def test_no_interrupt_when_interrupt_response_false(make_server: Callable[..., Any]) -> None:
    clock = ManualClock()
    server = await make_server(speed=2.0, clock=clock, turns=[Turn.audio(default_audio(1000), "Answer.")])
    client, conn = await pcmu_session(server, turn_detection={"type": "server_vad", "interrupt_response": False})
    await client.append(SPEECH * 10 + SILENCE * 10)
    await client.until("response.output_audio.delta")  # the answer waits for the clock from here
    await client.append(SPEECH * 5 + SILENCE * 10)
    await conn.wait_for(lambda: conn.skipped_auto_responses, description="a skipped auto response")
    await clock.run_until(lambda: conn.responses[0].done)
    done = await client.until("response.done")
    assert done["response"]["status"] == "completed"
    assert conn.skipped_auto_responses == 1 and len(conn.responses) == 1


async def test_idle_timeout_commits_and_responds(make_server: Callable[..., Any]) -> None:
    server = await make_server(turns=[Turn.audio(default_audio(200), "Hi."),
                                      Turn.audio(default_audio(200), "Still there?")])
    client, conn = await pcmu_session(server, turn_detection={"type": "server_vad", "idle_timeout_ms": 5000})
    await client.append(SPEECH * 10 + SILENCE * 10)
    await client.until("response.done")
    await client.append(SILENCE * 270)  # 5.4 s > 200 ms playback + 5 s
    triggered = await client.until("input_audio_buffer.timeout_triggered")
    assert triggered["audio_end_ms"] - triggered["audio_start_ms"] >= 5000
    await client.until("input_audio_buffer.committed")
    await client.until("response.done")
    assert [r.trigger for r in conn.responses] == ["vad", "idle_timeout"]


# ----- manual turns, responses, truncation ----------------------------------------------------

async def test_manual_commit_clear_and_commit_empty(make_server: Callable[..., Any]) -> None:
    server = await make_server()
    client, conn = await pcmu_session(server, turn_detection=None)
    await client.append(SPEECH * 2 + SPEECH[:80])  # 50 ms
    await client.send({"type": "input_audio_buffer.commit", "event_id": "c"})
    error = await client.error()
    assert error["code"] == "input_audio_buffer_commit_empty" and error["event_id"] == "c"
    assert error["message"] == ("Error committing input audio buffer: buffer too small. Expected at least 100ms of "
                                "audio, but buffer only has 50.00ms of audio.")
    await client.append(SPEECH * 5)
    await client.send({"type": "input_audio_buffer.commit"})
    committed = await client.until("input_audio_buffer.committed")
    assert (await client.until("conversation.item.done"))["item"]["id"] == committed["item_id"]
    await client.send({"type": "input_audio_buffer.clear"})
    await client.until("input_audio_buffer.cleared")
    await client.send({"type": "input_audio_buffer.commit"})
    assert "0.00ms" in (await client.error())["message"]
    assert conn.responses == [] and "input_audio_buffer.speech_started" not in client.types()


async def test_commit_in_vad_mode_without_speech_is_empty(make_server: Callable[..., Any]) -> None:
    server = await make_server()
    client, _ = await pcmu_session(server)
    await client.append(SILENCE * 20)
    await client.send({"type": "input_audio_buffer.commit"})
    assert (await client.error())["code"] == "input_audio_buffer_commit_empty"


async def test_response_create_while_active_and_cancel(make_server: Callable[..., Any]) -> None:
    clock = ManualClock()
    server = await make_server(speed=1.0, clock=clock, turns=[Turn.audio(default_audio(2000), "One."),
                                                              Turn.audio(b"\x01" * 80, "Two.")])
    client, conn = await pcmu_session(server, turn_detection=None)
    await client.send({"type": "response.cancel", "event_id": "x"})
    error = await client.error()
    assert (error["code"], error["message"], error["event_id"]) == (
        "response_cancel_not_active", "Cancellation failed: no active response found", "x")
    await client.send({"type": "response.create"})
    created = await client.until("response.created")
    rid = created["response"]["id"]
    assert created["response"]["status"] == "in_progress" and created["response"]["output"] == []
    await client.send({"type": "response.create"})
    error = await client.error()
    assert error["code"] == "conversation_already_has_active_response"
    assert error["message"] == (f"Conversation already has an active response in progress: {rid}. Wait until the "
                                "response is finished before creating a new one.")
    await client.send({"type": "response.cancel"})
    done = await client.until("response.done")
    assert done["response"]["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    await client.send({"type": "response.create", "response": {"metadata": {"k": "v"}}})
    await clock.run_until(lambda: len(conn.responses) == 2 and conn.responses[1].done)
    done = await client.until("response.done")
    assert done["response"]["status"] == "completed" and done["response"]["metadata"] == {"k": "v"}
    assert [r.status for r in conn.responses] == ["cancelled", "completed"]


async def test_response_create_params_are_validated(make_server: Callable[..., Any]) -> None:
    server = await make_server()
    client, _ = await pcmu_session(server, turn_detection=None)
    await client.send({"type": "response.create", "response": {"modalities": ["text"]}})
    assert (await client.error())["message"] == "Unknown parameter: 'response.modalities'."
    await client.send({"type": "response.create", "response": {"voice": "marin"}})
    assert (await client.error())["param"] == "response.voice"
    await client.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
    await client.until("response.done")
    types = client.types()
    assert "response.output_text.delta" in types and "response.output_audio.delta" not in types


async def test_truncate_rules(make_server: Callable[..., Any]) -> None:
    server = await make_server(turns=[Turn.audio(default_audio(1000), "Hello there."), Turn.audio(b"", "Silent."),
                                      Turn.function_call("f", {"a": 1})])
    client, conn = await pcmu_session(server, turn_detection=None,
                                      tools=[{"type": "function", "name": "f", "parameters": {"type": "object"}}])

    async def truncate(item_id: str, end_ms: int, content_index: int = 0) -> dict[str, Any]:
        await client.send({"type": "conversation.item.truncate", "item_id": item_id, "content_index": content_index,
                           "audio_end_ms": end_ms})
        return await client.recv()

    await client.send({"type": "response.create"})
    audio_item = (await client.until("response.output_item.done"))["item"]["id"]
    await client.until("response.done")
    assert (await truncate("item_nope", 10))["error"]["message"] == "Conversation item with id 'item_nope' not found."
    error = (await truncate(audio_item, 1500))["error"]
    assert error["message"] == "Audio content of 1000ms is already shorter than 1500ms"
    assert (await truncate(audio_item, 0, content_index=1))["error"]["param"] == "content_index"
    assert (await truncate(audio_item, 400))["type"] == "conversation.item.truncated"
    error = (await truncate(audio_item, 500))["error"]
    assert error["message"] == "Audio content of 400ms is already shorter than 500ms"
    await client.send({"type": "response.create"})
    empty_item = (await client.until("response.output_item.done"))["item"]["id"]
    await client.until("response.done")
    error = (await truncate(empty_item, 0))["error"]
    assert (error["code"], error["message"]) == ("unsupported_content_type",
                                                 "Only model output audio messages can be truncated")
    await client.send({"type": "response.create"})
    call_item = (await client.until("response.output_item.done"))["item"]["id"]
    await client.until("response.done")
    assert (await truncate(call_item, 0))["error"]["code"] == "unsupported_content_type"
    assert [(t.accepted, t.error_code) for t in conn.truncations] == [
        (False, "invalid_value"), (False, "invalid_value"), (False, "invalid_value"), (True, None),
        (False, "invalid_value"), (False, "unsupported_content_type"), (False, "unsupported_content_type")]
    assert conn.truncations[3].audio_sent_ms == 1000 and conn.truncations[3].audio_end_ms == 400


# ----- tools and items ------------------------------------------------------------------------

TOOL = {"type": "function", "name": "lookup_order", "description": "Look up an order",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}}}


async def test_function_call_round_trip(make_server: Callable[..., Any]) -> None:
    clock = ManualClock()  # each response.done waits 0.3 s on it: the client acts in between
    server = await make_server(response_done_delay_s=0.3, clock=clock, turns=[
        Turn.function_call("lookup_order", {"order_id": "42"}, call_id="call_AbCdEf0123456789"),
        Turn.audio(default_audio(300), "Your order 42 has shipped.")])
    client, conn = await pcmu_session(server, tools=[TOOL])
    await client.append(SPEECH * 10 + SILENCE * 10)
    args_done = await client.until("response.function_call_arguments.done")
    assert (args_done["name"], args_done["arguments"], args_done["call_id"]) == (
        "lookup_order", '{"order_id": "42"}', "call_AbCdEf0123456789")
    await client.send({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": "call_unknown", "output": "{}"}})
    error = await client.error()
    assert (error["code"], error["message"]) == ("invalid_tool_call_id",
                                                 "Tool call ID 'call_unknown' not found in conversation.")
    await client.send({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": args_done["call_id"], "output": {"status": "shipped"}}})
    assert (await client.error())["message"] == ("Invalid type for 'item.output': expected a string, but got an "
                                                 "object instead.")
    await client.send({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": args_done["call_id"], "output": '{"status":"shipped"}'}})
    added = await client.until("conversation.item.added")
    assert added["previous_item_id"] == args_done["item_id"]
    assert added["item"]["type"] == "function_call_output" and added["item"]["output"] == '{"status":"shipped"}'
    await client.send({"type": "response.create", "event_id": "early"})  # before response.done: refused
    error = await client.error()
    assert (error["code"], error["event_id"]) == ("conversation_already_has_active_response", "early")
    await clock.run_until(lambda: conn.responses[0].done)
    first_done = await client.until("response.done")
    assert first_done["response"]["output"][0]["type"] == "function_call"
    await client.send({"type": "response.create"})
    await clock.run_until(lambda: len(conn.responses) == 2 and conn.responses[1].done)
    second = await client.until("response.done")
    assert second["response"]["output"][0]["content"][0]["transcript"] == "Your order 42 has shipped."
    fc_types = [t for t in client.types() if t.startswith(("response.", "conversation.item"))]
    first = fc_types[fc_types.index("response.created"):fc_types.index("response.function_call_arguments.done") + 1]
    assert [t for t in first if t != "response.function_call_arguments.delta"] == [
        "response.created", "response.output_item.added", "conversation.item.added",
        "response.function_call_arguments.done"]
    assert [r.kind for r in conn.responses] == ["function_call", "audio"] and conn.warnings == []


async def test_audio_then_function_call_in_one_response(make_server: Callable[..., Any]) -> None:
    server = await make_server(turns=[Turn.audio_then_function_call(default_audio(200), "Let me check.",
                                                                     "lookup_order", '{"order_id":"7"}')])
    client, conn = await pcmu_session(server, turn_detection=None, tools=[TOOL])
    await client.send({"type": "response.create"})
    done = await client.until("response.done")
    added = [e for e in client.events if e["type"] == "response.output_item.added"]
    assert [(e["output_index"], e["item"]["type"]) for e in added] == [(0, "message"), (1, "function_call")]
    assert [item["type"] for item in done["response"]["output"]] == ["message", "function_call"]
    assert conn.responses[0].call_ids == [done["response"]["output"][1]["call_id"]]


async def test_undeclared_tool_is_reported_as_warning(make_server: Callable[..., Any]) -> None:
    server = await make_server(turns=[Turn.function_call("transfer_call", {})])
    client, conn = await pcmu_session(server, turn_detection=None)
    await client.send({"type": "response.create"})
    await client.until("response.done")
    assert conn.warnings and "transfer_call" in conn.warnings[0]


async def test_conversation_item_create_validation(make_server: Callable[..., Any]) -> None:
    server = await make_server()
    client, _ = await pcmu_session(server, turn_detection=None)

    async def create(item: dict[str, Any], **extra: Any) -> dict[str, Any]:
        await client.send({"type": "conversation.item.create", "item": item, **extra})
        return await client.recv()

    user = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
    added = await create(user)
    assert added["type"] == "conversation.item.added"
    assert added["item"]["content"] == [{"type": "input_text", "text": "hi"}]
    await client.until("conversation.item.done")
    audio_msg = {"type": "message", "role": "assistant", "content": [{"type": "output_audio", "transcript": "x"}]}
    assert (await create(audio_msg))["error"]["message"] == "Missing required parameter: 'item.content[0].text'."
    system_audio = {"type": "message", "role": "system", "content": [{"type": "input_audio", "text": "x"}]}
    assert (await create(system_audio))["error"]["param"] == "item.content[0].type"
    beta_text = {"type": "message", "role": "assistant", "content": [{"type": "text", "text": "x"}]}
    assert (await create(beta_text))["error"]["code"] == "invalid_value"
    assert (await create(user, previous_item_id="item_missing"))["error"]["param"] == "previous_item_id"


# ----- the fake's own machinery ---------------------------------------------------------------

async def test_injected_events_and_fake_bug_detection(make_server: Callable[..., Any]) -> None:
    server = await make_server()
    client = await open_client(server)
    conn = await server.wait_for_connection()
    await conn.send_event({"type": "error", "error": {"type": "server_error", "code": "server_error",
                                                      "message": "boom", "param": None, "event_id": None}})
    assert (await client.error())["message"] == "boom"
    await conn.send_event({"type": "response.output_audio.delta", "delta": "AAAA"})  # missing ids: a fake bug
    assert server.fake_bugs
    with pytest.raises(FakeBugError):
        server.assert_no_fake_bugs()
    server.fake_bugs.clear()
    await conn.close(4000, "test over")
    with pytest.raises(ConnectionClosed):
        await client.until("never")
    assert client.ws.close_code == 4000 and conn.closed_by == "server"


async def test_script_factory_and_wait_helpers(make_server: Callable[..., Any]) -> None:
    scripts: list[Script] = []

    def per_connection(conn: FakeConnection) -> Script:
        scripts.append(Script(speed=math.inf, turns=[Turn.audio(b"\x02" * 160, f"conn {len(scripts) + 1}")]))
        return scripts[-1]

    async with FakeRealtimeServer(script=per_connection) as server:
        clients = [await open_client(server) for _ in range(2)]
        conns = await server.wait_for_connections(2)
        for client in clients:
            await client.update({"type": "realtime", "audio": {"input": {"format": PCMU, "turn_detection": None}}})
            await client.send({"type": "response.create"})
        record = await conns[1].wait_for_response_done(0)
        assert record.turn == Turn.audio(b"\x02" * 160, "conn 2")
        assert (await conns[0].wait_for_event_type("response.done"))["response"]["status"] == "completed"
        assert (await conns[0].wait_for_received_type("response.create"))["type"] == "response.create"
        with pytest.raises(TimeoutError):
            await conns[0].wait_for_truncation(0, timeout=0.05)
        for client in clients:
            await client.ws.close()
        assert await conns[0].wait_closed() == 1000


async def test_standalone_entry_point() -> None:
    root = Path(__file__).resolve().parents[2]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fake_realtime", "--port", "0", "--speed", "inf", cwd=root,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 10)).decode()
        url = re.search(r"ws://\S+/v1/realtime", line)
        assert url, line
        async with connect(url.group(0) + "?model=gpt-realtime",
                           additional_headers={"Authorization": "Bearer test-key"}) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
    finally:
        process.terminate()
        await process.wait()


def test_subprocess_module_is_importable() -> None:
    result = subprocess.run([sys.executable, "-m", "tests.fake_realtime", "--help"], capture_output=True,
                            cwd=Path(__file__).resolve().parents[2], check=True, text=True)
    assert "--api-key" in result.stdout


async def test_voice_is_locked_after_first_audio(make_server: Callable[..., Any]) -> None:
    server = await make_server()
    client, _ = await pcmu_session(server, turn_detection=None, voice="marin")
    assert (await client.update({"type": "realtime", "audio": {"output": {"voice": "cedar"}}}))["type"] == (
        "session.updated")
    await client.send({"type": "response.create"})
    await client.until("response.done")
    reply = await client.update({"type": "realtime", "audio": {"output": {"voice": "marin"}}})
    assert reply["error"]["code"] == "cannot_update_voice"
    assert reply["error"]["message"] == "Cannot update a conversation's voice if assistant audio is present."
    reply = await client.update({"type": "realtime", "audio": {"output": {"voice": "cedar", "speed": 1.2}}})
    assert reply["type"] == "session.updated" and reply["session"]["audio"]["output"]["speed"] == 1.2


async def test_fidelity_switches_and_failed_turn(make_server: Callable[..., Any]) -> None:
    server = await make_server(include_object=True, obfuscation=False,
                               error_on_connect={"code": "insufficient_quota", "message": "You exceeded your quota."},
                               turns=[Turn.audio(b"\x03" * 400, "Hi there."), Turn.failed("server_error")])
    client = await open_client(server)
    assert (await client.error())["code"] == "insufficient_quota"
    await client.update({"type": "realtime", "audio": {"input": {"format": PCMU, "turn_detection": None},
                                                       "output": {"format": PCMU}}})
    await client.send({"type": "response.create"})
    done = await client.until("response.done")
    assert done["response"]["output"][0]["object"] == "realtime.item"
    assert all("obfuscation" not in e for e in client.events if e["type"].endswith("transcript.delta"))
    await client.send({"type": "response.create"})
    failed = (await client.until("response.done"))["response"]
    assert failed["status"] == "failed" and failed["status_details"]["error"]["code"] == "server_error"
    assert failed["output"] == []


async def test_semantic_vad_eagerness_sets_end_of_turn_silence(make_server: Callable[..., Any]) -> None:
    server = await make_server()
    client, _ = await pcmu_session(server, turn_detection={"type": "semantic_vad", "eagerness": "high"})
    await client.append(SPEECH * 10 + SILENCE * 20)
    stopped = await client.until("input_audio_buffer.speech_stopped")
    assert stopped["audio_end_ms"] == 200 + 200
    await client.until("response.done")


async def test_item_delete_and_retrieve(make_server: Callable[..., Any]) -> None:
    server = await make_server()
    client, _ = await pcmu_session(server, turn_detection=None)
    await client.send({"type": "conversation.item.create", "item": {
        "id": "item_mine", "type": "message", "role": "system", "content": [{"type": "input_text", "text": "VIP"}]}})
    await client.until("conversation.item.done")
    await client.send({"type": "conversation.item.retrieve", "item_id": "item_mine"})
    assert (await client.until("conversation.item.retrieved"))["item"]["content"][0]["text"] == "VIP"
    await client.send({"type": "conversation.item.delete", "item_id": "item_mine"})
    assert (await client.until("conversation.item.deleted"))["item_id"] == "item_mine"
    await client.send({"type": "conversation.item.delete", "item_id": "item_mine"})
    assert (await client.error())["param"] == "item_id"


def test_vad_speech_detection_per_format() -> None:
    from aribot.plugins.local_backend.realtime.vad import is_speech

    assert not is_speech(b"\xff\x7f" * 80, "audio/pcmu") and is_speech(b"\xff" * 159 + b"\xfe", "audio/pcmu")
    assert is_speech(b"\xfe" * 160, "audio/pcmu") and not is_speech(b"\xfe" * 160, "audio/pcmu", 100)
    assert not is_speech(b"\xd5\x55" * 80, "audio/pcma") and is_speech(b"\x00" * 160, "audio/pcma")
    assert not is_speech(b"\x00" * 960, "audio/pcm") and not is_speech(b"\xff" * 960, "audio/pcm")
    assert is_speech(b"\x00" * 958 + b"\x00\x01", "audio/pcm")


async def test_same_seed_gives_same_delta_sizes(make_server: Callable[..., Any]) -> None:
    sizes = []
    for _ in range(2):
        server = await make_server(seed=7, turns=[Turn.audio(default_audio(1000), "Same every time.")])
        client, _ = await pcmu_session(server, turn_detection=None,
                                       transcription={"model": "whisper-1"})
        await client.send({"type": "response.create"})
        await client.until("response.done")
        sizes.append([b64len(e) for e in client.events if e["type"] == "response.output_audio.delta"])
    assert sizes[0] == sizes[1]


async def test_client_disconnect_mid_response_stops_cleanly(make_server: Callable[..., Any]) -> None:
    server = await make_server(speed=1.0, clock=ManualClock(), turns=[Turn.audio(default_audio(3000), "Long.")])
    client, conn = await pcmu_session(server, turn_detection=None)
    await client.send({"type": "response.create"})
    delta = await client.until("response.output_audio.delta")  # the answer waits for the clock from here
    await client.ws.close()
    assert await conn.wait_closed() == 1000 and conn.closed_by == "client"
    await conn.wait_for(lambda: conn.responses[0].status == "disconnected", 2, "response stopped")
    assert not conn.responses[0].done and conn.responses[0].audio == base64.b64decode(delta["delta"])


async def test_keep_records_bounds_what_a_long_connection_keeps() -> None:
    """The local backend and the capacity benchmark keep only recent events per connection, and
    drop a connection once it closed: an hour-long call costs the server bounded memory."""
    server = await FakeRealtimeServer(script=Script(speed=math.inf), keep_records=5).start()
    try:
        client = await open_client(server)
        conn = await server.wait_for_connection()
        await client.append(b"\xff" * 160 * 40)
        await conn.wait_for_input_audio(160 * 40)
        assert len(conn.input_audio) == 160 * 40          # the audio itself is all there
        assert len(conn.appends) == 5 and len(conn.received) == 5
        assert all(event["type"] == "input_audio_buffer.append" for _t, event in conn.received)
        await client.ws.close()
        await until(lambda: not server.connections, "the closed connection to be dropped")
    finally:
        await server.stop()
