"""Input audio of one session: the session timeline and a deterministic energy VAD.

The session timeline is the input audio clock: milliseconds of caller audio received so far (the
protocol wants audio continuously, silence included, so it runs at real time). Every ``start_ms`` /
``end_ms`` / ``offset_ms`` the fake sends is on it. Audio is cut into 20 ms windows of the session
format; a window is speech when any sample is louder than ``silence_amplitude``
(``aribot.plugins.local_backend.realtime.vad.is_speech``: µ-law 0xFF/0x7F are silence at 0, A-law
±8 and PCM16 ±32 always count as silence). Muted input counts as silence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aribot.plugins.local_backend.realtime.vad import is_speech

WINDOW_MS = 20
DEFAULT_FORMAT: dict[str, Any] = {"type": "audio/pcm", "rate": 24000}


def sample_width(fmt: dict[str, Any]) -> int:
    """Bytes per sample: 2 for PCM16, 1 for G.711."""
    return 2 if fmt["type"] == "audio/pcm" else 1


def bytes_per_ms(fmt: dict[str, Any]) -> int:
    """48 (PCM 24 kHz), 32 (PCM 16 kHz) or 8 (G.711 8 kHz)."""
    return int(fmt.get("rate", 8000)) * sample_width(fmt) // 1000


@dataclass(frozen=True)
class SpeechStarted:
    """The first speech window of an utterance began at ``start_ms``."""

    start_ms: int


@dataclass(frozen=True)
class UtteranceEnded:
    """Speech from ``start_ms`` to ``end_ms`` (end of its last speech window), then enough silence."""

    start_ms: int
    end_ms: int


VadEvent = SpeechStarted | UtteranceEnded


class InputAudio:
    """The timeline and VAD state; ``push`` returns what the new audio made happen."""

    def __init__(self, fmt: dict[str, Any], silence_amplitude: int, end_of_turn_silence_ms: int) -> None:
        self.format = fmt
        self.silence_amplitude = silence_amplitude
        self.end_of_turn_silence_ms = end_of_turn_silence_ms
        self.timeline_ms: float = 0.0
        self.speaking = False
        self._window_bytes = WINDOW_MS * bytes_per_ms(fmt)
        self._processed_ms = 0  # start of the next whole window
        self._pending = bytearray()
        self._speech_start_ms = 0
        self._speech_end_ms = 0

    def push(self, audio: bytes, *, muted: bool) -> list[VadEvent]:
        """Advance the timeline by ``audio`` and run VAD over every completed 20 ms window."""
        self.timeline_ms += len(audio) / bytes_per_ms(self.format)
        self._pending.extend(audio)
        events: list[VadEvent] = []
        while len(self._pending) >= self._window_bytes:
            window = bytes(self._pending[:self._window_bytes])
            del self._pending[:self._window_bytes]
            start_ms = self._processed_ms
            self._processed_ms += WINDOW_MS
            speech = not muted and is_speech(window, self.format["type"], self.silence_amplitude)
            event = self._step(speech, start_ms)
            if event is not None:
                events.append(event)
        return events

    def _step(self, speech: bool, start_ms: int) -> VadEvent | None:
        if speech:
            self._speech_end_ms = start_ms + WINDOW_MS
            if not self.speaking:
                self.speaking = True
                self._speech_start_ms = start_ms
                return SpeechStarted(start_ms)
            return None
        if self.speaking and start_ms + WINDOW_MS - self._speech_end_ms >= self.end_of_turn_silence_ms:
            self.speaking = False
            return UtteranceEnded(self._speech_start_ms, self._speech_end_ms)
        return None
