"""Deterministic input audio clock, buffer and voice activity detection.

Audio is cut into 20 ms windows of the input format. A window is speech when any sample's
magnitude exceeds ``silence_amplitude`` (default 0: µ-law 0xFF / 0x7F are silence, anything
else is speech). Floors: A-law's quietest codes 0xD5 / 0x55 decode to ±8 and PCM16 samples up
to ±32 always count as silence (so µ-law 0xFF misread as PCM16, i.e. -1, is silence too, as it
would be for a real energy-based VAD). ``threshold`` from the session is accepted but not used.
"""

from __future__ import annotations

import functools
import sys
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

WINDOW_MS = 20
ALAW_FLOOR = 8
PCM_FLOOR = 32


def ulaw_to_linear(code: int) -> int:
    """G.711 µ-law byte -> 16-bit linear sample."""
    code = ~code & 0xFF
    magnitude = (((code & 0x0F) << 3) + 0x84) << ((code >> 4) & 0x07)
    return 0x84 - magnitude if code & 0x80 else magnitude - 0x84


def alaw_to_linear(code: int) -> int:
    """G.711 A-law byte -> 16-bit linear sample."""
    code ^= 0x55
    exponent, mantissa = (code >> 4) & 0x07, code & 0x0F
    magnitude = (mantissa << 4) + 8 if exponent == 0 else ((mantissa << 4) + 0x108) << (exponent - 1)
    return magnitude if code & 0x80 else -magnitude


@functools.cache
def quiet_codes(format_type: str, silence_amplitude: int) -> bytes:
    """The G.711 codes whose magnitude is at most ``silence_amplitude``."""
    decode = ulaw_to_linear if format_type == "audio/pcmu" else alaw_to_linear
    limit = max(silence_amplitude, ALAW_FLOOR) if format_type == "audio/pcma" else silence_amplitude
    return bytes(code for code in range(256) if abs(decode(code)) <= limit)


@functools.cache
def _squares(format_type: str) -> tuple[int, ...]:
    decode = ulaw_to_linear if format_type == "audio/pcmu" else alaw_to_linear
    return tuple(decode(code) ** 2 for code in range(256))


def rms(window: bytes, format_type: str) -> float:
    """Root mean square of a G.711 window, in 16-bit linear units."""
    if not window:
        return 0.0
    squares = _squares(format_type)
    return (sum(squares[code] for code in window) / len(window)) ** 0.5


def is_speech(window: bytes, format_type: str, silence_amplitude: int = 0, energy_threshold: int = 0) -> bool:
    """True if any sample of the window is louder than ``silence_amplitude`` or, when
    ``energy_threshold`` is set (G.711 only), if the window's RMS exceeds it."""
    if energy_threshold > 0 and format_type != "audio/pcm":
        return rms(window, format_type) > energy_threshold
    if format_type == "audio/pcm":
        samples = array("h", window[: len(window) // 2 * 2])
        if sys.byteorder == "big":
            samples.byteswap()
        limit = max(silence_amplitude, PCM_FLOOR)
        return any(abs(s) > limit for s in samples)
    return bool(window.translate(None, quiet_codes(format_type, silence_amplitude)))


@dataclass(frozen=True)
class SpeechStarted:
    """VAD saw the first speech window."""

    audio_start_ms: int


@dataclass(frozen=True)
class SpeechStopped:
    """VAD saw ``silence_ms`` of silence after speech."""

    audio_end_ms: int


VadEvent = SpeechStarted | SpeechStopped


class InputAudio:
    """The input audio clock (ms of audio appended this session), the uncommitted buffer and VAD."""

    def __init__(self, silence_amplitude: int = 0, energy_threshold: int = 0) -> None:
        self.silence_amplitude = silence_amplitude
        self.energy_threshold = energy_threshold
        self.clock_ms: float = 0.0  # all audio appended so far
        self.processed_ms: float = 0.0  # audio VAD has looked at (whole windows only)
        self.buffer_start_ms: float = 0.0
        self.speaking = False
        self.silence_ms = 0
        self.speech_audio_start_ms = 0
        self._pending = bytearray()
        self._pending_format = ""

    def buffered_ms(self, vad_enabled: bool) -> float:
        """Milliseconds a manual commit would take: with VAD only the current speech (plus padding)."""
        if vad_enabled and not self.speaking:
            return 0.0
        return self.processed_ms - self.buffer_start_ms

    def reset_buffer(self) -> None:
        """After a commit or clear: the buffer restarts here and VAD is idle."""
        self.buffer_start_ms = self.processed_ms
        self.speaking = False
        self.silence_ms = 0

    def append(self, audio: bytes, fmt: dict[str, Any], turn_detection: dict[str, Any] | None,
               silence_ms: int) -> Iterator[VadEvent]:
        """Advance the clock by ``audio``, yielding VAD events window by window (none without VAD).

        Consume the iterator fully; the caller may act on each event before the next window.
        """
        bytes_per_ms = 48 if fmt["type"] == "audio/pcm" else 8
        if fmt["type"] != self._pending_format:
            self._pending.clear()  # a format change drops the partial window
            self._pending_format = fmt["type"]
        self.clock_ms += len(audio) / bytes_per_ms
        if turn_detection is None:
            self._pending.clear()
            self.processed_ms = self.clock_ms
            return
        self.processed_ms = self.clock_ms - (len(self._pending) + len(audio)) / bytes_per_ms
        self._pending.extend(audio)
        window_bytes = WINDOW_MS * bytes_per_ms
        while len(self._pending) >= window_bytes:
            window = bytes(self._pending[:window_bytes])
            del self._pending[:window_bytes]
            start_ms = self.processed_ms
            self.processed_ms += WINDOW_MS
            event = self._step(window, fmt["type"], start_ms, turn_detection, silence_ms)
            if event is not None:
                yield event

    def _step(self, window: bytes, format_type: str, start_ms: float, turn_detection: dict[str, Any],
              silence_ms: int) -> VadEvent | None:
        speech = is_speech(window, format_type, self.silence_amplitude, self.energy_threshold)
        if not self.speaking:
            if not speech:
                return None
            self.speaking = True
            self.silence_ms = 0
            padding = int(turn_detection.get("prefix_padding_ms") or 0)
            self.speech_audio_start_ms = max(0, int(start_ms) - padding)
            self.buffer_start_ms = max(self.buffer_start_ms, start_ms - padding)
            return SpeechStarted(self.speech_audio_start_ms)
        if speech:
            self.silence_ms = 0
            return None
        self.silence_ms += WINDOW_MS
        if self.silence_ms < silence_ms:
            return None
        self.speaking = False
        return SpeechStopped(int(start_ms + WINDOW_MS))
