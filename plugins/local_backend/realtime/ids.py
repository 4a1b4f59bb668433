"""Realistic, time-ordered ids: ``prefix`` + base62 characters (reference §3.2).

Real ids look like ``event_Ct1OVqJmiaDhg4nkh3JWr``: the first characters encode time,
so ids of one session sort in creation order. Here the first 10 characters encode a
strictly increasing microsecond counter and the rest are random.
"""

from __future__ import annotations

import random
import threading
import time

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # ASCII order
TIME_CHARS = 10

_lock = threading.Lock()
_last_us = 0
_rng = random.Random()


def _monotonic_stamp() -> int:
    """Microseconds since the epoch, strictly increasing across calls in this process."""
    global _last_us
    with _lock:
        _last_us = max(_last_us + 1, time.time_ns() // 1000)
        return _last_us


def _base62(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, digit = divmod(value, 62)
        chars.append(BASE62[digit])
    return "".join(reversed(chars))


def new_id(prefix: str, length: int = 21) -> str:
    """Return ``prefix_`` + ``length`` base62 chars whose leading chars sort by creation time."""
    stamp = _base62(_monotonic_stamp(), TIME_CHARS)
    tail = "".join(_rng.choice(BASE62) for _ in range(length - TIME_CHARS))
    return f"{prefix}_{stamp}{tail}"


def event_id() -> str:
    """A server event id (``event_`` + 21 chars)."""
    return new_id("event")


def item_id() -> str:
    """A conversation item id (``item_`` + 21 chars)."""
    return new_id("item")


def call_id() -> str:
    """A function call id (``call_`` + 16 chars)."""
    return new_id("call", 16)


def random_token(rng: random.Random, low: int = 8, high: int = 16) -> str:
    """A random base62 string, used for ``obfuscation`` fields."""
    return "".join(rng.choice(BASE62) for _ in range(rng.randint(low, high)))
