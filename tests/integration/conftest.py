"""Integration fixtures: the lab Asterisk (one per session), the RTP sniffer, a strict fake
Realtime server per test, and aribot itself in-process with settings pointing at both."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aribot.core.app import App, configure
from aribot.core.ari import AriClient
from aribot.core.settings import toml_value
from aribot.sandbox.asterisk import AsteriskLab
from aribot.sandbox.ports import free_udp_port_range
from tests.contract.ari_docs import validate_request
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab.fixtures import asterisk_lab, lab_chroot, rtp_sniffer  # noqa: F401

API_KEY = "test-key"


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


# the history database of the aribots this worker starts; removed when the session ends
HISTORY_DIR = Path(tempfile.mkdtemp(prefix="aribot-test-history-"))


@pytest.fixture(scope="session", autouse=True)
def _remove_history_dir() -> Iterator[None]:
    yield
    shutil.rmtree(HISTORY_DIR, ignore_errors=True)


def lab_settings(lab: AsteriskLab, realtime_url: str, **overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Settings sections for an aribot that serves the lab's Stasis app and talks to the fake."""
    low, high = free_udp_port_range(64)
    sections: dict[str, dict[str, Any]] = {
        "ari": {"url": lab.ari_url, "username": lab.ari_username, "password": lab.ari_password,
                "app": lab.app, "reconnect_min_delay": 0.1, "reconnect_max_delay": 1.0},
        "rtp": {"host": "127.0.0.1", "port_min": low, "port_max": high},
        "openai": {"url": realtime_url, "api_key": API_KEY, "model": "gpt-realtime",
                   "vad_silence_duration_ms": 500, "connect_timeout": 5.0},
        "call": {"greeting": "", "cleanup_timeout": 2.0},
        "activation": {"mode": "immediate"},
        "http": {"host": "127.0.0.1", "port": 0},
        "ui": {"enabled": False},
        "history": {"path": str(HISTORY_DIR / "history.sqlite3")},
        "log": {"level": "DEBUG"},
    }
    for section, values in overrides.items():
        sections.setdefault(section, {}).update(values)
    return sections


@pytest.fixture
async def fake() -> AsyncIterator[FakeRealtimeServer]:
    """A strict fake Realtime GA server; every frame it sends is checked against the SDK types."""
    server = FakeRealtimeServer(api_key=API_KEY)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
    server.assert_no_fake_bugs()


@pytest.fixture
def ari_requests(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Every ARI request aribot makes, recorded; each is validated against Asterisk's api-docs."""
    made: list[tuple[str, dict[str, Any]]] = []
    original = AriClient.call

    async def recording_call(self: AriClient, op: str, **params: Any) -> Any:
        made.append((op, dict(params)))
        return await original(self, op, **params)

    monkeypatch.setattr(AriClient, "call", recording_call)
    return made


MakeAribot = Callable[..., Awaitable[App]]


@pytest.fixture
async def make_aribot(
    asterisk_lab: AsteriskLab, tmp_path: Path, ari_requests: list[tuple[str, dict[str, Any]]]  # noqa: F811
) -> AsyncIterator[MakeAribot]:
    """Start aribot in-process (``await make_aribot(url, section={...})``); at teardown it is
    stopped, Asterisk must be clean within 2 s and every ARI request must match the api-docs."""
    apps: list[App] = []

    async def make(realtime_url: str, **overrides: dict[str, Any]) -> App:
        path = write_settings(tmp_path / f"settings-{len(apps)}.toml",
                              lab_settings(asterisk_lab, realtime_url, **overrides))
        settings, plugins = configure(path)
        app = App(settings, plugins)
        await app.start()
        apps.append(app)
        await asyncio.wait_for(app.stream.connected.wait(), 5)
        return app

    yield make
    # checked while aribot still runs: each call must have cleaned up after itself
    channels, bridges = await asterisk_lab.wait_clean(2.0)
    for app in apps:
        await app.stop()
    assert (channels, bridges) == ([], []), f"left in Asterisk: {channels} {bridges}"
    problems = [p for op, params in ari_requests for p in validate_request(op, params)]
    assert problems == [], problems
