"""One call's OpenAI Realtime session as a speech backend: connect and configure, stream caller
audio in, turn server events into playout, transcripts, barge-in and tool calls
(reference/openai-realtime.md §5). Core decides when a new session takes over; this carries the
conversation into it (``resume``)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections import deque
from typing import Any

from aribot.core import events as ev
from aribot.core.backend import (
    BackendHost,
    BackendUnavailable,
    Capabilities,
    SessionChange,
    SessionLost,
    SessionSetup,
    SpeechBackend,
)
from aribot.plugins.openai_realtime.client import (
    RealtimeClosed,
    RealtimeConfig,
    RealtimeConnection,
    RealtimeUnavailable,
    SessionTasks,
    append_message,
    auth_headers,
    build_session_update,
    realtime_url,
    redact_url,
    session_patch,
    turn_detection,
)

log = logging.getLogger("aribot.openai_realtime")
MAX_REPLAY = 200  # items of the conversation replayed into a new session, newest kept
MAX_HISTORY = 4 * MAX_REPLAY  # items remembered; beyond this the oldest are forgotten
MAX_IDS = 1000    # response/item ids kept for bookkeeping (late deltas, barge-in); the oldest go first
SEND_BACKLOG = 250  # appends waiting for a slow socket (5 s at one frame each); beyond, the oldest are dropped
ARRIVALS = 1500    # appends remembered to date the end of speech that turn detection reports (30 s of audio)
BYTES_PER_MS = 8     # G.711 (ulaw, alaw) at 8 kHz: what this backend takes


CAPABILITIES = Capabilities(turn_events=True, truncation=True, tools="functions", audio_formats=("ulaw", "alaw"),
                            continuous_input=False, max_session_s=3600.0, billing="tokens")


class SessionRefused(BackendUnavailable):
    """The Realtime server answered our session.update with an error."""


class RealtimeBackend(SessionTasks, SpeechBackend):
    """Owns the WebSocket of one call and the response bookkeeping around it."""

    service = "Realtime"
    task_log = log

    capabilities = CAPABILITIES
    can_resume = True

    def __init__(self, host: BackendHost, setup: SessionSetup, cfg: RealtimeConfig) -> None:
        super().__init__(host, setup)
        self.cfg = cfg
        self.conn: RealtimeConnection | None = None
        self._frames_per_append = int(self.cfg.append_frames)
        input_buffer_ms = int(host.settings.ai.input_buffer_ms)
        self._pending: deque[tuple[bytes, float | None]] = deque(maxlen=max(1, input_buffer_ms // 20))
        self._outq: asyncio.Queue[tuple[bytes, float | None]] = asyncio.Queue(SEND_BACKLOG)
        self._tasks: set[asyncio.Task[Any]] = set()
        # response bookkeeping
        self.active_response: str | None = None
        self.cancelled: dict[str, None] = {}   # (an ordered set, trimmed like done_responses)
        self.item_response: dict[str, str] = {}
        self.tool_calls: dict[str, dict[str, bool]] = {}  # response id → {call_id: output sent}
        self.done_responses: dict[str, None] = {}   # (an ordered set: the oldest are forgotten first)
        self.need_response = False
        # responses aribot asked for: tagged in metadata, sent one at a time when none is active
        self._requests: dict[str, asyncio.Future[str]] = {}
        self._waiting: deque[tuple[str, dict[str, Any]]] = deque()
        self._create_in_flight: tuple[str, dict[str, Any]] | None = None  # sent, not yet created
        # operator session.updates sent on a live call, oldest first, each answered by the server
        # with session.updated or an error naming its event_id (resolved with "" or the error text)
        self._updates: deque[tuple[str, asyncio.Future[str]]] = deque()
        self.stats = {"late_deltas_dropped": 0, "appended_frames": 0, "input_dropped_frames": 0,
                      "barge_ins": 0, "truncates": 0, "errors": 0, "responses": 0, "bad_events": 0,
                      "send_backlog_dropped": 0}
        # the conversation so far, in order, as GA items to replay into a new session (None: an
        # item whose text is not known yet, e.g. a caller turn still being transcribed)
        self.history: dict[str, dict[str, Any] | None] = {}
        self._history_seq = 0
        self._unsent: tuple[bytes, float | None] | None = None  # the append a closed socket refused
        self._sender: asyncio.Task[None] | None = None
        self._sender_busy = False  # the sender task holds a frame it has not finished sending
        self._batch: list[bytes] = []  # frames gathered for the next append (openai.append_frames > 1)
        self._batch_at: float | None = None  # when the first of them was received
        self._rolling = ""  # why aribot itself closed the socket to roll over ("" = it did not)
        self._closing = False   # aribot closes the session: the call is ending
        self._caller_speaking = False
        self._appended_ms = 0.0   # caller audio appended to this session's input buffer
        self._arrivals: deque[tuple[float, float, float | None]] = deque(maxlen=ARRIVALS)  # per append: ms, when

    # --- caller audio ---------------------------------------------------------------------------
    def _cancel_noted(self, response_id: str) -> None:
        """Remember a response aribot cancelled (its late deltas are dropped); the oldest are forgotten."""
        self.cancelled[response_id] = None
        _trim(self.cancelled, MAX_IDS)

    def feed(self, payload: bytes, received_at: float | None) -> None:
        """Caller audio that passed the activation gate; buffered until the session is ready.

        Once ready, each append is written at once in this very step of the event loop when nothing
        is queued or being sent (``RealtimeConnection.send_now``: no task switch per frame), else it
        waits behind the queue, so the order is kept. With ``openai.append_frames`` > 1 the frames
        are gathered here first: one message per that many frames, the first of them sent
        (append_frames - 1) x 20 ms later."""
        if not self.ready:
            if len(self._pending) == self._pending.maxlen:
                self.stats["input_dropped_frames"] += 1
                if self.stats["input_dropped_frames"] == 1:
                    log.warning("call %s: Realtime session not ready after %d ms of caller audio; dropping "
                                "the oldest audio", self.host.id, self.host.settings.ai.input_buffer_ms)
            self._pending.append((payload, received_at))
            return
        if self._frames_per_append > 1:
            if not self._batch:
                self._batch_at = received_at
            self._batch.append(payload)
            if len(self._batch) < self._frames_per_append:
                return
            payload, received_at = b"".join(self._batch), self._batch_at
            self._batch.clear()
        if (not self._sender_busy and self._outq.empty() and self.conn is not None
                and self.conn.send_now(append_message(payload))):
            self._appended(received_at, len(payload))
            return
        if self._outq.full():  # the service reads slower than the caller speaks: keep the newest audio
            self._outq.get_nowait()
            self.stats["send_backlog_dropped"] += 1
            if self.stats["send_backlog_dropped"] == 1:
                log.warning("call %s: the Realtime socket is not keeping up (%d appends waiting); dropping the "
                            "oldest caller audio, counted in send_backlog_dropped", self.host.id, SEND_BACKLOG)
        self._outq.put_nowait((payload, received_at))

    def _appended(self, received_at: float | None, size: int) -> None:
        self.stats["appended_frames"] += 1  # append messages sent (one per append_frames frames)
        start_ms = self._appended_ms
        self._appended_ms += size / BYTES_PER_MS
        self._arrivals.append((start_ms, self._appended_ms, received_at))
        if received_at is not None:
            self.host.record_inbound_latency(received_at)

    def _arrived(self, audio_ms: float) -> float | None:
        """When the caller audio at ``audio_ms`` of this session's input reached aribot (perf_counter),
        if it is among the latest appends."""
        for start_ms, end_ms, received_at in reversed(self._arrivals):
            if start_ms < audio_ms <= end_ms or (audio_ms == 0 and start_ms == 0):
                return None if received_at is None else received_at + (audio_ms - start_ms) / 1000
            if end_ms < audio_ms:
                return None   # beyond what was sent (not this session's audio)
        return None

    async def _send_audio(self) -> None:
        """The queued appends, in order, each awaited (the socket was busy when they came)."""
        assert self.conn is not None
        while True:
            self._sender_busy = False
            payload, received_at = await self._outq.get()
            self._sender_busy = True
            try:
                await self.conn.send(append_message(payload))
            except RealtimeClosed:
                self._unsent = (payload, received_at)  # sent again into the next session
                raise
            self._appended(received_at, len(payload))

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect and configure; the audio that came meanwhile is sent first."""
        try:
            await self._connect()
        except (RealtimeUnavailable, RealtimeClosed) as exc:
            where = redact_url(self.conn.url) if self.conn else "?"
            raise BackendUnavailable(f"Realtime session at {where}: {exc}") from None
        await self._go_live()

    async def serve(self) -> SessionLost | None:
        """Handle server events until the socket closes: None when aribot closed it for the call's
        end, else why the session was lost (a planned rollover included)."""
        assert self.conn is not None
        try:
            async for event in self.conn.events():
                await self.handle(event)
        except RealtimeClosed as exc:
            self.ready = False
            await self._stop_sender()
            if self._closing:
                return None
            reason, planned = (self._rolling or f"closed_{exc.code}"), bool(self._rolling)
            self._rolling = ""
            self._reset_responses()
            if not planned:
                self.host.emit(ev.BackendError(call_id=self.host.id, code=reason, message=exc.reason, fatal=False))
            return SessionLost(reason, f"Realtime WebSocket {exc}", recoverable=True)
        return None

    async def resume(self) -> int:
        """A new session with the conversation so far replayed as items; the caller's unsent audio
        goes first."""
        try:
            await self._connect()
            replayed = await self._replay()
        except (RealtimeUnavailable, RealtimeClosed) as exc:
            if self.conn is not None:
                await self.conn.close()
            raise BackendUnavailable(str(exc) or type(exc).__name__) from None
        await self._go_live()
        return replayed

    async def roll_over(self) -> None:
        if self.conn is not None:
            self._rolling = "max_session_s"
            await self.conn.close()

    async def _go_live(self) -> None:
        """The session is configured: send what was buffered meanwhile, then stream."""
        for item in self._pending:
            self._outq.put_nowait(item)
        self._pending.clear()
        self.ready = True
        self._sender = self._spawn(self._send_audio())
        await self._send_waiting()  # responses asked for before the session was ready

    async def _stop_sender(self) -> None:
        """Stop streaming into the dead socket; keep every frame not known to be sent, in order."""
        if self._sender is not None:
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)
            self._sender = None
            self._sender_busy = False
        carried = [self._unsent] if self._unsent is not None else []
        self._unsent = None
        while not self._outq.empty():
            carried.append(self._outq.get_nowait())
        if self._batch:
            carried.append((b"".join(self._batch), self._batch_at))
            self._batch.clear()
        carried += list(self._pending)
        self._pending.clear()
        self._pending.extend(carried)  # a bounded deque: beyond input_buffer_ms the oldest go

    def _reset_responses(self) -> None:
        """Nothing of the old session's responses can finish now: requests in flight are asked
        again in the new session; audio already received still plays."""
        if self._create_in_flight is not None:
            self._waiting.appendleft(self._create_in_flight)
            self._create_in_flight = None
        if self.active_response is not None:
            self._cancel_noted(self.active_response)
            self.active_response = None
        self._caller_speaking = False

    async def _replay(self) -> int:
        """The conversation so far into the new session, oldest first (the last MAX_REPLAY items)."""
        items = [item for item in self.history.values() if item is not None][-MAX_REPLAY:]
        assert self.conn is not None
        for item in items:
            await self.conn.send({"type": "conversation.item.create", "item": item})
        return len(items)

    async def _connect(self) -> None:
        self._appended_ms, self._arrivals = 0.0, deque(maxlen=ARRIVALS)   # a new session's input starts at 0 ms
        self.conn = RealtimeConnection(realtime_url(self.cfg), auth_headers(self.cfg),
                                       open_timeout=float(self.host.settings.ai.connect_timeout) or None)
        await self.conn.open()
        events = self.conn.events()
        first = await anext(events)
        if first["type"] != "session.created":
            raise SessionRefused(f"first event was {first['type']}: {_error_text(first)}")
        setup = self.setup
        update = build_session_update(self.cfg, setup.audio_format, setup.tools, instructions=setup.instructions,
                                      voice=setup.voice, turn_detection_mode=setup.turn_detection or None)
        update["event_id"] = "aribot_session_update"
        await self.conn.send(update)
        async for event in events:
            if event["type"] == "session.updated":
                session = event.get("session")
                self.session_id = str(session.get("id", "")) if isinstance(session, dict) else ""
                return
            if event["type"] == "error":
                if _error(event).get("event_id") == update["event_id"]:
                    raise SessionRefused(f"session.update refused: {_error_text(event)}")
                log.warning("call %s: Realtime error while configuring the session: %s; still waiting "
                            "for session.updated", self.host.id, _error_text(event))

    async def close(self) -> None:
        self.ready = False
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        if self.conn is not None:
            await self.conn.close()

    @property
    def responding(self) -> bool:
        return self.active_response is not None or self._create_in_flight is not None

    @property
    def caller_speaking(self) -> bool:
        return self._caller_speaking

    def remember(self, key: str, item: dict[str, Any] | None) -> None:
        """Keep ``item`` (or a placeholder) in the replayable history, in conversation order."""
        if key not in self.history or item is not None:
            self.history[key] = item
            _trim(self.history, MAX_HISTORY)

    def _client_key(self) -> str:
        self._history_seq += 1
        return f"aribot-{self._history_seq}"

    async def on_input_audio_buffer_committed(self, event: dict[str, Any]) -> None:
        self.remember(str(event.get("item_id", "")), None)

    async def on_response_output_item_added(self, event: dict[str, Any]) -> None:
        item = event.get("item") or {}
        if item.get("type") in ("message", "function_call"):
            self.remember(str(item.get("id", "")), None)

    async def on_response_output_item_done(self, event: dict[str, Any]) -> None:
        item = event.get("item") or {}
        key = str(item.get("id", ""))
        if item.get("type") == "function_call":
            self.remember(key, {"type": "function_call", "call_id": item.get("call_id", ""),
                                "name": item.get("name", ""), "arguments": item.get("arguments", "")})
        elif item.get("type") == "message" and event.get("response_id") not in self.cancelled:
            text = "".join(str(part.get("transcript") or part.get("text") or "") for part in item.get("content") or ())
            if text.strip():
                self.remember(key, {"type": "message", "role": "assistant",
                                    "content": [{"type": "output_text", "text": text}]})

    async def send(self, event: dict[str, Any]) -> None:
        if self.conn is not None and self.ready:
            try:
                await self.conn.send(event)
            except RealtimeClosed:
                pass  # reported by the receive loop

    async def update(self, change: SessionChange, timeout: float = 5.0) -> str:
        """Send a session.update on the live session and wait for the server's answer: "" when it
        is applied (session.updated), else why it was refused (the error's code and message)."""
        if self.conn is None or not self.ready:
            return "the AI session is not ready"
        patch = session_patch(self.cfg, instructions=change.instructions, voice=change.voice,
                              turn_detection_mode=change.turn_detection, tools=change.tools)
        event_id = f"aribot_update_{self.next_tag()}"
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._updates.append((event_id, answer))
        await self.send({**patch, "event_id": event_id})
        try:
            return await asyncio.wait_for(answer, timeout)
        except TimeoutError:
            return f"no answer from the AI service within {timeout:g} s"
        finally:
            with contextlib.suppress(ValueError):
                self._updates.remove((event_id, answer))

    # --- server events -----------------------------------------------------------------------
    async def on_session_updated(self, event: dict[str, Any]) -> None:
        while self._updates:
            _event_id, answer = self._updates.popleft()
            if not answer.done():
                answer.set_result("")
                return

    async def handle(self, event: dict[str, Any]) -> None:
        """One server event. One that is malformed (a field of the wrong type …) costs only itself:
        one log line, counted in ``bad_events``; the session goes on."""
        kind = event["type"]
        handler = getattr(self, "on_" + kind.replace(".", "_"), None)
        if handler is None:
            return
        try:
            await handler(event)
        except RealtimeClosed:
            raise   # the socket closed: serve() reports it
        except Exception as exc:
            self.stats["bad_events"] += 1
            log.warning("call %s: Realtime %s event is malformed (%r); skipped, the call goes on", self.host.id,
                        kind[:80], exc, exc_info=log.isEnabledFor(logging.DEBUG))

    async def on_response_output_audio_delta(self, event: dict[str, Any]) -> None:
        received_at = time.perf_counter()
        response_id = event.get("response_id", "")
        if response_id in self.cancelled:
            self.stats["late_deltas_dropped"] += 1
            return
        try:
            audio = base64.b64decode(event.get("delta", ""), validate=True)
        except ValueError:
            log.warning("call %s: Realtime audio delta is not valid base64; dropped", self.host.id)
            return
        item_id = event.get("item_id", "")
        if not isinstance(item_id, str) or not isinstance(response_id, str):
            raise TypeError("item_id and response_id must be strings")
        if item_id not in self.item_response:
            self.item_response[item_id] = response_id
            _trim(self.item_response, MAX_IDS)
        self.host.play_audio(item_id, audio, received_at, response_id)

    async def on_response_output_audio_done(self, event: dict[str, Any]) -> None:
        self.host.end_audio(event.get("item_id", ""))

    async def on_input_audio_buffer_speech_started(self, event: dict[str, Any]) -> None:
        self._caller_speaking = True
        self.host.emit(ev.SpeechStarted(call_id=self.host.id, item_id=event.get("item_id", "")))
        if self.cfg.interrupt_response:
            await self.barge_in()

    async def barge_in(self) -> None:
        """Stop bot audio now, truncate what the caller did not hear, drop late deltas."""
        host = self.host
        item = host.current_item
        dropped = host.flush_audio()
        if self.active_response:
            self._cancel_noted(self.active_response)
        if item not in self.item_response:
            return  # not the AI's audio (e.g. a greeting aribot played): nothing to truncate
        if dropped == 0 and self.item_response[item] in self.done_responses:
            return  # the caller heard everything: nothing to truncate
        audio_end_ms = min(host.played_ms(item), host.received_ms(item))
        self.stats["barge_ins"] += 1
        host.emit(ev.BargeIn(call_id=host.id, item_id=item, played_ms=audio_end_ms, dropped_ms=dropped // 8))
        if audio_end_ms > 0:
            self.stats["truncates"] += 1
            await self.send({"type": "conversation.item.truncate", "item_id": item,
                             "content_index": 0, "audio_end_ms": audio_end_ms})
        host.clear_current_item()

    async def interrupt(self, cancel: bool) -> None:
        """Barge-in on aribot's own initiative (e.g. a key press): flush, truncate and, with
        ``cancel``, cancel the active response (the server does not do it for us here)."""
        active = self.active_response
        await self.barge_in()
        if cancel and active is not None:
            await self.send({"type": "response.cancel", "response_id": active})

    async def end_turn(self) -> asyncio.Future[str]:
        """End the caller's turn now (input_audio_buffer.commit) and ask for an answer."""
        await self.send({"type": "input_audio_buffer.commit"})
        return await self.request_response()

    async def add_text(self, role: str, text: str) -> None:
        """A text message of ``role`` (user or system) in the conversation."""
        item = {"type": "message", "role": role, "content": [{"type": "input_text", "text": text}]}
        self.remember(self._client_key(), item)
        await self.send({"type": "conversation.item.create", "item": item})

    async def request_response(self, instructions: str | None = None, tag: str = "") -> asyncio.Future[str]:
        """Ask the AI to answer: sent now, or once no response is active. The future resolves
        with that response's final status (completed, cancelled, failed …)."""
        tag = tag or self.next_tag()
        params: dict[str, Any] = {"metadata": {"aribot_request": tag}}
        if instructions:
            params["instructions"] = instructions
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._requests[tag] = future
        self._waiting.append((tag, params))
        await self._send_waiting()
        return future

    async def _send_waiting(self) -> None:
        while self._waiting and self.ready and self.active_response is None and self._create_in_flight is None:
            tag, params = self._waiting.popleft()
            self._create_in_flight = (tag, params)
            await self.send({"type": "response.create", "event_id": f"aribot_{tag}", "response": params})

    async def on_input_audio_buffer_speech_stopped(self, event: dict[str, Any]) -> None:
        self._caller_speaking = False
        # audio_end_ms ends the silence that made server VAD decide: the caller's speech ended
        # silence_duration_ms before it (semantic VAD says nothing of its wait: counted from the end)
        end_ms, arrived = event.get("audio_end_ms"), None
        if isinstance(end_ms, (int, float)) and not isinstance(end_ms, bool):
            detection = turn_detection(self.cfg, self.setup.turn_detection or None) or {}
            arrived = self._arrived(float(end_ms) - float(detection.get("silence_duration_ms") or 0))
        silence = max(0.0, (time.perf_counter() - arrived) * 1000) if arrived is not None else None
        self.host.emit(ev.SpeechStopped(call_id=self.host.id, item_id=event.get("item_id", ""), silence_ms=silence))

    async def on_conversation_item_input_audio_transcription_delta(self, event: dict[str, Any]) -> None:
        self.host.emit(ev.TranscriptDelta(call_id=self.host.id, role="caller",
                                          item_id=event.get("item_id", ""), text=event.get("delta", "")))

    async def on_conversation_item_input_audio_transcription_completed(self, event: dict[str, Any]) -> None:
        text = str(event.get("transcript", ""))
        if text.strip():
            self.remember(str(event.get("item_id", "")), {"type": "message", "role": "user",
                                                         "content": [{"type": "input_text", "text": text}]})
        self.host.emit(ev.Transcript(call_id=self.host.id, role="caller",
                                     item_id=event.get("item_id", ""), text=event.get("transcript", "")))

    async def on_response_output_audio_transcript_delta(self, event: dict[str, Any]) -> None:
        if event.get("response_id") not in self.cancelled:
            self.host.emit(ev.TranscriptDelta(call_id=self.host.id, role="assistant",
                                              item_id=event.get("item_id", ""), text=event.get("delta", "")))

    async def on_response_output_audio_transcript_done(self, event: dict[str, Any]) -> None:
        self.host.emit(ev.Transcript(call_id=self.host.id, role="assistant",
                                     item_id=event.get("item_id", ""), text=event.get("transcript", "")))

    async def on_response_created(self, event: dict[str, Any]) -> None:
        response = event.get("response", {})
        response_id = response.get("id", "")
        self.active_response = response_id
        self.stats["responses"] += 1
        tag = (response.get("metadata") or {}).get("aribot_request")
        if tag is not None and self._create_in_flight and tag == self._create_in_flight[0]:
            self._create_in_flight = None
        if tag is None and self.need_response and self._outputs_complete():
            self.need_response = False  # this response already sees every tool output
        self.host.emit(ev.ResponseStarted(call_id=self.host.id, response_id=response_id))

    async def on_response_function_call_arguments_done(self, event: dict[str, Any]) -> None:
        response_id = event.get("response_id", "")
        call_id = event.get("call_id", "")
        self.tool_calls.setdefault(response_id, {})[call_id] = False
        self._spawn(self._run_tool(response_id, call_id, event.get("name", ""), event.get("arguments", "")))

    async def _run_tool(self, response_id: str, call_id: str, name: str, arguments: str) -> None:
        """Core runs the tool (its timeout, filler and manual answers); its output goes back as a
        function_call_output item, and an answer is asked for once the response is done."""
        outcome = await self.host.run_tool(name, call_id, arguments, response_id)
        output = {"type": "function_call_output", "call_id": call_id, "output": outcome.output}
        self.remember(f"output-{call_id}", output)
        await self.send({"type": "conversation.item.create", "item": output})
        self.tool_calls[response_id][call_id] = True
        if outcome.respond:
            self.need_response = True
        await self._maybe_create_response()

    def ai_spoke(self, response_ref: str) -> bool:
        """The AI sent audio in this response."""
        return any(rid == response_ref and self.host.received_ms(item) > 0 for item, rid in self.item_response.items())

    def drop_request(self, *tags: str) -> None:
        """Forget requests not sent yet (their futures resolve with "dropped")."""
        for tag in tags:
            if any(t == tag for t, _params in self._waiting):
                self._waiting = deque(entry for entry in self._waiting if entry[0] != tag)
                future = self._requests.pop(tag, None)
                if future is not None and not future.done():
                    future.set_result("dropped")

    def _outputs_complete(self) -> bool:
        return all(all(sent.values()) for sent in self.tool_calls.values())

    async def _maybe_create_response(self) -> None:
        """response.create only when every tool response is done and its outputs are sent."""
        if (self.need_response and self.active_response is None and self._outputs_complete()
                and all(rid in self.done_responses for rid in self.tool_calls)):
            self.need_response = False
            self.tool_calls.clear()
            await self.request_response()

    async def on_response_done(self, event: dict[str, Any]) -> None:
        response = event.get("response", {})
        response_id = response.get("id", "")
        if response_id == self.active_response:
            self.active_response = None
        self.done_responses[response_id] = None
        _trim(self.done_responses, MAX_IDS)
        details = response.get("status_details") or {}
        reason = str(details.get("reason") or (details.get("error") or {}).get("code") or "")
        status = str(response.get("status", ""))
        if status == "failed":
            log.warning("call %s: Realtime response %s failed (%s); the call goes on", self.host.id,
                        response_id, reason or "no reason given")
        self.host.emit(ev.ResponseDone(call_id=self.host.id, response_id=response_id, status=status, reason=reason,
                                       usage=dict(response.get("usage") or {})))
        tag = (response.get("metadata") or {}).get("aribot_request")
        if tag is None and self._create_in_flight is not None:
            # No metadata echoed and no error for our response.create by now (a racing VAD
            # response gets one at once): this response was ours.
            tag, self._create_in_flight = self._create_in_flight[0], None
        future = self._requests.pop(tag or "", None)
        if future is not None and not future.done():
            future.set_result(status)
        await self._maybe_create_response()
        await self._send_waiting()

    async def on_error(self, event: dict[str, Any]) -> None:
        error = _error(event)
        code = str(error.get("code") or error.get("type") or "unknown")
        self.stats["errors"] += 1
        action = "the call goes on"
        event_id = str(error.get("event_id") or "")
        for update_id, answer in list(self._updates):
            if update_id == event_id and not answer.done():
                self._updates.remove((update_id, answer))
                answer.set_result(_error_text(event))
                action = "the operator's session change was not applied"
        in_flight = self._create_in_flight
        if in_flight is not None and event_id == f"aribot_{in_flight[0]}":
            tag = in_flight[0]
            self._create_in_flight = None
            if code == "conversation_already_has_active_response":
                self._waiting.appendleft(in_flight)
                action = "response.create will be retried after the active response is done"
            else:
                future = self._requests.pop(tag, None)
                if future is not None and not future.done():
                    future.set_result("failed")
        log.warning("call %s: Realtime error %s: %s; %s", self.host.id, code, error.get("message", ""), action)
        self.host.emit(ev.BackendError(call_id=self.host.id, code=code, message=str(error.get("message", ""))))


def _error(event: dict[str, Any]) -> dict[str, Any]:
    """The ``error`` object of an error event ({"message": text} if a server sent only text)."""
    error = event.get("error")
    if isinstance(error, dict):
        return error
    return {"message": str(error)[:200]} if error else {}


def _error_text(event: dict[str, Any]) -> str:
    error = _error(event)
    return f"{error.get('code') or error.get('type') or 'error'}: {error.get('message', '')}"


def _trim(table: dict[Any, Any], limit: int) -> None:
    """Forget the oldest entries of ``table`` beyond ``limit``."""
    while len(table) > limit:
        del table[next(iter(table))]

