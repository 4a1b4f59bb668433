"""Tool ``current_time``: a read-only example; the date and time in the configured time zone."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aribot import Setting, ToolContext, as_str, hookimpl


def zone(value: Any) -> str:
    name = as_str(value).strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(value) from exc
    return name


def current_time(ctx: ToolContext | None = None) -> dict:
    """Get the current date and time (use it for questions about today, the time or the weekday)."""
    assert ctx is not None
    name = ctx.config().get("timezone", "UTC") or "UTC"
    now = datetime.now(ZoneInfo(name))
    return {"timezone": name, "iso": now.isoformat(timespec="seconds"), "weekday": now.strftime("%A"),
            "date": now.strftime("%d %B %Y"), "time": now.strftime("%H:%M")}


@hookimpl
def register_tools(register):
    register(current_time)


@hookimpl
def register_settings(register):
    register(Setting("tools.current_time.timezone", "UTC", zone, "an IANA time zone such as Europe/Berlin",
                     "IANA time zone for the current date and time, e.g. Europe/Berlin"))
