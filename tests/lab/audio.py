"""Deterministic G.711 µ-law test audio (8 kHz, 160 bytes = 20 ms per frame)."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable

RATE = 8000
FRAME_BYTES = 160  # 20 ms of µ-law
SILENCE_BYTE = 0xFF  # µ-law +0; 0x7F is -0, also silent

_BIAS = 0x84
_CLIP = 32635


def _encode_sample(sample: int) -> int:
    """One 16-bit linear sample -> one µ-law byte (ITU-T G.711, no zero trap)."""
    sign = 0x80 if sample < 0 else 0
    magnitude = min(-sample if sign else sample, _CLIP) + _BIAS
    exponent = max(magnitude.bit_length() - 8, 0)  # position of the top bit above bit 7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _decode_byte(byte: int) -> int:
    """One µ-law byte -> one 16-bit linear sample."""
    u = ~byte & 0xFF
    exponent = (u >> 4) & 0x07
    magnitude = ((((u & 0x0F) << 3) + _BIAS) << exponent) - _BIAS
    return -magnitude if u & 0x80 else magnitude


_DECODE_TABLE = tuple(_decode_byte(b) for b in range(256))


def ulaw_encode(samples: Iterable[int]) -> bytes:
    """Encode signed 16-bit linear samples (clipped to -32768..32767) as µ-law bytes."""
    return bytes(_encode_sample(max(-32768, min(32767, int(s)))) for s in samples)


def ulaw_decode(data: bytes) -> list[int]:
    """Decode µ-law bytes to signed 16-bit linear samples."""
    return [_DECODE_TABLE[b] for b in data]


def silence(ms: int) -> bytes:
    """``ms`` milliseconds of µ-law digital silence (0xFF)."""
    return bytes([SILENCE_BYTE]) * (ms * RATE // 1000)


def speech(ms: int, seed: int = 0) -> bytes:
    """``ms`` ms of loud, speech-like, deterministic µ-law audio that never contains 0xFF/0x7F.

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
    encoded = ulaw_encode(samples)
    # Samples near zero encode to 0xFF/0x7F (±0); nudge them to the next-quietest code.
    return encoded.replace(b"\xff", b"\xfe").replace(b"\x7f", b"\x7e")


def frames(data: bytes, size: int = FRAME_BYTES) -> list[bytes]:
    """Split ``data`` into ``size``-byte chunks (the last one may be shorter)."""
    return [data[i : i + size] for i in range(0, len(data), size)]
