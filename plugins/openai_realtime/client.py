"""OpenAI Realtime (GA) over a WebSocket: URL/headers for OpenAI and Azure, the session.update
built from a ``RealtimeConfig``, and a thin connection wrapper on ``websockets``.

GA only: ``session.type = "realtime"``, ``audio/pcmu`` (or ``audio/pcma``) in and out, no
transcoding, no OpenAI-Beta header (reference/openai-realtime.md §1-§2).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from dataclasses import dataclass, field, fields
from typing import Any, AsyncIterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State

log = logging.getLogger("aribot.realtime")
# websockets logs the handshake, Authorization / api-key headers included, at DEBUG: its logger
# for our connections is held at INFO so that no log level ever prints the key.
WS_LOG = logging.getLogger("aribot.realtime.websocket")
WS_LOG.setLevel(logging.INFO)

AUDIO_FORMATS = {"ulaw": {"type": "audio/pcmu"}, "alaw": {"type": "audio/pcma"}}
# send_now() writes only while the socket's write buffer holds less than this (websockets' own
# flow control pauses at 64 KiB); above it the awaited send() waits for the buffer to drain
DIRECT_WRITE_LIMIT = 32 * 1024


@dataclass(frozen=True)
class RealtimeConfig:
    """How to reach a Realtime server and shape its session: ``[openai]`` for OpenAI and Azure,
    or what the local voice backend serves."""

    url: str
    api_key: str = field(default="", repr=False)
    provider: str = "openai"          # "azure": api-key header, model = the deployment name
    model: str = "gpt-realtime"
    voice: str = "marin"
    speed: float = 1.0
    turn_detection: str = "server_vad"
    vad_threshold: float = 0.5
    vad_prefix_padding_ms: int = 300
    vad_silence_duration_ms: int = 500
    vad_eagerness: str = "auto"
    interrupt_response: bool = True
    transcription_model: str = "gpt-4o-mini-transcribe"
    transcription_language: str = ""
    noise_reduction: str = "near_field"
    max_output_tokens: int | str = "inf"
    append_frames: int = 1

    @classmethod
    def from_settings(cls, section: Any, **overrides: Any) -> "RealtimeConfig":
        """From a settings table with these keys (``[openai]``); ``overrides`` win."""
        values = {f.name: section.get(f.name) for f in fields(cls) if section.get(f.name) is not None}
        return cls(**(values | overrides))


class RealtimeUnavailable(ConnectionError):
    """The Realtime endpoint could not be reached or refused the connection."""


class RealtimeClosed(ConnectionError):
    """The Realtime WebSocket closed; ``code``/``reason`` as the server sent them."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed with code {code}: {reason or 'no reason'}")
        self.code = code
        self.reason = reason


def realtime_url(openai: Any) -> str:
    """The settings URL with ``?model=`` set (kept if the URL already has one)."""
    parts = urlsplit(openai.url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("model", openai.model)
    return urlunsplit(parts._replace(query=urlencode(query)))


def redact_url(url: str) -> str:
    """The URL with secret-looking query values (api-key, key, token, …) replaced by ***."""
    parts = urlsplit(url)
    query = [(k, "***" if any(w in k.lower() for w in ("key", "token", "secret", "sig")) else v)
             for k, v in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*")))


def auth_headers(openai: Any) -> dict[str, str]:
    """OpenAI: Bearer token. Azure: api-key header. Never an OpenAI-Beta header (GA)."""
    if not openai.api_key:
        return {}
    if openai.provider == "azure":
        return {"api-key": openai.api_key}
    return {"Authorization": f"Bearer {openai.api_key}"}


def session_patch(openai: Any, *, instructions: str | None = None, voice: str | None = None,
                  turn_detection_mode: str | None = None, tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A partial GA session.update changing only what is given (an operator's "apply to this call")."""
    session: dict[str, Any] = {"type": "realtime"}
    if instructions is not None:
        session["instructions"] = instructions
    if tools is not None:
        session["tools"] = tools
    audio: dict[str, Any] = {}
    if turn_detection_mode is not None:
        audio["input"] = {"turn_detection": turn_detection(openai, turn_detection_mode)}
    if voice is not None:
        audio["output"] = {"voice": voice}
    if audio:
        session["audio"] = audio
    return {"type": "session.update", "session": session}


def build_session_update(openai: Any, audio_format: str, tools: list[dict[str, Any]], *,
                         instructions: str = "", voice: str | None = None,
                         turn_detection_mode: str | None = None) -> dict[str, Any]:
    """The GA ``session.update`` for one call, from its ``RealtimeConfig`` and the call's choices
    (``voice`` and ``turn_detection_mode`` override the config's for this call)."""
    fmt = AUDIO_FORMATS[audio_format]
    audio_in: dict[str, Any] = {"format": fmt}
    if openai.noise_reduction:
        audio_in["noise_reduction"] = {"type": openai.noise_reduction}
    if openai.transcription_model:
        transcription = {"model": openai.transcription_model}
        if openai.transcription_language:
            transcription["language"] = openai.transcription_language
        audio_in["transcription"] = transcription
    audio_in["turn_detection"] = turn_detection(openai, turn_detection_mode)
    session: dict[str, Any] = {
        "type": "realtime",
        "output_modalities": ["audio"],
        "instructions": instructions,
        "audio": {
            "input": audio_in,
            "output": {"format": fmt, "voice": voice or openai.voice, "speed": float(openai.speed)},
        },
        "tools": tools,
        "tool_choice": "auto",
        "max_output_tokens": openai.max_output_tokens,
    }
    return {"type": "session.update", "session": session}


def turn_detection(openai: Any, mode: str | None = None) -> dict[str, Any] | None:
    """The turn_detection object for ``mode`` (default: the setting) with the [openai] VAD values."""
    mode = mode or openai.turn_detection
    if mode == "none":
        return None
    if mode == "semantic_vad":
        return {"type": "semantic_vad", "eagerness": openai.vad_eagerness,
                "create_response": True, "interrupt_response": bool(openai.interrupt_response)}
    return {
        "type": "server_vad",
        "threshold": float(openai.vad_threshold),
        "prefix_padding_ms": int(openai.vad_prefix_padding_ms),
        "silence_duration_ms": int(openai.vad_silence_duration_ms),
        "create_response": True,
        "interrupt_response": bool(openai.interrupt_response),
    }


def append_message(audio: bytes) -> str:
    """``input_audio_buffer.append`` as JSON text, built without a dict round trip (hot path)."""
    return '{"type":"input_audio_buffer.append","audio":"' + base64.b64encode(audio).decode("ascii") + '"}'


class RealtimeConnection:
    """One WebSocket to the Realtime API. ``events()`` yields decoded server events."""

    def __init__(self, url: str, headers: dict[str, str], *, open_timeout: float | None) -> None:
        self.url = url
        self.headers = headers
        self.open_timeout = open_timeout
        self.ws: ClientConnection | None = None

    async def open(self) -> None:
        try:
            self.ws = await connect(
                self.url,
                additional_headers=self.headers,
                open_timeout=self.open_timeout,
                max_size=2 ** 24,
                compression=None,
                ping_interval=20,
                ping_timeout=20,
                close_timeout=2,
                logger=WS_LOG,
            )
        except InvalidStatus as exc:
            raise RealtimeUnavailable(f"HTTP {exc.response.status_code} on the upgrade") from exc
        except (OSError, asyncio.TimeoutError, websockets.exceptions.InvalidHandshake) as exc:
            raise RealtimeUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def send(self, event: dict[str, Any] | str) -> None:
        assert self.ws is not None
        message = event if isinstance(event, str) else json.dumps(event, separators=(",", ":"))
        try:
            await self.ws.send(message)
        except ConnectionClosed as exc:
            raise _closed(exc) from exc

    def send_now(self, message: str) -> bool:
        """Write one text message at once, in the caller's own step of the event loop: the
        per-frame ``input_audio_buffer.append`` path, which saves a task switch, a queue and an
        async context per 20 ms frame (benchmarks/bench_capacity.py). False, having sent nothing,
        when that cannot be done safely now (the connection is not open, a fragmented message is
        being sent, or the write buffer is filling up): then use ``send()``, which waits."""
        ws = self.ws
        if ws is None:
            return False
        try:
            if (ws.protocol.state is not State.OPEN or ws.send_in_progress is not None
                    or ws.transport.get_write_buffer_size() > DIRECT_WRITE_LIMIT):
                return False
            ws.protocol.send_text(message.encode())
        except AttributeError:  # a websockets release without these internals: always the awaited path
            return False
        ws.send_data()
        return True

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Decoded events until the socket closes (then RealtimeClosed is raised)."""
        assert self.ws is not None
        while True:
            try:
                message = await self.ws.recv()
            except ConnectionClosed as exc:
                raise _closed(exc) from exc
            try:
                event = json.loads(message)
                if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                    raise ValueError("no type")
            except ValueError:
                log.warning("the AI server sent a frame that is not a JSON event (%.80r); ignored", message)
                continue
            yield event

    async def close(self) -> None:
        if self.ws is not None:
            try:
                await self.ws.close()
            except Exception:  # closing a broken socket must never fail cleanup
                pass


def _closed(exc: ConnectionClosed) -> RealtimeClosed:
    frame = exc.rcvd or exc.sent
    if frame is None:  # no close frame either way: RFC 6455's 1006, "abnormal closure"
        return RealtimeClosed(1006, "connection lost without a close frame")
    return RealtimeClosed(frame.code, frame.reason)


class SessionTasks:
    """The background tasks of one session over a RealtimeConnection (the Realtime and GPT-Live
    backends): kept until done; one that fails (other than by a close, which serve() reports) is
    logged with its traceback and closes the connection, so a new session takes over."""

    service = "Realtime"                  # named in the log line
    task_log: logging.Logger = log
    conn: RealtimeConnection | None
    host: Any
    _tasks: set[asyncio.Task[Any]]

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None or isinstance(exc, RealtimeClosed):
            return  # a close is reported by serve()
        self.task_log.error("call %s: a %s session task failed (%r); closing the session so a new one takes over",
                            self.host.id, self.service, exc, exc_info=(type(exc), exc, exc.__traceback__))
        if self.conn is not None:
            self._spawn(self.conn.close())
