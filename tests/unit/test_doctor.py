"""aribot doctor: every check's branches against real local servers (a fake ARI on aiohttp, the strict
fake Realtime server, real UDP sockets); the one-line texts name what to set and never a secret."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from aribot.core.app import configure
from aribot.core.cli import main
from aribot.core.doctor import NAMES, Check, check_ari, check_backend, check_rtp, render, run_checks
from aribot.core.settings import SettingsError, env_name
from aribot.sandbox.ports import free_tcp_port, free_udp_port_range
from tests.fake_realtime.server import FakeRealtimeServer

PASSWORD = "ari-Secret-pw-9"
API_KEY = "sk-test-GOOD-key-123"
BAD_KEY = "sk-test-WRONG-key-456"
SECRETS = (PASSWORD, API_KEY, BAD_KEY)


def assert_no_secrets(*checks: Check) -> None:
    text = render(list(checks)) + render(list(checks), as_json=True)
    for secret in SECRETS:
        assert secret not in text


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


@pytest.fixture
def make_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Any]:
    """``make({"ari.url": …})``: settings loaded the real way, from ARIBOT_* env vars."""
    monkeypatch.chdir(tmp_path)

    def make(values: dict[str, Any] | None = None) -> Any:
        low, high = free_udp_port_range(8)
        base = {"ari.password": PASSWORD, "openai.api_key": API_KEY, "rtp.port_min": low, "rtp.port_max": high,
                "ari.url": f"http://127.0.0.1:{free_tcp_port()}",
                "openai.url": f"ws://127.0.0.1:{free_tcp_port()}/v1/realtime"}
        for key, value in (base | (values or {})).items():
            monkeypatch.setenv(env_name(key), str(value))
        settings, plugins = configure()
        object.__setattr__(settings, "test_backends", plugins.backends())
        return settings
    return make


async def check_realtime(settings: Any, timeout: float = 5.0) -> Check:
    """The openai_realtime backend's doctor check, as ``aribot doctor`` runs it."""
    return await check_backend(settings, settings.test_backends, timeout=timeout)


class FakeAri:
    """Asterisk's ARI as far as the doctor asks: ping, applications/{name}, asterisk/info."""

    def __init__(self) -> None:
        self.ping_status = 200
        self.apps = {"aribot"}
        self.version = "22.10.1+dfsg+~cs6.17.60671434-1"
        self.delay = 0.0
        self.info_queries: list[str] = []

    def app(self, prefix: str = "") -> web.Application:
        routes = web.Application()
        routes.router.add_get(prefix + "/ari/asterisk/ping", self.ping)
        routes.router.add_get(prefix + "/ari/applications/{name}", self.application)
        routes.router.add_get(prefix + "/ari/asterisk/info", self.info)
        return routes

    def denied(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != aiohttp.encode_basic_auth("asterisk", PASSWORD):
            return web.json_response({"message": "Authentication required"}, status=401)
        return None

    async def ping(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.delay)
        if self.ping_status == 503:
            return web.json_response({"message": "Asterisk not booted"}, status=503)
        return self.denied(request) or web.json_response({"ping": "pong", "asterisk_id": "x"})

    async def application(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.apps:
            return web.json_response({"message": "Application not found"}, status=404)
        return self.denied(request) or web.json_response({"name": name, "channel_ids": []})

    async def info(self, request: web.Request) -> web.Response:
        self.info_queries.append(request.query_string)
        return self.denied(request) or web.json_response(
            {"build": {"os": "Linux", "machine": "x86_64"}, "system": {"version": self.version}})


StartAri = Callable[..., Awaitable[tuple[FakeAri, str]]]


@pytest.fixture
def fake_ari(aiohttp_server: Any) -> StartAri:
    async def start(prefix: str = "") -> tuple[FakeAri, str]:
        fake = FakeAri()
        server = await aiohttp_server(fake.app(prefix))
        return fake, f"http://127.0.0.1:{server.port}"
    return start


# --- the whole run --------------------------------------------------------------------------------

async def test_all_checks_pass_and_nothing_is_sent_to_the_realtime_api(make_settings, fake_ari: StartAri) -> None:
    fake, url = await fake_ari()
    async with FakeRealtimeServer(api_key=API_KEY) as realtime:
        settings = make_settings({"ari.url": url + "/ari", "openai.url": realtime.url})
        checks = await run_checks(settings, backends=settings.test_backends, timeout=2)
        conn = await realtime.wait_for_connection()
        await conn.wait_closed()  # the doctor hung up itself (the server's stop would count as "server")
    assert [c.name for c in checks] == list(NAMES)
    assert [c.status for c in checks] == ["OK"] * 6, render(checks)
    lines = render(checks).splitlines()
    assert lines[1] == f"OK   ari_login  Asterisk 22.10.1 at {url} as user 'asterisk'"
    assert lines[3] == "OK   asterisk_version  Asterisk 22.10.1+dfsg+~cs6.17.60671434-1 on Linux x86_64"
    assert "session.created" in lines[5] and realtime.url in lines[5]
    assert fake.info_queries == ["only=build,system"]  # Asterisk reads a repeated ?only= as its last value
    assert conn.received == [] and conn.session_updates == [] and conn.appends == []
    assert conn.closed_by == "client"
    assert_no_secrets(*checks)


async def test_invalid_settings_are_the_first_failure_and_the_rest_is_skipped() -> None:
    error = SettingsError("setting rtp.port_min = 'x' is not valid: expected an integer port 1024..65535")
    checks = await run_checks(error)
    assert checks[0].line() == ("FAIL settings  setting rtp.port_min = 'x' is not valid: expected an integer port "
                                "1024..65535: fix rtp.port_min (ARIBOT_RTP__PORT_MIN)")
    assert [c.status for c in checks[1:]] == ["SKIP"] * 5 and not any(c.ok for c in checks)


async def test_cli_doctor_exit_codes_and_json(make_settings, fake_ari: StartAri, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _fake, url = await fake_ari()
    async with FakeRealtimeServer(api_key=API_KEY) as realtime:
        make_settings({"ari.url": url, "openai.url": realtime.url})
        assert await asyncio.to_thread(main, ["doctor", "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert [(c["name"], c["status"]) for c in shown] == [(name, "OK") for name in NAMES]
        monkeypatch.setenv("ARIBOT_OPENAI__API_KEY", BAD_KEY)
        assert await asyncio.to_thread(main, ["doctor"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("FAIL backend  openai_realtime: invalid API key")
    assert "ARIBOT_OPENAI__API_KEY" in out
    monkeypatch.setenv("ARIBOT_RTP__PORT_MIN", "x")
    assert await asyncio.to_thread(main, ["doctor"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("FAIL settings  setting rtp.port_min = 'x'")
    assert "ARIBOT_RTP__PORT_MIN" in out and out.count("SKIP") == 5
    assert all(secret not in out for secret in SECRETS)


# --- ari_login, ari_app, asterisk_version -------------------------------------------------------------

async def test_ari_wrong_password(make_settings, fake_ari: StartAri) -> None:
    _fake, url = await fake_ari()
    checks = await check_ari(make_settings({"ari.url": url, "ari.password": "not-" + PASSWORD}))
    login = checks[0]
    assert login.status == "FAIL" and "HTTP 401" in login.detail and "wrong username or password" in login.detail
    assert "ari.password (ARIBOT_ARI__PASSWORD)" in login.hint and "ari.conf" in login.hint
    assert [c.status for c in checks[1:]] == ["SKIP", "SKIP"]
    assert "not-" + PASSWORD not in render(checks)
    assert_no_secrets(*checks)


async def test_ari_empty_password_is_named(make_settings, fake_ari: StartAri) -> None:
    _fake, url = await fake_ari()
    login = (await check_ari(make_settings({"ari.url": url, "ari.password": ""})))[0]
    assert "ari.password is empty" in login.detail


async def test_ari_wrong_url_or_prefix(make_settings, fake_ari: StartAri) -> None:
    _fake, url = await fake_ari(prefix="/pbx")
    login = (await check_ari(make_settings({"ari.url": url})))[0]
    assert login.status == "FAIL" and f"no ARI at {url}/ari (HTTP 404)" in login.detail
    assert "ari.url (ARIBOT_ARI__URL)" in login.hint and "http.conf" in login.hint and "prefix" in login.hint
    checks = await check_ari(make_settings({"ari.url": url + "/pbx"}))
    assert [c.status for c in checks] == ["OK", "OK", "OK"]


async def test_ari_not_booted(make_settings, fake_ari: StartAri) -> None:
    fake, url = await fake_ari()
    fake.ping_status = 503
    login = (await check_ari(make_settings({"ari.url": url})))[0]
    assert login.status == "FAIL" and "booting (HTTP 503)" in login.detail and "wait" in login.hint


async def test_ari_unreachable_refused_dns_timeout(make_settings, fake_ari: StartAri) -> None:
    port = free_tcp_port()
    login = (await check_ari(make_settings({"ari.url": f"http://127.0.0.1:{port}"}), timeout=2))[0]
    assert login.line().startswith(f"FAIL ari_login  connection refused by http://127.0.0.1:{port}: start Asterisk")
    assert "ARIBOT_ARI__URL" in login.hint
    login = (await check_ari(make_settings({"ari.url": "http://pbx.invalid:8088"}), timeout=2))[0]
    assert "cannot resolve host pbx.invalid" in login.detail and "ari.url" in login.hint
    fake, url = await fake_ari()
    fake.delay = 2
    login = (await check_ari(make_settings({"ari.url": url}), timeout=0.3))[0]
    assert login.status == "FAIL" and f"no answer from {url} within 0.3 s" in login.detail


async def test_ari_app_standalone_registered_or_not(make_settings, fake_ari: StartAri) -> None:
    fake, url = await fake_ari()
    checks = by_name(await check_ari(make_settings({"ari.url": url, "ari.app": "aribot"})))
    assert checks["ari_app"].status == "OK" and "app aribot is registered" in checks["ari_app"].detail
    checks = by_name(await check_ari(make_settings({"ari.url": url, "ari.app": "sales"})))
    assert checks["ari_app"].ok and checks["ari_app"].line() == (
        "WARN ari_app  no aribot is connected to app sales: Stasis(sales) calls fail until `aribot serve` runs")


async def test_ari_app_with_a_running_aribot(make_settings, fake_ari: StartAri) -> None:
    fake, url = await fake_ari()
    settings = make_settings({"ari.url": url, "ari.app": "aribot"})
    connected = SimpleNamespace(ari_connected=True, stream=SimpleNamespace(last_error=""))
    assert by_name(await check_ari(settings, app=connected))["ari_app"].line() == \
        "OK   ari_app  this aribot is connected to app aribot"
    down = SimpleNamespace(ari_connected=False, stream=SimpleNamespace(last_error="upgrade refused with HTTP 401"))
    check = by_name(await check_ari(settings, app=down))["ari_app"]
    assert check.status == "FAIL" and "HTTP 401" in check.detail and "Stasis(aribot) calls fail" in check.hint
    fake.apps = set()
    check = by_name(await check_ari(settings, app=connected))["ari_app"]
    assert check.status == "FAIL" and "does not list app aribot" in check.detail


@pytest.mark.parametrize("version, status, words", [
    ("22.10.1", "OK", []),
    ("23.0.0", "OK", []),
    ("20.16.0", "WARN", ["16.6", "tested on Asterisk 22"]),
    ("certified-18.9-cert4", "WARN", ["16.6"]),
    ("16.5.1", "FAIL", ["no ExternalMedia", "upgrade Asterisk"]),
    ("GIT-master-abcdef", "WARN", ["tested on Asterisk 22"]),
])
async def test_asterisk_version(make_settings, fake_ari: StartAri, version: str, status: str, words: list[str]) -> None:
    fake, url = await fake_ari()
    fake.version = version
    checks = by_name(await check_ari(make_settings({"ari.url": url})))
    check = checks["asterisk_version"]
    assert check.status == status and f"Asterisk {version}" in check.detail
    assert all(word in check.line() for word in words), check.line()
    assert f"Asterisk {version} at {url}" in checks["ari_login"].detail


# --- rtp_address ------------------------------------------------------------------------------------

@pytest.fixture
def busy_ports() -> Iterator[Callable[[list[int]], None]]:
    sockets: list[socket.socket] = []

    def occupy(ports: list[int]) -> None:
        for port in ports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", port))
            sockets.append(sock)
    yield occupy
    for sock in sockets:
        sock.close()


async def test_rtp_busy_range(make_settings, busy_ports) -> None:
    low, high = free_udp_port_range(4)
    settings = make_settings({"rtp.port_min": low, "rtp.port_max": high, "ari.url": "http://127.0.0.1:8088"})
    busy_ports([low, low + 1])
    check = await check_rtp(settings)
    assert check.line() == (f"OK   rtp_address  UDP 127.0.0.1:{low}-{high}: 2 of 4 ports free; "
                            "Asterisk sends RTP to 127.0.0.1")
    busy_ports([low + 2, high])
    check = await check_rtp(settings)
    assert check.status == "FAIL" and f"no free UDP port in 127.0.0.1:{low}-{high} (4 tried" in check.detail
    assert "rtp.port_min (ARIBOT_RTP__PORT_MIN)" in check.hint and "ARIBOT_RTP__PORT_MAX" in check.hint


async def test_rtp_large_range_is_sampled(make_settings) -> None:
    low, high = free_udp_port_range(200)
    check = await check_rtp(make_settings({"rtp.port_min": low, "rtp.port_max": high}))
    assert check.ok and "64 of 64 sampled ports free" in check.detail


async def test_rtp_unbindable_host(make_settings) -> None:
    check = await check_rtp(make_settings({"rtp.host": "192.0.2.1"}))
    assert check.status == "FAIL" and "cannot bind UDP on rtp.host 192.0.2.1" in check.detail
    assert "rtp.host (ARIBOT_RTP__HOST)" in check.hint


async def test_rtp_wildcard_is_not_an_address_for_asterisk(make_settings) -> None:
    check = await check_rtp(make_settings({"rtp.host": "0.0.0.0"}))
    assert check.status == "FAIL" and "send RTP to 0.0.0.0 (rtp.host)" in check.detail
    assert "rtp.advertise_host (ARIBOT_RTP__ADVERTISE_HOST)" in check.hint
    check = await check_rtp(make_settings({"rtp.host": "0.0.0.0", "rtp.advertise_host": "127.0.0.1"}))
    assert check.ok


async def test_rtp_loopback_while_asterisk_is_remote(make_settings) -> None:
    check = await check_rtp(make_settings({"ari.url": "http://192.0.2.10:8088", "rtp.host": "127.0.0.1"}))
    assert check.line() == ("FAIL rtp_address  Asterisk at 192.0.2.10 cannot reach 127.0.0.1: set rtp.advertise_host "
                            "(ARIBOT_RTP__ADVERTISE_HOST) to an address Asterisk can reach")
    check = await check_rtp(make_settings({"ari.url": "http://localhost:8088", "rtp.host": "127.0.0.1"}))
    assert check.ok


async def test_rtp_loopback_socket_but_remote_advertised(make_settings) -> None:
    check = await check_rtp(make_settings({"rtp.host": "127.0.0.1", "rtp.advertise_host": "192.0.2.7"}))
    assert check.status == "FAIL" and "only receives on loopback" in check.detail and "192.0.2.7" in check.detail
    assert "rtp.host (ARIBOT_RTP__HOST)" in check.hint


# --- realtime ---------------------------------------------------------------------------------------

async def test_realtime_good_and_bad_key(make_settings) -> None:
    async with FakeRealtimeServer(api_key=API_KEY) as realtime:
        check = await check_realtime(make_settings({"openai.url": realtime.url}))
        assert check.line() == (f"OK   backend  openai_realtime: {realtime.url}?model=gpt-realtime accepted the key "
                                "(session.created, model gpt-realtime)")
        check = await check_realtime(make_settings({"openai.url": realtime.url, "openai.api_key": BAD_KEY}))
        assert check.status == "FAIL" and check.detail.startswith("openai_realtime: invalid API key")
        assert realtime.url in check.detail
        assert check.hint == "set ARIBOT_OPENAI__API_KEY (or OPENAI_API_KEY) to a valid OpenAI API key"
        assert BAD_KEY not in check.line()
        assert [c.session_updates for c in realtime.connections] == [[], []]


async def test_realtime_azure(make_settings) -> None:
    async with FakeRealtimeServer(api_key=API_KEY) as realtime:
        check = await check_realtime(make_settings({"openai.url": realtime.azure_url, "openai.provider": "azure",
                                                    "openai.model": "my-deployment"}))
        assert check.ok and "model my-deployment" in check.detail
        assert realtime.connections[0].headers.get("api-key") == API_KEY
    check = await check_realtime(make_settings({"openai.provider": "azure", "openai.api_key": ""}))
    assert check.line() == ("FAIL backend  openai_realtime: openai.api_key is empty: set ARIBOT_OPENAI__API_KEY (or "
                            "OPENAI_API_KEY) "
                            "to the Azure OpenAI resource's key")


async def test_realtime_refused_upgrade(make_settings) -> None:
    async with FakeRealtimeServer(api_key=API_KEY) as realtime:
        realtime.refuse_status = 403
        check = await check_realtime(make_settings({"openai.url": realtime.url}))
        assert check.status == "FAIL" and "refused the connection (HTTP 403 on the upgrade)" in check.detail
        assert "Realtime access" in check.hint
        realtime.refuse_status = 401
        check = await check_realtime(make_settings({"openai.url": realtime.url}))
        assert "HTTP 401" in check.detail and "ARIBOT_OPENAI__API_KEY" in check.hint
        realtime.refuse_status = None
        check = await check_realtime(make_settings({"openai.url": realtime.url.replace("/v1/", "/v2/")}))
        assert "(HTTP 404)" in check.detail and "openai.url (ARIBOT_OPENAI__URL)" in check.hint


async def test_realtime_unreachable_and_timeout(make_settings) -> None:
    port = free_tcp_port()
    check = await check_realtime(make_settings({"openai.url": f"ws://127.0.0.1:{port}/v1/realtime"}), timeout=2)
    assert check.line() == (f"FAIL backend  openai_realtime: connection refused by ws://127.0.0.1:{port}/v1/realtime"
                            "?model=gpt-realtime: check openai.url (ARIBOT_OPENAI__URL)")
    check = await check_realtime(make_settings({"openai.url": "wss://realtime.invalid/v1/realtime"}), timeout=2)
    assert "cannot resolve host realtime.invalid" in check.detail
    async with FakeRealtimeServer(api_key=API_KEY) as realtime:
        realtime.accept_delay_s = 1.0
        check = await check_realtime(make_settings({"openai.url": realtime.url}), timeout=0.3)
        assert check.status == "FAIL" and "no answer from" in check.detail and "within 0.3 s" in check.detail


async def test_realtime_secrets_in_url_are_redacted(make_settings) -> None:
    async with FakeRealtimeServer(api_key=API_KEY) as realtime:
        check = await check_realtime(make_settings({"openai.url": realtime.azure_url + "?api-key=" + BAD_KEY,
                                                    "openai.provider": "azure"}))
        assert check.ok and "api-key=***" in check.detail
        assert_no_secrets(check)


def test_scrub_is_a_safety_net() -> None:
    from aribot.core.doctor import scrub
    check = scrub(Check("x", False, f"said {PASSWORD}", f"not {API_KEY}"), [PASSWORD, API_KEY])
    assert check.detail == "said ***" and check.hint == "not ***"
