"""A-law end to end through the lab Asterisk: with ``[rtp] format = "alaw"`` a PCMA caller (the lab's
A-law-only endpoint) is heard by the AI byte-exact, the AI is heard by the caller byte-exact (its
last partial frame padded with A-law silence), and the Realtime session is told audio/pcma."""

from __future__ import annotations

from pathlib import Path

from aribot.plugins.local_backend.realtime.script import Script, Turn
from aribot.sandbox.asterisk import AsteriskLab
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab.audio import ALAW_SILENCE_BYTE, FRAME_BYTES, silence, speech
from tests.lab.calls import place_call
from tests.lab.sniffer import RtpSniffer

PCMA = 8


async def test_alaw_audio_both_ways_is_byte_exact(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path
) -> None:
    answer = speech(1500, seed=78, codec="alaw")[:-50]           # the last frame is 110 bytes: padded
    fake.script = Script(turns=[Turn.audio(answer, "Hello in A-law.")])
    await make_aribot(fake.url, rtp={"format": "alaw"})
    caller_audio = silence(400, codec="alaw") + speech(1000, seed=79, codec="alaw") + silence(2500, codec="alaw")
    placed = await place_call(asterisk_lab, tmp_path / "sipp", caller_audio, codec="alaw", audio_delay_ms=500,
                              hold_ms_after_audio=300, sniffer=rtp_sniffer)

    conn = fake.connections[0]
    assert bytes(conn.input_audio) == caller_audio                          # caller → AI: every byte, in order
    updates = [event["session"] for _t, event in conn.received if event["type"] == "session.update"]
    assert updates and all(update["audio"]["input"]["format"] == {"type": "audio/pcma"} and
                           update["audio"]["output"]["format"] == {"type": "audio/pcma"} for update in updates)
    kinds = [event["type"] for _t, event in conn.received]
    assert kinds.index("session.update") < kinds.index("input_audio_buffer.append")   # no audio before pcma
    assert conn.session["audio"]["input"]["format"]["type"] == "audio/pcma"
    heard = rtp_sniffer.packets(placed.caller.media_port)
    assert heard and {p.pt for p in heard} == {PCMA}
    padding = bytes([ALAW_SILENCE_BYTE]) * (-len(answer) % FRAME_BYTES)
    assert b"".join(p.payload for p in heard) == answer + padding          # AI → caller: every byte
    assert conn.responses[0].status == "completed"
