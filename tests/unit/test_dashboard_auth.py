"""The dashboard's password in front of the real NiceGUI server: a started App serves the dashboard
(uvicorn on a real socket, ``[ui] password`` set) and a plain HTTP client checks that the page,
NiceGUI's static files, its socket.io endpoint (polling and WebSocket) and every route the server
has refuse a client without the password or with a wrong one, and serve one with the right one."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from starlette.routing import BaseRoute, Mount

from aribot.core.app import App
from tests.lab.http import raw_status_line
from tests.unit.dashboard_server import SOCKET_IO, start_dashboard

USER, PASSWORD = "aribot", "dashboard-s3cret"
CHALLENGE = 'Basic realm="aribot"'


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


RIGHT = basic(USER, PASSWORD)
REFUSED = {"no credentials": {}, "wrong password": basic(USER, "not-the-password"),
           "wrong user": basic("intruder", PASSWORD),
           "password as a bearer token": {"Authorization": f"Bearer {PASSWORD}"},
           "password alone": {"Authorization": "Basic " + base64.b64encode(PASSWORD.encode()).decode()}}


@pytest.fixture
async def dashboard(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[tuple[str, App]]:
    """(base URL, App) of a started App whose dashboard needs the password."""
    async for started in start_dashboard(monkeypatch, tmp_path, username=USER, password=PASSWORD):
        yield started


async def assert_guarded(http: aiohttp.ClientSession, url: str) -> bytes:
    """Every refused credential gets 401 with the Basic challenge and nothing of the page; returns
    what the right password gets (which must be a 200)."""
    for why, headers in REFUSED.items():
        async with http.get(url, headers=headers, allow_redirects=False) as resp:
            body = await resp.read()
            assert resp.status == 401, f"{url} with {why}: {resp.status}"
            assert resp.headers.get("WWW-Authenticate") == CHALLENGE, f"{url} with {why}: {resp.headers}"
            assert body == b"aribot dashboard: password required\n", f"{url} with {why} leaked {body[:80]!r}"
    async with http.get(url, headers=RIGHT, allow_redirects=False) as resp:
        assert resp.status == 200, f"{url} with the password: {resp.status}"
        assert "WWW-Authenticate" not in resp.headers
        return await resp.read()


async def test_page_static_files_and_socket_io_polling_need_the_password(dashboard: tuple[str, App]) -> None:
    base, _app = dashboard
    async with aiohttp.ClientSession() as http:
        page = (await assert_guarded(http, base + "/")).decode()
        assert "<title>aribot</title>" in page
        # the files this very page loads: NiceGUI's static files, its components and ES modules
        assets = {url for url in re.findall(r"""["'](/_nicegui/[^"'\s]+)["']""", page) if not url.endswith("/")}
        assert any("/static/" in url for url in assets) and any("/components/" in url for url in assets), assets
        for url in sorted(assets):
            await assert_guarded(http, base + url)
        opened = (await assert_guarded(http, base + SOCKET_IO + "&transport=polling")).decode()
        assert opened.startswith("0{") and '"sid"' in opened  # engine.io's open packet: the real endpoint


async def test_socket_io_websocket_upgrade_needs_the_password(dashboard: tuple[str, App]) -> None:
    base, _app = dashboard
    url = base + SOCKET_IO + "&transport=websocket"
    async with aiohttp.ClientSession() as http:
        for why, headers in REFUSED.items():
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                async with http.ws_connect(url, headers=headers):
                    pass
            assert refused.value.status in (401, 403), f"WebSocket with {why}: {refused.value.status}"
        async with http.ws_connect(url, headers=RIGHT) as ws:
            opened = await ws.receive_str(timeout=5)
            assert opened.startswith("0{") and '"sid"' in opened


def route_paths(routes: list[BaseRoute], prefix: str = "") -> Iterator[str]:
    """A concrete path for every route and mount of a Starlette app, mounts followed."""
    for route in routes:
        path = prefix + getattr(route, "path", "")
        if isinstance(route, Mount):
            yield path + "/"
            yield from route_paths(route.routes, path)
        else:
            yield re.sub(r"\{[^}]+\}", "probe", path)


async def test_every_route_of_the_dashboard_server_needs_the_password(dashboard: tuple[str, App]) -> None:
    """Not only NiceGUI's pages: also FastAPI's /docs and /openapi.json, 404s and whatever a NiceGUI
    update adds; every one is enumerated from the served application."""
    base, app = dashboard
    served: Any = app.extensions["ui"].server.config.app   # what uvicorn serves: the middlewares, then FastAPI
    while not hasattr(served, "routes"):
        served = served.app
    paths = set(route_paths(served.routes)) | {"/no-such-page", "/docs", "/openapi.json"}
    assert {"/", "/_nicegui_ws/", "/openapi.json"} <= paths and len(paths) > 10, paths
    async with aiohttp.ClientSession() as http:
        for path in sorted(paths):
            for method in ("GET", "POST", "HEAD"):
                async with http.request(method, base + path, allow_redirects=False) as resp:
                    assert resp.status == 401, f"{method} {path}: {resp.status}"
                    assert resp.headers.get("WWW-Authenticate") == CHALLENGE


async def test_an_undecodable_authorization_header_is_refused_not_an_error(dashboard: tuple[str, App]) -> None:
    base, _app = dashboard
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic \xff\xfe\r\nConnection: close\r\n\r\n"
    assert (await raw_status_line(base, request)).startswith(b"HTTP/1.1 401 ")
