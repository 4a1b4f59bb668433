"""Barge-in through the real Asterisk: the caller talks over the AI."""

from __future__ import annotations

from pathlib import Path

from aribot.core.events import BargeIn, CallEnded
from aribot.plugins.local_backend.realtime.script import Script, Turn
from aribot.sandbox.asterisk import AsteriskLab
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab.audio import silence, speech
from tests.lab.calls import FRAME, padded, place_call
from tests.lab.probe import subscribe
from tests.lab.sniffer import RtpSniffer


async def test_caller_interrupts_the_ai(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path
) -> None:
    long_answer, short_answer = speech(4000, seed=21), speech(600, seed=22)
    # speed 1.25: the server is still streaming the long answer when the caller interrupts,
    # and sends 3 more deltas after speech_started, which aribot must drop.
    fake.script = Script(turns=[Turn.audio(long_answer, "a long answer"), Turn.audio(short_answer, "ok")],
                         speed=1.25, late_deltas_after_interrupt=3)
    app = await make_aribot(fake.url)
    ended, barge_ins = subscribe(app, CallEnded), subscribe(app, BargeIn)
    caller_audio = (silence(400) + speech(800, seed=1) + silence(1200) + speech(800, seed=2) + silence(2500))
    placed = await place_call(asterisk_lab, tmp_path / "sipp", caller_audio, audio_delay_ms=500,
                              hold_ms_after_audio=300, sniffer=rtp_sniffer)

    conn = fake.connections[0]
    first, second = conn.responses[0], conn.responses[1]
    assert first.status == "cancelled" and second.status == "completed"
    packets = placed.packets
    payload = b"".join(p.payload for p in packets)
    played = len(payload) - len(padded(short_answer))
    assert played > 10 * FRAME, "the caller heard too little of the first answer to test a barge-in"
    # what the caller heard: a prefix of the long answer, then the whole short answer
    assert payload[:played] == long_answer[:played]
    assert payload[played:] == padded(short_answer)
    # counted in frames, not kernel time: the caller heard exactly the frames aribot had sent when
    # speech_started reached it and it stopped the audio; not one frame more went out
    (barge_in,) = barge_ins
    assert played // 8 == barge_in.played_ms and barge_in.dropped_ms > 0
    # the truncate names exactly the audio the caller got, and the fake accepted it
    assert len(conn.truncations) == 1
    truncation = conn.truncations[0]
    assert truncation.accepted and truncation.audio_end_ms == played // 8
    assert conn.errors_sent == []
    # deltas the server sent after speech_started never reached the caller
    assert ended[0].stats["late_deltas_dropped"] == 3
