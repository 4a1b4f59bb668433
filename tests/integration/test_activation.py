"""Activation modes through the real Asterisk: when the caller's audio starts to reach the AI,
measured against the greeting's end and Asterisk's talk events, and the pre-roll."""

from __future__ import annotations

from pathlib import Path

from aribot.plugins.local_backend.realtime.script import Script, Turn
from aribot.sandbox.asterisk import AsteriskLab
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab.audio import silence, speech
from tests.lab.calls import FRAME, place_call
from tests.lab.probe import Probe, arrival_time, frame_index
from tests.lab.sniffer import RtpSniffer

TOLERANCE = 0.12  # seconds: event delivery, 20 ms frames, scheduling


def greeting_file(tmp_path: Path, ms: int, seed: int = 900) -> tuple[str, bytes]:
    audio = speech(ms, seed=seed)
    path = tmp_path / "greeting.ulaw"
    path.write_bytes(audio)
    return f"file:{path}", audio


def pre_roll_start(caller_audio: bytes, appended: bytes, onset: bytes) -> int:
    """Frame index in the caller's audio where the appended audio starts, using the first speech
    frame as the anchor (silence frames all look alike)."""
    assert onset in appended, "the first frame of the caller's speech never reached the AI"
    onset_frame = frame_index(caller_audio, onset)
    start = onset_frame - appended.index(onset) // FRAME
    assert appended == caller_audio[start * FRAME:start * FRAME + len(appended)]
    return start


async def test_immediate_listens_from_answer_and_talk_stops_an_asterisk_greeting(
    asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, make_aribot, tmp_path: Path
) -> None:
    fake.script = Script(turns=[Turn.audio(speech(400, seed=7), "hello")])
    app = await make_aribot(fake.url, activation={"mode": "immediate"}, call={"greeting": "sound:hello-world"})
    probe = Probe.attach(app)
    talk = speech(1500, seed=3)
    await place_call(asterisk_lab, tmp_path / "sipp", silence(500) + talk + silence(2000), hold_ms_after_audio=300)
    opened, started = probe.first("call.activation_opened"), probe.first("call.greeting_started")
    finished, talking = probe.first("call.greeting_finished"), probe.first("call.talking_started")
    assert opened.ts <= started.ts + TOLERANCE                    # listening from answer, greeting included
    assert finished.interrupted and finished.ts - talking.ts < 0.3  # talk stopped the 1.4 s greeting
    assert finished.ts - started.ts < 1.3
    appended = bytes(fake.connections[0].input_audio)
    assert talk[-40 * FRAME:] in appended                          # the AI hears the caller after it


async def test_fixed_delay_opens_after_the_greeting_and_sends_the_pre_roll(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path
) -> None:
    greeting, _ = greeting_file(tmp_path, 1000)
    app = await make_aribot(fake.url, call={"greeting": greeting, "greeting_dirs": [str(tmp_path)]},
                            activation={"mode": "FIXED_DELAY", "fixed_delay": 0.5, "pre_roll_ms": 400})
    probe = Probe.attach(app, rtp_sniffer)
    caller_audio = speech(3000, seed=11)                           # every frame distinct
    await place_call(asterisk_lab, tmp_path / "sipp", caller_audio, audio_delay_ms=200, hold_ms_after_audio=300)
    finished, opened = probe.first("call.greeting_finished"), probe.first("call.activation_opened")
    assert not finished.interrupted
    assert abs(opened.ts - (finished.ts + 0.5)) < TOLERANCE
    assert opened.pre_roll_ms == 400
    appended = bytes(fake.connections[0].input_audio)
    first = frame_index(caller_audio, appended[:FRAME])
    assert appended == caller_audio[first * FRAME:]                # from the pre-roll on, every byte
    arrived = arrival_time(rtp_sniffer, probe.aribot_port(), appended[:FRAME])
    assert abs(arrived - (opened.ts - 0.4)) < TOLERANCE            # the pre-roll is the 400 ms before


async def test_vad_after_prompt_opens_at_talk_after_the_greeting_with_the_first_syllable(
    asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, make_aribot, tmp_path: Path, ari_requests
) -> None:
    greeting, _ = greeting_file(tmp_path, 800)
    app = await make_aribot(fake.url, call={"greeting": greeting, "greeting_dirs": [str(tmp_path)]},
                            activation={"mode": "vad", "vad_submode": "afterPrompt", "pre_roll_ms": 300})
    probe = Probe.attach(app)
    talk = speech(1000, seed=21)
    caller_audio = silence(1800) + talk + silence(2500)
    await place_call(asterisk_lab, tmp_path / "sipp", caller_audio, hold_ms_after_audio=300)
    finished, talking = probe.first("call.greeting_finished"), probe.first("call.talking_started")
    opened = probe.first("call.activation_opened")
    assert not finished.interrupted and talking.ts > finished.ts
    assert 0 <= opened.ts - talking.ts < TOLERANCE                 # opened at the talk event
    appended = bytes(fake.connections[0].input_audio)
    start = pre_roll_start(caller_audio, appended, talk[:FRAME])
    onset = frame_index(caller_audio, talk[:FRAME])
    assert 10 <= onset - start <= 15                               # 200-300 ms before the first syllable
    talk_detect = [p for op, p in ari_requests if op == "set_variable" and p["variable"].startswith("TALK_DETECT")]
    assert talk_detect[0] == {"channelId": opened.call_id, "variable": "TALK_DETECT(set)", "value": "1200,256"}
    removed = [p for p in talk_detect if p["variable"] == "TALK_DETECT(remove)"]
    assert removed and fake.connections[0].responses                # TALK_DETECT removed; the AI answered


async def test_vad_after_prompt_does_not_interrupt_and_opens_if_talking_at_its_end(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path
) -> None:
    greeting, greeting_audio = greeting_file(tmp_path, 1000)
    app = await make_aribot(fake.url, call={"greeting": greeting, "greeting_dirs": [str(tmp_path)]},
                            activation={"mode": "vad", "vad_submode": "afterPrompt"})
    probe = Probe.attach(app)
    caller_audio = silence(200) + speech(2000, seed=31) + silence(2500)   # talks over the greeting's end
    placed = await place_call(asterisk_lab, tmp_path / "sipp", caller_audio, hold_ms_after_audio=300,
                              sniffer=rtp_sniffer)
    finished, opened = probe.first("call.greeting_finished"), probe.first("call.activation_opened")
    assert probe.first("call.talking_started").ts < finished.ts   # talk during the greeting ...
    assert not finished.interrupted                                # ... did not stop it
    assert placed.audio.startswith(greeting_audio)
    assert 0 <= opened.ts - finished.ts < TOLERANCE                # open at once: the caller is talking


async def test_vad_after_prompt_no_talk_is_no_input_and_the_ai_reprompts(
    asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, make_aribot, tmp_path: Path
) -> None:
    greeting, _ = greeting_file(tmp_path, 600)
    fake.script = Script(turns=[Turn.audio(speech(600, seed=41), "are you still there?")])
    app = await make_aribot(fake.url, call={"greeting": greeting, "greeting_dirs": [str(tmp_path)]},
                            activation={"mode": "vad", "vad_submode": "afterPrompt", "vad_max_wait_after_prompt": 1.0},
                            timers={"no_speech_timeout": 30, "no_speech_reprompts": 2})
    probe = Probe.attach(app)
    await place_call(asterisk_lab, tmp_path / "sipp", silence(3000), hold_ms_after_audio=300)
    no_input, finished = probe.first("call.no_input"), probe.first("call.greeting_finished")
    assert abs(no_input.ts - (finished.ts + 1.0)) < TOLERANCE
    fired = probe.first("call.timer_fired")
    assert fired.timer == "no_speech" and "re-prompt 1" in fired.action
    creates = fake.connections[0].received_of_type("response.create")
    assert creates and "still there" in creates[0]["response"]["instructions"]
    assert not probe.of("call.activation_opened")                  # still not listening: nobody talked


async def test_vad_mode_talk_after_the_delays_interrupts_the_greeting_with_pre_roll(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path
) -> None:
    greeting, greeting_audio = greeting_file(tmp_path, 4000)
    app = await make_aribot(fake.url, call={"greeting": greeting, "greeting_dirs": [str(tmp_path)]}, activation={
        "mode": "vad", "vad_submode": "vadMode", "vad_initial_silence_delay": 1.0, "vad_activation_delay": 0.5,
        "vad_silence_ms": 300, "pre_roll_ms": 300})
    probe = Probe.attach(app)
    early, talk = speech(300, seed=51), speech(1000, seed=52)
    caller_audio = silence(300) + early + silence(1700) + talk + silence(2000)   # early talk is inside the delays
    placed = await place_call(asterisk_lab, tmp_path / "sipp", caller_audio, hold_ms_after_audio=300,
                              sniffer=rtp_sniffer)
    talks = probe.of("call.talking_started")
    assert len(talks) >= 2
    opened, finished = probe.first("call.activation_opened"), probe.first("call.greeting_finished")
    assert 0 <= opened.ts - talks[1].ts < TOLERANCE                # the talk after the delays, not the early one
    assert finished.interrupted and abs(finished.ts - opened.ts) < TOLERANCE
    payload = placed.audio
    heard_greeting = next(n for n in range(0, len(greeting_audio) + 1, FRAME)
                          if payload[n:n + FRAME] != greeting_audio[n:n + FRAME])
    assert 0 < heard_greeting < len(greeting_audio) - 50 * FRAME   # the 4 s greeting was cut short
    appended = bytes(fake.connections[0].input_audio)
    start = pre_roll_start(caller_audio, appended, talk[:FRAME])
    assert 10 <= frame_index(caller_audio, talk[:FRAME]) - start <= 15


async def test_third_party_mode_through_the_same_hook(
    asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, make_aribot, tmp_path: Path, plugin_folder
) -> None:
    """A mode a third-party plugin registers is chosen by [activation] mode like a built-in."""
    app = await make_aribot(fake.url, activation={"mode": "After_One_Second"},
                            plugins={"paths": [plugin_folder("after_one_second")]})
    probe = Probe.attach(app)
    await place_call(asterisk_lab, tmp_path / "sipp", speech(2500, seed=61), hold_ms_after_audio=300)
    opened, answered = probe.first("call.activation_opened"), probe.first("call.answered")
    assert opened.mode == "after_one_second" and abs(opened.ts - answered.ts - 1.0) < TOLERANCE


async def test_per_call_choices_from_stasis_arguments_and_channel_variables(
    asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, make_aribot, tmp_path: Path, plugin_folder, caplog
) -> None:
    """Extension 8XX sets ARIBOT_VOICE/ARIBOT_INSTRUCTIONS and calls Stasis(app,EXT,instructions=…,
    tools=none,mode=immediate,colour=blue): arguments beat variables, variables beat settings (with
    these keys listed in [call] per_call_keys; the default takes only voice and backend)."""
    app = await make_aribot(fake.url, activation={"mode": "vad"}, plugins={"paths": [plugin_folder("order_tools")]},
                            call={"per_call_keys": ["instructions", "voice", "tools", "mode"]})
    probe = Probe.attach(app)
    for extension in ("800", "100"):
        await place_call(asterisk_lab, tmp_path / extension, speech(1200, seed=71), extension=extension,
                         hold_ms_after_audio=300)
    special, plain = (conn.session for conn in fake.connections)
    assert special["instructions"] == "from the Stasis arguments" and special["audio"]["output"]["voice"] == "cedar"
    assert special["tools"] == [] and "lookup_order" in [t["name"] for t in plain["tools"]]
    assert plain["instructions"] == app.settings.ai.instructions
    modes = [e.mode for e in probe.of("call.activation_opened")]
    assert modes == ["immediate", "vad"]
    assert [e.extension for e in probe.of("call.started")] == ["800", "100"]
    assert "colour='blue' is not one of" in caplog.text


async def test_immediate_talk_over_an_aribot_played_greeting_stops_it(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path
) -> None:
    """A local greeting goes out over the call's RTP: the caller is heard all along, the AI's own
    turn detection hears the talk, and the greeting stops (it is not the AI's item: no truncate)."""
    greeting, greeting_audio = greeting_file(tmp_path, 3000)
    fake.script = Script(turns=[Turn.audio(speech(400, seed=81), "yes?")])
    app = await make_aribot(fake.url, activation={"mode": "immediate"}, call={"greeting": greeting, "greeting_dirs": [str(tmp_path)]})
    probe = Probe.attach(app)
    talk = speech(1000, seed=82)
    caller_audio = silence(600) + talk + silence(2500)
    placed = await place_call(asterisk_lab, tmp_path / "sipp", caller_audio, hold_ms_after_audio=300,
                              sniffer=rtp_sniffer)
    finished, speech_started = probe.first("call.greeting_finished"), probe.first("call.speech_started")
    assert finished.interrupted and 0 <= finished.ts - speech_started.ts < TOLERANCE
    conn = fake.connections[0]
    assert conn.truncations == [] and conn.errors_sent == []
    payload = placed.audio
    assert payload.startswith(greeting_audio[:20 * FRAME]) and not payload.startswith(greeting_audio)
    assert talk in bytes(conn.input_audio)             # the talk that began during the greeting, every byte
