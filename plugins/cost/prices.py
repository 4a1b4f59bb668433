"""Prices and usage arithmetic, without I/O: the ``[cost]`` price table, a Realtime ``usage`` block
turned into tokens by part, and tokens and seconds turned into USD by part.

Prices were read on 2026-12-07 from OpenAI's model pages and cost guides (the settings' comments
say which). A usage block that does not add up raises ``UsageError`` naming what is wrong; the
meter logs it and leaves the call's cost as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aribot import Setting, as_str, number

PER_MILLION = 1_000_000
COUNT_MAX = 100_000_000        # tokens in one usage block; more is not a real answer's usage
# tokens by part; "cached" parts are the input tokens served from the cache (out of the plain ones)
TOKEN_PARTS = ("text_input", "text_input_cached", "text_output", "audio_input", "audio_input_cached", "audio_output")
RESPONSES_PARTS = ("text_input", "text_input_cached", "text_output")
SESSION = "session_minutes"    # the breakdown's part for services billed by time
REALTIME_BACKENDS = ("openai_realtime", "azure")
FREE_BACKENDS = ("local",)
DEFAULT_GOODBYE = "We have to end this call now. Say a brief, polite goodbye."

_USD_PER_M = "USD per 1M tokens, 0 or more"
_SOURCE_RT = "gpt-realtime and gpt-realtime-1.5 model pages, read 2026-12-07"


def price(value: Any) -> float:
    """A price: a finite number, 0 or more."""
    return number(float, 0, 1_000_000)(value)


PRICE_SETTINGS: tuple[Setting, ...] = (
    Setting("cost.realtime_text_input", 4.0, price, _USD_PER_M,
            f"openai_realtime/azure: USD per 1M text input tokens ({_SOURCE_RT})"),
    Setting("cost.realtime_text_input_cached", 0.4, price, _USD_PER_M,
            f"openai_realtime/azure: USD per 1M cached text input tokens ({_SOURCE_RT})"),
    Setting("cost.realtime_text_output", 16.0, price, _USD_PER_M,
            f"openai_realtime/azure: USD per 1M text output tokens ({_SOURCE_RT})"),
    Setting("cost.realtime_audio_input", 32.0, price, _USD_PER_M,
            f"openai_realtime/azure: USD per 1M audio input tokens ({_SOURCE_RT})"),
    Setting("cost.realtime_audio_input_cached", 0.4, price, _USD_PER_M,
            f"openai_realtime/azure: USD per 1M cached audio input tokens ({_SOURCE_RT})"),
    Setting("cost.realtime_audio_output", 64.0, price, _USD_PER_M,
            f"openai_realtime/azure: USD per 1M audio output tokens ({_SOURCE_RT})"),
    Setting("cost.gpt_live_per_minute", 0.05, price, "USD per minute, 0 or more",
            "gpt_live: USD per active session minute, billed per second (gpt-live-1.1 model page and voice cost "
            "guide, read 2026-12-07)"),
    Setting("cost.gpt_live_text_input", 5.0, price, _USD_PER_M,
            "gpt_live: USD per 1M input tokens of the delegation model ([gpt_live] responses_model; gpt-5.5, "
            "read 2026-12-07 from resellers' copies of OpenAI's price list, not OpenAI's own page)"),
    Setting("cost.gpt_live_text_input_cached", 0.5, price, _USD_PER_M,
            "gpt_live: USD per 1M cached input tokens of the delegation model (gpt-5.5, as above)"),
    Setting("cost.gpt_live_text_output", 30.0, price, _USD_PER_M,
            "gpt_live: USD per 1M output tokens of the delegation model (gpt-5.5, as above)"),
    Setting("cost.other_per_minute", 0.0, price, "USD per minute, 0 or more",
            "any other backend (not local, which is free): USD per minute of the session seconds it reports"),
    Setting("cost.max_cost_goodbye", DEFAULT_GOODBYE, as_str, "instructions for the AI",
            "instructions for the goodbye when a call reaches [call] max_cost"),
)


class UsageError(ValueError):
    """A usage block that is not a usage block: the message says what is wrong with it."""


@dataclass(frozen=True)
class Prices:
    """USD per 1M tokens by part (Realtime, and GPT-Live's delegation model) and per minute."""

    realtime: Mapping[str, float]
    responses: Mapping[str, float]
    gpt_live_per_minute: float
    other_per_minute: float

    @classmethod
    def from_settings(cls, cfg: Any) -> "Prices":
        """From the ``[cost]`` section (already checked by the settings' rules)."""
        return cls(realtime={part: float(cfg[f"realtime_{part}"]) for part in TOKEN_PARTS},
                   responses={part: float(cfg[f"gpt_live_{part}"]) for part in RESPONSES_PARTS},
                   gpt_live_per_minute=float(cfg["gpt_live_per_minute"]),
                   other_per_minute=float(cfg["other_per_minute"]))


def billing(backend: str) -> str:
    """How a backend is billed: ``tokens`` (Realtime, Azure), ``gpt_live`` (seconds plus delegated
    tokens), ``free`` (the local voice) or ``minutes`` (anything else, at ``other_per_minute``)."""
    if backend in REALTIME_BACKENDS:
        return "tokens"
    if backend == "gpt_live":
        return "gpt_live"
    return "free" if backend in FREE_BACKENDS else "minutes"


def _count(value: Any, where: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= COUNT_MAX:
        raise UsageError(f"{where} is {value!r}, not a token count 0..{COUNT_MAX}")
    return value


def _details(usage: Mapping[str, Any], direction: str) -> Mapping[str, Any]:
    """``input_token_details`` (Realtime) or ``input_tokens_details`` (Responses); {} if absent."""
    for key in (f"{direction}_token_details", f"{direction}_tokens_details"):
        found = usage.get(key)
        if found is None:
            continue
        if not isinstance(found, Mapping):
            raise UsageError(f"{key} is {type(found).__name__}, not an object")
        return found
    return {}


def _split(usage: Mapping[str, Any], direction: str) -> tuple[int, int, Mapping[str, Any]]:
    """(text, audio) tokens of one direction; tokens of the total that the details leave out
    (no details at all, say) count as text; image tokens are not priced (aribot sends none)."""
    total = _count(usage.get(f"{direction}_tokens"), f"{direction}_tokens")
    details = _details(usage, direction)
    text = _count(details.get("text_tokens"), f"{direction} text_tokens")
    audio = _count(details.get("audio_tokens"), f"{direction} audio_tokens")
    image = _count(details.get("image_tokens"), f"{direction} image_tokens")
    if f"{direction}_tokens" in usage and text + audio + image > total:
        raise UsageError(f"the {direction} token details ({text} text + {audio} audio + {image} image) add up to more "
                         f"than {direction}_tokens = {total}")
    return text + max(0, total - text - audio - image), audio, details


def token_counts(usage: Any) -> dict[str, int]:
    """A Realtime ``usage`` block → tokens by part (``TOKEN_PARTS``). Cached tokens are part of the
    input counts; here they are taken out of them into their own parts. Raises ``UsageError``."""
    if not isinstance(usage, Mapping):
        raise UsageError(f"usage is {type(usage).__name__}, not an object")
    text_in, audio_in, details = _split(usage, "input")
    text_out, audio_out, _ = _split(usage, "output")
    cached = _count(details.get("cached_tokens"), "cached_tokens")
    cached_details = details.get("cached_tokens_details")
    if cached_details is not None and not isinstance(cached_details, Mapping):
        raise UsageError(f"cached_tokens_details is {type(cached_details).__name__}, not an object")
    if cached_details:
        cached_text = _count(cached_details.get("text_tokens"), "cached text_tokens")
        cached_audio = _count(cached_details.get("audio_tokens"), "cached audio_tokens")
    else:  # no split given: the cached tokens are text first (a Responses model's are all text)
        cached_text = min(cached, text_in)
        cached_audio = cached - cached_text
    if cached_text > text_in or cached_audio > audio_in:
        raise UsageError(f"cached tokens ({cached_text} text, {cached_audio} audio) exceed the input tokens "
                         f"({text_in} text, {audio_in} audio)")
    return {"text_input": text_in - cached_text, "text_input_cached": cached_text, "text_output": text_out,
            "audio_input": audio_in - cached_audio, "audio_input_cached": cached_audio, "audio_output": audio_out}


def responses_counts(usage: Any) -> dict[str, int]:
    """A delegation model's usage (text only) → tokens by ``RESPONSES_PARTS``; audio, if a service
    reported any, counts as text."""
    parts = token_counts(usage)
    return {"text_input": parts["text_input"] + parts["audio_input"],
            "text_input_cached": parts["text_input_cached"] + parts["audio_input_cached"],
            "text_output": parts["text_output"] + parts["audio_output"]}


def tokens_usd(tokens: Mapping[str, int], rates: Mapping[str, float], prefix: str = "") -> dict[str, float]:
    """USD by part (``prefix`` + part) for the parts with tokens."""
    return {prefix + part: count * rates[part] / PER_MILLION for part, count in tokens.items() if count}


def minutes_usd(seconds: float, per_minute: float) -> dict[str, float]:
    """USD of session time billed per second, not rounded up."""
    return {SESSION: seconds * per_minute / 60} if seconds > 0 else {}
