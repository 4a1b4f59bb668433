"""A call's timeline in words: what happened, when, as a supervisor reads it. One formatter per
event name, over the event's JSON form, so the live call page (bus events) and the history page
(the stored timeline) say the same thing. No NiceGUI here.

Speech and audio starts and stops are left out (the transcript shows the turns); so are the
events a call has by the hundred (usage, cost), which the page shows as figures instead."""

from __future__ import annotations

from typing import Any, Callable

LONG = 200   # characters of a tool's arguments or result shown in one line


def _clip(text: Any) -> str:
    text = " ".join(str(text if text is not None else "").split())
    return text if len(text) <= LONG else text[:LONG - 1] + "…"


def _ms(value: Any) -> str:
    try:
        return f"{float(value):.0f} ms"
    except (TypeError, ValueError):
        return "? ms"


def _tool_finished(d: dict[str, Any]) -> str:
    outcome = f"failed: {_clip(d.get('error'))}" if d.get("error") else f"→ {_clip(d.get('result'))}"
    return f"tool {d.get('tool')} {outcome} in {_ms(d.get('duration_ms'))}"


FORMATS: dict[str, Callable[[dict[str, Any]], str]] = {
    "call.answered": lambda d: "answered",
    "call.backend_ready": lambda d: f"AI connected ({d.get('backend') or 'backend'}) in {_ms(d.get('connect_ms'))}",
    "call.activation_opened": lambda d: f"listening ({d.get('mode')}" + (f": {d['reason']}" if d.get("reason") else "")
                                        + ")",
    "call.greeting_started": lambda d: f"greeting {_clip(d.get('media'))}",
    "call.greeting_finished": lambda d: "greeting interrupted" if d.get("interrupted") else "greeting finished",
    "call.barge_in": lambda d: f"barge-in: the AI stopped after {_ms(d.get('played_ms'))} "
                               f"({_ms(d.get('dropped_ms'))} not played)",
    "call.tool_called": lambda d: f"tool {d.get('tool')}({_clip(d.get('arguments'))})",
    "call.tool_awaiting_answer": lambda d: f"tool {d.get('tool')} waits for an operator's answer",
    "call.tool_finished": _tool_finished,
    "call.dtmf": lambda d: f"key {d.get('digit')}",
    "call.dtmf_collected": lambda d: f"keys {d.get('digits')} ({d.get('reason')})",
    "call.no_input": lambda d: f"no input ({d.get('reason')})",
    "call.timer_fired": lambda d: f"timer {d.get('timer')}: {d.get('action')}",
    "call.backend_rollover": lambda d: f"AI session renewed ({d.get('reason')}, attempt {d.get('attempt')}, "
                                       f"{_ms(d.get('gap_ms'))} gap)",
    "call.backend_error": lambda d: ("AI error (fatal) " if d.get("fatal") else "AI error ")
                                    + f"{d.get('code')}: {_clip(d.get('message'))}",
    "call.listen_started": lambda d: f"listen-in started by {d.get('operator') or 'an operator'}",
    "call.listen_stopped": lambda d: f"listen-in by {d.get('operator') or 'an operator'} stopped",
    "call.transfer": lambda d: f"warm transfer to {d.get('target')}: {str(d.get('stage')).replace('_', ' ')}"
                               + (f" ({_clip(d.get('detail'))})" if d.get("detail") else ""),
    "call.outbound_outcome": lambda d: f"outbound call: {d.get('outcome')}" + (f" ({_clip(d['detail'])})"
                                                                              if d.get("detail") else ""),
    "call.ended": lambda d: f"ended: {_clip(d.get('reason'))}",
}


def describe(name: str, data: dict[str, Any]) -> str | None:
    """The line for an event (its name and JSON data), or None when the timeline leaves it out.
    Never raises: a field of the wrong type shows as "?"."""
    fmt = FORMATS.get(name)
    if fmt is None:
        return None
    try:
        return fmt(data)
    except Exception:   # a plugin's event of the same name with other fields
        return name.removeprefix("call.").replace("_", " ")
