"""The dashboard against browsers, on the real NiceGUI server (uvicorn on a real socket): a
DNS-rebinding page (a foreign ``Host``) gets 421 on every route, before any password prompt; a page
of another site can neither open the page's socket.io connection (WebSocket or polling) nor post
to it (403); the dashboard's own origin works; a malformed Basic-auth header is a 401; and a
socket acts only on the page it was opened for."""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aribot.core.app import App
from aribot.plugins.ui_nicegui.server import BasicAuth, BrowserCheck, basic_credentials, bind_page_messages
from tests.lab.http import raw_status_line
from tests.unit.dashboard_server import SOCKET_IO, start_dashboard

PASSWORD = "dashboard-s3cret-0123"


@pytest.fixture
async def dashboard(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[tuple[str, App]]:
    """A default dashboard: loopback, no password."""
    async for started in start_dashboard(monkeypatch, tmp_path):
        yield started


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "aribot.ui" and "refused" in r.getMessage()]


async def test_a_foreign_host_gets_421_on_every_route(dashboard: tuple[str, App],
                                                      caplog: pytest.LogCaptureFixture) -> None:
    base, app = dashboard
    port = base.rsplit(":", 1)[1]
    served: Any = app.extensions["ui"].server.config.app
    assert isinstance(served, BrowserCheck)  # the outermost layer: before the password and NiceGUI
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "/") as resp:
            page = await resp.text()
            assert resp.status == 200 and "<title>aribot</title>" in page
        assets = sorted({url for url in re.findall(r"""["'](/_nicegui/[^"'\s]+)["']""", page) if not url.endswith("/")})
        assert assets
        for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.nip.io:{port}"):
            for path in ("/", "/call/x", "/plugins", SOCKET_IO + "&transport=polling", assets[0], "/no-such-page"):
                caplog.clear()
                async with http.get(base + path, headers={"Host": host}, allow_redirects=False) as resp:
                    body = await resp.text()
                    assert resp.status == 421, (host, path, resp.status)
                    assert "aribot" in body and "<html" not in body.lower() and "sid" not in body
                lines = refusals(caplog)
                assert len(lines) == 1 and f"GET {path.split('?')[0]}" in lines[0] and "(421)" in lines[0], lines
                assert "ui.allowed_hosts" in lines[0]
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                async with http.ws_connect(base + SOCKET_IO + "&transport=websocket", headers={"Host": host}):
                    pass
            assert refused.value.status == 421
        for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
            async with http.get(base + "/", headers={"Host": host}) as resp:
                assert resp.status == 200


async def test_another_sites_page_cannot_use_the_socket(dashboard: tuple[str, App],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """Every dashboard action travels on this socket: another origin is refused on the WebSocket,
    on engine.io's polling (NiceGUI allows any origin there) and on a POST (CSRF)."""
    base, _app = dashboard
    port = base.rsplit(":", 1)[1]
    async with aiohttp.ClientSession() as http:
        for origin in ("http://evil.example", "null", f"http://localhost:{port}", "https://127.0.0.1:" + port):
            caplog.clear()
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                async with http.ws_connect(base + SOCKET_IO + "&transport=websocket", origin=origin):
                    pass
            assert refused.value.status == 403, origin
            async with http.get(base + SOCKET_IO + "&transport=polling", headers={"Origin": origin}) as resp:
                assert resp.status == 403 and "sid" not in await resp.text()
            async with http.post(base + SOCKET_IO + "&transport=polling&sid=x", data="40",
                                 headers={"Origin": origin, "Content-Type": "text/plain"}) as resp:
                assert resp.status == 403
            lines = refusals(caplog)
            assert len(lines) == 3 and all("(403)" in line and "ui.allowed_origins" in line for line in lines), lines
        async with http.ws_connect(base + SOCKET_IO + "&transport=websocket", origin=base) as ws:  # its own page
            opened = await ws.receive_str(timeout=5)
            assert opened.startswith("0{") and '"sid"' in opened
        async with http.get(base + SOCKET_IO + "&transport=polling", headers={"Origin": base}) as resp:
            assert resp.status == 200 and '"sid"' in await resp.text()


async def test_behind_a_tls_proxy_the_listed_name_and_origin_pass(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    """A TLS proxy on this machine passes ``Host`` and ``X-Forwarded-Proto`` (uvicorn trusts the
    latter from 127.0.0.1): the public name must be listed, and then the page's https origin is the
    dashboard's own; a proxy elsewhere lists its origin in ui.allowed_origins."""
    async for base, _app in start_dashboard(monkeypatch, tmp_path, allowed_hosts="dash.example.com",
                                            allowed_origins="https://dash-proxy.example.com"):
        socket = base + SOCKET_IO + "&transport=websocket"
        proxied = {"Host": "dash.example.com", "X-Forwarded-Proto": "https"}
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/", headers=proxied) as resp:
                assert resp.status == 200
            async with http.ws_connect(socket, headers=proxied, origin="https://dash.example.com") as ws:
                assert (await ws.receive_str(timeout=5)).startswith("0{")
            async with http.ws_connect(socket, headers={"Host": "dash.example.com"},
                                       origin="https://dash-proxy.example.com") as ws:
                assert (await ws.receive_str(timeout=5)).startswith("0{")
            for headers, origin in (({"Host": "dash.example.com"}, "https://dash.example.com"),  # http is not https
                                    (proxied, "https://evil.example")):
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    async with http.ws_connect(socket, headers=headers, origin=origin):
                        pass
                assert refused.value.status == 403, origin


@pytest.fixture
async def with_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[tuple[str, App]]:
    async for started in start_dashboard(monkeypatch, tmp_path, password=PASSWORD):
        yield started


async def test_a_rebinding_page_gets_no_password_prompt(with_password: tuple[str, App]) -> None:
    """The Host rule comes first: a page under a foreign name is refused before the Basic-auth
    challenge, so its browser never asks the user for the dashboard password."""
    base, _app = with_password
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "/", headers={"Host": "evil.example"}) as resp:
            assert resp.status == 421 and "WWW-Authenticate" not in resp.headers
        async with http.get(base + "/") as resp:
            assert resp.status == 401 and resp.headers["WWW-Authenticate"] == 'Basic realm="aribot"'
        right = {"Authorization": "Basic " + base64.b64encode(f"aribot:{PASSWORD}".encode()).decode()}
        async with http.get(base + "/", headers=right) as resp:
            assert resp.status == 200
        lower = {"Authorization": right["Authorization"].replace("Basic", "basic")}
        async with http.get(base + "/", headers=lower) as resp:
            assert resp.status == 200  # the scheme is case-insensitive (RFC 9110)


MALFORMED = [b"Basic \xff\xfe", b"Basic \xc3\xa9t\xc3\xa9", b"Basic !!!not-base64",
             b"Basic " + base64.b64encode(b"\xff:\xfe"),
             b"Basic " + base64.b64encode("aribot:dashboard-s3cret-0123é".encode()), b"Basic", b"", b"\xff\xfe\xfd",
             b"Basic " + base64.b64encode(PASSWORD.encode()), b"Bearer " + PASSWORD.encode(), b"Basic =",
             b"Basic " + b"A" * 8000]


@pytest.mark.parametrize("value", MALFORMED)
async def test_a_malformed_basic_auth_header_is_401_not_500(with_password: tuple[str, App], value: bytes,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    base, _app = with_password
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + value + b"\r\nConnection: close\r\n\r\n"
    assert (await raw_status_line(base, request)).startswith(b"HTTP/1.1 401 ")
    assert not any(r.exc_info for r in caplog.records), "a traceback was logged"


class FakeSocketServer:
    """What bind_page_messages uses of python-socketio's server: its handlers and its rooms."""

    def __init__(self) -> None:
        self.handled: list[tuple[str, Any]] = []
        self.handlers: dict[str, dict[str, Any]] = {"/": {"event": self.on_event, "log": self.on_log}}
        self.room_of = {"sid-a": ["sid-a", "page-a"], "sid-b": ["sid-b", "page-b"]}

    def on_event(self, sid: str, msg: Any) -> None:
        self.handled.append((sid, msg))

    async def on_log(self, sid: str, msg: Any) -> None:
        self.handled.append((sid, msg))

    def rooms(self, sid: str, namespace: str | None = None) -> list[str]:
        return self.room_of.get(sid, [])


async def test_a_socket_acts_only_on_the_page_it_was_opened_for(caplog: pytest.LogCaptureFixture) -> None:
    """NiceGUI dispatches a click to whichever page the message names; bound, a socket that
    handshook for page A cannot click page B's "Hang up"."""
    sio = FakeSocketServer()
    bind_page_messages(sio)
    bind_page_messages(sio)  # idempotent: a second dashboard start in the same process wraps nothing twice
    event, log_message = sio.handlers["/"]["event"], sio.handlers["/"]["log"]
    event("sid-a", {"client_id": "page-a", "id": 5})
    await log_message("sid-a", {"client_id": "page-a"})
    assert len(sio.handled) == 2
    with caplog.at_level(logging.WARNING, logger="aribot.ui"):
        for sid, msg in (("sid-a", {"client_id": "page-b", "id": 5}), ("sid-x", {"client_id": "page-a"}),
                         ("sid-a", {"id": 5}), ("sid-a", "not a dict"), ("sid-a", {"client_id": ["page-a"]})):
            event(sid, msg)
        await log_message("sid-b", {"client_id": "page-a"})
    assert len(sio.handled) == 2
    assert len(refusals(caplog)) == 6


async def test_the_running_dashboard_binds_its_socket_messages(dashboard: tuple[str, App]) -> None:
    from nicegui import core

    for name in ("event", "javascript_response", "ack", "log"):
        assert getattr(core.sio.handlers["/"][name], "bound_to_page", False), name


@given(value=st.binary(max_size=300) | st.builds(lambda b: b"Basic " + base64.b64encode(b), st.binary(max_size=100)))
def test_no_authorization_value_makes_basic_auth_raise(value: bytes) -> None:
    credentials = basic_credentials(value)
    assert credentials is None or all(isinstance(part, bytes) for part in credentials)
    scope = {"type": "http", "headers": [(b"authorization", value)]}
    assert BasicAuth(None, "aribot", PASSWORD).authorized(scope) is False  # type: ignore[arg-type]
