"""Settings: core and every plugin declare their keys (``Setting``: default, rule, one-line
description); files and the environment override the defaults; dynaconf reads the environment.

A bad value raises ``SettingsError`` with one line per bad key; every value remembers where it
came from (``origin``), which ``aribot config`` shows.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import urlsplit

from dynaconf import Dynaconf

SETTINGS_ENV = "ARIBOT_SETTINGS"
SECRET_WORDS = ("password", "api_key", "secret", "token")

# Stated once; shown by `aribot config --help`, at the top of settings.toml and in the README (a test
# keeps them equal).
SOURCES_ORDER = """\
Where settings come from (a later source wins):
  1. defaults: core's and each loaded plugin's own (`aribot config --defaults` prints them)
  2. the settings file: --settings FILE, else $ARIBOT_SETTINGS, else ./settings.toml if there is one
  3. settings.local.toml, then .secrets.toml, in that file's folder (the working directory without one)
  4. the original quickstart's env names (OPENAI_API_KEY, ASTERISK_ARI_URL ...)
  5. ARIBOT_<SECTION>__<KEY> env vars, e.g. ARIBOT_ARI__URL; a .env file in that folder adds env vars
     that are not set already"""


class SettingsError(ValueError):
    """A setting has a wrong value; the message names key, value and what is allowed."""


@dataclass(frozen=True)
class Setting:
    """One setting: dotted ``key`` (``section.name``), its ``default`` as written in TOML, ``parse``
    (raises ValueError or TypeError on a bad value, returns the value to use), ``allowed`` (said
    in the error line), ``doc`` (the one-line comment in settings.toml) and ``legacy``: env names
    of the original quickstart that set it too."""

    key: str
    default: Any
    parse: Callable[[Any], Any]
    allowed: str
    doc: str
    legacy: tuple[str, ...] = ()

    @property
    def section(self) -> str:
        return self.key.rsplit(".", 1)[0]

    def apply(self, settings: Dynaconf) -> str | None:
        """Normalise the value in place; return an error line or None."""
        raw = settings.get(self.key)
        try:
            settings.set(self.key, self.parse(raw))
        except (ValueError, TypeError, KeyError, ArithmeticError):  # ArithmeticError: float(10**400)
            shown = "***" if is_secret(self.key) else repr(raw)
            return f"setting {self.key} = {shown} is not valid: expected {self.allowed}"
        return None


def is_secret(key: str) -> bool:
    """True for keys whose values must never be printed or logged."""
    leaf = key.rsplit(".", 1)[-1].lower()
    return any(word in leaf for word in SECRET_WORDS)


# --- parsers -------------------------------------------------------------------------------------

def as_str(value: Any) -> str:
    """Any scalar as a string (None → empty)."""
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        raise ValueError(value)
    return str(value)


def nonempty(value: Any) -> str:
    """A string with something in it, stripped."""
    text = as_str(value).strip()
    if not text:
        raise ValueError(value)
    return text


def as_bool(value: Any) -> bool:
    """true/false, also 1/0, yes/no, on/off."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def number(kind: type, low: float | None = None, high: float | None = None) -> Callable[[Any], Any]:
    """A parser for an int or float in [low, high]; NaN and infinity are refused."""
    def parse(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(value)
        try:
            as_float = float(value)
        except OverflowError:  # an integer too large for a float (TOML allows 64-bit, Python any)
            raise ValueError(value) from None
        if not math.isfinite(as_float):
            raise ValueError(value)
        result = kind(as_float) if kind is int and as_float.is_integer() else kind(value)
        if (low is not None and result < low) or (high is not None and result > high):
            raise ValueError(value)
        return result
    return parse


def choice(*options: str, lower: bool = True) -> Callable[[Any], str]:
    """A parser for one of ``options`` (case-insensitive unless ``lower`` is False)."""
    def parse(value: Any) -> str:
        text = as_str(value).strip()
        text = text.lower() if lower else text
        if text not in options:
            raise ValueError(value)
        return text
    return parse


def str_list(value: Any) -> list[str]:
    """A TOML list of strings, or one comma-separated string."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, (list, tuple)):
        return [as_str(item) for item in value]
    raise ValueError(value)


def http_url(value: Any) -> str:
    """An http(s) URL without a trailing slash (or /ari)."""
    text = as_str(value).strip().rstrip("/")
    if not text.startswith(("http://", "https://")):
        raise ValueError(value)
    if text.endswith("/ari"):
        text = text[: -len("/ari")]
    return text


def ws_url(value: Any) -> str:
    """A wss:// URL without a trailing slash; ws:// (no TLS) only to a loopback host, since the
    API key travels in the request headers."""
    text = as_str(value).strip().rstrip("/")
    if not text.startswith(("ws://", "wss://")):
        raise ValueError(value)
    host = urlsplit(text).hostname
    if not host or (text.startswith("ws://") and not is_loopback_host(host)):
        raise ValueError(value)
    return text


WS_URL_ALLOWED = "a wss:// URL (ws:// only to a loopback host: the API key would travel in clear)"
TOKEN_MIN_CHARS = 16


def secret_token(value: Any) -> str:
    """Empty (none), or at least ``TOKEN_MIN_CHARS`` characters once surrounding whitespace is
    stripped; a value of only whitespace is refused (it would look set and protect nothing)."""
    raw = as_str(value)
    text = raw.strip()
    if raw and not text or text and len(text) < TOKEN_MIN_CHARS:
        raise ValueError(value)
    return text


TOKEN_ALLOWED = f"empty, or at least {TOKEN_MIN_CHARS} characters (surrounding whitespace is stripped)"


def media_list(value: Any) -> list[str]:
    """Comma-separated Asterisk media URIs (``sound:…``, ``file:…``)."""
    items = str_list(value)
    for item in items:
        if ":" not in item:
            raise ValueError(value)
    return items


def max_tokens(value: Any) -> int | str:
    if str(value).strip().lower() == "inf":
        return "inf"
    return number(int, 1, 4096)(value)


def log_level(value: Any) -> str:
    return choice("DEBUG", "INFO", "WARNING", "ERROR", lower=False)(as_str(value).upper())


def mode_name(value: Any) -> str:
    """Activation mode names are case-insensitive; the quickstart's spellings are accepted
    (IMMEDIATE, FIXED_DELAY, VAD, fixedDelay)."""
    text = nonempty(value).lower()
    return {"fixeddelay": "fixed_delay"}.get(text, text)


def env_name(key: str) -> str:
    """The ARIBOT_ env var that sets ``key`` (``ari.url`` → ``ARIBOT_ARI__URL``)."""
    return "ARIBOT_" + key.upper().replace(".", "__")


# --- loading -------------------------------------------------------------------------------------

def settings_files(settings_file: str | Path | None, environ: Mapping[str, str]) -> tuple[Path, list[Path]]:
    """(the folder of the settings file, the files to read in order)."""
    chosen = settings_file or environ.get(SETTINGS_ENV) or None
    if chosen:
        main = Path(chosen).expanduser()
        if not main.is_file():
            how = "--settings" if settings_file else SETTINGS_ENV
            raise SettingsError(f"settings file {main} ({how}) does not exist")
    else:
        main = Path.cwd() / "settings.toml"
        if not main.is_file():
            return Path.cwd(), [p for p in (Path.cwd() / "settings.local.toml", Path.cwd() / ".secrets.toml")
                                if p.is_file()]
    folder = main.resolve().parent
    return folder, [main.resolve(), *(p for p in (folder / "settings.local.toml", folder / ".secrets.toml")
                                      if p.is_file())]


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"settings file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise SettingsError(f"settings file {path} cannot be read: {exc.strerror}") from None


def leaves(data: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """(dotted lower-case key, value) of every non-table value."""
    for name, value in data.items():
        key = f"{prefix}{str(name).lower()}"
        if isinstance(value, Mapping):
            yield from leaves(value, key + ".")
        else:
            yield key, value


def put(data: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted key in nested dicts, tables created as needed (a list replaces a list)."""
    *parents, leaf = key.split(".")
    for part in parents:
        node = data.get(part)
        if not isinstance(node, dict):
            node = data[part] = {}
        data = node
    data[leaf] = value


Owned = tuple[str, Setting]  # (owner: "core" or a plugin's name, the setting)


def load_settings(settings_file: str | Path | None = None, *, environ: Mapping[str, str] | None = None,
                  owned: Iterable[Owned] | None = None) -> Dynaconf:
    """Defaults of the ``owned`` settings (core's when None), then the files, the quickstart's env
    names and the ARIBOT_ env vars (``SOURCES_ORDER``); validated. Raises SettingsError listing
    every bad key."""
    from aribot.core.defaults import CORE_SETTINGS, core_checks

    env = os.environ if environ is None else environ
    owned = tuple(owned) if owned is not None else tuple(("core", s) for s in CORE_SETTINGS)
    declared = tuple(setting for _owner, setting in owned)
    folder, files = settings_files(settings_file, env)
    data: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for setting in declared:
        put(data, setting.key, setting.default)
        origin[setting.key] = "default"
    marked: dict[str, str] = {}  # file values with dynaconf's @ markers (dynaconf replaces them in ``data``)
    for path in files:
        for key, value in leaves(read_toml(path)):
            put(data, key, value)
            origin[key] = str(path)
            if _marked(value):
                marked[key] = str(path)
    dotenv = folder / ".env"
    before = set(os.environ)
    settings = Dynaconf(envvar_prefix="ARIBOT", environments=False, merge_enabled=False, load_dotenv=True,
                        dotenv_path=str(dotenv), settings_files=[], **{k.upper(): v for k, v in data.items()})
    try:
        settings.as_dict()  # dynaconf loads lazily: read the environment (and .env) now
    except Exception as exc:  # dynaconf's @int/@json/@format markers in a value
        raise SettingsError(marker_error(exc, marked)) from None
    for name in os.environ:
        if name.startswith("ARIBOT_") and "__" in name:
            where = f".env ({dotenv})" if name not in before else "env"
            origin[name[len("ARIBOT_"):].lower().replace("__", ".")] = f"{where} {name}"
    for setting in declared:
        if env_name(setting.key) in env:
            continue
        for name in setting.legacy:
            if name in env:
                settings.set(setting.key, env[name])
                origin[setting.key] = f"env {name} (the quickstart's name)"
                break
    object.__setattr__(settings, "_aribot_origin", origin)
    object.__setattr__(settings, "_aribot_owned", owned)
    object.__setattr__(settings, "_aribot_top_level", [k for k, v in data.items() if not isinstance(v, dict)])
    errors = [line for setting in declared if (line := setting.apply(settings))]
    if not errors:
        errors = core_checks(settings)
    if errors:
        raise SettingsError("; ".join(errors))
    return settings


def _marked(value: Any) -> bool:
    """A string (or a list holding one) that starts with one of dynaconf's ``@`` markers."""
    items = value if isinstance(value, list) else [value]
    return any(isinstance(item, str) and item.lstrip().startswith("@") for item in items)


def marker_error(exc: Exception, marked: Mapping[str, str]) -> str:
    """One line for a value dynaconf could not read, naming the settings (``marked``: key → the
    file that set it) and ARIBOT_ variables that use its ``@`` markers (``@int``, ``@json``,
    ``@format`` …); when one of them is a secret, dynaconf's message (which may quote the value)
    is left out."""
    env = {name[len("ARIBOT_"):].lower().replace("__", "."): name for name, value in os.environ.items()
           if name.startswith("ARIBOT_") and ("@" in value)}
    files = {key: f"{key} ({path})" for key, path in marked.items() if key not in env}
    suspects = sorted(env.values()) + sorted(files.values())
    why = "" if any(is_secret(key) for key in (*env, *files)) else ": " + " ".join(str(exc).split())
    return f"settings cannot be read{why} (values with dynaconf @ markers: {', '.join(suspects) or 'none'})"


def origin(settings: Any, key: str) -> str:
    """Where ``key``'s value came from: default, a file's path, env NAME, .env …"""
    return getattr(settings, "_aribot_origin", {}).get(key.lower(), "set at run time")


def owned_settings(settings: Any) -> tuple[Owned, ...]:
    """(owner, Setting) of every setting ``settings`` was loaded with."""
    return getattr(settings, "_aribot_owned", ())


def declared(settings: Any) -> tuple[Setting, ...]:
    return tuple(setting for _owner, setting in owned_settings(settings))


def unknown_keys(settings: Any, extra_known: Callable[[str], bool] = lambda key: False) -> list[str]:
    """One line per key given in a file or the environment that no loaded owner declares, within a
    section someone owns (a section of a plugin that is not loaded is not checked)."""
    known = {s.key for s in declared(settings)}
    sections = {s.section for s in declared(settings)}
    lines = [f"setting {name!r} is outside any [section]; ignored"
             for name in getattr(settings, "_aribot_top_level", [])]
    for key, where in getattr(settings, "_aribot_origin", {}).items():
        section = key.rsplit(".", 1)[0] if "." in key else ""
        if where == "default" or key in known or section not in sections or extra_known(key):
            continue
        hint = difflib.get_close_matches(key, known, n=1)
        lines.append(f"setting {key} (from {where}) is not a setting of core or of a loaded plugin; ignored"
                     + (f" (did you mean {hint[0]}?)" if hint else ""))
    return lines


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost."""
    text = str(host).strip().strip("[]").lower()
    if text == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def effective(settings: Any, *, mask: bool = True) -> dict[str, Any]:
    """Every declared setting as a nested dict, secrets masked (a set secret shows as ***)."""
    result: dict[str, Any] = {}
    for setting in declared(settings):
        value = settings.get(setting.key)
        put(result, setting.key, "***" if mask and is_secret(setting.key) and value else value)
    return result


# --- rendering -----------------------------------------------------------------------------------

def toml_value(value: Any) -> str:
    """A scalar or list as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def render(owned: Iterable[Owned], value: Callable[[Setting], tuple[Any, str]], header: str) -> str:
    """A TOML document of ``(owner, Setting)``, grouped by section in first-seen order, each key
    with a one-line comment; ``value(setting)`` gives (value, comment)."""
    sections: dict[str, list[tuple[str, Setting]]] = {}
    for owner, setting in owned:
        sections.setdefault(setting.section, []).append((owner, setting))
    out = [header.rstrip(), ""]
    for section, items in sections.items():
        owners = {owner for owner, _ in items}
        note = f"  # plugin {next(iter(owners))}" if owners != {"core"} and len(owners) == 1 else ""
        out.append(f"[{section}]{note}")
        for _owner, setting in items:
            shown, comment = value(setting)
            out.append(f"{setting.key.rsplit('.', 1)[1] + ' = ' + toml_value(shown):<38} # {comment}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def render_defaults(owned: Iterable[Owned]) -> str:
    """The documented defaults file (the repository's settings.toml is exactly this)."""
    header = "\n".join(f"# {line}".rstrip() for line in (
        "aribot settings: every key with its default and a one-line description. Copy this file and edit it;",
        "keep secrets in .secrets.toml or the environment, never here. Generated by `aribot config --defaults`.",
        "", *SOURCES_ORDER.splitlines()))
    return render(owned, lambda s: (s.default, s.doc), header)


def render_effective(settings: Any) -> str:
    """The effective settings as TOML, each with where it came from; secrets masked."""
    def value(setting: Setting) -> tuple[Any, str]:
        current = settings.get(setting.key)
        if is_secret(setting.key) and current:
            current = "***"
        return current, origin(settings, setting.key)
    return render(owned_settings(settings), value,
                  "# aribot: effective settings (secrets masked), each with where it came from")


# --- files aribot keeps --------------------------------------------------------------------------

def default_data_dir(environ: Mapping[str, str], euid: int, home: Path) -> Path:
    """Where aribot keeps its files unless ``[storage] data_dir`` says: systemd's
    $STATE_DIRECTORY (StateDirectory=), /var/lib/aribot for root (FHS: state that persists), else
    $XDG_STATE_HOME/aribot (~/.local/state/aribot): the history is state kept across restarts,
    not configuration and not a cache."""
    if environ.get("STATE_DIRECTORY"):
        return Path(environ["STATE_DIRECTORY"].split(":")[0])
    if euid == 0:
        return Path("/var/lib/aribot")
    return Path(environ.get("XDG_STATE_HOME") or home / ".local" / "state") / "aribot"


def data_dir(settings: Any) -> Path:
    """The folder for aribot's own files (the call history), created private (0700) if missing."""
    configured = str(settings.get("storage.data_dir") or "").strip()
    path = Path(configured).expanduser() if configured else default_data_dir(os.environ, os.geteuid(), Path.home())
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingsError(f"setting storage.data_dir: cannot create {path}: {exc.strerror}") from None
    return path
