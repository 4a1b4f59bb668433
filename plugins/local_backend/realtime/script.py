"""What the fake model says: a ``Script`` of ``Turn``s, one consumed per response."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class AudioOutput:
    """An assistant audio message (or a text message when the response modality is text)."""

    audio: bytes
    transcript: str


@dataclass(frozen=True)
class FunctionCallOutput:
    """A ``function_call`` item; ``call_id`` None means a fresh ``call_…`` id."""

    name: str
    arguments: str
    call_id: str | None = None


@dataclass(frozen=True)
class Failure:
    """A response that ends ``failed`` with ``status_details.error`` (e.g. ``server_error``)."""

    code: str = "server_error"
    message: str = "The server had an error while processing your request."
    error_type: str = "server_error"


Output = AudioOutput | FunctionCallOutput


def _arguments_text(arguments: dict[str, Any] | str) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


@dataclass(frozen=True)
class Turn:
    """One scripted response: its output items in order, or a failure."""

    outputs: tuple[Output, ...] = ()
    failure: Failure | None = None

    @classmethod
    def audio(cls, audio: bytes, transcript: str) -> Turn:
        """A response with one assistant audio message."""
        return cls((AudioOutput(bytes(audio), transcript),))

    @classmethod
    def function_call(cls, name: str, arguments: dict[str, Any] | str, call_id: str | None = None) -> Turn:
        """A response with one function call."""
        return cls((FunctionCallOutput(name, _arguments_text(arguments), call_id),))

    @classmethod
    def audio_then_function_call(
        cls,
        audio: bytes,
        transcript: str,
        name: str,
        arguments: dict[str, Any] | str,
        call_id: str | None = None,
    ) -> Turn:
        """An audio message at output_index 0, then a function call at output_index 1."""
        call = FunctionCallOutput(name, _arguments_text(arguments), call_id)
        return cls((AudioOutput(bytes(audio), transcript), call))

    @classmethod
    def failed(cls, code: str = "server_error", message: str | None = None) -> Turn:
        """A response that ends with ``status: failed``."""
        return cls(failure=Failure(code, message or Failure.message))

    @property
    def kind(self) -> str:
        """``audio`` / ``function_call`` / ``audio_then_function_call`` / ``failed``."""
        if self.failure is not None:
            return "failed"
        return "_then_".join("audio" if isinstance(o, AudioOutput) else "function_call" for o in self.outputs)


@functools.lru_cache(maxsize=16)
def default_audio(duration_ms: int = 1000, bytes_per_ms: int = 8) -> bytes:
    """Deterministic non-silent audio: bytes 0x10..0x6F only, never µ-law silence (0xFF / 0x7F)."""
    return bytes(0x10 + (i * 7) % 0x60 for i in range(duration_ms * bytes_per_ms))


def default_turn(number: int, bytes_per_ms: int = 8) -> Turn:
    """The 1 s reply used once the script has no turns left."""
    return Turn.audio(default_audio(1000, bytes_per_ms), f"This is default reply number {number}.")


@dataclass
class Script:
    """Scripted behaviour of one connection (each connection keeps its own position).

    ``speed`` is the pacing of output audio as a multiple of real time (``math.inf``: no pacing).
    ``delta_bytes`` bounds the random size of each ``response.output_audio.delta``.
    ``response_latency_s`` / ``response_done_delay_s``: pauses after ``response.created`` and
    before ``rate_limits.updated`` + ``response.done`` (both end early on cancellation).
    ``silence_amplitude``: input samples at most this loud count as silence for VAD.
    ``energy_threshold``: if > 0, a 20 ms window is speech when its RMS (16-bit linear) exceeds it
    instead (the local backend's turn detection on real, noisy phone audio).
    ``transcribe``: computes the caller's transcript from a committed turn's audio (the local
    backend's recogniser) instead of ``caller_transcripts``.
    ``compose``: computes each response (trigger "vad" / "client" / "idle_timeout", the last
    committed user audio, the response.create parameters) instead of ``turns``.
    ``semantic_vad_silence_ms``: the fixed end-of-turn silence used per semantic_vad eagerness.
    """

    turns: list[Turn] = field(default_factory=list)
    delta_bytes: tuple[int, int] = (100, 1200)
    speed: float = 4.0
    seed: int = 0
    late_deltas_after_interrupt: int = 0
    max_session_s: float | None = None
    caller_transcripts: list[str] = field(default_factory=list)
    include_object: bool = False
    obfuscation: bool = True
    error_on_connect: dict[str, Any] | None = None
    response_latency_s: float = 0.0
    response_done_delay_s: float = 0.0
    transcription_delay_s: float = 0.0
    silence_amplitude: int = 0
    energy_threshold: int = 0
    transcribe: Callable[[bytes], Awaitable[str]] | None = None
    compose: Callable[[str, bytes, dict[str, Any]], Turn] | None = None
    semantic_vad_silence_ms: dict[str, int] = field(
        default_factory=lambda: {"low": 1000, "medium": 500, "auto": 500, "high": 200}
    )

    def __post_init__(self) -> None:
        low, high = self.delta_bytes
        if not 1 <= low <= high:
            raise ValueError(f"delta_bytes must satisfy 1 <= min <= max, got {self.delta_bytes}")
        if not (self.speed > 0 or math.isinf(self.speed)):
            raise ValueError("speed must be > 0 (math.inf for no pacing)")

    def caller_transcript(self, number: int) -> str:
        """Transcript of the caller's ``number``-th (1-based) committed audio turn."""
        if number <= len(self.caller_transcripts):
            return self.caller_transcripts[number - 1]
        return f"caller turn {number}"

    def seconds_for(self, audio_ms: float) -> float:
        """Wall-clock seconds to spend sending ``audio_ms`` of audio."""
        return 0.0 if math.isinf(self.speed) else audio_ms / 1000.0 / self.speed
