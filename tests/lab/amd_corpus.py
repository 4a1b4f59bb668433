"""Greetings for answering-machine detection, spoken by espeak-ng: people who answer ("Hello?",
"Yes, speaking.") and machines ("Hi, you've reached … leave a message after the beep", a beep).

Deterministic (espeak-ng's output, seeded noise), 8 kHz µ-law, whole 20 ms frames; generated when
first asked for and cached in the folder the caller gives (the tests' tmp dir), never committed.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

from aribot.plugins.local_backend.voice import synthesize
from tests.lab.audio import ulaw_decode, ulaw_encode

VOICES = ("en-us", "en-gb", "en-us+f3", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us+m4",
          "en-gb+f2", "en-gb-x-gbclan", "en-us+f5", "en-gb-x-gbcwmd", "en-us+m7")

HUMAN = (
    "Hello?", "Yes, speaking.", "Hi, this is Anna.", "Hello, who's calling?", "Yeah?", "Good morning.",
    "Hello, Peter speaking.", "Hi there.", "Yes?", "Hello, Smith residence.", "Speaking.", "Hi, it's Mark.",
)
MACHINE = (
    "Hi, you've reached Anna. I can't take your call right now, please leave a message after the beep.",
    "Hello, this is the Smith family. We are not available at the moment. Please leave your name and "
    "number after the tone.",
    "You have reached the voicemail of Peter Jones. Please leave a message and I will call you back.",
    "Thank you for calling. Nobody can take your call right now. Leave a message after the beep.",
    "Hi, it's Mark. Sorry I missed you. Leave a message and I'll get back to you as soon as I can.",
    "The person you are calling is not available. Please record your message after the tone.",
    "Hello, you've reached the office of doctor Brown. Our office is closed. Please leave a message.",
    "Hey, this is Sam. I can't come to the phone, so leave me a message after the beep. Thanks!",
    "You have reached five five five, one two three four. Please leave a message after the beep.",
    "Hi, this is Laura's phone. I'm away right now. Please leave a short message and your number.",
    "Welcome to the voice mailbox of Anna Miller. Please leave a message after the signal.",
    "Hello! We can't answer the phone right now. Leave your message after the beep and we'll call back.",
)


@dataclass(frozen=True)
class Greeting:
    label: str  # "human" or "machine"
    text: str
    voice: str
    wpm: int
    audio: bytes  # µ-law, lead-in, the greeting (a machine's: then the beep), then silence
    beep_at_ms: int = 0  # machines: when the beep starts


def _noise(ms: int, rng: random.Random, level: int = 60) -> list[int]:
    return [int(rng.gauss(0, level)) for _ in range(ms * 8)]


def _beep(ms: int, freq: float) -> list[int]:
    return [int(8000 * math.sin(2 * math.pi * freq * i / 8000)) for i in range(ms * 8)]


def _build(label: str, index: int, text: str) -> Greeting:
    rng = random.Random(f"{label}-{index}")
    voice = VOICES[(index * 5 + (label == "machine") * 3) % len(VOICES)]
    wpm = (130, 150, 165, 180, 200)[(index * 3 + (label == "machine")) % 5]
    spoken = ulaw_decode(synthesize(text, voice=voice, words_per_minute=wpm))
    lead = _noise(rng.choice((200, 400, 600)), rng)
    if label == "human":
        tail = _noise(4000, rng)
        beep_at = 0
    else:
        gap = _noise(rng.choice((300, 500, 700)), rng)
        beep_at = (len(lead) + len(spoken) + len(gap)) // 8
        tail = gap + _beep(rng.choice((300, 500)), rng.choice((850.0, 1000.0, 1400.0))) + _noise(3000, rng)
    noisy = [s + n for s, n in zip(spoken, _noise(len(spoken) // 8 + 1, rng))]
    audio = ulaw_encode(lead + noisy + tail)
    return Greeting(label, text, voice, wpm, audio + b"\xff" * (-len(audio) % 160), beep_at)


def greetings(cache: Path) -> list[Greeting]:
    """Every human and machine greeting (12 of each), generated once into ``cache``."""
    cache.mkdir(parents=True, exist_ok=True)
    found: list[Greeting] = []
    for label, texts in (("human", HUMAN), ("machine", MACHINE)):
        for index, text in enumerate(texts):
            path = cache / f"{label}-{index:02d}.ulaw"
            fresh = _build(label, index, text) if not path.exists() else None
            if fresh is not None:
                path.write_bytes(fresh.audio)
                (cache / f"{label}-{index:02d}.beep").write_text(str(fresh.beep_at_ms))
            voice = VOICES[(index * 5 + (label == "machine") * 3) % len(VOICES)]
            wpm = (130, 150, 165, 180, 200)[(index * 3 + (label == "machine")) % 5]
            beep_at = int((cache / f"{label}-{index:02d}.beep").read_text())
            found.append(Greeting(label, text, voice, wpm, path.read_bytes(), beep_at))
    return found


def confusion(pairs: list[tuple[str, str]]) -> str:
    """A printed confusion matrix: rows = what the greeting was, columns = what was decided."""
    columns = sorted({got for _, got in pairs} | {"human", "machine"})
    lines = ["actual \\ decided  " + "  ".join(f"{c:>8}" for c in columns)]
    for actual in ("human", "machine"):
        row = [sum(1 for a, g in pairs if a == actual and g == c) for c in columns]
        lines.append(f"{actual:<17}  " + "  ".join(f"{n:>8}" for n in row))
    return "\n".join(lines)
