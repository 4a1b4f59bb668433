"""Running aribot in tests: the settings an aribot of the lab gets (in-process, from a settings
file) and `aribot serve` as a subprocess configured only by env vars, as a deployment would."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp

from aribot.core.settings import toml_value
from aribot.sandbox.asterisk import AsteriskLab
from aribot.sandbox.ports import free_udp_port_range
from tests.lab.wait import until

API_KEY = "test-key"   # what the suite's fake AI servers accept
ARIBOT = Path(sys.executable).parent / "aribot"


def write_settings(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    """A TOML file of ``{section: {key: value}}``; a dict value becomes a ``[section.key]`` table."""
    lines: list[str] = []

    def table(name: str, values: dict[str, Any]) -> None:
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in values.items() if not isinstance(value, dict))
        for key, value in values.items():
            if isinstance(value, dict):
                table(f"{name}.{key}", value)

    for section, values in sections.items():
        table(section, values)
    path.write_text("\n".join(lines) + "\n")
    return path


def lab_settings(lab: AsteriskLab, realtime_url: str, **overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Settings sections for an aribot that serves the lab's Stasis app and talks to the fake."""
    low, high = free_udp_port_range(64)
    sections: dict[str, dict[str, Any]] = {
        "ari": {"url": lab.ari_url, "username": lab.ari_username, "password": lab.ari_password,
                "app": lab.app, "reconnect_min_delay": 0.1, "reconnect_max_delay": 1.0},
        "rtp": {"host": "127.0.0.1", "port_min": low, "port_max": high},
        "openai": {"url": realtime_url, "api_key": API_KEY, "model": "gpt-realtime", "vad_silence_duration_ms": 500},
        "ai": {"connect_timeout": 5.0},
        "call": {"greeting": "", "cleanup_timeout": 2.0},
        "activation": {"mode": "immediate"},
        "http": {"host": "127.0.0.1", "port": 0},
        "ui": {"enabled": False},
        "log": {"level": "DEBUG"},
    }
    for section, values in overrides.items():
        sections.setdefault(section, {}).update(values)
    return sections


def serve_env(lab: AsteriskLab, realtime_url: str, http_port: int, *, legacy: bool) -> dict[str, str]:
    """Only env vars, as an outside deployment would set them (the documented contract)."""
    low, high = free_udp_port_range(100)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARIBOT_")}
    common = {"ARIBOT_RTP__PORT_MIN": str(low), "ARIBOT_RTP__PORT_MAX": str(high), "ARIBOT_OPENAI__URL": realtime_url,
              "ARIBOT_HTTP__HOST": "127.0.0.1", "ARIBOT_HTTP__PORT": str(http_port), "ARIBOT_UI__ENABLED": "false",
              "ARIBOT_CALL__GREETING": "", "ARIBOT_OPENAI__MODEL": "gpt-realtime"}
    if legacy:
        names = {"ASTERISK_ARI_URL": lab.ari_url + "/ari", "ASTERISK_ARI_USERNAME": lab.ari_username,
                 "ASTERISK_ARI_PASSWORD": lab.ari_password, "ASTERISK_ARI_APP_NAME": lab.app,
                 "OPENAI_API_KEY": API_KEY, "RTP_HOST_IP": "127.0.0.1", "RECOGNITION_ACTIVATION_MODE": "IMMEDIATE",
                 "INITIAL_OPENAI_STREAM_IDLE_TIMEOUT_SECONDS": "5"}
    else:
        names = {"ARIBOT_ARI__URL": lab.ari_url + "/ari", "ARIBOT_ARI__USERNAME": lab.ari_username,
                 "ARIBOT_ARI__PASSWORD": lab.ari_password, "ARIBOT_ARI__APP": lab.app,
                 "ARIBOT_OPENAI__API_KEY": API_KEY, "ARIBOT_RTP__HOST": "127.0.0.1",
                 "ARIBOT_ACTIVATION__MODE": "immediate"}
    return env | common | names


def console_env(lab: AsteriskLab, realtime_url: str, http_port: int, ui_port: int, history: Path) -> dict[str, str]:
    """serve_env with the dashboard on ``ui_port`` (loopback, no password) and the history at ``history``."""
    return serve_env(lab, realtime_url, http_port, legacy=False) | {
        "ARIBOT_UI__ENABLED": "true", "ARIBOT_UI__PORT": str(ui_port), "ARIBOT_HISTORY__PATH": str(history)}


async def start_serve(cwd: Path, env: dict[str, str], http_port: int) -> asyncio.subprocess.Process:
    """`aribot serve` as a subprocess (output captured), once its /healthz answers 200."""
    proc = await asyncio.create_subprocess_exec(str(ARIBOT), "serve", cwd=cwd, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    await wait_healthy(http_port)
    return proc


async def wait_healthy(port: int, timeout: float = 10.0) -> dict:
    """/healthz of the aribot on ``port`` once it answers 200 (ARI connected)."""
    async def healthy() -> dict | None:
        try:
            async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                return await resp.json() if resp.status == 200 else None
        except aiohttp.ClientError:
            return None
    return await until(healthy, f"aribot's /healthz on port {port} answering 200", timeout=timeout, interval=0.1)
