"""What the dashboard shows of live calls, built only from bus events (no NiceGUI here).

Each call keeps a ``version`` that increases on every change, so pages redraw only what changed,
at their own refresh rate, however fast events come (50 calls must not disturb audio pacing).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aribot.core import events as ev
from aribot.plugins.ui_nicegui.timeline import FORMATS, describe


@dataclass
class TurnView:
    role: str              # "caller" or "assistant"
    item_id: str
    text: str = ""
    final: bool = False
    interrupted: bool = False
    ts: float = field(default_factory=time.time)
    latency_ms: float | None = None   # an AI turn: from the caller's last word to its first audio sent


@dataclass
class ToolView:
    tool_call_id: str
    tool: str
    arguments: str
    result: str = ""
    error: str = ""
    duration_ms: float | None = None
    awaiting_answer: bool = False


@dataclass
class TimelineEntry:
    ts: float
    name: str    # the event's name, e.g. "call.barge_in"
    text: str


@dataclass
class CallView:
    call_id: str
    caller_number: str = ""
    caller_name: str = ""
    extension: str = ""
    started_at: float = field(default_factory=time.time)
    state: str = "ringing"
    mode: str = ""
    speaking: str = ""                 # "caller", "assistant" or ""
    tool_in_progress: str = ""
    turns: list[TurnView] = field(default_factory=list)
    tools: list[ToolView] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    barge_ins: int = 0
    dtmf: str = ""
    timeline: list[TimelineEntry] = field(default_factory=list)
    backend: str = ""
    cost_usd: float | None = None      # by the [cost] prices, while the cost plugin runs
    ended_at: float | None = None
    end_reason: str = ""
    version: int = 0

    @property
    def duration_s(self) -> float:
        return (self.ended_at or time.time()) - self.started_at

    def turn(self, role: str, item_id: str) -> TurnView:
        for turn in reversed(self.turns):
            if turn.item_id == item_id and turn.role == role:
                return turn
        turn = TurnView(role, item_id)
        self.turns.append(turn)
        return turn

    def tool(self, tool_call_id: str) -> ToolView | None:
        return next((t for t in self.tools if t.tool_call_id == tool_call_id), None)


class LiveState:
    """Live calls (and recently ended ones, for ``keep_s`` seconds) by call id."""

    def __init__(self, keep_s: float = 30.0) -> None:
        self.calls: dict[str, CallView] = {}
        self.keep_s = keep_s
        self.version = 0

    def live(self) -> list[CallView]:
        self._expire()
        return sorted(self.calls.values(), key=lambda c: c.started_at)

    def _expire(self) -> None:
        now = time.time()
        for call_id in [c.call_id for c in self.calls.values() if c.ended_at and now - c.ended_at > self.keep_s]:
            del self.calls[call_id]
            self.version += 1

    def on_event(self, event: ev.Event) -> None:
        """Bus receiver: cheap, synchronous, never raises for an unknown event."""
        if isinstance(event, ev.CallStarted):
            self.calls[event.call_id] = CallView(event.call_id, event.caller_number, event.caller_name,
                                                 event.extension, event.ts)
        call = self.calls.get(event.call_id)
        if call is None:
            return
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(call, event)
        if event.name in FORMATS:
            text = describe(event.name, event.to_json())
            if text is not None:
                call.timeline.append(TimelineEntry(event.ts, event.name, text))
        if handler is not None or event.name in FORMATS:
            _trim(call)
        call.version += 1
        self.version += 1


def _transcript_delta(call: CallView, event: Any) -> None:
    turn = call.turn(event.role, event.item_id)
    turn.text += event.text
    call.speaking = event.role


def _transcript(call: CallView, event: Any) -> None:
    turn = call.turn(event.role, event.item_id)
    if event.text or not turn.text:
        turn.text = event.text
    turn.final = True


# what one call's view keeps of a long call (the AI and the caller decide how much comes): the latest
KEEP_TURNS, KEEP_TOOLS, KEEP_LATENCIES, KEEP_KEYS, KEEP_TIMELINE = 500, 200, 1000, 64, 500


def _trim(call: CallView) -> None:
    for items, keep in ((call.turns, KEEP_TURNS), (call.tools, KEEP_TOOLS), (call.latencies_ms, KEEP_LATENCIES),
                        (call.timeline, KEEP_TIMELINE)):
        if len(items) > keep:
            del items[:len(items) - keep]
    if len(call.dtmf) > KEEP_KEYS:
        call.dtmf = call.dtmf[-KEEP_KEYS:]


def _barge_in(call: CallView, event: Any) -> None:
    call.barge_ins += 1
    for turn in reversed(call.turns):
        if turn.item_id == event.item_id:
            turn.interrupted = True
            break


def _tool_called(call: CallView, event: Any) -> None:
    call.tools.append(ToolView(event.tool_call_id, event.tool, event.arguments))
    call.tool_in_progress = event.tool


def _tool_waiting(call: CallView, event: Any) -> None:
    tool = call.tool(event.tool_call_id)
    if tool is not None:
        tool.awaiting_answer = True


def _tool_finished(call: CallView, event: Any) -> None:
    tool = call.tool(event.tool_call_id) or ToolView(event.tool_call_id, event.tool, "")
    if tool not in call.tools:
        call.tools.append(tool)
    tool.result, tool.error, tool.duration_ms, tool.awaiting_answer = event.result, event.error, event.duration_ms, False
    call.tool_in_progress = ""


def _bot_audio_started(call: CallView, event: Any) -> None:
    call.speaking = "assistant"
    if event.latency_ms is not None:
        call.latencies_ms.append(event.latency_ms)
        if event.item_id:
            call.turn("assistant", event.item_id).latency_ms = event.latency_ms


def _ended(call: CallView, event: Any) -> None:
    call.ended_at, call.end_reason, call.state, call.speaking = event.ts, event.reason, "ended", ""


def _set(**values: Any) -> Any:
    def apply(call: CallView, _event: Any) -> None:
        for key, value in values.items():
            setattr(call, key, value)
    return apply


_HANDLERS: dict[type, Any] = {
    ev.CallAnswered: _set(state="answered"),
    ev.MediaConnected: _set(state="connected"),
    ev.ActivationOpened: lambda call, e: (setattr(call, "mode", e.mode), setattr(call, "state", "listening")),
    ev.SpeechStarted: lambda call, e: (setattr(call, "speaking", "caller"),
                                       call.turn("caller", e.item_id) if e.item_id else None),
    ev.SpeechStopped: _set(speaking=""),
    ev.TalkingStarted: _set(speaking="caller"),
    ev.TranscriptDelta: _transcript_delta,
    ev.Transcript: _transcript,
    ev.BargeIn: _barge_in,
    ev.BotAudioStarted: _bot_audio_started,
    ev.BotAudioStopped: _set(speaking=""),
    ev.ToolCalled: _tool_called,
    ev.ToolAwaitingAnswer: _tool_waiting,
    ev.ToolFinished: _tool_finished,
    ev.DtmfReceived: lambda call, e: setattr(call, "dtmf", call.dtmf + e.shown),   # [dtmf] mask
    ev.CallEnded: _ended,
    ev.BackendReady: lambda call, e: setattr(call, "backend", e.backend or call.backend),
    ev.CostUpdated: lambda call, e: setattr(call, "cost_usd", e.usd),
}
