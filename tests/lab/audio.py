"""Deterministic G.711 test audio (8 kHz, 160 bytes = 20 ms per frame): µ-law, or A-law with
``codec="alaw"``. Decoding and A-law encoding use aribot's tables (aribot.core.g711); the µ-law
encoder here is the one the suite's µ-law audio was always made with."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable

from aribot.core.g711 import ALAW_TO_LINEAR, ULAW_TO_LINEAR, linear_to_alaw

RATE = 8000
FRAME_BYTES = 160  # 20 ms of G.711
SILENCE_BYTE = 0xFF  # µ-law +0; 0x7F is -0, also silent
ALAW_SILENCE_BYTE = 0xD5  # A-law's quietest level, +8 of 32768; 0x55 is -8
SILENCE_BYTES = {"ulaw": SILENCE_BYTE, "alaw": ALAW_SILENCE_BYTE}
# speech() never holds a codec's two quietest codes: each becomes the next-quietest one
NOT_SILENT = {"ulaw": bytes.maketrans(b"\xff\x7f", b"\xfe\x7e"), "alaw": bytes.maketrans(b"\xd5\x55", b"\xd4\x54")}

_BIAS = 0x84
_CLIP = 32635


def _encode_sample(sample: int) -> int:
    """One 16-bit linear sample -> one µ-law byte (ITU-T G.711, no zero trap)."""
    sign = 0x80 if sample < 0 else 0
    magnitude = min(-sample if sign else sample, _CLIP) + _BIAS
    exponent = max(magnitude.bit_length() - 8, 0)  # position of the top bit above bit 7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _clipped(samples: Iterable[int]) -> Iterable[int]:
    return (max(-32768, min(32767, int(s))) for s in samples)


def ulaw_encode(samples: Iterable[int]) -> bytes:
    """Encode signed 16-bit linear samples (clipped to -32768..32767) as µ-law bytes."""
    return bytes(_encode_sample(s) for s in _clipped(samples))


def ulaw_decode(data: bytes) -> list[int]:
    """Decode µ-law bytes to signed 16-bit linear samples."""
    return [ULAW_TO_LINEAR[b] for b in data]


def alaw_encode(samples: Iterable[int]) -> bytes:
    """Encode signed 16-bit linear samples (clipped to -32768..32767) as A-law bytes."""
    return bytes(linear_to_alaw(s) for s in _clipped(samples))


def alaw_decode(data: bytes) -> list[int]:
    """Decode A-law bytes to signed 16-bit linear samples."""
    return [ALAW_TO_LINEAR[b] for b in data]


ENCODERS = {"ulaw": ulaw_encode, "alaw": alaw_encode}


def silence(ms: int, codec: str = "ulaw") -> bytes:
    """``ms`` milliseconds of digital silence (µ-law 0xFF, A-law 0xD5)."""
    return bytes([SILENCE_BYTES[codec]]) * (ms * RATE // 1000)


def speech(ms: int, seed: int = 0, codec: str = "ulaw") -> bytes:
    """``ms`` ms of loud, speech-like, deterministic audio that never contains the codec's two
    quietest codes (µ-law 0xFF/0x7F, A-law 0xD5/0x55).

    Each 20 ms frame is a sine whose frequency (400-800 Hz) and amplitude (6000-12000, far
    above TALK_DETECT's default mean-magnitude threshold of 256) come from ``seed``, with
    continuous phase and a little seeded noise, so every frame is distinct (a misaligned
    or shuffled echo cannot compare equal) yet the signal stays tonal.
    """
    rng = random.Random(seed)
    samples: list[int] = []
    phase = 0.0
    total = ms * RATE // 1000
    while len(samples) < total:
        freq = rng.uniform(400.0, 800.0)
        amp = rng.uniform(6000.0, 12000.0)
        step = 2 * math.pi * freq / RATE
        for _ in range(min(FRAME_BYTES, total - len(samples))):
            samples.append(int(amp * math.sin(phase)) + rng.randint(-300, 300))
            phase += step
    # Samples near zero encode to the quietest codes (µ-law ±0); nudge them to the next-quietest.
    return ENCODERS[codec](samples).translate(NOT_SILENT[codec])


def frames(data: bytes, size: int = FRAME_BYTES) -> list[bytes]:
    """Split ``data`` into ``size``-byte chunks (the last one may be shorter)."""
    return [data[i : i + size] for i in range(0, len(data), size)]
