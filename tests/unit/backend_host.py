"""A BackendHost for unit tests of speech backends: the port's side of a call, with a real Playout
and CallMetrics, recording every event the backend emits and every tool it asks to run."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

from aribot.core.events import Event
from aribot.core.metrics import CallMetrics
from aribot.core.playout import Playout, PlayoutViews
from aribot.core.tools import ToolOutcome


async def tool_ok(name: str, tool_call_id: str, arguments: str, response_ref: str) -> ToolOutcome:
    return ToolOutcome('{"ok": true}')


class RecordingHost(PlayoutViews):
    """What a backend may use of its call (aribot.core.backend.BackendHost), in memory."""

    def __init__(self, settings: Any = None, *, silence: int = 0xFF,
                 run_tool: Callable[[str, str, str, str], Awaitable[ToolOutcome]] = tool_ok) -> None:
        self.id = "c1"
        self.settings = settings or SimpleNamespace(ai=SimpleNamespace(input_buffer_ms=1000, connect_timeout=5.0))
        self.ending = False
        self.events: list[Event] = []
        self.playout = Playout(silence)
        self.metrics = CallMetrics()
        self.tool_runs: list[tuple[str, str, str, str]] = []
        self._run_tool = run_tool

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def of(self, event_type: type[Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, event_type)]

    def play_audio(self, item_id: str, audio: bytes, received_at: float, response_id: str = "") -> None:
        self.playout.push(item_id, audio)

    def end_audio(self, item_id: str) -> None:
        self.playout.end_item(item_id)

    def flush_audio(self) -> int:
        return self.playout.clear()

    async def run_tool(self, name: str, tool_call_id: str, arguments: str, response_ref: str) -> ToolOutcome:
        self.tool_runs.append((name, tool_call_id, arguments, response_ref))
        return await self._run_tool(name, tool_call_id, arguments, response_ref)

