"""Bad input from Asterisk and from the AI service on the lab Asterisk, with sipp as the caller: a
malformed event costs only itself (one log line) and the caller still hears the next answer byte
for byte; an ARI event task that dies anyway shows in /healthz (503, no address) and comes back,
and the next call is served."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from aribot.core.app import App
from aribot.plugins.local_backend.realtime.script import Script, Turn
from aribot.plugins.openai_realtime.client import RealtimeConnection
from aribot.sandbox.asterisk import AsteriskLab
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab.ai_fakes import AiFake, Say
from tests.lab.ari_proxy import AriFaultProxy
from tests.lab.audio import speech
from tests.lab.calls import caller_turns, heard, padded, place_call, prompt_frames
from tests.lab.probe import Probe, log_lines
from tests.lab.sipp import SippCaller
from tests.lab.sniffer import RtpSniffer
from tests.lab.wait import until

BAD_AI_EVENTS: dict[str, list[tuple[str, dict[str, Any]]]] = {   # (the log line's needle, the frame)
    "openai_realtime": [
        ("Realtime response.created event is malformed", {"type": "response.created", "response": None}),
        ("Realtime response.output_audio.delta event is malformed",
         {"type": "response.output_audio.delta", "delta": 5, "item_id": "i", "response_id": "r"}),
        ("Realtime response.output_item.added event is malformed",
         {"type": "response.output_item.added", "item": ["x"]}),
        ("Realtime response.done event is malformed", {"type": "response.done", "response": None}),
        ("Realtime error unknown: text", {"type": "error", "error": "text"}),
    ],
    "gpt_live": [
        ("GPT-Live response.event event is malformed", {"type": "response.event", "event": "x"}),
        ("GPT-Live response.event event is malformed",
         {"type": "response.event", "event": {"type": "response.output_item.done", "item": ["x"]}}),
        ("GPT-Live audio delta is not valid base64", {"type": "session.output_audio.delta", "delta": 5}),
        ("GPT-Live error unknown: text", {"type": "error", "error": "text"}),
    ],
}


@pytest.fixture
async def ari_proxy(asterisk_lab: AsteriskLab) -> AsyncIterator[AriFaultProxy]:
    """The fault-injecting proxy in front of the lab's ARI (requested before ``make_aribot``, so
    aribot is stopped before the proxy closes)."""
    proxy = AriFaultProxy(asterisk_lab.ari_url)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


async def test_malformed_ai_events_mid_call_and_the_caller_still_hears_the_next_answer(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, ai: AiFake, make_aribot, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = speech(600, seed=71), speech(700, seed=72)
    ai.script([Say(first, "First answer."), Say(second, "Second answer.")],
              transcripts=("A question.", "Another one."))
    app = await make_aribot(ai.server.url, **ai.settings())
    probe = Probe.attach(app)
    caller = SippCaller(asterisk_lab, tmp_path / "sipp", caller_turns(800, 800, gap_ms=4000), audio_delay_ms=500,
                        hold_ms_after_audio=300)
    rtp_sniffer.watch(caller.media_port)
    run = asyncio.create_task(caller.run())
    conn = await ai.wait_for_connection()
    await probe.wait("call.response_done", timeout=15)                    # the first answer is over
    for _needle, frame in BAD_AI_EVENTS[ai.name]:                        # then the service goes wrong
        await conn.send_raw(json.dumps(frame))
    result = await run
    assert result.ok, result.error
    call_id = probe.first("call.started").call_id
    audio = b"".join(p.payload for p in heard(rtp_sniffer, caller.media_port))
    assert audio == padded(first) + padded(second)                       # the next answer, byte for byte
    assert probe.first("call.ended").reason == "caller_hangup"
    assert len(ai.connections) == 1                                      # the same session went on
    needles = [needle for needle, _frame in BAD_AI_EVENTS[ai.name]]
    for needle in set(needles):
        lines = [line for line in log_lines(caplog, needle) if call_id in line]
        assert len(lines) == needles.count(needle), (needle, lines)


async def test_malformed_ari_events_cost_only_themselves_on_a_real_call(
    ari_proxy: AriFaultProxy, asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer,
    fake: FakeRealtimeServer, make_aribot, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = speech(500, seed=81), speech(600, seed=82)
    fake.script = Script(turns=[Turn.audio(first, "First."), Turn.audio(second, "Second.")])
    app = await make_aribot(fake.url, ari={"url": ari_proxy.url})

    def broken_start(event: dict[str, Any]) -> list[str]:
        """Garbage, an event without a type, then the caller's StasisStart with fields of the wrong type."""
        channel = {**event["channel"], "caller": "alice", "dialplan": {**event["channel"]["dialplan"],
                                                                       "priority": "abc"}}
        return ["{not json", json.dumps({"type": 5, "channel": event["channel"]}),
                json.dumps({**event, "channel": channel, "args": "100"})]

    def broken_bridge(event: dict[str, Any]) -> list[str]:
        """A malformed copy of a ChannelEnteredBridge mid-call, then the real one."""
        return [json.dumps({**event, "bridge": "x", "channel": {**event["channel"], "caller": 7}}), json.dumps(event)]

    ari_proxy.rewrite_event("StasisStart", broken_start)                 # the caller's: the first one
    ari_proxy.rewrite_event("ChannelEnteredBridge", broken_bridge)
    probe = Probe.attach(app)
    placed = await place_call(asterisk_lab, tmp_path / "sipp", caller_turns(700, 700, gap_ms=3000),
                              audio_delay_ms=300, hold_ms_after_audio=300, sniffer=rtp_sniffer)
    assert placed.audio == padded(first) + padded(second)                # served as if nothing happened
    started = probe.first("call.started")
    assert started.caller_number == "" and started.extension == "100"
    assert all(rewrite.hits == 1 for rewrite in ari_proxy.rewrites)
    assert app.stream.connects == 1 and app.ari_connected and app.bad_events == 2   # never reconnected
    lines = log_lines(caplog, "ARI ")
    assert len([line for line in lines if "is unusable (not JSON" in line]) == 1
    assert len([line for line in lines if f"for channel {started.call_id} is unusable (no string 'type'" in line]) == 1
    (start_line,) = [line for line in lines if line.startswith(f"ARI StasisStart for channel {started.call_id} has "
                                                               "malformed fields")]
    assert "channel.caller is not an object" in start_line and "priority is not a number" in start_line
    (bridge_line,) = [line for line in lines if line.startswith("ARI ChannelEnteredBridge")]
    assert "bridge has no string id" in bridge_line and "the event handled" in bridge_line


async def healthz(app: App) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{app.http.port}/healthz") as resp:
        return resp.status, await resp.json()


async def test_an_ari_event_task_that_dies_shows_in_healthz_and_comes_back(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A cancellation leaking out of the handling of the first StasisStart (a bug no guard
    catches: it is not an Exception) ends the ARI event task. /healthz answers 503 with a short
    reason, the task starts again, the caller left in Stasis meanwhile is ended as an orphan, and
    the next call is served byte for byte."""
    caplog.set_level(logging.INFO, logger="aribot")
    answer = speech(600, seed=91)
    fake.script = Script(turns=[Turn.audio(answer, "Hello.")])
    app = await make_aribot(fake.url, ari={"reconnect_min_delay": 0.1, "reconnect_max_delay": 1.0})
    assert (await healthz(app))[0] == 200
    original = app.stream.on_message
    died: list[str] = []

    def dying(text: str) -> None:
        if not died and '"StasisStart"' in text:
            died.append(text)
            raise asyncio.CancelledError("leaked from a bug")
        original(text)

    app.stream.on_message = dying   # type: ignore[method-assign]
    lost = SippCaller(asterisk_lab, tmp_path / "lost", caller_turns(600, gap_ms=6000), hangup="either",
                      wait_bye_timeout_ms=2000)
    lost_run = asyncio.create_task(lost.run())
    statuses: list[tuple[int, dict[str, Any]]] = []

    async def unhealthy() -> bool:
        statuses.append(await healthz(app))
        return statuses[-1][0] == 503

    await until(unhealthy, "/healthz answering 503", timeout=10, interval=0.02)
    status, body = statuses[-1]
    assert body["ari"] == "disconnected" and body["error"] == "the ARI event task stopped; restarting", body
    assert str(asterisk_lab.http_port) not in json.dumps(body)
    await until(lambda: app.ari_connected, "the ARI event task back", timeout=10)
    assert (await healthz(app))[0] == 200
    await lost_run                                                     # ended as an orphan, not left waiting
    assert log_lines(caplog, "were left in Stasis app") and log_lines(caplog, "ARIBOT_END_REASON=crashed")
    (line,) = log_lines(caplog, "the ARI event task ended unexpectedly", logging.ERROR)
    assert "cancelled" in line and "restarts in 1.0 s" in line
    probe = Probe.attach(app)
    placed = await place_call(asterisk_lab, tmp_path / "next", caller_turns(700), audio_delay_ms=300,
                              hold_ms_after_audio=300, sniffer=rtp_sniffer)
    assert placed.audio == padded(answer)                               # the next call is served
    assert probe.first("call.ended").reason == "caller_hangup"


async def test_a_session_that_dies_mid_call_ends_the_call_politely(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Realtime connection's reader breaks after the first answer (a bug no event guard can
    catch): the caller hears that answer, then the fallback prompt, and is hung up; the history
    record is closed with the reason. Never a call left in silence."""
    answer = speech(600, seed=95)
    fake.script = Script(turns=[Turn.audio(answer, "Hello.")])
    original = RealtimeConnection.events

    async def breaking(self: RealtimeConnection) -> AsyncIterator[dict[str, Any]]:
        async for event in original(self):
            yield event
            if event["type"] == "response.done":
                raise RuntimeError("the connection's reader broke")

    monkeypatch.setattr(RealtimeConnection, "events", breaking)
    app = await make_aribot(fake.url, history={"path": str(tmp_path / "history.sqlite3")})
    probe = Probe.attach(app)
    mark = len(asterisk_lab.log_text())
    caller = SippCaller(asterisk_lab, tmp_path / "sipp", caller_turns(700, gap_ms=8000), audio_delay_ms=300,
                        hangup="server")
    rtp_sniffer.watch(caller.media_port)
    result = await caller.run()
    assert result.ok and result.bye_received, result.error              # hung up by aribot, not by the caller
    ended = probe.first("call.ended")
    assert ended.reason == "ai_failed"
    packets = heard(rtp_sniffer, caller.media_port)
    assert b"".join(p.payload for p in packets).startswith(padded(answer))   # the answer, then ...
    assert prompt_frames(rtp_sniffer, caller.media_port) > len(padded(answer)) // 160 + 50   # ... the prompt
    assert "Playing 'im-sorry.gsm'" in asterisk_lab.log_text()[mark:]
    (line,) = log_lines(caplog, "ai_failed", logging.ERROR)
    assert "the session failed (RuntimeError" in line and "playing the fallback prompt, then hanging up" in line
    assert any(e.fatal and e.code == "session_failed" for e in probe.of("call.backend_error"))
    store = app.extensions["history"]
    await store.flush()
    record = await store.get(ended.call_id)
    assert record is not None and record["end_reason"] == "ai_failed"
