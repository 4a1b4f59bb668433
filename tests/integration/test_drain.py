"""Graceful drain of `aribot serve`: SIGTERM during 5 live calls stops taking new ones (continued in
the dialplan), lets the live ones go on for ``drain_timeout``, then ends each with the AI's goodbye
heard in full; every call record is complete before exit. A second signal stops at once."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

import aiohttp

from aribot.plugins.local_backend.realtime.script import Script, Turn
from aribot.sandbox.asterisk import AsteriskLab
from aribot.sandbox.ports import free_tcp_port
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab.audio import silence, speech
from tests.lab.calls import caller_turns, heard, padded
from tests.lab.serve import serve_env, start_serve
from tests.lab.sipp import SippCaller
from tests.lab.sniffer import RtpSniffer
from tests.lab.wait import until

CALLS = 5


async def serve_draining(lab: AsteriskLab, fake: FakeRealtimeServer, tmp_path: Path,
                         drain_s: float) -> tuple[asyncio.subprocess.Process, int]:
    http_port = free_tcp_port()
    env = serve_env(lab, fake.url, http_port, legacy=False) | {
        "ARIBOT_CALL__DRAIN_TIMEOUT": str(drain_s), "ARIBOT_HISTORY__PATH": str(tmp_path / "history.sqlite3")}
    return await start_serve(tmp_path, env, http_port), http_port


async def draining(port: int) -> dict | None:
    """/healthz once aribot says it is draining (it still answers: ARI stays connected)."""
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/healthz") as resp:
        body = await resp.json()
    return body if body["draining"] else None


async def test_sigterm_drains_five_calls_each_with_its_goodbye(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, tmp_path: Path
) -> None:
    answers, goodbyes = {}, {}

    def script_for(conn) -> Script:
        index = len(answers)
        answers[conn], goodbyes[conn] = speech(500, seed=600 + index), speech(700, seed=700 + index)
        return Script(turns=[Turn.audio(answers[conn], "Hello."), Turn.audio(goodbyes[conn], "Goodbye now.")])

    fake.script = script_for
    proc, port = await serve_draining(asterisk_lab, fake, tmp_path, drain_s=1.0)
    mark = len(asterisk_lab.log_text())
    try:
        callers = [SippCaller(asterisk_lab, tmp_path / f"sipp{i}", caller_turns(600, gap_ms=12000, seed=i + 1),
                              audio_delay_ms=300, hangup="server") for i in range(CALLS)]
        for caller in callers:
            rtp_sniffer.watch(caller.media_port)
        runs = [asyncio.create_task(caller.run()) for caller in callers]
        conns = await fake.wait_for_connections(CALLS, timeout=10)
        for conn in conns:  # every call is in conversation: its first answer is being played
            await conn.wait_for_response(0, timeout=10)
        proc.send_signal(signal.SIGTERM)
        assert (await until(lambda: draining(port), "draining after SIGTERM"))["calls"] == CALLS
        late = SippCaller(asterisk_lab, tmp_path / "late", silence(2000), extension="779", hangup="server",
                          wait_bye_timeout_ms=8000)
        late_result = await late.run()  # arrives while draining: not served, continued in the dialplan
        results = await asyncio.gather(*runs)
        output = (await asyncio.wait_for(proc.communicate(), 30))[0].decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, output
    assert all(r.ok and r.bye_received for r in results), [r.error for r in results]
    assert len(fake.connections) == CALLS  # the late call never reached the AI
    by_audio = {bytes(conn.input_audio[:8000]): conn for conn in fake.connections}
    for caller in callers:
        conn = next(c for audio, c in by_audio.items() if caller.audio.startswith(audio))
        payload = b"".join(p.payload for p in heard(rtp_sniffer, caller.media_port))
        assert payload == padded(answers[conn]) + padded(goodbyes[conn])   # the whole goodbye, before the BYE
    # continued in the dialplan unanswered, the lab's dialplan hangs it up: sipp sees 603 Decline
    assert not late_result.ok and "603 Decline" in late_result.error, late_result.error
    await asterisk_lab.wait_for_log(r"after-stasis 779 STASISSTATUS=SUCCESS", since=mark)
    assert "stopped cleanly" in output and output.count("ended (shutdown)") == CALLS
    with sqlite3.connect(tmp_path / "history.sqlite3") as db:
        calls = db.execute("SELECT id, end_reason, ended_at FROM calls").fetchall()
        turns = db.execute("SELECT call_id, role, text FROM turns ORDER BY call_id, seq").fetchall()
    assert len(calls) == CALLS and {reason for _, reason, _ in calls} == {"shutdown"}
    assert all(ended for _, _, ended in calls)
    for call_id, _, _ in calls:  # each record holds the whole conversation, goodbye included
        said = [(role, text) for cid, role, text in turns if cid == call_id and role == "assistant"]
        assert said == [("assistant", "Hello."), ("assistant", "Goodbye now.")]
    assert await asterisk_lab.wait_clean(2.0) == ([], [])


async def test_a_second_signal_stops_at_once(
    asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, tmp_path: Path
) -> None:
    fake.script = Script(turns=[Turn.audio(speech(400, seed=41), "Hello.")])
    proc, port = await serve_draining(asterisk_lab, fake, tmp_path, drain_s=600.0)
    try:
        caller = SippCaller(asterisk_lab, tmp_path / "sipp", caller_turns(500, gap_ms=15000), audio_delay_ms=300,
                            hangup="server")
        run = asyncio.create_task(caller.run())
        conn = await fake.wait_for_connection()
        await conn.wait_for_response(0, timeout=10)
        proc.send_signal(signal.SIGTERM)
        assert (await until(lambda: draining(port), "draining after SIGTERM"))["calls"] == 1
        assert proc.returncode is None  # draining: the call goes on
        proc.send_signal(signal.SIGTERM)
        output = (await asyncio.wait_for(proc.communicate(), 15))[0].decode()
        result = await run
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, output
    assert result.ok and result.bye_received, result.error
    assert "second signal" in output and "ended (shutdown)" in output and "stopped cleanly" in output
    assert await asterisk_lab.wait_clean(2.0) == ([], [])
