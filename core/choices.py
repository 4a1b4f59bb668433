"""Per-call choices from the dialplan: ``Stasis(app,<extension>,key=value,...)`` arguments and
``ARIBOT_*`` channel variables override a few settings for one call, so one aribot can serve
several extensions differently. Precedence: Stasis arguments > channel variables > settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable

log = logging.getLogger("aribot.choices")

KEYS = ("mode", "greeting", "instructions", "voice", "tools", "backend")
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
    turn_detection: str = ""     # a backend's own turn-detection mode; "" = its setting
    backend: str = ""
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
    backends: dict[str, Any] | None = None,
) -> CallChoices:
    """Merge settings, an operator's choices for new calls (``overrides``: instructions, voice,
    turn_detection, tools), channel variables and Stasis arguments; a bad value is logged and
    ignored. A call may choose a backend only among ``[ai] allowed``; the voice defaults to the
    chosen backend's."""
    extension, from_args = parse_stasis_args(args)
    base = overrides or {}
    choices = CallChoices(
        extension=extension or default_extension,
        mode=settings.activation.mode,
        greeting=settings.call.greeting,
        instructions=base.get("instructions", settings.ai.instructions),
        voice=base.get("voice", ""),
        tools=base.get("tools"),
        turn_detection=base.get("turn_detection", ""),
        backend=str(settings.ai.backend),
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
    allowed_backends = {str(name).lower() for name in settings.ai.allowed} | {choices.backend}
    for key, (value, source) in wanted.items():
        if key == "backend":
            value = value.lower()
            if value not in allowed_backends or (backends is not None and value not in backends):
                log.warning("call %s: %s backend=%r is not allowed ([ai] allowed: %s); using %r", call_id, source,
                            value, ", ".join(sorted(allowed_backends)), choices.backend)
                continue
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
    if not choices.voice and backends is not None and choices.backend in backends:
        choices.voice = backends[choices.backend].default_voice(settings)
    return choices
