"""The effective session: real GA defaults (reference §3.2) and strict partial ``session.update``."""

from __future__ import annotations

import copy
import re
import time
from typing import Any

from . import errors
from .ids import new_id

DEFAULT_INSTRUCTIONS = (
    "Your knowledge cutoff is 2023-10. You are a helpful, witty, and friendly AI. Act like a human, "
    "but remember that you aren't a human and that you can't do human things in the real world."
)
SESSION_LIFETIME_S = 3600
SERVER_VAD_DEFAULTS: dict[str, Any] = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 200,
    "idle_timeout_ms": None,
    "create_response": True,
    "interrupt_response": True,
}
SEMANTIC_VAD_DEFAULTS: dict[str, Any] = {
    "type": "semantic_vad",
    "eagerness": "auto",
    "create_response": True,
    "interrupt_response": True,
}
PCM_24K: dict[str, Any] = {"type": "audio/pcm", "rate": 24000}
# Keys whose objects replace the old value whole instead of being merged key by key.
REPLACED_WHOLE = {"tools", "tool_choice", "tracing", "truncation", "prompt", "include", "transcription",
                  "noise_reduction", "output_modalities", "reasoning", "metadata"}


def default_session(model: str) -> dict[str, Any]:
    """``session`` of ``session.created``, in the key order of a recorded GA frame."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": new_id("sess"),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": DEFAULT_INSTRUCTIONS,
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": int(time.time()) + SESSION_LIFETIME_S,
        "audio": {
            "input": {
                "format": dict(PCM_24K),
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": dict(SERVER_VAD_DEFAULTS),
            },
            "output": {"format": dict(PCM_24K), "voice": "alloy", "speed": 1.0},
        },
        "include": None,
    }


def normalize_format(fmt: dict[str, Any]) -> dict[str, Any]:
    """``{"type":"audio/pcm"}`` gets its implied ``rate``; others are echoed as given."""
    return dict(PCM_24K) if fmt["type"] == "audio/pcm" else {"type": fmt["type"]}


def merge_turn_detection(current: dict[str, Any] | None, update: dict[str, Any] | None) -> dict[str, Any] | None:
    """Same type: merge onto the current values; new type: fill that type's defaults."""
    if update is None:
        return None
    if current is not None and current["type"] == update["type"]:
        return {**current, **update}
    defaults = SERVER_VAD_DEFAULTS if update["type"] == "server_vad" else SEMANTIC_VAD_DEFAULTS
    return {**defaults, **update}


def _merge(target: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if key == "format":
            target[key] = normalize_format(value)
        elif key == "turn_detection":
            target[key] = merge_turn_detection(target.get(key), value)
        elif isinstance(value, dict) and key not in REPLACED_WHOLE and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def is_reasoning_model(model: str) -> bool:
    """``reasoning`` / ``parallel_tool_calls`` are only for ``gpt-realtime-2*`` (reference §1.1)."""
    return re.fullmatch(r"gpt-realtime-2(\.\d+)?(-mini)?(-\d{4}-\d{2}-\d{2})?", model) is not None


def check_semantics(current: dict[str, Any], update: dict[str, Any], *, voice_locked: bool) -> None:
    """Rules beyond the schema: session type, model, reasoning-only fields, voice lock."""
    if update["type"] == "transcription":
        raise errors.fake_unsupported("transcription sessions (session.type 'transcription')", "session.type")
    model = update.get("model")
    if model is not None and model != current["model"]:
        raise errors.invalid_value(
            "session.model",
            f"Invalid value: '{model}'. The session's model cannot be changed (it is '{current['model']}').",
        )
    for key in ("reasoning", "parallel_tool_calls"):
        if key in update and not is_reasoning_model(current["model"]):
            raise errors.invalid_value(
                f"session.{key}",
                f"'session.{key}' is only supported by reasoning models such as gpt-realtime-2; "
                f"this session uses '{current['model']}'.",
            )
    voice = update.get("audio", {}).get("output", {}).get("voice")
    if voice is not None and voice_locked and voice != current["audio"]["output"]["voice"]:
        raise errors.cannot_update_voice()


def apply_update(current: dict[str, Any], update: dict[str, Any], *, voice_locked: bool) -> dict[str, Any]:
    """Return the new effective session; ``update`` must already have passed the schema."""
    check_semantics(current, update, voice_locked=voice_locked)
    merged = copy.deepcopy(current)
    _merge(merged, {k: v for k, v in update.items() if k not in ("type", "model")})
    return merged


def bytes_per_ms(fmt: dict[str, Any]) -> int:
    """8 bytes per ms for G.711 (8 kHz, 8 bit), 48 for PCM16 at 24 kHz."""
    return 48 if fmt["type"] == "audio/pcm" else 8
