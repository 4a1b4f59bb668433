"""Bad input and failures during real calls: each gives one clear log line and loses nothing."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from pathlib import Path

import pytest

from aribot.core.app import resource_prefix
from aribot.core.events import CallEnded, MediaConnected
from aribot.core.rtp import RtpPacket
from aribot.plugins.local_backend.realtime.script import Script, Turn
from aribot.sandbox.asterisk import AsteriskLab
from aribot.sandbox.ports import free_tcp_port
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab.audio import speech
from tests.lab.calls import caller_turns, heard, padded, place_call, prompt_frames
from tests.lab.flood import RtpFlood
from tests.lab.probe import log_lines, subscribe
from tests.lab.sipp import SippCaller
from tests.lab.sniffer import RtpSniffer
from tests.lab.tcpproxy import TcpProxy
from tests.lab.wait import until


@pytest.mark.parametrize("action", ["hangup", "continue"])
async def test_realtime_unreachable_plays_fallback_then_acts(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, make_aribot, tmp_path: Path,
    caplog: pytest.LogCaptureFixture, action: str,
) -> None:
    caplog.set_level(logging.INFO)
    dead_url = f"ws://127.0.0.1:{free_tcp_port()}/v1/realtime"
    call_cfg = {"on_failure": action}
    if action == "continue":
        call_cfg |= {"continue_context": "aribot-continue", "continue_extension": "777"}
    app = await make_aribot(dead_url, call=call_cfg)
    ended = subscribe(app, CallEnded)
    mark = len(asterisk_lab.log_text())
    caller = SippCaller(asterisk_lab, tmp_path / "sipp", caller_turns(800), audio_delay_ms=300, hangup="server")
    rtp_sniffer.watch(caller.media_port)
    result = await caller.run()
    assert result.ok and result.bye_received, result.error      # Asterisk or aribot hung up, not the caller
    assert ended[0].reason == "ai_unavailable"
    assert prompt_frames(rtp_sniffer, caller.media_port) > 50      # the fallback prompt was heard (>1 s)
    played = asterisk_lab.log_text()[mark:]
    assert "Playing 'im-sorry.gsm'" in played and "Playing 'please-try-call-later.gsm'" in played   # both parts
    lines = log_lines(caplog, "ai_unavailable")
    assert len(lines) == 1 and "fallback prompt" in lines[0]
    if action == "continue":
        await asterisk_lab.wait_for_log(r"aribot-lab continued 777", since=mark)


@pytest.mark.parametrize("fault", ["http_500", "bad_api_key"])
async def test_realtime_refusing_the_session_is_a_failure_too(
    asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
    caplog: pytest.LogCaptureFixture, fault: str,
) -> None:
    if fault == "http_500":
        fake.refuse_status = 500
    else:
        fake.api_key = "another-key"
    app = await make_aribot(fake.url)
    ended = subscribe(app, CallEnded)
    caller = SippCaller(asterisk_lab, tmp_path / "sipp", caller_turns(500), audio_delay_ms=300, hangup="server")
    result = await caller.run()
    assert result.ok and result.bye_received, result.error
    assert ended[0].reason == "ai_unavailable"
    lines = log_lines(caplog, "ai_unavailable")
    assert len(lines) == 1
    assert ("HTTP 500" in lines[0]) if fault == "http_500" else ("invalid_api_key" in lines[0])
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("aribot"))
    assert "test-key" not in ours and "another-key" not in ours


async def test_realtime_closing_mid_call(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    answer = speech(600, seed=3)
    fake.script = Script(turns=[Turn.audio(answer, "first")])
    app = await make_aribot(fake.url, ai={"reconnect_attempts": 0})  # rollover: see test_rollover.py
    ended = subscribe(app, CallEnded)
    caller = SippCaller(asterisk_lab, tmp_path / "sipp", caller_turns(700, 700), audio_delay_ms=300,
                        hangup="server")
    rtp_sniffer.watch(caller.media_port)
    run = asyncio.create_task(caller.run())
    conn = await fake.wait_for_connection()
    await conn.wait_for_response(0, timeout=10)
    await conn.wait_for(lambda: conn.responses[0].done or None, timeout=10)
    await until(lambda: len(heard(rtp_sniffer, caller.media_port)) >= len(padded(answer)) // 160,
                "the caller hearing the whole first answer")
    await conn.close(1011, "server error")
    result = await run
    assert result.ok and result.bye_received, result.error
    assert ended[0].reason == "ai_closed"
    assert b"".join(p.payload for p in heard(rtp_sniffer, caller.media_port)).startswith(padded(answer))
    assert len(log_lines(caplog, "ai_closed")) == 1


async def test_realtime_error_events_do_not_end_the_call(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = speech(500, seed=8), speech(500, seed=9)
    fake.script = Script(turns=[Turn.audio(first, "one"), Turn.audio(second, "two")])
    app = await make_aribot(fake.url)
    ended = subscribe(app, CallEnded)
    caller_audio = caller_turns(600, 600)
    caller = SippCaller(asterisk_lab, tmp_path / "sipp", caller_audio, audio_delay_ms=300, hold_ms_after_audio=300)
    rtp_sniffer.watch(caller.media_port)
    run = asyncio.create_task(caller.run())
    conn = await fake.wait_for_connection()
    await conn.wait_for_event_type("session.updated")
    await conn.send_event({"type": "error", "event_id": "event_test1", "error": {
        "type": "server_error", "code": "server_error", "message": "The server had an error", "param": None,
        "event_id": None}})
    result = await run
    assert result.ok and result.bye_sent, result.error
    assert ended[0].reason == "caller_hangup"
    assert bytes(conn.input_audio) == caller_audio
    payload = b"".join(p.payload for p in heard(rtp_sniffer, caller.media_port))
    assert payload == padded(first) + padded(second)
    lines = log_lines(caplog, "Realtime error server_error")
    assert len(lines) == 1 and "the call goes on" in lines[0]


def forged_udp(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> bytes:
    """An IPv4+UDP datagram with a chosen source port (raw socket; root only)."""
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0,
                     socket.inet_aton(src[0]), socket.inet_aton(dst[0]))
    return ip + udp


async def test_malformed_and_foreign_rtp_are_dropped_and_counted(
    asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stranger's packets never reach aribot (the call's socket is connected to Asterisk's media
    address, so the kernel drops them: not even counted); packets forged to come from Asterisk's
    address are dropped by kind (malformed, wrong PT, longer than a frame) and counted."""
    fake.script = Script(turns=[Turn.audio(speech(400, seed=4), "ok")])
    app = await make_aribot(fake.url)
    connected = subscribe(app, MediaConnected)
    ended = subscribe(app, CallEnded)
    caller_audio = caller_turns(800)
    caller = SippCaller(asterisk_lab, tmp_path / "sipp", caller_audio, audio_delay_ms=500, hold_ms_after_audio=300)
    run = asyncio.create_task(caller.run())
    await until(lambda: connected, "the call's media")
    local_host, local_port = connected[0].local.rsplit(":", 1)
    remote_host, remote_port = connected[0].remote.rsplit(":", 1)
    target = (local_host, int(local_port))
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    good_looking = RtpPacket(0, 1, 160, 7, b"\x11" * 160).build()
    for _ in range(20):                                            # a flood from a foreign address: the
        stranger.sendto(good_looking, target)                      # kernel drops it (connected socket)
    for bad in (b"\x00" * 5, b"\x40" + b"\x00" * 30, RtpPacket(8, 2, 1, 1, b"\x22" * 160).build(),
                RtpPacket(0, 3, 1, 1, b"\x33" * 60000).build()):  # forged as Asterisk's; the last oversized
        raw.sendto(forged_udp((remote_host, int(remote_port)), target, bad), (local_host, 0))
    result = await run
    stranger.close()
    raw.close()
    assert result.ok, result.error
    assert bytes(fake.connections[0].input_audio) == caller_audio   # nothing lost, nothing injected
    dropped = ended[0].stats["rtp_dropped"]
    assert dropped == {"too_short": 1, "bad_version": 1, "payload_type": 1, "oversized": 1}
    for reason in dropped:
        assert len(log_lines(caplog, f"({reason}:")) == 1          # one line per kind, not per packet


async def app_unregistered(lab: AsteriskLab) -> bool:
    _, apps = await lab.ari("GET", "/applications")
    return lab.app not in [a["name"] for a in apps]


async def test_ari_websocket_dropped_and_restored(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    proxy = TcpProxy("127.0.0.1", asterisk_lab.http_port)
    port = await proxy.start()
    fake.script = Script(turns=[Turn.audio(speech(500, seed=n), f"answer {n}") for n in range(3)])
    app = await make_aribot(fake.url, ari={"url": f"http://127.0.0.1:{port}"})
    try:
        # a live call keeps its audio while the events WebSocket is cut and comes back
        caller_audio = caller_turns(800)
        caller = SippCaller(asterisk_lab, tmp_path / "a", caller_audio, audio_delay_ms=500, hold_ms_after_audio=300)
        rtp_sniffer.watch(caller.media_port)
        run = asyncio.create_task(caller.run())
        conn = await fake.wait_for_connection()
        await conn.wait_for_input_audio(4000)
        cut = time.monotonic()
        assert await proxy.drop_all() >= 1
        await until(lambda: not app.ari_connected, "aribot noticing the cut", timeout=2, interval=0.005)
        await asyncio.wait_for(app.stream.connected.wait(), 5)
        print(f"ARI events WebSocket cut mid-call: reconnected {(time.monotonic() - cut) * 1000:.0f} ms later, "
              "the call's audio never stopped")
        result = await run
        assert result.ok, result.error
        assert bytes(conn.input_audio) == caller_audio
        assert b"".join(p.payload for p in heard(rtp_sniffer, caller.media_port)) == padded(conn.responses[0].audio)
        # while ARI is unreachable, a new call is not ours: Asterisk continues it in the dialplan
        await asyncio.wait_for(app.stream.connected.wait(), 5)
        proxy.refuse = True
        await proxy.drop_all()
        await until(lambda: not app.ari_connected, "aribot noticing the refusal")
        await until(lambda: app_unregistered(asterisk_lab), "Asterisk unregistering the Stasis app")
        mark = len(asterisk_lab.log_text())
        refused = await SippCaller(asterisk_lab, tmp_path / "b", caller_turns(300), hangup="either",
                                   wait_bye_timeout_ms=3000).run()
        assert "STASISSTATUS=FAILED" in asterisk_lab.log_text()[mark:]
        assert refused.returncode is not None
        # restored: new calls work again
        proxy.refuse = False
        await asyncio.wait_for(app.stream.connected.wait(), 5)
        placed = await place_call(asterisk_lab, tmp_path / "c", caller_turns(800), audio_delay_ms=500,
                                  hold_ms_after_audio=300)
        assert bytes(fake.connections[-1].input_audio) == placed.caller.audio
        assert log_lines(caplog, "reconnecting in") and log_lines(caplog, "(reconnected)", logging.INFO)
    finally:
        await app.stop()
        await proxy.close()


async def test_leftovers_of_this_app_are_swept_and_live_calls_and_other_apps_are_not(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ours, theirs = resource_prefix(asterisk_lab.app, "br"), resource_prefix("another-app", "br")
    for bridge in (f"{ours}-crashed1", f"{theirs}-alive1"):  # as if an aribot had crashed with calls live
        status, _ = await asterisk_lab.ari("POST", f"/bridges/{bridge}", type="mixing")
        assert status == 200
    answer = speech(600, seed=12)
    fake.script = Script(turns=[Turn.audio(answer, "hi")])
    app = await make_aribot(fake.url)
    try:
        async def after_sweep() -> list | None:  # the sweep runs just after the events WebSocket connected
            _, bridges = await asterisk_lab.ari("GET", "/bridges")
            return bridges if len(bridges) < 2 else None
        bridges = await until(after_sweep, "the sweep at connect")
        assert [b["id"] for b in bridges] == [f"{theirs}-alive1"]   # swept at connect: only ours
        await swept_during_a_call(asterisk_lab, rtp_sniffer, fake, app, tmp_path, caplog)
    finally:
        await asterisk_lab.ari("DELETE", f"/bridges/{theirs}-alive1")


async def swept_during_a_call(asterisk_lab, rtp_sniffer, fake, app, tmp_path, caplog) -> None:
    answer = fake.script.turns[0].outputs[0].audio
    ours = resource_prefix(asterisk_lab.app, "br")
    assert len(log_lines(caplog, "deleted 0 leftover media channel(s) and 1 bridge(s)")) == 1
    # during a live call: a stray leg and bridge of ours go, the call's own stay and it goes on
    caller_audio = caller_turns(800)
    caller = SippCaller(asterisk_lab, tmp_path / "sipp", caller_audio, audio_delay_ms=500, hold_ms_after_audio=300)
    rtp_sniffer.watch(caller.media_port)
    run = asyncio.create_task(caller.run())
    conn = await fake.wait_for_connection()
    await conn.wait_for_input_audio(2000)
    stray = f"{resource_prefix(asterisk_lab.app, 'em')}-stray1"
    status, _ = await asterisk_lab.ari("POST", "/channels/externalMedia", app=asterisk_lab.app, channelId=stray,
                                       external_host="127.0.0.1:9", format="ulaw")
    assert status == 200
    await asterisk_lab.ari("POST", f"/bridges/{ours}-crashed2", type="mixing")
    assert await app.sweep_leftovers() == (1, 1)
    result = await run
    assert result.ok, result.error
    assert bytes(conn.input_audio) == caller_audio
    assert b"".join(p.payload for p in heard(rtp_sniffer, caller.media_port)) == padded(answer)


async def test_an_rtp_flood_from_asterisks_address_is_rate_limited_and_spares_other_calls(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """10x the normal packet rate, forged to come from Asterisk's own address and port for the
    ExternalMedia leg (so it passes the source check), on one call of two."""
    answers = {}

    def script_for(conn) -> Script:
        answers[conn] = speech(800, seed=900 + len(answers))
        return Script(turns=[Turn.audio(answers[conn], "ok")])

    fake.script = script_for
    app = await make_aribot(fake.url)
    ended, media = subscribe(app, CallEnded), subscribe(app, MediaConnected)
    flooded, calm = (SippCaller(asterisk_lab, tmp_path / name, caller_turns(800, gap_ms=4000, seed=n),
                                audio_delay_ms=500, hold_ms_after_audio=300) for n, name in ((1, "a"), (2, "b")))
    rtp_sniffer.watch(calm.media_port)
    runs = [asyncio.create_task(flooded.run())]
    await until(lambda: media, "the flooded call's media")
    local, remote = media[0].local.rsplit(":", 1), media[0].remote.rsplit(":", 1)
    flood = RtpFlood(src=(remote[0], int(remote[1])), dst=(local[0], int(local[1])), pps=500)
    flooding = asyncio.create_task(flood.run(seconds=3.0))
    runs.append(asyncio.create_task(calm.run()))
    results = await asyncio.gather(*runs)
    await flooding
    assert all(r.ok for r in results), [r.error for r in results]
    by_call = {e.call_id: e for e in ended}
    hit = by_call[media[0].call_id].stats["rtp_dropped"]
    assert flood.sent >= 1400 and hit.get("rate_limited", 0) >= 500, (flood.sent, hit)
    calm_conn = next(c for c in fake.connections if bytes(c.input_audio) == calm.audio)   # untouched, byte-exact
    assert b"".join(p.payload for p in heard(rtp_sniffer, calm.media_port)) == padded(answers[calm_conn])
    other = next(e for e in ended if e.call_id != media[0].call_id)
    assert other.stats["rtp_dropped"] == {}
    assert len(log_lines(caplog, "rate_limited")) == 1   # one line, then only counted
