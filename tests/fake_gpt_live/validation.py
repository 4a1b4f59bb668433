"""Self-check of every frame the fake sends, against the openai SDK's GPT-Live server event models.

``TypeAdapter(ServerEvent)`` alone is lenient (the SDK models allow extra keys), so the validated model
is also walked for undeclared keys, as ``tests/fake_realtime/validation.py`` does for the Realtime fake.
``response.event`` carries its nested Responses stream event as a plain ``Dict[str, object]`` in the live
types; the fake checks it too, against ``openai.types.responses.ResponseStreamEvent``, with the same walk.
"""

from __future__ import annotations

import functools
from typing import Any

import pydantic
from openai.types.live import ServerEvent
from openai.types.responses import ResponseStreamEvent

from .sdk_models import undeclared_keys


@functools.cache
def _adapter(model: Any) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(model)


def _problems(model: Any, frame: dict[str, Any], label: str) -> list[str]:
    try:
        value = _adapter(model).validate_python(frame, strict=True)
    except pydantic.ValidationError as exc:
        return [f"{label} fails {getattr(model, '__name__', 'the SDK union')}: {exc}"]
    if getattr(value, "type", None) != frame.get("type"):
        return [f"{label} validated as {type(value).__name__}"]
    return [f"{label}: undeclared key {key}" for key in undeclared_keys(value)]


def check_server_event(frame: dict[str, Any]) -> list[str]:
    """Problems with ``frame`` as a GPT-Live server event (nested Responses event included); [] = valid."""
    label = repr(frame.get("type"))
    problems = _problems(ServerEvent, frame, label)
    nested = frame.get("event")
    if frame.get("type") == "response.event" and isinstance(nested, dict):
        problems += _problems(ResponseStreamEvent, nested, f"{label} > {nested.get('type')!r}")
    return problems
