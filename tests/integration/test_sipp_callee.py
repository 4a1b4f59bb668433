"""The sipp callee harness (tests/lab/sipp_callee.py) against the lab Asterisk: ARI originates to
``callee.dial_string`` and the callee answers, is busy or rings until cancelled, as told."""

from __future__ import annotations

from pathlib import Path

from aribot.sandbox.asterisk import AsteriskLab
from tests.lab.audio import silence, speech
from tests.lab.calls import heard
from tests.lab.sipp_callee import SippCallee, build_callee_scenario
from tests.lab.sniffer import RtpSniffer


async def originate(lab: AsteriskLab, callee: SippCallee, *, timeout: int = 30) -> None:
    """Dial the callee; when it answers, its channel runs Echo() in the lab's from-sipp context."""
    status, body = await lab.ari("POST", "/channels", endpoint=callee.dial_string, context="from-sipp",
                                 extension="echo", priority=1, timeout=timeout)
    assert status == 200, body


def test_scenario_refuses_unknown_modes() -> None:
    for bad in ({"answer": "maybe"}, {"hangup": "nobody"}):
        options = dict(answer="answer", answer_after_ms=0, audio_file=None, audio_ms=0, dtmf="", hold_ms=0,
                       hangup="either", ring_ms=0) | bad
        try:
            build_callee_scenario(**options)  # type: ignore[arg-type]
        except ValueError as exc:
            assert next(iter(bad.values())) in str(exc)
        else:
            raise AssertionError(f"{bad} was accepted")


async def test_answers_plays_audio_and_hangs_up(asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer,
                                                tmp_path: Path) -> None:
    audio = silence(200) + speech(1000, seed=7)
    callee = SippCallee(tmp_path / "answer", audio=audio, answer_after_ms=300, dtmf="12", hold_ms=800,
                        hangup="callee")
    rtp_sniffer.watch(callee.media_port)
    await callee.start()
    await originate(asterisk_lab, callee)
    result = await callee.wait()
    assert result.ok, result.error
    assert (result.invited, result.answered, result.busy, result.cancelled) == (True, True, False, False)
    assert result.bye_sent and not result.bye_received
    echoed = b"".join(p.payload for p in heard(rtp_sniffer, callee.media_port))
    assert audio[1600:4800] in echoed     # Echo() sent the callee's own speech back, byte-exact
    events = [p for p in rtp_sniffer.packets(callee.media_port) if p.pt == 101]
    assert events, "the DTMF keys were echoed as RFC 4733 events"
    assert await asterisk_lab.wait_clean(2.0) == ([], [])


async def test_caller_hangs_up_first(asterisk_lab: AsteriskLab, tmp_path: Path) -> None:
    callee = SippCallee(tmp_path / "bye", hold_ms=8000, hangup="caller")
    await callee.start()
    since = len(asterisk_lab.log_text())
    await originate(asterisk_lab, callee)
    await asterisk_lab.wait_for_log(r"\] Echo\(", 5.0, since=since)
    _, channels = await asterisk_lab.ari("GET", "/channels")
    for channel in channels:
        await asterisk_lab.ari("DELETE", f"/channels/{channel['id']}")
    result = await callee.wait()
    assert result.ok, result.error
    assert result.answered and result.bye_received


async def test_busy(asterisk_lab: AsteriskLab, tmp_path: Path) -> None:
    callee = SippCallee(tmp_path / "busy", answer="busy")
    await callee.start()
    await originate(asterisk_lab, callee)
    result = await callee.wait()
    assert result.ok, result.error
    assert (result.invited, result.busy, result.answered) == (True, True, False)
    assert await asterisk_lab.wait_clean(2.0) == ([], [])


async def test_no_answer_rings_until_cancelled(asterisk_lab: AsteriskLab, tmp_path: Path) -> None:
    callee = SippCallee(tmp_path / "ring", answer="no_answer", ring_ms=20000)
    await callee.start()
    await originate(asterisk_lab, callee, timeout=2)   # Asterisk gives up (CANCEL) after 2 s
    result = await callee.wait()
    assert result.ok, result.error
    assert (result.invited, result.cancelled, result.answered) == (True, True, False)
    assert await asterisk_lab.wait_clean(2.0) == ([], [])


async def test_no_invite_is_an_error(tmp_path: Path) -> None:
    callee = SippCallee(tmp_path / "idle", invite_wait_s=1.0)
    result = await callee.run()
    assert not result.ok and "no INVITE" in result.error
