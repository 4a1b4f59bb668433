"""GPT-Live ``error`` payloads and the client mistakes the fake answers with them.

Codes named by the SDK or the reference card (``shared/reference/gpt-live.md`` §5): ``unknown_parameter``,
``invalid_audio``, ``immutable_field_update``; the REST family (``missing_required_parameter``,
``invalid_type``, ``invalid_value``, ``model_not_found``, ``string_above_max_length``) and
``invalid_tool_call_id`` follow OpenAI's other APIs. Every other code is the fake's own choice (marked
*fake's choice*); no source names one. The SDK's ``Error.code`` is a required string, so no code is null.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aribot.plugins.local_backend.realtime.errors import (  # noqa: F401  (re-exported: one place for errors)
    ProtocolError,
    invalid_type,
    invalid_value,
    missing_parameter,
    unknown_parameter,
    unknown_tool_call,
)

APPEND_TOKEN_LIMIT = 500


def payload(error: ProtocolError, client_event_id: str | None) -> dict[str, Any]:
    """The ``error`` object of a GPT-Live ``error`` event (``client_event_id`` only when supplied)."""
    body: dict[str, Any] = {"type": error.type, "code": error.code or "invalid_request", "message": error.message,
                            "param": error.param}
    if client_event_id is not None:
        body["client_event_id"] = client_event_id
    return body


def not_started(event_type: str) -> ProtocolError:
    """*fake's choice*: a command before ``session.started`` (reference §2.1: start first, then wait)."""
    return ProtocolError("session_not_started", f"Send session.start and wait for session.started before "
                                                f"sending '{event_type}'.")


def already_started() -> ProtocolError:
    """*fake's choice*: a second ``session.start`` on the same socket."""
    return ProtocolError("session_already_started", "session.start may be sent only once per connection.")


def unknown_event(event_type: object, supported: Iterable[str], realtime: bool) -> ProtocolError:
    """``invalid_value`` on ``type``, naming Realtime API events as such."""
    if realtime:
        return invalid_value("type", f"Invalid value: '{event_type}'. '{event_type}' is a Realtime API event; "
                                     "GPT-Live has no such client event.")
    return invalid_value("type", f"Invalid value: '{event_type}'. Supported values are: "
                                 f"{', '.join(repr(s) for s in sorted(supported))}.")


def fake_unsupported(what: str, param: str | None = None) -> ProtocolError:
    """A request the SDK allows but this fake deliberately does not implement."""
    return ProtocolError("fake_unsupported", f"The fake GPT-Live server does not support {what}.", param)


def immutable_field(path: str, message: str | None = None) -> ProtocolError:
    """``immutable_field_update`` (SDK docstrings, reference §3.7)."""
    return ProtocolError("immutable_field_update", message or f"'{path}' cannot be changed after session.start.",
                         path)


def invalid_audio(message: str) -> ProtocolError:
    """``invalid_audio`` (reference §5: odd PCM byte count)."""
    return ProtocolError("invalid_audio", message, "audio")


def model_not_found(model: str) -> ProtocolError:
    """REST wording for a model the SDK does not list."""
    return ProtocolError("model_not_found", f"The model '{model}' does not exist or you do not have access to it.",
                         "session.model")


def too_many_tokens(path: str, limit: int, tokens: int) -> ProtocolError:
    """``string_above_max_length``; the append message is the one seen on real servers [3p]."""
    if path == "content" and limit == APPEND_TOKEN_LIMIT:
        message = f"Context append text must not exceed {limit} tokens."
    else:
        message = f"Invalid '{path}': about {tokens} tokens, the limit is {limit}."
    return ProtocolError("string_above_max_length", message, path)


def responses_delegation_required(event_type: str) -> ProtocolError:
    """*fake's choice* of code: ``response.*`` commands need Responses delegation (SDK docstrings)."""
    return ProtocolError("responses_delegation_required",
                         f"'{event_type}' requires a session started with Responses delegation.")


def missing_tool_outputs(call_ids: Iterable[str]) -> ProtocolError:
    """*fake's choice* of code: ``response.create`` before every pending function call has its output."""
    return ProtocolError("missing_tool_output", "response.create needs a function_call_output for every pending "
                                                f"call first; missing: {', '.join(call_ids)}.")


def append_not_injected() -> ProtocolError:
    """*fake's choice* of code: an append still pending when the session closes (reference §4)."""
    return ProtocolError("append_cancelled", "The session closed before the appended text was injected.")
