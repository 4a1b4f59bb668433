"""The NiceGUI live-call dashboard, as a plugin: switch it off (``[ui] enabled = false``, or
``[plugins] disabled = ["ui_nicegui"]``, which also skips importing it) and aribot runs headless. The core never imports
NiceGUI; this plugin is fed only by bus events and acts through the call API."""

from __future__ import annotations

import logging
from typing import Any

from aribot import Setting, SettingsError, as_bool, as_str, hookimpl, number
from aribot.core.browser_guard import host_entries, origin_entries
from aribot.core.settings import TOKEN_ALLOWED, secret_token

log = logging.getLogger("aribot.ui")


def check_access(cfg: Any) -> None:
    """On anything but loopback the dashboard needs a password (there is no default one)."""
    from aribot.plugins.ui_nicegui.server import is_loopback

    if not is_loopback(cfg.host) and not cfg.password:
        raise SettingsError(f"setting ui.password is empty while ui.host = {cfg.host!r} is reachable from other "
                            f"machines: set ARIBOT_UI__PASSWORD, or bind ui.host to 127.0.0.1")


@hookimpl
def register_settings(register):
    register(Setting("ui.enabled", True, as_bool, "true or false",
                     "serve the dashboard (false = headless; [plugins] disabled = [\"ui_nicegui\"] also skips the import)"))
    register(Setting("ui.host", "127.0.0.1", as_str, "an address to bind the dashboard to",
                     "dashboard address; anything but loopback requires a password"))
    register(Setting("ui.port", 8080, number(int, 0, 65535), "a port 0..65535 (0 = any free port)",
                     "dashboard port; 0 picks a free one"))
    register(Setting("ui.username", "aribot", lambda v: as_str(v) or "aribot", "a user name",
                     "dashboard user name (HTTP Basic) when a password is set"))
    register(Setting("ui.password", "", secret_token, "a password: " + TOKEN_ALLOWED,
                     "secret: dashboard password, required when host is not loopback; at least 16 characters"))
    register(Setting("ui.allowed_hosts", [], host_entries, "a list of host names, name:port or \"*\"",
                     "Host names the dashboard answers besides loopback and ui.host, e.g. [\"dash.example.com\"] "
                     "behind a reverse proxy; others get 421 (DNS rebinding); \"*\" = any"))
    register(Setting("ui.allowed_origins", [], origin_entries, "a list of origins such as https://dash.example.com",
                     "browser origins besides the dashboard's own whose pages may use its socket (e.g. a TLS proxy's "
                     "https://dash.example.com); others get 403"))
    register(Setting("ui.refresh_hz", 4.0, number(float, 0.5, 20), "redraws per second 0.5..20",
                     "how often an open page redraws what changed (batched, so audio is not disturbed)"))
    register(Setting("ui.ended_keep_s", 30.0, number(float, 0, 3600), "seconds 0..3600",
                     "seconds an ended call stays among the live calls before only the history has it"))
    register(Setting("ui.listen_in", True, as_bool, "true or false",
                     "a call page's Listen button: the operator hears the live call in the browser (docs/security.md)"))


@hookimpl
def register_pages(register):
    """The built-in pages come through the same hook as a plugin's (docs/plugins.md)."""
    from aribot.core.pages import Page

    for page in (Page("/", "Overview", lambda board: board.home(), order=0),
                 Page("/call/{call_id}", "", lambda board, call_id: board.call_view(call_id), menu=False),
                 Page("/session", "Session", lambda board: board.session_page(), order=20),
                 Page("/plugins", "Plugins", lambda board: board.plugins_page(), order=30),
                 Page("/history", "History", lambda board: board.history_page(), order=40),
                 Page("/history/{call_id}", "", lambda board, call_id: board.history_view(call_id), menu=False),
                 Page("/setup", "Setup", lambda board: board.setup_page(), order=50)):
        register(page)


@hookimpl
async def startup(app):
    from aribot.plugins.ui_nicegui.live import LiveState
    from aribot.plugins.ui_nicegui.pages import Dashboard
    from aribot.plugins.ui_nicegui.server import DashboardServer

    cfg = app.settings.ui
    if not cfg.enabled:
        log.info("dashboard off ([ui] enabled = false): aribot runs headless")
        return
    check_access(cfg)
    state = LiveState(keep_s=cfg.ended_keep_s)
    app.bus.subscribe(None, state.on_event, owner="ui_nicegui")
    from aribot.plugins.ui_nicegui.overview import start_day_stats

    start_day_stats(app)  # app.extensions["day_stats"]; seeded from the history once it is open
    dashboard = Dashboard(app, state)
    server = DashboardServer(cfg, dashboard.root)
    await server.start()
    app.extensions["ui"] = server
    app.extensions["live"] = state


@hookimpl
async def shutdown(app):
    from aribot.plugins.ui_nicegui.overview import stop_day_stats

    stop_day_stats(app)
    server = app.extensions.pop("ui", None)
    if server is not None:
        await server.stop()
