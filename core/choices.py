"""Per-call choices from the dialplan: ``Stasis(app,<extension>,key=value,...)`` arguments and
``ARIBOT_*`` channel variables override a few settings for one call, so one aribot can serve
several extensions differently. Precedence: Stasis arguments > channel variables > settings.

The dialplan is not always the operator's own words: a dialplan that passes ``${EXTEN}`` unfiltered
hands the caller's SIP user part to ``Stasis()``, and Asterisk splits it at its commas, so dialling
``1,instructions=...`` adds an argument. Therefore only the keys in ``[call] per_call_keys`` are
taken, the first argument is always the extension (never a choice), every value is checked
(length, characters, allowed values), and a ``key=value`` argument that is part of the dialled
extension is refused. Each refused key is one log line and the call goes on with the default.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from aribot.core.prompts import local_path
from aribot.core.settings import str_list

log = logging.getLogger("aribot.choices")

KEYS = ("mode", "greeting", "instructions", "voice", "tools", "backend")
CHANNEL_VARIABLES = tuple(f"ARIBOT_{key.upper()}" for key in KEYS)

MAX_INSTRUCTIONS = 8000        # characters of per-call instructions
MAX_VALUE = 256                # characters of any other value
SHOWN = 60                     # characters of a refused value a log line shows
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")           # a voice, backend, mode or tool name
SOUND = re.compile(r"sound:[A-Za-z0-9_][A-Za-z0-9_/\-]{0,127}")   # an Asterisk sound, no "." (no "..")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")          # control characters but \t \n \r


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


class Refused(ValueError):
    """A per-call value that is not taken; the message says why."""


class PartlyTaken(ValueError):
    """A per-call value taken in part (``kept``); the message says what was left out."""

    def __init__(self, kept: Any, why: str) -> None:
        super().__init__(why)
        self.kept = kept


def parse_stasis_args(args: Iterable[Any]) -> tuple[str, list[tuple[str, str]]]:
    """(the first argument = the extension, always positional; the later ``key=value`` arguments
    in order, keys lower-cased). Later arguments without ``=`` are ignored."""
    extension, pairs = "", []
    for index, arg in enumerate(args):
        text = str(arg)
        if index == 0:
            extension = text.strip()
            continue
        key, sep, value = text.partition("=")
        if sep and key.strip():
            pairs.append((key.strip().lower(), value.strip()))
    return extension, pairs


def is_inside(path: str, folders: Iterable[str]) -> bool:
    """True when ``path`` (absolute) is, as written, inside one of ``folders`` (``..`` cannot leave them;
    symbolic links are resolved when the file is read, core/prompts.py)."""
    if not path.startswith("/") or "\0" in path:
        return False
    normal = os.path.normpath(path)
    for folder in folders:
        root = os.path.normpath(os.path.abspath(str(folder)))
        if root != "/" and os.path.commonpath([normal, root]) == root and normal != root:
            return True
    return False


def key_list(value: Any) -> list[str]:
    """The ``[call] per_call_keys`` rule: a list of names among KEYS (lower-cased)."""
    keys = [key.strip().lower() for key in str_list(value)]
    if any(key not in KEYS for key in keys):
        raise ValueError(value)
    return keys


def _short(value: str) -> str:
    return repr(value if len(value) <= SHOWN else value[:SHOWN] + "…")


class _Rules:
    """What each key may be for this call."""

    def __init__(self, settings: Any, modes: Iterable[str], tools: Iterable[str], backend: str,
                 backends: dict[str, Any] | None) -> None:
        self.modes, self.tools = set(modes), set(tools)
        self.backends = {str(name).lower() for name in settings.ai.allowed} | {backend}
        self.registered = backends
        self.greeting_dirs = [str(d) for d in getattr(settings.call, "greeting_dirs", None) or []]

    def check(self, key: str, value: str) -> Any:
        """The value to use for ``key``, or Refused."""
        limit = MAX_INSTRUCTIONS if key == "instructions" else MAX_VALUE
        if value == "":
            raise Refused("is empty")
        if len(value) > limit:
            raise Refused(f"is longer than {limit} characters")
        if CONTROL.search(value) or (key != "instructions" and ("\n" in value or "\r" in value)):
            raise Refused("contains control characters")
        return getattr(self, f"_{key}")(value)

    def _instructions(self, value: str) -> str:
        return value

    def _voice(self, value: str) -> str:
        if not NAME.fullmatch(value):
            raise Refused("is not a voice name (letters, digits, _ . -; at most 64)")
        return value

    def _backend(self, value: str) -> str:
        value = value.lower()
        if value not in self.backends or (self.registered is not None and value not in self.registered):
            raise Refused(f"is not allowed ([ai] allowed: {', '.join(sorted(self.backends))})")
        return value

    def _mode(self, value: str) -> str:
        value = value.lower()
        if value not in self.modes:
            raise Refused(f"is not a registered activation mode ({', '.join(sorted(self.modes))})")
        return value

    def _tools(self, value: str) -> list[str]:
        if value.lower() == "none":
            return []
        names = [n.strip() for n in value.split(",") if n.strip()]
        unknown = [n for n in names if n not in self.tools]
        if unknown:   # fewer tools, never more: the known ones stay chosen
            raise PartlyTaken([n for n in names if n in self.tools], "names tools that are not registered "
                              f"({', '.join(_short(n) for n in unknown[:5])}); they are left out")
        return names

    def _greeting(self, value: str) -> str:
        if SOUND.fullmatch(value):
            return value
        path = local_path(value)
        if path is not None:   # checked as written here; links are resolved when it is read (core/prompts.py)
            if not self.greeting_dirs:
                raise Refused("is a file and [call] greeting_dirs lists no folder")
            if not is_inside(path, self.greeting_dirs):
                raise Refused(f"is not a file inside [call] greeting_dirs ({', '.join(self.greeting_dirs)})")
            return value
        raise Refused("is neither sound:<name> nor file:<path in [call] greeting_dirs>")


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
    dialled: str = "",
) -> CallChoices:
    """Merge settings, an operator's choices for new calls (``overrides``: instructions, voice,
    turn_detection, tools), channel variables and Stasis arguments. Only ``[call] per_call_keys``
    are taken; a refused key or value is one log line and the default stays. A call may choose a
    backend only among ``[ai] allowed``; the voice defaults to the chosen backend's. ``dialled``: the
    channel's dialplan extension (a ``key=value`` argument found in it came from the caller)."""
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
    permitted = [str(k).lower() for k in getattr(settings.call, "per_call_keys", None) or []]
    rules = _Rules(settings, modes, tools, choices.backend, backends)

    def refuse(source: str, key: str, value: str, why: str, goes_on: str = "the call goes on with the default") -> None:
        name = f"Stasis argument {key}" if source == "stasis" else f"channel variable ARIBOT_{key.upper()}"
        log.warning("call %s: %s=%s %s; %s", call_id, name, _short(value), why, goes_on)

    if "=" in extension:
        log.warning("call %s: the first Stasis argument %s is the extension, never a choice; the call goes on "
                    "with the default", call_id, _short(extension))
    candidates = [(name[len("ARIBOT_"):].lower(), str(value), "channel variable")
                  for name, value in channel_vars.items()
                  if name.startswith("ARIBOT_") and name[len("ARIBOT_"):].lower() in KEYS and value != ""]
    candidates += [(key, value, "stasis") for key, value in from_args]
    squeezed = "," + re.sub(r"[\s\"'\\]", "", dialled.lower())   # as Asterisk splits it into arguments
    for key, value, source in candidates:
        if key not in KEYS:
            refuse(source, key, value, f"is not one of {', '.join(KEYS)}")
            continue
        if key not in permitted:
            refuse(source, key, value, f"is not in [call] per_call_keys ({', '.join(permitted) or 'none'})")
            continue
        if source == "stasis" and f",{key}=" in squeezed:
            refuse(source, key, value, f"may come from the caller: the dialled extension {_short(dialled)} holds "
                   f"'{key}=' (filter it in the dialplan: ${{FILTER(0-9*#+,${{EXTEN}})}})")
            continue
        try:
            setattr(choices, key, rules.check(key, value))
        except PartlyTaken as partly:
            setattr(choices, key, partly.kept)
            refuse(source, key, value, str(partly), "the call goes on with the rest")
        except Refused as why:
            refuse(source, key, value, str(why))
            continue
        choices.sources[key] = source
    if not choices.voice and backends is not None and choices.backend in backends:
        choices.voice = backends[choices.backend].default_voice(settings)
    return choices
