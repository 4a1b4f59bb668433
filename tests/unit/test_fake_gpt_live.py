"""Tests of the strict fake GPT-Live server itself, driven by a plain ``websockets`` client (and once by
the openai SDK's own Live client)."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, get_args

import pytest
from openai.types.live import ClientEvent, ServerEvent
from openai.types.realtime import RealtimeClientEvent
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

from aribot.plugins.local_backend.realtime.script import default_audio
from tests.fake_gpt_live import (
    HANDLERS,
    SENT_EVENT_TYPES,
    FakeBugError,
    FakeGptLiveServer,
    FunctionCall,
    LiveConnection,
    Script,
    Turn,
    check_server_event,
)
from tests.unit.timing import ManualClock

MODEL = "gpt-live-1"
PCMU = {"type": "audio/pcmu", "rate": 8000}
SPEECH = bytes([0x10]) * 160  # one loud 20 ms µ-law frame
SILENCE = b"\xff" * 160  # one silent 20 ms µ-law frame
LOOKUP_ORDER = {"type": "function", "name": "lookup_order", "description": "Get order status",
                "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}},
                               "required": ["order_id"], "additionalProperties": False}, "strict": True}
RESPONSES = {"type": "responses", "responses": {"model": "gpt-5.6-luna", "tools": [LOOKUP_ORDER],
                                                "parallel_tool_calls": False}}


def sdk_types(union: Any) -> set[str]:
    """The ``type`` literals of an SDK event union, straight from the SDK."""
    return {get_args(model.model_fields["type"].annotation)[0] for model in get_args(get_args(union)[0])}


class Client:
    """A minimal GPT-Live client on ``websockets`` that keeps every event it received."""

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
            await self.send({"type": "session.input_audio.append", "audio": chunk})

    async def start(self, event_id: str | None = "start_1", **session: Any) -> dict[str, Any]:
        """Send ``session.start`` (µ-law unless ``audio`` is given) and return ``session.started`` or ``error``."""
        session = {"model": MODEL, "audio": {"format": PCMU}, **session}
        await self.send({"type": "session.start", "session": session, **({"event_id": event_id} if event_id else {})})
        while True:
            reply = await self.recv()
            if reply["type"] in ("session.started", "error"):
                return reply

    def types(self) -> list[str]:
        return [event["type"] for event in self.events]


@pytest.fixture
async def make_server() -> AsyncIterator[Callable[..., Any]]:
    """Start fake servers with a given Script (and a ``clock``: real time if none); each is stopped and
    checked for fake bugs on teardown."""
    servers: list[FakeGptLiveServer] = []

    async def factory(clock: ManualClock | None = None, **script: Any) -> FakeGptLiveServer:
        script.setdefault("speed", math.inf)
        if clock is not None:  # a periodic timer would let clock.run_until jump ahead while a turn is mid-send
            script.setdefault("usage_interval_s", None)
        server = FakeGptLiveServer(script=Script(**script), clock=clock)
        servers.append(await server.start())
        return server

    yield factory
    for server in servers:
        async with asyncio.timeout(10):  # a hang guard: a turn paused on a test's clock must not block stop()
            await server.stop()
        server.assert_no_fake_bugs()


async def open_client(server: FakeGptLiveServer, headers: dict[str, str] | None = None) -> Client:
    # max_queue=None: events this client never reads must not hold back the server's close frame
    ws = await connect(server.url, additional_headers=headers or {"Authorization": "Bearer test-key"},
                       max_size=None, max_queue=None)
    return Client(ws)


async def live_session(server: FakeGptLiveServer, **session: Any) -> tuple[Client, LiveConnection]:
    """A connected client with a started session (µ-law unless overridden)."""
    client = await open_client(server)
    reply = await client.start(**session)
    assert reply["type"] == "session.started", reply
    return client, server.connections[-1]


def b64len(event: dict[str, Any]) -> int:
    return len(base64.b64decode(event["delta"]))


# ----- handshake -------------------------------------------------------------------------------

async def test_session_started_resolves_defaults_and_echoes_event_id(make_server: Callable[..., Any]) -> None:
    server = await make_server()
    client = await open_client(server)
    before = int(time.time())
    await client.send({"type": "session.start", "event_id": "start_1", "session": {"model": MODEL}})
    started = await client.recv()
    assert started["type"] == "session.started" and started["client_event_id"] == "start_1"
    session = started["session"]
    assert re.fullmatch(r"live_[0-9A-Za-z]{21}", session["id"])
    assert before + 3600 <= session["expires_at"] <= int(time.time()) + 3600
    assert {k: v for k, v in session.items() if k not in ("id", "expires_at")} == {
        "status": "active", "model": MODEL, "audio": {"format": {"type": "audio/pcm", "rate": 24000},
                                                      "output": {"voice": "marin"}},
        "delegation": {"type": "client"}, "input": [], "store": False}
    conn = await server.wait_for_connection()
    assert conn.session == {"model": MODEL} and conn.resource == session
    assert conn.headers["authorization"] == "Bearer test-key" and conn.path == "/v1/live/sessions"


async def test_session_started_echoes_a_full_config(make_server: Callable[..., Any]) -> None:
    server = await make_server()
    history = [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Be brief."}]},
               {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi."}]}]
    client, conn = await live_session(server, instructions="You answer calls.", audio={
        "format": {"type": "audio/pcma", "rate": 8000}, "output": {"voice": "cedar"}}, delegation=RESPONSES,
        input=history, store=True)
    session = conn.resource
    assert session is not None
    assert session["instructions"] == "You answer calls." and session["input"] == history
    assert session["audio"] == {"format": {"type": "audio/pcma", "rate": 8000}, "output": {"voice": "cedar"}}
    assert session["delegation"] == RESPONSES and session["store"] is True
    await client.ws.close()


@pytest.mark.parametrize(
    ("path", "headers", "status", "code"),
    [
        ("/v1/live/sessions", {}, 401, None),
        ("/v1/live/sessions", {"Authorization": "Bearer wrong"}, 401, "invalid_api_key"),
        ("/v1/live/sessions?model=gpt-live-1", {"Authorization": "Bearer test-key"}, 400, "unknown_parameter"),
        ("/v1/live/sessions?x=1", {"Authorization": "Bearer test-key"}, 400, "unknown_parameter"),
        ("/v1/live/sessions", {"Authorization": "Bearer test-key", "OpenAI-Beta": "realtime=v1"}, 400,
         "beta_api_not_supported"),
        ("/v1/realtime", {"Authorization": "Bearer test-key"}, 404, None),
    ],
)
async def test_handshake_refusals_are_http_errors_with_json_bodies(
        make_server: Callable[..., Any], path: str, headers: dict[str, str], status: int, code: str | None) -> None:
    server = await make_server()
    with pytest.raises(InvalidStatus) as caught:
        await connect(f"ws://127.0.0.1:{server.port}{path}", additional_headers=headers)
    response = caught.value.response
    assert response.status_code == status and response.headers["Content-Type"] == "application/json"
    error = json.loads(response.body)["error"]
    assert error["code"] == code and error["type"] == "invalid_request_error" and error["message"]
    assert server.connections == [] and server.rejected_handshakes[-1]["status"] == status


async def test_fault_injection_refuse_status_and_accept_delay(make_server: Callable[..., Any]) -> None:
    clock = ManualClock()
    server = await make_server(clock=clock)
    for status in (503, 403):
        server.refuse_status = status
        with pytest.raises(InvalidStatus) as caught:
            await open_client(server)
        assert caught.value.response.status_code == status
    server.refuse_status = None
    server.accept_delay_s = 0.3
    opening = asyncio.ensure_future(open_client(server))
    delay = await clock.next_timer()  # the handshake waits on the server's clock
    assert delay.when == clock.now + 0.3 and server.connections == [] and not opening.done()
    clock.advance_to(delay.when)
    client = await opening
    assert len(server.connections) == 1
    await client.ws.close()


async def test_error_on_start_replaces_session_started(make_server: Callable[..., Any]) -> None:
    server = await make_server(error_on_start={"code": "server_error", "message": "Capacity."})
    client = await open_client(server)
    reply = await client.start()
    assert reply["type"] == "error"
    assert reply["error"] == {"type": "server_error", "code": "server_error", "message": "Capacity.", "param": None,
                              "client_event_id": "start_1"}
    conn = await server.wait_for_connection()
    assert not conn.started and conn.client_bugs == []  # an injected failure is not the client's fault
    await client.ws.close()


# ----- strictness: session.start ---------------------------------------------------------------

def _tools(*tools: dict[str, Any]) -> dict[str, Any]:
    return {"type": "responses", "responses": {"model": "gpt-5.6-luna", "tools": list(tools)}}


def _message(role: str, *texts: str) -> dict[str, Any]:
    part = "output_text" if role == "assistant" else "input_text"
    return {"type": "message", "role": role, "content": [{"type": part, "text": text} for text in texts]}


@pytest.mark.parametrize(
    ("session", "code", "param"),
    [
        ({"voice": "marin"}, "unknown_parameter", "session.voice"),
        ({"turn_detection": {"type": "server_vad"}}, "unknown_parameter", "session.turn_detection"),
        ({"modalities": ["audio"]}, "unknown_parameter", "session.modalities"),
        ({"audio": {"input": {"format": PCMU}}}, "unknown_parameter", "session.audio.input"),
        ({"audio": {"format": {"type": "audio/pcm", "rate": 8000}}}, "invalid_value", "session.audio.format.rate"),
        ({"audio": {"format": {"type": "audio/pcmu", "rate": 16000}}}, "invalid_value", "session.audio.format.rate"),
        ({"audio": {"format": {"type": "audio/pcmu", "rate": "8000"}}}, "invalid_type", "session.audio.format.rate"),
        ({"audio": {"format": {"type": "audio/pcmu"}}}, "missing_required_parameter", "session.audio.format.rate"),
        ({"audio": {"format": {"type": "g711_ulaw", "rate": 8000}}}, "invalid_value", "session.audio.format.type"),
        ({"audio": {"format": PCMU, "output": {"voice": "nova"}}}, "invalid_value", "session.audio.output.voice"),
        ({"model": "gpt-realtime"}, "model_not_found", "session.model"),
        ({"model": None}, "invalid_type", "session.model"),
        ({"instructions": "x" * (16_384 * 4 + 4)}, "string_above_max_length", "session.instructions"),
        ({"input": [_message("user", "hi")] * 129}, "invalid_value", "session.input"),
        ({"input": [_message("system", "hi")]}, "invalid_value", "session.input[0].role"),
        ({"input": [_message("user", "a", "b")]}, "invalid_value", "session.input[0].content"),
        ({"input": [_message("user", "x" * 40_000)]}, "string_above_max_length", "session.input"),
        ({"delegation": {"type": "responses", "responses": {}}}, "missing_required_parameter",
         "session.delegation.responses.model"),
        ({"delegation": {"type": "realtime"}}, "invalid_value", "session.delegation.type"),
        ({"delegation": _tools({"type": "function", "function": {"name": "lookup_order"}})},
         "missing_required_parameter", "session.delegation.responses.tools[0].name"),
        ({"delegation": _tools({**LOOKUP_ORDER, "function": {}})}, "unknown_parameter",
         "session.delegation.responses.tools[0].function"),
        ({"delegation": _tools({**LOOKUP_ORDER, "parameters": {"type": "string"}})}, "invalid_value",
         "session.delegation.responses.tools[0].parameters"),
        ({"delegation": _tools(LOOKUP_ORDER, LOOKUP_ORDER)}, "invalid_value",
         "session.delegation.responses.tools[1].name"),
        ({"delegation": {"type": "decisions", "decisions": {"model": "x", "questions": []}}}, "fake_unsupported",
         "session.delegation.type"),
    ],
)
async def test_session_start_is_validated_strictly(make_server: Callable[..., Any], session: dict[str, Any],
                                                   code: str, param: str) -> None:
    server = await make_server()
    client = await open_client(server)
    reply = await client.start(event_id="s1", **session)
    assert reply["type"] == "error", reply
    assert (reply["error"]["code"], reply["error"]["param"]) == (code, param), reply["error"]
    assert reply["error"]["client_event_id"] == "s1" and reply["error"]["type"] == "invalid_request_error"
    conn = await server.wait_for_connection()
    assert [(bug.event_type, bug.code) for bug in conn.client_bugs] == [("session.start", code)]
    assert (await client.start())["type"] == "session.started"  # a refused start can be corrected
    await client.ws.close()


async def test_unknown_field_message_names_the_path(make_server: Callable[..., Any]) -> None:
    server = await make_server()
    client = await open_client(server)
    reply = await client.start(voice="marin")
    assert reply["error"]["message"] == "Unknown parameter: 'session.voice'."
    await client.ws.close()


async def test_commands_before_session_started_are_client_bugs(make_server: Callable[..., Any]) -> None:
    clock = ManualClock()
    server = await make_server(clock=clock, start_latency_s=1.5)
    client = await open_client(server)
    await client.append(SILENCE)
    assert (await client.error())["code"] == "session_not_started"
    await client.send({"type": "session.start", "event_id": "go", "session": {"model": MODEL, "audio": {
        "format": PCMU}}})
    conn = await server.wait_for_connection()
    latency = await clock.next_timer()  # session.started waits 1.5 s on the server's clock
    assert latency.when == clock.now + 1.5
    await client.append(SILENCE)
    await client.send({"type": "session.instructions.append", "event_id": "a1", "delegation_id": None,
                       "content": "Greet the caller."})
    await client.send({"type": "session.start", "session": {"model": MODEL}})
    await client.send({"type": "session.close"})
    for expected in ("session_not_started", "session_not_started", "session_already_started", "session_not_started"):
        assert (await client.error())["code"] == expected
    clock.advance_to(latency.when)
    started = await client.until("session.started")
    assert started["client_event_id"] == "go"
    assert [(bug.event_type, bug.code) for bug in conn.client_bugs] == [
        ("session.input_audio.append", "session_not_started"), ("session.input_audio.append", "session_not_started"),
        ("session.instructions.append", "session_not_started"), ("session.start", "session_already_started"),
        ("session.close", "session_not_started")]
    assert conn.client_bugs[2].client_event_id == "a1"
    assert conn.input_audio == b"" and conn.appends == []
    with pytest.raises(AssertionError, match="session_not_started"):
        server.assert_no_client_bugs()
    await client.ws.close()


# ----- strictness: events after start ----------------------------------------------------------

@pytest.mark.parametrize("event_type", sorted(sdk_types(RealtimeClientEvent) - sdk_types(ClientEvent)))
async def test_realtime_client_events_are_refused(make_server: Callable[..., Any], event_type: str) -> None:
    server = await make_server()
    client, conn = await live_session(server)
    await client.send({"type": event_type, "event_id": "rt"})
    error = await client.error()
    assert (error["code"], error["param"], error["client_event_id"]) == ("invalid_value", "type", "rt")
    assert "Realtime API event" in error["message"]
    assert conn.client_bugs[-1].event_type == event_type
    await client.ws.close()


@pytest.mark.parametrize(
    ("event", "code", "param"),
    [
        ({"type": "session.update", "session": {"instructions": "Be nice."}}, "immutable_field_update",
         "session.instructions"),
        ({"type": "session.update", "session": {"audio": {"output": {"voice": "ash"}}}}, "immutable_field_update",
         "session.audio"),
        ({"type": "session.update", "session": {"model": MODEL}}, "immutable_field_update", "session.model"),
        ({"type": "session.update", "session": {"turn_detection": None}}, "unknown_parameter",
         "session.turn_detection"),
        ({"type": "session.update", "session": {"delegation": RESPONSES}}, "immutable_field_update",
         "session.delegation.type"),
        ({"type": "session.update", "session": {"type": "realtime"}}, "unknown_parameter", "session.type"),
        ({"type": "response.create"}, "responses_delegation_required", None),
        ({"type": "response.item.create", "item": {"type": "function_call_output", "call_id": "c", "output": "x"}},
         "responses_delegation_required", None),
        ({"type": "decision.create", "event_id": "d"}, "fake_unsupported", "type"),
        ({"type": "session.output_audio.fixture.play", "audio": ""}, "fake_unsupported", "type"),
        ({"type": "session.input_audio.append", "audio": "AAAA", "foo": 1}, "unknown_parameter", "foo"),
        ({"type": "session.input_audio.append"}, "missing_required_parameter", "audio"),
        ({"type": "session.input_audio.append", "audio": "not base64!"}, "invalid_value", "audio"),
        ({"type": "session.input_audio.mute", "muted": True}, "unknown_parameter", "muted"),
        ({"type": "session.close", "reason": "bye"}, "unknown_parameter", "reason"),
        ({"event_id": "e"}, "missing_required_parameter", "type"),
        ({"type": "scooby.dooby.doo"}, "invalid_value", "type"),
    ],
)
async def test_events_after_start_are_validated_strictly(make_server: Callable[..., Any], event: dict[str, Any],
                                                         code: str, param: str | None) -> None:
    server = await make_server()
    client, conn = await live_session(server)
    await client.send(event)
    error = await client.error()
    assert (error["code"], error["param"]) == (code, param), error
    assert [bug.code for bug in conn.client_bugs] == [code]
    await client.ws.close()


async def test_bad_frames_and_odd_pcm_bytes(make_server: Callable[..., Any]) -> None:
    server = await make_server()
    client, conn = await live_session(server, audio={"format": {"type": "audio/pcm", "rate": 16000}})
    await client.send({"type": "session.input_audio.append", "audio": base64.b64encode(b"\x00" * 641).decode()})
    error = await client.error()
    assert (error["code"], error["param"]) == ("invalid_audio", "audio")
    await client.ws.send("{not json")
    assert (await client.error())["code"] == "invalid_json"
    await client.ws.send(b"\x00\x01")
    assert (await client.error())["code"] == "invalid_event"
    await client.send({"type": "session.input_audio.append", "audio": base64.b64encode(b"\x00" * 640).decode()})
    await conn.wait_for_input_audio(640)
    assert conn.input_audio == b"\x00" * 640 and len(conn.client_bugs) == 3
    await client.ws.close()


async def test_g711_has_no_alignment_rule(make_server: Callable[..., Any]) -> None:
    server = await make_server()
    client, conn = await live_session(server)
    await client.append(SILENCE[:7] + SILENCE[:1], frame_bytes=7)
    assert await conn.wait_for_input_audio(8) == 8 and conn.client_bugs == []
    await client.ws.close()


# ----- appends, mute, session.update -----------------------------------------------------------

def _append(kind: str = "instructions", content: str = "Greet the caller.", **fields: Any) -> dict[str, Any]:
    return {"type": f"session.{kind}.append", "content": content, **fields}


@pytest.mark.parametrize(
    ("event", "code", "param"),
    [
        (_append(), "missing_required_parameter", "delegation_id"),
        (_append("thinking", delegation_id="item_nope"), "invalid_value", "delegation_id"),
        (_append("commentary", delegation_id=7), "invalid_type", "delegation_id"),
        (_append(content="x" * 2001, delegation_id=None), "string_above_max_length", "content"),
        (_append(content="  ", delegation_id=None), "invalid_value", "content"),
        (_append(content=["a"], delegation_id=None), "invalid_type", "content"),
        ({**_append(delegation_id=None), "role": "system"}, "unknown_parameter", "role"),
    ],
)
async def test_append_rules(make_server: Callable[..., Any], event: dict[str, Any], code: str, param: str) -> None:
    server = await make_server()
    client, conn = await live_session(server)
    await client.send(event)
    error = await client.error()
    assert (error["code"], error["param"]) == (code, param), error
    if code == "string_above_max_length":
        assert error["message"] == "Context append text must not exceed 500 tokens."
    assert conn.appends == [] and len(conn.client_bugs) == 1
    await client.ws.close()


async def test_appends_are_acked_once_input_audio_follows(make_server: Callable[..., Any]) -> None:
    server = await make_server(default_turns=False)
    client, conn = await live_session(server)
    await client.append(SILENCE * 3)  # 60 ms on the session timeline
    await client.send(_append("thinking", "Caller id is 555.", delegation_id=None, event_id="t1"))
    await client.send(_append(content="x" * 2000, delegation_id=None))  # exactly ~500 tokens: accepted
    await conn.wait_for_append(1, acked=False)
    assert not conn.appends[0].acked and conn.sent_of_type("session.thinking.appended") == []
    await client.append(SILENCE)
    ack = await client.until("session.thinking.appended")
    assert (ack["client_event_id"], ack["start_ms"], ack["end_ms"]) == ("t1", 60, 80)
    ack = await client.until("session.instructions.appended")
    assert "client_event_id" not in ack and (ack["start_ms"], ack["end_ms"]) == (60, 80)
    assert conn.ignored_triggers == ["append"]  # instructions ask for speech; the script has none left
    assert [a.type for a in conn.appends] == ["session.thinking.append", "session.instructions.append"]
    await client.ws.close()


async def test_mute_and_unmute_are_acked_and_muted_speech_is_not_heard(make_server: Callable[..., Any]) -> None:
    server = await make_server()
    client, conn = await live_session(server)
    await client.send({"type": "session.input_audio.mute", "event_id": "m"})
    assert (await client.until("session.input_audio.muted"))["client_event_id"] == "m"
    await client.append(SPEECH * 10 + SILENCE * 30)
    await client.send({"type": "session.input_audio.unmute"})
    await client.until("session.input_audio.unmuted")
    assert conn.turns == [] and len(conn.input_audio) == 40 * 160  # recorded, but the model heard silence
    await client.append(SPEECH * 10 + SILENCE * 25)
    await conn.wait_for_turn(0, done=False)
    assert conn.turns[0].trigger == "caller" and not conn.muted
    await client.ws.close()


async def test_session_update_changes_only_the_responses_backend(make_server: Callable[..., Any]) -> None:
    server = await make_server()
    client, conn = await live_session(server, delegation=RESPONSES)
    other = {"type": "function", "name": "end_call", "parameters": {"type": "object", "properties": {}}}
    await client.send({"type": "session.update", "event_id": "u1", "session": {"delegation": {
        "type": "responses", "responses": {"tools": [other], "instructions": "Be exact."}}}})
    updated = await client.until("session.updated")
    responses = updated["session"]["delegation"]["responses"]
    assert updated["client_event_id"] == "u1" and responses["tools"] == [other]
    assert responses["instructions"] == "Be exact." and responses["model"] == "gpt-5.6-luna"
    assert conn.resource == updated["session"] and conn.session is not None
    assert conn.session["delegation"] == RESPONSES  # the start config as the client sent it
    for change in ({"type": "client"}, None):
        await client.send({"type": "session.update", "session": {"delegation": change}})
        error = await client.error()
        assert (error["code"], error["param"]) == ("immutable_field_update", "session.delegation.type")
    await client.send({"type": "session.instructions.append", "delegation_id": "item_1", "content": "x"})
    assert "Responses delegation" in (await client.error())["message"]
    await client.ws.close()


# ----- behaviour: speech, caller turns, barge-in ------------------------------------------------

async def test_greeting_answers_an_instructions_append(make_server: Callable[..., Any]) -> None:
    greeting = default_audio(1200)
    server = await make_server(turns=[Turn.speech(greeting, "Hi, thanks for calling ACME.", on="append")])
    client, conn = await live_session(server)
    await client.append(SILENCE)  # the caller pump keeps audio flowing
    await client.send(_append(content="Greet the caller now.", delegation_id=None, event_id="greet"))
    await client.append(SILENCE)
    ack = await client.until("session.instructions.appended")
    assert (ack["client_event_id"], ack["start_ms"], ack["end_ms"]) == ("greet", 20, 40)
    turn = await conn.wait_for_turn(0)
    deltas = conn.sent_of_type("session.output_audio.delta")
    assert b"".join(base64.b64decode(d["delta"]) for d in deltas) == greeting == bytes(turn.audio_sent)
    sizes = [b64len(d) for d in deltas]
    assert len(set(sizes)) > 1 and all(60 * 8 <= size <= 140 * 8 for size in sizes[:-1])  # irregular, ~100 ms
    assert all(set(d) == {"type", "delta"} for d in deltas)  # primary WebSocket: no event_id, no timing
    words = conn.sent_of_type("session.output_transcript.delta")
    assert "".join(w["delta"] for w in words) == "Hi, thanks for calling ACME." == turn.transcript_sent
    assert words[0]["start_ms"] == 40 and words[-1]["end_ms"] <= 40 + 1200  # on the session timeline
    assert all(w["start_ms"] < w["end_ms"] for w in words)
    assert all(a["end_ms"] <= b["start_ms"] for a, b in zip(words, words[1:]))
    assert turn.trigger == "append" and not turn.interrupted
    assert not {"response.done", "session.output_audio.done"} & set(conn.sent_types())
    await client.ws.close()


async def test_caller_utterance_gets_a_transcript_then_a_reply(make_server: Callable[..., Any]) -> None:
    reply_audio = default_audio(400)
    server = await make_server(turns=[Turn.speech(reply_audio, "Your order shipped.", on="caller")],
                               caller_transcripts=["Where is my order 4 2 1"])
    client, conn = await live_session(server)
    await client.append(SILENCE * 10 + SPEECH * 10 + SILENCE * 24)  # speech 200-400 ms, then 480 ms of silence
    assert conn.turns == [] and conn.sent_of_type("session.input_transcript.delta") == []
    await client.append(SILENCE)  # 500 ms of silence: the utterance ended
    first = await client.until("session.input_transcript.delta")
    second = await client.until("session.input_transcript.delta")
    assert first["delta"] + second["delta"] == "Where is my order 4 2 1"
    assert (first["start_ms"], second["end_ms"]) == (200, 400) and first["end_ms"] == second["start_ms"]
    turn = await conn.wait_for_turn(0)
    assert turn.trigger == "caller" and bytes(turn.audio_sent) == reply_audio and turn.start_ms == 900
    await client.ws.close()


async def test_pcm16k_session_runs_the_vad_on_its_own_format(make_server: Callable[..., Any]) -> None:
    server = await make_server(turns=[Turn.speech(default_audio(100, 32), "Yes.")])
    client, conn = await live_session(server, audio={"format": {"type": "audio/pcm", "rate": 16000}})
    loud = (3000).to_bytes(2, "little", signed=True) * 320
    await client.append(loud * 5 + bytes(640) * 25, frame_bytes=640)
    turn = await conn.wait_for_turn(0)
    assert turn.start_ms == 600 and len(turn.audio_sent) == 3200
    assert all(b64len(d) % 2 == 0 for d in conn.sent_of_type("session.output_audio.delta"))
    await client.ws.close()


async def test_output_is_paced_on_the_servers_clock(make_server: Callable[..., Any]) -> None:
    clock = ManualClock()
    server = await make_server(speed=2.0, clock=clock, turns=[Turn.speech(default_audio(1000), "Hello there.")])
    client, conn = await live_session(server)
    await client.send(_append(delegation_id=None))
    await client.append(SILENCE)
    await client.until("session.output_audio.delta")  # the rest waits for the clock
    start = clock.now
    await clock.run_until(lambda: conn.turns and conn.turns[0].done)
    assert clock.now - start == pytest.approx(0.5)  # 1000 ms of audio at 2x real time
    await client.ws.close()


async def test_barge_in_stops_the_model_without_any_done_event(make_server: Callable[..., Any]) -> None:
    clock = ManualClock()
    answer = default_audio(3000)
    server = await make_server(speed=1.0, clock=clock, turns=[Turn.speech(answer, "A long answer " * 10, on="append"),
                                                               Turn.speech(default_audio(200), "Sorry, go on.")])
    client, conn = await live_session(server)
    await client.send(_append(delegation_id=None))
    await client.append(SILENCE)
    await client.until("session.output_audio.delta")
    await clock.run_until(lambda: len(conn.turns[0].audio_sent) >= 1000)  # about 125 ms were sent
    await client.append(SPEECH)  # the caller barges in
    interruption = await conn.wait_for_interruption()
    sent_then = len(conn.turns[0].audio_sent)
    assert interruption.cause == "caller" and interruption.turn_index == 0
    assert interruption.bytes_sent == sent_then < len(answer) == interruption.bytes_total
    await clock.run_until(lambda: conn.turns[0].done)
    await client.append(SPEECH * 4 + SILENCE * 25)
    await conn.wait_for_turn(1, done=False)
    assert len(conn.turns[0].audio_sent) == sent_then and conn.turns[0].interrupted  # nothing after the barge-in
    assert len(conn.interruptions) == 1 and conn.turns[1].trigger == "caller"
    assert not {"response.done", "session.output_audio.done"} & set(conn.sent_types())
    await client.ws.close()


async def test_an_append_cuts_in_on_speech_in_progress(make_server: Callable[..., Any]) -> None:
    clock = ManualClock()
    server = await make_server(speed=1.0, clock=clock, turns=[Turn.speech(default_audio(2000), "One two three."),
                                                               Turn.speech(default_audio(100), "Goodbye.")])
    client, conn = await live_session(server)
    await client.send(_append(delegation_id=None))
    await client.append(SILENCE)
    await client.until("session.output_audio.delta")
    await client.send(_append("commentary", "Say goodbye.", delegation_id=None))
    await client.append(SILENCE)
    await clock.run_until(lambda: len(conn.turns) > 1 and conn.turns[1].done)
    assert conn.interruptions[0].cause == "append" and conn.turns[0].interrupted
    assert conn.turns[1].transcript_sent == "Goodbye."
    await client.ws.close()


# ----- behaviour: delegation -------------------------------------------------------------------

def _nested(conn: LiveConnection, event_type: str) -> list[dict[str, Any]]:
    """The ``response.event`` wrappers the fake sent around nested events of ``event_type``."""
    return [e for e in conn.sent_of_type("response.event") if e["event"]["type"] == event_type]


async def test_function_call_round_trip_with_responses_delegation(make_server: Callable[..., Any]) -> None:
    spoken = default_audio(300)
    server = await make_server(turns=[
        Turn.function_call("lookup_order", {"order_id": "421"}, call_id="call_1", answer="Order 421 shipped.",
                           audio=default_audio(100), transcript="Let me check.", on="caller"),
        Turn.speech(spoken, "Your order shipped and arrives tomorrow.", on="backend")])
    client, conn = await live_session(server, delegation=RESPONSES)
    await client.append(SPEECH * 5 + SILENCE * 25)
    created = await client.until("session.delegation.created")
    delegation = created["delegation"]
    assert re.fullmatch(r"item_\w+", delegation["id"]) and created["offset_ms"] == 600
    assert delegation["type"] == "delegation" and delegation["target"] == "responses"
    assert re.fullmatch(r"resp_\w+", delegation["response_id"])
    await conn.wait_for(lambda: _nested(conn, "response.completed"), "the backend's function call")
    assert {e["delegation_id"] for e in conn.sent_of_type("response.event")} == {delegation["id"]}
    snapshot = _nested(conn, "response.created")[0]["event"]["response"]
    assert snapshot["id"] == delegation["response_id"]
    assert (snapshot["output"], snapshot["tools"], snapshot["instructions"]) == ([], [], None)
    (item_done,) = _nested(conn, "response.output_item.done")
    assert {k: item_done["event"]["item"][k] for k in ("type", "call_id", "name", "arguments")} == {
        "type": "function_call", "call_id": "call_1", "name": "lookup_order", "arguments": '{"order_id": "421"}'}
    await client.send({"type": "response.create", "event_id": "early"})
    error = await client.error()
    assert (error["code"], error["client_event_id"]) == ("missing_tool_output", "early")
    assert "call_1" in error["message"]
    await client.send({"type": "response.item.create", "item": {"type": "function_call_output", "call_id": "call_9",
                                                                 "output": "{}"}})
    assert (await client.error())["code"] == "invalid_tool_call_id"
    await client.send({"type": "response.item.create", "item": {"type": "function_call_output", "call_id": "call_1",
                                                                 "output": '{"status": "shipped"}'}})
    output = await conn.wait_for_tool_output()
    assert (output.call_id, output.name, output.output, output.delegation_id) == (
        "call_1", "lookup_order", '{"status": "shipped"}', delegation["id"])
    await client.send({"type": "response.create", "event_id": "go"})
    answer = await conn.wait_for_turn(1)
    assert answer.trigger == "backend" and bytes(answer.audio_sent) == spoken
    deltas = _nested(conn, "response.output_text.delta")
    assert "".join(d["event"]["delta"] for d in deltas) == "Order 421 shipped."
    assert all(d["delegation_id"] == delegation["id"] and d["client_event_id"] == "go" for d in deltas)
    final = conn.sent_of_type("response.event")[-1]["event"]
    assert final["type"] == "response.completed" and final["response"]["usage"]["output_tokens"] > 0
    assert conn.turns[0].kind == "function_call" and conn.turns[0].call_ids == ["call_1"]
    assert bytes(conn.turns[0].audio_sent) == default_audio(100)  # the acknowledgement spoken meanwhile
    assert [bug.code for bug in conn.client_bugs] == ["missing_tool_output", "invalid_tool_call_id"]
    assert conn.warnings == []
    await client.ws.close()


async def test_parallel_calls_need_every_output_before_response_create(make_server: Callable[..., Any]) -> None:
    calls = [FunctionCall.of("lookup_order", {"order_id": "1"}), FunctionCall.of("lookup_order", {"order_id": "2"})]
    server = await make_server(turns=[Turn.function_calls(calls, answer="Both shipped.", on="append")],
                               default_turns=False)
    client, conn = await live_session(server, delegation=RESPONSES)
    await client.send(_append("thinking", "x", delegation_id=None))
    await client.send(_append(delegation_id=None))
    await client.append(SILENCE)
    turn = await conn.wait_for_turn(0)
    first, second = turn.call_ids
    await client.send({"type": "response.item.create", "item": {"type": "function_call_output", "call_id": first,
                                                                 "output": "shipped"}})
    await client.send({"type": "response.create"})
    error = await client.error()
    assert error["code"] == "missing_tool_output" and second in error["message"] and first not in error["message"]
    await client.send({"type": "response.item.create", "item": {"type": "function_call_output", "call_id": second,
                                                                 "output": "shipped"}})
    await client.send({"type": "response.item.create", "item": {"type": "function_call_output", "call_id": second,
                                                                 "output": "again"}})
    assert "already has an output" in (await client.error())["message"]
    await client.send({"type": "response.create"})
    await conn.wait_for(lambda: conn.ignored_triggers == ["backend"], "the backend's answer")
    assert [o.call_id for o in conn.tool_outputs] == [first, second]
    await client.ws.close()


async def test_client_delegation_is_answered_with_commentary(make_server: Callable[..., Any]) -> None:
    server = await make_server(turns=[Turn.delegate_to_client(on="caller"),
                                      Turn.speech(default_audio(200), "It is sunny.", on="append")])
    client, conn = await live_session(server)
    await client.append(SPEECH * 5 + SILENCE * 25)
    created = await client.until("session.delegation.created")
    delegation = created["delegation"]
    assert delegation["target"] == "client" and "response_id" not in delegation
    await client.send(_append("thinking", "Checking the weather…", delegation_id=delegation["id"]))
    await client.send(_append("commentary", "Sunny, 24 degrees.", delegation_id=delegation["id"], event_id="c1"))
    await client.append(SILENCE)
    ack = await client.until("session.commentary.appended")
    assert ack["client_event_id"] == "c1"
    answer = await conn.wait_for_turn(1)
    assert answer.trigger == "append" and answer.transcript_sent == "It is sunny."
    assert [a.delegation_id for a in conn.appends] == [delegation["id"]] * 2
    await client.send({"type": "response.create"})
    assert (await client.error())["code"] == "responses_delegation_required"
    await client.ws.close()


async def test_scripted_call_in_a_client_delegation_session_is_a_warning(make_server: Callable[..., Any]) -> None:
    server = await make_server(turns=[Turn.function_call("lookup_order", {}, on="append")], default_turns=False)
    client, conn = await live_session(server)
    await client.send(_append(delegation_id=None))
    await client.append(SILENCE)
    await conn.wait_for_turn(0)
    assert "needs Responses delegation" in conn.warnings[0] and conn.delegations == []
    await client.ws.close()


# ----- behaviour: usage, gaps, ending ----------------------------------------------------------

async def test_usage_updates_are_cumulative_on_the_servers_clock(make_server: Callable[..., Any]) -> None:
    clock = ManualClock()
    server = await make_server(clock=clock, usage_interval_s=60.0)
    client, conn = await live_session(server)
    for minute in (1, 2):
        tick = await clock.next_timer()
        assert tick.when == pytest.approx(conn.protocol.started_at + 60 * minute)
        clock.advance_to(tick.when)
        usage = await client.until("session.usage.updated")
        assert usage["usage"] == {"seconds": 60.0 * minute}
        assert 0 <= usage["context_window"]["usage_ratio"] < 0.01
    await client.ws.close()


async def test_input_gaps_and_arrivals_are_recorded(make_server: Callable[..., Any]) -> None:
    clock = ManualClock()
    server = await make_server(clock=clock)
    client, conn = await live_session(server)
    start, steps = clock.now, [0.0, 0.02, 0.1, 0.4]  # pauses of 20 ms, 80 ms, 300 ms
    for count, step in enumerate(steps, 1):
        clock.advance_to(start + step)
        await client.append(SILENCE)
        await conn.wait_for(lambda count=count: len(conn.audio_arrivals) == count, f"append #{count}")
    assert [a.at - start for a in conn.audio_arrivals] == pytest.approx(steps)
    assert [a.size for a in conn.audio_arrivals] == [160] * 4
    (gap,) = conn.input_gaps
    assert (gap.start - start, gap.end - start, gap.seconds) == pytest.approx((0.1, 0.4, 0.3))
    await client.ws.close()


async def test_max_session_s_expires_the_session(make_server: Callable[..., Any]) -> None:
    clock = ManualClock()
    server = await make_server(clock=clock, max_session_s=30.0)
    client, conn = await live_session(server)
    assert conn.resource is not None and conn.resource["expires_at"] - time.time() < 31
    expiry = await clock.next_timer()
    assert expiry.when == pytest.approx(conn.protocol.started_at + 30.0)
    clock.advance_to(expiry.when)
    closed = await client.until("session.closed")
    assert closed["reason"] == "expired" and "client_event_id" not in closed
    assert closed["usage"] == {"seconds": 30.0} and closed["session"]["status"] == "active"
    with pytest.raises(ConnectionClosed):
        await client.recv()
    assert client.ws.close_code == 1000 and conn.closed_reason == "expired"


async def test_session_close_errors_pending_appends_then_closes(make_server: Callable[..., Any]) -> None:
    server = await make_server()
    client, conn = await live_session(server)
    await client.send(_append(delegation_id=None, event_id="late"))  # no audio follows: never injected
    await client.send({"type": "session.close", "event_id": "bye"})
    error = await client.error()
    assert (error["code"], error["client_event_id"]) == ("append_cancelled", "late")
    closed = await client.until("session.closed")
    assert (closed["reason"], closed["client_event_id"]) == ("close_requested", "bye")
    assert closed["session"] == conn.resource and closed["usage"]["seconds"] >= 0
    with pytest.raises(ConnectionClosed):
        await client.recv()
    assert client.ws.close_code == 1000 and conn.client_bugs == []
    assert client.types()[-2:] == ["error", "session.closed"]


@pytest.mark.parametrize("reason", ["content", "remote_hangup", "connection_lost"])
async def test_close_with_a_server_side_reason(make_server: Callable[..., Any], reason: str) -> None:
    server = await make_server(turns=[Turn.speech(default_audio(1000), "Hello.")], speed=1.0)
    client, conn = await live_session(server)
    await client.send(_append(delegation_id=None))
    await client.append(SILENCE)
    await client.until("session.output_audio.delta")
    await conn.close_with(reason)
    closed = await client.until("session.closed")
    assert closed["reason"] == reason and conn.closed_reason == reason
    with pytest.raises(ConnectionClosed):
        await client.recv()
    assert conn.sent_types()[-1] == "session.closed" and conn.turns[0].done


async def test_drop_loses_the_connection_without_close_frame(make_server: Callable[..., Any]) -> None:
    server = await make_server()
    client, conn = await live_session(server)
    await conn.drop()
    with pytest.raises(ConnectionClosedError):
        await client.recv()
    assert client.ws.close_code == 1006  # abnormal closure: no close frame
    assert conn.closed_by == "dropped" and "session.closed" not in conn.sent_types()


# ----- the fake checks itself against the SDK --------------------------------------------------

def test_event_types_are_members_of_the_sdk_unions() -> None:
    server_types, client_types = sdk_types(ServerEvent), sdk_types(ClientEvent)
    assert SENT_EVENT_TYPES <= server_types, SENT_EVENT_TYPES - server_types
    assert set(HANDLERS) <= client_types, set(HANDLERS) - client_types
    assert "session.output_audio.delta" in SENT_EVENT_TYPES and "session.start" in HANDLERS


async def test_the_rest_of_the_client_union_is_refused_as_unsupported(make_server: Callable[..., Any]) -> None:
    server = await make_server()
    client, conn = await live_session(server)
    for event_type in sorted(sdk_types(ClientEvent) - set(HANDLERS)):
        await client.send({"type": event_type})
        assert (await client.error())["code"] == "fake_unsupported"
    assert len(conn.client_bugs) == len(sdk_types(ClientEvent) - set(HANDLERS)) > 0
    await client.ws.close()


async def test_every_frame_of_a_conversation_validates_against_the_sdk(make_server: Callable[..., Any]) -> None:
    clock = ManualClock()
    server = await make_server(clock=clock, usage_interval_s=1.0, turns=[
        Turn.speech(default_audio(300), "Hello, ACME.", on="append"),
        Turn.function_call("lookup_order", {"order_id": "7"}, call_id="call_7", on="caller"),
        Turn.speech(default_audio(200), "Shipped.", on="backend")])
    client, conn = await live_session(server, delegation=RESPONSES, instructions="Answer calls.")
    await client.send({"type": "session.input_audio.mute"})
    await client.send({"type": "session.input_audio.unmute"})
    await client.send(_append(delegation_id=None))
    await client.send({"type": "session.update", "session": {"delegation": {"type": "responses", "responses": {
        "tool_choice": "auto"}}}})
    await client.append(SILENCE + SPEECH * 5 + SILENCE * 25)
    await conn.wait_for_turn(1)
    await client.send({"type": "response.item.create", "item": {"type": "function_call_output", "call_id": "call_7",
                                                                 "output": "shipped"}})
    await client.send({"type": "response.create"})
    await conn.wait_for_turn(2)
    await client.send(_append("thinking", "Order 7 is a gift.", delegation_id=None))
    await client.send(_append("commentary", "Mention the gift wrap.", delegation_id=None))
    await client.append(SILENCE)
    await conn.wait_for_turn(3)  # the script ran out: a default reply
    await client.send({"type": "scooby"})
    await client.error()
    clock.advance_to((await clock.next_timer()).when)
    await client.until("session.usage.updated")
    await client.send({"type": "session.close"})
    await client.until("session.closed")
    assert set(conn.sent_types()) == SENT_EVENT_TYPES  # every kind of frame the fake can send
    assert [problem for _, event in conn.sent for problem in check_server_event(event)] == []
    assert server.fake_bugs == []


def test_the_validator_catches_bad_frames() -> None:
    assert check_server_event({"type": "session.output_audio.delta", "delta": "AA=="}) == []
    assert "undeclared key event_id" in check_server_event(
        {"type": "session.output_audio.delta", "delta": "AA==", "event_id": "e"})[0]
    assert check_server_event({"type": "error", "event_id": "e", "error": {
        "type": "invalid_request_error", "code": None, "message": "m"}})  # the SDK's code is a string
    assert check_server_event({"type": "session.usage.updated", "event_id": "e", "usage": {"seconds": 1.0},
                               "context_window": {"usage_ratio": 0.1, "tokens": 5}})
    nested = {"type": "response.output_item.done", "output_index": 0, "sequence_number": 1,
              "item": {"type": "function_call", "call_id": "c", "name": "f"}}  # no arguments
    assert check_server_event({"type": "response.event", "event_id": "e", "event": nested})
    assert check_server_event({"type": "session.started", "event_id": "e", "session": {}})


async def test_an_invalid_frame_from_the_fake_is_a_fake_bug() -> None:
    async with FakeGptLiveServer() as server:
        client, conn = await live_session(server)
        await conn.emit({"type": "session.output_audio.delta", "delta": "AA==", "start_ms": "0"})
        await conn.emit({"type": "info", "code": "x", "message": "not one this fake sends"})
        assert len(server.fake_bugs) == 2
        with pytest.raises(FakeBugError, match="start_ms"):
            server.assert_no_fake_bugs()
        server.fake_bugs.clear()
        await client.ws.close()


async def test_the_openai_sdk_live_client_talks_to_the_fake(make_server: Callable[..., Any]) -> None:
    from openai import AsyncOpenAI

    server = await make_server(turns=[Turn.speech(default_audio(200), "Hi there.", on="append")])
    sdk = AsyncOpenAI(api_key="test-key", base_url=server.base_url)
    async with sdk.live.connect() as connection:
        await connection.session.start(session={"model": MODEL, "audio": {"format": PCMU}}, event_id="s")
        started = await connection.recv()
        assert started.type == "session.started" and started.session.audio is not None
        await connection.session.instructions.append(content="Greet the caller.", delegation_id=None)
        await connection.session.input_audio.append(audio=base64.b64encode(SILENCE).decode())
        kinds = set()
        while "session.output_transcript.delta" not in kinds:
            kinds.add((await asyncio.wait_for(connection.recv(), 3)).type)
        await connection.session.close(event_id="bye")
        while (event := await asyncio.wait_for(connection.recv(), 3)).type != "session.closed":
            pass
        assert event.reason == "close_requested"
    conn = server.connections[0]
    assert conn.client_bugs == [] and "openai-beta" not in conn.headers and conn.path == "/v1/live/sessions"
    await sdk.close()
