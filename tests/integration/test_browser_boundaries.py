"""Browsers against aribot during a real call through the lab Asterisk (issue 15, items 1 and 2):
a page of another site cannot read the /logs WebSocket (the caller's words stream only to the
API's own origin) and a request under a foreign name (DNS rebinding) gets nothing from the
dashboard, while a same-origin one works; then once in a real headless Chromium, whose resolver
maps the attacker's name to 127.0.0.1 as a rebinding DNS server would."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from nicegui.testing.general import nicegui_reset_globals

from aribot.core.app import App, configure
from aribot.plugins.local_backend.realtime.script import Script, Turn
from aribot.sandbox.asterisk import AsteriskLab
from aribot.sandbox.ports import free_tcp_port
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab.audio import speech
from tests.lab.calls import caller_turns, start_call
from tests.lab.serve import lab_settings, write_settings

SECRET_WORDS = "my PIN is 4711"
SOCKET_IO = "/_nicegui_ws/socket.io/?EIO=4"
EVIL = "evil.example"


@pytest.fixture
async def aribot_with_dashboard(asterisk_lab: AsteriskLab, fake: FakeRealtimeServer,
                                tmp_path: Path) -> AsyncIterator[App]:
    """aribot in-process with its default browser settings (loopback, no token, no password) and
    its dashboard on; at the end Asterisk must be clean."""
    fake.script = Script(turns=[Turn.audio(speech(800, seed=5), "Thank you, noted.")],
                         caller_transcripts=[SECRET_WORDS], speed=1.0)
    path = write_settings(tmp_path / "settings.toml", lab_settings(
        asterisk_lab, fake.url, ui={"enabled": True, "host": "127.0.0.1", "port": free_tcp_port()},
        history={"path": str(tmp_path / "history.sqlite3")}))
    settings, plugins = configure(path)
    with nicegui_reset_globals():  # NiceGUI's app is process-global: a fresh one for this dashboard
        app = App(settings, plugins)
        await app.start()
        try:
            await asyncio.wait_for(app.stream.connected.wait(), 5)
            yield app
            assert await asterisk_lab.wait_clean(2.0) == ([], [])
        finally:
            await app.stop()


async def next_transcript(ws: aiohttp.ClientWebSocketResponse, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        message = await ws.receive_json(timeout=max(0.1, deadline - time.monotonic()))
        if message["type"] == "call.transcript" and message.get("role") == "caller":
            return message


def refusals(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and "refused" in r.getMessage()]


async def test_other_sites_get_nothing_of_a_live_call(asterisk_lab: AsteriskLab, aribot_with_dashboard: App,
                                                      tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = aribot_with_dashboard
    api, dash = f"http://127.0.0.1:{app.http.port}", f"http://127.0.0.1:{app.extensions['ui'].port}"
    caplog.set_level(logging.INFO)
    async with aiohttp.ClientSession() as http:
        _caller, run = start_call(asterisk_lab, tmp_path / "sipp", caller_turns(800, gap_ms=6000), audio_delay_ms=300,
                                 hold_ms_after_audio=300)
        async with http.ws_connect(api + "/logs", origin=api) as own:          # the API's own origin
            assert (await own.receive_json(timeout=5))["type"] == "hello"
            heard = await next_transcript(own, 30)
            assert heard["text"] == SECRET_WORDS
            call_id = heard["call_id"]
            # the call is live and its words are on /logs: another site's page still cannot open it
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                async with http.ws_connect(api + "/logs", origin=f"http://{EVIL}"):
                    pass
            assert refused.value.status == 403
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:            # nor a rebinding one
                async with http.ws_connect(api + "/logs", headers={"Host": f"{EVIL}:{app.http.port}"}):
                    pass
            assert refused.value.status == 421
            async with http.get(api + "/calls", headers={"Host": f"{EVIL}:{app.http.port}"}) as resp:
                assert resp.status == 421 and call_id not in await resp.text()
            # the dashboard under a foreign name: the page of that very call and its socket are refused ...
            for path in (f"/call/{call_id}", SOCKET_IO + "&transport=polling"):
                async with http.get(dash + path, headers={"Host": EVIL}) as resp:
                    assert resp.status == 421 and SECRET_WORDS not in await resp.text()
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                async with http.ws_connect(dash + SOCKET_IO + "&transport=websocket", origin=f"http://{EVIL}"):
                    pass
            assert refused.value.status == 403
            # ... while the same-origin page and socket work
            async with http.get(dash + f"/call/{call_id}") as resp:
                assert resp.status == 200 and "<title>aribot</title>" in await resp.text()
            async with http.ws_connect(dash + SOCKET_IO + "&transport=websocket", origin=dash) as ws:
                assert (await ws.receive_str(timeout=5)).startswith("0{")
        result = await asyncio.wait_for(run, 30)
        assert result.ok, result.error
    assert len(refusals(caplog, "aribot.http")) == 3 and len(refusals(caplog, "aribot.ui")) == 3


EVIL_PAGE = """<!doctype html><title>loading</title><script>
const ws = new WebSocket("ws://127.0.0.1:%(api_port)d/logs");
ws.onmessage = (e) => { document.title = "LEAKED " + e.data.slice(0, 40); };
ws.onerror = () => { if (!document.title.startsWith("LEAKED")) document.title = "REFUSED"; };
</script>"""


def chromium(user_data: Path, resolve: str) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--host-resolver-rules=MAP {resolve} 127.0.0.1", f"--user-data-dir={user_data}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


async def title_becomes(driver: Any, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while (title := await asyncio.to_thread(lambda: driver.title)) in ("", "loading"):
        if time.monotonic() > deadline:
            raise AssertionError("the page set no title")
        await asyncio.sleep(0.1)
    return title


async def page_shows(driver: Any, text: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in await asyncio.to_thread(lambda: driver.page_source):
        assert time.monotonic() < deadline, f"{text!r} did not appear in the browser within {timeout} s"
        await asyncio.sleep(0.1)


async def test_in_a_real_browser(aribot_with_dashboard: App, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Chromium, as a victim: a page of evil.example opens /logs (refused, so it reads nothing);
    evil.example rebound to 127.0.0.1 shows no dashboard; the dashboard at 127.0.0.1 works."""
    app = aribot_with_dashboard
    ui_port = app.extensions["ui"].port
    evil = web.Application()

    async def evil_page(_request: web.Request) -> web.Response:
        return web.Response(text=EVIL_PAGE % {"api_port": app.http.port}, content_type="text/html")

    evil.router.add_get("/", evil_page)
    runner = web.AppRunner(evil, access_log=None)
    await runner.setup()
    evil_port = free_tcp_port()
    await web.TCPSite(runner, "127.0.0.1", evil_port).start()
    driver = await asyncio.to_thread(chromium, tmp_path / "chromium", EVIL)
    try:
        await asyncio.to_thread(driver.get, f"http://{EVIL}:{evil_port}/")
        assert await title_becomes(driver) == "REFUSED"
        assert any(f"Origin 'http://{EVIL}:{evil_port}'" in line for line in refusals(caplog, "aribot.http"))
        await asyncio.to_thread(driver.get, f"http://{EVIL}:{ui_port}/")      # DNS rebinding: same address
        source = await asyncio.to_thread(lambda: driver.page_source)
        assert "is not a loopback name nor listed in ui.allowed_hosts" in source and "Live calls" not in source
        await asyncio.to_thread(driver.get, f"http://127.0.0.1:{ui_port}/")
        await page_shows(driver, "No calls right now.")
        # an action over the page's own (bound, same-origin) socket still works: it changes aribot's state
        await asyncio.to_thread(driver.get, f"http://127.0.0.1:{ui_port}/session")
        await page_shows(driver, "Save for new calls")
        button = await asyncio.to_thread(driver.find_element, "xpath", "//button[contains(., 'Save for new calls')]")
        await asyncio.to_thread(button.click)
        await page_shows(driver, "Saved for new calls")
        assert app.overrides.get("instructions") == app.settings.ai.instructions
    finally:
        await asyncio.to_thread(driver.quit)
        await runner.cleanup()
