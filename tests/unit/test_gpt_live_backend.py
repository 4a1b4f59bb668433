"""The GPT-Live backend against the strict fake GPT-Live server, over a real WebSocket: what it sends
(each frame checked by the fake against the SDK's types and the protocol's order), what it gives the
call (audio byte for byte, transcripts, tool runs, usage), interruptions, session ends and the doctor."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from aribot.core import events as ev
from aribot.core.backend import BackendUnavailable, SessionSetup
from aribot.core.tools import ToolOutcome
from aribot.plugins import gpt_live
from aribot.plugins.gpt_live import session as live
from aribot.plugins.gpt_live.session import GptLiveBackend, GptLiveConfig
from tests.fake_gpt_live import FakeGptLiveServer, LiveConnection, Script, Turn
from tests.lab.audio import silence, speech
from tests.lab.wait import until
from tests.unit.backend_host import RecordingHost

KEY = "test-key"
TOOLS = [{"type": "function", "name": "current_time", "description": "the time now",
          "parameters": {"type": "object", "properties": {}}}]


@pytest.fixture(autouse=True)
def quick_timers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Utterance ends and request expiry in tenths of a second (the fake paces audio in real time)."""
    monkeypatch.setattr(live, "UTTERANCE_END_S", 0.25)
    monkeypatch.setattr(live, "SPEECH_WAIT_S", 2.0)


@pytest.fixture
async def server() -> AsyncIterator[FakeGptLiveServer]:
    async with FakeGptLiveServer(api_key=KEY, script=Script(usage_interval_s=None)) as fake:
        yield fake
        fake.assert_no_client_bugs()


def make(server: FakeGptLiveServer, *, fmt: str = "ulaw", tools: list[dict[str, Any]] | None = None,
         key: str = KEY, responses_model: str = "gpt-5.5", run_tool: Any = None) -> tuple[GptLiveBackend, RecordingHost]:
    host = RecordingHost(silence=0xFF if fmt == "ulaw" else 0xD5, **({"run_tool": run_tool} if run_tool else {}))
    setup = SessionSetup(audio_format=fmt, instructions="You answer the phone for ACME.", voice="marin",
                         tools=tools or [])
    cfg = GptLiveConfig(url=server.url, api_key=key, responses_model=responses_model,
                        responses_instructions="Use the tools.")
    return GptLiveBackend(host, setup, cfg), host


async def started(server: FakeGptLiveServer, backend: GptLiveBackend) -> tuple[LiveConnection, asyncio.Task[Any]]:
    await backend.start()
    conn = server.connections[-1]
    return conn, asyncio.create_task(backend.serve())


async def finish(backend: GptLiveBackend, serving: asyncio.Task[Any]) -> Any:
    await backend.close()
    return await asyncio.wait_for(serving, 5)


def frames(audio: bytes) -> list[bytes]:
    return [audio[i:i + 160] for i in range(0, len(audio), 160)]


async def feed_real_time(backend: GptLiveBackend, audio: bytes) -> None:
    for frame in frames(audio):
        backend.feed(frame, None)
        await asyncio.sleep(0.02)


async def test_session_start_is_first_and_carries_the_calls_choices(server: FakeGptLiveServer) -> None:
    backend, _host = make(server, tools=TOOLS)
    conn, serving = await started(server, backend)
    assert conn.received_types()[0] == "session.start" and conn.path == "/v1/live/sessions"   # no ?model=
    session = conn.session
    assert session["model"] == "gpt-live-1" and session["instructions"] == "You answer the phone for ACME."
    assert session["audio"] == {"format": {"type": "audio/pcmu", "rate": 8000}, "output": {"voice": "marin"}}
    responses = session["delegation"]["responses"]
    assert session["delegation"]["type"] == "responses" and responses["model"] == "gpt-5.5"
    assert [t["name"] for t in responses["tools"]] == ["current_time"]
    assert conn.headers["authorization"] == f"Bearer {KEY}"
    assert backend.ready and backend.session_id == conn.resource["id"] and backend.expires_at is not None
    assert await finish(backend, serving) is None
    assert conn.closed_reason == "close_requested"


async def test_alaw_lines_ask_for_pcma_and_no_tools_means_no_delegation(server: FakeGptLiveServer) -> None:
    backend, _host = make(server, fmt="alaw", tools=[])
    conn, serving = await started(server, backend)
    assert conn.session["audio"]["format"] == {"type": "audio/pcma", "rate": 8000}
    assert "delegation" not in conn.session
    await finish(backend, serving)


async def test_caller_audio_passes_unchanged_and_silence_fills_the_gaps_in_real_time(
        server: FakeGptLiveServer) -> None:
    backend, _host = make(server)
    conn, serving = await started(server, backend)
    caller = speech(400, seed=3)
    await feed_real_time(backend, caller)
    await asyncio.sleep(0.5)            # the gate closes, say: the model still hears time pass, as silence
    await feed_real_time(backend, caller)
    await conn.wait_for_input_audio(len(caller) * 2 + 160 * 20)
    heard = bytes(conn.input_audio)
    first = heard.index(caller)
    second = heard.index(caller, first + len(caller))
    between = heard[first + len(caller):second]
    assert set(between) == {0xFF} and 0.3 <= len(between) / 8000 <= 0.7      # ≈ 0.5 s of µ-law silence
    assert conn.input_gaps == []                                              # never a hole over 100 ms
    assert backend.stats["silence_frames"] >= 15
    await finish(backend, serving)


async def test_ai_speech_reaches_the_call_byte_exact_with_transcripts(server: FakeGptLiveServer) -> None:
    answer = speech(600, seed=8)
    server.script = Script(turns=[Turn.speech(answer, "Hello, ACME here.", on="append")], usage_interval_s=None)
    backend, host = make(server)
    conn, serving = await started(server, backend)
    said = await backend.request_response("Greet the caller.")
    assert await asyncio.wait_for(said, 5) == "completed"
    appended = conn.received_of_type("session.instructions.append")
    assert appended == [{"type": "session.instructions.append", "delegation_id": None, "event_id": "aribot_r1",
                         "content": "Greet the caller."}]
    assert host.playout.received_ms("live-out-1") == 600
    assert conn.output_audio() == answer
    assert [t.text for t in host.of(ev.Transcript) if t.role == "assistant"] == ["Hello, ACME here."]
    assert [e.status for e in host.of(ev.ResponseDone)] == ["completed"]
    await finish(backend, serving)


async def test_a_caller_turn_gets_its_transcript_and_an_answer(server: FakeGptLiveServer) -> None:
    server.script = Script(turns=[Turn.speech(speech(300, seed=1), "We open at nine.")],
                           caller_transcripts=["When do you open?"], usage_interval_s=None)
    backend, host = make(server)
    conn, serving = await started(server, backend)
    await feed_real_time(backend, silence(200) + speech(500, seed=2) + silence(700))
    await conn.wait_for_turn(0)
    await until(lambda: host.of(ev.ResponseDone), "the answer's end")
    texts = [(t.role, t.text) for t in host.of(ev.Transcript)]
    assert texts == [("caller", "When do you open?"), ("assistant", "We open at nine.")]
    assert backend.turns == [("user", "When do you open?"), ("assistant", "We open at nine.")]
    await finish(backend, serving)


async def test_tools_run_in_core_through_responses_delegation(server: FakeGptLiveServer) -> None:
    server.script = Script(turns=[Turn.function_call("current_time", {}, answer="It is noon.", on="append"),
                                  Turn.speech(speech(300, seed=4), "It is noon.", on="backend")],
                           usage_interval_s=None)

    async def run_tool(name: str, call_id: str, arguments: str, ref: str) -> ToolOutcome:
        return ToolOutcome(json.dumps({"ok": True, "time": "12:00"}))

    backend, host = make(server, tools=TOOLS, run_tool=run_tool)
    conn, serving = await started(server, backend)
    await backend.request_response("What time is it?")
    output = await conn.wait_for_tool_output()
    assert output.name == "current_time" and json.loads(output.output) == {"ok": True, "time": "12:00"}
    assert [run[0] for run in host.tool_runs] == ["current_time"]
    await conn.wait_for_received("response.create")
    await conn.wait_for_turn(1)
    usage = [e.tokens for e in host.of(ev.UsageUpdated) if e.tokens]
    assert usage and all(u["input_tokens"] > 0 for u in usage)
    await finish(backend, serving)


async def test_aribot_interrupting_drops_queued_audio_and_tells_the_model(server: FakeGptLiveServer) -> None:
    server.script = Script(turns=[Turn.speech(speech(3000, seed=5), "A long answer", on="append"),
                                  Turn.silent(on="append"),
                                  Turn.speech(speech(300, seed=6), "Yes?", on="append")], usage_interval_s=None)
    backend, host = make(server)
    conn, serving = await started(server, backend)
    await backend.request_response("Tell a story.")
    await until(lambda: host.playout.received_ms("live-out-1") >= 500, "half a second of the answer")
    await backend.interrupt(cancel=True)
    barge = host.of(ev.BargeIn)
    assert len(barge) == 1 and barge[0].item_id == "live-out-1"
    assert host.playout.buffered_bytes == 0
    stop = await conn.wait_for_append(1)
    assert stop.content == live.STOP_SPEAKING and stop.type == "session.instructions.append"
    await conn.wait_for_interruption(0)
    # the next answer aribot asks for is heard, though it follows the interrupted one at once
    answered = await backend.request_response("Ask what they need.")
    assert await asyncio.wait_for(answered, 5) == "completed"
    assert host.playout.received_ms(f"live-out-{backend._utterances}") == 300
    assert [e.status for e in host.of(ev.ResponseDone)] == ["cancelled", "completed"]
    await finish(backend, serving)


async def test_an_error_event_is_reported_and_the_session_goes_on(server: FakeGptLiveServer,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    backend, host = make(server)
    conn, serving = await started(server, backend)
    await conn.emit({"type": "error", "event_id": "evt_x", "error": {"type": "invalid_request_error",
                     "code": "rate_limit_exceeded", "message": "slow down", "param": None}})
    await until(lambda: host.of(ev.BackendError), "the error event")
    assert host.of(ev.BackendError)[0].code == "rate_limit_exceeded" and not serving.done()
    assert "GPT-Live error rate_limit_exceeded: slow down" in caplog.text and "the call goes on" in caplog.text
    await finish(backend, serving)


@pytest.mark.parametrize(("reason", "recoverable"), [("expired", True), ("connection_lost", True),
                                                      ("content", False), ("remote_hangup", False)])
async def test_every_session_closed_reason(server: FakeGptLiveServer, reason: str, recoverable: bool) -> None:
    backend, host = make(server)
    conn, serving = await started(server, backend)
    await conn.close_with(reason)
    lost = await asyncio.wait_for(serving, 5)
    assert lost is not None and lost.reason == reason and lost.recoverable is recoverable
    assert host.of(ev.BackendError)[-1].fatal is not recoverable
    assert not backend.ready
    await backend.close()


async def test_a_dropped_connection_is_recoverable(server: FakeGptLiveServer) -> None:
    backend, _host = make(server)
    conn, serving = await started(server, backend)
    await conn.drop()
    lost = await asyncio.wait_for(serving, 5)
    assert lost is not None and lost.reason == "closed_1006" and lost.recoverable
    await backend.close()


async def test_resume_carries_the_conversation_and_counts_usage_over_sessions(server: FakeGptLiveServer) -> None:
    server.script = Script(turns=[Turn.speech(speech(300, seed=1), "We open at nine.")],
                           caller_transcripts=["When do you open?"], usage_interval_s=None)
    backend, host = make(server)
    conn, serving = await started(server, backend)
    await feed_real_time(backend, speech(400, seed=2) + silence(700))
    await until(lambda: host.of(ev.ResponseDone), "the answer")
    await asyncio.sleep(1.1)             # a second of session: usage counts whole seconds
    await conn.close_with("expired")
    lost = await asyncio.wait_for(serving, 5)
    first_seconds = host.of(ev.UsageUpdated)[-1].seconds
    assert lost.reason == "expired" and first_seconds >= 1
    carried = await backend.resume()
    second = server.connections[-1]
    assert carried == 2 and second is not conn
    assert second.session["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "When do you open?"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "We open at nine."}]}]
    serving = asyncio.create_task(backend.serve())
    await finish(backend, serving)
    assert host.of(ev.UsageUpdated)[-1].seconds >= first_seconds   # the new session adds, never restarts


async def test_closing_reads_the_final_usage(server: FakeGptLiveServer) -> None:
    backend, host = make(server)
    conn, serving = await started(server, backend)
    serving.cancel()                     # the call's tasks are cancelled before its backend is closed
    await asyncio.sleep(1.1)
    await backend.close()
    assert conn.received_types()[-1] == "session.close" and conn.closed_reason == "close_requested"
    assert host.of(ev.UsageUpdated)[-1].seconds >= 1


async def test_closing_before_the_session_started_sends_nothing_but_the_start(server: FakeGptLiveServer) -> None:
    server.script = Script(start_latency_s=1.0, usage_interval_s=None)
    backend, _host = make(server)
    starting = asyncio.create_task(backend.start())
    conn = await server.wait_for_connection()
    await conn.wait_for_received("session.start")
    starting.cancel()
    await backend.close()
    await conn.wait_closed()
    assert conn.received_types() == ["session.start"]


async def test_a_wrong_key_is_unavailable_without_the_key_in_the_message(server: FakeGptLiveServer) -> None:
    backend, _host = make(server, key="sk-wrong-secret")
    with pytest.raises(BackendUnavailable) as raised:
        await backend.start()
    assert "401" in str(raised.value) and "sk-wrong-secret" not in str(raised.value)


async def test_a_refused_start_is_unavailable_with_the_services_reason(server: FakeGptLiveServer) -> None:
    server.script = Script(error_on_start={"type": "invalid_request_error", "code": "model_not_found",
                                           "message": "no such model"}, usage_interval_s=None)
    backend, _host = make(server)
    with pytest.raises(BackendUnavailable, match="model_not_found: no such model"):
        await backend.start()
    await backend.close()


def doctor_settings(url: str, key: str) -> Any:
    return SimpleNamespace(gpt_live=SimpleNamespace(url=url, api_key=key, model="gpt-live-1", voice="marin",
                                                    responses_model="", responses_instructions=""),
                           openai=SimpleNamespace(api_key=""), rtp=SimpleNamespace(format="ulaw"),
                           get=lambda name, default=None: "")


async def test_doctor_starts_and_closes_a_session_and_explains_a_bad_key(server: FakeGptLiveServer) -> None:
    ok, detail, fix = await gpt_live.check(doctor_settings(server.url, KEY), 5.0)
    assert ok and "started and closed a session (model gpt-live-1)" in detail and fix == ""
    conn = server.connections[-1]
    assert conn.received_types() == ["session.start", "session.close"] and conn.closed_reason == "close_requested"
    ok, detail, fix = await gpt_live.check(doctor_settings(server.url, "sk-bad"), 5.0)
    assert not ok and "401" in detail and "ARIBOT_GPT_LIVE__API_KEY" in fix and "sk-bad" not in detail
    ok, detail, _fix = await gpt_live.check(doctor_settings(server.url, ""), 5.0)
    assert not ok and detail == "no OpenAI key is set"


async def test_one_shared_ticker_runs_every_silence_check_and_drops_only_a_broken_one(
        caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    ticker = live.Ticker.of(loop)
    assert live.Ticker.of(loop) is ticker
    ticks = {"a": 0, "b": 0}

    def good(name: str) -> Any:
        return lambda: ticks.__setitem__(name, ticks[name] + 1)

    def broken() -> None:
        raise ValueError("bad check")

    a, b = good("a"), good("b")
    for check in (a, broken, b):
        ticker.add(check)
    await until(lambda: ticks["a"] >= 3 and ticks["b"] >= 3, "three ticks of each good check", timeout=5)
    assert broken not in ticker.checks and list(ticker.checks) == [a, b]
    assert "a GPT-Live silence check failed" in caplog.text
    ticker.discard(a)
    ticker.discard(b)
    assert ticker._handle is None           # no timer left when no call needs it
    seen = dict(ticks)
    await asyncio.sleep(0.1)
    assert ticks == seen
