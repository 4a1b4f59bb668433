"""The GA Realtime schema as strict specs: session, ``response.create`` params and items.

Field sets follow ``openai.types.realtime`` (openai 3.57) and reference §2-§4.
"""

from __future__ import annotations

import functools
from typing import Any

from . import errors
from .schema import (
    Spec,
    any_json,
    array,
    boolean,
    by_type,
    choice,
    integer,
    integer_or_inf,
    json_object,
    nullable,
    number,
    obj,
    string,
    string_map,
    string_or,
)

VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
TRANSCRIPTION_MODELS = (
    "whisper-1",
    "gpt-transcribe",
    "gpt-live-transcribe",
    "gpt-4o-mini-transcribe",
    "gpt-4o-mini-transcribe-2025-12-15",
    "gpt-4o-transcribe",
    "gpt-4o-transcribe-diarize",
    "gpt-realtime-whisper",
)
ITEM_STATUSES = ("completed", "incomplete", "in_progress")
REASONING_EFFORTS = ("minimal", "low", "medium", "high", "xhigh")

AUDIO_FORMAT = by_type(
    {
        "audio/pcm": obj({"type": string(), "rate": choice(24000)}),
        "audio/pcmu": obj({"type": string()}),
        "audio/pcma": obj({"type": string()}),
    }
)

TURN_DETECTION = nullable(
    by_type(
        {
            "server_vad": obj(
                {
                    "type": string(),
                    "threshold": number(0.0, 1.0),
                    "prefix_padding_ms": integer(0, 10_000),
                    "silence_duration_ms": integer(0, 10_000),
                    "create_response": boolean(),
                    "interrupt_response": boolean(),
                    "idle_timeout_ms": nullable(integer(5000, 30000)),
                }
            ),
            "semantic_vad": obj(
                {
                    "type": string(),
                    "eagerness": choice("low", "medium", "high", "auto"),
                    "create_response": boolean(),
                    "interrupt_response": boolean(),
                }
            ),
        }
    )
)

NOISE_REDUCTION = nullable(obj({"type": choice("near_field", "far_field"), "strength": number(0.0, None)}))

VOICE = string_or(choice(*VOICES), obj({"id": string(non_empty=True)}, required=["id"]), "a string or an object")


def transcription_spec(azure: bool) -> Spec:
    """Azure takes a deployment name as the transcription model, OpenAI one of the known models."""
    model = string(non_empty=True) if azure else choice(*TRANSCRIPTION_MODELS)
    return nullable(
        obj(
            {
                "model": model,
                "language": string(),
                "prompt": string(),
                "delay": choice("minimal", "low", "medium", "high", "xhigh"),
                "keywords": array(string()),
                "languages": array(string()),
            }
        )
    )


FUNCTION_TOOL = obj(
    {"type": string(), "name": string(non_empty=True), "description": string(), "parameters": json_object()},
    required=["type", "name"],
)
MCP_TOOL = obj(
    {
        "type": string(),
        "server_label": string(non_empty=True),
        "server_url": string(),
        "server_description": string(),
        "connector_id": string(),
        "authorization": string(),
        "headers": nullable(json_object()),
        "allowed_tools": any_json(),
        "allowed_callers": array(choice("direct", "programmatic")),
        "require_approval": any_json(),
        "defer_loading": boolean(),
        "tunnel_id": string(),
    },
    required=["type", "server_label"],
)
TOOL = by_type({"function": FUNCTION_TOOL, "mcp": MCP_TOOL})

TOOL_CHOICE = string_or(
    choice("auto", "none", "required"),
    by_type(
        {
            "function": obj({"type": string(), "name": string(non_empty=True)}, required=["name"]),
            "mcp": obj({"type": string(), "server_label": string(), "name": string()}, required=["server_label"]),
        }
    ),
    "a string or an object",
)
TRACING = nullable(
    string_or(
        choice("auto"),
        obj({"workflow_name": string(), "group_id": string(), "metadata": any_json()}),
        "a string or an object",
    )
)
TRUNCATION = string_or(
    choice("auto", "disabled"),
    by_type(
        {
            "retention_ratio": obj(
                {
                    "type": string(),
                    "retention_ratio": number(0.0, 1.0),
                    "token_limits": obj({"post_instructions": integer(1, None)}),
                },
                required=["retention_ratio"],
            )
        }
    ),
    "a string or an object",
)
PROMPT = nullable(obj({"id": string(non_empty=True), "version": string(), "variables": json_object()}, required=["id"]))
INCLUDE = nullable(array(choice("item.input_audio_transcription.logprobs")))
REASONING = obj({"effort": choice(*REASONING_EFFORTS)})


def output_modalities(value: Any, path: str) -> None:
    """Exactly one of ``["audio"]`` or ``["text"]`` (GA does not allow both)."""
    array(choice("audio", "text"))(value, path)
    if len(value) != 1:
        raise errors.invalid_value(
            path, f"Invalid '{path}': expected exactly one of ['audio'] or ['text'], got {value}."
        )


def session_spec(azure: bool) -> Spec:
    """``session`` of ``session.update`` (``type`` is checked by the caller, before anything else)."""
    audio_input = obj(
        {
            "format": AUDIO_FORMAT,
            "transcription": transcription_spec(azure),
            "noise_reduction": NOISE_REDUCTION,
            "turn_detection": TURN_DETECTION,
        }
    )
    audio_output = obj({"format": AUDIO_FORMAT, "voice": VOICE, "speed": number(0.25, 1.5)})
    return obj(
        {
            "type": choice("realtime", "transcription"),
            "model": string(non_empty=True),
            "instructions": string(),
            "output_modalities": output_modalities,
            "audio": obj({"input": audio_input, "output": audio_output}),
            "tools": array(TOOL),
            "tool_choice": TOOL_CHOICE,
            "max_output_tokens": integer_or_inf(1, 4096),
            "tracing": TRACING,
            "truncation": TRUNCATION,
            "prompt": PROMPT,
            "include": INCLUDE,
            "reasoning": REASONING,
            "parallel_tool_calls": boolean(),
        },
        required=["type"],
    )


def _content(types: tuple[str, ...], fields: dict[str, Spec], required: tuple[str, ...] = ()) -> Spec:
    return obj({"type": choice(*types), **fields}, required=("type", *required))


SYSTEM_CONTENT = _content(("input_text",), {"text": string()}, ("text",))
USER_CONTENT = by_type(
    {
        "input_text": obj({"type": string(), "text": string()}, required=["text"]),
        "input_audio": obj({"type": string(), "audio": string(), "transcript": nullable(string())}, required=["audio"]),
        "input_image": obj(
            {"type": string(), "image_url": string(), "detail": choice("auto", "low", "high")}, required=["image_url"]
        ),
    }
)
# Assistant audio cannot be created: an output_audio part fails on its missing text (observed in
# openai-agents-js issue #963: "Missing required parameter: 'item.content[0].text'.").
ASSISTANT_CONTENT = obj(
    {"type": choice("output_text", "output_audio"), "text": string(), "transcript": any_json(), "audio": any_json()},
    required=("type", "text"),
)
COMMON_ITEM_FIELDS: dict[str, Spec] = {
    "id": string(non_empty=True),
    "type": string(),
    "object": choice("realtime.item"),
    "status": choice(*ITEM_STATUSES),
}


def _message(value: Any, path: str) -> None:
    """A message item; the allowed content types depend on ``role``."""
    if not isinstance(value, dict):
        raise errors.invalid_type(path, "an object", value)
    if "role" not in value:
        raise errors.missing_parameter(f"{path}.role")
    role = value["role"]
    content = {"system": SYSTEM_CONTENT, "user": USER_CONTENT, "assistant": ASSISTANT_CONTENT}
    if role not in content:
        raise errors.invalid_choice(f"{path}.role", role, content)
    fields = {**COMMON_ITEM_FIELDS, "role": string(), "content": array(content[role])}
    obj(fields, required=("type", "role", "content"))(value, path)
    if role == "assistant":
        for index, part in enumerate(value["content"]):
            if part["type"] == "output_audio":
                raise errors.invalid_choice(f"{path}.content[{index}].type", "output_audio", ["output_text"])


ITEM = by_type(
    {
        "message": _message,
        "function_call": obj(
            {**COMMON_ITEM_FIELDS, "name": string(non_empty=True), "call_id": string(), "arguments": string()},
            required=("type", "name", "arguments"),
        ),
        "function_call_output": obj(
            {**COMMON_ITEM_FIELDS, "call_id": string(non_empty=True), "output": string()},
            required=("type", "call_id", "output"),
        ),
    }
)
ITEM_OR_REFERENCE = by_type(
    {
        "message": _message,
        "function_call": ITEM,
        "function_call_output": ITEM,
        "item_reference": obj({"type": string(), "id": string(non_empty=True)}, required=["id"]),
    }
)


def response_params_spec() -> Spec:
    """``response`` of ``response.create`` (``RealtimeResponseCreateParams``)."""
    return obj(
        {
            "output_modalities": output_modalities,
            "instructions": string(),
            "tools": array(TOOL),
            "tool_choice": TOOL_CHOICE,
            "conversation": choice("auto", "none"),
            "input": array(ITEM_OR_REFERENCE),
            "metadata": nullable(string_map()),
            "audio": obj({"output": obj({"format": AUDIO_FORMAT, "voice": VOICE})}),
            "max_output_tokens": integer_or_inf(1, 4096),
            "prompt": PROMPT,
            "reasoning": REASONING,
            "parallel_tool_calls": boolean(),
        }
    )


@functools.cache
def client_event_specs(azure: bool) -> dict[str, Spec]:
    """Top-level spec of every GA client event type (errors name params like ``session.audio``)."""
    base: dict[str, Spec] = {"type": string(), "event_id": string()}
    item_id = string(non_empty=True)
    return {
        "session.update": obj({**base, "session": session_spec(azure)}, required=["session"]),
        "input_audio_buffer.append": obj({**base, "audio": string()}, required=["audio"]),
        "input_audio_buffer.commit": obj(base),
        "input_audio_buffer.clear": obj(base),
        "output_audio_buffer.clear": obj(base),
        "conversation.item.create": obj(
            {**base, "previous_item_id": nullable(string()), "item": ITEM}, required=["item"]
        ),
        "conversation.item.truncate": obj(
            {**base, "item_id": item_id, "content_index": integer(0, None), "audio_end_ms": integer(0, None)},
            required=["item_id", "content_index", "audio_end_ms"],
        ),
        "conversation.item.delete": obj({**base, "item_id": item_id}, required=["item_id"]),
        "conversation.item.retrieve": obj({**base, "item_id": item_id}, required=["item_id"]),
        "response.create": obj({**base, "response": response_params_spec()}),
        "response.cancel": obj({**base, "response_id": string()}),
    }
