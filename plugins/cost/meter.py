"""The per-call cost meter: bus events in (``BackendReady``, ``ResponseDone``, ``UsageUpdated``,
``CallEnded``), ``CostUpdated`` out whenever a call's cost changes, and ``[call] max_cost`` enforced.

Work happens only when the AI service reports usage (once per response for Realtime, about once a
minute for GPT-Live), never per audio frame. A call's state is dropped at its ``CallEnded``.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aribot.core import events as ev
from aribot.plugins.cost.prices import (
    Prices,
    UsageError,
    billing,
    minutes_usd,
    responses_counts,
    token_counts,
    tokens_usd,
)

log = logging.getLogger("aribot.cost")
OWNER = "cost"            # owner of the bus subscriptions (the plugin's name)
RESPONSES_PREFIX = "responses_"  # breakdown parts of GPT-Live's delegation model


@dataclass
class CallCost:
    """What one call has used so far, and what that costs at ``prices``."""

    backend: str
    prices: Prices
    tokens: Counter[str] = field(default_factory=Counter)            # Realtime tokens by part
    responses_tokens: Counter[str] = field(default_factory=Counter)  # delegation model tokens by part
    seconds: float = 0.0          # session seconds the service reported (cumulative over the call)
    usd: float = 0.0              # the total last sent in a CostUpdated
    limit_hit: bool = False       # [call] max_cost was acted on
    bad_usage: int = 0            # usage blocks refused

    @property
    def billing(self) -> str:
        return billing(self.backend)

    def add_response_usage(self, usage: Any) -> bool:
        """A Realtime ``response.done`` usage block; True if it was counted. Raises UsageError."""
        if self.billing != "tokens" or not usage:
            return False
        self.tokens.update(token_counts(usage))
        return True

    def add_usage(self, seconds: float | None, tokens: Any) -> bool:
        """A ``UsageUpdated``: cumulative session seconds and/or one more delegated task's tokens;
        True if it was counted. Raises UsageError."""
        counted = False
        if tokens and self.billing == "gpt_live":
            self.responses_tokens.update(responses_counts(tokens))
            counted = True
        if seconds is not None and self.billing in ("gpt_live", "minutes"):
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < 1e9:
                raise UsageError(f"seconds is {seconds!r}, not a number of seconds")
            if seconds > self.seconds:   # cumulative: never sum two reports, never go back
                self.seconds = float(seconds)
                counted = True
        return counted

    def breakdown(self) -> dict[str, float]:
        """USD by part, only the parts that cost something."""
        prices, kind = self.prices, self.billing
        if kind == "tokens":
            return tokens_usd(self.tokens, prices.realtime)
        if kind == "gpt_live":
            return {**minutes_usd(self.seconds, prices.gpt_live_per_minute),
                    **tokens_usd(self.responses_tokens, prices.responses, RESPONSES_PREFIX)}
        if kind == "minutes":
            return minutes_usd(self.seconds, prices.other_per_minute)
        return {}


class CostMeter:
    """The cost of every live call of one App."""

    def __init__(self, app: Any, prices: Prices) -> None:
        self.app = app
        self.prices = prices
        self.calls: dict[str, CallCost] = {}

    def start(self) -> None:
        subscribe = self.app.bus.subscribe
        subscribe(ev.BackendReady, self._on_ready, owner=OWNER)
        subscribe(ev.ResponseDone, self._on_response_done, owner=OWNER)
        subscribe(ev.UsageUpdated, self._on_usage, owner=OWNER)
        subscribe(ev.CallEnded, self._on_ended, owner=OWNER)

    def stop(self) -> None:
        self.app.bus.disconnect_owner(OWNER)
        self.calls.clear()

    # --- bus receivers ----------------------------------------------------------------------------
    def _on_ready(self, event: ev.BackendReady) -> None:
        """The first session of a call starts its meter at 0 (a CostUpdated says which backend
        and that the call is metered); a rollover's new session goes on with the same meter."""
        if event.call_id not in self.calls:
            cost = self.calls[event.call_id] = CallCost(event.backend or self._backend_of(event.call_id), self.prices)
            self._emit(event.call_id, cost, force=True)

    def _on_response_done(self, event: ev.ResponseDone) -> None:
        if not event.usage:
            return
        cost = self._meter(event.call_id)
        if cost is None:
            return
        try:
            counted = cost.add_response_usage(event.usage)
        except UsageError as exc:
            self._refused(event.call_id, cost, f"the usage of response {event.response_id or '?'}", exc)
            return
        if counted:
            self._emit(event.call_id, cost)

    def _on_usage(self, event: ev.UsageUpdated) -> None:
        cost = self._meter(event.call_id)
        if cost is None:
            return
        try:
            counted = cost.add_usage(event.seconds, event.tokens)
        except UsageError as exc:
            self._refused(event.call_id, cost, "a usage update", exc)
            return
        if counted:
            self._emit(event.call_id, cost)

    def _on_ended(self, event: ev.CallEnded) -> None:
        cost = self.calls.pop(event.call_id, None)
        if cost is not None and cost.bad_usage > 1:
            log.warning("call %s: %d usage blocks in all were not valid and not counted; its cost $%.4f is too low",
                        event.call_id, cost.bad_usage, cost.usd)

    # --- helpers ----------------------------------------------------------------------------------
    def _meter(self, call_id: str) -> CallCost | None:
        """The call's meter; one is started for a live call first seen mid-way (the plugin enabled
        during it), never for a call that is not live (a late event after its CallEnded)."""
        cost = self.calls.get(call_id)
        if cost is None and call_id in self.app.calls:
            cost = self.calls[call_id] = CallCost(self._backend_of(call_id), self.prices)
        return cost

    def _backend_of(self, call_id: str) -> str:
        """The backend a live call uses, from the call itself (when no BackendReady said it)."""
        call = self.app.calls.get(call_id)
        conversation = getattr(call, "conversation", None)
        return str(getattr(getattr(conversation, "type", None), "name", "") or "unknown")

    def _refused(self, call_id: str, cost: CallCost, what: str, exc: UsageError) -> None:
        cost.bad_usage += 1
        level = logging.WARNING if cost.bad_usage == 1 else logging.DEBUG
        log.log(level, "call %s: %s from backend %s is not valid (%s); not counted, the call goes on",
                call_id, what, cost.backend, exc)

    def _emit(self, call_id: str, cost: CallCost, force: bool = False) -> None:
        breakdown = cost.breakdown()
        usd = sum(breakdown.values())
        if usd == cost.usd and not force:
            return
        cost.usd = usd
        call = self.app.calls.get(call_id)
        self.app.bus.emit(call, ev.CostUpdated(call_id=call_id, usd=usd, backend=cost.backend, breakdown=breakdown))
        self._check_limit(call_id, cost, call)

    def _check_limit(self, call_id: str, cost: CallCost, call: Any) -> None:
        limit = float(self.app.settings.call.max_cost or 0)
        if not limit or cost.usd < limit or cost.limit_hit:
            return
        cost.limit_hit = True
        if call is None or getattr(call, "ending", False) or getattr(call, "stopping", False):
            log.info("call %s: its AI cost $%.4f reached [call] max_cost $%.4f while it was ending already; "
                     "nothing more to do", call_id, cost.usd, limit)
            return
        log.info("call %s: its AI cost $%.4f reached [call] max_cost $%.4f; the AI says goodbye, then the call ends "
                 "(reason max_cost)", call_id, cost.usd, limit)
        call.spawn(call.end("max_cost", goodbye=self.app.settings.cost.max_cost_goodbye))
