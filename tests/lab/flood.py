"""An RTP flood that claims to come from Asterisk: raw IPv4/UDP packets with a forged source
address and port (needs root), so they pass aribot's source check and reach its rate limiter,
as a misbehaving media server or a spoofing attacker on the path would.

    flood = RtpFlood(src=("127.0.0.1", asterisk_port), dst=("127.0.0.1", aribot_port), pps=500)
    task = asyncio.create_task(flood.run(seconds=5))
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from dataclasses import dataclass


def _ipv4_udp(src: tuple[str, int], dst: tuple[str, int], payload: bytes, ident: int) -> bytes:
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload  # checksum 0: none (IPv4)
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ident & 0xFFFF, 0x4000, 64, socket.IPPROTO_UDP,
                         0, socket.inet_aton(src[0]), socket.inet_aton(dst[0]))
    words = struct.unpack("!10H", header)
    total = sum(words)
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return header[:10] + struct.pack("!H", ~total & 0xFFFF) + header[12:] + udp


def send_forged(src: tuple[str, int], dst: tuple[str, int], payloads: list[bytes]) -> None:
    """Send each payload as one UDP datagram from the forged ``src`` (raw socket; root only)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    try:
        for n, payload in enumerate(payloads):
            sock.sendto(_ipv4_udp(src, dst, payload, n), (dst[0], 0))
    finally:
        sock.close()


@dataclass
class RtpFlood:
    """Valid-looking µ-law RTP (PT 0, 160-byte payloads) at ``pps`` packets per second."""

    src: tuple[str, int]
    dst: tuple[str, int]
    pps: float = 500.0
    sent: int = 0

    async def run(self, seconds: float) -> int:
        """Send for ``seconds`` (paced in 10 ms batches); returns the packets sent."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        try:
            start = time.monotonic()
            while (elapsed := time.monotonic() - start) < seconds:
                due = int(elapsed * self.pps) + 1
                while self.sent < due:
                    rtp = struct.pack("!BBHII", 0x80, 0, self.sent & 0xFFFF, 160 * self.sent, 0xF100D) + b"\x55" * 160
                    sock.sendto(_ipv4_udp(self.src, self.dst, rtp, self.sent), (self.dst[0], 0))
                    self.sent += 1
                await asyncio.sleep(0.01)
        finally:
            sock.close()
        return self.sent
