"""DTMF collection (``[dtmf]``): digits are collected until the terminator (not part of the result),
``max_digits``, the inter-digit timeout or the final timeout. The result is set as the channel
variable ``DTMF_RESULT``, a ``DtmfCollected`` event is emitted, and the handler chosen in
``[dtmf] handler`` runs (handlers are plugins: ``register_dtmf_handlers``). A key press stops the
AI's audio and the greeting at once (``stop_audio``)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aribot import DtmfCollected, DtmfReceived, Setting, SettingsError, as_bool, as_str, hookimpl, number

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
        collected = DtmfCollected(call_id=self.call.id, digits=digits, reason=reason, masked=self.cfg.mask)
        log.info("call %s: DTMF %r collected (%s)", self.call.id, collected.shown, reason)
        self.call.spawn(self._deliver(collected))

    async def _deliver(self, collected: DtmfCollected) -> None:
        call, digits, reason = self.call, collected.digits, collected.reason
        await call.set_variable("DTMF_RESULT", digits, shown=collected.shown)
        call.emit(collected)
        await call.app.dtmf_handlers[self.cfg.handler](call, digits, reason)


@hookimpl
def register_call_features(register):
    register("dtmf", DtmfCollector)


@hookimpl
def register_settings(register):
    seconds = "seconds 0..600 (0 = off)"
    register(Setting("dtmf.enabled", True, as_bool, "true or false", "collect keypad digits (DTMF_ENABLED)",
                     legacy=("DTMF_ENABLED",)))
    register(Setting("dtmf.interdigit_timeout", 2.0, number(float, 0, 600), seconds,
                     "seconds after a digit with no next digit → the digits are final (DTMF_INTERDIGIT_TIMEOUT_SECONDS); "
                     "0 = off", legacy=("DTMF_INTERDIGIT_TIMEOUT_SECONDS",)))
    register(Setting("dtmf.final_timeout", 5.0, number(float, 0, 600), seconds,
                     "seconds after the first digit → the digits are final (DTMF_FINAL_TIMEOUT_SECONDS); 0 = off",
                     legacy=("DTMF_FINAL_TIMEOUT_SECONDS",)))
    register(Setting("dtmf.max_digits", 16, number(int, 1, 100), "an integer 1..100",
                     "the digits are final at this many (DTMF_MAX_DIGITS)", legacy=("DTMF_MAX_DIGITS",)))
    register(Setting("dtmf.terminator", "#", terminator, "one of 0-9 * # A-D, or empty",
                     "key that makes the digits final; not part of the result (DTMF_TERMINATOR_DIGIT); empty = none",
                     legacy=("DTMF_TERMINATOR_DIGIT",)))
    register(Setting("dtmf.stop_audio", True, as_bool, "true or false", "a key press stops the AI's audio at once"))
    register(Setting("dtmf.mask", True, as_bool, "true or false",
                     "show keypad digits as x in log lines, the call history and /logs (PINs, card numbers); the AI, "
                     "the handler and DTMF_RESULT still get them"))
    register(Setting("dtmf.handler", "to_ai", lambda v: as_str(v).strip().lower(), "a registered DTMF handler name",
                     "to_ai (the AI is told the digits and answers) or dialplan (continue in the dialplan)"))


@hookimpl
def check_app(app):
    handler = app.settings.dtmf.handler
    if handler not in app.dtmf_handlers:
        raise SettingsError(f"setting dtmf.handler = {handler!r} is not valid: expected one of the registered DTMF "
                            f"handlers: {', '.join(sorted(app.dtmf_handlers)) or 'none (no DTMF-handler plugin is enabled)'}")
