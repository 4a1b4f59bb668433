"""Realtime API ``error`` payloads, with the exact wording seen on real servers (reference §3.3).

Messages marked *observed* come from recorded frames or bug reports; the others follow the
OpenAI REST wording and are the fake's own choice (the real text was not captured).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

INVALID_REQUEST = "invalid_request_error"


@dataclass
class ProtocolError(Exception):
    """A client mistake the fake answers with an ``error`` event (the session stays open)."""

    code: str | None
    message: str
    param: str | None = None
    type: str = INVALID_REQUEST

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def payload(self, client_event_id: str | None) -> dict[str, Any]:
        """The ``error`` object of an error event, echoing the client's ``event_id``."""
        return {
            "type": self.type,
            "code": self.code,
            "message": self.message,
            "param": self.param,
            "event_id": client_event_id,
        }


def quote_values(values: Iterable[object]) -> str:
    """``'a', 'b', and 'c'`` / ``'a' and 'b'`` (OpenAI's list style)."""
    quoted = [f"'{v}'" for v in values]
    if len(quoted) <= 2:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


def describe_type(value: object) -> str:
    """OpenAI's name for a JSON value's type, e.g. ``an object``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _show(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def unknown_parameter(path: str) -> ProtocolError:
    """*observed*: ``Unknown parameter: 'session.modalities'.``"""
    return ProtocolError("unknown_parameter", f"Unknown parameter: '{path}'.", path)


def missing_parameter(path: str) -> ProtocolError:
    """*observed*: ``Missing required parameter: 'session.type'.``"""
    return ProtocolError("missing_required_parameter", f"Missing required parameter: '{path}'.", path)


def invalid_type(path: str, expected: str, value: object) -> ProtocolError:
    """REST wording: ``Invalid type for 'x': expected a string, but got an integer instead.``"""
    return ProtocolError(
        "invalid_type",
        f"Invalid type for '{path}': expected {expected}, but got {describe_type(value)} instead.",
        path,
    )


def invalid_choice(path: str, value: object, supported: Iterable[object]) -> ProtocolError:
    """*observed* shape: ``Invalid value: 'session'. Supported values are: 'realtime' and 'transcription'.``"""
    return ProtocolError(
        "invalid_value",
        f"Invalid value: '{_show(value)}'. Supported values are: {quote_values(supported)}.",
        path,
    )


def invalid_value(path: str | None, message: str) -> ProtocolError:
    """An ``invalid_value`` error with a free-form message."""
    return ProtocolError("invalid_value", message, path)


def out_of_range(path: str, value: object, low: float | None, high: float | None) -> ProtocolError:
    """A number outside its documented range (wording is the fake's)."""
    if low is not None and high is not None:
        bounds = f"between {low} and {high}"
    elif low is not None:
        bounds = f">= {low}"
    else:
        bounds = f"<= {high}"
    return invalid_value(path, f"Invalid value for '{path}': expected a value {bounds}, but got {value} instead.")


def commit_empty(buffered_ms: float) -> ProtocolError:
    """*observed*: manual commit of less than 100 ms."""
    return ProtocolError(
        "input_audio_buffer_commit_empty",
        "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
        f"but buffer only has {buffered_ms:.2f}ms of audio.",
    )


def active_response(response_id: str) -> ProtocolError:
    """*observed*: ``response.create`` while a default-conversation response is active."""
    return ProtocolError(
        "conversation_already_has_active_response",
        f"Conversation already has an active response in progress: {response_id}. "
        "Wait until the response is finished before creating a new one.",
    )


def cancel_not_active() -> ProtocolError:
    """*observed*: ``response.cancel`` with nothing to cancel."""
    return ProtocolError("response_cancel_not_active", "Cancellation failed: no active response found")


def item_not_found(item_id: str, param: str = "item_id") -> ProtocolError:
    """Unknown item id (wording is the fake's)."""
    return invalid_value(param, f"Conversation item with id '{item_id}' not found.")


def cannot_truncate() -> ProtocolError:
    """*observed* (livekit/agents PR #6158): truncate of a non-audio or still empty item."""
    return ProtocolError("unsupported_content_type", "Only model output audio messages can be truncated")


def audio_shorter_than(sent_ms: int, audio_end_ms: int) -> ProtocolError:
    """*observed* message; the real ``code`` was never captured, ``invalid_value`` is the fake's choice."""
    return invalid_value("audio_end_ms", f"Audio content of {sent_ms}ms is already shorter than {audio_end_ms}ms")


def unknown_tool_call(call_id: str) -> ProtocolError:
    """*observed* (livekit/agents issue #3344): function_call_output for an unknown call_id."""
    return ProtocolError("invalid_tool_call_id", f"Tool call ID '{call_id}' not found in conversation.")


def cannot_update_voice() -> ProtocolError:
    """*observed* (openai-python issue #2607): voice change after the first audio output."""
    return ProtocolError("cannot_update_voice", "Cannot update a conversation's voice if assistant audio is present.")


def fake_unsupported(what: str, param: str | None = None) -> ProtocolError:
    """A valid request that this fake deliberately does not implement."""
    return ProtocolError("fake_unsupported", f"The fake Realtime server does not support {what}.", param)
