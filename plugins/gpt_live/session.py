"""One call's OpenAI GPT-Live session as a speech backend (reference/gpt-live.md).

What differs from the Realtime backend, and how aribot adapts:
- ``session.start`` first, nothing before ``session.started``; G.711 both ways (``audio/pcmu`` or
  ``audio/pcma`` at 8000 Hz), bytes passed through unchanged.
- The model takes turns itself: no speech started/stopped, no truncate, no response events. Caller
  audio is streamed continuously in real time, silence included: the caller's frames as they come
  (never delayed or re-timed, so network jitter passes through untouched), and silence in real time
  whenever none came for ``GAP_S`` (the gate still closed, input held, a DTX gap, a lost stretch).
- The model stops by itself when interrupted; a barge-in aribot starts (a key, an operator, a
  mode) drops the audio queued here and tells the model with ``session.instructions.append``.
- Tools through Responses delegation: nested ``response.output_item.done`` function calls run in
  core, their outputs go back as ``response.item.create``, then one ``response.create``.
- ``session.closed``: ``expired`` and ``connection_lost`` are recoverable (a new session starts with
  the conversation so far as ``input``), ``content`` is not.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
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
    RealtimeConnection,
    RealtimeUnavailable,
    SessionTasks,
    redact_url,
)

log = logging.getLogger("aribot.gpt_live")


class Ticker:
    """One 20 ms timer per event loop that runs every live session's silence check.

    A task per call that sleeps 20 ms costs a timer, a heap push and a task switch per call every
    frame (10,000 a second at 200 calls); one shared timer costs one. A check that raises is logged
    and dropped, so one broken call cannot stop the others' audio."""

    _of: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Ticker] = weakref.WeakKeyDictionary()

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> Ticker:
        ticker = cls._of.get(loop)
        if ticker is None:
            ticker = cls._of[loop] = cls(loop)
        return ticker

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.checks: dict[Callable[[], None], None] = {}   # insertion-ordered set
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def add(self, check: Callable[[], None]) -> None:
        self.checks[check] = None
        if self._handle is None:
            self._due = self.loop.time() + FRAME_S
            self._handle = self.loop.call_at(self._due, self._tick)

    def discard(self, check: Callable[[], None]) -> None:
        self.checks.pop(check, None)
        if not self.checks and self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        for check in list(self.checks):
            try:
                check()
            except Exception:
                self.checks.pop(check, None)
                log.exception("a GPT-Live silence check failed; that call's silence fill stops, the others go on")
        if not self.checks:
            self._handle = None
            return
        # the next tick on the 20 ms grid; after a stall, the next one from now (no burst of ticks)
        self._due = max(self._due + FRAME_S, self.loop.time())
        self._handle = self.loop.call_at(self._due, self._tick)

CAPABILITIES = Capabilities(turn_events=False, truncation=False, tools="delegation", audio_formats=("ulaw", "alaw"),
                            continuous_input=True, max_session_s=None, billing="seconds", paced_output=True)
FORMATS = {"ulaw": {"type": "audio/pcmu", "rate": 8000}, "alaw": {"type": "audio/pcma", "rate": 8000}}
SILENCE = {"ulaw": b"\xff" * 160, "alaw": b"\xd5" * 160}
FRAME_S = 0.020
GAP_S = 0.060             # no caller frame for this long: silence fills in, in real time (jitter is less)
UTTERANCE_END_S = 0.8     # no AI audio for this long: its utterance is over
MUTE_QUIET_S = 0.3        # after aribot interrupts, drop AI audio until it has been quiet this long,
MUTE_MAX_S = 2.0          # ... or for this long at most, or until a request sent since is acknowledged
CLOSE_WAIT_S = 0.5        # at the call's end, how long session.closed (the final usage) is awaited
SPEECH_WAIT_S = 10.0      # a request whose speech never starts resolves after this
INPUT_MESSAGES = 128      # session.start input history limits (reference/gpt-live.md §3.8)
INPUT_CHARS = 8192 * 3    # ~8,192 tokens at a cautious 3 characters per token
APPEND_CHARS = 1500        # an append holds at most 500 tokens (reference/gpt-live.md §4): ~3 characters each
STOP_SPEAKING = "Stop speaking now. The caller interrupted you; listen to them."
SEND_BACKLOG = 250        # frames waiting for a slow socket (5 s); beyond, new ones are dropped (counted)
MAX_TURNS = 2 * INPUT_MESSAGES   # turns remembered for a new session (it takes at most INPUT_MESSAGES)
MAX_TEXT_PARTS = 2000     # transcript deltas gathered for one turn; beyond, the rest is not kept


@dataclass(eq=False)
class Request:
    """An answer aribot asked for (``session.instructions.append``); ``acked`` once the service
    injected it: the next utterance is its answer."""

    tag: str
    event_id: str
    future: asyncio.Future[str]
    acked: bool = False


@dataclass
class GptLiveConfig:
    """How to reach GPT-Live: ``[gpt_live]``, the key from there or ``[openai] api_key``."""

    url: str
    api_key: str = field(default="", repr=False)
    model: str = "gpt-live-1"
    voice: str = "marin"
    responses_model: str = ""
    responses_instructions: str = ""


def start_event(cfg: GptLiveConfig, setup: SessionSetup, history: list[dict[str, Any]]) -> dict[str, Any]:
    """``session.start`` for one call: format, voice, the call's instructions, tools by Responses
    delegation (when a responses model is set and there are tools), the conversation so far."""
    session: dict[str, Any] = {
        "model": cfg.model,
        "instructions": setup.instructions,
        "audio": {"format": FORMATS[setup.audio_format], "output": {"voice": setup.voice or cfg.voice}},
    }
    if cfg.responses_model and setup.tools:
        responses: dict[str, Any] = {"model": cfg.responses_model, "tools": setup.tools, "tool_choice": "auto",
                                     "parallel_tool_calls": False}
        if cfg.responses_instructions:
            responses["instructions"] = cfg.responses_instructions
        session["delegation"] = {"type": "responses", "responses": responses}
    if history:
        session["input"] = history
    return {"type": "session.start", "event_id": "aribot_start", "session": session}


def conversation_input(turns: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The newest turns as ``session.start`` input items, within GPT-Live's limits."""
    items: list[dict[str, Any]] = []
    chars = 0
    for role, text in reversed(turns):
        if len(items) == INPUT_MESSAGES or chars + len(text) > INPUT_CHARS:
            break
        kind = "output_text" if role == "assistant" else "input_text"
        items.append({"type": "message", "role": role, "content": [{"type": kind, "text": text}]})
        chars += len(text)
    return list(reversed(items))


class GptLiveBackend(SessionTasks, SpeechBackend):
    """One call's GPT-Live WebSocket and the bookkeeping around it."""

    service = "GPT-Live"
    task_log = log

    capabilities = CAPABILITIES
    can_resume = True

    def __init__(self, host: BackendHost, setup: SessionSetup, cfg: GptLiveConfig) -> None:
        super().__init__(host, setup)
        self.cfg = cfg
        self.conn: RealtimeConnection | None = None
        self.silence = SILENCE[setup.audio_format]
        self._pending: deque[bytes] = deque(maxlen=max(1, int(host.settings.ai.input_buffer_ms) // 20))
        self._last_caller = 0.0          # monotonic time of the last caller frame sent
        self._covered = 0.0              # monotonic time up to which the stream holds audio
        self._pump: Callable[[], None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._serving = False            # serve() is reading the connection
        self._started = False            # session.started came on the current connection
        self._closed = asyncio.Event()   # session.closed came on the current connection
        self._seconds_before = 0.0       # usage of the call's earlier sessions (each counts from 0)
        self._seconds = 0.0              # usage of the current session
        self._rolling = False            # aribot closed the session for a planned rollover
        self._quiet: asyncio.TimerHandle | None = None
        self.stats = {"appended_frames": 0, "silence_frames": 0, "input_dropped_frames": 0, "errors": 0,
                      "interruptions": 0, "late_audio_dropped": 0, "tool_calls": 0, "bad_events": 0,
                      "send_backlog_dropped": 0}
        self._sends_waiting = 0          # appends waiting for a slow socket (bounded by SEND_BACKLOG)
        # what the AI says: one item per utterance (audio with no gap longer than UTTERANCE_END_S)
        self._out_item = ""
        self._out_text: list[str] = []
        self._last_audio = 0.0
        self._utterances = 0
        self._muted_at = 0.0             # monotonic time aribot interrupted the AI (0: not muted)
        # the caller's words, one item per turn (until the AI speaks)
        self._in_item = ""
        self._in_text: list[str] = []
        self.turns: list[tuple[str, str]] = []   # (role, text) of the conversation, for a new session
        # requests: futures resolved when the utterance they started ends
        self._requests: deque[Request] = deque()
        self._speaking_for: Request | None = None
        # Responses delegation: the backend response → its calls (call_id → output sent)
        self._tool_calls: dict[str, dict[str, bool]] = {}
        self._respond_after: set[str] = set()

    # --- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        await self._open([])
        self._go_live()

    async def resume(self) -> int:
        self._finish_turns()
        self._seconds_before += self._seconds
        self._seconds = 0.0
        history = conversation_input(self.turns)
        await self._open(history)
        self._go_live()
        return len(history)

    async def _open(self, history: list[dict[str, Any]]) -> None:
        headers = {"Authorization": f"Bearer {self.cfg.api_key}"} if self.cfg.api_key else {}
        self.conn = RealtimeConnection(self.cfg.url, headers, open_timeout=float(self.host.settings.ai.connect_timeout)
                                       or None)
        self._started = False
        self._closed = asyncio.Event()
        self.expires_at = None
        try:
            await self.conn.open()
            await self.conn.send(start_event(self.cfg, self.setup, history))
            async for event in self.conn.events():
                if event.get("type") == "session.started":
                    self._started = True
                    session = event.get("session")
                    session = session if isinstance(session, dict) else {}
                    self.session_id = str(session.get("id", ""))[:200]
                    expires = session.get("expires_at")
                    valid = isinstance(expires, (int, float)) and not isinstance(expires, bool) and expires > 0
                    self.expires_at = time.monotonic() + float(expires) - time.time() if valid else None
                    wanted = FORMATS[self.setup.audio_format]
                    audio = session.get("audio")
                    answered = audio.get("format", wanted) if isinstance(audio, dict) else wanted
                    if answered != wanted:
                        raise BackendUnavailable(f"GPT-Live answered with audio format {str(answered)[:80]}, "
                                                 f"not {wanted}")
                    return
                if event.get("type") == "error":
                    error = event.get("error")
                    error = error if isinstance(error, dict) else {"message": str(error)[:200]}
                    raise BackendUnavailable(f"GPT-Live refused session.start: {error.get('code')}: "
                                             f"{error.get('message', '')}")
                if event.get("type") == "session.closed":
                    raise BackendUnavailable(f"GPT-Live closed the session at start ({event.get('reason')})")
        except (RealtimeUnavailable, RealtimeClosed) as exc:
            await self.conn.close()
            raise BackendUnavailable(f"GPT-Live session at {redact_url(self.cfg.url)}: {exc}") from None

    def _go_live(self) -> None:
        self.ready = True
        now = time.monotonic()
        self._last_caller = self._covered = now
        for frame in list(self._pending):
            self._send_frame(frame)
        self._pending.clear()
        self._pump = self._keep_input_flowing
        Ticker.of(asyncio.get_running_loop()).add(self._pump)

    async def serve(self) -> SessionLost | None:
        assert self.conn is not None
        self._serving = True
        try:
            async for event in self.conn.events():
                lost = await self.handle(event)
                if lost is not None:
                    await self._lose()
                    return None if self._closing else lost
        except RuntimeError:
            if not self._closing:   # only close() may read the connection besides serve()
                raise
            return None
        except RealtimeClosed as exc:
            await self._lose()
            if self._closing:
                return None
            self.host.emit(ev.BackendError(call_id=self.host.id, code=f"closed_{exc.code}", message=exc.reason))
            return SessionLost(f"closed_{exc.code}", f"GPT-Live WebSocket {exc}", recoverable=True)
        finally:
            self._serving = False
        await self._lose()
        return None if self._closing else SessionLost("closed", "GPT-Live WebSocket closed", recoverable=True)

    def _stop_pump(self) -> None:
        if self._pump is not None:
            Ticker.of(asyncio.get_running_loop()).discard(self._pump)
            self._pump = None

    async def _lose(self) -> None:
        self.ready = False
        self._stop_pump()
        if self.conn is not None:
            await self.conn.close()

    async def roll_over(self) -> None:
        """A planned new session: close this one; serve() then reports it as max_session_s."""
        if self.conn is not None and not self._rolling:
            self._rolling = True
            await self.conn.send({"type": "session.close", "event_id": "aribot_rollover"})

    async def close(self) -> None:
        self._closing = True
        self.ready = False
        self._stop_pump()
        if self._quiet is not None:
            self._quiet.cancel()
        self._finish_turns()
        for task in list(self._tasks):
            task.cancel()
        if self.conn is not None:
            if self._started and not self._closed.is_set():   # nothing may precede session.started
                await self._close_politely()
            await self.conn.close()

    async def _close_politely(self) -> None:
        """``session.close``, then ``session.closed`` (its final usage) is awaited for a moment: read
        by serve() if it still runs, else here."""
        assert self.conn is not None
        try:
            await self.conn.send({"type": "session.close", "event_id": "aribot_close"})
            await asyncio.sleep(0)   # a serve() task cancelled just before this close ends now
            async with asyncio.timeout(CLOSE_WAIT_S):
                if self._serving:
                    await self._closed.wait()
                    return
                async for event in self.conn.events():
                    if event.get("type") == "session.closed":
                        self._on_closed(event)
                        return
        except (RealtimeClosed, TimeoutError):
            return
        except RuntimeError:   # serve() started reading meanwhile: it sees session.closed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), CLOSE_WAIT_S)

    # --- caller audio ---------------------------------------------------------------------------
    def feed(self, frame: bytes, received_at: float | None) -> None:
        if not self.ready:
            if len(self._pending) == self._pending.maxlen:
                self.stats["input_dropped_frames"] += 1
            self._pending.append(frame)
            return
        self._send_frame(frame)
        now = self._last_caller = time.monotonic()
        # the stream now covers one more frame, from where it was (a short gap stays a gap) up to now
        self._covered = min(max(self._covered, now - GAP_S) + FRAME_S, now + FRAME_S)
        if received_at is not None:
            self.host.record_inbound_latency(received_at)

    def _send_frame(self, frame: bytes) -> None:
        message = '{"type":"session.input_audio.append","audio":"' + base64.b64encode(frame).decode("ascii") + '"}'
        conn = self.conn
        if conn is not None and not conn.send_now(message):
            if self._sends_waiting >= SEND_BACKLOG:   # the service reads slower than real time: drop
                self.stats["send_backlog_dropped"] += 1
                if self.stats["send_backlog_dropped"] == 1:
                    log.warning("call %s: the GPT-Live socket is not keeping up (%d frames waiting); dropping caller "
                                "audio, counted in send_backlog_dropped", self.host.id, SEND_BACKLOG)
                return
            self._sends_waiting += 1
            self._spawn(self._send_text(message))
        self.stats["appended_frames"] += 1

    async def _send_text(self, message: str) -> None:
        try:
            if self.conn is not None:
                await self.conn.send(message)
        finally:
            self._sends_waiting -= 1

    def _keep_input_flowing(self) -> None:
        """Silence in real time while no caller frame comes: the model expects audio all the time
        (its clock, append acknowledgements and turn-taking run on the input). Caller frames late by
        less than GAP_S are jitter, not a gap: nothing is inserted between them. Called every 20 ms
        by the loop's shared Ticker."""
        now = time.monotonic()
        if now - self._last_caller < GAP_S:
            return
        missing = int((now - self._covered) / FRAME_S)
        for _ in range(min(missing, 5)):   # a stalled loop catches up with a few frames, not a burst
            self._send_frame(self.silence)
            self.stats["silence_frames"] += 1
        self._covered = max(self._covered + min(missing, 5) * FRAME_S, now - FRAME_S)

    # --- server events --------------------------------------------------------------------------
    async def handle(self, event: dict[str, Any]) -> SessionLost | None:
        """One server event. One that is malformed (a field of the wrong type …) costs only itself:
        one log line, counted in ``bad_events``; the session goes on."""
        try:
            return await self._handle(event)
        except RealtimeClosed:
            raise   # the socket closed: serve() reports it
        except Exception as exc:
            self.stats["bad_events"] += 1
            log.warning("call %s: GPT-Live %s event is malformed (%r); skipped, the call goes on", self.host.id,
                        str(event.get("type", ""))[:80], exc, exc_info=log.isEnabledFor(logging.DEBUG))
            return None

    async def _handle(self, event: dict[str, Any]) -> SessionLost | None:
        kind = str(event.get("type", ""))
        if kind == "session.output_audio.delta":
            self._on_audio(event)
        elif kind == "session.output_transcript.delta":
            self._on_output_text(str(event.get("delta", "")))
        elif kind == "session.input_transcript.delta":
            self._on_input_text(str(event.get("delta", "")))
        elif kind == "response.event":
            await self._on_response_event(event.get("event") or {})
        elif kind == "session.instructions.appended":
            self._on_appended(str(event.get("client_event_id") or ""))
        elif kind == "session.usage.updated":
            self._usage(event.get("usage"))
        elif kind == "session.closed":
            return self._on_closed(event)
        elif kind == "error":
            self._on_error(event)
        return None

    def _on_appended(self, event_id: str) -> None:
        """A request was injected: the next utterance answers it, and is heard even if aribot had
        muted the AI's late audio (it was asked for after the interruption)."""
        for request in self._requests:
            if request.event_id == event_id:
                request.acked = True
                self._muted_at = 0.0
                return

    def _on_audio(self, event: dict[str, Any]) -> None:
        received_at = time.perf_counter()
        now = time.monotonic()
        try:
            audio = base64.b64decode(str(event.get("delta", "")), validate=True)
        except ValueError:
            log.warning("call %s: GPT-Live audio delta is not valid base64; dropped", self.host.id)
            return
        gap = now - self._last_audio
        self._last_audio = now
        if self._muted_at:
            if gap < MUTE_QUIET_S and now - self._muted_at < MUTE_MAX_S:
                self.stats["late_audio_dropped"] += 1
                return
            self._muted_at = 0.0
        if not self._out_item or gap > UTTERANCE_END_S:
            self._start_utterance()
        self.host.play_audio(self._out_item, audio, received_at)
        if self._quiet is not None:
            self._quiet.cancel()
        self._quiet = asyncio.get_running_loop().call_later(UTTERANCE_END_S, self._utterance_quiet, self._out_item)

    def _start_utterance(self) -> None:
        self._finish_output()
        self._finish_input()
        self._utterances += 1
        self._out_item = f"live-out-{self._utterances}"
        if self._requests and self._speaking_for is None:
            # the answer to the oldest acknowledged request, else to the oldest one sent
            request = next((r for r in self._requests if r.acked), self._requests[0])
            self._requests.remove(request)
            self._speaking_for = request
        self.host.emit(ev.ResponseStarted(call_id=self.host.id, response_id=self._out_item))

    def _utterance_quiet(self, item: str) -> None:
        """No AI audio for UTTERANCE_END_S: the utterance is over."""
        self._quiet = None
        if item == self._out_item:
            self.host.end_audio(item)
            self._finish_output()

    def _finish_output(self, status: str = "completed") -> None:
        """The AI's utterance is over: its transcript, its request answered."""
        if not self._out_item:
            return
        text = "".join(self._out_text).strip()
        item, self._out_item, self._out_text = self._out_item, "", []
        if text:
            self._remember("assistant", text)
        self.host.emit(ev.Transcript(call_id=self.host.id, role="assistant", item_id=item, text=text))
        self.host.emit(ev.ResponseDone(call_id=self.host.id, response_id=item, status=status))
        if self._speaking_for is not None:
            future = self._speaking_for.future
            self._speaking_for = None
            if not future.done():
                future.set_result(status)

    def _remember(self, role: str, text: str) -> None:
        self.turns.append((role, text))
        del self.turns[:-MAX_TURNS]

    def _on_output_text(self, text: str) -> None:
        if not self._out_item:
            self._start_utterance()
        if len(self._out_text) < MAX_TEXT_PARTS:
            self._out_text.append(text)
        self.host.emit(ev.TranscriptDelta(call_id=self.host.id, role="assistant", item_id=self._out_item, text=text))

    def _on_input_text(self, text: str) -> None:
        if not self._in_item:
            self._in_item = f"live-in-{len(self.turns) + 1}"
        if len(self._in_text) < MAX_TEXT_PARTS:
            self._in_text.append(text)
        self.host.emit(ev.TranscriptDelta(call_id=self.host.id, role="caller", item_id=self._in_item, text=text))

    def _finish_input(self) -> None:
        if not self._in_item:
            return
        text = "".join(self._in_text).strip()
        item, self._in_item, self._in_text = self._in_item, "", []
        if text:
            self._remember("user", text)
        self.host.emit(ev.Transcript(call_id=self.host.id, role="caller", item_id=item, text=text))

    def _finish_turns(self) -> None:
        self._finish_input()
        self._finish_output()

    def _usage(self, usage: Any) -> None:
        """Seconds of this session (cumulative, from 0 in each session) → seconds of the call."""
        seconds = usage.get("seconds") if isinstance(usage, dict) else None
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 <= seconds < 1e9:
            return
        self._seconds = max(self._seconds, float(seconds))
        self.host.emit(ev.UsageUpdated(call_id=self.host.id, seconds=self._seconds_before + self._seconds))

    def _on_closed(self, event: dict[str, Any]) -> SessionLost | None:
        self._closed.set()
        reason = event.get("reason")
        reason = reason[:80] if isinstance(reason, str) else ""
        self._usage(event.get("usage"))
        if self._rolling:
            self._rolling = False
            return SessionLost("max_session_s", "GPT-Live session closed for a planned rollover")
        if reason == "close_requested" or self._closing:
            return SessionLost("close_requested", "GPT-Live session closed on request", recoverable=False)
        recoverable = reason in ("expired", "connection_lost")
        what = {"expired": "reached its time limit", "connection_lost": "lost its connection upstream",
                "content": "was stopped by the service's safety filter",
                "remote_hangup": "was hung up remotely"}.get(reason, f"closed ({reason})")
        log.log(logging.WARNING if not recoverable else logging.INFO, "call %s: the GPT-Live session %s; %s",
                self.host.id, what, "a new session will carry the conversation on" if recoverable else
                "the call cannot go on with it")
        self.host.emit(ev.BackendError(call_id=self.host.id, code=reason, message=what, fatal=not recoverable))
        return SessionLost(reason, f"GPT-Live session {what}", recoverable=recoverable)

    def _on_error(self, event: dict[str, Any]) -> None:
        error = event.get("error")
        error = error if isinstance(error, dict) else {"message": str(error)[:200]} if error else {}
        code = str(error.get("code") or error.get("type") or "unknown")
        self.stats["errors"] += 1
        log.warning("call %s: GPT-Live error %s: %s (client event %s); the call goes on", self.host.id, code,
                    error.get("message", ""), error.get("client_event_id") or event.get("client_event_id") or "-")
        self.host.emit(ev.BackendError(call_id=self.host.id, code=code, message=str(error.get("message", ""))))

    # --- tools: Responses delegation --------------------------------------------------------------
    async def _on_response_event(self, nested: dict[str, Any]) -> None:
        kind = nested.get("type")
        if kind == "response.output_item.done":
            item = nested.get("item") or {}
            if item.get("type") == "function_call":
                response_id = str(nested.get("response_id") or item.get("response_id") or "delegation")
                call_id = str(item.get("call_id", ""))
                self._tool_calls.setdefault(response_id, {})[call_id] = False
                self.stats["tool_calls"] += 1
                self._spawn(self._run_tool(response_id, call_id, str(item.get("name", "")),
                                           str(item.get("arguments", ""))))
        elif kind == "response.completed":
            usage = (nested.get("response") or {}).get("usage") or {}
            if usage:   # the delegation model's text tokens, in the shape core counts
                tokens_in, tokens_out = int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
                cached = int((usage.get("input_tokens_details") or {}).get("cached_tokens") or 0)
                self.host.emit(ev.UsageUpdated(call_id=self.host.id, tokens={
                    "input_tokens": tokens_in, "output_tokens": tokens_out,
                    "input_token_details": {"text_tokens": tokens_in, "cached_tokens": cached},
                    "output_token_details": {"text_tokens": tokens_out}}))

    async def _run_tool(self, response_id: str, call_id: str, name: str, arguments: str) -> None:
        outcome = await self.host.run_tool(name, call_id, arguments, response_id)
        await self._send({"type": "response.item.create",
                          "item": {"type": "function_call_output", "call_id": call_id, "output": outcome.output}})
        calls = self._tool_calls.setdefault(response_id, {})
        calls[call_id] = True
        if outcome.respond:
            self._respond_after.add(response_id)
        if all(calls.values()):
            del self._tool_calls[response_id]
            if response_id in self._respond_after:
                self._respond_after.discard(response_id)
                await self._send({"type": "response.create"})

    # --- what core asks of the AI -------------------------------------------------------------------
    async def _send(self, event: dict[str, Any]) -> None:
        if self.conn is not None and self.ready:
            try:
                await self.conn.send(event)
            except RealtimeClosed:
                pass  # reported by serve()

    @property
    def responding(self) -> bool:
        return bool(self._out_item) or self._speaking_for is not None

    @property
    def caller_speaking(self) -> bool:
        return False   # GPT-Live does not say

    async def add_text(self, role: str, text: str) -> None:
        """The caller's words (e.g. DTMF digits) as quiet context; aribot's own as instructions."""
        kind = "session.thinking.append" if role == "user" else "session.instructions.append"
        await self._send({"type": kind, "delegation_id": None, "content": text[:APPEND_CHARS]})

    async def request_response(self, instructions: str | None = None, tag: str = "") -> asyncio.Future[str]:
        """``session.instructions.append``; the future resolves when the utterance it starts ends."""
        tag = tag or self.next_tag()
        request = Request(tag, f"aribot_{tag}", asyncio.get_running_loop().create_future())
        self._requests.append(request)
        await self._send({"type": "session.instructions.append", "delegation_id": None, "event_id": request.event_id,
                          "content": (instructions or "Answer the caller now.")[:APPEND_CHARS]})
        self._spawn(self._expire_request(request))
        return request.future

    async def _expire_request(self, request: Request) -> None:
        await asyncio.sleep(SPEECH_WAIT_S)
        if not request.future.done() and request in self._requests:
            self._requests.remove(request)
            request.future.set_result("no_speech")

    def drop_request(self, *tags: str) -> None:
        """A request not spoken yet is forgotten (the instruction was sent already: it may still be)."""
        for request in list(self._requests):
            if request.tag in tags:
                self._requests.remove(request)
                if not request.future.done():
                    request.future.set_result("dropped")

    async def end_turn(self) -> asyncio.Future[str]:
        """GPT-Live takes turns itself: nothing to commit."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        future.set_result("unsupported")
        return future

    async def interrupt(self, cancel: bool) -> None:
        """Drop the AI audio queued here; if the model is still speaking, drop what is still on its
        way too and (``cancel``) ask it to stop: GPT-Live has no cancel or truncate."""
        speaking = self._out_item
        item = speaking or (self.host.current_item if self.host.audio_pending else "")
        dropped = self.host.flush_audio()
        if item:
            self.stats["interruptions"] += 1
            self.host.emit(ev.BargeIn(call_id=self.host.id, item_id=item, played_ms=self.host.played_ms(item),
                                      dropped_ms=dropped // 8))
            self.host.clear_current_item()
        if speaking:
            self._muted_at = time.monotonic()
            self._finish_output("cancelled")
            if cancel:
                await self._send({"type": "session.instructions.append", "delegation_id": None,
                                  "content": STOP_SPEAKING})

    async def update(self, change: SessionChange) -> str:
        if change.voice is not None and change.voice != self.setup.voice:
            return "GPT-Live cannot change the voice of a running session"
        if change.turn_detection is not None:
            return "GPT-Live has no turn-detection setting"
        if change.tools is not None:
            return "GPT-Live's tools are set at session start"
        if change.instructions:
            await self._send({"type": "session.instructions.append", "delegation_id": None,
                              "content": change.instructions[:APPEND_CHARS]})
        return ""
