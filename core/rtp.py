"""RTP for the ExternalMedia leg: a sans-IO packet codec and a thin asyncio UDP endpoint.

One endpoint (one UDP socket) per call, bound inside the configured port range, given to
Asterisk as ``external_host``, used both to receive and to send, so strict RTP accepts our
packets at once (reference/asterisk-ari.md §2.3).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import random
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger("aribot.rtp")

HEADER = struct.Struct("!BBHII")
PAYLOAD_TYPES = {"ulaw": 0, "alaw": 8}
SILENCE_BYTE = {"ulaw": 0xFF, "alaw": 0xD5}
FRAME_BYTES = 160  # 20 ms of G.711 at 8 kHz
FRAME_SECONDS = 0.020


class RtpError(ValueError):
    """A datagram is not a valid RTP packet; ``reason`` is a short counter name."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(slots=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    @classmethod
    def parse(cls, data: bytes, max_payload: int | None = None) -> "RtpPacket":
        """Decode one datagram (RFC 3550 §5.1): CSRCs, header extension and padding handled; a
        payload longer than ``max_payload`` is refused before it is copied."""
        size = len(data)
        if size < 12:
            raise RtpError("too_short", f"{size} bytes")
        b0, b1, seq, ts, ssrc = HEADER.unpack_from(data)
        if b0 >> 6 != 2:
            raise RtpError("bad_version", f"version {b0 >> 6}")
        offset = 12 + 4 * (b0 & 0x0F)
        if b0 & 0x10:
            if size < offset + 4:
                raise RtpError("bad_extension", "header extension cut short")
            offset += 4 + 4 * int.from_bytes(data[offset + 2:offset + 4], "big")
        end = size
        if b0 & 0x20:
            pad = data[-1]
            if pad == 0 or pad > size - offset:
                raise RtpError("bad_padding", f"padding {pad}")
            end -= pad
        if offset > end:
            raise RtpError("too_short", "header longer than the datagram")
        if max_payload is not None and end - offset > max_payload:
            raise RtpError("oversized", f"{end - offset} payload bytes, at most {max_payload}")
        return cls(b1 & 0x7F, seq, ts, ssrc, data[offset:end], bool(b1 & 0x80))

    def build(self) -> bytes:
        b1 = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        return HEADER.pack(0x80, b1, self.sequence & 0xFFFF, self.timestamp & 0xFFFFFFFF,
                           self.ssrc & 0xFFFFFFFF) + self.payload


class RtpSender:
    """Outbound header state: constant SSRC, seq +1 per packet, ts +160 per frame, and the
    timestamp advanced by the real elapsed samples across pauses (marker on each talk-spurt)."""

    def __init__(self, payload_type: int, ssrc: int | None = None) -> None:
        self.payload_type = payload_type
        self.ssrc = random.getrandbits(32) if ssrc is None else ssrc
        self.sequence = random.getrandbits(16)
        self.timestamp = random.getrandbits(32)
        self._last_sent: float | None = None

    def packet(self, payload: bytes, *, marker: bool, now: float) -> bytes:
        if self._last_sent is not None:
            if marker:
                elapsed = round((now - self._last_sent) * 8000) // FRAME_BYTES * FRAME_BYTES
                self.timestamp += max(FRAME_BYTES, elapsed)
            else:
                self.timestamp += FRAME_BYTES
            self.sequence += 1
        self._last_sent = now
        b1 = (0x80 if marker else 0) | self.payload_type
        return HEADER.pack(0x80, b1, self.sequence & 0xFFFF, self.timestamp & 0xFFFFFFFF,
                           self.ssrc) + payload


# Asterisk sends 50 packets/s at 20 ms (100 at 10 ms); a call accepts up to 200/s with a burst of
# 100 (a second of jitter catch-up at 10 ms) and drops the rest as "rate_limited".
RATE_LIMIT_PPS = 200.0
RATE_BURST = 100


class RtpEndpoint(asyncio.DatagramProtocol):
    """The per-call UDP socket. Valid audio from Asterisk goes to ``on_audio(payload, t)``;
    anything else is dropped and counted by reason, and logged once per reason per call.
    ``clock`` gives ``t`` and refills the rate limiter (a test passes a clock it moves by hand).

    Until Asterisk's media address is known (``connect``) every datagram is foreign; from then on
    the socket is connected to it, so the kernel drops other senders' datagrams before they cost
    a callback (the address check stays for what was queued before). A payload longer than
    ``max_payload`` (the negotiated 20 ms frame: Asterisk's smoother sends exactly that for
    G.711) is dropped as "oversized". A new SSRC from Asterisk (a new stream, e.g. after a
    re-bridge) is logged once and followed."""

    def __init__(self, call_id: str, payload_type: int, on_audio: Callable[[bytes, float], None], *,
                 clock: Callable[[], float] = time.perf_counter, max_payload: int = FRAME_BYTES) -> None:
        self.call_id = call_id
        self.payload_type = payload_type
        self.on_audio = on_audio
        self.max_payload = max_payload
        self.remote: tuple[str, int] | None = None
        self.sock: socket.socket | None = None  # the bound socket, given by PortPool.open
        self.ssrc: int | None = None            # the SSRC of Asterisk's stream, once one packet came
        self.ssrc_changes = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("", 0)
        self.rx_packets = 0
        self.rx_bytes = 0
        self.tx_packets = 0
        self.dropped: Counter[str] = Counter()
        self._clock = clock
        self._tokens = float(RATE_BURST)  # token bucket: CPU and memory per call stay bounded in a flood
        self._refilled = clock()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.local = transport.get_extra_info("sockname")[:2]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        now = self._clock()
        if addr[:2] != self.remote:
            self._drop("foreign_source", f"from {addr[0]}:{addr[1]}, expected "
                       f"{'%s:%s' % self.remote if self.remote else 'nothing yet'}")
            return
        self._tokens = min(RATE_BURST, self._tokens + (now - self._refilled) * RATE_LIMIT_PPS)
        self._refilled = now
        if self._tokens < 1.0:
            self._drop("rate_limited", f"more than {RATE_LIMIT_PPS} packets/s from Asterisk")
            return
        self._tokens -= 1.0
        try:
            packet = RtpPacket.parse(data, self.max_payload)
        except RtpError as exc:
            self._drop(exc.reason, str(exc))
            return
        if packet.payload_type != self.payload_type:
            self._drop("payload_type", f"PT {packet.payload_type}, expected {self.payload_type}")
            return
        if not packet.payload:
            self._drop("empty_payload", "no audio bytes")
            return
        if packet.ssrc != self.ssrc:
            self._new_ssrc(packet.ssrc)
        self.rx_packets += 1
        self.rx_bytes += len(packet.payload)
        self.on_audio(packet.payload, now)

    def connect(self, host: str, port: int | str) -> None:
        """Asterisk's media address (the externalMedia reply's UNICASTRTP_LOCAL_ADDRESS and _PORT):
        only its packets are accepted from now on, and the socket is connected to it. Raises
        ValueError for anything but an IP address and a port, OSError if the socket refuses."""
        number = int(port)
        if not 0 < number < 65536:
            raise ValueError(f"RTP port {port!r} is outside 1..65535")
        self.remote = (str(ipaddress.ip_address(str(host).strip())), number)
        if self.sock is not None:
            self.sock.connect(self.remote)

    def _new_ssrc(self, ssrc: int) -> None:
        if self.ssrc is not None:
            self.ssrc_changes += 1
            if self.ssrc_changes == 1:
                log.info("call %s: Asterisk's RTP stream changed SSRC (%08x → %08x); following it, further "
                         "changes are only counted", self.call_id, self.ssrc, ssrc)
        self.ssrc = ssrc

    def send(self, packet: bytes) -> None:
        if self.transport is not None and self.remote is not None:
            self.transport.sendto(packet, self.remote)
            self.tx_packets += 1

    def error_received(self, exc: Exception) -> None:
        self._drop("socket_error", repr(exc))

    def _drop(self, reason: str, detail: str) -> None:
        self.dropped[reason] += 1
        if self.dropped[reason] == 1:
            log.warning("call %s: dropped an RTP packet (%s: %s); the call goes on, further drops of "
                        "this kind are only counted", self.call_id, reason, detail)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        self.sock = None


class PortPool:
    """Hands out UDP ports of the configured range round-robin, skipping ports in use."""

    def __init__(self, host: str, port_min: int, port_max: int) -> None:
        self.host, self.port_min, self.port_max = host, port_min, port_max
        self._next = random.randint(port_min, port_max)
        self._in_use: set[int] = set()

    async def open(self, endpoint: RtpEndpoint) -> RtpEndpoint:
        loop = asyncio.get_running_loop()
        span = self.port_max - self.port_min + 1
        for _ in range(span):
            port = self._next
            self._next = self.port_min + (port + 1 - self.port_min) % span
            if port in self._in_use:
                continue
            sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind((self.host, port))
            except OSError as exc:
                sock.close()
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise
            sock.setblocking(False)
            endpoint.sock = sock
            await loop.create_datagram_endpoint(lambda: endpoint, sock=sock)
            self._in_use.add(port)
            return endpoint
        raise OSError(errno.EADDRINUSE, f"no free UDP port in {self.host}:{self.port_min}-{self.port_max}")

    def release(self, endpoint: RtpEndpoint) -> None:
        self._in_use.discard(endpoint.local[1])
        endpoint.close()

    @property
    def in_use(self) -> int:
        return len(self._in_use)
