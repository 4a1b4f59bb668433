"""G.711 µ-law / A-law tables and a small audio-file reader for prompts aribot plays itself.

aribot never transcodes the call's audio; this is only for prompt files (greetings) that are not
already in the call's format. ``prompt_audio`` only parses bytes; core/prompts.py reads the files.
"""

from __future__ import annotations

import struct
from pathlib import PurePath


def _ulaw_to_linear(byte: int) -> int:
    byte = ~byte & 0xFF
    sign, exponent, mantissa = byte & 0x80, (byte >> 4) & 0x07, byte & 0x0F
    magnitude = ((mantissa << 3) + 0x84) << exponent
    return -(magnitude - 0x84) if sign else magnitude - 0x84


def _alaw_to_linear(byte: int) -> int:
    byte ^= 0x55
    sign, exponent, mantissa = byte & 0x80, (byte >> 4) & 0x07, byte & 0x0F
    magnitude = (mantissa << 4) + 8 if exponent == 0 else ((mantissa << 4) + 0x108) << (exponent - 1)
    return magnitude if sign else -magnitude


ULAW_TO_LINEAR = tuple(_ulaw_to_linear(b) for b in range(256))
ALAW_TO_LINEAR = tuple(_alaw_to_linear(b) for b in range(256))

# A sample at least this loud (about -30 dBFS) counts towards speech where aribot must tell speech
# from silence itself (the response latency of a backend that reports no caller turns).
LOUD_SAMPLE = 1024
_LOUD = {fmt: bytes(1 if abs(value) >= LOUD_SAMPLE else 0 for value in table)
         for fmt, table in (("ulaw", ULAW_TO_LINEAR), ("alaw", ALAW_TO_LINEAR))}


def loud_samples(frame: bytes, fmt: str) -> int:
    """How many samples of a G.711 frame reach LOUD_SAMPLE (one translate and one count, in C)."""
    return frame.translate(_LOUD[fmt]).count(1)


_ULAW_SEG_END = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_SEG_END = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _segment(value: int, ends: tuple[int, ...]) -> int:
    for index, end in enumerate(ends):
        if value <= end:
            return index
    return len(ends)


def linear_to_ulaw(sample: int) -> int:
    """16-bit linear → µ-law, as the CCITT/Sun reference coder (14-bit input, bias 33)."""
    value, mask = sample >> 2, 0xFF
    if value < 0:
        value, mask = -value, 0x7F
    value = min(value, 8159) + 0x21
    seg = _segment(value, _ULAW_SEG_END)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((value >> (seg + 1)) & 0x0F)) ^ mask


def linear_to_alaw(sample: int) -> int:
    """16-bit linear → A-law, as the CCITT/Sun reference coder (13-bit input)."""
    value = sample >> 3
    if value >= 0:
        mask = 0xD5
    else:
        mask, value = 0x55, -value - 1
    seg = _segment(value, _ALAW_SEG_END)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((value >> (1 if seg < 2 else seg)) & 0x0F)) ^ mask


def encode(samples: list[int], fmt: str) -> bytes:
    encoder = linear_to_ulaw if fmt == "ulaw" else linear_to_alaw
    return bytes(encoder(s) for s in samples)


def decode(data: bytes, fmt: str) -> list[int]:
    table = ULAW_TO_LINEAR if fmt == "ulaw" else ALAW_TO_LINEAR
    return [table[b] for b in data]


RAW_SUFFIXES = {".ulaw": "ulaw", ".pcmu": "ulaw", ".ul": "ulaw", ".alaw": "alaw", ".pcma": "alaw", ".al": "alaw"}


class AudioFileError(ValueError):
    """A prompt file is missing or not 8 kHz mono G.711 / 16-bit PCM."""


def prompt_audio(data: bytes, path: str, fmt: str) -> bytes:
    """The bytes of prompt file ``path`` as audio in the call's format (``ulaw`` or ``alaw``): raw
    .ulaw/.alaw, or a .wav with 8 kHz mono 16-bit PCM, µ-law or A-law. Anything else raises
    AudioFileError naming the file and what is wrong, never another exception."""
    suffix = PurePath(path).suffix.lower()
    if suffix in RAW_SUFFIXES:
        source, payload = RAW_SUFFIXES[suffix], data
    elif suffix == ".wav":
        source, payload = _read_wav(data, path)
    else:
        raise AudioFileError(f"prompt file {path}: use .wav (8 kHz mono) or raw .ulaw/.alaw")
    if source == fmt:
        return payload
    samples = decode(payload, source) if source in ("ulaw", "alaw") else list(
        struct.unpack(f"<{len(payload) // 2}h", payload[: len(payload) // 2 * 2]))
    return encode(samples, fmt)


def _read_wav(data: bytes, path: str) -> tuple[str, bytes]:
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioFileError(f"prompt file {path} is not a RIFF/WAVE file")
    pos, fmt_info, payload = 12, None, None
    while pos + 8 <= len(data):
        chunk, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = data[pos + 8:pos + 8 + size]
        if chunk in (b"fmt ", b"data") and len(body) < size:
            raise AudioFileError(f"prompt file {path} is truncated: its {chunk.decode().strip()} chunk declares "
                                 f"{size} bytes, {len(body)} are there")
        if chunk == b"fmt ":
            if size < 16:
                raise AudioFileError(f"prompt file {path} has a fmt chunk of {size} bytes; WAV needs at least 16")
            fmt_info = struct.unpack("<HHIIHH", body[:16])
        elif chunk == b"data":
            payload = body
        pos += 8 + size + (size & 1)
    if fmt_info is None or payload is None:
        raise AudioFileError(f"prompt file {path} has no fmt or data chunk")
    tag, channels, rate, _byte_rate, _align, bits = fmt_info
    if channels != 1 or rate != 8000:
        raise AudioFileError(f"prompt file {path} is {channels} channel(s) at {rate} Hz; it must be 8 kHz mono")
    kinds = {(1, 16): "pcm16", (7, 8): "ulaw", (6, 8): "alaw"}
    if (tag, bits) not in kinds:
        raise AudioFileError(f"prompt file {path}: WAV format {tag} with {bits} bits is not supported "
                             "(16-bit PCM, µ-law or A-law)")
    return kinds[(tag, bits)], payload
