"""The openai SDK's GPT-Live types as the fake's schema, in both directions.

- Event names are enumerated from the SDK unions (``ClientEvent``, ``ServerEvent``, the Realtime
  ``RealtimeClientEvent`` for a helpful refusal), never written by hand.
- A client event is validated by its SDK model in pydantic's strict mode (no ``"8000"`` for 8000),
  then walked for keys the model does not declare (the SDK models allow extras; the server does not).
  The first problem becomes an OpenAI-style ``error`` with a ``param`` path such as
  ``session.audio.format.rate`` or ``session.delegation.responses.tools[0].name``.
"""

from __future__ import annotations

import functools
from typing import Any, get_args

import pydantic
from openai.types.live import BuiltInVoice, ClientEvent, ServerEvent, SessionConfig
from openai.types.realtime import RealtimeClientEvent

from aribot.plugins.local_backend.realtime.schema import join

from . import errors
from .errors import ProtocolError

DISCRIMINATORS = ("type", "role")
TYPE_NAMES = {"string_type": "a string", "int_type": "an integer", "float_type": "a number",
              "bool_type": "a boolean", "model_type": "an object", "dict_type": "an object",
              "model_attributes_type": "an object", "list_type": "an array"}


def union_members(alias: Any) -> tuple[type[pydantic.BaseModel], ...]:
    """The model classes of an SDK event union (``Annotated[Union[...], PropertyInfo(discriminator=...)]``)."""
    return tuple(get_args(get_args(alias)[0]))


def event_type(model: type[pydantic.BaseModel]) -> str:
    """The literal ``type`` of an event model."""
    return str(get_args(model.model_fields["type"].annotation)[0])


CLIENT_EVENT_MODELS: dict[str, type[pydantic.BaseModel]] = {event_type(m): m for m in union_members(ClientEvent)}
SERVER_EVENT_TYPES = frozenset(event_type(m) for m in union_members(ServerEvent))
SERVER_EVENTS_WITHOUT_EVENT_ID = frozenset(event_type(m) for m in union_members(ServerEvent)
                                           if "event_id" not in m.model_fields)
REALTIME_ONLY_CLIENT_EVENTS = frozenset(event_type(m) for m in union_members(RealtimeClientEvent)) - set(
    CLIENT_EVENT_MODELS)
LIVE_MODELS = tuple(value for arg in get_args(SessionConfig.model_fields["model"].annotation)
                    for value in get_args(arg))
BUILT_IN_VOICES = tuple(get_args(BuiltInVoice))


# ----- undeclared keys ----------------------------------------------------------------------------
def undeclared_keys(value: Any, path: str = "") -> list[str]:
    """Paths of every key a validated SDK model carries but does not declare (nested, in order)."""
    found: list[str] = []
    if isinstance(value, pydantic.BaseModel):
        found += [join(path, key) for key in value.model_extra or {}]
        for name, field in type(value).model_fields.items():
            found += undeclared_keys(getattr(value, name), join(path, field.alias or name))
    elif isinstance(value, list):
        for index, element in enumerate(value):
            found += undeclared_keys(element, f"{path}[{index}]")
    return found


# ----- pydantic errors -> OpenAI errors -----------------------------------------------------------
class _Problem:
    """One pydantic error with its JSON path and the union branches (tags) it was found in."""

    def __init__(self, error: Any, data: Any) -> None:
        self.error = error
        self.kind: str = error["type"]
        path, tags, node = "", [], data
        loc = error["loc"]
        for index, part in enumerate(loc):
            last = index == len(loc) - 1
            if isinstance(node, dict) and isinstance(part, str) and (part in node or (last and self.kind == "missing")):
                path, node = join(path, part), node.get(part)
            elif isinstance(node, list) and isinstance(part, int):
                path, node = f"{path}[{part}]", node[part] if part < len(node) else None
            else:
                tags.append((path, part))  # a union member's name, not a key
        self.path = path
        self.tags = tuple(tags)

    @property
    def is_discriminator(self) -> bool:
        """A union member refused because its ``type`` / ``role`` literal differs."""
        return bool(self.tags) and self.kind == "literal_error" and self.path.rsplit(".", 1)[-1] in DISCRIMINATORS

    def under(self, branch: tuple[Any, ...], *, strictly: bool = False) -> bool:
        """True if this problem lies in ``branch`` (``strictly``: deeper inside it)."""
        return self.tags[:len(branch)] == branch and (not strictly or len(self.tags) > len(branch))

    def to_error(self) -> ProtocolError:
        value = self.error.get("input")
        if self.kind == "missing":
            return errors.missing_parameter(self.path)
        if self.kind == "literal_error":
            expected = self.error.get("ctx", {}).get("expected", "")
            return errors.invalid_value(self.path, f"Invalid value: {_show(value)}. Supported values are: {expected}.")
        if self.kind in TYPE_NAMES:
            return errors.invalid_type(self.path, TYPE_NAMES[self.kind], value)
        return errors.invalid_value(self.path, f"Invalid '{self.path}': {self.error['msg']}.")


def _show(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else repr(value)


def first_problem(exc: pydantic.ValidationError, data: Any) -> ProtocolError:
    """The error a strict server would report first; union branches refused by their discriminator are
    ignored, so ``{"type":"audio/pcm","rate":8000}`` reports the rate, not the other formats' types."""
    problems = [_Problem(error, data) for error in exc.errors()]
    refused = [p.tags for p in problems if p.is_discriminator]
    kept = [p for p in problems if not p.is_discriminator and not any(p.under(b) for b in refused)]
    if kept:
        return kept[0].to_error()
    outermost = [p for p in problems if p.is_discriminator and not any(p.under(b, strictly=True) for b in refused)]
    if not outermost:
        return problems[0].to_error()
    deepest = max(outermost, key=lambda p: (len(p.tags), len(p.path)))
    expected = " or ".join(dict.fromkeys(p.error.get("ctx", {}).get("expected", "") for p in outermost
                                         if p.path == deepest.path))
    return errors.invalid_value(deepest.path, f"Invalid value: {_show(deepest.error.get('input'))}. "
                                              f"Supported values are: {expected}.")


@functools.cache
def _adapter(model: Any) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(model)


def validate_strictly(model: Any, data: Any) -> Any:
    """``data`` as an instance of the SDK ``model`` (a class or a union alias), or the first ``ProtocolError``."""
    try:
        value = _adapter(model).validate_python(data, strict=True)
    except pydantic.ValidationError as exc:
        raise first_problem(exc, data) from None
    extra = undeclared_keys(value)
    if extra:
        raise errors.unknown_parameter(extra[0])
    return value


def validate_client_event(event: dict[str, Any]) -> pydantic.BaseModel:
    """A client event of a known ``type`` as its SDK model, or the first ``ProtocolError``."""
    model: pydantic.BaseModel = validate_strictly(CLIENT_EVENT_MODELS[event["type"]], event)
    return model
