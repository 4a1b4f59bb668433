"""The NiceGUI live-call dashboard, as a plugin: disable it (``[ui] enabled = false`` or
``[plugins] disabled = ["ui_nicegui"]``) and aribot runs headless. The core never imports
NiceGUI; this plugin is fed only by bus events and acts through the call API."""

from __future__ import annotations

import logging
from typing import Any

from core import hookimpl
from core.settings import Rule, SettingsError, as_str, number

log = logging.getLogger("aribot.ui")


def check_access(cfg: Any) -> None:
    """On anything but loopback the dashboard needs a password (there is no default one)."""
    from plugins.ui_nicegui.server import is_loopback

    if not is_loopback(cfg.host) and not cfg.password:
        raise SettingsError(f"setting ui.password is empty while ui.host = {cfg.host!r} is reachable from other "
                            f"machines: set ARIBOT_UI__PASSWORD, or bind ui.host to 127.0.0.1")


@hookimpl
def register_settings_rules(register):
    register(Rule("ui.host", as_str, "an address to bind the dashboard to"))
    register(Rule("ui.port", number(int, 0, 65535), "a port 0..65535 (0 = any free port)"))
    register(Rule("ui.username", lambda v: as_str(v) or "aribot", "a user name"))
    register(Rule("ui.password", as_str, "a password (required off loopback)"))
    register(Rule("ui.refresh_hz", number(float, 0.5, 20), "redraws per second 0.5..20"))
    register(Rule("ui.ended_keep_s", number(float, 0, 3600), "seconds 0..3600"))


@hookimpl
async def startup(app):
    from plugins.ui_nicegui.live import LiveState
    from plugins.ui_nicegui.pages import Dashboard
    from plugins.ui_nicegui.server import DashboardServer

    cfg = app.settings.ui
    check_access(cfg)
    state = LiveState(keep_s=cfg.ended_keep_s)
    app.bus.subscribe(None, state.on_event, owner="ui_nicegui")
    dashboard = Dashboard(app, state)
    server = DashboardServer(cfg, dashboard.root)
    await server.start()
    app.extensions["ui"] = server
    app.extensions["live"] = state


@hookimpl
async def shutdown(app):
    server = app.extensions.pop("ui", None)
    if server is not None:
        await server.stop()
