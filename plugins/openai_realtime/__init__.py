"""The OpenAI Realtime API as speech backends (GA protocol, reference/openai-realtime.md):
``openai_realtime`` (and its older name ``openai``), and ``azure``, the same protocol on Azure
OpenAI (an api-key header, the deployment name as model). Settings: ``[openai]``."""

from __future__ import annotations

from typing import Any

from aribot import Setting, as_bool, as_str, choice, hookimpl, number, ws_url
from aribot.core.backend import BackendType, SessionSetup
from aribot.core.settings import WS_URL_ALLOWED, max_tokens, nonempty
from aribot.plugins.openai_realtime.client import RealtimeConfig
from aribot.plugins.openai_realtime.doctor import check_realtime
from aribot.plugins.openai_realtime.session import CAPABILITIES, RealtimeBackend

SETTINGS = (
    Setting("openai.provider", "openai", choice("openai", "azure"), "openai or azure",
            "openai, or azure (Azure OpenAI: key in an api-key header, model = the deployment name); "
            "ai.backend = \"azure\" means the same"),
    Setting("openai.api_key", "", as_str, "a string",
            "secret: Realtime API key (OPENAI_API_KEY)", legacy=("OPENAI_API_KEY",)),
    Setting("openai.url", "wss://api.openai.com/v1/realtime", ws_url, WS_URL_ALLOWED,
            "Realtime WebSocket URL; ?model=<model> is appended"),
    Setting("openai.model", "gpt-realtime", nonempty, "a model or deployment name",
            "model (OpenAI) or deployment name (Azure)", legacy=("OPENAI_REALTIME_MODEL", "OPENAI_MODEL")),
    Setting("openai.voice", "marin", nonempty, "a voice name",
            "alloy, ash, ballad, coral, echo, sage, shimmer, verse, marin, cedar"),
    Setting("openai.speed", 1.0, number(float, 0.25, 1.5), "a number 0.25..1.5",
            "speech speed 0.25 .. 1.5"),
    Setting("openai.turn_detection", "server_vad",
            choice("server_vad", "semantic_vad", "none"), "server_vad, semantic_vad or none",
            "server_vad, semantic_vad or none"),
    Setting("openai.vad_threshold", 0.5, number(float, 0.0, 1.0), "a number 0..1",
            "server_vad: 0..1, higher needs louder speech"),
    Setting("openai.vad_prefix_padding_ms", 300, number(int, 0, 5000), "milliseconds 0..5000",
            "server_vad: audio kept before the detected start"),
    Setting("openai.vad_silence_duration_ms", 500, number(int, 0, 10000), "milliseconds 0..10000",
            "server_vad: silence that ends a caller turn"),
    Setting("openai.vad_eagerness", "auto", choice("low", "medium", "high", "auto"), "low, medium, high or auto",
            "semantic_vad: low, medium, high or auto"),
    Setting("openai.interrupt_response", True, as_bool, "true or false",
            "caller speech interrupts the AI (barge-in)"),
    Setting("openai.transcription_model", "gpt-4o-mini-transcribe", as_str, "a transcription model name or empty",
            "caller transcription model; empty disables it"),
    Setting("openai.transcription_language", "", as_str, "an ISO-639-1 code or empty",
            "ISO-639-1 hint for transcription, empty = auto"),
    Setting("openai.noise_reduction", "near_field",
            choice("near_field", "far_field", ""), "near_field, far_field or empty",
            "near_field (handset), far_field (speakerphone) or empty for none"),
    Setting("openai.max_output_tokens", "inf", max_tokens, "an integer 1..4096 or \"inf\"",
            "1..4096 or \"inf\""),
    Setting("openai.append_frames", 1, number(int, 1, 50), "an integer 1..50",
            "20 ms frames per input_audio_buffer.append: 1 = lowest latency; n > 1 delays caller audio (n-1)*20 "
            "ms and saves CPU (5: about a quarter at 300 calls, docs/capacity.md)"),
)


def realtime_config(settings: Any, provider: str | None = None) -> RealtimeConfig:
    """``[openai]`` as the Realtime client's config (``provider`` forces openai or azure)."""
    cfg = RealtimeConfig.from_settings(settings.openai)
    if provider is not None and provider != cfg.provider:
        cfg = RealtimeConfig.from_settings(settings.openai, provider=provider)
    return cfg


def backend_type(name: str, provider: str | None) -> BackendType:
    def create(host: Any, setup: SessionSetup) -> RealtimeBackend:
        return RealtimeBackend(host, setup, realtime_config(host.settings, provider))

    def warnings(settings: Any) -> list[str]:
        if settings.openai.api_key:
            return []
        return ["openai.api_key is empty (ARIBOT_OPENAI__API_KEY / OPENAI_API_KEY): the Realtime API will refuse "
                "calls and callers will hear the fallback prompt"]

    where = "Azure OpenAI" if provider == "azure" else "OpenAI (or Azure with [openai] provider = \"azure\")"
    return BackendType(name, create, CAPABILITIES, default_voice=lambda settings: settings.openai.voice,
                       warnings=warnings,
                       check=lambda settings, timeout: check_realtime(realtime_config(settings, provider), timeout),
                       description=f"the Realtime API of {where}")


@hookimpl
def register_backends(register):
    register(backend_type("openai_realtime", None))
    register(backend_type("openai", None))        # the name before backends were plugins
    register(backend_type("azure", "azure"))


@hookimpl
def register_settings(register):
    for setting in SETTINGS:
        register(setting)
