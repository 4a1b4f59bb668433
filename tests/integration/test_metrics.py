"""/metrics during and after a real call: parsed by the Prometheus text parser, each figure moved
by exactly what the call did (live calls, end reason, turn latency, pacing, drops, tools)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from aribot.plugins.local_backend.realtime.script import Script, Turn
from aribot.sandbox.asterisk import AsteriskLab
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab.audio import speech
from tests.lab.calls import caller_turns, heard, padded
from tests.lab.flood import send_forged
from tests.lab.probe import Probe
from tests.lab.prometheus import Exposition
from tests.lab.sipp import SippCaller
from tests.lab.sniffer import RtpSniffer
from tests.lab.wait import until


async def scrape(port: int) -> Exposition:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
            assert response.status == 200 and response.headers["Content-Type"] == CONTENT_TYPE_LATEST
            return Exposition.parse(await response.text())


async def dropped_three(port: int, before: Exposition) -> Exposition | None:
    now = await scrape(port)
    return now if delta(now, before, "aribot_rtp_dropped_packets_total", reason="oversized") >= 3 else None


def delta(after: Exposition, before: Exposition, name: str, **labels: str) -> float:
    """How much a series moved; fails if the metric or its label names do not exist."""
    return after.delta(before, name, **labels)


async def test_metrics_move_as_a_call_runs(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path
) -> None:
    answer = speech(1000, seed=31)
    fake.script = Script(turns=[Turn.function_call("current_time", {}),
                                Turn.function_call("transfer_call", {"extension": "999"}),   # refused: an error
                                Turn.audio(answer, "It is noon, and I cannot transfer you there.")])
    app = await make_aribot(fake.url)
    probe = Probe.attach(app)
    before = await scrape(app.http.port)
    assert before.value("aribot_calls_live") == 0

    caller = SippCaller(asterisk_lab, tmp_path / "sipp", caller_turns(800, gap_ms=4000), audio_delay_ms=300,
                        hold_ms_after_audio=300)
    rtp_sniffer.watch(caller.media_port)
    running = asyncio.create_task(caller.run())
    connected = await probe.wait("call.media_connected", timeout=15)
    local, remote = connected.local.rsplit(":", 1), connected.remote.rsplit(":", 1)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # RTP from anywhere but Asterisk: the kernel
    try:                                                          # drops it (the socket is connected)
        for _ in range(3):
            stranger.sendto(b"\x80\x00" + bytes(170), (local[0], int(local[1])))
    finally:
        stranger.close()
    oversized = b"\x80\x00" + bytes(10) + bytes(1000)             # from Asterisk's address, longer than a frame
    send_forged((remote[0], int(remote[1])), (local[0], int(local[1])), [oversized] * 3)
    during = await until(lambda: dropped_three(app.http.port, before), "three oversized packets counted")
    assert during.value("aribot_calls_live") == 1
    assert delta(during, before, "aribot_calls_started_total") == 1
    assert delta(during, before, "aribot_rtp_dropped_packets_total", reason="oversized") == 3
    assert delta(during, before, "aribot_rtp_dropped_packets_total", reason="foreign_source") == 0

    result = await running
    assert result.ok, result.error
    ended = await probe.wait("call.ended")
    after = await scrape(app.http.port)

    frames = len(padded(answer)) // 160
    assert len(heard(rtp_sniffer, caller.media_port)) == frames == ended.stats["rtp_out"]
    assert after.value("aribot_calls_live") == 0
    assert delta(after, before, "aribot_calls_ended_total", reason="caller_hangup") == 1
    assert delta(after, before, "aribot_call_duration_seconds_count") == 1
    turn = probe.first("call.bot_audio_started")
    assert delta(after, before, "aribot_turn_latency_seconds_count") == 1
    assert delta(after, before, "aribot_turn_latency_seconds_sum") == pytest.approx(turn.latency_ms / 1000)
    assert delta(after, before, "aribot_pacing_error_seconds_count") == frames   # one sample per frame sent
    assert delta(after, before, "aribot_pacing_error_seconds_bucket", le="+Inf") == frames
    assert delta(after, before, "aribot_rtp_dropped_packets_total", reason="oversized") == 3
    assert delta(after, before, "aribot_rtp_dropped_packets_total", reason="foreign_source") == 0
    assert delta(after, before, "aribot_tool_duration_seconds_count", tool="current_time") == 1
    assert delta(after, before, "aribot_tool_duration_seconds_count", tool="transfer_call") == 1
    assert delta(after, before, "aribot_tool_errors_total", tool="transfer_call") == 1
    assert delta(after, before, "aribot_tool_errors_total", tool="current_time") == 0
    assert delta(after, before, "aribot_responses_total", status="completed") == 3
    assert delta(after, before, "aribot_ai_connect_seconds_count") == 1
    assert "aribot_ai_reconnects_total" in after.names                     # exported ...
    assert not [series for series in after.samples if series[0] == "aribot_ai_reconnects_total"]  # ... none
    assert delta(after, before, "aribot_barge_ins_total") == 0
    usages = [e.usage for e in probe.of("call.response_done")]
    assert len(usages) == 3 and sum(u["output_tokens"] for u in usages) > 0   # the Realtime usage, passed on
    for direction in ("input", "output"):
        counted = sum(delta(after, before, "aribot_tokens_total", direction=direction, modality=m)
                      for m in ("text", "audio"))
        assert counted == sum(u[f"{direction}_tokens"] for u in usages)
    assert [e.tool for e in probe.of("call.tool_finished")] == ["current_time", "transfer_call"]
