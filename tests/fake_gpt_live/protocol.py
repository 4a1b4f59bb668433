"""The server side of one GPT-Live session: strict dispatch, startup, input audio, appends, delegation
commands, usage, expiry and close (reference card §2-§7, checked against ``openai.types.live``)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import json
import random
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aribot.plugins.local_backend.realtime.ids import new_id

from . import errors
from .audio import InputAudio, SpeechStarted, UtteranceEnded, VadEvent, bytes_per_ms
from .backend import Backend, PendingDelegation
from .connection import LiveConnection
from .errors import ProtocolError
from .player import TurnPlayer
from .records import AppendRecord, AudioArrival, ClientBug, InputGap, ToolOutputRecord, TurnRecord
from .script import Turn, default_turn
from .sdk_models import CLIENT_EVENT_MODELS, REALTIME_ONLY_CLIENT_EVENTS, validate_client_event
from .session import apply_update, approx_tokens, check_start, check_update_keys, resolve

CONTEXT_WINDOW_TOKENS = 128_000
SESSION_LIFETIME_S = 3600  # expires_at when the script sets no max_session_s (no limit was found)
Handler = Callable[[dict[str, Any]], Awaitable[None]]
# Every client event type the fake accepts, and its handler (the unit tests check each is in the SDK's
# ClientEvent union; the union's other members are refused as fake_unsupported).
HANDLERS = {
    "session.start": "session_start",
    "session.update": "session_update",
    "session.input_audio.append": "input_audio_append",
    "session.input_audio.mute": "mute",
    "session.input_audio.unmute": "mute",
    "session.instructions.append": "append",
    "session.thinking.append": "append",
    "session.commentary.append": "append",
    "response.item.create": "response_item_create",
    "response.create": "response_create",
    "session.close": "session_close",
}


class LiveProtocol:
    """Client events in, server events out; state ``new`` -> ``starting`` -> ``started`` -> ``closed``."""

    def __init__(self, conn: LiveConnection) -> None:
        self.conn = conn
        self.script = conn.script
        self.clock = conn.server.clock
        self.rng = random.Random(self.script.seed)
        self.state = "new"
        self.input: InputAudio | None = None
        self.backend: Backend | None = None
        self.client_delegations: set[str] = set()
        self.pending_acks: list[AppendRecord] = []
        self.players: list[TurnPlayer] = []
        self.started_at = 0.0
        self.next_turn = 0
        self.default_turns = 0
        self.utterances = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.handlers: dict[str, Handler] = {kind: getattr(self, name) for kind, name in HANDLERS.items()}

    # ----- plumbing ----------------------------------------------------------------------------
    async def emit(self, event: dict[str, Any], **kwargs: Any) -> bool:
        """Send through the connection (see ``LiveConnection.emit``)."""
        return await self.conn.emit(event, **kwargs)

    @property
    def timeline_ms(self) -> float:
        """The session timeline: ms of input audio received."""
        return self.input.timeline_ms if self.input is not None else 0.0

    @property
    def audio_format(self) -> dict[str, Any]:
        """The session's audio format (both directions)."""
        assert self.conn.resource is not None
        fmt: dict[str, Any] = self.conn.resource["audio"]["format"]
        return fmt

    def spawn(self, coro: Awaitable[None]) -> None:
        """Background work that ``shutdown`` cancels."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def shutdown(self) -> None:
        """Stop all background work (the socket is gone or the session is over), except the caller's task."""
        current = asyncio.current_task()
        tasks = [t for t in [*self.tasks, *(p.task for p in self.players)] if t is not current and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def send_error(self, error: ProtocolError, client_event_id: str | None, event_type: str | None = None,
                         *, client_bug: bool = True) -> None:
        """Send an ``error`` event; a client's mistake is also recorded in ``conn.client_bugs``."""
        if client_bug:
            self.conn.client_bugs.append(ClientBug(self.clock.time(), event_type, error.code or "", error.message,
                                                   error.param, client_event_id))
        await self.emit({"type": "error", "error": errors.payload(error, client_event_id)})

    # ----- dispatch ----------------------------------------------------------------------------
    async def handle_binary(self, data: bytes) -> None:
        """Binary frames are not part of the protocol."""
        self.conn.received.append((time.time(), {"type": None, "binary_bytes": len(data)}))
        await self.send_error(ProtocolError("invalid_event", "Binary frames are not supported; send JSON text."),
                              None)

    async def handle_text(self, text: str) -> None:
        """Parse, record and dispatch one client frame; a client mistake becomes an ``error`` event."""
        try:
            event = json.loads(text)
        except ValueError as exc:
            self.conn.received.append((time.time(), {"type": None, "invalid_json": text[:500]}))
            await self.send_error(ProtocolError("invalid_json", f"Invalid JSON in client event: {exc}."), None)
            return
        if not isinstance(event, dict):
            self.conn.received.append((time.time(), {"type": None, "not_an_object": event}))
            await self.send_error(ProtocolError("invalid_event", "A client event must be a JSON object."), None)
            return
        self.conn.received.append((time.time(), event))
        event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        kind = event.get("type") if isinstance(event.get("type"), str) else None
        try:
            await self._dispatch(event)
        except ProtocolError as error:
            await self.send_error(error, event_id, kind)
        except Exception as exc:  # a crash here is a bug in the fake, not in the client
            self.conn.server.record_fake_bug(f"crash handling {kind!r}", exc)
            await self.send_error(ProtocolError("server_error", "The fake crashed; see server.fake_bugs.",
                                                type="server_error"), event_id, kind, client_bug=False)

    async def _dispatch(self, event: dict[str, Any]) -> None:
        if self.state == "closed":
            return  # session.closed was sent; the socket is closing
        kind = event.get("type")
        if "type" not in event:
            raise errors.missing_parameter("type")
        if not isinstance(kind, str) or kind not in CLIENT_EVENT_MODELS:
            raise errors.unknown_event(kind, self.handlers, realtime=kind in REALTIME_ONLY_CLIENT_EVENTS)
        if kind == "session.start" and self.state != "new":
            raise errors.already_started()
        if kind != "session.start" and self.state != "started":
            raise errors.not_started(kind)
        if kind not in self.handlers:
            raise errors.fake_unsupported(f"'{kind}'", "type")
        if kind == "session.update":
            check_update_keys(event.get("session"))
        validate_client_event(event)
        await self.handlers[kind](event)

    # ----- session -----------------------------------------------------------------------------
    async def session_start(self, event: dict[str, Any]) -> None:
        """Validate the config, then answer ``session.started`` (after ``start_latency_s``) or the injected
        ``error_on_start``; commands sent before ``session.started`` are refused meanwhile."""
        config = event["session"]
        check_start(config)
        self.state = "starting"
        self.spawn(self._finish_start(config, event.get("event_id")))

    async def _finish_start(self, config: dict[str, Any], client_event_id: str | None) -> None:
        await self.clock.wait(self.script.start_latency_s)
        if self.script.error_on_start is not None:
            error = ProtocolError(**{"code": "server_error", "message": "Injected startup error.",
                                     "type": "server_error", **self.script.error_on_start})
            self.state = "new"
            await self.send_error(error, client_event_id, client_bug=False)
            return
        lifetime = self.script.max_session_s or SESSION_LIFETIME_S
        resource = resolve(config, session_id=new_id("live"), expires_at=int(time.time() + lifetime))
        delegation = resource["delegation"]
        self.backend = Backend(delegation["responses"]) if delegation["type"] == "responses" else None
        self.input = InputAudio(resource["audio"]["format"], self.script.silence_amplitude,
                                self.script.end_of_turn_silence_ms)

        def started() -> None:  # under the send lock: no client event is judged "not started" after this
            self.conn.session, self.conn.resource = copy.deepcopy(config), resource
            self.state, self.started_at = "started", self.clock.time()

        reply = {"type": "session.started", **_echo(client_event_id), "session": copy.deepcopy(resource)}
        if await self.emit(reply, before_send=started):
            if self.script.usage_interval_s is not None:
                self.spawn(self._report_usage(self.script.usage_interval_s))
            if self.script.max_session_s is not None:
                self.spawn(self._expire(self.script.max_session_s))

    async def session_update(self, event: dict[str, Any]) -> None:
        """Sparse ``delegation`` changes; ``session.updated`` carries the whole resolved session."""
        assert self.conn.resource is not None
        resource = apply_update(self.conn.resource, event["session"])
        self.conn.resource = resource
        if self.backend is not None:
            self.backend.config = resource["delegation"]["responses"]
        await self.emit({"type": "session.updated", **_echo(event.get("event_id")),
                         "session": copy.deepcopy(resource)})

    # ----- input audio -------------------------------------------------------------------------
    async def input_audio_append(self, event: dict[str, Any]) -> None:
        """Decode, record (bytes, arrival, gaps), advance the timeline and run VAD; no acknowledgement."""
        assert self.input is not None
        try:
            data = base64.b64decode(event["audio"], validate=True)
        except (binascii.Error, ValueError):
            raise errors.invalid_value("audio", "Invalid 'audio': not valid base64.") from None
        if self.audio_format["type"] == "audio/pcm" and len(data) % 2:
            raise errors.invalid_audio(f"PCM16 audio needs an even number of bytes; this append has {len(data)}.")
        now = self.clock.time()
        arrivals = self.conn.audio_arrivals
        if arrivals and now - arrivals[-1].at > self.script.gap_threshold_ms / 1000:
            self.conn.input_gaps.append(InputGap(arrivals[-1].at, now))
        arrivals.append(AudioArrival(now, len(data)))
        self.conn.input_audio.extend(data)
        for vad_event in self.input.push(data, muted=self.conn.muted):
            await self._on_vad(vad_event)
        await self._flush_acks()

    async def _on_vad(self, vad_event: VadEvent) -> None:
        if isinstance(vad_event, SpeechStarted):
            for player in self.players:
                player.interrupt("caller")
            return
        assert isinstance(vad_event, UtteranceEnded)
        self.utterances += 1
        words = re.findall(r"\s*\S+", self.script.caller_transcript(self.utterances))
        middle = max(1, len(words) // 2)
        span = vad_event.end_ms - vad_event.start_ms
        cut = vad_event.start_ms + span * middle // max(1, len(words))
        pieces = [("".join(words[:middle]), vad_event.start_ms, cut), ("".join(words[middle:]), cut, vad_event.end_ms)]
        for text, start_ms, end_ms in pieces:
            if text:
                await self.emit({"type": "session.input_transcript.delta", "delta": text, "start_ms": start_ms,
                                 "end_ms": end_ms})
        await self._trigger("caller")

    async def mute(self, event: dict[str, Any]) -> None:
        """``mute`` / ``unmute``: the model then hears silence (audio is still recorded); acked at once."""
        self.conn.muted = event["type"].endswith(".mute")
        ack = "session.input_audio.muted" if self.conn.muted else "session.input_audio.unmuted"
        await self.emit({"type": ack, **_echo(event.get("event_id"))})

    # ----- appends -----------------------------------------------------------------------------
    async def append(self, event: dict[str, Any]) -> None:
        """instructions / thinking / commentary: ``delegation_id`` present (null, or a known client
        delegation), content of at most ~500 tokens; acked once the injection time of input audio followed."""
        if "delegation_id" not in event:
            raise errors.missing_parameter("delegation_id")
        delegation_id = event["delegation_id"]
        if delegation_id is not None and self.backend is not None:
            raise errors.invalid_value("delegation_id", "Non-null delegation_id values are not accepted with "
                                                        "Responses delegation.")
        if delegation_id is not None and delegation_id not in self.client_delegations:
            raise errors.invalid_value("delegation_id", f"Unknown delegation_id '{delegation_id}'; use the id of a "
                                                        "session.delegation.created with target 'client'.")
        content = event["content"]
        if not content.strip():  # fake's choice: the sources do not say
            raise errors.invalid_value("content", "Invalid 'content': empty string. Expected a non-empty string.")
        if approx_tokens(content) > errors.APPEND_TOKEN_LIMIT:
            raise errors.too_many_tokens("content", errors.APPEND_TOKEN_LIMIT, approx_tokens(content))
        start_ms = int(self.timeline_ms)
        record = AppendRecord(event["type"], content, delegation_id, event.get("event_id"), start_ms,
                              start_ms + self.script.append_injection_ms)
        self.conn.appends.append(record)
        self.pending_acks.append(record)
        await self._flush_acks()

    async def _flush_acks(self) -> None:
        while self.pending_acks and self.timeline_ms >= self.pending_acks[0].end_ms:
            record = self.pending_acks.pop(0)
            record.acked = True
            await self.emit({"type": record.type.replace(".append", ".appended"), **_echo(record.client_event_id),
                             "start_ms": record.start_ms, "end_ms": record.end_ms})
            if record.type in self.script.speak_on_appends:
                await self._trigger("append")

    # ----- turns -------------------------------------------------------------------------------
    def _next_turn(self, trigger: str) -> Turn | None:
        if self.next_turn < len(self.script.turns):
            turn = self.script.turns[self.next_turn]
            if turn.on is not None and turn.on != trigger:
                return None
            self.next_turn += 1
            return turn
        if not self.script.default_turns:
            return None
        self.default_turns += 1
        return default_turn(self.default_turns, self.audio_format)

    async def _trigger(self, trigger: str) -> None:
        """Take the next scripted turn; an append cuts in on speech in progress, others wait for it."""
        turn = self._next_turn(trigger)
        if turn is None:
            self.conn.ignored_triggers.append(trigger)
            return
        if trigger == "append":
            for player in self.players:
                player.interrupt("append")
        record = TurnRecord(len(self.conn.turns), trigger, turn, self.clock.time(), int(self.timeline_ms))
        self.conn.turns.append(record)
        previous = self.players[-1] if self.players else None
        self.players = [p for p in self.players if not p.finished.is_set()]
        self.players.append(TurnPlayer(self, record, previous))

    # ----- Responses delegation ----------------------------------------------------------------
    async def response_item_create(self, event: dict[str, Any]) -> None:
        """A backend input item; a ``function_call_output`` must answer a pending call. No acknowledgement."""
        if self.backend is None:
            raise errors.responses_delegation_required(event["type"])
        item = event["item"]
        if item.get("type") != "function_call_output":
            self.conn.backend_items.append(copy.deepcopy(item))
            return
        delegation, name = self.backend.add_output(item.get("call_id"), item["output"])
        self.conn.tool_outputs.append(ToolOutputRecord(item["call_id"], name, copy.deepcopy(item["output"]),
                                                       delegation.id, self.clock.time()))

    async def response_create(self, event: dict[str, Any]) -> None:
        """Continue the backend once every pending call has its output: its text answer, then the model
        speaks (trigger ``backend``). With nothing pending the backend answers the items it was given."""
        if self.backend is None:
            raise errors.responses_delegation_required(event["type"])
        ready: list[PendingDelegation | None] = [*self.backend.take_ready()] or [None]
        for delegation in ready:
            answer = delegation.answer if delegation is not None else "Done."
            for nested in self.backend.answer_events(new_id("resp"), answer):
                wrapper = {"type": "response.event", **_echo(event.get("event_id")), "event": nested}
                if delegation is not None:
                    wrapper["delegation_id"] = delegation.id
                await self.emit(wrapper)
            await self._trigger("backend")

    # ----- usage, expiry, close ----------------------------------------------------------------
    def usage(self) -> dict[str, Any]:
        """Cumulative billable whole seconds of session time (SDK ``SessionUsage``)."""
        return {"seconds": float(int(max(0.0, self.clock.time() - self.started_at)))}

    def context_ratio(self) -> float:
        """Estimated context use: instructions plus ~10 tokens per second of audio either way."""
        resource = self.conn.resource or {}
        output_ms = sum(len(turn.audio_sent) for turn in self.conn.turns) / bytes_per_ms(self.audio_format)
        tokens = approx_tokens(resource.get("instructions", "")) + (self.timeline_ms + output_ms) / 100
        return round(min(1.0, tokens / CONTEXT_WINDOW_TOKENS), 6)

    async def _report_usage(self, interval: float) -> None:
        count = 1
        while True:
            await self.clock.wait(self.started_at + count * interval - self.clock.time())
            count += 1
            await self.emit({"type": "session.usage.updated", "usage": self.usage(),
                             "context_window": {"usage_ratio": self.context_ratio()}})

    async def _expire(self, seconds: float) -> None:
        await self.clock.wait(seconds)
        await self.finish("expired")

    async def session_close(self, event: dict[str, Any]) -> None:
        """Graceful close requested by the client."""
        await self.finish("close_requested", event.get("event_id"))

    async def finish(self, reason: str, client_event_id: str | None = None) -> None:
        """End the session: pending appends error out, speech stops, ``session.closed``, then a normal close."""
        if self.state == "closed" or self.conn.closed:
            return
        started, self.state = self.state == "started", "closed"
        await self.shutdown()
        for record in self.pending_acks:
            await self.send_error(errors.append_not_injected(), record.client_event_id, record.type,
                                  client_bug=False)
        self.pending_acks.clear()
        if started and self.conn.resource is not None:
            self.conn.closed_reason = reason
            await self.emit({"type": "session.closed", **_echo(client_event_id), "reason": reason,
                             "session": copy.deepcopy(self.conn.resource), "usage": self.usage()}, final=True)
        await self.conn.close(1000, "")


def _echo(client_event_id: str | None) -> dict[str, Any]:
    """``client_event_id`` when the client supplied an ``event_id``."""
    return {} if client_event_id is None else {"client_event_id": client_event_id}

