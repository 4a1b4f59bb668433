"""The dashboard on real calls through the lab Asterisk: its buttons act on the call (checked in
Asterisk), and once in a real headless Chromium (Debian's; no browser download) while a call runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nicegui.testing import user_simulation

from aribot.plugins.local_backend.realtime.script import Script, Turn
from aribot.plugins.ui_nicegui.live import LiveState
from aribot.plugins.ui_nicegui.pages import Dashboard
from aribot.sandbox.asterisk import AsteriskLab
from aribot.sandbox.ports import free_tcp_port
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab.audio import speech
from tests.lab.calls import caller_turns, heard, padded, start_call
from tests.lab.probe import Probe
from tests.lab.serve import console_env, wait_healthy
from tests.lab.sipp import SippCaller
from tests.lab.sniffer import RtpSniffer
from tests.lab.wait import until

REPO = Path(__file__).resolve().parents[2]
RETRIES = 100   # should_see looks every 0.1 s: up to 10 s for a page fed by a real call (a hang guard only)
ARTIFACTS = REPO / "test-artifacts"


async def live_call_id(app) -> str:
    """The id of the first call whose media is up."""
    return await until(lambda: next((c.id for c in app.calls.values() if c.pacer), None), "a call with its media up")


@pytest.mark.parametrize("action", ["hangup", "transfer"])
async def test_dashboard_buttons_act_on_the_real_call(
    asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, make_aribot, tmp_path: Path, action: str
) -> None:
    app = await make_aribot(fake.url, tools={"transfer_call": {"context": "aribot-continue", "allowed": ["200"]}})
    board = dashboard(app)
    state = board.state
    mark = len(asterisk_lab.log_text())
    caller = SippCaller(asterisk_lab, tmp_path / "sipp", caller_turns(600, gap_ms=8000), audio_delay_ms=300,
                        hangup="server")
    run = asyncio.create_task(caller.run())
    call_id = await live_call_id(app)
    async with user_simulation(root=board.root) as user:
        await user.open(f"/call/{call_id}")
        if action == "hangup":
            user.find("Hang up").click()
        else:
            user.find(marker="transfer-target").click()
            user.find("200").click()
            user.find(marker="transfer").click()
        result = await asyncio.wait_for(run, 20)
    assert result.ok and result.bye_received, result.error
    assert await asterisk_lab.wait_clean(2.0) == ([], [])
    if action == "transfer":
        await asterisk_lab.wait_for_log(r"aribot-lab continued 200", since=mark)
    else:
        assert "aribot-lab continued" not in asterisk_lab.log_text()[mark:]
    assert state.calls[call_id].end_reason == f"operator_{action}"


def dashboard(app) -> Dashboard:
    """The dashboard of an in-process aribot, fed by its bus."""
    state = LiveState()
    app.bus.subscribe(None, state.on_event, owner="ui_nicegui")
    return Dashboard(app, state)


async def test_operator_instruction_reaches_the_ai_and_its_answer_the_caller(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path
) -> None:
    """"Send to AI" on a live call: a system message and a response.create that the strict fake
    accepts, and the answer it asks for is what the caller hears."""
    first, answer = speech(500, seed=41), speech(700, seed=42)
    fake.script = Script(turns=[Turn.audio(first, "How can I help?"), Turn.audio(answer, "We offer ten percent.")])
    app = await make_aribot(fake.url)
    board, probe = dashboard(app), Probe.attach(app)
    caller, run = start_call(asterisk_lab, tmp_path / "sipp", caller_turns(600, gap_ms=7000), sniffer=rtp_sniffer,
                             audio_delay_ms=300, hold_ms_after_audio=300)
    call_id = await live_call_id(app)
    await probe.wait("call.bot_audio_stopped")           # the AI's first answer has been heard
    async with user_simulation(root=board.root) as user:
        await user.open(f"/call/{call_id}")
        user.find(marker="instruction").type("Offer a 10% discount")
        user.find("Send to AI").click()
        await user.should_see("Sent to the AI", retries=RETRIES)
        result = await asyncio.wait_for(run, 30)
    assert result.ok, result.error
    conn = fake.connections[0]
    items = [e["item"] for e in conn.received_of_type("conversation.item.create")]
    assert items == [{"type": "message", "role": "system",
                      "content": [{"type": "input_text", "text": "Offer a 10% discount"}]}]
    assert [r.trigger for r in conn.responses] == ["vad", "client"] and conn.errors_sent == []
    payload = b"".join(p.payload for p in heard(rtp_sniffer, caller.media_port))
    assert payload == padded(first) + padded(answer)


@pytest.mark.parametrize("answered", [True, False], ids=["answered", "no_answer"])
async def test_a_manual_tool_is_answered_by_the_operator(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
    plugin_folder, answered: bool,
) -> None:
    """A tool listed in [tools] manual waits for a person: the operator's answer on the call page is
    the function_call_output the model gets; with no answer within manual_timeout the model gets an
    error output, and the call goes on either way."""
    answer = speech(600, seed=43)
    fake.script = Script(turns=[Turn.function_call("lookup_order", {"order_id": "42"}, call_id="call_manual"),
                                Turn.audio(answer, "It shipped yesterday.")])
    app = await make_aribot(fake.url, tools={"manual": ["lookup_order"], "manual_timeout": 2.0, "filler_after": 0},
                            plugins={"paths": [plugin_folder("order_tools")]})
    board, probe = dashboard(app), Probe.attach(app)
    caller, run = start_call(asterisk_lab, tmp_path / "sipp", caller_turns(600, gap_ms=6000), sniffer=rtp_sniffer,
                             audio_delay_ms=300, hold_ms_after_audio=300)
    call_id = await live_call_id(app)
    async with user_simulation(root=board.root) as user:
        await user.open(f"/call/{call_id}")
        await probe.wait("call.tool_awaiting_answer")
        await user.should_see('lookup_order({"order_id": "42"}) waits for your answer', retries=RETRIES)
        if answered:
            user.find(marker="answer-call_manual").type("Shipped yesterday by DHL")
            user.find("Send answer").click()
            await user.should_see("Answer sent", retries=RETRIES)
        result = await asyncio.wait_for(run, 30)
    assert result.ok, result.error
    output = json.loads(fake.connections[0].received_of_type("conversation.item.create")[0]["item"]["output"])
    if answered:
        assert output == {"answer": "Shipped yesterday by DHL"}
    else:
        assert output == {"error": "no operator answered lookup_order within 2 s"}
    assert [f.tool for f in probe.of("call.tool_finished")] == ["lookup_order"]
    assert b"".join(p.payload for p in heard(rtp_sniffer, caller.media_port)) == padded(answer)
    assert fake.connections[0].errors_sent == []


async def test_session_changes_on_a_live_call_and_what_the_ai_service_refuses(
    asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, make_aribot, tmp_path: Path, caplog
) -> None:
    """Applied to a live call, new instructions are taken (the fake's session shows them); a voice
    change once the AI has spoken is refused by the service (as the real one does): the operator
    is told it was not applied, and the session keeps its voice."""
    fake.script = Script(turns=[Turn.audio(speech(500, seed=44), "Hello.")])
    app = await make_aribot(fake.url)
    board, probe = dashboard(app), Probe.attach(app)
    _caller, run = start_call(asterisk_lab, tmp_path / "sipp", caller_turns(600, gap_ms=5000), audio_delay_ms=300,
                              hold_ms_after_audio=300)
    call_id = await live_call_id(app)
    await probe.wait("call.bot_audio_stopped")
    call = app.calls[call_id]
    label = f"{call.caller_number or call.id} → {call.extension}"
    async with user_simulation(root=board.root) as user:
        await user.open("/session")
        user.find(marker="instructions").clear().type("You are a pirate.")
        user.find(marker="apply-call").click()
        user.find(label).click()
        user.find("Apply to this call").click()
        await user.should_see("Applied to the call", retries=RETRIES)
        user.find(marker="voice").click()
        user.find("cedar").click()
        user.find("Apply to this call").click()
        await user.should_see("Not applied: cannot_update_voice", retries=RETRIES)
    result = await asyncio.wait_for(run, 30)
    assert result.ok, result.error
    conn = fake.connections[0]
    accepted = [u["accepted"] for u in conn.session_updates]
    assert accepted == [True, True, False]          # the call's own, the instructions, the refused voice
    assert conn.session["instructions"] == "You are a pirate." and conn.session["audio"]["output"]["voice"] == "marin"
    assert "was refused: cannot_update_voice" in caplog.text
    assert app.overrides == {}                      # a live call's change is not saved for new calls


def chromium(user_data: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,1000", f"--user-data-dir={user_data}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


async def wait_page(driver, text: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in driver.page_source:
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} did not appear in the browser within {timeout} s")
        await asyncio.sleep(0.1)


@dataclass
class Console:
    """`aribot serve` with its dashboard, and one headless Chromium on it."""

    server: asyncio.subprocess.Process
    ui_port: int
    http_port: int
    driver: Any = None
    output: str = ""   # what aribot printed, once it stopped


@contextlib.asynccontextmanager
async def console(asterisk_lab: AsteriskLab, fake_url: str, tmp_path: Path, history: Path) -> AsyncIterator[Console]:
    """`aribot serve` (env vars only, the dashboard on, the history at ``history``) and Chromium
    on its home page once that shows no call; at exit the browser quits, aribot gets SIGTERM and
    what it printed is kept in ``output``."""
    ui_port, http_port = free_tcp_port(), free_tcp_port()
    server = await asyncio.create_subprocess_exec(
        Path(sys.executable).parent / "aribot", "serve", cwd=tmp_path,
        env=console_env(asterisk_lab, fake_url, http_port, ui_port, history),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    run = Console(server, ui_port, http_port)
    try:
        await wait_healthy(http_port)
        run.driver = await asyncio.to_thread(chromium, tmp_path / "chromium")
        await asyncio.to_thread(run.driver.get, f"http://127.0.0.1:{ui_port}/")
        await wait_page(run.driver, "No calls right now.")
        yield run
    finally:
        if run.driver is not None:
            await asyncio.to_thread(run.driver.quit)
        if server.returncode is None:
            server.send_signal(signal.SIGTERM)
        run.output = (await asyncio.wait_for(server.communicate(), 15))[0].decode()


async def tile(driver, label: str) -> str:
    """The figure of the overview tile labelled ``label``, as the browser shows it."""
    xpath = f"//div[contains(@class, 'q-card')][div[normalize-space(text())='{label}']]/div[1]"
    return (await asyncio.to_thread(driver.find_element, "xpath", xpath)).text


async def wait_tile(driver, label: str, value: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while (shown := await tile(driver, label)) != value:
        if time.monotonic() > deadline:
            raise AssertionError(f"tile {label!r} shows {shown!r}, not {value!r}, after {timeout} s")
        await asyncio.sleep(0.1)


async def screenshot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / name
    await asyncio.to_thread(driver.save_screenshot, str(shot))
    assert shot.stat().st_size > 10_000
    return shot


async def test_the_console_in_a_real_browser_during_a_real_call(
    asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, tmp_path: Path
) -> None:
    """`aribot serve` with its dashboard; in Chromium the overview counts the call, the call page
    streams the transcript (no empty element, a measured latency), its timeline and its cost, and
    the history has the call with its cost and timeline after the hangup. Screenshots of each page
    go to test-artifacts/ (docs/console-*.png are copies of them)."""
    fake.script = Script(turns=[Turn.audio(speech(1500, seed=3), "Your parcel left the depot this morning.")],
                         caller_transcripts=["Where is my parcel?"], speed=1.0)
    async with console(asterisk_lab, fake.url, tmp_path, tmp_path / "history.sqlite3") as served:
        driver, ui_port = served.driver, served.ui_port
        await wait_tile(driver, "Calls today", "0")
        charts = await asyncio.to_thread(driver.find_elements, "css selector", "[_echarts_instance_]")
        assert len(charts) == 2                                # ECharts drew both charts
        caller = SippCaller(asterisk_lab, tmp_path / "sipp", caller_turns(800, gap_ms=5000), audio_delay_ms=300,
                            hold_ms_after_audio=300)
        run = asyncio.create_task(caller.run())
        await wait_page(driver, "sipp")                        # the live call appears (caller id from sipp)
        await wait_tile(driver, "Live calls", "1")
        await wait_tile(driver, "Calls today", "1")
        link = await asyncio.to_thread(driver.find_element, "partial link text", "sipp")
        await asyncio.to_thread(link.click)
        await wait_page(driver, "Where is my parcel?")          # the caller's words ...
        await wait_page(driver, "Your parcel left the depot this morning.")   # ... and the AI's
        await wait_page(driver, "answered in ")                # the AI turn's measured response latency
        bubbles = await asyncio.to_thread(driver.find_elements, "css selector", ".q-message-text-content")
        texts = [await asyncio.to_thread(lambda b=b: b.text) for b in bubbles]
        assert len(texts) >= 2 and all(t.strip() for t in texts), texts   # no empty transcript element
        answered = [int(t.split("answered in ")[1].split(" ms")[0]) for t in texts if "answered in " in t]
        # the caller's last word is dated from the audio (server VAD's 500 ms of silence is in it), not
        # from the speech_stopped event the fake answers at once (that measure said 0-1 ms)
        assert answered and answered[0] > 250, (answered, texts)
        await wait_page(driver, "listening (immediate")          # the timeline ...
        await wait_page(driver, "AI connected (openai_realtime) in ")
        await wait_page(driver, "cost so far $0.0")              # ... and the cost of the answer so far
        await screenshot(driver, "console-call.png")
        result = await run
        assert result.ok, result.error
        await wait_page(driver, "ended: caller_hangup")
        await asyncio.to_thread(driver.get, f"http://127.0.0.1:{ui_port}/")
        await wait_tile(driver, "Answered", "1")                 # the overview counted the call
        await wait_tile(driver, "Live calls", "0")
        assert (await tile(driver, "AI response, median")).endswith(" ms")
        assert int((await tile(driver, "AI response, median")).split()[0]) == answered[0]
        await screenshot(driver, "console-overview.png")
        await asyncio.to_thread(driver.get, f"http://127.0.0.1:{ui_port}/history")
        await wait_page(driver, "caller_hangup")                # the call moved to the history
        await wait_page(driver, "calls 1–1, newest first")      # listed as the page opens, no search
        await wait_page(driver, "$0.0")                          # with its cost
        link = await asyncio.to_thread(driver.find_element, "partial link text", time.strftime("%Y-%m-%d"))
        await asyncio.to_thread(link.click)
        await wait_page(driver, "Where is my parcel?")
        await wait_page(driver, "ended: caller_hangup")          # the stored timeline
        await wait_page(driver, ", cost $0.0")
        await screenshot(driver, "console-history.png")
    assert served.server.returncode == 0, served.output
    assert await asterisk_lab.wait_clean(2.0) == ([], [])
