"""ARI event models (sans-IO): JSON text in, small typed objects out. Unknown event types parse
to a generic AriEvent, so a new Asterisk version never breaks the event loop."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

LEG_PREFIXES = ("UnicastRTP/", "Snoop/", "WebSocket/", "AudioSocket/")


class AriEventError(ValueError):
    """A frame from the ARI events WebSocket is not a usable event."""


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
    def from_json(cls, data: Any) -> "Channel":
        if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not isinstance(data.get("name"), str):
            raise AriEventError("channel object without string id/name")
        caller = data.get("caller") or {}
        plan = data.get("dialplan") or {}
        return cls(
            id=data["id"],
            name=data["name"],
            state=str(data.get("state", "")),
            caller_number=str(caller.get("number", "")),
            caller_name=str(caller.get("name", "")),
            context=str(plan.get("context", "")),
            exten=str(plan.get("exten", "")),
            priority=int(plan.get("priority", 0) or 0),
            protocol_id=str(data.get("protocol_id", "")),
            channelvars={str(k): str(v) for k, v in (data.get("channelvars") or {}).items()},
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

    @property
    def channel_id(self) -> str | None:
        return self.channel.id if self.channel else None

    @property
    def bridge_id(self) -> str | None:
        bridge = self.data.get("bridge")
        return bridge.get("id") if isinstance(bridge, dict) else None

    @property
    def playback_id(self) -> str | None:
        playback = self.data.get("playback")
        return playback.get("id") if isinstance(playback, dict) else None

    @property
    def playback_channel_id(self) -> str | None:
        """The channel a playback targets (``target_uri`` ``channel:<id>``)."""
        playback = self.data.get("playback")
        target = playback.get("target_uri", "") if isinstance(playback, dict) else ""
        return target[len("channel:"):] if target.startswith("channel:") else None

    @property
    def args(self) -> list[str]:
        return [str(a) for a in self.data.get("args") or []]

    @property
    def digit(self) -> str:
        return str(self.data.get("digit", ""))

    @property
    def application(self) -> str:
        return str(self.data.get("application", ""))


def parse_event(message: str | bytes | dict[str, Any]) -> AriEvent:
    """Decode one events-WebSocket message; raise AriEventError if it is not an event."""
    if isinstance(message, dict):
        data = message
    else:
        try:
            data = json.loads(message)
        except ValueError as exc:
            raise AriEventError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise AriEventError("no string 'type' field")
    channel = Channel.from_json(data["channel"]) if "channel" in data and data["channel"] is not None else None
    return AriEvent(data["type"], data, channel)
