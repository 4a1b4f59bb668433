"""One fake GPT-Live WebSocket session: transport, everything recorded for assertions, wait helpers."""

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

from aribot.plugins.local_backend.realtime.ids import event_id as new_event_id
from tests.lab.wait import until

from .records import AppendRecord, AudioArrival, ClientBug, InputGap, Interruption, ToolOutputRecord, TurnRecord
from .script import Script
from .sdk_models import SERVER_EVENTS_WITHOUT_EVENT_ID

if TYPE_CHECKING:
    from .protocol import LiveProtocol
    from .server import FakeGptLiveServer

log = logging.getLogger("aribot.fake_gpt_live")
T = TypeVar("T")


# Every server event type this fake sends (the unit tests check each is in the SDK's ServerEvent union).
SENT_EVENT_TYPES = frozenset({
    "session.started", "session.updated", "session.input_audio.muted", "session.input_audio.unmuted",
    "session.instructions.appended", "session.thinking.appended", "session.commentary.appended",
    "session.output_audio.delta", "session.input_transcript.delta", "session.output_transcript.delta",
    "session.delegation.created", "response.event", "session.usage.updated", "session.closed", "error",
})


class LiveConnection:
    """What one client sent and got (``time.time()`` stamps), the session's records, and ways to wait."""

    def __init__(self, ws: ServerConnection, server: FakeGptLiveServer, *, script: Script,
                 headers: dict[str, str], path: str, keep_records: int | None = None) -> None:
        self.ws = ws
        self.server = server
        self.script = script
        self.headers = headers
        self.path = path
        # every event (lists), or the last keep_records of them (bounded deques: benchmarks, long calls)
        self.received: MutableSequence[tuple[float, dict[str, Any]]] = [] if keep_records is None else deque(
            maxlen=keep_records)
        self.sent: MutableSequence[tuple[float, dict[str, Any]]] = [] if keep_records is None else deque(
            maxlen=keep_records)
        self.session: dict[str, Any] | None = None  # the accepted session.start config, as sent
        self.resource: dict[str, Any] | None = None  # the resolved session (session.started / .updated)
        self.input_audio = bytearray()
        self.audio_arrivals: MutableSequence[AudioArrival] = [] if keep_records is None else deque(maxlen=keep_records)
        self.input_gaps: list[InputGap] = []
        self.appends: list[AppendRecord] = []
        self.tool_outputs: list[ToolOutputRecord] = []
        self.backend_items: list[dict[str, Any]] = []
        self.delegations: list[dict[str, Any]] = []
        self.turns: list[TurnRecord] = []
        self.interruptions: list[Interruption] = []
        self.client_bugs: list[ClientBug] = []
        self.ignored_triggers: list[str] = []
        self.warnings: list[str] = []
        self.muted = False
        self.closed_reason: str | None = None  # the reason of the session.closed sent, if any
        self.close_code: int | None = None
        self.closed_by: str | None = None  # "server" / "client" / "dropped"
        self.closed_at: float | None = None
        self._final_sent = False
        self._send_lock = asyncio.Lock()
        self.protocol: LiveProtocol  # set by the server before run()

    # ----- views -------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """True once the socket is closed (either side) or dropped."""
        return self.closed_at is not None

    @property
    def started(self) -> bool:
        """True once ``session.started`` was sent."""
        return self.resource is not None

    def sent_types(self) -> list[str]:
        """Types of every event the fake sent, in order."""
        return [event["type"] for _, event in self.sent]

    def received_types(self) -> list[str]:
        """Types of every client frame (``"None"`` for frames that were not an event object)."""
        return [str(event.get("type")) for _, event in self.received]

    def sent_of_type(self, event_type: str) -> list[dict[str, Any]]:
        """Sent events of one type."""
        return [event for _, event in self.sent if event["type"] == event_type]

    def received_of_type(self, event_type: str) -> list[dict[str, Any]]:
        """Client events of one type."""
        return [event for _, event in self.received if event.get("type") == event_type]

    def output_audio(self) -> bytes:
        """Every output audio byte sent, in order."""
        return b"".join(bytes(turn.audio_sent) for turn in self.turns)

    # ----- sending -----------------------------------------------------------------------------
    async def emit(self, event: dict[str, Any], *, guard: Callable[[], bool] | None = None,
                   before_send: Callable[[], None] | None = None, final: bool = False) -> bool:
        """Stamp, self-check, record and send a server event; False if ``guard`` said no, the session already
        sent ``session.closed`` (``final`` marks that one) or the socket is gone. ``guard`` and
        ``before_send`` run under the send lock, so wire order is record order."""
        async with self._send_lock:
            if self._final_sent or self.closed or (guard is not None and not guard()):
                return False
            if event["type"] not in SERVER_EVENTS_WITHOUT_EVENT_ID:  # session.output_audio.delta has no event_id
                event = {"type": event["type"], "event_id": new_event_id(),
                         **{k: v for k, v in event.items() if k != "type"}}
            self.server.check_outgoing(event)
            if before_send is not None:
                before_send()
            self._final_sent = final
            self.sent.append((time.time(), event))
            try:
                await self.ws.send(json.dumps(event))
            except ConnectionClosed:
                self.mark_closed(self.ws.close_code, "client")
                return False
            return True

    async def send_raw(self, data: str | bytes) -> None:
        """Send a frame as is: not validated, not recorded (for malformed-frame tests of a client)."""
        async with self._send_lock:
            await self.ws.send(data)

    async def close_with(self, reason: str) -> None:
        """End the session as the server: ``session.closed{reason}`` (``content``, ``remote_hangup``,
        ``connection_lost``, ``expired``, ``close_requested``), then a normal close."""
        await self.protocol.finish(reason)

    async def drop(self) -> None:
        """Lose the connection: the TCP connection is aborted, with no ``session.closed`` and no close frame."""
        self.mark_closed(None, "dropped")
        await self.protocol.shutdown()
        self.ws.transport.abort()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the WebSocket from the server side."""
        async with self._send_lock:
            self.mark_closed(code, "server")
        await self.ws.close(code, reason)

    def mark_closed(self, code: int | None, by: str) -> None:
        """Record the first close (later ones are ignored)."""
        if self.closed_at is None:
            self.close_code, self.closed_by, self.closed_at = code, by, time.time()
            log.info("%s closed by %s (%s)", self.label, by, code)

    @property
    def label(self) -> str:
        """``[index]`` for log lines."""
        connections = self.server.connections
        return f"[gpt-live {connections.index(self) if self in connections else '?'}]"

    # ----- waiting (the timeout is a hang guard, never the thing a test asserts) -------------------
    async def wait_for(self, predicate: Callable[[], T | None], what: str, timeout: float = 5.0) -> T:
        """Wait until ``predicate()`` is truthy and return it."""
        try:
            return await until(predicate, f"{self.label} {what}", timeout, interval=0.005)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; sent {self.sent_types()[-8:]}, received {self.received_types()[-8:]}"
                                 ) from None

    async def wait_for_started(self, timeout: float = 5.0) -> dict[str, Any]:
        """The resolved session once ``session.started`` was sent."""
        return await self.wait_for(lambda: self.resource, "session.started", timeout)

    async def wait_for_sent(self, event_type: str, count: int = 1, timeout: float = 5.0) -> dict[str, Any]:
        """The ``count``-th (1-based) event of ``event_type`` the fake sent."""
        return await self.wait_for(lambda: _nth(self.sent_of_type(event_type), count), f"sent {event_type} #{count}",
                                   timeout)

    async def wait_for_received(self, event_type: str, count: int = 1, timeout: float = 5.0) -> dict[str, Any]:
        """The ``count``-th (1-based) client event of ``event_type``."""
        return await self.wait_for(lambda: _nth(self.received_of_type(event_type), count),
                                   f"received {event_type} #{count}", timeout)

    async def wait_for_input_audio(self, byte_count: int, timeout: float = 5.0) -> int:
        """Wait until at least ``byte_count`` bytes of input audio were accepted; returns the count."""
        await self.wait_for(lambda: len(self.input_audio) >= byte_count, f"{byte_count} input bytes", timeout)
        return len(self.input_audio)

    async def wait_for_turn(self, index: int, *, done: bool = True, timeout: float = 5.0) -> TurnRecord:
        """Turn ``index`` (0-based) once taken (``done``: once it ended, finished or interrupted)."""
        return await self.wait_for(lambda: _ready(self.turns, index, done), f"turn #{index}", timeout)

    async def wait_for_interruption(self, index: int = 0, timeout: float = 5.0) -> Interruption:
        """Interruption ``index`` (0-based)."""
        return await self.wait_for(lambda: _nth(self.interruptions, index + 1), f"interruption #{index}", timeout)

    async def wait_for_append(self, index: int = 0, *, acked: bool = True, timeout: float = 5.0) -> AppendRecord:
        """Append ``index`` (0-based) once accepted (``acked``: once its ``…appended`` was sent)."""
        return await self.wait_for(lambda: _ready(self.appends, index, acked, "acked"), f"append #{index}", timeout)

    async def wait_for_tool_output(self, index: int = 0, timeout: float = 5.0) -> ToolOutputRecord:
        """Tool output ``index`` (0-based) once received."""
        return await self.wait_for(lambda: _nth(self.tool_outputs, index + 1), f"tool output #{index}", timeout)

    async def wait_for_client_bug(self, index: int = 0, timeout: float = 5.0) -> ClientBug:
        """Client bug ``index`` (0-based) once recorded."""
        return await self.wait_for(lambda: _nth(self.client_bugs, index + 1), f"client bug #{index}", timeout)

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        """Wait for the socket to close; returns the close code (None when dropped)."""
        await self.wait_for(lambda: self.closed, "close", timeout)
        return self.close_code

    # ----- run loop ----------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve the socket until it closes."""
        try:
            async for message in self.ws:
                if isinstance(message, bytes):
                    await self.protocol.handle_binary(message)
                else:
                    await self.protocol.handle_text(message)
        except ConnectionClosed:
            pass
        finally:
            self.mark_closed(self.ws.close_code, "client")
            await self.protocol.shutdown()


def _nth(items: list[T], count: int) -> T | None:
    return items[count - 1] if len(items) >= count else None


def _ready(items: list[Any], index: int, wanted: bool, flag: str = "done") -> Any:
    item = items[index] if len(items) > index else None
    return item if item is not None and (not wanted or getattr(item, flag)) else None
