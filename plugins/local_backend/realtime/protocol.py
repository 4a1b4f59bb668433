"""GA client event handling: validation, session, input audio + VAD, items, responses."""

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
from typing import TYPE_CHECKING, Any

from . import errors
from .errors import ProtocolError
from .ga_schema import client_event_specs
from .ids import item_id as new_item_id
from .ids import new_id, random_token
from .items import ItemEvents, with_object
from .records import Conversation, ItemState, ResponseRecord
from .responder import ResponseRun
from .script import Turn, default_turn
from .session import apply_update, bytes_per_ms, default_session
from .vad import InputAudio, SpeechStarted, VadEvent

if TYPE_CHECKING:
    from .connection import FakeConnection

MAX_APPEND_BYTES = 15 * 1024 * 1024
Handler = Callable[[dict[str, Any]], Awaitable[None]]


class RealtimeProtocol(ItemEvents):
    """The server side of one Realtime session."""

    def __init__(self, conn: FakeConnection) -> None:
        self.conn = conn
        self.script = conn.script
        self.rng = random.Random(self.script.seed)  # response chunking / obfuscation: reproducible per seed
        self.transcription_rng = random.Random(self.script.seed + 1)
        self.session = default_session(conn.model)
        self.conversation_id = new_id("conv")
        self.conversation = Conversation()
        self.audio = InputAudio(self.script.silence_amplitude, self.script.energy_threshold)
        self.active: ResponseRun | None = None
        self.voice_locked = False
        self.user_turns = 0
        self.next_turn = 0
        self.default_turns = 0
        self.speech_item_id: str | None = None
        self.last_user_audio = b""  # the audio of the last committed user turn (for Script.compose)
        self.idle_anchor_ms: float | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.specs = client_event_specs(conn.azure)
        self.handlers: dict[str, Handler] = {
            "session.update": self.session_update,
            "input_audio_buffer.append": self.append,
            "input_audio_buffer.commit": self.commit,
            "input_audio_buffer.clear": self.clear,
            "output_audio_buffer.clear": self.output_audio_buffer_clear,
            "conversation.item.create": self.item_create,
            "conversation.item.truncate": self.truncate,
            "conversation.item.delete": self.item_delete,
            "conversation.item.retrieve": self.item_retrieve,
            "response.create": self.response_create,
            "response.cancel": self.response_cancel,
        }

    # ----- plumbing ----------------------------------------------------------------------
    async def emit(self, event: dict[str, Any], **kwargs: Any) -> bool:
        """Send through the connection (see ``FakeConnection.emit``)."""
        return await self.conn.emit(event, **kwargs)

    async def send_error(self, error: ProtocolError, client_event_id: str | None) -> None:
        """Send an ``error`` event echoing the client's ``event_id``."""
        await self.emit({"type": "error", "error": error.payload(client_event_id)})

    @property
    def input_format(self) -> dict[str, Any]:
        """The session's current ``audio.input.format``."""
        fmt: dict[str, Any] = self.session["audio"]["input"]["format"]
        return fmt

    @property
    def turn_detection(self) -> dict[str, Any] | None:
        """The session's current ``audio.input.turn_detection`` (None: manual turns)."""
        detection: dict[str, Any] | None = self.session["audio"]["input"]["turn_detection"]
        return detection

    async def on_connect(self) -> None:
        """``session.created`` at once, then the script's ``error_on_connect`` if any."""
        await self.emit({"type": "session.created", "session": copy.deepcopy(self.session)})
        if self.script.error_on_connect is not None:
            error = {"type": "invalid_request_error", "code": None, "message": "Injected error.", "param": None,
                     "event_id": None, **self.script.error_on_connect}
            await self.emit({"type": "error", "error": error})

    async def shutdown(self) -> None:
        """Stop background work when the socket is gone."""
        tasks = list(self.tasks)
        if self.active is not None and self.active.task is not None:
            tasks.append(self.active.task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def spawn(self, coro: Awaitable[None]) -> None:
        """Run background work that ``shutdown`` cancels."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # ----- dispatch ----------------------------------------------------------------------
    async def handle_binary(self, data: bytes) -> None:
        """Binary frames are not part of the protocol: answer with an error."""
        self.conn.received.append((time.time(), {"type": None, "binary_bytes": len(data)}))
        self.conn.notify()
        await self.send_error(ProtocolError("invalid_event", "Binary frames are not supported; send JSON text "
                                            "frames."), None)

    async def handle_text(self, text: str) -> None:
        """Parse, record and dispatch one client frame; protocol errors become ``error`` events."""
        received_at = time.time()
        try:
            event = json.loads(text)
        except ValueError as exc:
            self.conn.received.append((received_at, {"type": None, "invalid_json": text[:500]}))
            self.conn.notify()
            await self.send_error(ProtocolError("invalid_json", f"Invalid JSON in client event: {exc}."), None)
            return
        if not isinstance(event, dict):
            self.conn.received.append((received_at, {"type": None, "not_an_object": event}))
            self.conn.notify()
            await self.send_error(errors.invalid_type("", "an object", event), None)
            return
        self.conn.received.append((received_at, event))
        self.conn.notify()
        event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        try:
            await self._dispatch(event)
        except ProtocolError as error:
            await self.send_error(error, event_id)
        except Exception as exc:  # a crash here is a bug in the fake, not in the client
            self.conn.server.record_fake_bug(f"crash handling {event.get('type')!r}", exc)
            await self.send_error(ProtocolError("server_error", "The fake crashed; see server.fake_bugs.",
                                                type="server_error"), event_id)

    async def _dispatch(self, event: dict[str, Any]) -> None:
        if "type" not in event:
            raise ProtocolError("invalid_event", "The 'type' field is missing.")
        kind = event["type"]
        if not isinstance(kind, str) or kind not in self.specs:
            raise errors.invalid_choice("type", kind, self.specs)
        try:
            self.specs[kind](event, "")
        except ProtocolError as error:
            if kind == "session.update":
                self._record_session_update(event.get("session"), error)
            raise
        await self.handlers[kind](event)

    def _record_session_update(self, session: Any, error: ProtocolError | None) -> None:
        self.conn.session_updates.append({"t": time.time(), "session": session, "accepted": error is None,
                                          "error_code": None if error is None else error.code})
        self.conn.notify()

    # ----- session -----------------------------------------------------------------------
    async def session_update(self, event: dict[str, Any]) -> None:
        """Strict partial update; ``session.updated`` carries the full effective session."""
        update = event["session"]
        old_detection = self.turn_detection
        try:
            new_session = apply_update(self.session, update, voice_locked=self.voice_locked)
        except ProtocolError as error:
            self._record_session_update(update, error)
            raise
        self.session = new_session
        new_detection = self.turn_detection
        if new_detection is None or old_detection is None or new_detection["type"] != old_detection["type"]:
            self.audio.reset_buffer()  # a change of turn detection mode starts an empty buffer
            self.speech_item_id = None
        self._record_session_update(update, None)
        await self.emit({"type": "session.updated", "session": copy.deepcopy(self.session)})

    # ----- input audio -------------------------------------------------------------------
    def _silence_ms(self) -> int:
        detection = self.turn_detection or {}
        if detection.get("type") == "semantic_vad":
            return self.script.semantic_vad_silence_ms[detection.get("eagerness", "auto")]
        return int(detection.get("silence_duration_ms", 200))

    async def append(self, event: dict[str, Any]) -> None:
        """Decode, record, advance the audio clock and run VAD (no acknowledgement)."""
        try:
            data = base64.b64decode(event["audio"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise errors.invalid_value("audio", f"Invalid 'audio': not valid base64 ({exc}).") from None
        if len(data) > MAX_APPEND_BYTES:
            raise errors.invalid_value("audio", "Invalid 'audio': more than 15 MiB in one event.")
        if self.input_format["type"] != "audio/pcmu":
            self.conn.audio_before_pcmu = True
        self.conn.input_audio.extend(data)
        self.conn.appends.append((time.time(), len(data)))
        self.conn.notify()
        for vad_event in self.audio.append(data, self.input_format, self.turn_detection, self._silence_ms()):
            await self._on_vad(vad_event)
        await self._check_idle_timeout()

    async def _on_vad(self, vad_event: VadEvent) -> None:
        detection = self.turn_detection or {}
        if isinstance(vad_event, SpeechStarted):
            self.speech_item_id = new_item_id()
            self.idle_anchor_ms = None
            run = self.active
            interrupt = bool(detection.get("interrupt_response", True)) and run is not None and run.active
            if interrupt and run is not None:
                run.request_cancel("turn_detected")
            self.conn.speech_started_times.append(time.time())
            await self.emit({"type": "input_audio_buffer.speech_started",
                             "audio_start_ms": vad_event.audio_start_ms, "item_id": self.speech_item_id})
            if interrupt and run is not None:
                await run.wait_finished()
            return
        item_id = self.speech_item_id or new_item_id()
        await self.emit({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": vad_event.audio_end_ms,
                         "item_id": item_id})
        await self._commit_buffer(item_id, self._input_between(self.audio.speech_audio_start_ms, vad_event.audio_end_ms))
        if detection.get("create_response", True):
            await self._auto_response("vad")

    async def _check_idle_timeout(self) -> None:
        detection = self.turn_detection
        if (detection is None or detection["type"] != "server_vad" or detection.get("idle_timeout_ms") is None
                or self.idle_anchor_ms is None or self.audio.speaking or (self.active and self.active.active)):
            return
        if self.audio.processed_ms - self.idle_anchor_ms < detection["idle_timeout_ms"]:
            return
        item_id = new_item_id()
        await self.emit({"type": "input_audio_buffer.timeout_triggered", "audio_start_ms": int(self.idle_anchor_ms),
                         "audio_end_ms": int(self.audio.processed_ms), "item_id": item_id})
        self.idle_anchor_ms = None
        await self._commit_buffer(item_id, b"")
        await self._auto_response("idle_timeout")

    def _input_between(self, start_ms: float, end_ms: float) -> bytes:
        """The appended input audio from ``start_ms`` to ``end_ms`` on the input clock (the session
        keeping one input format, as aribot's does)."""
        per_ms = bytes_per_ms(self.input_format)
        return bytes(self.conn.input_audio[int(start_ms) * per_ms:int(end_ms) * per_ms])

    async def _commit_buffer(self, item_id: str, audio: bytes) -> None:
        """committed -> conversation.item.added -> .done, then (async) input transcription."""
        self.last_user_audio = audio
        self.speech_item_id = None
        self.audio.reset_buffer()
        item = with_object({"id": item_id, "type": "message", "status": "completed", "role": "user",
                           "content": [{"type": "input_audio", "transcript": None}]}, self.script.include_object)
        previous = self.conversation.add(ItemState(copy.deepcopy(item)))
        await self.emit({"type": "input_audio_buffer.committed", "previous_item_id": previous, "item_id": item_id})
        await self.emit({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
        await self.emit({"type": "conversation.item.done", "previous_item_id": previous, "item": item})
        self.user_turns += 1
        transcription = self.session["audio"]["input"]["transcription"]
        if transcription is not None:
            self.spawn(self._transcribe(item_id, self.user_turns, audio, transcription))

    async def _transcribe(self, item_id: str, number: int, audio: bytes, config: dict[str, Any]) -> None:
        await self.conn.server.clock.wait(self.script.transcription_delay_s)
        if self.script.transcribe is not None:
            transcript = await self.script.transcribe(audio)
        else:
            transcript = self.script.caller_transcript(number)
        words = re.findall(r"\s*\S+", transcript)
        middle = max(1, len(words) // 2)
        for piece in ("".join(words[:middle]), "".join(words[middle:])):
            if piece:
                delta: dict[str, Any] = {"type": "conversation.item.input_audio_transcription.delta",
                                         "item_id": item_id, "content_index": 0, "delta": piece}
                if self.script.obfuscation:
                    delta["obfuscation"] = random_token(self.transcription_rng)
                await self.emit(delta)
        if config.get("model") == "whisper-1":
            usage: dict[str, Any] = {"type": "duration", "seconds": 1.0}
        else:
            usage = {"type": "tokens", "total_tokens": 20, "input_tokens": 14,
                     "input_token_details": {"text_tokens": 0, "audio_tokens": 14}, "output_tokens": 6}
        state = self.conversation.get(item_id)
        if state is not None:
            state.item["content"][0]["transcript"] = transcript
        await self.emit({"type": "conversation.item.input_audio_transcription.completed", "item_id": item_id,
                         "content_index": 0, "transcript": transcript, "usage": usage})

    async def commit(self, event: dict[str, Any]) -> None:
        """Manual commit of >= 100 ms; it never starts a response."""
        buffered = self.audio.buffered_ms(self.turn_detection is not None)
        if buffered < 100:
            raise errors.commit_empty(buffered)
        end_ms = self.audio.processed_ms
        await self._commit_buffer(self.speech_item_id or new_item_id(),
                                  self._input_between(end_ms - buffered, end_ms))

    async def clear(self, event: dict[str, Any]) -> None:
        """Drop the uncommitted buffer."""
        self.audio.reset_buffer()
        self.speech_item_id = None
        await self.emit({"type": "input_audio_buffer.cleared"})

    async def output_audio_buffer_clear(self, event: dict[str, Any]) -> None:
        """WebRTC/SIP only: refused on a WebSocket."""
        raise errors.invalid_value("type", "output_audio_buffer.clear is only supported on WebRTC and SIP "
                                           "connections; on a WebSocket the client owns playback.")

    # ----- responses ---------------------------------------------------------------------
    async def response_create(self, event: dict[str, Any]) -> None:
        """Start the next scripted turn unless a response is active."""
        params = event.get("response") or {}
        if params.get("conversation") == "none":
            raise errors.fake_unsupported("out-of-band responses (response.conversation 'none')",
                                          "response.conversation")
        if self.active is not None and self.active.active:
            raise errors.active_response(self.active.record.id)
        await self._start_response("client", params)

    async def response_cancel(self, event: dict[str, Any]) -> None:
        """Cancel the active response; returns after its ``response.done``."""
        run = self.active
        wanted = event.get("response_id")
        if run is None or not run.active or run.cancelled or (wanted and wanted != run.record.id):
            raise errors.cancel_not_active()
        run.request_cancel("client_cancelled")
        await run.wait_finished()

    async def _auto_response(self, trigger: str) -> None:
        run = self.active
        if run is not None and run.active:
            if not run.cancelled:
                self.conn.skipped_auto_responses += 1
                return
            await run.wait_finished()
        await self._start_response(trigger, {})

    def _next_turn(self, trigger: str, params: dict[str, Any]) -> Turn:
        if self.script.compose is not None:
            return self.script.compose(trigger, self.last_user_audio, params)
        if self.next_turn < len(self.script.turns):
            self.next_turn += 1
            return self.script.turns[self.next_turn - 1]
        self.default_turns += 1
        return default_turn(self.default_turns, bytes_per_ms(self.session["audio"]["output"]["format"]))

    def _check_tools(self, turn: Turn, params: dict[str, Any]) -> None:
        tools = params.get("tools", self.session["tools"])
        names = {tool.get("name") for tool in tools}
        for output in turn.outputs:
            name = getattr(output, "name", None)
            if name is not None and name not in names:
                self.conn.warnings.append(f"scripted function call {name!r} is not among the tools the client "
                                          f"declared: {sorted(n for n in names if n)}")

    async def _start_response(self, trigger: str, params: dict[str, Any]) -> None:
        turn = self._next_turn(trigger, params)
        self._check_tools(turn, params)
        record = ResponseRecord(id=new_id("resp"), kind=turn.kind, trigger=trigger, turn=turn,
                                created_at=time.time())
        run = ResponseRun(self, record, params)
        self.active = run
        self.idle_anchor_ms = None
        self.conn.responses.append(record)
        self.conn.notify()
        await run.start()

    def on_response_finished(self, run: ResponseRun) -> None:
        """Arm the idle timeout: it runs from response.done plus the playback time of its audio."""
        self.conn.notify()
        detection = self.turn_detection
        armed = detection is not None and detection.get("idle_timeout_ms") is not None
        if armed and run is self.active and not self.audio.speaking:
            self.idle_anchor_ms = self.audio.processed_ms + len(run.record.audio) / run.bytes_per_ms
