"""Time in unit tests without the wall clock: ``ManualClock`` moves only when a test moves it
(waiting for a condition is ``tests.lab.wait.until``).

A ``ManualClock`` serves every place aribot reads the time: call it (``RtpEndpoint(clock=...)``),
use it as an event loop (``Pacer(loop=...)``: ``time``/``call_at``) or as the fake Realtime
server's clock (``server.clock = ...``: ``time``/``wait``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tests.lab.wait import until


class ManualTimer:
    """A callback due at ``when``, pending until the clock reaches it or it is cancelled."""

    __slots__ = ("when", "callback", "cancelled")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """Monotonic seconds from ``start``; timers fire only inside ``advance_to`` / ``stall_until``."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._timers: list[ManualTimer] = []

    def __call__(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object], /) -> ManualTimer:
        timer = ManualTimer(when, callback)
        self._timers.append(timer)
        return timer

    def pending(self) -> list[ManualTimer]:
        """Timers not yet fired nor cancelled, earliest first."""
        self._timers = [timer for timer in self._timers if not timer.cancelled]
        return sorted(self._timers, key=lambda timer: timer.when)

    def advance_to(self, when: float) -> None:
        """Time runs on to ``when``; each timer due by then fires at its own deadline, in order (also
        the timers that the callbacks set, as an event loop that is never late)."""
        while (due := self.pending()) and due[0].when <= when:
            self._timers.remove(due[0])
            self.now = max(self.now, due[0].when)
            due[0].callback()
        self.now = max(self.now, when)

    def stall_until(self, when: float) -> None:
        """The loop was blocked until ``when``: the timers that fell due meanwhile fire only now, late."""
        self.now = max(self.now, when)
        self.advance_to(when)

    async def wait(self, seconds: float, wake: asyncio.Event | None = None) -> None:
        """Sleep ``seconds`` on this clock (one yield when <= 0), or until ``wake`` is set."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        timer = self.call_at(self.now + seconds, lambda: woken.done() or woken.set_result(None))
        waits: list[asyncio.Future[object]] = [woken]
        if wake is not None:
            waits.append(asyncio.ensure_future(wake.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            for future in waits:
                future.cancel()

    async def next_timer(self) -> ManualTimer:
        """The earliest pending timer, once code running on the event loop has set one."""
        pending: list[ManualTimer] = await until(self.pending, "a timer on the manual clock", interval=0)
        return pending[0]

    async def run_until(self, condition: Callable[[], object], guard_s: float = 5.0) -> None:
        """Let the code on the event loop run on this clock, firing its timers one by one at their
        deadlines, until ``condition()`` holds (``guard_s``: real seconds, a hang guard only)."""
        async with asyncio.timeout(guard_s):
            while not condition():
                pending = self.pending()
                if pending:
                    self.advance_to(pending[0].when)
                else:
                    await asyncio.sleep(0)
