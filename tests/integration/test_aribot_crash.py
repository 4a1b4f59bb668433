"""aribot itself dies (SIGKILL) mid-call and is started again: the caller is not left in silence
(hung up with ARIBOT_END_REASON=crashed), the dead aribot's media channel and bridge are deleted,
and the call's record, written as the call went, is closed with reason ``crashed``."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path

from aribot.plugins.local_backend.realtime.script import Script, Turn
from aribot.sandbox.asterisk import AsteriskLab
from aribot.sandbox.ports import free_tcp_port
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab.audio import speech
from tests.lab.calls import caller_turns
from tests.lab.serve import serve_env, start_serve
from tests.lab.sipp import SippCaller
from tests.lab.wait import until


def recorded_turns(database: Path) -> int:
    """Transcript turns the running aribot has committed (read as another process would)."""
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            return int(db.execute("SELECT count(*) FROM turns").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


async def test_a_killed_aribot_leaves_nothing_behind_after_its_restart(
    asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, tmp_path: Path
) -> None:
    fake.script = Script(turns=[Turn.audio(speech(500, seed=51), "Hello, how can I help?")],
                         caller_transcripts=["I would like to know my balance."])
    http_port = free_tcp_port()
    env = serve_env(asterisk_lab, fake.url, http_port, legacy=False) | {
        "ARIBOT_HISTORY__PATH": str(tmp_path / "history.sqlite3")}

    first = await start_serve(tmp_path, env, http_port)
    caller = SippCaller(asterisk_lab, tmp_path / "sipp", caller_turns(800, gap_ms=15000), audio_delay_ms=300,
                        hangup="server")
    run = asyncio.create_task(caller.run())
    conn = await fake.wait_for_connection()
    await conn.wait_for(lambda: (conn.responses and conn.responses[0].done) or None, timeout=10)
    await until(lambda: recorded_turns(tmp_path / "history.sqlite3") >= 2, "both turns written to the history")
    first.send_signal(signal.SIGKILL)
    await first.wait()
    _, channels = await asterisk_lab.ari("GET", "/channels")
    assert len(channels) == 2   # the caller, stuck in Stasis, and the dead aribot's media leg
    killed_at = time.monotonic()
    second = await start_serve(tmp_path, env, http_port)
    try:
        result = await run
        recovered_s = time.monotonic() - killed_at
        assert result.ok and result.bye_received, result.error   # hung up, not left in silence
        assert await asterisk_lab.wait_clean(2.0) == ([], [])    # the leg and the bridge are gone too
        print(f"aribot killed mid-call: the caller was released {recovered_s:.1f} s after the kill "
              "(including the new aribot's start)")
    finally:
        second.send_signal(signal.SIGTERM)
        output = (await asyncio.wait_for(second.communicate(), 20))[0].decode()
    assert "1 caller(s) were left in Stasis app" in output and "they were hung up" in output
    with sqlite3.connect(tmp_path / "history.sqlite3") as db:
        calls = db.execute("SELECT id, end_reason FROM calls").fetchall()
        turns = db.execute("SELECT role, text FROM turns ORDER BY seq").fetchall()
    assert [reason for _, reason in calls] == ["crashed"]
    assert ("caller", "I would like to know my balance.") in turns and ("assistant", "Hello, how can I help?") in turns
