"""Tool ``warm_transfer``: an attended transfer. The AI tells the caller it is connecting them;
the caller waits on Asterisk's music on hold (out of the AI's bridge) while aribot calls the
target into its own Stasis app; once the target answers it takes the caller's place next to the
AI, which briefs it and asks it to accept (key 1, or "yes": the AI calls ``warm_transfer_answer``)
or decline (key 2, "no", hanging up). Accepted: the caller and the target are bridged in a new
bridge and aribot's part of the call ends (``transferred: ext@context``); this plugin then owns
that bridge and both channels, and ends the pair when either side hangs up. Declined, not
answered, busy or failed: the target is hung up and the caller is back with the AI, which is told
why. Targets are allow-listed like ``transfer_call``'s (``[tools.warm_transfer] allowed``)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

from aribot import Setting, ToolContext, ToolResult, as_str, hookimpl, number, str_list
from aribot.core import events as ev
from aribot.core.app import OWNED_ARG
from aribot.core.ari import AriError, AriNotFound, new_id
from aribot.core.ari_events import AriEvent
from aribot.core.controls import transfer_targets

log = logging.getLogger("aribot.warm_transfer")
SAFE_NAME = re.compile(r"[A-Za-z0-9_+*#.-]{1,64}")   # an extension or context that is safe in a dial string
SAFE_CALLER_ID = re.compile(r"\+?[0-9*#]{1,32}")
ANNOUNCE_LIMIT_S = 20.0   # longest aribot waits for "I am connecting you" to be said and heard
RING_SLACK_S = 5.0        # beyond ring_timeout, aribot stops waiting for Asterisk's verdict
BUSY, NO_ANSWER = {17}, {18, 19}   # Q.850 causes of the target's ChannelDestroyed
TAIL_S = 0.3              # after the announcement's last frame, before the music starts (jitter buffers)

_managers: list["WarmTransfers"] = []   # one per running App (tests run several in one process)


def target_list(value: Any) -> list[str]:
    """``allowed``: "ext" or "ext@context" entries, each part safe in a dial string."""
    entries = str_list(value)
    for entry in entries:
        extension, at, context = entry.partition("@")
        if not SAFE_NAME.fullmatch(extension) or (at and not SAFE_NAME.fullmatch(context)):
            raise ValueError(entry)
    return entries


def context_name(value: Any) -> str:
    text = as_str(value).strip()
    if text and not SAFE_NAME.fullmatch(text):
        raise ValueError(text)
    return text


def template(*fields: str, required: str = "") -> Any:
    """A parser for a text with ``{field}`` placeholders (only ``fields``; ``required`` must be there)."""
    def parse(value: Any) -> str:
        text = as_str(value)
        try:
            text.format(**{name: "x" for name in fields})
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(text) from exc
        if required and "{" + required + "}" not in text:
            raise ValueError(text)
        return text
    return parse


def not_answered(cause: tuple[int, str] | None, elapsed: float, ring_timeout: float) -> tuple[str, str]:
    """(stage, detail) of a target that did not answer: ``cause`` is its ChannelDestroyed's
    (Q.850 code, text), None if it is not gone yet (aribot stopped waiting)."""
    code, text = cause or (0, "")
    if code in BUSY:
        return "busy", text or "busy"
    if cause is None or code in NO_ANSWER or elapsed >= ring_timeout - 1:
        return "no_answer", f"no answer within {ring_timeout:g} s"
    if not code:   # e.g. Local/ to an extension the dialplan does not have
        return "failed", "the call to the target could not be placed"
    return "failed", f"{text or 'cause'} ({code})"


def _manager(call_id: str) -> "WarmTransfers":
    for manager in _managers:
        if call_id in manager.app.calls:
            return manager
    raise RuntimeError("the call is over")


class WarmTransfers:
    """This plugin's state in one App: transfers in progress (by call id) and handed-off pairs."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.active: dict[str, WarmTransfer] = {}
        self.pairs: set[WarmTransfer] = set()
        self.tasks: set[asyncio.Task[Any]] = set()

    async def stop(self) -> None:
        """aribot stops: transfers still under way are abandoned (their calls have ended), and
        transferred pairs are hung up, so nothing is left in Asterisk."""
        if self.pairs:
            log.info("stopping: hanging up %d transferred call(s) aribot still bridges", len(self.pairs))
        await asyncio.gather(*(pair.end_pair("aribot is stopping") for pair in list(self.pairs)))
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=5.0)


class WarmTransfer:
    """One warm transfer of one call, from the announcement to the caller-target bridge's end."""

    def __init__(self, manager: WarmTransfers, call: Any, extension: str, context: str, reason: str,
                 config: dict[str, Any], announce: bool) -> None:
        self.manager, self.call, self.app, self.ari = manager, call, manager.app, manager.app.ari
        self.target = f"{extension}@{context}"
        self.endpoint = str(config.get("dial") or "Local/{extension}@{context}/n").format(
            extension=extension, context=context)
        self.reason = reason
        self.config = config
        self.announce = announce
        self.channel_id = new_id(self.app.resource_prefix("xf"))
        self.bridge_id = ""            # the caller-target bridge, once accepted
        self.stage = "started"
        self.on_hold = False           # the caller is out of the AI's bridge (hearing music on hold)
        self.originated = False
        self.handed_off = False
        self.answered = asyncio.Event()
        self.target_gone = asyncio.Event()
        self.decided = asyncio.Event()
        self.accepted = False
        self.decision = ""
        self.cause: tuple[int, str] | None = None
        self.pair_ended = False

    # --- ARI events of the target (and, once handed off, of the caller) ------------------------
    def on_event(self, event: AriEvent) -> None:
        kind, channel = event.type, event.channel_id
        if self.handed_off:
            if kind in ("StasisEnd", "ChannelDestroyed"):
                who = "the caller" if channel == self.call.id else "the target"
                self._spawn(self.end_pair(f"{who} hung up"))
            return
        if channel != self.channel_id:
            return
        if kind == "StasisStart":
            self.answered.set()
        elif kind == "ChannelDtmfReceived" and self.stage == "answered" and event.digit in ("1", "2"):
            self.decide(event.digit == "1", f"pressed {event.digit}")
        elif kind in ("StasisEnd", "ChannelDestroyed"):
            if kind == "ChannelDestroyed":
                self.cause = (event.number("cause"), str(event.data.get("cause_txt") or ""))
            self.target_gone.set()

    def decide(self, accepted: bool, how: str) -> bool:
        """The target's answer (a key, or the AI's warm_transfer_answer); False if none is awaited."""
        if self.stage != "answered" or self.decided.is_set():
            return False
        self.accepted, self.decision = accepted, how
        self.decided.set()
        return True

    # --- the flow --------------------------------------------------------------------------------
    async def start(self) -> None:
        """Run from the tool's ``ctx.after``: the transfer goes on in a task of this plugin (it
        outlives the call's own part once handed off)."""
        self._spawn(self.run())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.manager.tasks.add(task)
        task.add_done_callback(self.manager.tasks.discard)

    async def run(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("call %s: warm transfer to %s failed unexpectedly", self.call.id, self.target)
            if not self._caller_gone():
                await self._back("failed", f"internal error {exc!r}")
        finally:
            if not self.handed_off:
                await self._cleanup()
            if self.manager.active.get(self.call.id) is self:
                del self.manager.active[self.call.id]

    async def _run(self) -> None:
        call, cfg = self.call, self.config
        self._emit("started", self.reason)
        log.info("call %s: warm transfer to %s started (%s)", call.id, self.target, self.reason or "no reason given")
        announcement = str(cfg.get("announcement") or "")
        if self.announce and announcement:
            await self._say(announcement.format(target=self.target))
        if self._caller_gone():
            return
        call.hold_input(True)
        try:
            await call.move_out()
            self.on_hold = True
            await self.ari.call("start_moh", channelId=call.id, mohClass=str(cfg.get("moh_class") or "") or None)
        except AriError as exc:
            return await self._back("failed", f"could not put the caller on hold: {exc}")
        ring_timeout = float(cfg.get("ring_timeout", 30))
        self.app.watch(self.channel_id, self.on_event)
        caller_id = call.caller_number if SAFE_CALLER_ID.fullmatch(call.caller_number or "") else None
        started = time.monotonic()
        try:
            await self.ari.call("originate", channelId=self.channel_id, endpoint=self.endpoint,
                                app=self.app.settings.ari.app, appArgs=f"{OWNED_ARG},{call.id}",
                                callerId=caller_id, timeout=max(1, round(ring_timeout)),
                                formats=self.app.settings.rtp.format)   # G.711 end to end, as the caller's
            self.originated = True
        except AriError as exc:
            return await self._back("failed", f"Asterisk could not call {self.endpoint}: {exc.message or exc}")
        self._emit("ringing", self.endpoint)
        await self._until(self.answered, self.target_gone, timeout=ring_timeout + RING_SLACK_S)
        if self._caller_gone():
            return
        if not self.answered.is_set():
            return await self._back(*not_answered(self.cause if self.target_gone.is_set() else None,
                                                  time.monotonic() - started, ring_timeout))
        self._emit("answered")
        try:
            await call.move_in(self.channel_id)
        except AriError as exc:
            return await self._back("failed", f"could not connect the target to the AI: {exc}")
        self.stage = "answered"
        call.hold_input(False)
        await call.ask_ai(str(cfg.get("briefing") or "").format(target=self.target, reason=self.reason or "not given"))
        decision_timeout = float(cfg.get("decision_timeout", 60))
        await self._until(self.decided, self.target_gone, timeout=decision_timeout)
        if self._caller_gone():
            return
        if not self.decided.is_set():
            why = "the target hung up" if self.target_gone.is_set() else f"no answer within {decision_timeout:g} s"
            return await self._back("declined", why)
        if not self.accepted:
            return await self._back("declined", self.decision)
        await self._complete()

    async def _complete(self) -> None:
        """Accepted: the caller and the target into a new bridge; aribot's part of the call ends."""
        call = self.call
        call.hold_input(True)
        if call.bot_speaking:
            await call.interrupt_ai("warm transfer accepted")
        self.bridge_id = new_id(self.app.resource_prefix("br"))
        self.app.kept_bridges.add(self.bridge_id)
        self.app.watch(call.id, self.on_event)   # reaches this plugin once the call no longer owns the caller
        try:
            await self.ari.call("create_bridge", bridgeId=self.bridge_id, type="mixing",
                                name=f"aribot-transfer-{call.id}")
            await call.move_out(self.channel_id)
            await self.ari.call("stop_moh", channelId=call.id)
            await self.ari.call("add_channel", bridgeId=self.bridge_id, channel=f"{call.id},{self.channel_id}")
        except AriError as exc:   # (the caller is still out of the AI's bridge: _back brings it in)
            self.app.unwatch(call.id)
            await self._destroy_bridge()
            return await self._back("failed", f"could not connect the caller to the target: {exc}")
        self.on_hold, self.handed_off = False, True
        self.manager.pairs.add(self)
        self._emit("accepted", self.decision)
        log.info("call %s: warm transfer to %s accepted (%s); caller and target bridged in %s, aribot leaves",
                 call.id, self.target, self.decision, self.bridge_id)
        call.hand_off(f"transferred: {self.target}")
        await call.done.wait()
        if call.caller_left.is_set():   # the caller hung up while the call still owned its events
            await self.end_pair("the caller hung up")

    async def end_pair(self, why: str) -> None:
        """A transferred call is over (or aribot stops): both sides hung up, their bridge deleted."""
        if self.pair_ended:
            return
        self.pair_ended = True
        for channel_id in (self.call.id, self.channel_id):
            await self._quietly("hangup", channelId=channel_id, reason="normal")
        await self._destroy_bridge()
        self.app.unwatch(self.call.id)
        self.app.unwatch(self.channel_id)
        self.manager.pairs.discard(self)
        log.info("call %s: transferred call to %s ended (%s)", self.call.id, self.target, why)

    async def _back(self, stage: str, detail: str) -> None:
        """Declined, not answered, busy or failed: the target hung up, the caller back with the AI,
        which is told what happened."""
        call = self.call
        self.stage = stage
        self._emit(stage, detail)
        log.log(logging.WARNING if stage == "failed" else logging.INFO,
                "call %s: warm transfer to %s %s (%s); the caller is back with the AI", call.id, self.target,
                stage.replace("_", " "), detail)
        call.hold_input(True)
        if call.bot_speaking:
            await call.interrupt_ai(f"warm transfer {stage}")
        await self._drop_target()
        if not await self._unhold():
            return
        call.hold_input(False)
        returned = str(self.config.get("returned") or "")
        if returned and not self._caller_gone():
            await call.ask_ai(returned.format(target=self.target, outcome=f"{stage.replace('_', ' ')}: {detail}"))

    async def _unhold(self) -> bool:
        """The caller off music on hold and back in the AI's bridge (False if it is gone)."""
        if not self.on_hold or self._caller_gone():
            return not self._caller_gone()
        await self._quietly("stop_moh", channelId=self.call.id)
        try:
            await self.call.move_in()
        except AriError as exc:
            if not self._caller_gone():
                log.warning("call %s: could not bring the caller back to the AI after the warm transfer (%s); "
                            "ending the call", self.call.id, exc)
                self.call.fail("transfer_failed", str(exc))
            return False
        self.on_hold = False
        return True

    async def _cleanup(self) -> None:
        """However the transfer ended without a hand-off: nothing of it is left in Asterisk."""
        if self._caller_gone() and self.stage in ("started", "answered"):
            self.stage = "cancelled"
            self._emit("cancelled", "the caller hung up")
            log.info("call %s: the caller left during the warm transfer to %s; cleaning up", self.call.id, self.target)
        await self._drop_target()
        await self._destroy_bridge()
        if self.on_hold and not self._caller_gone():
            await self._unhold()

    async def _drop_target(self) -> None:
        if self.originated and not self.target_gone.is_set():
            await self._quietly("hangup", channelId=self.channel_id, reason="normal")
        self.originated = False
        self.app.unwatch(self.channel_id)

    async def _destroy_bridge(self) -> None:
        if self.bridge_id:
            await self._quietly("destroy_bridge", bridgeId=self.bridge_id)
            self.app.kept_bridges.discard(self.bridge_id)

    # --- helpers ---------------------------------------------------------------------------------
    def _caller_gone(self) -> bool:
        return self.call.caller_left.is_set() or self.call.done.is_set() or self.call.stopping

    async def _until(self, *events: asyncio.Event, timeout: float) -> None:
        """Wait for one of ``events``, the caller leaving or the call ending, or ``timeout``."""
        waiters = {asyncio.ensure_future(e.wait()) for e in (*events, self.call.caller_left, self.call.done)}
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _say(self, instructions: str) -> None:
        """The AI says something to the caller; return once it has been heard (or the caller left)."""
        started = time.monotonic()
        said = await self.call.ask_ai(instructions)
        gone = asyncio.ensure_future(self.call.caller_left.wait())
        try:
            await asyncio.wait({said, gone}, timeout=ANNOUNCE_LIMIT_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        await self.call.wait_playout(limit=max(0.0, ANNOUNCE_LIMIT_S - (time.monotonic() - started)))
        if not self._caller_gone():
            await asyncio.sleep(TAIL_S)

    async def _quietly(self, op: str, **params: Any) -> None:
        """An ARI clean-up step: gone already (404) is fine, anything else is one log line."""
        try:
            await self.ari.call(op, **params)
        except AriNotFound:
            pass
        except AriError as exc:
            log.warning("call %s: warm transfer clean-up %s %s failed (%s); it may be left in Asterisk",
                        self.call.id, op, params, exc)

    def _emit(self, stage: str, detail: str = "") -> None:
        if not self.call.done.is_set():
            self.call.emit(ev.TransferProgress(call_id=self.call.id, stage=stage, target=self.target,
                                               detail=detail))


async def warm_transfer(extension: str, context: str = "", reason: str = "",
                        ctx: ToolContext | None = None) -> ToolResult:
    """Transfer the caller to a person, announced: the caller waits with music while you brief that
    person, who accepts or declines. If they decline or do not answer, the caller is back with you.

    Args:
        extension: the extension to transfer to, one of those you were told are available
        context: the dialplan context of that extension; leave empty for the usual one
        reason: why the caller wants to talk to them, in a few words (you will tell the person)
    """
    assert ctx is not None
    config = ctx.config()
    target_context = context or str(config.get("context", "") or "")
    targets = transfer_targets(ctx.settings, "warm_transfer")
    if (extension, target_context) not in targets:
        allowed = ", ".join(sorted(targets.values())) or "none"
        raise ValueError(f"transfers to {extension}{'@' + target_context if target_context else ''} are not "
                         f"allowed; allowed targets: {allowed}")
    dial_context = target_context or ctx.dialplan_context
    if not SAFE_NAME.fullmatch(dial_context):
        raise ValueError(f"the caller's dialplan context {dial_context!r} cannot be dialled; "
                         "set [tools.warm_transfer] context")
    manager = _manager(ctx.call_id)
    if ctx.call_id in manager.active:
        raise ValueError(f"a warm transfer to {manager.active[ctx.call_id].target} is already under way")
    transfer = WarmTransfer(manager, manager.app.calls[ctx.call_id], extension, dial_context, reason[:200],
                            config, announce=not ctx.ai_spoke)
    manager.active[ctx.call_id] = transfer
    ctx.after(transfer.start())
    return ToolResult({"ok": True, "status": "connecting", "target": transfer.target,
                       "note": "The caller now waits with music while you brief the person; you will be told "
                               "what they decide."}, respond=False)


async def warm_transfer_answer(accepted: bool, ctx: ToolContext | None = None) -> ToolResult:
    """During a warm transfer: the person you are briefing accepted (true) or declined (false) the
    caller. Use it only while briefing them, once they have answered.

    Args:
        accepted: true if they said yes, false if they said no
    """
    assert ctx is not None
    transfer = _manager(ctx.call_id).active.get(ctx.call_id)
    if transfer is None or transfer.stage != "answered" or transfer.decided.is_set():
        raise ValueError("no warm transfer is waiting for an answer")

    async def decide() -> None:   # after the output went to the AI: the call may end right after
        transfer.decide(accepted, "said yes" if accepted else "said no")

    ctx.after(decide())
    return ToolResult({"ok": True, "accepted": accepted}, respond=False)


@hookimpl
def register_tools(register):
    register(warm_transfer)
    register(warm_transfer_answer)


@hookimpl
def startup(app):
    manager = WarmTransfers(app)
    app.extensions["warm_transfer"] = manager
    _managers.append(manager)


@hookimpl
async def shutdown(app):
    manager = app.extensions.pop("warm_transfer", None)
    if manager is not None:
        await manager.stop()
        _managers.remove(manager)


@hookimpl
def register_settings(register):
    register(Setting("tools.warm_transfer.allowed", [], target_list,
                     'a list of "ext" or "ext@context" (letters, digits and _+*#.- only)',
                     'extensions the AI may warm-transfer to, "ext" or "ext@context"; empty = none'))
    register(Setting("tools.warm_transfer.context", "", context_name, "a dialplan context or empty",
                     "dialplan context of the targets; empty = the caller's own context"))
    register(Setting("tools.warm_transfer.dial", "Local/{extension}@{context}/n",
                     template("extension", "context", required="extension"),
                     "a dial string with {extension} (and {context})",
                     "what Asterisk dials for a target; /n keeps the Local channel (it must stay in aribot's app)"))
    register(Setting("tools.warm_transfer.ring_timeout", 30, number(int, 5, 300), "5 to 300 seconds",
                     "seconds the target may ring before the caller is back with the AI"))
    register(Setting("tools.warm_transfer.decision_timeout", 60, number(int, 5, 600), "5 to 600 seconds",
                     "seconds the target has, once briefed, to accept (key 1, yes) or decline (key 2, no)"))
    register(Setting("tools.warm_transfer.moh_class", "default", context_name, "a musiconhold.conf class or empty",
                     "music on hold class the caller hears while waiting; empty = Asterisk's default"))
    register(Setting("tools.warm_transfer.announcement",
                     "Tell the caller in one short sentence that you are connecting them now and that they will "
                     "hear music while they wait.", template("target"), "instructions for the AI, or empty",
                     "instructions for what the AI tells the caller before the music ({target}); empty = nothing"))
    register(Setting("tools.warm_transfer.briefing",
                     "You are now speaking with {target}, the person the caller asked for, not with the caller. In "
                     "one or two short sentences tell them who is calling and why (reason: {reason}), then ask "
                     "whether they take the call: press 1 or say yes to accept, press 2 or say no to decline. When "
                     "they answer, call warm_transfer_answer.", template("target", "reason", required="target"),
                     "instructions for the AI with {target} and {reason}",
                     "instructions for the AI's briefing of the target ({target}, {reason})"))
    register(Setting("tools.warm_transfer.returned",
                     "The transfer to {target} did not happen ({outcome}). You are speaking with the caller again: "
                     "tell them briefly and offer to help otherwise.", template("target", "outcome"),
                     "instructions for the AI with {target} and {outcome}, or empty",
                     "instructions for the AI when the caller is back after a failed transfer ({target}, {outcome})"))
