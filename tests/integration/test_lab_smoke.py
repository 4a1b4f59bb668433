"""Smoke tests of the real-Asterisk lab itself (tests/lab): one Asterisk for the module.

Needs root and the chroot built by scripts/setup; without them these tests FAIL (never skip).
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from aribot.sandbox import ports
from aribot.sandbox.asterisk import AsteriskLab
from aribot.sandbox.ports import _bindable, free_tcp_port, free_udp_port, free_udp_port_range
from tests.lab.audio import frames, silence, speech, ulaw_decode, ulaw_encode
from tests.lab.fixtures import require_lab_chroot
from tests.lab.sipp import SippCaller, run_call
from tests.lab.sipp_scenario import build_scenario, dtmf_pcap
from tests.lab.sniffer import RtpSniffer, parse_ipv4_rtp
from tests.lab.tcpproxy import TcpProxy

# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chroot() -> Path:
    """The provisioned chroot, or a test failure that says how to get one."""
    return require_lab_chroot()


@pytest.fixture(scope="module")
def asterisk(chroot: Path) -> Iterator[AsteriskLab]:
    """One lab Asterisk for the whole module (loop-independent, so a sync fixture)."""
    lab = AsteriskLab(chroot)
    asyncio.run(lab.start())
    yield lab
    asyncio.run(lab.stop())
    assert not lab.running and not lab.config_dir.exists()


@pytest.fixture(scope="module")
def sniffer(chroot: Path) -> Iterator[RtpSniffer]:
    with RtpSniffer() as sn:
        yield sn


# --- pure helpers (no root needed) ----------------------------------------------------------


def test_ulaw_encoder_known_values() -> None:
    assert ulaw_encode([0, 32767, -32768, 1, -1, 100, -100]) == bytes(
        [0xFF, 0x80, 0x00, 0xFF, 0x7F, 0xF2, 0x72]
    )
    assert ulaw_decode(bytes([0xFF, 0x7F, 0x80, 0x00, 0xF2])) == [0, 0, 32124, -32124, 104]


def test_ulaw_round_trips() -> None:
    every = bytes(range(256))
    expected = every.replace(b"\x7f", b"\xff")  # -0 re-encodes as +0
    assert ulaw_encode(ulaw_decode(every)) == expected
    samples = range(-32768, 32768, 7)
    once = ulaw_encode(samples)
    assert ulaw_encode(ulaw_decode(once)) == once.replace(b"\x7f", b"\xff")
    decoded = ulaw_decode(bytes(range(0x80, 0x100)))  # positive codes, loud to quiet
    assert decoded == sorted(decoded, reverse=True)


def test_speech_and_silence() -> None:
    a = speech(1000, seed=1)
    assert len(a) == 8000 and a == speech(1000, seed=1) and a != speech(1000, seed=2)
    assert 0xFF not in a and 0x7F not in a
    samples = ulaw_decode(a)
    assert sum(abs(s) for s in samples) / len(samples) > 4 * 256  # far above TALK_DETECT's 256
    assert silence(20) == b"\xff" * 160
    chunks = frames(a)
    assert len(chunks) == 50 and {len(c) for c in chunks} == {160} and b"".join(chunks) == a
    assert len(set(chunks)) == 50  # every frame distinct: a misaligned echo cannot match


def test_ports() -> None:
    tcp, udp = free_tcp_port(), free_udp_port()
    assert 20000 <= tcp < 60000 and _bindable(tcp, socket.SOCK_STREAM)
    assert 20000 <= udp < 60000 and _bindable(udp, socket.SOCK_DGRAM)
    start, end = free_udp_port_range(400)
    assert start % 2 == 0 and end - start == 399 and 20000 <= start and end < 60000
    assert all(_bindable(p, socket.SOCK_DGRAM) for p in range(start, end + 1))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        assert free_udp_port() != busy.getsockname()[1]


def test_ports_of_each_xdist_worker_are_disjoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "_handed_out", {socket.SOCK_STREAM: {}, socket.SOCK_DGRAM: {}})
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    slices = []
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        low, high = ports._window()
        picks = [free_udp_port() for _ in range(50)] + [free_udp_port_range(4)[0] for _ in range(50)]
        assert all(low <= p < high for p in picks)
        slices.append(range(low, high))
    assert not set(slices[0]) & set(slices[1]) and len(slices[0]) > 4000


def test_a_held_range_is_never_handed_out_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "_handed_out", {socket.SOCK_STREAM: {}, socket.SOCK_DGRAM: {}})
    monkeypatch.setattr(ports, "RESERVE_S", 0.0)  # ordinary reservations lapse at once
    start, end = free_udp_port_range(400, hold=True)
    picks = [free_udp_port_range(400)[0] for _ in range(40)]
    assert len(set(picks)) < len(picks)  # ordinary ranges lapsed and were handed out again...
    assert not [p for p in picks if start - 399 <= p <= end]  # ...the held range never was
    low, split, high = ports._areas()
    assert low <= start and end < split  # blocks keep to their own area, away from sipp's ports
    assert all(split <= free_udp_port_range(4)[0] < high for _ in range(50))


def test_short_lived_blocks_pack_so_an_asterisk_range_still_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests reserve 64-port ranges for 60 s each; over a minute they cover most of a worker's block
    area. Packed first-fit they leave room for a 400-port lab Asterisk range; scattered they did not
    (a clean-clone run failed 6 tests at setup with "no block of 400 free UDP ports")."""
    monkeypatch.setattr(ports, "_handed_out", {socket.SOCK_STREAM: {}, socket.SOCK_DGRAM: {}})
    monkeypatch.setattr(ports, "_bindable", lambda port, kind: True)   # only this process's reservations count
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    low, split, _high = ports._areas()
    for _ in range((split - low) * 6 // 10 // 64):                     # 60 % of the area in 64-port blocks
        free_udp_port_range(64)
    for _ in range(2):                                                  # and still two Asterisk ranges
        start, end = free_udp_port_range(400, hold=True)
        assert low <= start and end < split


def test_rtp_parser_handles_csrc_extension_padding() -> None:
    rtp = struct.pack("!BBHII", 0xB1, 0x80 | 0, 7, 1600, 0xABCD)  # v2, P, X, CC=1, marker
    rtp += struct.pack("!I", 99) + struct.pack("!HH", 0xBEDE, 1) + b"\0" * 4
    rtp += b"payload" + b"\0\0\3"  # 3 bytes of padding
    udp = struct.pack("!HHHH", 4000, 5000, 8 + len(rtp), 0) + rtp
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                     socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.2"))  # fmt: skip
    got = parse_ipv4_rtp(ip + udp, 1.5, {5000})
    assert got is not None and got.payload == b"payload" and got.marker and got.pt == 0
    assert (got.seq, got.rtp_ts, got.ssrc, got.src, got.dst) == (
        7, 1600, 0xABCD, ("127.0.0.1", 4000), ("127.0.0.2", 5000))  # fmt: skip
    assert parse_ipv4_rtp(ip + udp, 1.5, {5001}) is None


class _StubLab:
    sip_port = 5060


def test_scenario_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="hangup"):
        build_scenario(None, 0, hangup="nobody", hold_ms_after_audio=0, wait_bye_timeout_ms=0)
    with pytest.raises(ValueError, match="DTMF"):
        dtmf_pcap("x")
    assert dtmf_pcap("#").name == "dtmf_2833_pound.pcap" and dtmf_pcap("*").exists()
    with pytest.raises(ValueError, match="whole 20 ms frames"):
        SippCaller(_StubLab(), tmp_path, b"\0" * 100, sip_port=1, media_port=2).prepare()


# --- the real Asterisk ----------------------------------------------------------------------


async def test_ari_ping_needs_auth(asterisk: AsteriskLab) -> None:
    status, body = await asterisk.ari("GET", "/asterisk/ping")
    assert status == 200 and body["ping"] == "pong"
    status, _ = await asterisk.ari("GET", "/asterisk/ping", auth=False)
    assert status == 401
    assert asterisk.ari_url == f"http://127.0.0.1:{asterisk.http_port}"
    assert asterisk.rtp_port_range[1] - asterisk.rtp_port_range[0] == 399


def test_cli_version(asterisk: AsteriskLab) -> None:
    assert "Asterisk 22.10.1" in asterisk.cli("core show version")


async def test_echo_call_is_byte_exact(
    asterisk: AsteriskLab, sniffer: RtpSniffer, tmp_path: Path
) -> None:
    audio = speech(2000, seed=42)
    media_port = free_udp_port_range(4)[0]
    sniffer.watch(media_port)
    since = len(asterisk.log_text())
    result = await run_call(asterisk, extension="echo", audio=audio, hold_ms_after_audio=500,
                            media_port=media_port, workdir=tmp_path)  # fmt: skip
    assert result.ok, result.error
    assert result.hangup_by == "caller" and result.media_port == media_port
    echoed = await sniffer.wait_packets(media_port, 100, timeout=2.0)
    sniffer.unwatch(media_port)
    assert {(p.pt, len(p.payload)) for p in echoed} == {(0, 160)}
    assert [p.seq - echoed[0].seq for p in echoed] == list(range(100))
    assert b"".join(p.payload for p in echoed) == audio  # every frame, from the first one
    assert result.started < echoed[0].ts < echoed[-1].ts < result.ended
    assert 1.8 < echoed[-1].ts - echoed[0].ts < 3.0  # paced in real time, not a burst
    await asterisk.wait_for_log(r"Executing \[echo@from-sipp:2\] Echo", 2.0, since=since)
    assert await asterisk.wait_clean() == ([], [])


async def test_watching_a_port_again_forgets_what_was_captured(sniffer: RtpSniffer) -> None:
    port = free_udp_port()
    packet = struct.pack("!BBHII", 0x80, 0, 1, 160, 0x1234) + b"\xff" * 160
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        sniffer.watch(port)
        tx.sendto(packet, ("127.0.0.1", port))
        assert len(await sniffer.wait_packets(port, 1, timeout=2.0)) == 1
        sniffer.watch(port)  # a later test given the same port number starts from nothing
        assert sniffer.packets(port) == []
        tx.sendto(packet, ("127.0.0.1", port))
        assert len(await sniffer.wait_packets(port, 1, timeout=2.0)) == 1
    sniffer.unwatch(port)


async def _stasis_app(lab: AsteriskLab, events: list[dict], ready: asyncio.Event) -> None:
    """A minimal ARI app: answer, wait for DTMF '5', then hang up the caller."""
    async with aiohttp.ClientSession() as session, session.ws_connect(lab.events_url()) as ws:
        ready.set()
        async for msg in ws:
            event = json.loads(msg.data)
            events.append(event)
            channel = event.get("channel", {}).get("id")
            if event["type"] == "StasisStart":
                await lab.ari("POST", f"/channels/{channel}/answer")
            elif event["type"] == "ChannelDtmfReceived" and event["digit"] == "5":
                await lab.ari("DELETE", f"/channels/{channel}")
            elif event["type"] == "StasisEnd":
                return


async def test_stasis_call_with_dtmf_and_server_hangup(
    asterisk: AsteriskLab, tmp_path: Path
) -> None:
    events: list[dict] = []
    ready = asyncio.Event()
    app = asyncio.create_task(_stasis_app(asterisk, events, ready))
    await asyncio.wait_for(ready.wait(), 5.0)
    since = len(asterisk.log_text())
    result = await run_call(asterisk, extension="4711", audio=speech(1000, seed=7),
                            dtmf=[(300, "5")], hangup="server", hold_ms_after_audio=0,
                            wait_bye_timeout_ms=3000, workdir=tmp_path)  # fmt: skip
    await asyncio.wait_for(app, 5.0)
    assert result.ok and result.hangup_by == "server", result.error
    start = next(e for e in events if e["type"] == "StasisStart")
    assert start["args"] == ["4711"] and start["channel"]["state"] == "Ring"
    assert any(e["type"] == "ChannelDtmfReceived" and e["digit"] == "5" for e in events)
    # The app hung the channel up, so the dialplan does not go on after Stasis().
    await asterisk.wait_for_log(r"Executing \[4711@from-sipp:2\] Stasis", 2.0, since=since)
    assert await asterisk.wait_clean() == ([], [])


async def test_call_without_app_is_declined(asterisk: AsteriskLab, tmp_path: Path) -> None:
    since = len(asterisk.log_text())
    result = await run_call(asterisk, extension="100", audio=speech(200), workdir=tmp_path)
    assert not result.ok and "603 Decline" in result.error
    await asterisk.wait_for_log(r"after-stasis 100 STASISSTATUS=FAILED", 2.0, since=since)
    assert await asterisk.wait_clean() == ([], [])


async def test_tcpproxy_drops_and_refuses(asterisk: AsteriskLab) -> None:
    proxy = TcpProxy("127.0.0.1", asterisk.http_port)
    port = await proxy.start()
    auth = f"api_key={asterisk.ari_username}:{asterisk.ari_password}"
    url = asterisk.events_url("proxy-test").replace(f":{asterisk.http_port}/", f":{port}/")
    try:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(url) as ws:
                assert proxy.live == 1
                assert await proxy.drop_all() == 1
                msg = await asyncio.wait_for(ws.receive(), 2.0)
                assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
            proxy.refuse = True
            with pytest.raises(aiohttp.ClientError):
                await session.get(f"http://127.0.0.1:{port}/ari/asterisk/ping?{auth}")
            proxy.refuse = False
            async with session.get(f"http://127.0.0.1:{port}/ari/asterisk/ping?{auth}") as resp:
                assert resp.status == 200
    finally:
        await proxy.close()
    assert proxy.live == 0
