"""Call timers through the real Asterisk: each fires and does what it says; 0 disables it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from aribot.plugins.local_backend.realtime.script import Script, Turn
from aribot.sandbox.asterisk import AsteriskLab
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab.audio import silence, speech
from tests.lab.calls import heard, padded, place_call
from tests.lab.probe import Probe
from tests.lab.sipp import SippCaller
from tests.lab.sniffer import RtpSniffer


def instructions(conn) -> list[str]:
    """The per-response instructions of every response.create aribot sent."""
    return [(e.get("response") or {}).get("instructions", "") for e in conn.received_of_type("response.create")]


@pytest.mark.parametrize("timeout", [1.0, 0.0], ids=["fires", "disabled"])
async def test_realtime_connect_timeout(
    asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
    caplog: pytest.LogCaptureFixture, timeout: float,
) -> None:
    fake.accept_delay_s = 2.0                       # the Realtime endpoint is slow to accept
    fake.script = Script(turns=[Turn.audio(speech(400, seed=1), "hi")])
    app = await make_aribot(fake.url, ai={"connect_timeout": timeout})
    probe = Probe.attach(app)
    placed = await place_call(asterisk_lab, tmp_path / "sipp", silence(2500) + speech(600, seed=2) + silence(2000),
                              hangup="either", wait_bye_timeout_ms=500)
    ended = probe.first("call.ended")
    if timeout:
        assert ended.reason == "ai_unavailable" and placed.result.bye_received
        assert [r.getMessage() for r in caplog.records if "not ready within 1 s" in r.getMessage()]
    else:
        assert ended.reason == "caller_hangup" and fake.connections[0].responses


async def test_no_speech_reprompts_then_says_goodbye_and_hangs_up(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path
) -> None:
    answer, reprompt, goodbye = speech(500, seed=11), speech(500, seed=12), speech(700, seed=13)
    fake.script = Script(turns=[Turn.audio(answer, "how can I help?"), Turn.audio(reprompt, "are you there?"),
                                Turn.audio(goodbye, "goodbye")])
    app = await make_aribot(fake.url, timers={"no_speech_timeout": 1.0, "no_speech_reprompts": 1})
    probe = Probe.attach(app)
    caller = SippCaller(asterisk_lab, tmp_path / "sipp", silence(400) + speech(600, seed=14) + silence(9000),
                        audio_delay_ms=300, hangup="server")
    rtp_sniffer.watch(caller.media_port)
    result = await caller.run()
    assert result.ok and result.bye_received, result.error
    fired = probe.of("call.timer_fired")
    assert [f.timer for f in fired] == ["no_speech", "no_speech"]
    assert "re-prompt 1 of 1" in fired[0].action and "goodbye" in fired[1].action
    conn = fake.connections[0]
    settings = app.settings.timers
    assert instructions(conn) == [settings.no_speech_prompt, settings.no_speech_goodbye]
    # silence was measured from when the AI stopped talking, not from when it started
    stops = probe.of("call.bot_audio_stopped")
    assert abs(fired[0].ts - (stops[0].ts + 1.0)) < 0.15 and abs(fired[1].ts - (stops[1].ts + 1.0)) < 0.15
    payload = b"".join(p.payload for p in heard(rtp_sniffer, caller.media_port))
    assert payload == padded(answer) + padded(reprompt) + padded(goodbye)   # the goodbye was heard to the end
    assert probe.first("call.ended").reason == "no_input"


async def test_no_speech_disabled_never_fires(
    asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, make_aribot, tmp_path: Path
) -> None:
    app = await make_aribot(fake.url, timers={"no_speech_timeout": 0})
    probe = Probe.attach(app)
    await place_call(asterisk_lab, tmp_path / "sipp", silence(400) + speech(600, seed=15) + silence(4000),
                     audio_delay_ms=300)
    assert probe.of("call.timer_fired") == [] and len(fake.connections[0].responses) == 1


@pytest.mark.parametrize("timeout", [1.0, 0.0], ids=["fires", "disabled"])
async def test_speech_complete_timeout_answers_a_long_utterance(
    asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, make_aribot, tmp_path: Path, timeout: float
) -> None:
    fake.script = Script(turns=[Turn.audio(speech(600, seed=21), "let me stop you there")])
    app = await make_aribot(fake.url, timers={"speech_complete_timeout": timeout})
    probe = Probe.attach(app)
    await place_call(asterisk_lab, tmp_path / "sipp", silence(400) + speech(3000, seed=22) + silence(2000),
                     audio_delay_ms=300, hold_ms_after_audio=300)
    conn = fake.connections[0]
    if timeout:
        fired = probe.first("call.timer_fired")
        assert fired.timer == "speech_complete"
        assert abs(fired.ts - (probe.first("call.speech_started").ts + 1.0)) < 0.15
        assert conn.received_of_type("input_audio_buffer.commit")
        assert conn.responses[0].trigger == "client" and conn.responses[0].created_at < fired.ts + 0.2
        assert probe.first("call.ended").stats["input_held_frames"] > 0
    else:
        assert probe.of("call.timer_fired") == [] and not conn.received_of_type("input_audio_buffer.commit")
        assert conn.responses[0].trigger == "vad"


@pytest.mark.parametrize("on_end", ["hangup", "continue"])
async def test_max_call_duration_says_goodbye_then_ends(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
    on_end: str,
) -> None:
    goodbye = speech(800, seed=31)
    fake.script = Script(turns=[Turn.audio(goodbye, "our time is up, goodbye")])
    app = await make_aribot(fake.url, timers={"max_call_duration": 2.0}, call={"on_end": on_end})
    probe = Probe.attach(app)
    mark = len(asterisk_lab.log_text())
    caller = SippCaller(asterisk_lab, tmp_path / "sipp", silence(8000), audio_delay_ms=300, hangup="server")
    rtp_sniffer.watch(caller.media_port)
    result = await caller.run()
    assert result.ok and result.bye_received, result.error
    fired, started = probe.first("call.timer_fired"), probe.first("call.started")
    assert fired.timer == "max_duration" and abs(fired.ts - started.ts - 2.0) < 0.3
    assert instructions(fake.connections[0]) == [app.settings.timers.max_duration_goodbye]
    packets = heard(rtp_sniffer, caller.media_port)
    assert b"".join(p.payload for p in packets) == padded(goodbye)
    ended = probe.first("call.ended")
    assert ended.reason == "max_duration"
    assert ended.ts > packets[-1].ts + 0.25                        # hung up after the goodbye was heard
    after = asterisk_lab.log_text()[mark:]
    assert ("ARIBOT_END_REASON=max_duration" in after) == (on_end == "continue")


async def test_max_call_duration_disabled(
    asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    app = await make_aribot(fake.url, timers={"max_call_duration": 0, "no_speech_timeout": 0})
    probe = Probe.attach(app)
    result = await SippCaller(asterisk_lab, tmp_path / "sipp", silence(3000), audio_delay_ms=300).run()
    assert result.ok and result.bye_sent, result.error
    assert probe.of("call.timer_fired") == [] and probe.first("call.ended").reason == "caller_hangup"
