"""The HTTP API off loopback: a token is required to start, and every route but /healthz needs it
(header, or ?token= for the /logs WebSocket); refusals are logged without the token."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from aribot.core.app import App, configure
from aribot.core.http import HttpApi
from aribot.core.settings import SettingsError, is_loopback_host

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
