"""RTP codec, sender header state and the UDP endpoint's drop rules (real sockets on loopback; the
rate limiter on a manual clock)."""

from __future__ import annotations

import logging
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aribot.core.rtp import (
    FRAME_BYTES,
    FRAME_SECONDS,
    RATE_BURST,
    RATE_LIMIT_PPS,
    PortPool,
    RtpEndpoint,
    RtpError,
    RtpPacket,
    RtpSender,
)
from tests.lab.wait import until
from tests.unit.timing import ManualClock


def test_round_trip() -> None:
    packet = RtpPacket(0, 65535, 0xFFFFFFFF, 0x12345678, b"\x01" * 160, marker=True)
    parsed = RtpPacket.parse(packet.build())
    assert parsed == packet


def test_csrc_extension_and_padding_are_skipped() -> None:
    header = struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 2, 0, 7, 160, 1)
    csrcs = b"\x00" * 8
    extension = struct.pack("!HH", 0xBEDE, 1) + b"\xAA" * 4
    payload = b"\x55" * 160
    padding = b"\x00\x00\x03"
    parsed = RtpPacket.parse(header + csrcs + extension + payload + padding)
    assert parsed.payload == payload and parsed.sequence == 7


@pytest.mark.parametrize("data,reason", [
    (b"\x80\x00", "too_short"),
    (struct.pack("!BBHII", 0x40, 0, 1, 1, 1) + b"x", "bad_version"),
    (struct.pack("!BBHII", 0x80 | 0x20, 0, 1, 1, 1) + b"ab\x00", "bad_padding"),
    (struct.pack("!BBHII", 0x80 | 0x20, 0, 1, 1, 1) + b"ab\x09", "bad_padding"),
    (struct.pack("!BBHII", 0x80 | 0x10, 0, 1, 1, 1) + b"\x00", "bad_extension"),
    (struct.pack("!BBHII", 0x80 | 0x0F, 0, 1, 1, 1) + b"\x00" * 8, "too_short"),
])
def test_malformed_packets_raise(data: bytes, reason: str) -> None:
    with pytest.raises(RtpError) as info:
        RtpPacket.parse(data)
    assert info.value.reason == reason


def test_sender_sequence_timestamp_marker() -> None:
    sender = RtpSender(0, ssrc=99)
    first = RtpPacket.parse(sender.packet(b"a" * FRAME_BYTES, marker=True, now=10.0))
    second = RtpPacket.parse(sender.packet(b"b" * FRAME_BYTES, marker=False, now=10.02))
    # a new talk-spurt 1 s later: the timestamp advances by the real elapsed samples
    third = RtpPacket.parse(sender.packet(b"c" * FRAME_BYTES, marker=True, now=11.02))
    assert first.marker and not second.marker and third.marker
    assert {first.ssrc, second.ssrc, third.ssrc} == {99}
    assert (second.sequence - first.sequence) % 65536 == 1
    assert (third.sequence - second.sequence) % 65536 == 1
    assert (second.timestamp - first.timestamp) % 2**32 == 160
    assert (third.timestamp - second.timestamp) % 2**32 == 8000


async def test_endpoint_accepts_only_asterisk_and_valid_audio() -> None:
    got: list[bytes] = []
    endpoint = RtpEndpoint("c1", 0, lambda payload, t: got.append(payload))
    pool = PortPool("127.0.0.1", 40000, 40999)
    await pool.open(endpoint)
    asterisk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    asterisk.bind(("127.0.0.1", 0))
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.1", 0))
    endpoint.remote = asterisk.getsockname()
    good = RtpPacket(0, 1, 160, 5, b"\x10" * 160).build()
    target = endpoint.local
    asterisk.sendto(good, target)
    stranger.sendto(good, target)                                   # foreign source
    asterisk.sendto(b"\x00" * 5, target)                            # malformed
    asterisk.sendto(RtpPacket(8, 2, 320, 5, b"\x10" * 160).build(), target)  # wrong PT
    asterisk.sendto(RtpPacket(0, 3, 480, 5, b"").build(), target)   # no audio
    asterisk.sendto(RtpPacket(0, 4, 640, 5, b"\x20" * 160).build(), target)
    await until(lambda: sum(endpoint.dropped.values()) == 4 and len(got) == 2, "the six datagrams")
    assert got == [b"\x10" * 160, b"\x20" * 160]
    assert endpoint.dropped == {"foreign_source": 1, "too_short": 1, "payload_type": 1, "empty_payload": 1}
    endpoint.send(RtpPacket(0, 9, 9, 9, b"x").build())
    data, addr = asterisk.recvfrom(2048)
    assert addr == target and RtpPacket.parse(data).payload == b"x"   # sent from the receiving socket
    pool.release(endpoint)
    asterisk.close()
    stranger.close()


ASTERISK = ("127.0.0.1", 4000)
AUDIO_PACKET = RtpPacket(0, 1, 160, 5, b"\x10" * 160).build()


def endpoint_on(clock: ManualClock, got: list[float]) -> RtpEndpoint:
    """An endpoint that hears Asterisk at ``ASTERISK`` and appends each packet's time to ``got``."""
    endpoint = RtpEndpoint("c1", 0, lambda payload, t: got.append(t), clock=clock)
    endpoint.remote = ASTERISK
    return endpoint


def test_a_flood_from_asterisk_is_rate_limited_and_counted() -> None:
    clock, got = ManualClock(), []
    endpoint = endpoint_on(clock, got)
    for _ in range(1000):  # 20 s of audio in one instant: far above any real stream
        endpoint.datagram_received(AUDIO_PACKET, ASTERISK)
    assert len(got) == RATE_BURST and endpoint.dropped == {"rate_limited": 1000 - RATE_BURST}
    clock.advance_to(clock.now + 0.1025)  # refills 20.5 packets' worth at 200/s
    for _ in range(30):
        endpoint.datagram_received(AUDIO_PACKET, ASTERISK)
    assert len(got) == endpoint.rx_packets == RATE_BURST + 20 and got[-1] == clock.now
    assert endpoint.dropped == {"rate_limited": 1000 - RATE_BURST + 10}
    clock.advance_to(clock.now + 3600.0)  # a quiet hour refills the bucket up to the burst, not beyond
    for _ in range(RATE_BURST + 1):
        endpoint.datagram_received(AUDIO_PACKET, ASTERISK)
    assert endpoint.rx_packets == 2 * RATE_BURST + 20 and endpoint.dropped == {"rate_limited": 1000 - RATE_BURST + 11}


def test_a_stream_at_the_rate_limit_is_never_dropped() -> None:
    clock, got = ManualClock(), []
    endpoint = endpoint_on(clock, got)
    start = clock.now
    for n in range(1, 10 * int(RATE_LIMIT_PPS) + 1):  # 10 s at exactly the limit
        clock.advance_to(start + n / RATE_LIMIT_PPS)
        endpoint.datagram_received(AUDIO_PACKET, ASTERISK)
    assert endpoint.rx_packets == 10 * RATE_LIMIT_PPS and not endpoint.dropped


def test_a_normal_stream_is_never_rate_limited() -> None:
    clock, got = ManualClock(), []
    endpoint = endpoint_on(clock, got)
    start = clock.now
    for n in range(3000):  # a minute at 50 packets/s
        clock.advance_to(start + n * FRAME_SECONDS)
        endpoint.datagram_received(AUDIO_PACKET, ASTERISK)
    assert endpoint.rx_packets == 3000 and not endpoint.dropped
    assert got == [start + n * FRAME_SECONDS for n in range(3000)]  # each packet is stamped by the clock


async def test_port_pool_skips_busy_ports_and_exhausts() -> None:
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    pool = PortPool("127.0.0.1", port, port + 1)
    pool._next = port
    first = await pool.open(RtpEndpoint("a", 0, lambda *a: None))
    assert first.local[1] == port + 1
    with pytest.raises(OSError):
        await pool.open(RtpEndpoint("b", 0, lambda *a: None))
    pool.release(first)
    busy.close()


# --- issue 15: payload size, SSRC, the connected socket, fuzzing ---------------------------------

def test_a_payload_longer_than_the_frame_is_dropped_and_counted() -> None:
    clock, got = ManualClock(), []
    endpoint = RtpEndpoint("c1", 0, lambda payload, t: got.append(payload), clock=clock)
    endpoint.remote = ASTERISK
    header_extras = struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 1, 0, 9, 160, 5) + b"\x00" * 4 \
        + struct.pack("!HH", 0xBEDE, 1) + b"\xAA" * 4
    for data in (RtpPacket(0, 1, 160, 5, b"\x10" * 60000).build(),      # the review's probe
                 RtpPacket(0, 2, 320, 5, b"\x10" * (FRAME_BYTES + 1)).build(),
                 RtpPacket(0, 3, 480, 5, b"\x20" * FRAME_BYTES).build(),   # exactly a frame: audio
                 header_extras + b"\x30" * FRAME_BYTES + b"\x00\x00\x03",  # a frame behind CSRC, extension, padding
                 RtpPacket(0, 4, 640, 5, b"\x40" * 80).build()):          # 10 ms: shorter is fine
        endpoint.datagram_received(data, ASTERISK)
    assert got == [b"\x20" * FRAME_BYTES, b"\x30" * FRAME_BYTES, b"\x40" * 80]
    assert endpoint.dropped == {"oversized": 2} and endpoint.rx_packets == 3
    with pytest.raises(RtpError) as info:
        RtpPacket.parse(RtpPacket(0, 1, 1, 1, b"\x00" * 161).build(), max_payload=160)
    assert info.value.reason == "oversized"
    assert RtpPacket.parse(RtpPacket(0, 1, 1, 1, b"\x00" * 161).build()).payload == b"\x00" * 161  # no limit asked


def test_an_ssrc_change_is_logged_once_and_followed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "aribot.rtp")
    clock, got = ManualClock(), []
    endpoint = RtpEndpoint("c1", 0, lambda payload, t: got.append(payload), clock=clock)
    endpoint.remote = ASTERISK
    for seq, ssrc in enumerate((5, 5, 0xDEADBEEF, 0xDEADBEEF, 7, 5)):
        endpoint.datagram_received(RtpPacket(0, seq, 160 * seq, ssrc, bytes([seq]) * 160).build(), ASTERISK)
    assert got == [bytes([seq]) * 160 for seq in range(6)]          # every packet followed, none dropped
    assert endpoint.ssrc == 5 and endpoint.ssrc_changes == 3 and not endpoint.dropped
    lines = [r.getMessage() for r in caplog.records if "SSRC" in r.getMessage()]
    assert lines == ["call c1: Asterisk's RTP stream changed SSRC (00000005 → deadbeef); following it, further "
                     "changes are only counted"]


async def test_once_asterisk_is_known_the_kernel_drops_foreign_packets() -> None:
    """Before the externalMedia reply every datagram is foreign (dropped and counted in Python);
    after ``connect`` a stranger's datagrams never reach aribot, and sending still works."""
    got: list[bytes] = []
    endpoint = RtpEndpoint("c1", 0, lambda payload, t: got.append(payload))
    pool = PortPool("127.0.0.1", 41000, 41999)
    await pool.open(endpoint)
    asterisk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    asterisk.bind(("127.0.0.1", 0))
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.1", 0))
    good = RtpPacket(0, 1, 160, 5, b"\x10" * 160).build()
    try:
        stranger.sendto(good, endpoint.local)                       # nothing is known yet
        await until(lambda: endpoint.dropped["foreign_source"] == 1, "the early datagram")
        endpoint.connect(*asterisk.getsockname())
        assert endpoint.sock is not None and endpoint.sock.getpeername() == asterisk.getsockname()
        for _ in range(50):
            stranger.sendto(good, endpoint.local)                   # dropped by the kernel
        asterisk.sendto(RtpPacket(0, 2, 320, 5, b"\x20" * 160).build(), endpoint.local)
        await until(lambda: got, "Asterisk's packet")               # loopback keeps order: the 50 came first
        assert got == [b"\x20" * 160] and endpoint.dropped == {"foreign_source": 1}
        endpoint.send(RtpPacket(0, 9, 9, 9, b"x").build())
        data, addr = asterisk.recvfrom(2048)
        assert addr == endpoint.local and RtpPacket.parse(data).payload == b"x"
    finally:
        pool.release(endpoint)
        asterisk.close()
        stranger.close()


@pytest.mark.parametrize("host,port", [("asterisk.example.com", 4000), ("127.0.0.1", 0), ("127.0.0.1", 70000),
                                       ("127.0.0.1", "abc"), ("", 4000)])
def test_connect_takes_only_an_ip_address_and_a_port(host: str, port) -> None:
    endpoint = RtpEndpoint("c1", 0, lambda payload, t: None)
    with pytest.raises(ValueError):
        endpoint.connect(host, port)
    assert endpoint.remote is None


DROP_REASONS = {"too_short", "bad_version", "bad_extension", "bad_padding", "oversized", "payload_type",
                "empty_payload", "rate_limited"}


@st.composite
def rtp_datagrams(draw: st.DrawFn) -> bytes:
    """RTP packets built field by field (CSRCs, a header extension and padding, each well formed
    or not; payloads from empty to well over a frame), one byte sometimes overwritten; or any
    bytes at all."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=400))
    csrc, extension, padding = draw(st.integers(0, 15)), draw(st.booleans()), draw(st.integers(0, 4))
    version = draw(st.sampled_from([2, 2, 2, 2, 0, 1, 3]))
    b0 = (version << 6) | (0x20 if padding else 0) | (0x10 if extension else 0) | csrc
    header = struct.pack("!BBHII", b0, draw(st.sampled_from([0, 0x80, 8, 101, 127, 255])),
                         draw(st.integers(0, 0xFFFF)), draw(st.integers(0, 2**32 - 1)),
                         draw(st.sampled_from([5, 6, 0, 2**32 - 1])))
    header += bytes(4 * csrc)
    if extension:
        words = draw(st.integers(0, 3))
        header += struct.pack("!HH", 0xBEDE, draw(st.sampled_from([words, words, 0xFFFF]))) + bytes(4 * words)
    payload = bytes(draw(st.sampled_from([0, 1, 80, 159, 160, 161, 320, 1000])))
    tail = bytes(padding - 1) + bytes([draw(st.sampled_from([padding, padding, 0, 255]))]) if padding else b""
    data = bytearray(header + payload + tail)
    if data and draw(st.integers(0, 3)) == 0:
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@given(data=rtp_datagrams(), limit=st.one_of(st.none(), st.sampled_from([0, 80, 160]), st.integers(0, 400)))
def test_the_parser_raises_only_rtp_error_and_respects_the_limit(data: bytes, limit: int | None) -> None:
    try:
        packet = RtpPacket.parse(data, limit)
    except RtpError as exc:
        assert exc.reason in DROP_REASONS
        return
    assert limit is None or len(packet.payload) <= limit
    assert len(packet.payload) <= len(data) - 12 and 0 <= packet.payload_type < 128


@given(datagrams=st.lists(rtp_datagrams(), max_size=30))
def test_the_endpoint_counts_every_datagram_it_does_not_pass_on(datagrams: list[bytes]) -> None:
    """Whatever Asterisk's address sends: nothing raises, each datagram is either audio (a
    non-empty payload of at most one frame) or one count of a known drop reason."""
    clock, got = ManualClock(), []
    endpoint = RtpEndpoint("c1", 0, lambda payload, t: got.append(payload), clock=clock)
    endpoint.remote = ASTERISK
    for data in datagrams:
        clock.advance_to(clock.now + FRAME_SECONDS)
        endpoint.datagram_received(data, ASTERISK)
    assert len(got) + sum(endpoint.dropped.values()) == len(datagrams) == endpoint.rx_packets + sum(
        endpoint.dropped.values())
    assert set(endpoint.dropped) <= DROP_REASONS
    assert all(0 < len(payload) <= FRAME_BYTES for payload in got)
