"""A started App serving the dashboard on a real socket (uvicorn), for the dashboard's HTTP tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nicegui.testing.general import nicegui_reset_globals

from aribot.core.app import App, configure
from aribot.sandbox.ports import free_tcp_port

SOCKET_IO = "/_nicegui_ws/socket.io/?EIO=4"  # NiceGUI 3.x: socket.io mounted at /_nicegui_ws (nicegui/nicegui.py)


def dashboard_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> App:
    """An App (not started) for pages driven by NiceGUI's simulated user: no Asterisk, fast
    redraws (20 per second); ``env`` sets more ARIBOT_* variables (``TOOLS__MANUAL='["x"]'``)."""
    monkeypatch.chdir(tmp_path)
    for key, value in ({"ARI__URL": "http://127.0.0.1:1", "UI__REFRESH_HZ": "20"} | env).items():
        monkeypatch.setenv(f"ARIBOT_{key}", value)
    settings, plugins = configure()
    return App(settings, plugins)


async def start_dashboard(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **ui: str) -> AsyncIterator[tuple[str, App]]:
    """(base URL, App) of a started App with the dashboard on a free port; ``ui`` sets [ui] keys
    (e.g. password=..., allowed_hosts=...)."""
    monkeypatch.chdir(tmp_path)
    port = free_tcp_port()
    env = {"ARI__URL": "http://127.0.0.1:1", "HTTP__PORT": "0", "UI__ENABLED": "true", "UI__HOST": "127.0.0.1",
           "UI__PORT": str(port), "HISTORY__PATH": str(tmp_path / "history.sqlite3")}
    for key, value in (env | {f"UI__{k.upper()}": v for k, v in ui.items()}).items():
        monkeypatch.setenv(f"ARIBOT_{key}", value)
    settings, plugins = configure()
    with nicegui_reset_globals():  # NiceGUI's app is process-global: a fresh one for this server
        app = App(settings, plugins)
        await app.start()
        try:
            assert app.extensions["ui"].port == port, "the dashboard did not start"
            yield f"http://127.0.0.1:{port}", app
        finally:
            await app.stop()
