"""`aribot doctor` as a subprocess against the real lab Asterisk and the strict fake Realtime server,
and ``run_checks(app=...)`` as the dashboard calls it on a running aribot."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from aribot.core.app import installed_settings
from aribot.core.doctor import run_checks
from aribot.sandbox.asterisk import AsteriskLab
from aribot.sandbox.ports import free_udp_port_range
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab.serve import API_KEY, ARIBOT

LEGACY = {name for _owner, setting in installed_settings() for name in setting.legacy}


def doctor_env(lab: AsteriskLab, realtime_url: str, **overrides: str) -> dict[str, str]:
    """Only env vars, as an engineer would point aribot at their Asterisk."""
    low, high = free_udp_port_range(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARIBOT_") and k not in LEGACY}
    return env | {
        "ARIBOT_ARI__URL": lab.ari_url, "ARIBOT_ARI__USERNAME": lab.ari_username,
        "ARIBOT_ARI__PASSWORD": lab.ari_password, "ARIBOT_ARI__APP": lab.app,
        "ARIBOT_OPENAI__URL": realtime_url, "ARIBOT_OPENAI__API_KEY": API_KEY,
        "ARIBOT_RTP__HOST": "127.0.0.1", "ARIBOT_RTP__PORT_MIN": str(low), "ARIBOT_RTP__PORT_MAX": str(high),
        "ARIBOT_UI__ENABLED": "false",
    } | overrides


async def run_doctor(env: dict[str, str], cwd: Path) -> tuple[int, list[str]]:
    """Run ``aribot doctor`` without blocking the loop (the fake Realtime server lives in it)."""
    proc = await asyncio.create_subprocess_exec(str(ARIBOT), "doctor", cwd=cwd, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out = (await asyncio.wait_for(proc.communicate(), 30))[0].decode()
    for secret in (env["ARIBOT_ARI__PASSWORD"], env["ARIBOT_OPENAI__API_KEY"]):
        assert secret not in out, out
    assert proc.returncode is not None
    return proc.returncode, out.splitlines()


async def test_doctor_all_ok_while_aribot_serves(
    asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, make_aribot: Any,
    ari_requests: list[tuple[str, dict[str, Any]]], tmp_path: Path,
) -> None:
    app = await make_aribot(fake.url)
    code, lines = await run_doctor(doctor_env(asterisk_lab, fake.url), tmp_path)
    assert code == 0, lines
    assert [line.split()[:2] for line in lines] == [
        ["OK", name] for name in ("settings", "ari_login", "ari_app", "asterisk_version", "rtp_address", "backend")]
    assert lines[1] == f"OK   ari_login  Asterisk 22.10.1 at {asterisk_lab.ari_url} as user '{asterisk_lab.ari_username}'"
    assert lines[2] == f"OK   ari_app  app {asterisk_lab.app} is registered: an aribot (or another ARI client) is " \
                       "connected to it"
    assert lines[3].startswith("OK   asterisk_version  Asterisk 22.10.1")
    conn = fake.connections[-1]
    assert conn.received == [] and conn.session_updates == [] and conn.closed_by == "client"

    # the dashboard's view: the same checks, about this very aribot
    checks = {c.name: c for c in await run_checks(app.settings, app=app, timeout=3)}
    assert all(c.ok and not c.hint for c in checks.values()), checks
    assert checks["ari_app"].detail == f"this aribot is connected to app {asterisk_lab.app}"


async def test_doctor_wrong_ari_password(asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, tmp_path: Path) -> None:
    wrong = "not-the-" + asterisk_lab.ari_password
    code, lines = await run_doctor(doctor_env(asterisk_lab, fake.url, ARIBOT_ARI__PASSWORD=wrong), tmp_path)
    assert code == 1, lines
    login = next(line for line in lines if " ari_login " in line)
    assert login.startswith(f"FAIL ari_login  Asterisk at {asterisk_lab.ari_url} rejected user "
                            f"'{asterisk_lab.ari_username}' (HTTP 401): wrong username or password")
    assert "ari.password (ARIBOT_ARI__PASSWORD)" in login
    assert [line.split()[0] for line in lines if " ari_app " in line or " asterisk_version " in line] == ["SKIP"] * 2
    assert any(line.startswith("OK   backend  openai_realtime:") for line in lines), lines


async def test_doctor_app_not_registered(asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, tmp_path: Path) -> None:
    code, lines = await run_doctor(doctor_env(asterisk_lab, fake.url), tmp_path)
    app = asterisk_lab.app
    assert f"WARN ari_app  no aribot is connected to app {app}: Stasis({app}) calls fail until `aribot serve` runs" \
        in lines, lines
    assert code == 0, lines  # expected before `aribot serve`: a warning, not a failure


async def test_doctor_checks_the_chosen_backend_only(asterisk_lab: AsteriskLab, fake: FakeRealtimeServer,
                                                     tmp_path: Path) -> None:
    """With [ai] backend = gpt_live the doctor starts and closes a GPT-Live session (no AI minute
    spent on audio) and never asks the Realtime API anything; a bad key there fails with its fix."""
    from tests.fake_gpt_live import FakeGptLiveServer
    async with FakeGptLiveServer(api_key=API_KEY) as live:
        env = doctor_env(asterisk_lab, fake.url, ARIBOT_AI__BACKEND="gpt_live", ARIBOT_GPT_LIVE__URL=live.url,
                         ARIBOT_OPENAI__API_KEY="", ARIBOT_GPT_LIVE__API_KEY=API_KEY)
        env["ARIBOT_OPENAI__API_KEY"] = "unused-realtime-key"   # run_doctor checks no secret is printed
        code, lines = await run_doctor(env, tmp_path)
        assert code == 0, lines
        (backend,) = [line for line in lines if " backend " in line]
        assert backend == f"OK   backend  gpt_live: {live.url} started and closed a session (model gpt-live-1)"
        assert [conn.received_types() for conn in live.connections] == [["session.start", "session.close"]]
        assert fake.connections == []                                # the Realtime API was not asked
        code, lines = await run_doctor(env | {"ARIBOT_GPT_LIVE__API_KEY": "sk-wrong"}, tmp_path)
        assert code == 1
        (backend,) = [line for line in lines if " backend " in line]
        assert backend.startswith("FAIL backend  gpt_live:") and "HTTP 401" in backend
        assert "ARIBOT_GPT_LIVE__API_KEY" in backend and "sk-wrong" not in "\n".join(lines)
        live.assert_no_client_bugs()
