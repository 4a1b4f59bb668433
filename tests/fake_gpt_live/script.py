"""What the fake GPT-Live model does: a ``Script`` of ``Turn``s, one taken per trigger.

A turn is taken when something asks the model to speak (a *trigger*):

- ``"caller"``: a caller utterance ended (speech, then ``end_of_turn_silence_ms`` of silence);
- ``"append"``: an accepted append of a kind in ``Script.speak_on_appends`` (by default
  ``session.instructions.append`` and ``session.commentary.append``; ``thinking`` is quiet);
- ``"backend"``: the Responses backend finished its answer after the tool outputs.

A turn with ``on`` set answers only that trigger: if the next turn waits for another trigger, the
trigger is ignored (``conn.ignored_triggers``). When the script runs out, each trigger gets a 1 s
default reply (``default_turns=False``: silence instead).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from aribot.plugins.local_backend.realtime.script import default_audio

from .audio import bytes_per_ms

TRIGGERS = ("caller", "append", "backend")
APPEND_TYPES = ("session.instructions.append", "session.thinking.append", "session.commentary.append")


@dataclass(frozen=True)
class FunctionCall:
    """A ``function_call`` the Responses backend makes; ``call_id`` None means a fresh ``call_…`` id."""

    name: str
    arguments: str
    call_id: str | None = None

    @classmethod
    def of(cls, name: str, arguments: dict[str, Any] | str, call_id: str | None = None) -> FunctionCall:
        """``arguments`` as a dict (dumped to JSON) or as the JSON text."""
        return cls(name, arguments if isinstance(arguments, str) else json.dumps(arguments), call_id)


@dataclass(frozen=True)
class Turn:
    """One move of the model: optional delegation (to the backend or the client), then optional speech.

    ``audio`` must be in the session's audio format; ``answer`` is the backend's text after the
    function call outputs (Responses delegation only).
    """

    audio: bytes = field(default=b"", repr=False)
    transcript: str = ""
    calls: tuple[FunctionCall, ...] = ()
    answer: str = "Done."
    client_delegation: bool = False
    on: str | None = None

    def __post_init__(self) -> None:
        if self.on is not None and self.on not in TRIGGERS:
            raise ValueError(f"Turn.on must be one of {TRIGGERS} or None, got {self.on!r}")
        if self.calls and self.client_delegation:
            raise ValueError("a turn delegates either to the Responses backend or to the client, not both")

    @classmethod
    def speech(cls, audio: bytes, transcript: str, *, on: str | None = None) -> Turn:
        """The model says ``transcript`` as ``audio``."""
        return cls(bytes(audio), transcript, on=on)

    @classmethod
    def function_call(cls, name: str, arguments: dict[str, Any] | str, *, call_id: str | None = None,
                      answer: str = "Done.", audio: bytes = b"", transcript: str = "", on: str | None = None) -> Turn:
        """The model delegates; the backend calls one function, then answers ``answer`` once the output is in."""
        return cls.function_calls([FunctionCall.of(name, arguments, call_id)], answer=answer, audio=audio,
                                  transcript=transcript, on=on)

    @classmethod
    def function_calls(cls, calls: list[FunctionCall], *, answer: str = "Done.", audio: bytes = b"",
                       transcript: str = "", on: str | None = None) -> Turn:
        """Several calls in one backend response (``audio``: an acknowledgement spoken meanwhile)."""
        return cls(bytes(audio), transcript, tuple(calls), answer, on=on)

    @classmethod
    def delegate_to_client(cls, *, audio: bytes = b"", transcript: str = "", on: str | None = None) -> Turn:
        """``session.delegation.created`` with target ``client``; answer it with ``commentary.append``."""
        return cls(bytes(audio), transcript, client_delegation=True, on=on)

    @classmethod
    def silent(cls, *, on: str | None = None) -> Turn:
        """The model takes the trigger and says nothing."""
        return cls(on=on)

    @property
    def kind(self) -> str:
        """``speech`` / ``function_call`` / ``client_delegation`` / ``silent``."""
        if self.calls:
            return "function_call"
        if self.client_delegation:
            return "client_delegation"
        return "speech" if self.audio or self.transcript else "silent"


def default_turn(number: int, audio_format: dict[str, Any]) -> Turn:
    """The 1 s reply used once the script has no turns left (loud audio in ``audio_format``)."""
    return Turn.speech(default_audio(1000, bytes_per_ms(audio_format)), f"This is default reply number {number}.")


@dataclass
class Script:
    """Scripted behaviour of one connection (each connection keeps its own position in ``turns``).

    Output: ``speed`` paces audio as a multiple of real time (``math.inf``: no pacing); each
    ``session.output_audio.delta`` holds a random ``delta_ms`` range of audio (seeded by ``seed``).
    Input: a 20 ms window is speech when any sample's magnitude exceeds ``silence_amplitude``
    (µ-law 0xFF / 0x7F are silence at 0); ``gap_threshold_ms``: a pause in appends longer than this
    is an input gap. Appends are acknowledged once ``append_injection_ms`` of input audio followed
    them (0: at once). ``usage_interval_s`` (None: no ``session.usage.updated``), ``max_session_s``
    and ``start_latency_s`` run on the server's clock. ``error_on_start``: fields of an ``error`` sent
    instead of ``session.started``.
    """

    turns: list[Turn] = field(default_factory=list)
    caller_transcripts: list[str] = field(default_factory=list)
    speed: float = 1.0
    delta_ms: tuple[int, int] = (60, 140)
    seed: int = 0
    silence_amplitude: int = 0
    end_of_turn_silence_ms: int = 500
    gap_threshold_ms: int = 100
    append_injection_ms: int = 20
    speak_on_appends: tuple[str, ...] = ("session.instructions.append", "session.commentary.append")
    usage_interval_s: float | None = 60.0
    max_session_s: float | None = None
    start_latency_s: float = 0.0
    error_on_start: dict[str, Any] | None = None
    default_turns: bool = True

    def __post_init__(self) -> None:
        low, high = self.delta_ms
        if not 1 <= low <= high:
            raise ValueError(f"delta_ms must satisfy 1 <= min <= max, got {self.delta_ms}")
        if not (self.speed > 0 or math.isinf(self.speed)):
            raise ValueError("speed must be > 0 (math.inf for no pacing)")
        if self.usage_interval_s is not None and self.usage_interval_s <= 0:
            raise ValueError("usage_interval_s must be > 0 (None: no usage events)")
        unknown = set(self.speak_on_appends) - set(APPEND_TYPES)
        if unknown:
            raise ValueError(f"speak_on_appends: {sorted(unknown)} are not append events {APPEND_TYPES}")

    def caller_transcript(self, number: int) -> str:
        """Transcript of the caller's ``number``-th (1-based) utterance."""
        if number <= len(self.caller_transcripts):
            return self.caller_transcripts[number - 1]
        return f"caller turn {number}"

    def seconds_for(self, audio_ms: float) -> float:
        """Clock seconds to spend sending ``audio_ms`` of audio."""
        return 0.0 if math.isinf(self.speed) else audio_ms / 1000.0 / self.speed
