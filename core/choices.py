"""Per-call choices from the dialplan: ``Stasis(app,<extension>,key=value,...)`` arguments and
``ARIBOT_*`` channel variables override a few settings for one call, so one aribot can serve
several extensions differently. Precedence: Stasis arguments > channel variables > settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable

log = logging.getLogger("aribot.choices")

KEYS = ("mode", "greeting", "instructions", "voice", "tools")
CHANNEL_VARIABLES = tuple(f"ARIBOT_{key.upper()}" for key in KEYS)


@dataclass
class CallChoices:
    """What this call uses; ``tools`` None means every registered tool."""

    extension: str
    mode: str
    greeting: str
    instructions: str
    voice: str
    tools: list[str] | None = None
    turn_detection: str = "server_vad"
    sources: dict[str, str] = field(default_factory=dict)  # key → "stasis" or "channel variable"


def parse_stasis_args(args: Iterable[str]) -> tuple[str, dict[str, str]]:
    """(first positional argument = extension, key=value overrides)."""
    extension = ""
    overrides: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key.strip():
            overrides[key.strip().lower()] = value.strip()
        elif not extension:
            extension = arg.strip()
    return extension, overrides


def resolve(
    settings: Any,
    args: list[str],
    channel_vars: dict[str, str],
    *,
    default_extension: str,
    modes: Iterable[str],
    tools: Iterable[str],
    call_id: str,
    overrides: dict[str, Any] | None = None,
) -> CallChoices:
    """Merge settings, an operator's choices for new calls (``overrides``: instructions, voice,
    turn_detection, tools), channel variables and Stasis arguments; a bad value is logged and
    ignored."""
    extension, from_args = parse_stasis_args(args)
    base = overrides or {}
    choices = CallChoices(
        extension=extension or default_extension,
        mode=settings.activation.mode,
        greeting=settings.call.greeting,
        instructions=base.get("instructions", settings.openai.instructions),
        voice=base.get("voice", settings.openai.voice),
        tools=base.get("tools"),
        turn_detection=base.get("turn_detection", settings.openai.turn_detection),
    )
    wanted: dict[str, tuple[str, str]] = {}
    for name, value in channel_vars.items():
        key = name[len("ARIBOT_"):].lower() if name.startswith("ARIBOT_") else ""
        if key in KEYS and value != "":
            wanted[key] = (value, "channel variable")
    for key, value in from_args.items():
        if key not in KEYS:
            log.warning("call %s: Stasis argument %s=%r is not one of %s; ignored", call_id, key, value,
                        ", ".join(KEYS))
            continue
        wanted[key] = (value, "stasis")
    known_modes, known_tools = set(modes), set(tools)
    for key, (value, source) in wanted.items():
        if key == "mode":
            value = value.lower()
            if value not in known_modes:
                log.warning("call %s: %s mode=%r is not a registered activation mode (%s); using %r",
                            call_id, source, value, ", ".join(sorted(known_modes)), choices.mode)
                continue
        if key == "tools":
            names = [] if value.lower() == "none" else [n.strip() for n in value.split(",") if n.strip()]
            unknown = sorted(set(names) - known_tools)
            if unknown:
                log.warning("call %s: %s tools names unknown tools %s; they are left out", call_id, source, unknown)
            choices.tools = [n for n in names if n in known_tools]
            choices.sources[key] = source
            continue
        setattr(choices, key, value)
        choices.sources[key] = source
    return choices
