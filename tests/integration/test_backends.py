"""What a caller gets does not depend on the speech backend: each scenario runs on the lab Asterisk
with sipp against both strict fakes (``ai``: OpenAI Realtime GA, GPT-Live). Audio byte-exact both
ways, turns, barge-in by the caller and by aribot, a tool, end_call, DTMF to the AI, each activation
mode, the service ending the session, the fallback when it cannot be reached."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from pathlib import Path

import pytest

from aribot.plugins.gpt_live.session import STOP_SPEAKING
from aribot.sandbox.asterisk import AsteriskLab
from aribot.sandbox.ports import free_tcp_port
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab.ai_fakes import AiFake, CallTool, FallsSilent, GptLiveFake, Say
from tests.lab.audio import silence, speech
from tests.lab.calls import FRAME, caller_turns, heard, padded, place_call, prompt_frames
from tests.lab.probe import Probe, log_lines
from tests.lab.serve import API_KEY
from tests.lab.sipp import SippCaller
from tests.lab.sniffer import RtpSniffer


async def test_one_call_byte_exact_both_ways_over_several_turns(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, ai: AiFake, make_aribot, tmp_path: Path
) -> None:
    first, second = speech(800, seed=11), speech(1000, seed=12)
    ai.script([Say(first, "First answer."), Say(second, "Second answer.")],
              transcripts=("I have a question.", "And another one."))
    app = await make_aribot(ai.server.url, **ai.settings())
    probe = Probe.attach(app)
    routed: list[str] = []
    route = app.route
    app.route = lambda event: (routed.append(event.type), route(event))[1]  # type: ignore[method-assign]
    caller_audio = caller_turns(700, 900)
    placed = await place_call(asterisk_lab, tmp_path / "sipp", caller_audio, audio_delay_ms=500,
                              hold_ms_after_audio=300, sniffer=rtp_sniffer)
    conn = ai.connections[0]
    ai.check_caller_audio(conn, caller_audio)                       # caller → AI: every byte, in order
    assert placed.audio == padded(first) + padded(second)          # AI → caller: every byte, in order
    assert {len(p.payload) for p in placed.packets} == {FRAME}
    said = [(e.role, e.text) for e in probe.of("call.transcript")]
    assert said == [("caller", "I have a question."), ("assistant", "First answer."),
                    ("caller", "And another one."), ("assistant", "Second answer.")]
    assert [e.status for e in probe.of("call.response_done")] == ["completed", "completed"]
    ready = probe.first("call.backend_ready")
    assert ready.backend == ai.name and ready.session_id
    ended = probe.first("call.ended")
    assert ended.reason == "caller_hangup" and ended.stats["backend"] == ai.name
    assert "StasisStart" in routed and "StasisEnd" in routed
    assert "ChannelVarset" not in routed and "Dial" not in routed      # Asterisk's event filter works
    # each answer's response latency is measured, from the caller's last word: Realtime dates it
    # from its server VAD (audio_end_ms), aribot from the caller's frames where GPT-Live has no turns
    # (the GPT-Live fake answers after 500 ms of silence, the Realtime fake at once on its VAD's end)
    latencies = [e.latency_ms for e in probe.of("call.bot_audio_started")]
    assert len(latencies) == 2 and all(ms is not None for ms in latencies), latencies
    assert all(250 < ms < 2000 for ms in latencies), latencies
    print(f"{ai.name}: response latency {latencies} ms")
    if ai.name == "gpt_live":   # billed by the second: usage reached the call, cumulative
        seconds = [e.seconds for e in probe.of("call.usage") if e.seconds is not None]
        assert seconds and seconds == sorted(seconds) and seconds[-1] >= 5


async def test_the_caller_interrupts_the_ai(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, ai: AiFake, make_aribot, tmp_path: Path
) -> None:
    long_answer, short_answer = speech(4000, seed=21), speech(600, seed=22)
    # Realtime: a server faster than real time, still streaming when the caller talks, and 3 late
    # deltas after speech_started; GPT-Live: real time, the model stops by itself
    ai.script([Say(long_answer, "A long answer."), Say(short_answer, "Yes?")],
              realtime={"speed": 1.25, "late_deltas_after_interrupt": 3})
    app = await make_aribot(ai.server.url, **ai.settings())
    probe = Probe.attach(app)
    caller_audio = silence(400) + speech(800, seed=1) + silence(1200) + speech(800, seed=2) + silence(2500)
    placed = await place_call(asterisk_lab, tmp_path / "sipp", caller_audio, audio_delay_ms=500,
                              hold_ms_after_audio=300, sniffer=rtp_sniffer)
    conn = ai.connections[0]
    payload = placed.audio
    played = len(payload) - len(padded(short_answer))
    assert payload[played:] == padded(short_answer)                      # then the next answer, whole
    assert 10 * FRAME < played < len(long_answer) - 50 * FRAME            # the long answer was cut short
    if ai.name == "openai_realtime":
        assert payload[:played] == long_answer[:played]
        assert [r.status for r in conn.responses[:2]] == ["cancelled", "completed"]
        # counted in frames, not kernel time: the caller heard exactly the frames aribot had sent when
        # speech_started reached it; the one truncate names exactly that, and the fake accepted it
        (barge_in,) = probe.of("call.barge_in")
        assert played // 8 == barge_in.played_ms and barge_in.dropped_ms > 0
        (truncation,) = conn.truncations
        assert truncation.accepted and truncation.audio_end_ms == played // 8
        assert conn.errors_sent == []
        # the 3 deltas the server sent after speech_started never reached the caller
        assert probe.first("call.ended").stats["late_deltas_dropped"] == 3
    else:
        # no truncate: the caller hears exactly what the model sent before it stopped, and stops
        # hearing it as soon as that has played (a small playout buffer, never a backlog)
        sent = bytes(conn.turns[0].audio_sent)
        assert conn.interruptions[0].turn_index == 0 and long_answer.startswith(sent)
        assert payload[:played] == padded(sent)
        last_sent, size = last_delta_of(conn, len(sent))
        first_answer = placed.packets[:len(padded(sent)) // FRAME]
        lag_ms = (first_answer[-1].ts - (last_sent + size / 8000)) * 1000
        print(f"GPT-Live barge-in: the caller heard the answer's last frame {lag_ms:.0f} ms after its audio would "
              f"have ended in real time")
        assert lag_ms < 100


def last_delta_of(conn, byte_count: int) -> tuple[float, int]:
    """(send time, bytes) of the output delta that completed the first ``byte_count`` bytes."""
    total = 0
    for at, event in conn.sent:
        if event["type"] == "session.output_audio.delta":
            size = len(base64.b64decode(event["delta"]))
            total += size
            if total >= byte_count:
                return at, size
    raise AssertionError("the fake never sent that much audio")


async def test_a_key_stops_the_ai_within_a_frame_and_the_digits_reach_it(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, ai: AiFake, make_aribot, tmp_path: Path
) -> None:
    long_answer, answer = speech(4000, seed=5), speech(500, seed=6)
    ai.script([Say(long_answer, "A long answer."), FallsSilent(), Say(answer, "You pressed five.", after="request")],
              realtime={"speed": 1.25})
    app = await make_aribot(ai.server.url, **ai.settings(dtmf={"max_digits": 1}))
    probe = Probe.attach(app)
    caller_audio = silence(400) + speech(600, seed=7) + silence(4500)
    placed = await place_call(asterisk_lab, tmp_path / "sipp", caller_audio, dtmf=[(2200, "5")],
                              audio_delay_ms=300, hold_ms_after_audio=300, sniffer=rtp_sniffer)
    assert probe.first("call.dtmf").digit == "5"
    conn = ai.connections[0]
    first = [p for p in placed.packets if p.payload in long_answer]
    assert first and len(first) < len(long_answer) // FRAME - 50            # cut short by the key
    barge_in = probe.first("call.barge_in")
    assert barge_in.played_ms == len(first) * 20                            # not one frame after the key
    assert any("5" in text for text in ai.context(conn))                     # the AI is told the digit
    assert placed.packets[-len(answer) // FRAME:] and placed.audio.endswith(padded(answer))   # then answers it
    if ai.name == "gpt_live":
        assert ai.requests(conn)[0] == STOP_SPEAKING                        # told to stop: no cancel in GPT-Live
        assert conn.interruptions[0].cause == "append"
    else:   # the answer still being generated is cancelled; the truncate names what was heard
        assert conn.responses[0].status == "cancelled" and conn.responses[0].cancel_reason == "client_cancelled"
        (truncation,) = conn.truncations
        assert truncation.accepted and truncation.audio_end_ms == len(first) * 20


async def test_dtmf_digits_are_told_to_the_ai_which_answers(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, ai: AiFake, make_aribot, tmp_path: Path
) -> None:
    answer = speech(500, seed=31)
    ai.script([Say(answer, "Order one two three, noted.", after="request")])
    app = await make_aribot(ai.server.url, **ai.settings())
    probe = Probe.attach(app)
    presses = [(300 + 450 * i, key) for i, key in enumerate("123#")]
    placed = await place_call(asterisk_lab, tmp_path / "sipp", silence(4500), dtmf=presses, audio_delay_ms=300,
                              hold_ms_after_audio=300, sniffer=rtp_sniffer)
    assert [(c.digits, c.reason) for c in probe.of("call.dtmf_collected")] == [("123", "terminator")]
    conn = ai.connections[0]
    told = ai.context(conn)
    assert len(told) == 1 and "1 2 3" in told[0]
    assert placed.audio == padded(answer)


async def test_a_tool_runs_and_the_ai_answers_with_its_result(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, ai: AiFake, make_aribot, tmp_path: Path
) -> None:
    answer = speech(700, seed=41)
    ai.script([CallTool("current_time", {}), Say(answer, "It is noon.", after="tool")])
    app = await make_aribot(ai.server.url, **ai.settings())
    probe = Probe.attach(app)
    placed = await place_call(asterisk_lab, tmp_path / "sipp", caller_turns(700, gap_ms=4000), audio_delay_ms=300,
                              hold_ms_after_audio=300, sniffer=rtp_sniffer)
    conn = ai.connections[0]
    (output,) = ai.tool_outputs(conn)
    assert output["timezone"] == "UTC" and set(output) == {"timezone", "iso", "weekday", "date", "time"}
    finished = probe.first("call.tool_finished")
    assert finished.tool == "current_time" and finished.error == ""
    assert placed.audio == padded(answer)


async def test_end_call_hangs_up_after_the_goodbye_was_heard(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, ai: AiFake, make_aribot, tmp_path: Path
) -> None:
    goodbye = speech(900, seed=1)
    ai.script([CallTool("end_call", {"reason": "caller is done"}), Say(goodbye, "Goodbye!", after="request")])
    app = await make_aribot(ai.server.url, **ai.settings())
    probe = Probe.attach(app)
    caller = SippCaller(asterisk_lab, tmp_path / "sipp", caller_turns(700, gap_ms=6000), audio_delay_ms=300,
                        hangup="server")
    rtp_sniffer.watch(caller.media_port)
    result = await caller.run()
    assert result.ok and result.bye_received, result.error
    packets = heard(rtp_sniffer, caller.media_port)
    assert b"".join(p.payload for p in packets) == padded(goodbye)       # the whole goodbye ...
    ended = probe.first("call.ended")
    assert ended.reason.startswith("end_call") and ended.ts > packets[-1].ts   # ... then the hang-up
    conn = ai.connections[0]
    assert ai.tool_outputs(conn)[0]["ok"] is True
    assert ai.requests(conn) == [app.settings.tools.end_call.goodbye]   # the model only called the tool: asked for a goodbye
    finished = probe.first("call.tool_finished")
    assert finished.tool == "end_call" and finished.error == ""


GREETING_MS = 1000


@pytest.mark.parametrize("mode", ["immediate", "fixed_delay", "vad"])
async def test_each_activation_mode_opens_and_the_ai_hears_the_caller_from_there(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, ai: AiFake, make_aribot, tmp_path: Path, mode: str
) -> None:
    greeting_audio = speech(GREETING_MS, seed=900)
    (tmp_path / "greeting.ulaw").write_bytes(greeting_audio)
    answer = speech(600, seed=51)
    ai.script([Say(answer, "Hello!")])
    activation = {"mode": mode, "pre_roll_ms": 300, "fixed_delay": 0.5, "vad_submode": "vadMode",
                  "vad_initial_silence_delay": 0.0, "vad_activation_delay": 0.0}
    app = await make_aribot(ai.server.url, **ai.settings(activation=activation,
                                                          call={"greeting": f"file:{tmp_path / 'greeting.ulaw'}",
                                                                "greeting_dirs": [str(tmp_path)]}))
    probe = Probe.attach(app)
    talk = speech(1000, seed=52)
    caller_audio = silence(2000) + talk + silence(2500)                  # talks after the greeting
    placed = await place_call(asterisk_lab, tmp_path / "sipp", caller_audio, audio_delay_ms=200,
                              hold_ms_after_audio=300, sniffer=rtp_sniffer)
    opened, finished = probe.first("call.activation_opened"), probe.first("call.greeting_finished")
    assert opened.mode == mode and not finished.interrupted
    if mode == "immediate":
        assert opened.ts <= finished.ts                                 # listening through the greeting
    elif mode == "fixed_delay":
        assert opened.ts >= finished.ts + 0.5 - 0.05                     # half a second after it
    else:
        assert opened.ts >= probe.first("call.talking_started").ts - 0.05   # at the caller's talk
    assert talk in ai.heard_caller(ai.connections[0])                    # the caller's talk reached the AI whole
    assert placed.audio == greeting_audio + padded(answer)               # the greeting whole, then the answer


@pytest.mark.parametrize("greeting", ["aribot", "asterisk"])
async def test_talk_over_the_greeting_stops_it_in_immediate_mode(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, ai: AiFake, make_aribot, tmp_path: Path, greeting: str
) -> None:
    """An Asterisk-played greeting is stopped by TALK_DETECT; an aribot-played one by the AI's own
    turn detection (Realtime) or TALK_DETECT (GPT-Live has no speech events)."""
    greeting_audio = speech(4000, seed=901)
    (tmp_path / "greeting.ulaw").write_bytes(greeting_audio)
    media = f"file:{tmp_path / 'greeting.ulaw'}" if greeting == "aribot" else "sound:tt-monkeys"
    ai.script([Say(speech(400, seed=81), "Yes?")])
    app = await make_aribot(ai.server.url, **ai.settings(activation={"mode": "immediate"}, call={"greeting": media, "greeting_dirs": [str(tmp_path)]}))
    probe = Probe.attach(app)
    talk = speech(1200, seed=82)
    await place_call(asterisk_lab, tmp_path / "sipp", silence(800) + talk + silence(2500), audio_delay_ms=200,
                     hold_ms_after_audio=300, sniffer=rtp_sniffer)
    started, finished = probe.first("call.greeting_started"), probe.first("call.greeting_finished")
    assert finished.interrupted and finished.ts - started.ts < 2.0       # the 4 s greeting stopped at the talk
    assert talk[-20 * FRAME:] in ai.heard_caller(ai.connections[0])


async def test_the_service_ending_the_session_mid_call_is_carried_on_in_a_new_one(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, ai: AiFake, make_aribot, tmp_path: Path
) -> None:
    first, second = speech(600, seed=61), speech(600, seed=62)
    ai.scripts([Say(first, "First answer.")], [Say(second, "Second answer.")],
               transcripts=(("I have a question.",), ("And another one.",)))
    app = await make_aribot(ai.server.url, **ai.settings())
    probe = Probe.attach(app)
    caller = SippCaller(asterisk_lab, tmp_path / "sipp", caller_turns(800, 800, gap_ms=4500), audio_delay_ms=500,
                        hold_ms_after_audio=300)
    rtp_sniffer.watch(caller.media_port)
    run = asyncio.create_task(caller.run())
    conn = await ai.wait_for_connection()
    await probe.wait("call.response_done", timeout=15)
    await ai.end_session(conn)                                           # a session limit, say
    result = await run
    assert result.ok, result.error
    assert len(ai.connections) == 2
    new = ai.connections[1]
    assert ai.carried_items(new)[:2] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "I have a question."}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "First answer."}]}]
    assert b"".join(p.payload for p in heard(rtp_sniffer, caller.media_port)) == padded(first) + padded(second)
    (rollover,) = probe.of("call.backend_rollover")
    assert rollover.attempt == 1 and rollover.replayed_items == 2 and rollover.gap_ms < 1000
    assert probe.first("call.ended").stats["rollovers"] == 1


async def test_the_caller_hears_the_fallback_when_the_service_cannot_be_reached(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, ai: AiFake, make_aribot, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    dead = f"ws://127.0.0.1:{free_tcp_port()}/v1/{'live/sessions' if ai.name == 'gpt_live' else 'realtime'}"
    section = "gpt_live" if ai.name == "gpt_live" else "openai"
    app = await make_aribot(ai.server.url, **ai.settings(**{section: {"url": dead}}))
    probe = Probe.attach(app)
    started = time.monotonic()
    caller = SippCaller(asterisk_lab, tmp_path / "sipp", caller_turns(800), audio_delay_ms=300, hangup="server")
    rtp_sniffer.watch(caller.media_port)
    result = await caller.run()
    assert result.ok and result.bye_received, result.error
    assert probe.first("call.ended").reason == "ai_unavailable"
    assert prompt_frames(rtp_sniffer, caller.media_port) > 50            # the fallback prompt, over 1 s
    (line,) = log_lines(caplog, "ai_unavailable")
    assert f"backend {ai.name}" in line and "fallback prompt" in line
    assert ai.connections == [] and time.monotonic() - started < 20


async def test_a_call_chooses_its_backend_among_the_allowed_ones(
    asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, make_aribot, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Lab extensions 701 (Stasis argument backend=gpt_live), 702 (ARIBOT_BACKEND=gpt_live), 703
    (backend=local, not allowed) and 100 (none): [ai] backend is Realtime, [ai] allowed = gpt_live."""
    live = GptLiveFake()
    await live.server.start()
    try:
        app = await make_aribot(fake.url, ai={"allowed": ["gpt_live"]},
                                gpt_live={"url": live.server.url, "api_key": API_KEY})
        probe = Probe.attach(app)
        await asyncio.gather(*(place_call(asterisk_lab, tmp_path / extension, caller_turns(600, gap_ms=1500),
                                          extension=extension, audio_delay_ms=300, hold_ms_after_audio=300)
                               for extension in ("701", "702", "703", "100")))
        chosen = {probe_extension(probe, e.call_id): e.backend for e in probe.of("call.backend_ready")}
        assert chosen == {"701": "gpt_live", "702": "gpt_live", "703": "openai_realtime", "100": "openai_realtime"}
        assert len(live.connections) == 2 and len(fake.connections) == 2
        assert "backend='local' is not allowed ([ai] allowed: gpt_live, openai_realtime)" in caplog.text
    finally:
        await live.server.stop()
    live.assert_clean()


def probe_extension(probe: Probe, call_id: str) -> str:
    return next(e.extension for e in probe.of("call.started") if e.call_id == call_id)
