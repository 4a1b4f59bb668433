"""What ``session.start`` and ``session.update`` mean beyond the SDK's shapes: limits, the resolved
session resource, and sparse delegation updates.

Token counts are approximate: ``ceil(characters / 4)``, OpenAI's rule of thumb for English text. The
fake has no tokenizer; tests near a limit should stay well clear of it.
"""

from __future__ import annotations

import copy
import math
import re
from typing import Any

from openai.types.live import SessionConfig, SessionUpdateConfig

from . import errors
from .audio import DEFAULT_FORMAT
from .sdk_models import BUILT_IN_VOICES, LIVE_MODELS

INSTRUCTIONS_TOKEN_LIMIT = 16_384
INPUT_MESSAGE_LIMIT = 128
INPUT_TOKEN_LIMIT = 8_192
DEFAULT_VOICE = "marin"
FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
START_ONLY_FIELDS = frozenset(SessionConfig.model_fields) - frozenset(SessionUpdateConfig.model_fields)


def approx_tokens(text: str) -> int:
    """About four characters per token."""
    return math.ceil(len(text) / 4)


def check_start(config: dict[str, Any]) -> None:
    """Rules beyond the SDK schema for a ``session.start`` config that passed it."""
    if config["model"] not in LIVE_MODELS:
        raise errors.model_not_found(config["model"])
    audio = config.get("audio") or {}
    fmt = audio.get("format")
    if fmt is not None and fmt["type"] != "audio/pcm" and fmt["rate"] != 8000:
        raise errors.invalid_value("session.audio.format.rate", f"Invalid value: {fmt['rate']}. G.711 "
                                                                "audio ('audio/pcmu', 'audio/pcma') uses 8000 Hz.")
    voice = (audio.get("output") or {}).get("voice")
    if isinstance(voice, str) and voice not in BUILT_IN_VOICES:
        raise errors.invalid_value("session.audio.output.voice", f"Invalid value: '{voice}'. Supported built-in "
                                                                 f"voices are: {', '.join(BUILT_IN_VOICES)}.")
    instructions = config.get("instructions") or ""
    if approx_tokens(instructions) > INSTRUCTIONS_TOKEN_LIMIT:
        raise errors.too_many_tokens("session.instructions", INSTRUCTIONS_TOKEN_LIMIT, approx_tokens(instructions))
    _check_input(config.get("input") or [])
    if config.get("client") is not None:  # fake's choice: the SDK calls it a WebRTC frontend's startup field
        raise errors.invalid_value("session.client", "'session.client' applies to WebRTC sessions only; a primary "
                                                     "WebSocket is a trusted connection.")
    if config.get("triggers") is not None:
        raise errors.fake_unsupported("Decisions triggers", "session.triggers")
    delegation = config.get("delegation")
    if delegation is not None and delegation["type"] == "decisions":
        raise errors.fake_unsupported("Decisions delegation", "session.delegation.type")
    if delegation is not None and delegation["type"] == "responses":
        check_responses(delegation["responses"])
    _check_ack_delay(delegation)


def _check_input(history: list[dict[str, Any]]) -> None:
    if len(history) > INPUT_MESSAGE_LIMIT:
        raise errors.invalid_value("session.input", f"Invalid 'session.input': at most {INPUT_MESSAGE_LIMIT} "
                                                    f"messages, got {len(history)}.")
    total = 0
    for index, message in enumerate(history):
        if len(message["content"]) != 1:
            raise errors.invalid_value(f"session.input[{index}].content", "Each startup history message needs "
                                       f"exactly one text part, got {len(message['content'])}.")
        total += approx_tokens(message["content"][0]["text"])
    if total > INPUT_TOKEN_LIMIT:
        raise errors.too_many_tokens("session.input", INPUT_TOKEN_LIMIT, total)


def _check_ack_delay(delegation: dict[str, Any] | None) -> None:
    delay = (delegation or {}).get("acknowledgement_delay_ms")
    if delay is not None and delay < 0:
        raise errors.invalid_value("session.delegation.acknowledgement_delay_ms",
                                   f"Invalid value: {delay}. Expected a value >= 0.")


def check_responses(responses: dict[str, Any], path: str = "session.delegation.responses") -> None:
    """Backend config rules: ``max_output_tokens`` >= 16, unique valid function names, object schemas,
    a forced function that exists."""
    limit = responses.get("max_output_tokens")
    if limit is not None and limit < 16:
        raise errors.invalid_value(f"{path}.max_output_tokens", f"Invalid value: {limit}. Expected a value >= 16.")
    names: set[str] = set()
    for index, tool in enumerate(responses.get("tools") or []):
        if tool["type"] != "function":
            continue
        where = f"{path}.tools[{index}]"
        if not FUNCTION_NAME.fullmatch(tool["name"]):
            raise errors.invalid_value(f"{where}.name", f"Invalid '{where}.name': '{tool['name']}' must match "
                                                        "^[a-zA-Z0-9_-]{1,64}$.")
        if tool["name"] in names:
            raise errors.invalid_value(f"{where}.name", f"Duplicate function name '{tool['name']}'.")
        names.add(tool["name"])
        parameters = tool.get("parameters")
        if parameters is not None and parameters.get("type") != "object":
            raise errors.invalid_value(f"{where}.parameters", f"Invalid '{where}.parameters': a function's "
                                                              "parameters must be a JSON Schema of type 'object'.")
    choice = responses.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function" and choice["name"] not in names:
        raise errors.invalid_value(f"{path}.tool_choice.name", f"Function '{choice['name']}' is not among the tools.")


def resolve(config: dict[str, Any], *, session_id: str, expires_at: int) -> dict[str, Any]:
    """The ``session`` of ``session.started``: the config with server defaults filled in."""
    audio = config.get("audio") or {}
    resource: dict[str, Any] = {"id": session_id, "expires_at": expires_at, "status": "active",
                                "model": config["model"]}
    if (config.get("instructions") or "").strip():
        resource["instructions"] = config["instructions"]
    resource["audio"] = {"format": copy.deepcopy(audio.get("format") or DEFAULT_FORMAT),
                         "output": {"voice": copy.deepcopy((audio.get("output") or {}).get("voice") or DEFAULT_VOICE)}}
    resource["delegation"] = copy.deepcopy(config.get("delegation") or {"type": "client"})
    resource["input"] = copy.deepcopy(config.get("input") or [])
    resource["store"] = bool(config.get("store", False))
    if config.get("safety_identifier") is not None:
        resource["safety_identifier"] = config["safety_identifier"]
    return resource


def check_update_keys(update: Any) -> None:
    """Start-only fields in ``session.update`` are immutable (before the SDK check calls them unknown)."""
    if isinstance(update, dict):
        for key in update:
            if key in START_ONLY_FIELDS:
                raise errors.immutable_field(f"session.{key}")


def apply_update(resource: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """The resource after a validated ``session.update`` (sparse ``delegation`` fields; the mode is fixed)."""
    if update.get("triggers") is not None:
        raise errors.fake_unsupported("Decisions triggers", "session.triggers")
    if "delegation" not in update:
        return resource
    current, change = resource["delegation"], update["delegation"]
    new_type = "client" if change is None else change["type"]
    if new_type != current["type"]:
        raise errors.immutable_field("session.delegation.type", f"The delegation mode cannot change after "
                                     f"session.start (it is '{current['type']}', the update asks for '{new_type}').")
    if change is None:
        return resource
    merged = copy.deepcopy(current)
    if "acknowledgement_delay_ms" in change:
        merged["acknowledgement_delay_ms"] = change["acknowledgement_delay_ms"]
    if new_type == "responses":
        merged["responses"].update(copy.deepcopy(change.get("responses") or {}))
        check_responses(merged["responses"])
    _check_ack_delay(merged)
    return {**resource, "delegation": merged}
