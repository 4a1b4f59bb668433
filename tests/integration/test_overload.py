"""``[call] max_concurrent``: a call beyond it is answered with the overload prompt and hung up or
continued in the dialplan, never half-served, while the call being served goes on untouched."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from aribot.core.events import CallEnded
from aribot.plugins.local_backend.realtime.script import Script, Turn
from aribot.sandbox.asterisk import AsteriskLab
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab.audio import silence, speech
from tests.lab.calls import caller_turns, heard, padded, prompt_frames
from tests.lab.probe import log_lines, subscribe
from tests.lab.sipp import SippCaller
from tests.lab.sniffer import RtpSniffer
from tests.lab.wait import until


@pytest.mark.parametrize("action", ["hangup", "continue"])
async def test_a_call_beyond_max_concurrent_gets_the_prompt_and_is_not_served(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
    caplog: pytest.LogCaptureFixture, action: str,
) -> None:
    answer = speech(800, seed=21)
    fake.script = Script(turns=[Turn.audio(answer, "Hello.")])
    app = await make_aribot(fake.url, call={"max_concurrent": 1, "on_overload": action})
    ended = subscribe(app, CallEnded)
    mark = len(asterisk_lab.log_text())
    served_audio = caller_turns(800, gap_ms=6000)
    served = SippCaller(asterisk_lab, tmp_path / "served", served_audio, audio_delay_ms=300, hold_ms_after_audio=300)
    refused = SippCaller(asterisk_lab, tmp_path / "refused", silence(8000), extension="778", hangup="server",
                         wait_bye_timeout_ms=12000)
    for caller in (served, refused):
        rtp_sniffer.watch(caller.media_port)
    first = asyncio.create_task(served.run())
    conn = await fake.wait_for_connection()
    # the second call only once the first one's audio flows: arriving while Asterisk still bridges
    # the first call, it delayed that bridge past sipp's 300 ms lead-in and the first frames of
    # silence never reached aribot (seen once on three workers)
    await until(lambda: conn.input_audio, "the served caller's audio reaching the AI", timeout=10)
    second = await refused.run()
    result = await first

    assert result.ok, result.error
    assert second.ok and second.bye_received, second.error   # aribot (or the dialplan) ended it, not the caller
    assert len(fake.connections) == 1                         # the refused call never reached the AI
    assert bytes(fake.connections[0].input_audio) == served_audio
    assert b"".join(p.payload for p in heard(rtp_sniffer, served.media_port)) == padded(answer)
    assert prompt_frames(rtp_sniffer, refused.media_port) > 50   # the overload prompt was heard (> 1 s)
    played = asterisk_lab.log_text()[mark:]
    assert "Playing 'all-circuits-busy-now.gsm'" in played and "Playing 'please-try-call-later.gsm'" in played
    assert sorted(e.reason for e in ended) == ["caller_hangup", "overload"]
    lines = log_lines(caplog, "over capacity")
    assert len(lines) == 1 and "max_concurrent = 1" in lines[0]
    if action == "continue":
        await asterisk_lab.wait_for_log(r"after-stasis 778 STASISSTATUS=SUCCESS .*ARIBOT_END_REASON=overload",
                                        since=mark)
    assert app.calls == {}

