"""Self-check of every frame the fake sends, against the openai SDK's GA server event models.

``TypeAdapter(RealtimeServerEvent)`` alone is lenient: the SDK models allow extra keys. So the
validated model is also walked for extra keys, and any key not known to be sent by the real
server (``obfuscation``, the session's ``object``/``id``/``expires_at``) is reported too.
"""

from __future__ import annotations

import functools
from typing import Any

import pydantic
from openai.types.realtime import RealtimeServerEvent

# (model class name, extra key) pairs that real GA frames carry but the SDK models do not declare.
ALLOWED_EXTRAS = {
    ("ResponseAudioTranscriptDeltaEvent", "obfuscation"),
    ("ResponseTextDeltaEvent", "obfuscation"),
    ("ConversationItemInputAudioTranscriptionDeltaEvent", "obfuscation"),
    ("RealtimeSessionCreateRequest", "object"),
    ("RealtimeSessionCreateRequest", "id"),
    ("RealtimeSessionCreateRequest", "expires_at"),
}


@functools.cache
def _adapter() -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(RealtimeServerEvent)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _extras(value: Any, path: str) -> list[str]:
    problems: list[str] = []
    if isinstance(value, pydantic.BaseModel):
        name = type(value).__name__
        for key in value.model_extra or {}:
            if (name, key) not in ALLOWED_EXTRAS:
                problems.append(f"unexpected key {_join(path, key)} (not in {name})")
        for key in type(value).model_fields:
            problems += _extras(getattr(value, key), _join(path, key))
    elif isinstance(value, list):
        for index, element in enumerate(value):
            problems += _extras(element, f"{path}[{index}]")
    return problems


def check_server_event(frame: dict[str, Any]) -> list[str]:
    """Problems with ``frame`` as a GA server event; an empty list means it is valid."""
    try:
        model = _adapter().validate_python(frame)
    except pydantic.ValidationError as exc:
        return [f"{frame.get('type')!r} fails RealtimeServerEvent: {exc}"]
    if getattr(model, "type", None) != frame.get("type"):
        return [f"{frame.get('type')!r} validated as {type(model).__name__}"]
    return [f"{frame.get('type')!r}: {problem}" for problem in _extras(model, "")]
