"""The server's time: every pause it makes (accept delay, response delays and audio pacing,
transcription delay, session expiry) goes through one ``Clock``, so a test can move time by hand."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic seconds and pauses that a set ``wake`` event ends early."""

    def time(self) -> float: ...

    async def wait(self, seconds: float, wake: asyncio.Event | None = None) -> None: ...


class MonotonicClock:
    """Real time: ``time.monotonic`` and the running event loop's timers."""

    def time(self) -> float:
        return time.monotonic()

    async def wait(self, seconds: float, wake: asyncio.Event | None = None) -> None:
        """Return after ``seconds`` (after one yield when <= 0), or as soon as ``wake`` is set."""
        if seconds <= 0:
            await asyncio.sleep(0)
        elif wake is None:
            await asyncio.sleep(seconds)
        else:
            try:
                await asyncio.wait_for(wake.wait(), seconds)
            except TimeoutError:
                pass
