"""One fake Realtime WebSocket session: transport, recording for assertions, and wait helpers."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable, MutableSequence
from typing import TYPE_CHECKING, Any, TypeVar

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from .ids import event_id as new_event_id
from .records import ResponseRecord, TruncationRecord
from .script import Script

if TYPE_CHECKING:
    from .protocol import RealtimeProtocol
    from .server import RealtimeServer

log = logging.getLogger("aribot.realtime_server")
T = TypeVar("T")


def _records(keep: int | None) -> MutableSequence[Any]:
    return [] if keep is None else deque(maxlen=keep)


class FakeConnection:
    """Everything one client did and got, with ``time.time()`` stamps, plus ways to wait for it."""

    def __init__(self, ws: ServerConnection, server: RealtimeServer, *, model: str, azure: bool,
                 script: Script, headers: dict[str, str], path: str, keep_records: int | None = None) -> None:
        self.ws = ws
        self.server = server
        self.model = model
        self.azure = azure
        self.script = script
        self.headers = headers
        self.path = path
        self.opened_at = time.time()
        # everything (a list), or the last keep_records (a bounded deque)
        self.received: MutableSequence[tuple[float, dict[str, Any]]] = _records(keep_records)
        self.sent: MutableSequence[tuple[float, dict[str, Any]]] = _records(keep_records)
        self.errors_sent: list[dict[str, Any]] = []
        self.input_audio = bytearray()
        self.appends: MutableSequence[tuple[float, int]] = _records(keep_records)
        self.audio_before_pcmu = False
        self.truncations: list[TruncationRecord] = []
        self.responses: MutableSequence[ResponseRecord] = _records(keep_records)
        self.speech_started_times: list[float] = []
        self.session_updates: list[dict[str, Any]] = []
        self.skipped_auto_responses = 0
        self.warnings: list[str] = []
        self.closed_code: int | None = None
        self.closed_reason: str | None = None
        self.closed_by: str | None = None  # "server" or "client"
        self.closed_at: float | None = None
        self._send_lock = asyncio.Lock()
        self._waiters: list[asyncio.Future[None]] = []
        self.protocol: RealtimeProtocol  # set by the server before run()

    # ----- views -------------------------------------------------------------------------
    @property
    def session(self) -> dict[str, Any]:
        """The effective session (what the last ``session.updated`` carried)."""
        return self.protocol.session

    @property
    def closed(self) -> bool:
        """True once either side closed the socket."""
        return self.closed_at is not None

    @property
    def input_audio_ms(self) -> float:
        """The input audio clock: ms of audio appended so far, in the input format of each append."""
        return self.protocol.audio.clock_ms

    def sent_types(self) -> list[str]:
        """Types of every event the fake sent, in order."""
        return [event["type"] for _, event in self.sent]

    def received_types(self) -> list[str]:
        """Types of every client event, in order (``"None"`` for unparsable frames)."""
        return [str(event.get("type")) for _, event in self.received]

    def sent_of_type(self, event_type: str) -> list[dict[str, Any]]:
        """Sent events of one type."""
        return [event for _, event in self.sent if event["type"] == event_type]

    def received_of_type(self, event_type: str) -> list[dict[str, Any]]:
        """Client events of one type."""
        return [event for _, event in self.received if event.get("type") == event_type]

    def response_by_id(self, response_id: str) -> ResponseRecord | None:
        """The response record with this ``resp_…`` id."""
        return next((r for r in self.responses if r.id == response_id), None)

    # ----- sending -----------------------------------------------------------------------
    async def emit(self, event: dict[str, Any], *, guard: Callable[[], bool] | None = None,
                   before_send: Callable[[], None] | None = None) -> bool:
        """Stamp, self-check, record and send a server event. False if ``guard`` said no or the socket is gone.

        ``guard`` and ``before_send`` run under the send lock, so wire order = record order.
        """
        async with self._send_lock:
            if (guard is not None and not guard()) or self.closed:
                return False
            event = {"type": event["type"], "event_id": event.get("event_id") or new_event_id(),
                     **{k: v for k, v in event.items() if k not in ("type", "event_id")}}
            self.server.check_outgoing(event)
            if before_send is not None:
                before_send()
            self.sent.append((time.time(), event))
            if event["type"] == "error":
                self.errors_sent.append(event)
                log.info("%s error sent: %s", self.label, event["error"])
            self.notify()
            try:
                await self.ws.send(json.dumps(event))
            except ConnectionClosed:
                self.mark_closed(self.ws.close_code, self.ws.close_reason, "client")
                return False
            return True

    async def send_event(self, event: dict[str, Any]) -> bool:
        """Inject any server event (e.g. an ``error``); ``event_id`` is added when missing."""
        return await self.emit(event)

    async def send_raw(self, data: str | bytes) -> None:
        """Send a frame as is: no validation, not recorded in ``sent`` (for malformed-frame tests)."""
        async with self._send_lock:
            await self.ws.send(data)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the WebSocket from the server side."""
        async with self._send_lock:
            self.mark_closed(code, reason, "server")
        await self.ws.close(code, reason)

    def mark_closed(self, code: int | None, reason: str | None, by: str) -> None:
        """Record the first close (later ones are ignored) and refuse further sends."""
        if self.closed_at is None:
            self.closed_code, self.closed_reason, self.closed_by = code, reason, by
            self.closed_at = time.time()
            log.info("%s closed by %s: %s %s", self.label, by, code, reason)
            self.notify()

    @property
    def label(self) -> str:
        """``[index model]`` for log lines."""
        return f"[{self.server.connections.index(self) if self in self.server.connections else '?'} {self.model}]"

    # ----- waiting -----------------------------------------------------------------------
    def notify(self) -> None:
        """Wake every ``wait_for`` so it re-checks its predicate."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_for(self, predicate: Callable[[], T | None], timeout: float = 5.0,
                       description: str = "condition") -> T:
        """Wait until ``predicate()`` returns something truthy and return it."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.label} timed out after {timeout}s waiting for {description}; "
                                   f"sent={self.sent_types()[-15:]} received={self.received_types()[-15:]}")
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                pass

    async def wait_for_event_type(self, event_type: str, timeout: float = 5.0, *, count: int = 1,
                                  direction: str = "sent") -> dict[str, Any]:
        """The ``count``-th (1-based) event of ``event_type`` sent (or ``direction="received"``)."""
        select = self.sent_of_type if direction == "sent" else self.received_of_type

        def found() -> dict[str, Any] | None:
            events = select(event_type)
            return events[count - 1] if len(events) >= count else None

        return await self.wait_for(found, timeout, f"{direction} {event_type} #{count}")

    async def wait_for_received_type(self, event_type: str, timeout: float = 5.0, *, count: int = 1
                                     ) -> dict[str, Any]:
        """The ``count``-th client event of ``event_type``."""
        return await self.wait_for_event_type(event_type, timeout, count=count, direction="received")

    async def wait_for_input_audio(self, byte_count: int, timeout: float = 5.0) -> int:
        """Wait until at least ``byte_count`` bytes of input audio were appended."""
        def enough() -> int | None:
            count = len(self.input_audio)
            return (count or -1) if count >= byte_count else None  # -1: truthy stand-in for 0

        return max(0, await self.wait_for(enough, timeout, f"{byte_count} bytes of input audio"))

    async def wait_for_response(self, index: int = 0, timeout: float = 5.0) -> ResponseRecord:
        """Response ``index`` (0-based) once created."""
        return await self.wait_for(lambda: self.responses[index] if len(self.responses) > index else None,
                                   timeout, f"response #{index}")

    async def wait_for_response_done(self, index: int = 0, timeout: float = 5.0) -> ResponseRecord:
        """Response ``index`` (0-based) once its ``response.done`` was sent."""
        def done() -> ResponseRecord | None:
            return self.responses[index] if len(self.responses) > index and self.responses[index].done else None

        return await self.wait_for(done, timeout, f"response #{index} done")

    async def wait_for_truncation(self, index: int = 0, timeout: float = 5.0) -> TruncationRecord:
        """Truncation ``index`` (0-based) once received and judged."""
        return await self.wait_for(lambda: self.truncations[index] if len(self.truncations) > index else None,
                                   timeout, f"truncation #{index}")

    async def wait_for_speech_started(self, count: int = 1, timeout: float = 5.0) -> float:
        """Time of the ``count``-th ``input_audio_buffer.speech_started``."""
        def started() -> float | None:
            return self.speech_started_times[count - 1] if len(self.speech_started_times) >= count else None

        return await self.wait_for(started, timeout, f"speech_started #{count}")

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        """Wait for the socket to close; returns the close code."""
        await self.wait_for(lambda: self.closed, timeout, "close")
        return self.closed_code

    # ----- run loop ----------------------------------------------------------------------
    async def run(self) -> None:
        """Serve the socket until it closes."""
        lifetime: asyncio.Task[None] | None = None
        if self.script.max_session_s is not None:
            lifetime = asyncio.create_task(self._expire(self.script.max_session_s))
        try:
            await self.protocol.on_connect()
            async for message in self.ws:
                if isinstance(message, bytes):
                    await self.protocol.handle_binary(message)
                else:
                    await self.protocol.handle_text(message)
        except ConnectionClosed:
            pass
        finally:
            self.mark_closed(self.ws.close_code, self.ws.close_reason, "client")
            if lifetime is not None:
                lifetime.cancel()
            await self.protocol.shutdown()

    async def _expire(self, seconds: float) -> None:
        await self.server.clock.wait(seconds)
        await self.close(1001, "Your session hit the maximum duration of 60 minutes.")
