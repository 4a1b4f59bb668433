"""``aribot demo`` end to end, headless: the sandbox Asterisk, aribot with the dashboard and the
local backend (no OpenAI key), one demo call from a synthesised caller. The dashboard serves
while the call runs, the call reaches the dashboard's live data with the caller's words
(pocketsphinx) and the backend's answers, it ends by the caller hanging up, the history has it,
and Asterisk is left clean."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
from pathlib import Path

import aiohttp

from aribot.sandbox.ports import free_tcp_port, free_udp_port
from tests.lab.serve import ARIBOT


async def test_demo_runs_a_call_to_the_dashboard_and_stops_clean(lab_chroot: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARIBOT_") and k != "OPENAI_API_KEY"}
    env |= {"HOME": str(tmp_path), "ARIBOT_LAB_CHROOT": str(lab_chroot),
            "ARIBOT_HISTORY__PATH": str(tmp_path / "history.sqlite3"), "ARIBOT_HTTP__PORT": "0"}
    ui_port = free_tcp_port()
    proc = await asyncio.create_subprocess_exec(
        str(ARIBOT), "demo", "--once", "--ui-port", str(ui_port), "--sip-port", str(free_udp_port()),
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    lines: list[str] = []
    page = ""
    try:
        async with asyncio.timeout(150):
            while line := (await proc.stdout.readline()).decode():
                lines.append(line.rstrip("\n"))
                if line.startswith("demo: call ") and line.rstrip().endswith("started"):
                    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{ui_port}/") as resp:
                        assert resp.status == 200
                        page = await resp.text()
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    output = "\n".join(lines)
    assert proc.returncode == 0, output
    assert f"demo: dashboard http://127.0.0.1:{ui_port}/" in output
    assert "demo: AI backend local" in output
    assert "aribot" in page  # the dashboard served while the call ran
    ended = re.findall(r"^demo: call (\S+) ended \((\w+)\)$", output, re.MULTILINE)
    assert [reason for _, reason in ended] == ["caller_hangup"], output
    caller = re.findall(r"^dashboard:   caller: (.+)$", output, re.MULTILINE)
    assistant = re.findall(r"^dashboard:   assistant: (.+)$", output, re.MULTILINE)
    assert len(caller) == 2 and all(text.strip() for text in caller), output  # two caller lines, in words
    assert len(assistant) == 2 and all(text.startswith("I heard you say") for text in assistant), output
    assert "demo: Asterisk left clean: 0 channels, 0 bridges" in output
    assert output.rstrip().endswith("demo: stopped")
    with sqlite3.connect(tmp_path / "history.sqlite3") as db:
        rows = db.execute("SELECT id, end_reason FROM calls").fetchall()
    assert rows == [(ended[0][0], "caller_hangup")]
