"""Free-port helpers for the lab: random ports in 20000-60000 that are bindable right now.

Ports are picked at random (not from port 0) so that parallel test runs rarely collide, and
the kernel's ephemeral range (``net.ipv4.ip_local_port_range``) is avoided when enough of the
window is left, so an outgoing connection cannot grab a port between our check and its use.
Never assume 5060/8088 are free: another Asterisk may own them.
"""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path

LOW, HIGH = 20000, 60000
_ATTEMPTS = 200
# Ports recently handed out by this process: a port checked free but not bound yet (sipp binds
# its media ports when it starts, aribot its RTP range on each call) must not be given twice.
# A reservation lapses after RESERVE_S: by then the port is bound (and so not bindable) or free
# again, and a long test session does not fragment the window until no large block is left.
RESERVE_S = 60.0
_handed_out: dict[socket.SocketKind, dict[int, float]] = {socket.SOCK_STREAM: {}, socket.SOCK_DGRAM: {}}


def _reserved(ports: range | list[int], kind: socket.SocketKind = socket.SOCK_DGRAM) -> bool:
    now, taken = time.monotonic(), _handed_out[kind]
    return any(now - taken.get(port, -RESERVE_S) < RESERVE_S for port in ports)


def _reserve(ports: range | list[int], kind: socket.SocketKind = socket.SOCK_DGRAM) -> None:
    now = time.monotonic()
    for port in ports:
        _handed_out[kind][port] = now


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's ephemeral port range (defaults to Linux's 32768-60999)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _window() -> tuple[int, int]:
    """[low, high) to draw from: 20000-60000, minus the ephemeral range if >= 4000 ports remain."""
    eph_low, eph_high = _ephemeral_range()
    if eph_low - LOW >= 4000:
        return LOW, min(HIGH, eph_low)
    if HIGH - eph_high - 1 >= 4000:
        return eph_high + 1, HIGH
    return LOW, HIGH


def _bindable(port: int, kind: socket.SocketKind) -> bool:
    """True if ``port`` can be bound on the wildcard address (hence also on 127.0.0.1)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _random_port(kind: socket.SocketKind) -> int:
    low, high = _window()
    for _ in range(_ATTEMPTS):
        port = random.randrange(low, high)
        if not _reserved([port], kind) and _bindable(port, kind):
            _reserve([port], kind)
            return port
    raise RuntimeError(f"no free {kind.name} port found in {low}-{high} after {_ATTEMPTS} tries")


def free_tcp_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    return _random_port(socket.SOCK_STREAM)


def free_udp_port() -> int:
    """A UDP port that is free on 127.0.0.1 right now."""
    return _random_port(socket.SOCK_DGRAM)


def free_udp_port_range(count: int) -> tuple[int, int]:
    """``(start, end)``: ``count`` consecutive free UDP ports, ``start`` even, ``end`` inclusive."""
    if count < 1:
        raise ValueError("count must be >= 1")
    low, high = _window()
    starts = [random.randrange(low, high - count) & ~1 for _ in range(_ATTEMPTS)]
    starts += list(range(low + (low & 1), high - count, 2))  # then every even start, in order
    for start in starts:
        block = range(start, start + count)
        if not _reserved(block) and all(_bindable(p, socket.SOCK_DGRAM) for p in block):
            _reserve(block)
            return start, start + count - 1
    raise RuntimeError(f"no block of {count} free UDP ports found in {low}-{high}")
