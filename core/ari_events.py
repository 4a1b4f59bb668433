"""ARI event models (sans-IO): JSON text in, small typed objects out. Unknown event types parse
to a generic AriEvent, so a new Asterisk version never breaks the event loop.

Asterisk is trusted to send well-formed events, but one that is not (a field of the wrong type, a
number that is not one) must cost only itself: a field aribot reads that has the wrong type is
taken as empty (or 0) and named in ``AriEvent.problems``; an event without the ids it needs raises
``AriEventError``. No other exception leaves ``parse_event`` or the properties of its result."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

LEG_PREFIXES = ("UnicastRTP/", "Snoop/", "WebSocket/", "AudioSocket/")
DTMF_DIGITS = frozenset("0123456789*#ABCD")
MAX_ARGS = 32   # Stasis() arguments kept (the dialplan is the operator's, but a runaway one costs)


class AriEventError(ValueError):
    """A frame from the ARI events WebSocket is not a usable event; ``event_type`` and
    ``channel_id`` say what it was, as far as that could be read ("" when not)."""

    def __init__(self, message: str, event_type: str = "", channel_id: str = "") -> None:
        super().__init__(message)
        self.event_type, self.channel_id = event_type, channel_id


def shown(text: Any, limit: int = 80) -> str:
    """``text`` from Asterisk as it may appear in a log line: printable, short, on one line."""
    text = str(text)
    return text if len(text) <= limit and text.isprintable() else repr(text[:limit])


def _text(data: dict[str, Any], key: str, problems: list[str], where: str = "") -> str:
    """``data[key]`` as text: a string as it is, a number as its digits, anything else "" (noted)."""
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    problems.append(f"{where}{shown(key, 40)} is not a string")
    return ""


def _number(data: dict[str, Any], key: str, problems: list[str], where: str = "") -> int:
    """``data[key]`` as an int (an integer or a string of digits), else 0 (noted)."""
    value = data.get(key)
    if value is None or value == "":
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit() and len(value) < 20:
        return int(value)
    problems.append(f"{where}{shown(key, 40)} is not a number")
    return 0


def _object(data: dict[str, Any], key: str, problems: list[str], where: str = "") -> dict[str, Any]:
    """``data[key]`` if it is a JSON object, else {} (noted unless it is absent or null)."""
    value = data.get(key)
    if isinstance(value, dict):
        return value
    if value is not None:
        problems.append(f"{where}{shown(key, 40)} is not an object")
    return {}


@dataclass(frozen=True, slots=True)
class Channel:
    id: str
    name: str
    state: str = ""
    caller_number: str = ""
    caller_name: str = ""
    context: str = ""
    exten: str = ""
    priority: int = 0
    protocol_id: str = ""
    channelvars: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, problems: list[str] | None = None) -> "Channel":
        """A channel object; fields of the wrong type are taken as empty and noted in ``problems``."""
        if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"] \
                or not isinstance(data.get("name"), str):
            raise AriEventError("channel object without string id/name")
        noted: list[str] = [] if problems is None else problems
        caller = _object(data, "caller", noted, "channel.")
        plan = _object(data, "dialplan", noted, "channel.")
        variables = _object(data, "channelvars", noted, "channel.")
        return cls(
            id=data["id"],
            name=data["name"],
            state=_text(data, "state", noted, "channel."),
            caller_number=_text(caller, "number", noted, "channel.caller."),
            caller_name=_text(caller, "name", noted, "channel.caller."),
            context=_text(plan, "context", noted, "channel.dialplan."),
            exten=_text(plan, "exten", noted, "channel.dialplan."),
            priority=_number(plan, "priority", noted, "channel.dialplan."),
            protocol_id=_text(data, "protocol_id", noted, "channel."),
            channelvars={str(k): _text(variables, k, noted, "channel.channelvars.") for k in variables},
        )

    @property
    def is_media_leg(self) -> bool:
        """True for channels that are media legs (ExternalMedia, snoop, …), never new calls."""
        return self.name.startswith(LEG_PREFIXES)


@dataclass(frozen=True, slots=True)
class AriEvent:
    type: str
    data: dict[str, Any]
    channel: Channel | None = None
    problems: tuple[str, ...] = ()   # fields of the wrong type, taken as empty (for the log)

    @property
    def channel_id(self) -> str | None:
        return self.channel.id if self.channel else None

    def _id_of(self, key: str) -> str | None:
        value = self.data.get(key)
        ident = value.get("id") if isinstance(value, dict) else None
        return ident if isinstance(ident, str) and ident else None

    @property
    def bridge_id(self) -> str | None:
        return self._id_of("bridge")

    @property
    def playback_id(self) -> str | None:
        return self._id_of("playback")

    @property
    def playback_state(self) -> str:
        playback = self.data.get("playback")
        state = playback.get("state") if isinstance(playback, dict) else None
        return state if isinstance(state, str) else ""

    @property
    def playback_channel_id(self) -> str | None:
        """The channel a playback targets (``target_uri`` ``channel:<id>``)."""
        playback = self.data.get("playback")
        target = playback.get("target_uri") if isinstance(playback, dict) else None
        if isinstance(target, str) and target.startswith("channel:") and len(target) > len("channel:"):
            return target[len("channel:"):]
        return None

    @property
    def args(self) -> list[str]:
        args = self.data.get("args")
        if not isinstance(args, list):
            return []
        return [str(a) for a in args[:MAX_ARGS] if isinstance(a, (str, int, float)) and not isinstance(a, bool)]

    @property
    def digit(self) -> str:
        digit = self.data.get("digit")
        return digit if isinstance(digit, str) and digit in DTMF_DIGITS else ""

    @property
    def application(self) -> str:
        application = self.data.get("application")
        return application if isinstance(application, str) else ""

    def number(self, key: str) -> int:
        """A numeric field of the event (e.g. ``duration_ms``), 0 when absent or not a number."""
        return _number(self.data, key, [])


def _check(data: dict[str, Any], problems: list[str]) -> None:
    """Note the fields aribot reads that have the wrong type (the properties then give empty values)."""
    args = data.get("args")
    if args is not None and (not isinstance(args, list) or len(args) > MAX_ARGS or not all(
            isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in args)):
        problems.append("args is not a short list of strings")
    if "digit" in data and not (isinstance(data["digit"], str) and data["digit"] in DTMF_DIGITS):
        problems.append("digit is not a DTMF digit")
    for key in ("playback", "bridge"):
        value = data.get(key)
        if value is not None and not (isinstance(value, dict) and isinstance(value.get("id"), str)):
            problems.append(f"{key} has no string id")
    playback = data.get("playback")
    if isinstance(playback, dict):
        for key in ("state", "target_uri"):
            _text(playback, key, problems, "playback.")
    for key in ("duration", "duration_ms"):
        if key in data:
            _number(data, key, problems)


def parse_event(message: str | bytes | dict[str, Any]) -> AriEvent:
    """Decode one events-WebSocket message; raise AriEventError if it is not an event."""
    if isinstance(message, dict):
        data = message
    else:
        try:
            data = json.loads(message)
        except (ValueError, RecursionError) as exc:
            raise AriEventError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise AriEventError("not a JSON object")
    raw = data.get("channel")
    ident = raw.get("id") if isinstance(raw, dict) else None
    ident = ident if isinstance(ident, str) else ""
    kind = data.get("type")
    if not isinstance(kind, str) or not kind:
        raise AriEventError("no string 'type' field", "", ident)
    problems: list[str] = []
    channel = None
    if raw is not None:
        try:
            channel = Channel.from_json(raw, problems)
        except AriEventError as exc:
            raise AriEventError(str(exc), kind, ident) from None
    _check(data, problems)
    return AriEvent(kind, data, channel, tuple(problems))
