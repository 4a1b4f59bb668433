"""Settings: dynaconf loads and merges, declared rules validate with one clear line per bad key.

Order (last wins): settings.toml (defaults, next to the code) → settings.local.toml → the file
given with ``--settings`` → .secrets.toml → the original quickstart's env names (OPENAI_API_KEY …)
→ ``ARIBOT_<SECTION>__<KEY>`` env vars.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from dynaconf import Dynaconf

DEFAULTS_FILE = Path(__file__).resolve().parent.parent / "settings.toml"
SECRET_WORDS = ("password", "api_key", "secret", "token")


class SettingsError(ValueError):
    """A setting has a wrong value; the message names key, value and what is allowed."""


@dataclass(frozen=True)
class Rule:
    """How one setting is parsed and checked. ``parse`` raises ValueError on a bad value."""

    key: str
    parse: Callable[[Any], Any]
    allowed: str

    def apply(self, settings: Dynaconf) -> str | None:
        """Normalise the value in place; return an error line or None."""
        raw = settings.get(self.key)
        try:
            settings.set(self.key, self.parse(raw))
        except (ValueError, TypeError):
            shown = "***" if is_secret(self.key) else repr(raw)
            return f"setting {self.key} = {shown} is not valid: expected {self.allowed}"
        return None


def is_secret(key: str) -> bool:
    """True for keys whose values must never be printed or logged."""
    leaf = key.rsplit(".", 1)[-1].lower()
    return any(word in leaf for word in SECRET_WORDS)


# --- parsers -------------------------------------------------------------------------------------

def as_str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        raise ValueError(value)
    return str(value)


def as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def number(kind: type, low: float | None = None, high: float | None = None) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(value)
        result = kind(float(value)) if kind is int and float(value).is_integer() else kind(value)
        if (low is not None and result < low) or (high is not None and result > high):
            raise ValueError(value)
        return result
    return parse


def choice(*options: str, lower: bool = True) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = as_str(value).strip()
        text = text.lower() if lower else text
        if text not in options:
            raise ValueError(value)
        return text
    return parse


def str_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, (list, tuple)):
        return [as_str(item) for item in value]
    raise ValueError(value)


def http_url(value: Any) -> str:
    text = as_str(value).strip().rstrip("/")
    if not text.startswith(("http://", "https://")):
        raise ValueError(value)
    if text.endswith("/ari"):
        text = text[: -len("/ari")]
    return text


def ws_url(value: Any) -> str:
    text = as_str(value).strip().rstrip("/")
    if not text.startswith(("ws://", "wss://")):
        raise ValueError(value)
    return text


def media_list(value: Any) -> list[str]:
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


CORE_RULES: tuple[Rule, ...] = (
    Rule("http.token", as_str, "a string"),
    Rule("ari.url", http_url, "an http:// or https:// URL of Asterisk's HTTP server"),
    Rule("ari.username", as_str, "a string"),
    Rule("ari.password", as_str, "a string"),
    Rule("ari.app", lambda v: _nonempty(as_str(v)), "a non-empty Stasis app name"),
    Rule("ari.request_timeout", number(float, 0.1, 120), "seconds between 0.1 and 120"),
    Rule("ari.reconnect_min_delay", number(float, 0.05, 60), "seconds between 0.05 and 60"),
    Rule("ari.reconnect_max_delay", number(float, 0.1, 600), "seconds between 0.1 and 600"),
    Rule("ari.leg_start_timeout", number(float, 0.1, 60), "seconds between 0.1 and 60"),
    Rule("rtp.host", lambda v: _nonempty(as_str(v)), "an IP address to bind to"),
    Rule("rtp.advertise_host", as_str, "an address Asterisk can reach, or empty"),
    Rule("rtp.port_min", number(int, 1024, 65535), "an integer port 1024..65535"),
    Rule("rtp.port_max", number(int, 1024, 65535), "an integer port 1024..65535"),
    Rule("rtp.format", choice("ulaw", "alaw"), "ulaw or alaw"),
    Rule("rtp.idle_silence", as_bool, "true or false"),
    Rule("ai.backend", choice("openai", "azure", "local"), "openai, azure or local"),
    Rule("openai.provider", choice("openai", "azure"), "openai or azure"),
    Rule("openai.api_key", as_str, "a string"),
    Rule("openai.url", ws_url, "a ws:// or wss:// URL"),
    Rule("openai.model", lambda v: _nonempty(as_str(v)), "a model or deployment name"),
    Rule("openai.instructions", as_str, "a string"),
    Rule("openai.voice", lambda v: _nonempty(as_str(v)), "a voice name"),
    Rule("openai.speed", number(float, 0.25, 1.5), "a number 0.25..1.5"),
    Rule("openai.turn_detection", choice("server_vad", "semantic_vad", "none"), "server_vad, semantic_vad or none"),
    Rule("openai.vad_threshold", number(float, 0.0, 1.0), "a number 0..1"),
    Rule("openai.vad_prefix_padding_ms", number(int, 0, 5000), "milliseconds 0..5000"),
    Rule("openai.vad_silence_duration_ms", number(int, 0, 10000), "milliseconds 0..10000"),
    Rule("openai.vad_eagerness", choice("low", "medium", "high", "auto"), "low, medium, high or auto"),
    Rule("openai.interrupt_response", as_bool, "true or false"),
    Rule("openai.transcription_model", as_str, "a transcription model name or empty"),
    Rule("openai.transcription_language", as_str, "an ISO-639-1 code or empty"),
    Rule("openai.noise_reduction", choice("near_field", "far_field", ""), "near_field, far_field or empty"),
    Rule("openai.max_output_tokens", max_tokens, "an integer 1..4096 or \"inf\""),
    Rule("openai.connect_timeout", number(float, 0, 300), "seconds 0..300 (0 = no limit)"),
    Rule("openai.reconnect_attempts", number(int, 0, 20), "an integer 0..20 (0 = end the call at once)"),
    Rule("openai.max_session_s", number(float, 0, 86400), "seconds 0..86400 (0 = no limit of aribot's own)"),
    Rule("openai.reconnect_filler", media_list, "comma-separated media URIs such as sound:one-moment-please, or empty"),
    Rule("openai.append_frames", number(int, 1, 50), "an integer 1..50"),
    Rule("openai.input_buffer_ms", number(int, 0, 120000), "milliseconds 0..120000"),
    Rule("tools.timeout", number(float, 0.1, 600), "seconds 0.1..600"),
    Rule("tools.disabled", str_list, "a list of tool names"),
    Rule("tools.filler_after", number(float, 0, 600), "seconds 0..600 (0 = never)"),
    Rule("tools.filler", as_str, "instructions for the AI"),
    Rule("tools.manual", str_list, "a list of tool names"),
    Rule("tools.manual_timeout", number(float, 1, 3600), "seconds 1..3600"),
    Rule("call.greeting", as_str, "a media URI such as sound:hello-world, or empty"),
    Rule("call.drain_timeout", number(float, 0, 86400), "seconds 0..86400"),
    Rule("call.shutdown_goodbye", as_str, "instructions for the AI, or empty for none"),
    Rule("call.max_concurrent", number(int, 0, 100000), "an integer 0..100000 (0 = no limit)"),
    Rule("call.overload_prompt", media_list, "comma-separated media URIs such as sound:all-circuits-busy-now"),
    Rule("call.on_overload", choice("hangup", "continue"), "hangup or continue"),
    Rule("call.fallback_prompt", media_list, "comma-separated media URIs such as sound:im-sorry"),
    Rule("call.on_failure", choice("hangup", "continue"), "hangup or continue"),
    Rule("call.on_shutdown", choice("hangup", "continue"), "hangup or continue"),
    Rule("call.on_end", choice("hangup", "continue"), "hangup or continue"),
    Rule("call.continue_context", as_str, "a dialplan context or empty"),
    Rule("call.continue_extension", as_str, "a dialplan extension or empty"),
    Rule("call.continue_priority", number(int, 0, 100000), "a priority number (0 = default)"),
    Rule("call.cleanup_timeout", number(float, 0.1, 60), "seconds 0.1..60"),
    Rule("activation.mode", lambda v: mode_name(v), "an activation mode name"),
    Rule("activation.pre_roll_ms", number(int, 0, 5000), "milliseconds 0..5000"),
    Rule("activation.vad_silence_ms", number(int, 1, 60000), "milliseconds 1..60000"),
    Rule("activation.vad_talk_threshold", number(int, 1, 32767), "an energy threshold 1..32767"),
    Rule("http.host", lambda v: _nonempty(as_str(v)), "an address to bind to"),
    Rule("http.port", number(int, 0, 65535), "a port 0..65535 (0 = any free port)"),
    Rule("ui.enabled", as_bool, "true or false"),
    Rule("plugins.disabled", str_list, "a list of plugin names"),
    Rule("plugins.paths", str_list, "a list of folders with plugin modules"),
    Rule("log.level", log_level, "DEBUG, INFO, WARNING or ERROR"),
)


def mode_name(value: Any) -> str:
    """Activation mode names are case-insensitive; the quickstart's spellings are accepted
    (IMMEDIATE, FIXED_DELAY, VAD, fixedDelay)."""
    text = _nonempty(as_str(value)).lower()
    return {"fixeddelay": "fixed_delay"}.get(text, text)


def _nonempty(text: str) -> str:
    if not text.strip():
        raise ValueError(text)
    return text.strip()


# The original quickstart's names (reference/seed-quickstart.md §2), first match wins per key.
LEGACY_ENV: dict[str, tuple[str, ...]] = {
    "openai.api_key": ("OPENAI_API_KEY",),
    "openai.model": ("OPENAI_REALTIME_MODEL", "OPENAI_MODEL"),
    "openai.instructions": ("OPENAI_INSTRUCTIONS",),
    "openai.connect_timeout": ("INITIAL_OPENAI_STREAM_IDLE_TIMEOUT_SECONDS",),
    "ari.url": ("ASTERISK_ARI_URL",),
    "ari.username": ("ASTERISK_ARI_USERNAME",),
    "ari.password": ("ASTERISK_ARI_PASSWORD",),
    "ari.app": ("ASTERISK_ARI_APP_NAME",),
    "rtp.host": ("RTP_HOST_IP", "RTP_SERVER_HOST_IP"),
    "rtp.port_min": ("RTP_MIN_PORT",),
    "rtp.port_max": ("RTP_MAX_PORT",),
    "activation.mode": ("RECOGNITION_ACTIVATION_MODE",),
    "activation.fixed_delay": ("BARGE_IN_DELAY_SECONDS",),
    "activation.vad_submode": ("VAD_RECOG_ACTIVATION_MODE", "APP_APPRECOGNITION_VADRECOGACTIVATION"),
    "activation.vad_silence_ms": ("VAD_SILENCE_THRESHOLD_MS", "APP_APPRECOGNITION_VADSILENCETHRESHOLDMS"),
    "activation.vad_talk_threshold": ("VAD_TALK_THRESHOLD", "APP_APPRECOGNITION_VADTALKTHRESHOLD"),
    "activation.vad_initial_silence_delay": ("VAD_INITIAL_SILENCE_DELAY_SECONDS",
                                             "APP_APPRECOGNITION_VADINITIALSILENCEDELAYSECONDS"),
    "activation.vad_activation_delay": ("VAD_ACTIVATION_DELAY_SECONDS",),
    "activation.vad_max_wait_after_prompt": ("VAD_MAX_WAIT_AFTER_PROMPT_SECONDS",
                                             "APP_APPRECOGNITION_VADMAXWAITAFTERPROMPTSECONDS"),
    "timers.no_speech_timeout": ("NO_SPEECH_BEGIN_TIMEOUT_SECONDS",),
    "timers.speech_complete_timeout": ("SPEECH_COMPLETE_TIMEOUT_SECONDS", "SPEECH_END_SILENCE_TIMEOUT_SECONDS"),
    "timers.max_call_duration": ("MAX_CALL_DURATION_SECONDS", "MAX_RECOGNITION_DURATION_SECONDS"),
    "dtmf.enabled": ("DTMF_ENABLED",),
    "dtmf.interdigit_timeout": ("DTMF_INTERDIGIT_TIMEOUT_SECONDS",),
    "dtmf.final_timeout": ("DTMF_FINAL_TIMEOUT_SECONDS",),
    "dtmf.max_digits": ("DTMF_MAX_DIGITS",),
    "dtmf.terminator": ("DTMF_TERMINATOR_DIGIT",),
    "call.greeting": ("INITIAL_GREETING_AUDIO_PATH", "GREETING_AUDIO_PATH"),
    "http.port": ("PORT",),
    "log.level": ("LOG_LEVEL",),
}


def env_name(key: str) -> str:
    """The ARIBOT_ env var that sets ``key`` (``ari.url`` → ``ARIBOT_ARI__URL``)."""
    return "ARIBOT_" + key.upper().replace(".", "__")


def load_settings(
    settings_file: str | Path | None = None,
    *,
    environ: dict[str, str] | None = None,
    rules: Iterable[Rule] = (),
) -> Dynaconf:
    """Load, merge and validate settings; raise SettingsError listing every bad key."""
    files = [str(DEFAULTS_FILE)]
    if settings_file:
        path = Path(settings_file)
        if not path.is_file():
            raise SettingsError(f"settings file {path} does not exist")
        files.append(str(path.resolve()))
    files.append(str(Path.cwd() / ".secrets.toml"))
    settings = Dynaconf(
        envvar_prefix="ARIBOT",
        settings_files=files,
        environments=False,
        load_dotenv=True,
        dotenv_path=str(Path.cwd() / ".env"),
        merge_enabled=True,
    )
    env = os.environ if environ is None else environ
    apply_legacy_env(settings, env)
    validate(settings, rules)
    reconcile_backend(settings)
    return settings


def reconcile_backend(settings: Dynaconf) -> None:
    """``ai.backend = "azure"`` and the older ``openai.provider = "azure"`` mean the same: make
    both say so, whichever was set."""
    if settings.ai.backend == "azure":
        settings.set("openai.provider", "azure")
    elif settings.ai.backend == "openai" and settings.openai.provider == "azure":
        settings.set("ai.backend", "azure")


def apply_legacy_env(settings: Dynaconf, env: dict[str, str] | os._Environ) -> None:
    """Let the quickstart's env names set a key unless its ARIBOT_ variable is set."""
    for key, names in LEGACY_ENV.items():
        if env_name(key) in env:
            continue
        for name in names:
            if name in env:
                settings.set(key, env[name])
                break


def validate(settings: Dynaconf, extra_rules: Iterable[Rule] = (), *, core: bool = True) -> None:
    """Apply the rules (core ones too unless ``core`` is False); raise SettingsError listing
    every bad key."""
    errors = [line for rule in (*(CORE_RULES if core else ()), *extra_rules) if (line := rule.apply(settings))]
    if not errors and settings.rtp.port_min > settings.rtp.port_max:
        errors.append(
            f"setting rtp.port_min = {settings.rtp.port_min} is above rtp.port_max = "
            f"{settings.rtp.port_max}: expected port_min <= port_max"
        )
    if not errors and core and not is_loopback_host(settings.http.host) and not settings.http.token:
        errors.append(
            f"setting http.host = {settings.http.host!r} is not loopback: the HTTP API (calls, tools, /logs) "
            "then needs a token; set http.token (ARIBOT_HTTP__TOKEN) or bind it to 127.0.0.1"
        )
    if errors:
        raise SettingsError("; ".join(errors))


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost."""
    text = str(host).strip().strip("[]").lower()
    if text == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def effective(settings: Dynaconf, *, mask: bool = True) -> dict[str, Any]:
    """Every setting as a nested dict, secrets masked (a set secret shows as ***)."""
    def walk(node: Any, prefix: str) -> Any:
        if isinstance(node, dict):
            return {k.lower(): walk(v, f"{prefix}{k.lower()}.") for k, v in node.items()}
        key = prefix.rstrip(".")
        if mask and is_secret(key) and node:
            return "***"
        return node
    data = settings.as_dict()
    return walk({k: v for k, v in data.items() if isinstance(v, dict)}, "")
