"""DTMF collection (``[dtmf]``): digits are collected until the terminator (not part of the result),
``max_digits``, the inter-digit timeout or the final timeout. The result is set as the channel
variable ``DTMF_RESULT``, a ``DtmfCollected`` event is emitted, and the handler chosen in
``[dtmf] handler`` runs (handlers are plugins: ``register_dtmf_handlers``). A key press stops the
AI's audio and the greeting at once (``stop_audio``)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from core import hookimpl
from core.events import DtmfCollected, DtmfReceived
from core.settings import Rule, as_bool, as_str, number

log = logging.getLogger("aribot.dtmf")
KEYS = set("0123456789*#ABCD")


def terminator(value: Any) -> str:
    text = as_str(value).strip().upper()
    if text and text not in KEYS:
        raise ValueError(value)
    return text


class DtmfCollector:
    def __init__(self, call: Any) -> None:
        self.call = call
        self.cfg = call.settings.dtmf
        self.digits: list[str] = []
        self._interdigit: asyncio.TimerHandle | None = None
        self._final: asyncio.TimerHandle | None = None

    async def run(self) -> None:
        if not self.cfg.enabled:
            return
        self.call.on(DtmfReceived, self.on_digit)
        await asyncio.Event().wait()  # lives as long as the call

    def on_digit(self, event: DtmfReceived) -> None:
        call, digit = self.call, event.digit.upper()
        if self.cfg.stop_audio:
            if call.greeting_active:
                call.spawn(call.stop_greeting())
            if call.bot_speaking:
                call.spawn(call.interrupt_ai(f"key {digit} pressed"))
        if self.cfg.terminator and digit == self.cfg.terminator:
            self.finish("terminator")
            return
        self.digits.append(digit)
        if len(self.digits) >= self.cfg.max_digits:
            self.finish("max_digits")
            return
        loop = asyncio.get_running_loop()
        if self._interdigit is not None:
            self._interdigit.cancel()
        if self.cfg.interdigit_timeout:
            self._interdigit = loop.call_later(self.cfg.interdigit_timeout, self.finish, "interdigit_timeout")
        if self._final is None and self.cfg.final_timeout:
            self._final = loop.call_later(self.cfg.final_timeout, self.finish, "final_timeout")

    def finish(self, reason: str) -> None:
        for handle in (self._interdigit, self._final):
            if handle is not None:
                handle.cancel()
        self._interdigit = self._final = None
        digits, self.digits = "".join(self.digits), []
        log.info("call %s: DTMF %r collected (%s)", self.call.id, digits, reason)
        self.call.spawn(self._deliver(digits, reason))

    async def _deliver(self, digits: str, reason: str) -> None:
        call = self.call
        await call.set_variable("DTMF_RESULT", digits)
        call.emit(DtmfCollected(call_id=call.id, digits=digits, reason=reason))
        await call.app.dtmf_handlers[self.cfg.handler](call, digits, reason)


@hookimpl
def register_call_features(register):
    register("dtmf", DtmfCollector)


@hookimpl
def register_settings_rules(register):
    seconds = "seconds 0..600 (0 = off)"
    register(Rule("dtmf.enabled", as_bool, "true or false"))
    register(Rule("dtmf.interdigit_timeout", number(float, 0, 600), seconds))
    register(Rule("dtmf.final_timeout", number(float, 0, 600), seconds))
    register(Rule("dtmf.max_digits", number(int, 1, 100), "an integer 1..100"))
    register(Rule("dtmf.terminator", terminator, "one of 0-9 * # A-D, or empty"))
    register(Rule("dtmf.stop_audio", as_bool, "true or false"))
    register(Rule("dtmf.handler", lambda v: as_str(v).strip().lower(), "a registered DTMF handler name"))
