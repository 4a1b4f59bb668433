"""Placing calls: the checks on a request, the ARI originate into aribot's own Stasis app, and
each placed call's record until its outcome is known (``GET /calls/{id}``).

A placed call's channel id is its call id (``aribot-out-…``). aribot watches the channel while it
rings (``App.watch``): ``ChannelDestroyed`` before an answer gives the outcome from Asterisk's
hang-up cause (busy, no_answer, failed); a ``StasisStart`` (answered) is handed back to the App,
which runs it as an ordinary call; the call feature (feature.py) then decides human or machine.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import re
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass, field
from typing import Any

from aribot.core import events as ev
from aribot.core.ari import AriError, AriNotFound
from aribot.core.choices import CONTROL, SOUND, PartlyTaken, Refused, _Rules

log = logging.getLogger("aribot.outbound")

ID_PREFIX = "aribot-out-"
# Tech/resource: letters, digits and _ . + - : @ / only (no , ( ) $ { } & ; spaces or quotes): an
# endpoint can never carry dialplan, channel options or a second destination.
ENDPOINT = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,15}/[A-Za-z0-9_.+:@/-]{1,200}")
CALLER_ID = re.compile(r"[A-Za-z0-9 _.+<>\"'-]{1,80}")
BUSY, NO_ANSWER = {17}, {18, 19, 20}   # Q.850: user busy; no user responding, no answer, subscriber absent
CHOICE_KEYS = ("instructions", "greeting", "backend")
FIELDS = {"endpoint", "instructions", "greeting", "backend", "caller_id", "amd", "machine_message"}
OUTCOMES = ("human", "machine", "no_answer", "busy", "failed")
WATCHDOG_MARGIN_S = 30


class Rejected(ValueError):
    """A request the dialer refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Placed:
    """One call aribot placed, as ``GET /calls/{id}`` shows it."""

    call_id: str
    endpoint: str
    amd: bool
    state: str = "dialling"  # dialling, answered, ended
    outcome: str = ""  # one of OUTCOMES once known
    detail: str = ""
    created_at: float = field(default_factory=time.time)
    answered_at: float | None = None
    ended_at: float | None = None
    end_reason: str = ""
    greeting: str = field(default="", repr=False)  # played by the feature after a human (with amd)
    machine_message: str = field(default="", repr=False)

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("greeting")
        data.pop("machine_message")
        return data


def endpoint_allowed(endpoint: str, patterns: list[str]) -> bool:
    """``endpoint`` matches one ``[outbound] allowed`` entry (exact, or a glob such as ``PJSIP/*``)."""
    return any(fnmatch.fnmatchcase(endpoint, pattern) for pattern in patterns)


def cause_outcome(cause: int) -> str:
    if cause in BUSY:
        return "busy"
    if cause in NO_ANSWER:
        return "no_answer"
    return "failed"


class Dialer:
    """The outbound calls of one running App."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.cfg = app.settings.outbound
        self.placed: OrderedDict[str, Placed] = OrderedDict()
        self._recent: deque[float] = deque()  # originate times in the last minute
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self.app.bus.subscribe(ev.CallEnded, self._on_call_ended, owner="outbound")

    async def stop(self) -> None:
        """Hang up the calls still ringing (nobody would serve them once answered)."""
        self.app.bus.disconnect_owner("outbound")
        for task in list(self._tasks):
            task.cancel()
        for call_id, placed in list(self.placed.items()):
            if placed.state != "dialling":
                continue
            self.app.unwatch(call_id)
            try:
                await self.app.ari.call("hangup", channelId=call_id, reason="normal")
            except AriError as exc:
                log.debug("outbound %s: hang-up at stop: %s", call_id, exc)
            self.record(placed, "failed", "aribot stopped while it rang")
            placed.state, placed.ended_at, placed.end_reason = "ended", time.time(), "shutdown"
            log.info("outbound %s: hung up while ringing (aribot stopping)", call_id)

    # --- the request ------------------------------------------------------------------------------
    @property
    def active(self) -> int:
        return sum(1 for p in self.placed.values() if p.state != "ended")

    def check(self, body: Any) -> dict[str, Any]:
        """The request's fields, checked; Rejected (400/403/429) says what is wrong."""
        if not isinstance(body, dict):
            raise Rejected(400, "the body must be a JSON object such as {\"endpoint\": \"PJSIP/100\"}")
        unknown = sorted(set(body) - FIELDS)
        if unknown:
            raise Rejected(400, f"unknown field(s) {', '.join(map(repr, unknown[:5]))}; "
                           f"known: {', '.join(sorted(FIELDS))}")
        for name in FIELDS - {"amd"}:
            if name in body and not isinstance(body[name], str):
                raise Rejected(400, f"{name} must be a string")
        if "amd" in body and not isinstance(body["amd"], bool):
            raise Rejected(400, "amd must be true or false")
        endpoint = str(body.get("endpoint", "")).strip()
        patterns = list(self.cfg.allowed)
        if not patterns:
            raise Rejected(403, "outbound calls are off: [outbound] allowed lists no endpoint")
        if not ENDPOINT.fullmatch(endpoint):
            raise Rejected(400, "endpoint must look like TECH/resource (letters, digits and _ . + - : @ / "
                           "only, at most 200 characters), e.g. PJSIP/100 or PJSIP/trunk/sip:100@host")
        if not endpoint_allowed(endpoint, patterns):
            raise Rejected(403, f"endpoint {endpoint!r} is not allowed by [outbound] allowed")
        caller_id = str(body.get("caller_id") or self.cfg.caller_id).strip()
        if caller_id and not CALLER_ID.fullmatch(caller_id):
            raise Rejected(400, "caller_id: at most 80 letters, digits, spaces and _ . + - < > quotes, "
                           "e.g. \"Shop\" <100>")
        amd = bool(body.get("amd", self.cfg.amd))
        choices = self._choices(body, amd)
        message = body.get("machine_message", self.cfg.machine_message)
        if len(message) > 2000 or CONTROL.search(message):
            raise Rejected(400, "machine_message: at most 2000 characters, no control characters")
        if message.startswith("sound:") and not SOUND.fullmatch(message):
            raise Rejected(400, "machine_message: sound:<name> with letters, digits, _ / - only, or a text the "
                           "AI says")
        return {"endpoint": endpoint, "caller_id": caller_id, "amd": amd, "choices": choices,
                "machine_message": message}

    def _choices(self, body: dict[str, Any], amd: bool) -> dict[str, str]:
        """instructions, greeting, backend: the same rules as a call's dialplan choices (core/choices.py:
        only keys in [call] per_call_keys, a backend among [ai] allowed, greetings from the usual places)."""
        app, settings = self.app, self.app.settings
        permitted = [str(k).lower() for k in settings.call.per_call_keys]
        rules = _Rules(settings, app.activation_modes, app.tools.tools, str(settings.ai.backend), app.backends)
        chosen: dict[str, str] = {}
        for key in CHOICE_KEYS:
            value = body.get(key)
            if value is None or value == "":
                continue
            if key not in permitted:
                raise Rejected(400, f"{key}: not in [call] per_call_keys ({', '.join(permitted) or 'none'}); "
                               "add it there to let a call choose it")
            try:
                chosen[key] = str(rules.check(key, value))
            except (Refused, PartlyTaken) as why:
                shown = value if len(value) <= 60 else value[:60] + "…"
                raise Rejected(400, f"{key} {shown!r} {why}") from None
        if amd and chosen.get("greeting", "").startswith("file:"):
            raise Rejected(400, "greeting: with amd the greeting is played after a person answers and must be a "
                           "sound:<name>")
        return chosen

    def _rate_check(self) -> None:
        if self.app.draining:
            raise Rejected(503, "aribot is stopping; no new calls")
        if not self.app.ari_connected:
            raise Rejected(503, "Asterisk (ARI) is not connected")
        limit = int(self.cfg.max_concurrent)
        if self.active >= limit:
            raise Rejected(429, f"{self.active} outbound call(s) already ringing or live ([outbound] "
                           f"max_concurrent = {limit})")
        per_minute = int(self.cfg.rate_per_minute)
        now = time.monotonic()
        while self._recent and now - self._recent[0] > 60:
            self._recent.popleft()
        if per_minute and len(self._recent) >= per_minute:
            raise Rejected(429, f"{per_minute} calls placed in the last minute ([outbound] rate_per_minute)")

    # --- placing ------------------------------------------------------------------------------------
    async def place(self, body: Any) -> Placed:
        """Check and originate; the Placed record (outcome failed if Asterisk refused at once)."""
        request = self.check(body)
        self._rate_check()
        self._recent.append(time.monotonic())
        call_id = ID_PREFIX + secrets.token_hex(8)
        choices = request["choices"]
        placed = Placed(call_id, request["endpoint"], request["amd"], machine_message=request["machine_message"],
                        greeting=choices.get("greeting", "") if request["amd"] else "")
        self._remember(placed)
        variables = {f"ARIBOT_{key.upper()}": value for key, value in choices.items()
                     if not (key == "greeting" and request["amd"])}
        self.app.watch(call_id, lambda event: self._on_ringing_event(placed, event))
        log.info("outbound %s: dialling %s (amd %s%s)", call_id, placed.endpoint, "on" if placed.amd else "off",
                 f", choices {sorted(choices)}" if choices else "")
        try:
            await self.app.ari.call("originate", channelId=call_id, endpoint=placed.endpoint,
                                    app=self.app.settings.ari.app, appArgs="outbound",
                                    callerId=request["caller_id"] or None, timeout=int(self.cfg.ring_timeout),
                                    body={"variables": variables} if variables else None)
        except AriError as exc:
            self.app.unwatch(call_id)
            detail = f"Asterisk refused the originate: {exc.message or exc}"
            self.record(placed, "failed", detail)
            placed.state, placed.ended_at = "ended", time.time()
            log.warning("outbound %s: %s", call_id, detail)
            return placed
        task = asyncio.get_running_loop().create_task(self._watchdog(placed), name=f"outbound-watch-{call_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return placed

    async def _watchdog(self, placed: Placed) -> None:
        """A call whose end aribot never heard of (ARI events lost while it rang) must not count
        against max_concurrent for ever: after the ring timeout (and a margin), ask Asterisk."""
        await asyncio.sleep(int(self.cfg.ring_timeout) + WATCHDOG_MARGIN_S)
        if placed.state == "ended" or (placed.state == "answered" and placed.call_id in self.app.calls):
            return
        try:
            await self.app.ari.call("get_channel", channelId=placed.call_id)
            if placed.state == "dialling":
                return   # still there (ringing past its timeout?): ChannelDestroyed will still come
        except AriNotFound:
            pass
        except AriError as exc:
            log.warning("outbound %s: could not check the channel (%s)", placed.call_id, exc)
            return
        if placed.state != "ended":
            self.app.unwatch(placed.call_id)
            self.record(placed, "failed", "the channel ended without aribot hearing how (ARI events lost?)")
            placed.state, placed.ended_at, placed.end_reason = "ended", time.time(), "failed"
            log.warning("outbound %s: the channel is gone and aribot missed how it ended; outcome failed",
                        placed.call_id)

    def _remember(self, placed: Placed) -> None:
        self.placed[placed.call_id] = placed
        keep = int(self.cfg.keep_results)
        while len(self.placed) > keep:
            oldest = next(iter(self.placed))
            if self.placed[oldest].state != "ended":
                break
            self.placed.popitem(last=False)

    def _on_ringing_event(self, placed: Placed, event: Any) -> None:
        """Events of a ringing channel (App.watch): answered → an ordinary call; destroyed → outcome."""
        try:
            if event.type == "StasisStart":
                self.app.unwatch(placed.call_id)
                placed.state, placed.answered_at = "answered", time.time()
                log.info("outbound %s: answered", placed.call_id)
                self.app.route(event)   # no longer watched: the App makes it a call
            elif event.type == "ChannelDestroyed":
                self.app.unwatch(placed.call_id)
                cause = event.number("cause")
                text = event.data.get("cause_txt") if isinstance(event.data.get("cause_txt"), str) else ""
                outcome = cause_outcome(cause)
                self.record(placed, outcome, f"hang-up cause {cause} ({text or 'unknown'}) before an answer")
                placed.state, placed.ended_at, placed.end_reason = "ended", time.time(), outcome
                log.info("outbound %s: %s (cause %d %s)", placed.call_id, outcome, cause, text)
        except Exception:
            log.exception("outbound %s: handling ARI %s failed; the call's outcome may be missing",
                          placed.call_id, event.type)

    def record(self, placed: Placed, outcome: str, detail: str, sender: Any = None) -> None:
        """Set the outcome (once) and emit OutboundOutcome on the bus (history, timeline, /logs)."""
        if placed.outcome:
            return
        placed.outcome, placed.detail = outcome, detail
        self.app.bus.emit(sender if sender is not None else placed,
                          ev.OutboundOutcome(call_id=placed.call_id, outcome=outcome, detail=detail))

    def _on_call_ended(self, event: ev.CallEnded) -> None:
        placed = self.placed.get(event.call_id)
        if placed is None:
            return
        placed.state, placed.ended_at, placed.end_reason = "ended", event.ts, event.reason
        if event.reason == "overload":   # answered beyond [call] max_concurrent: the overload prompt only
            self.record(placed, "failed", "answered while aribot was at [call] max_concurrent (overload prompt)")
        elif not placed.outcome:   # answered, but ended before anything was decided
            self.record(placed, "human" if not placed.amd else "failed",
                        f"the call ended ({event.reason}) before the detector decided" if placed.amd
                        else "answered")


async def wait_done(placed: Placed, timeout: float) -> None:
    """For tests and the CLI: until the placed call has ended (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    while placed.state != "ended" and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
