"""The HTTP API against browsers (a real aiohttp server, a real client): a page of another site
cannot read /logs (cross-site WebSocket hijacking), a DNS-rebinding page (a foreign ``Host``) gets
nothing, ``?token=`` works only on /logs and is never logged, and a malformed Authorization header
is a 401, never a 500. Each refusal is one log line that says why."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aribot.core import events as ev
from aribot.core.app import App, configure
from aribot.core.http import HttpApi, bearer_token
from tests.lab.http import raw_status_line

TOKEN = "s3cret-token-value-0123"
SECRET_WORDS = "my PIN is 4711"


async def start_api(tmp_path: Path, http: str) -> tuple[App, HttpApi]:
    path = tmp_path / "settings.toml"
    path.write_text(f'[http]\nport = 0\n{http}\n[ui]\nenabled = false\n[history]\nenabled = false\n')
    settings, plugins = configure(path)
    app = App(settings, plugins)
    api = HttpApi(app)
    await api.start()
    return app, api


@pytest.fixture
async def loopback_api(tmp_path: Path) -> AsyncIterator[tuple[App, HttpApi]]:
    """The default install: the API on loopback, no token."""
    app, api = await start_api(tmp_path, 'host = "127.0.0.1"')
    try:
        yield app, api
    finally:
        await api.stop()
        await app.ari.close()


@pytest.fixture
async def token_api(tmp_path: Path) -> AsyncIterator[tuple[App, HttpApi]]:
    app, api = await start_api(tmp_path, f'host = "127.0.0.1"\ntoken = "{TOKEN}"')
    try:
        yield app, api
    finally:
        await api.stop()
        await app.ari.close()


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "aribot.http" and "refused" in r.getMessage()]


async def test_a_page_of_another_site_cannot_read_logs(loopback_api: tuple[App, HttpApi],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """The issue's probe: ``Origin: http://evil.example``, no token, on a default install."""
    app, api = loopback_api
    url = f"http://127.0.0.1:{api.port}/logs"
    async with aiohttp.ClientSession() as http:
        for origin in ("http://evil.example", "null", f"http://localhost:{api.port}", "http://127.0.0.1:3000"):
            caplog.clear()
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                async with http.ws_connect(url, origin=origin):
                    pass
            assert refused.value.status == 403, origin
            lines = refusals(caplog)
            assert len(lines) == 1 and "GET /logs" in lines[0] and "(403)" in lines[0] and "Origin" in lines[0], lines
            assert "http.allowed_origins" in lines[0]
        # the dashboard's own origin (a page served by this API's host:port) and a client that is no browser
        for origin in (f"http://127.0.0.1:{api.port}", None):
            async with http.ws_connect(url, origin=origin) as ws:
                assert (await ws.receive_json(timeout=5))["type"] == "hello"
                app.bus.emit(None, ev.Transcript(call_id="c1", role="caller", item_id="i1", text=SECRET_WORDS))
                assert (await ws.receive_json(timeout=5))["text"] == SECRET_WORDS


async def test_a_foreign_host_gets_nothing(loopback_api: tuple[App, HttpApi], caplog: pytest.LogCaptureFixture) -> None:
    """A DNS-rebinding page reaches 127.0.0.1 under its own name: every route but /healthz says 421."""
    _app, api = loopback_api
    base = f"http://127.0.0.1:{api.port}"
    async with aiohttp.ClientSession() as http:
        for host in ("evil.example", f"evil.example:{api.port}", f"127.0.0.1.nip.io:{api.port}"):
            for path in ("/calls", "/tools", "/no-such-route"):
                caplog.clear()
                async with http.get(base + path, headers={"Host": host}) as resp:
                    assert resp.status == 421, (host, path)
                    assert "http.allowed_hosts" in (await resp.json())["error"]
                assert len(refusals(caplog)) == 1 and "Host" in refusals(caplog)[0]
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                async with http.ws_connect(base + "/logs", headers={"Host": host}):
                    pass
            assert refused.value.status == 421
        async with http.get(base + "/healthz", headers={"Host": "evil.example"}) as resp:
            assert resp.status == 503  # open by design: a probe's Host is whatever its network calls us
        for host in (f"127.0.0.1:{api.port}", f"localhost:{api.port}", "localhost"):
            async with http.get(base + "/calls", headers={"Host": host}) as resp:
                assert resp.status == 200, host


async def test_listed_hosts_and_origins_pass(tmp_path: Path) -> None:
    app, api = await start_api(tmp_path, 'host = "127.0.0.1"\nallowed_hosts = ["aribot.example.com"]\n'
                                         'allowed_origins = ["https://dash.example.com"]')
    try:
        base = f"http://127.0.0.1:{api.port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/calls", headers={"Host": "aribot.example.com"}) as resp:
                assert resp.status == 200
            async with http.ws_connect(base + "/logs", origin="https://dash.example.com",
                                       headers={"Host": "aribot.example.com"}) as ws:
                assert (await ws.receive_json(timeout=5))["type"] == "hello"
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                async with http.ws_connect(base + "/logs", origin="https://evil.example"):
                    pass
            assert refused.value.status == 403
    finally:
        await api.stop()
        await app.ari.close()


async def test_a_query_token_only_on_logs_and_never_logged(token_api: tuple[App, HttpApi],
                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, aiohttp's access and server logs too
    _app, api = token_api
    base = f"http://127.0.0.1:{api.port}"
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as http:
        for path in ("/calls", "/tools", "/no-such-route"):
            for headers in ({}, bearer):  # refused even beside a right header: the URL already leaked it
                async with http.get(f"{base}{path}?token={TOKEN}", headers=headers) as resp:
                    assert resp.status == 401, (path, headers)
                    assert "?token= is accepted only by the /logs WebSocket" in (await resp.json())["error"]
        async with http.get(base + "/calls", headers=bearer) as resp:
            assert resp.status == 200
        async with http.ws_connect(f"{base}/logs?token={TOKEN}") as ws:      # where a header cannot be sent
            assert (await ws.receive_json(timeout=5))["type"] == "hello"
        async with http.ws_connect(f"{base}/logs?token={TOKEN}", origin=base) as ws:  # a browser on our origin
            assert (await ws.receive_json(timeout=5))["type"] == "hello"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:        # the token does not excuse a page
            async with http.ws_connect(f"{base}/logs?token={TOKEN}", origin="http://evil.example"):
                pass
        assert refused.value.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            async with http.ws_connect(f"{base}/logs?token=wrong-{TOKEN}"):
                pass
        assert refused.value.status == 401
    lines = refusals(caplog)
    assert sum("a token in the query string" in line for line in lines) == 6
    assert caplog.records and not any(TOKEN in r.getMessage() or TOKEN in str(r.args) for r in caplog.records)


MALFORMED = [b"Authorization: Bearer \xff\xfe", b"Authorization: \xff\xfe\xfd",
             b"Authorization: Basic \xc3\xa9t\xc3\xa9",
             b"Authorization: Basic !!!not-base64", b"Authorization: Bearer", b"Authorization: ",
             b"Authorization: Bearer " + b"a" * 8000, b"Authorization: bearer\t  x  ",
             b"Authorization: Digest username=\"x\""]


@pytest.mark.parametrize("line", MALFORMED)
async def test_a_malformed_authorization_header_is_401_not_500(token_api: tuple[App, HttpApi], line: bytes,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    _app, api = token_api
    request = b"GET /calls HTTP/1.1\r\nHost: 127.0.0.1\r\n" + line + b"\r\nConnection: close\r\n\r\n"
    assert (await raw_status_line(f"http://127.0.0.1:{api.port}", request)).startswith(b"HTTP/1.1 401 ")
    assert not any(r.exc_info for r in caplog.records), "a traceback was logged"


@given(value=st.text(max_size=300))
def test_no_authorization_value_makes_the_token_parser_raise(value: str) -> None:
    token = bearer_token(value)
    assert token is None or isinstance(token, str)
