"""Answering-machine detection on the callee's first seconds of audio, and the beep after a
machine's greeting. Sans-IO: feed 20 ms G.711 frames, read decisions; no clock but the frames.

The idea is Asterisk's ``AMD()`` (app_amd), measured on speech: a person answers with a short
word or two ("Hello?", "Yes, speaking.") and waits; a machine talks on ("Hi, you've reached …
please leave a message after the beep"). So:

- voice before ``initial_silence_ms`` of silence: someone talks; no voice by then: ``notsure``;
- once voice started: a pause of ``after_greeting_silence_ms`` ends a greeting; if it lasted at
  most ``greeting_ms`` (first voice to last voice) it was a person (``human``);
- voice that goes on past ``greeting_ms`` without such a pause is a machine (``machine``);
- nothing decided after ``total_analysis_ms``: ``notsure``.

A frame is voice when its mean absolute sample exceeds ``silence_threshold`` (16-bit linear;
Asterisk's default is 256). Short clicks (under ``min_voice_ms``) are not voice.

``BeepDetector`` then waits for the beep: ``beep_min_ms`` of a steady pure tone (one frequency
between 300 and 3000 Hz holds most of each frame's energy, Goertzel), ended; or, for machines
without a beep, ``silence_ms`` of silence after the last voice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aribot.core.g711 import ALAW_TO_LINEAR, ULAW_TO_LINEAR

FRAME_MS = 20
RATE = 8000
_TABLES = {"ulaw": ULAW_TO_LINEAR, "alaw": ALAW_TO_LINEAR}


def linear(frame: bytes, fmt: str = "ulaw") -> list[int]:
    table = _TABLES[fmt]
    return [table[b] for b in frame]


def magnitude(samples: list[int]) -> float:
    return sum(abs(s) for s in samples) / len(samples) if samples else 0.0


@dataclass(frozen=True)
class AmdParams:
    initial_silence_ms: int = 2500
    greeting_ms: int = 1500
    after_greeting_silence_ms: int = 800
    total_analysis_ms: int = 5000
    min_voice_ms: int = 60
    silence_threshold: int = 256


@dataclass(frozen=True)
class Decision:
    outcome: str  # "human", "machine" or "notsure"
    detail: str  # why, e.g. "greeting 640 ms then 800 ms of silence"
    at_ms: int  # audio analysed when it was decided


class MachineDetector:
    """Feed the callee's frames in order with ``feed``; it returns a Decision once, then None."""

    def __init__(self, params: AmdParams | None = None, fmt: str = "ulaw") -> None:
        self.p = params or AmdParams()
        self.fmt = fmt
        self.elapsed = 0
        self.first_voice: int | None = None  # ms at which voice started
        self.last_voice = 0  # ms at the end of the last voiced frame
        self._run = 0  # ms of the current voiced run (clicks shorter than min_voice_ms do not count)
        self.decision: Decision | None = None

    def feed(self, frame: bytes) -> Decision | None:
        if self.decision is not None:
            return None
        ms = len(frame) * 1000 // RATE
        if ms <= 0:
            return None
        voiced = magnitude(linear(frame, self.fmt)) > self.p.silence_threshold
        self.elapsed += ms
        if voiced:
            self._run += ms
            if self._run >= self.p.min_voice_ms:
                if self.first_voice is None:
                    self.first_voice = self.elapsed - self._run
                self.last_voice = self.elapsed
        else:
            self._run = 0
        self.decision = self._decide()
        return self.decision

    def _decide(self) -> Decision | None:
        p, now = self.p, self.elapsed
        if self.first_voice is None:
            if now >= p.initial_silence_ms:
                return Decision("notsure", f"no voice in the first {now} ms", now)
            return None
        greeting = self.last_voice - self.first_voice
        silence = now - self.last_voice
        if greeting > p.greeting_ms:
            return Decision("machine", f"voice for {greeting} ms without a pause of "
                            f"{p.after_greeting_silence_ms} ms", now)
        if silence >= p.after_greeting_silence_ms:
            return Decision("human", f"greeting of {greeting} ms, then {silence} ms of silence", now)
        if now >= p.total_analysis_ms:
            return Decision("notsure", f"undecided after {now} ms", now)
        return None


def tone_purity(samples: list[int]) -> tuple[float, float]:
    """(frequency Hz estimated from zero crossings, share 0..1 of the frame's energy at it)."""
    n = len(samples)
    if n < 32:
        return 0.0, 0.0
    crossings = sum(1 for a, b in zip(samples, samples[1:]) if (a < 0) != (b < 0))
    freq = crossings * RATE / (2 * n)
    if not 300 <= freq <= 3000:
        return freq, 0.0
    energy = sum(s * s for s in samples)
    if not energy:
        return freq, 0.0
    best = 0.0
    for f in (freq + step for step in range(-60, 61, 10)):  # zero crossings miss by up to a crossing (25 Hz)
        w = 2 * math.pi * f / RATE
        coeff = 2 * math.cos(w)
        s1 = s2 = 0.0
        for x in samples:
            s1, s2 = x + coeff * s1 - s2, s1
        power = s1 * s1 + s2 * s2 - coeff * s1 * s2
        best = max(best, 2 * power / (n * energy))
    return freq, min(best, 1.0)


class BeepDetector:
    """After a machine's greeting: ``feed`` returns "beep" when a beep has ended, "silence" after
    ``silence_ms`` without voice (a machine without a beep), else None."""

    def __init__(self, fmt: str = "ulaw", *, beep_min_ms: int = 100, silence_ms: int = 2000,
                 silence_threshold: int = 256, purity: float = 0.7) -> None:
        self.fmt, self.beep_min_ms, self.silence_ms = fmt, beep_min_ms, silence_ms
        self.threshold, self.purity = silence_threshold, purity
        self.elapsed = 0
        self.quiet = 0  # ms since the last voiced frame
        self.tone_ms = 0
        self.tone_freq = 0.0
        self.heard_beep = False

    def feed(self, frame: bytes) -> str | None:
        ms = len(frame) * 1000 // RATE
        self.elapsed += ms
        samples = linear(frame, self.fmt)
        if magnitude(samples) <= self.threshold:
            self.quiet += ms
            ended = self.tone_ms >= self.beep_min_ms
            self.tone_ms = 0
            if ended:
                self.heard_beep = True
                return "beep"
            return "silence" if self.quiet >= self.silence_ms else None
        self.quiet = 0
        freq, purity = tone_purity(samples)
        steady = self.tone_ms == 0 or abs(freq - self.tone_freq) <= 0.1 * self.tone_freq
        if purity >= self.purity and steady:
            self.tone_freq = freq if self.tone_ms == 0 else self.tone_freq
            self.tone_ms += ms
        else:
            ended = self.tone_ms >= self.beep_min_ms   # a beep straight into noise still counts
            self.tone_ms = 0
            if ended:
                self.heard_beep = True
                return "beep"
        return None


def classify(audio: bytes, params: AmdParams | None = None, fmt: str = "ulaw") -> Decision:
    """The decision for a whole recording (what the call would decide), for tests and tuning."""
    detector = MachineDetector(params, fmt)
    for start in range(0, len(audio) - len(audio) % 160, 160):
        decision = detector.feed(audio[start:start + 160])
        if decision is not None:
            return decision
    return Decision("notsure", f"audio ended after {detector.elapsed} ms undecided", detector.elapsed)
