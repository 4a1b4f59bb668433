"""A call's conversation with its speech backend: start the session within ``[ai]
connect_timeout``, serve it, and decide when a new session takes over: after a session lost
mid-call (``[ai] reconnect_attempts``) and, at a quiet moment, after ``[ai] max_session_s`` or
shortly before the deadline the service gave (``SpeechBackend.expires_at``). The
backend carries the conversation into the new session its own way (``SpeechBackend.resume``)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from aribot.core import events as ev
from aribot.core.backend import BackendType, BackendUnavailable, SessionLost, SessionSetup, SpeechBackend

if TYPE_CHECKING:
    from aribot.core.call import Call

log = logging.getLogger("aribot.conversation")
AGE_CHECK_S = 0.5   # how often the session's age is looked at
EXPIRY_MARGIN_S = 60.0   # roll over this long before the service's deadline (at most a fifth of the session)


class Conversation:
    """Owns the call's SpeechBackend for the call's whole life."""

    def __init__(self, call: "Call", backend_type: BackendType, setup: SessionSetup) -> None:
        self.call = call
        self.type = backend_type
        self.backend: SpeechBackend = backend_type.create(call, setup)
        self.opened_at = 0.0
        self.rollovers = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def cfg(self) -> Any:
        return self.call.settings.ai

    async def run(self) -> None:
        """Start, then serve until the call ends or no session can be had (then the fallback). A
        backend that raises (a bug, or input it did not expect) ends the call politely: the
        fallback prompt, reason ``ai_failed``; never a call left in silence."""
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("call %s: the %s session failed", self.call.id, self.type.name, exc_info=True)
            if self.call.stopping:
                return
            self.call.emit(ev.BackendError(call_id=self.call.id, code="session_failed", message=repr(exc),
                                           fatal=True))
            await self.call.wait_playout(limit=10.0)  # let the caller hear the sentence in flight
            self.call.fail("ai_failed", f"backend {self.type.name}: the session failed ({exc!r})")

    async def _run(self) -> None:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(float(self.cfg.connect_timeout) or None):
                await self.backend.start()
        except (BackendUnavailable, TimeoutError) as exc:
            detail = f"not ready within {self.cfg.connect_timeout:g} s (ai.connect_timeout)" \
                if isinstance(exc, TimeoutError) else str(exc)
            self.call.emit(ev.BackendError(call_id=self.call.id, code="unavailable", message=detail, fatal=True))
            self.call.fail("ai_unavailable", f"backend {self.type.name}: {detail}")
            return
        self.call.emit(ev.BackendReady(call_id=self.call.id, session_id=self.backend.session_id,
                                       connect_ms=(time.perf_counter() - started) * 1000, backend=self.type.name))
        self.opened_at = time.monotonic()
        if self.backend.can_resume:
            self._spawn(self._watch_age())
        try:
            while True:
                lost = await self.backend.serve()
                if lost is None or self.call.ending or not await self._carry_on(lost):
                    return
        finally:
            for task in list(self._tasks):
                task.cancel()

    async def close(self) -> None:
        await self.backend.close()

    async def _carry_on(self, lost: SessionLost) -> bool:
        """A new session with the conversation so far, in ``reconnect_attempts`` tries (a planned
        rollover too); False, after the fallback, when none could be had."""
        planned = lost.reason == "max_session_s"
        attempts = int(self.cfg.reconnect_attempts)
        if not lost.recoverable or not attempts:
            return await self._give_up(lost)
        closed_at = time.perf_counter()
        if planned:
            log.info("call %s: the AI session is due (ai.max_session_s or the service's deadline); rolling over "
                     "to a new one", self.call.id)
        else:
            log.warning("call %s: %s; opening a new session with the conversation so far (up to %d tries)",
                        self.call.id, lost.detail, attempts)
        back = asyncio.Event()
        filler = list(self.cfg.reconnect_filler)
        if filler and not planned:
            self._spawn(self.call.play_prompt(filler, "reconnect filler", until=(back,)))
        try:
            for attempt in range(1, attempts + 1):
                try:
                    async with asyncio.timeout(float(self.cfg.connect_timeout) or None):
                        carried = await self.backend.resume()
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # BackendUnavailable, TimeoutError, or a backend's bug
                    log.warning("call %s: new AI session, try %d of %d, failed: %s", self.call.id, attempt, attempts,
                                (str(error) if isinstance(error, BackendUnavailable) else repr(error))
                                if not isinstance(error, TimeoutError) else "no answer within ai.connect_timeout")
                    await asyncio.sleep(min(2.0, 0.25 * 2 ** (attempt - 1)))
                    continue
                gap_ms = (time.perf_counter() - closed_at) * 1000
                self.rollovers += 1
                self.opened_at = time.monotonic()
                self.call.emit(ev.BackendRollover(call_id=self.call.id, reason=lost.reason, attempt=attempt,
                                                  replayed_items=carried, gap_ms=gap_ms))
                log.info("call %s: new AI session %s after %.0f ms (%d item(s) of the conversation carried over)",
                         self.call.id, self.backend.session_id, gap_ms, carried)
                return True
        finally:
            back.set()
        return await self._give_up(lost, tried=attempts)

    async def _give_up(self, lost: SessionLost, tried: int = 0) -> bool:
        self.call.emit(ev.BackendError(call_id=self.call.id, code=lost.reason, message=lost.detail, fatal=True))
        await self.call.wait_playout(limit=10.0)  # let the caller hear the sentence in flight
        after = f" and {tried} new session(s) failed" if tried else ""
        self.call.fail("ai_closed", f"{lost.detail}{after}")
        return False

    def due(self, now: float) -> bool:
        """The live session should be replaced: ``[ai] max_session_s`` old, or near its deadline."""
        limit = float(self.cfg.max_session_s)
        if limit and now - self.opened_at >= limit:
            return True
        deadline = self.backend.expires_at
        if deadline is None:
            return False
        margin = min(EXPIRY_MARGIN_S, (deadline - self.opened_at) / 5)
        return deadline - now <= margin

    async def _watch_age(self) -> None:
        """Roll over at a quiet moment (no answer being made, nothing left to play, the caller not
        speaking) once the session is due: services end sessions at a hard limit (e.g. 60 min)."""
        while True:
            await asyncio.sleep(AGE_CHECK_S)
            backend = self.backend
            quiet = (backend.ready and not backend.responding and not backend.caller_speaking
                     and not self.call.audio_pending)
            now = time.monotonic()
            if quiet and self.due(now):
                self.opened_at = now   # once per session, even before the new one is open
                await backend.roll_over()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
