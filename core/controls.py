"""What plugins may do with a call (activation modes, timers, DTMF, tools): the greeting,
TALK_DETECT, channel variables, talking to the AI, interrupting it and ending the call.

``CallControls`` is a mixin of ``core.call.Call``; it only uses the call's own attributes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, TypeVar

from aribot.core import events as ev
from aribot.core.ari import AriError
from aribot.core.backend import SessionChange
from aribot.core.g711 import AudioFileError
from aribot.core.playout import LOCAL_ITEM
from aribot.core.prompts import load_prompt, local_path

if TYPE_CHECKING:
    from aribot.core.call import Call

log = logging.getLogger("aribot.call")
E = TypeVar("E", bound=ev.Event)
GREETING_ITEM = LOCAL_ITEM + "greeting"
GOODBYE_LIMIT_S = 20.0  # longest aribot waits for a goodbye to be said and heard
PLAYOUT_TAIL_S = 0.3    # after the last frame, before hanging up: the phone's jitter buffer plays out


_LEVEL = {"ulaw": bytes((~b) & 0x7F for b in range(256)), "alaw": bytes((b ^ 0x55) & 0x7F for b in range(256))}


def level(frame: bytes | None, fmt: str) -> float:
    """0..1 loudness of a G.711 frame on G.711's own logarithmic scale (cheap: one translate)."""
    if not frame:
        return 0.0
    return sum(frame.translate(_LEVEL[fmt])) / (127 * len(frame))


def transfer_targets(settings: Any, tool: str = "transfer_call") -> dict[tuple[str, str], str]:
    """(extension, context) → entry of ``[tools.<tool>] allowed`` ("ext" or "ext@context";
    "ext" means the configured default context, "" = the caller's own)."""
    config = (settings.get("tools", {}) or {}).get(tool) or {}
    default = str(config.get("context", "") or "")
    targets = {}
    for entry in config.get("allowed", []) or []:
        extension, _sep, context = str(entry).partition("@")
        targets[(extension.strip(), (context or default).strip())] = str(entry)
    return targets


def is_local_media(media: str) -> bool:
    """True for prompts aribot plays itself over RTP (a file path or ``file:`` URI)."""
    return local_path(media) is not None


class SessionUpdateRefused(RuntimeError):
    """The AI service refused a change to a live call's session; the message says why."""


class CallControls:
    """Plugin-facing call API (mixed into Call)."""

    # --- per-call events -----------------------------------------------------------------------
    def on(self: "Call", event_type: type[E], receiver: Callable[[E], Any]) -> None:
        """Receive this call's events of a type until the call ends."""
        self.app.bus.subscribe(event_type, receiver, sender=self, owner=self.owner)

    async def next_event(self: "Call", event_type: type[E], timeout: float | None = None,
                         predicate: Callable[[E], bool] | None = None) -> E | None:
        """The next event of this call of ``event_type`` (None on timeout)."""
        future: asyncio.Future[E] = asyncio.get_running_loop().create_future()

        def receive(event: E) -> None:
            if not future.done() and (predicate is None or predicate(event)):
                future.set_result(event)

        shim = self.app.bus.subscribe(event_type, receive, sender=self, owner=self.owner)
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            return None
        finally:
            self.app.bus.unsubscribe(shim)

    # --- greeting --------------------------------------------------------------------------------
    async def _greet(self: "Call") -> None:
        media = self.choices.greeting
        if not media or self.stopping:
            self.greeting_done.set()
            return
        self.greeting_active = True
        self.emit(ev.GreetingStarted(call_id=self.id, media=media))
        if is_local_media(media):
            played = await self._play_local_greeting(media)
        else:
            played = await self._play([media], "greeting", until=(self._greeting_stop, self._stop))
        self.greeting_active = False
        self.emit(ev.GreetingFinished(call_id=self.id, interrupted=not played and self._greeting_stop.is_set()))
        self.greeting_done.set()

    async def _play_local_greeting(self: "Call", media: str) -> bool:
        cfg = self.settings.call
        try:   # only from [call] greeting_dirs, size-capped, read in a worker thread
            audio = await load_prompt(local_path(media) or media, self.settings.rtp.format, cfg.greeting_dirs,
                                      cfg.greeting_max_bytes)
        except AudioFileError as exc:
            log.warning("call %s: greeting not played: %s; the call goes on without it", self.id, exc)
            return False
        self.playout.push(GREETING_ITEM, audio)
        self.playout.end_item(GREETING_ITEM)
        if self.pacer is not None:
            self.pacer.kick()
        while self.playout.queued(GREETING_ITEM) and not self._greeting_stop.is_set() and not self.stopping:
            await asyncio.sleep(0.02)
        if self.playout.queued(GREETING_ITEM):  # the call is ending: stop it
            self.flush_audio()
        played = self.playout.played.get(GREETING_ITEM, 0) >= len(audio)
        if not played:  # cut short, e.g. by a barge-in of the caller
            self._greeting_stop.set()
        return played

    async def stop_greeting(self: "Call") -> None:
        """Stop the greeting now (a caller who starts talking should not have to wait)."""
        if self.greeting_active and not self._greeting_stop.is_set():
            self._greeting_stop.set()
            if self.playout.queued(GREETING_ITEM):
                self.flush_audio()

    # --- Asterisk ------------------------------------------------------------------------------
    async def set_variable(self: "Call", name: str, value: str, *, shown: str | None = None) -> bool:
        """Set a channel variable; ``shown`` is what the log may say instead of the value (masked digits)."""
        try:
            await self.ari.call("set_variable", channelId=self.id, variable=name, value=value)
            log.debug("call %s: %s = %r", self.id, name, value if shown is None else shown)
            return True
        except AriError as exc:
            if not self.caller_left.is_set():
                log.warning("call %s: could not set %s (%s)", self.id, name, exc)
            return False

    async def set_talk_detect(self: "Call", silence_ms: int, threshold: int) -> bool:
        """Asterisk TALK_DETECT on the caller: arguments in Asterisk's order, silence ms first,
        then the energy threshold (reference/asterisk-ari.md §1.6)."""
        return await self.set_variable("TALK_DETECT(set)", f"{int(silence_ms)},{int(threshold)}")

    async def remove_talk_detect(self: "Call") -> bool:
        self.talking = False
        return await self.set_variable("TALK_DETECT(remove)", "")

    # --- the AI --------------------------------------------------------------------------------
    @property
    def bot_speaking(self: "Call") -> bool:
        """The AI is answering or its audio is still playing."""
        return (self.conversation is not None and self.backend.responding) or self.playout.buffered_bytes > 0

    async def ask_ai(self: "Call", instructions: str) -> asyncio.Future[str]:
        """Make the AI speak now (or after its current answer), following ``instructions`` for
        this one answer; the future resolves with the answer's final status."""
        return await self.backend.request_response(instructions)

    async def tell_ai(self: "Call", text: str) -> None:
        """Add ``text`` to the conversation as the caller's words and let the AI answer."""
        await self.backend.add_text("user", text)
        await self.backend.request_response()

    async def interrupt_ai(self: "Call", reason: str) -> None:
        """Stop the AI's audio and its answer now (e.g. the caller pressed a key)."""
        await self.backend.interrupt(cancel=True)
        log.info("call %s: AI interrupted (%s)", self.id, reason)

    async def instruct_ai(self: "Call", text: str) -> None:
        """An operator's instruction in the middle of the call: a system message, then an answer."""
        await self.backend.add_text("system", text)
        await self.backend.request_response()

    async def end_turn(self: "Call") -> asyncio.Future[str]:
        """The caller's turn is over now (e.g. it has lasted too long): the AI answers it."""
        return await self.backend.end_turn()

    def answer_tool(self: "Call", tool_call_id: str, answer: str) -> bool:
        """An operator's answer to a tool waiting for a person; False if none is waiting."""
        future = self.manual_answers.get(tool_call_id)
        if future is None or future.done():
            return False
        future.set_result(answer)
        return True

    async def update_session(self: "Call", *, instructions: str | None = None, voice: str | None = None,
                             turn_detection: str | None = None, tools: list[str] | None = None) -> None:
        """Change this live call's session (only what is given) and wait for the AI service to
        apply it; raise SessionUpdateRefused with its reason otherwise (e.g. a voice change once
        the AI has spoken)."""
        definitions = self.app.tools.definitions(tools) if tools is not None else None
        changed = ", ".join(k for k, v in (("instructions", instructions), ("voice", voice),
                                          ("turn_detection", turn_detection), ("tools", tools)) if v is not None)
        refused = await self.backend.update(SessionChange(instructions=instructions, voice=voice,
                                                          turn_detection=turn_detection, tools=definitions))
        if refused:
            log.warning("call %s: an operator's session change (%s) was refused: %s; the session is unchanged",
                        self.id, changed, refused)
            raise SessionUpdateRefused(refused)
        log.info("call %s: session updated by an operator (%s)", self.id, changed)

    def levels(self: "Call") -> tuple[float, float]:
        """Audio levels 0..1 of the caller and of the AI, from the last 20 ms frame each."""
        now = time.perf_counter()
        fmt = self.settings.rtp.format
        heard = level(self._last_in, fmt) if now - self._last_in_at < 0.2 else 0.0
        sent = self.pacer.last_frame if self.pacer is not None else None
        return heard, level(sent, fmt) if sent is not None else 0.0

    def hold_input(self: "Call", held: bool) -> None:
        """Stop (True) or resume (False) streaming caller audio to the AI; held audio is dropped."""
        self.input_held = held

    async def end(self: "Call", reason: str, *, goodbye: str = "", action: str = "",
                  target: dict[str, Any] | None = None) -> None:
        """End the call: optionally the AI says goodbye first; audio already queued is heard to
        the end (plus a short tail for the phone's jitter buffer); then hang up or continue in
        the dialplan (``[call] on_end`` unless ``action`` is given; ``target`` = where to)."""
        started = time.monotonic()
        if goodbye and self.conversation is not None and self.backend.ready and not self.stopping:
            self.hold_input(True)
            answered = await self.ask_ai(goodbye)
            stop = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait({answered, stop}, timeout=GOODBYE_LIMIT_S, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
        if self.playout.buffered_bytes:
            await self.wait_playout(limit=max(0.0, GOODBYE_LIMIT_S - (time.monotonic() - started)))
            if not self.stopping:
                await asyncio.sleep(PLAYOUT_TAIL_S)
        self.finish(reason, action or self.settings.call.on_end, target)

    def spawn(self: "Call", coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run a coroutine for this call; it is cancelled when the call ends."""
        return self._spawn(coro)
