"""Asterisk restarting during calls (its own lab instance, so the session's lab is not disturbed):
aribot notices on reconnect, ends and records those calls as ``asterisk_restarted``, leaves no
channel or bridge behind, and the next call works."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aribot.core.app import App, configure
from aribot.core.events import CallEnded
from aribot.plugins.local_backend.realtime.script import Script, Turn
from aribot.sandbox.asterisk import AsteriskLab
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab.audio import speech
from tests.lab.calls import caller_turns, padded, place_call
from tests.lab.serve import lab_settings, write_settings
from tests.lab.sipp import SippCaller
from tests.lab.sniffer import RtpSniffer
from tests.lab.wait import until


@pytest.fixture
async def own_lab(lab_chroot: Path) -> AsyncIterator[AsteriskLab]:
    lab = AsteriskLab(lab_chroot, app="aribot-restart")
    await lab.start()
    try:
        yield lab
    finally:
        await lab.stop()


@pytest.mark.parametrize("how", ["crash", "stop"])
async def test_asterisk_restart_mid_call(
    own_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, tmp_path: Path,
    caplog: pytest.LogCaptureFixture, how: str,
) -> None:
    """crash: Asterisk is killed, aribot learns of it only when ARI is back (startup time
    changed). stop: ``core stop now`` hangs the channels up first, so the calls see it at once."""
    fake.script = Script(turns=[Turn.audio(speech(500, seed=n), f"answer {n}") for n in range(2)])
    settings, plugins = configure(write_settings(tmp_path / "s.toml", lab_settings(own_lab, fake.url)))
    app = App(settings, plugins)
    ended: list[CallEnded] = []
    app.bus.subscribe(CallEnded, ended.append)
    await app.start()
    try:
        await asyncio.wait_for(app.stream.connected.wait(), 5)
        callers = [SippCaller(own_lab, tmp_path / f"c{i}", caller_turns(600, gap_ms=5000, seed=i), audio_delay_ms=300,
                              hangup="either", wait_bye_timeout_ms=2000) for i in range(2)]
        runs = [asyncio.create_task(c.run()) for c in callers]
        await fake.wait_for_connections(2, timeout=10)
        await until(lambda: len(app.calls) == 2 and all(c.state == "talking" for c in app.calls.values()),
                    "both calls in conversation (bridged, media flowing)")
        restarted_at = time.monotonic()
        await own_lab.restart(down_s=0.5, crash=how == "crash")
        await until(lambda: not app.calls, "both calls ended after the restart", timeout=15, interval=0.05)
        recovered_s = time.monotonic() - restarted_at
        reasons = sorted(e.reason for e in ended)
        if how == "crash":
            assert reasons == ["asterisk_restarted"] * 2
        else:  # whichever of its two channels Asterisk hung up first
            assert len(reasons) == 2 and set(reasons) <= {"caller_hangup", "media_leg_lost"}, reasons
        assert await own_lab.wait_clean(2.0) == ([], [])
        print(f"Asterisk {how} + start: both calls ended and recorded {recovered_s:.1f} s after it began")
        for run in runs:  # the callers' dialogs died with Asterisk; sipp gives up on its own
            await run
        # the next call works, once aribot is back on ARI (its reconnect backoff may still be running)
        async def registered() -> bool:
            _, apps = await own_lab.ari("GET", "/applications")
            return app.ari_connected and own_lab.app in [a["name"] for a in apps]
        await until(registered, "aribot back on ARI with its Stasis app", interval=0.025)
        placed = await place_call(own_lab, tmp_path / "after", caller_turns(700), audio_delay_ms=500,
                                  hold_ms_after_audio=300, sniffer=rtp_sniffer)
        assert bytes(fake.connections[-1].input_audio) == placed.caller.audio
        assert placed.audio == padded(
            fake.connections[-1].responses[0].audio)
        assert any("Asterisk restarted" in r.getMessage() for r in caplog.records)  # startup time changed
    finally:
        await app.stop()
    assert await own_lab.wait_clean(2.0) == ([], [])
