"""The HTTP API off loopback: a token is required to start, and every route but /healthz needs it
(header, or ?token= for the /logs WebSocket); refusals are logged without the token. The routes are
enumerated from the running application (every built-in plugin and a folder plugin enabled), so a
route a plugin adds is checked without anyone listing it."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import AsyncIterator
from importlib.metadata import entry_points
from pathlib import Path

import aiohttp
import pytest
from aiohttp import hdrs, web
from nicegui.testing.general import nicegui_reset_globals

from aribot.core.app import App, configure
from aribot.core.http import OPEN_PATHS, HttpApi
from aribot.core.plugins import GROUP, OWN_DIST
from aribot.core.settings import SettingsError, is_loopback_host
from aribot.sandbox.ports import free_tcp_port
from tests.lab.http import raw_status_line

TOKEN = "s3cret-token-value"


def settings_file(tmp_path: Path, http: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(f"[http]\n{http}\n[ui]\nenabled = false\n[history]\nenabled = false\n")
    return path


def test_off_loopback_without_a_token_does_not_start(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"http.host = '0.0.0.0' is not loopback.*http.token"):
        configure(settings_file(tmp_path, 'host = "0.0.0.0"'))
    settings, _ = configure(settings_file(tmp_path, 'host = "127.0.0.1"'))  # loopback: no token needed
    assert settings.http.token == ""


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("127.3.2.1", True), ("::1", True),
                                                 ("[::1]", True), ("localhost", True), ("0.0.0.0", False),
                                                 ("10.0.0.5", False), ("my-host", False)])
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[HttpApi]:
    settings, plugins = configure(settings_file(tmp_path, f'host = "0.0.0.0"\nport = 0\ntoken = "{TOKEN}"'))
    app = App(settings, plugins)
    http = HttpApi(app)
    await http.start()
    try:
        yield http
    finally:
        await http.stop()
        await app.ari.close()


async def test_every_route_but_healthz_needs_the_token(api: HttpApi, caplog: pytest.LogCaptureFixture) -> None:
    base = f"http://127.0.0.1:{api.port}"
    async with aiohttp.ClientSession() as http:
        for path in ("/calls", "/tools"):
            async with http.get(base + path) as resp:
                assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
            async with http.get(base + path, headers={"Authorization": "Bearer wrong"}) as resp:
                assert resp.status == 401
            async with http.get(base + path, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                assert resp.status == 200
        async with http.get(base + "/healthz") as resp:
            assert resp.status == 503 and (await resp.json())["ari"] == "disconnected"  # open, and honest
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(base + "/logs")
        assert refused.value.status == 401
        async with http.ws_connect(base + f"/logs?token={TOKEN}") as ws:
            assert not ws.closed
    refusals = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "refused" in r.getMessage()]
    assert len(refusals) == 5 and all("/logs" in m or "/calls" in m or "/tools" in m for m in refusals)
    assert not any(TOKEN in r.getMessage() for r in caplog.records)


async def test_an_undecodable_authorization_header_is_refused_not_an_error(api: HttpApi) -> None:
    request = b"GET /calls HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n"
    assert (await raw_status_line(f"http://127.0.0.1:{api.port}", request)).startswith(b"HTTP/1.1 401 ")


# --- every route of the running application ---------------------------------------------------------

PUBLIC = {  # path -> why it answers without the token; core.http.OPEN_PATHS must hold exactly these
    "/healthz": "the liveness probe of a load balancer, systemd or Kubernetes cannot send a secret; it tells "
                "only whether ARI is connected (and why not), the Stasis app name and how many calls are live",
}
PLUGIN_ROUTE = "/test-plugin/secret"
PLUGIN_SECRET = {"secret": "what only a token holder may read"}
TOKENLESS_PLUGIN = f'''"""A folder plugin that adds a route and does nothing about tokens."""
from aiohttp import web
from aribot import hookimpl


async def secret(request):
    return web.json_response({PLUGIN_SECRET!r})


@hookimpl
def register_routes(app):
    app.router.add_route("*", {PLUGIN_ROUTE!r}, secret)
'''
WRONG_TOKENS = {"wrong token": {"Authorization": "Bearer wrong"},
                "token prefix": {"Authorization": f"Bearer {TOKEN[:-1]}"},
                "token plus a character": {"Authorization": f"Bearer {TOKEN}x"},
                "token with another scheme": {"Authorization": f"Basic {TOKEN}"}}
ANY_METHOD = ("GET", "POST", "PUT", "PATCH", "DELETE")


@pytest.fixture
async def full_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[App]:
    """A started App, its HTTP API behind TOKEN, with every built-in plugin enabled and started (the
    dashboard too) and a folder plugin that adds a route of its own."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "tokenless_routes.py").write_text(TOKENLESS_PLUGIN)
    path = tmp_path / "settings.toml"
    path.write_text(f'[ari]\nurl = "http://127.0.0.1:1"\n'  # closed: the API still serves, /healthz says 503
                    f'[http]\nhost = "127.0.0.1"\nport = 0\ntoken = "{TOKEN}"\n'
                    f'[ui]\nenabled = true\nhost = "127.0.0.1"\nport = {free_tcp_port()}\n'
                    f'[history]\npath = "{tmp_path / "history.sqlite3"}"\n[plugins]\npaths = ["{folder}"]\n')
    settings, plugins = configure(path)
    builtin = {ep.name for ep in entry_points(group=GROUP) if ep.dist and ep.dist.name == OWN_DIST}
    enabled = {info.name for info in plugins.infos() if info.enabled}
    assert builtin and builtin | {"tokenless_routes"} <= enabled, builtin - enabled
    with nicegui_reset_globals():  # NiceGUI's app is process-global: a fresh one for this dashboard
        app = App(settings, plugins)
        await app.start()
        try:
            assert {"ui", "metrics"} <= set(app.extensions), "a plugin did not start"
            yield app
        finally:
            await app.stop()
            sys.modules.pop("aribot_folder.tokenless_routes", None)


def route_probes(router: web.UrlDispatcher) -> list[tuple[str, str]]:
    """(method, concrete path) for every route of the application, as its router holds them."""
    probes: list[tuple[str, str]] = []
    for route in router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        if "path" in info:
            path = info["path"]
        elif "formatter" in info:
            path = re.sub(r"\{[^}]+\}", "probe", info["formatter"])
            assert info["pattern"].fullmatch(path), f"{path} does not reach {info['formatter']}"
        else:
            pytest.fail(f"{route!r}: teach this test to build a URL for a {type(route.resource).__name__}")
        probes += [(method, path) for method in (ANY_METHOD if route.method == hdrs.METH_ANY else (route.method,))]
    return probes


async def answer(http: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str]) -> aiohttp.ClientResponse:
    async with http.request(method, url, headers=headers, allow_redirects=False) as resp:
        await resp.read()
        return resp


async def http_json(http: aiohttp.ClientSession, url: str) -> dict[str, object]:
    async with http.get(url) as resp:
        return await resp.json()


async def test_every_route_of_the_running_api_needs_the_token(full_app: App, caplog: pytest.LogCaptureFixture) -> None:
    assert set(PUBLIC) == OPEN_PATHS, "a path opened or closed in core.http: justify it in PUBLIC"
    probes = route_probes(full_app.http.web.router)
    paths = {path for _method, path in probes}
    assert {"/healthz", "/calls", "/tools", "/logs", "/history", "/history/probe", "/metrics", PLUGIN_ROUTE} <= paths
    base = f"http://127.0.0.1:{full_app.http.port}"
    async with aiohttp.ClientSession() as http:
        for method, path in probes:
            where = f"{method} {path}"
            without = await answer(http, method, base + path, {})
            if path in PUBLIC:
                assert without.status not in (401, 403), where
                if method == "GET":  # and it tells no more than PUBLIC says
                    assert set(await http_json(http, base + path)) <= {"ari", "app", "calls", "draining", "error"}
                continue
            assert without.status == 401 and without.headers["WWW-Authenticate"].startswith("Bearer"), where
            for why, headers in WRONG_TOKENS.items():
                assert (await answer(http, method, base + path, headers)).status == 401, f"{where} with {why}"
            assert (await answer(http, method, base + path + "?token=wrong", {})).status == 401, f"{where} ?token=wrong"
            right = await answer(http, method, base + path, {"Authorization": f"Bearer {TOKEN}"})
            assert right.status not in (401, 403), f"{where} with the token: {right.status}"
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refusals and not any(TOKEN in r.getMessage() for r in caplog.records)


async def test_no_websocket_handshake_without_the_token(full_app: App) -> None:
    """Tried on every GET route (a plugin's WebSocket is found too): no token or a wrong one, and
    the handshake itself is refused with 401; with the token, /logs opens and says hello."""
    base = f"ws://127.0.0.1:{full_app.http.port}"
    opened: list[str] = []
    async with aiohttp.ClientSession() as http:
        for method, path in route_probes(full_app.http.web.router):
            if method != "GET" or path in PUBLIC:
                continue
            for why, url, headers in (("no token", path, {}), ("?token=wrong", path + "?token=wrong", {}),
                                      *((why, path, headers) for why, headers in WRONG_TOKENS.items())):
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    async with http.ws_connect(base + url, headers=headers):
                        pass
                assert refused.value.status == 401, f"WebSocket {path} with {why}: {refused.value.status}"
            try:
                async with http.ws_connect(base + path, headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
                    opened.append(path)
                    if path == "/logs":
                        assert (await ws.receive_json(timeout=5))["type"] == "hello"
            except aiohttp.WSServerHandshakeError as exc:  # not a WebSocket route, but not for want of a token
                assert exc.status not in (401, 403), f"WebSocket {path} with the token: {exc.status}"
    assert "/logs" in opened


async def test_a_route_a_plugin_adds_is_guarded_without_the_plugin_doing_anything(full_app: App) -> None:
    routes = {(route.method, route.resource.canonical) for route in full_app.http.web.router.routes()
              if route.resource is not None}
    assert (hdrs.METH_ANY, PLUGIN_ROUTE) in routes  # added through register_routes by the real plugin manager
    url = f"http://127.0.0.1:{full_app.http.port}{PLUGIN_ROUTE}"
    async with aiohttp.ClientSession() as http:
        for method in ANY_METHOD:
            for headers in ({}, *WRONG_TOKENS.values()):
                async with http.request(method, url, headers=headers) as resp:
                    assert resp.status == 401 and PLUGIN_SECRET["secret"] not in await resp.text(), (method, headers)
            async with http.request(method, url, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                assert resp.status == 200 and await resp.json() == PLUGIN_SECRET, method
