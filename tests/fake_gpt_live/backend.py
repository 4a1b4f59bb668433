"""The Responses backend of a session with Responses delegation (reference §7.1).

It produces the nested Responses streaming events that ``response.event`` wraps, in the shapes of
``openai.types.responses`` (checked by ``validation.check_server_event``): lifecycle snapshots with
``output: []``, ``tools: []`` and ``instructions: null`` (SDK ``ResponseEvent`` docstring), a full
``output_item.added`` / ``function_call_arguments.delta`` / ``.done`` / ``output_item.done`` stream per call,
and, once every output is in and ``response.create`` came, a text answer ending in ``response.completed``
with usage. It also keeps the function calls waiting for their ``function_call_output``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from aribot.plugins.local_backend.realtime.ids import new_id

from . import errors


@dataclass
class PendingDelegation:
    """A backend delegation whose function calls wait for outputs and then ``response.create``."""

    id: str
    calls: dict[str, str]  # call_id -> function name
    answer: str
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def missing(self) -> list[str]:
        """Call ids that have no output yet."""
        return [call_id for call_id in self.calls if call_id not in self.outputs]


class Backend:
    """Nested event builder plus tool-call bookkeeping for one session."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config  # the session's delegation.responses (session.update changes it in place)
        self.pending: list[PendingDelegation] = []
        self.answered_calls: set[str] = set()
        self._sequence = 0

    # ----- tool calls -------------------------------------------------------------------------
    def open(self, delegation_id: str, calls: dict[str, str], answer: str) -> None:
        """Remember a delegation's calls until their outputs arrive."""
        self.pending.append(PendingDelegation(delegation_id, dict(calls), answer))

    def add_output(self, call_id: str | None, output: Any) -> tuple[PendingDelegation, str]:
        """Record one ``function_call_output``; returns its delegation and function name."""
        if call_id is None:
            raise errors.missing_parameter("item.call_id")
        for delegation in self.pending:
            if call_id in delegation.calls:
                if call_id in delegation.outputs:
                    raise errors.invalid_value("item.call_id", f"Tool call ID '{call_id}' already has an output.")
                delegation.outputs[call_id] = output
                return delegation, delegation.calls[call_id]
        if call_id in self.answered_calls:
            raise errors.invalid_value("item.call_id", f"Tool call ID '{call_id}' already has an output.")
        raise errors.unknown_tool_call(call_id)

    def take_ready(self) -> list[PendingDelegation]:
        """On ``response.create``: every pending delegation, once none misses an output."""
        missing = [call_id for delegation in self.pending for call_id in delegation.missing]
        if missing:
            raise errors.missing_tool_outputs(missing)
        ready, self.pending = self.pending, []
        self.answered_calls.update(call_id for delegation in ready for call_id in delegation.calls)
        return ready

    # ----- nested events ----------------------------------------------------------------------
    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def snapshot(self, response_id: str, status: str, usage: dict[str, Any] | None = None) -> dict[str, Any]:
        """A lifecycle snapshot of a backend response (output, tools and instructions cleared)."""
        tool_choice = self.config.get("tool_choice", "auto")
        return {"id": response_id, "object": "response", "created_at": int(time.time()), "status": status,
                "model": self.config["model"], "output": [], "instructions": None, "tools": [],
                "tool_choice": tool_choice if isinstance(tool_choice, str) else "auto",
                "parallel_tool_calls": bool(self.config.get("parallel_tool_calls", True)),
                "error": None, "incomplete_details": None, "usage": usage}

    def function_call_events(self, response_id: str, calls: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
        """``response.created`` … one ``function_call`` item per ``(call_id, name, arguments)`` … ``completed``."""
        self._sequence = 0
        events = [self._event("response.created", response=self.snapshot(response_id, "in_progress"))]
        for index, (call_id, name, arguments) in enumerate(calls):
            item = {"id": new_id("fc"), "type": "function_call", "status": "in_progress", "call_id": call_id,
                    "name": name, "arguments": ""}
            ids = {"item_id": item["id"], "output_index": index}
            events += [self._event("response.output_item.added", output_index=index, item=item),
                       self._event("response.function_call_arguments.delta", **ids, delta=arguments),
                       self._event("response.function_call_arguments.done", **ids, arguments=arguments),
                       self._event("response.output_item.done", output_index=index,
                                   item={**item, "status": "completed", "arguments": arguments})]
        usage = _usage(300, sum(len(arguments) for _, _, arguments in calls) // 4 + 10)
        events.append(self._event("response.completed", response=self.snapshot(response_id, "completed", usage)))
        return events

    def answer_events(self, response_id: str, text: str) -> list[dict[str, Any]]:
        """``response.created``, one assistant message streamed as ``output_text`` deltas, ``completed``."""
        self._sequence = 0
        item = {"id": new_id("msg"), "type": "message", "role": "assistant", "status": "in_progress", "content": []}
        ids = {"item_id": item["id"], "output_index": 0, "content_index": 0}
        part = {"type": "output_text", "text": "", "annotations": []}
        events = [self._event("response.created", response=self.snapshot(response_id, "in_progress")),
                  self._event("response.output_item.added", output_index=0, item=item),
                  self._event("response.content_part.added", **ids, part=part)]
        events += [self._event("response.output_text.delta", **ids, delta=piece, logprobs=[])
                   for piece in re.findall(r"\s*\S+", text)]
        done_part = {**part, "text": text}
        events += [self._event("response.output_text.done", **ids, text=text, logprobs=[]),
                   self._event("response.content_part.done", **ids, part=done_part),
                   self._event("response.output_item.done", output_index=0,
                               item={**item, "status": "completed", "content": [done_part]})]
        usage = _usage(400, len(text) // 4 + 1)
        events.append(self._event("response.completed", response=self.snapshot(response_id, "completed", usage)))
        return events


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    """A full ``ResponseUsage`` (the SDK requires the token details)."""
    return {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens}
