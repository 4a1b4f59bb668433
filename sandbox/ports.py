"""Free-port helpers for the lab: random ports in 20000-60000 that are bindable right now.

Ports are picked at random (not from port 0) so that parallel test runs rarely collide, and
the kernel's ephemeral range (``net.ipv4.ip_local_port_range``) is avoided when enough of the
window is left, so an outgoing connection cannot grab a port between our check and its use.
Never assume 5060/8088 are free: another Asterisk may own them.

Under pytest-xdist each worker draws from its own slice of the window (``PYTEST_XDIST_WORKER``
``gwN`` of ``PYTEST_XDIST_WORKER_COUNT``): the reservations below are per process, so without
the split one worker could hand a sipp media port out of the other worker's Asterisk RTP range.
"""

from __future__ import annotations

import math
import os
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
BLOCK_MIN = 16
# A range that something binds piecemeal for a long time (the lab Asterisk's RTP range: it binds
# a port per call, for the whole session) is held until the process ends: a lapsed reservation
# once let a sipp media port fall inside it, and the sniffer heard another call's audio there.
# Values are the monotonic time at which the reservation ends.
_handed_out: dict[socket.SocketKind, dict[int, float]] = {socket.SOCK_STREAM: {}, socket.SOCK_DGRAM: {}}


def _reserved(ports: range | list[int], kind: socket.SocketKind = socket.SOCK_DGRAM) -> bool:
    now, taken = time.monotonic(), _handed_out[kind]
    return any(taken.get(port, now) > now for port in ports)


def _reserve(ports: range | list[int], kind: socket.SocketKind = socket.SOCK_DGRAM, hold_s: float = RESERVE_S) -> None:
    until = time.monotonic() + hold_s
    for port in ports:
        _handed_out[kind][port] = until


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's ephemeral port range (defaults to Linux's 32768-60999)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _worker_slice(low: int, high: int) -> tuple[int, int]:
    """This xdist worker's share of [low, high): gw0 the first, gw1 the next, ..."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if not (worker.startswith("gw") and worker[2:].isdigit() and count.isdigit() and int(count) > 1):
        return low, high
    index, size = int(worker[2:]), (high - low) // int(count)
    return low + index * size, low + (index + 1) * size


def _window() -> tuple[int, int]:
    """[low, high) to draw from: 20000-60000, minus the ephemeral range if >= 4000 ports remain,
    then this xdist worker's slice of it."""
    eph_low, eph_high = _ephemeral_range()
    if eph_low - LOW >= 4000:
        return _worker_slice(LOW, min(HIGH, eph_low))
    if HIGH - eph_high - 1 >= 4000:
        return _worker_slice(eph_high + 1, HIGH)
    return _worker_slice(LOW, HIGH)


def _bindable(port: int, kind: socket.SocketKind) -> bool:
    """True if ``port`` can be bound on the wildcard address (hence also on 127.0.0.1)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _areas() -> tuple[int, int, int]:
    """``(low, split, high)``: ranges of BLOCK_MIN ports or more come from [low, split), single
    ports and small blocks from [split, high). Scattered small ports (a sipp call takes 4, kept
    RESERVE_S) would otherwise fragment the window until no 400-port RTP range fits."""
    low, high = _window()
    return low, low + (high - low) * 3 // 4, high


def _random_port(kind: socket.SocketKind) -> int:
    _, low, high = _areas()
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


_fit_point: float | None = None


def _first_fit_point(choices: int) -> int:
    """Where this process's short-lived blocks start looking: random, but the same every time."""
    global _fit_point
    if _fit_point is None:
        _fit_point = random.random() / 2   # in the lower half: held ranges fill from the top
    return int(_fit_point * choices)


def free_udp_port_range(count: int, *, hold: bool = False) -> tuple[int, int]:
    """``(start, end)``: ``count`` consecutive free UDP ports, ``start`` even, ``end`` inclusive.
    ``hold``: never hand these ports out again in this process (for a range bound piecemeal for
    a long time, such as an Asterisk's RTP range); otherwise they are reserved for RESERVE_S."""
    if count < 1:
        raise ValueError("count must be >= 1")
    blocks_low, split, singles_high = _areas()
    if count >= BLOCK_MIN:
        # first fit, so blocks pack and a lapsed one's space is reused: held (long-lived) ranges
        # from the top of the area down, short-lived ones upward from this process's own random
        # point (other processes rarely start at the same place). A fresh random start per block
        # scattered 60 s reservations of 64 ports until no 400-port Asterisk range fit.
        low, high = blocks_low, split
        evens = list(range(low + (low & 1), high - count + 1, 2))
        if hold:
            starts = evens[::-1]
        else:
            first = _first_fit_point(len(evens))
            starts = evens[first:] + evens[:first]
    else:  # random starts, then every even start in order
        low, high = split, singles_high
        starts = [random.randrange(low, high - count) & ~1 for _ in range(_ATTEMPTS)]
        starts += list(range(low + (low & 1), high - count, 2))
    for start in starts:
        block = range(start, start + count)
        if not _reserved(block) and all(_bindable(p, socket.SOCK_DGRAM) for p in block):
            _reserve(block, hold_s=math.inf if hold else RESERVE_S)
            return start, start + count - 1
    raise RuntimeError(f"no block of {count} free UDP ports found in {low}-{high}")
