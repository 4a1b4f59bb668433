"""Listen in on a real call: `aribot serve` with its dashboard, a sipp caller on the lab Asterisk
and Debian's headless Chromium. The operator opens the call page and clicks Listen (a real click:
the page's audio output starts from that gesture, no autoplay flag); the page's counters
(window.aribotListen, static/listen.js) show the caller's speech in the left channel, the fake
AI's scripted speech in the right, bytes arriving at the real-time rate and playback scheduled
less than half a second behind; Stop ends the session, a second session ends with the call (the
socket closed cleanly), and the call's history records both."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

from aribot.plugins.local_backend.realtime.script import Script, Turn
from aribot.sandbox.asterisk import AsteriskLab
from tests.fake_realtime.server import FakeRealtimeServer
from tests.integration.test_dashboard import console, screenshot, wait_page
from tests.lab.audio import speech
from tests.lab.calls import caller_turns
from tests.lab.sipp import SippCaller

STEREO_BYTES_PER_S = 2 * 8000
READ_STATS = "return window.aribotListen ? JSON.parse(JSON.stringify(window.aribotListen)) : null"


async def stats(driver: Any) -> dict[str, Any] | None:
    return await asyncio.to_thread(driver.execute_script, READ_STATS)


async def wait_stats(driver: Any, check: Any, what: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        seen = await stats(driver)
        if seen is not None and check(seen):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {timeout} s; window.aribotListen = {seen}")
        await asyncio.sleep(0.1)


async def click_button(driver: Any, text: str) -> None:
    deadline = time.monotonic() + 15
    while True:
        buttons = await asyncio.to_thread(driver.find_elements, "xpath", f"//button[contains(., '{text}')]")
        if buttons:
            await asyncio.to_thread(buttons[0].click)
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} button on the call page")
        await asyncio.sleep(0.1)


async def test_listen_in_to_a_real_call_in_a_real_browser(
    asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, tmp_path: Path
) -> None:
    fake.script = Script(turns=[Turn.audio(speech(2000, seed=10 + n), f"Answer number {n}.") for n in range(4)],
                         caller_transcripts=[f"Question {n}" for n in range(4)], speed=1.0)
    history = tmp_path / "history.sqlite3"
    async with console(asterisk_lab, fake.url, tmp_path, history) as served:
        driver = served.driver
        # four questions of 1 s, each followed by 3.5 s in which the AI answers for 2 s
        caller = SippCaller(asterisk_lab, tmp_path / "sipp", caller_turns(1000, 1000, 1000, 1000, gap_ms=3500),
                            audio_delay_ms=300, hold_ms_after_audio=300)
        run = asyncio.create_task(caller.run())
        await wait_page(driver, "sipp")
        link = await asyncio.to_thread(driver.find_element, "partial link text", "sipp")
        await asyncio.to_thread(link.click)
        await click_button(driver, "Listen")
        first = await wait_stats(driver, lambda s: s["state"] == "listening" and s["frames"] >= 5, "listening")
        t_first = time.monotonic()
        assert first["format"] == "ulaw" and first["rate"] == 8000
        both = await wait_stats(driver, lambda s: s["sumAbs"][0] > 0 and s["sumAbs"][1] > 0,
                                "the caller's and the AI's audio", timeout=15)
        await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - t_first)))
        last = await stats(driver)
        t_last = time.monotonic()
        assert last is not None and last["state"] == "listening", last
        assert last["contextState"] == "running" and last["contextTime"] > 0, last   # the page really plays
        assert last["latencyMs"] < 500 and last["maxLatencyMs"] < 500, last          # < 0.5 s behind real time
        rate = (last["bytes"] - first["bytes"]) / (t_last - t_first)
        assert 0.7 * STEREO_BYTES_PER_S < rate < 1.3 * STEREO_BYTES_PER_S, (rate, first, last)
        assert last["samples"] * 2 == last["bytes"]
        await wait_page(driver, "listening: caller left, AI right")   # the page's status label
        await screenshot(driver, "dashboard-listen-in.png")
        await click_button(driver, "Stop")
        stopped = await wait_stats(driver, lambda s: s["state"] == "closed", "closed after Stop")
        assert stopped["closeCode"] == 1000
        await wait_page(driver, ">stopped<")
        await click_button(driver, "Listen")      # again (a new token): until the call ends
        await wait_stats(driver, lambda s: s["state"] == "listening" and s["frames"] >= 5, "listening again")
        result = await run
        assert result.ok, result.error
        ended = await wait_stats(driver, lambda s: s["state"] == "closed", "closed by the end of the call")
        assert ended["closeCode"] == 1000, ended
        await wait_page(driver, "stopped: the call ended")
        await wait_page(driver, "ended: caller_hangup")
    assert served.server.returncode == 0, served.output
    assert "started listening" in served.output and "stopped listening" in served.output, served.output
    print(f"listen-in in Chromium: {both['sumAbs']} (sum |sample| caller, AI) when both were heard; "
          f"{rate:.0f} B/s; scheduled {last['latencyMs']} ms ahead (max {last['maxLatencyMs']} ms)")
    with sqlite3.connect(history) as db:
        kinds = [row[0] for row in db.execute("SELECT type FROM events ORDER BY call_id, seq")]
    assert kinds.count("call.listen_started") == 2 and kinds.count("call.listen_stopped") == 2, kinds
    assert kinds.index("call.listen_stopped") > kinds.index("call.listen_started")
    assert await asterisk_lab.wait_clean(2.0) == ([], [])
