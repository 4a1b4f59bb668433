"""G.711 tables against ITU-T G.711's values, and prompt files (core/g711.py): raw µ-law/A-law and
WAV files load to the expected bytes; what the parser does not support, or cannot parse, is refused
with AudioFileError naming the file, and no other exception escapes it whatever the bytes
(property tests). Reading the files (folders, size, caching) is tests/unit/test_prompts.py."""

from __future__ import annotations

import re
import struct
import wave
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aribot.core.g711 import (
    ALAW_TO_LINEAR,
    ULAW_TO_LINEAR,
    AudioFileError,
    linear_to_alaw,
    linear_to_ulaw,
    prompt_audio,
)

# ITU-T G.711 Table 2 (µ-law): decoder output in 14-bit units at the first and last code of each
# segment, positive half; a 16-bit linear value is 4 times that. The negative code is code - 0x80.
ULAW_ITU = {0xFF: 0, 0xF0: 30, 0xEF: 33, 0xE0: 93, 0xDF: 99, 0xD0: 219, 0xCF: 231, 0xC0: 471, 0xBF: 495,
            0xB0: 975, 0xAF: 1023, 0xA0: 1983, 0x9F: 2079, 0x90: 3999, 0x8F: 4191, 0x80: 8031}
# ITU-T G.711 Table 1 (A-law, even bits inverted): output in 13-bit units, 16-bit = 8 times; the
# negative code is code - 0x80.
ALAW_ITU = {0xD5: 1, 0xDA: 31, 0xC5: 33, 0xCA: 63, 0xF5: 66, 0xFA: 126, 0xE5: 132, 0xEA: 252, 0x95: 264,
            0x9A: 504, 0x85: 528, 0x8A: 1008, 0xB5: 1056, 0xBA: 2016, 0xA5: 2112, 0xAA: 4032}
ULAW_SCALE, ALAW_SCALE = 4, 8

# 16-bit linear input -> code, at full scale and around ITU decision values (µ-law 14-bit: 0|1 -> 0|2,
# 30|31 -> 30|33; A-law 13-bit: 1|2 -> 1|3, 15 -> 15, 32 -> 33). G.711 leaves open which side a
# value exactly on a negative decision value takes; A-law's -2 follows the ITU-T G.191 reference
# coder (one's complement: -16 -> -1), µ-law's negatives are taken inside their intervals.
ULAW_ENCODED = {0: 0xFF, 3: 0xFF, 4: 0xFE, 123: 0xF0, 124: 0xEF, 32767: 0x80, -32768: 0x00, -8: 0x7E, -128: 0x6F}
ALAW_ENCODED = {0: 0xD5, 15: 0xD5, 16: 0xD4, 124: 0xD2, 256: 0xC5, 32767: 0xAA, -1: 0x55, -16: 0x55, -17: 0x54,
                -32768: 0x2A}


def test_ulaw_decodes_to_the_itu_table() -> None:
    for code, itu in ULAW_ITU.items():
        assert ULAW_TO_LINEAR[code] == itu * ULAW_SCALE, hex(code)
        assert ULAW_TO_LINEAR[code - 0x80] == -itu * ULAW_SCALE, hex(code - 0x80)


def test_alaw_decodes_to_the_itu_table() -> None:
    for code, itu in ALAW_ITU.items():
        assert ALAW_TO_LINEAR[code] == itu * ALAW_SCALE, hex(code)
        assert ALAW_TO_LINEAR[code - 0x80] == -itu * ALAW_SCALE, hex(code - 0x80)


# Positive codes from the quietest to the loudest level.
ULAW_POSITIVE = [0xFF - step for step in range(128)]
ALAW_POSITIVE = [(0x80 | step) ^ 0x55 for step in range(128)]


@pytest.mark.parametrize("table,positive", [(ULAW_TO_LINEAR, ULAW_POSITIVE), (ALAW_TO_LINEAR, ALAW_POSITIVE)],
                         ids=["ulaw", "alaw"])
def test_decode_tables_are_odd_symmetric_and_rise_with_the_code(table: tuple[int, ...], positive: list[int]) -> None:
    assert all(table[code ^ 0x80] == -table[code] for code in range(256))
    levels = [table[code] for code in positive]
    assert all(low < high for low, high in zip(levels, levels[1:]))


def test_encoding_at_itu_decision_values() -> None:
    for sample, code in ULAW_ENCODED.items():
        assert linear_to_ulaw(sample) == code, sample
    for sample, code in ALAW_ENCODED.items():
        assert linear_to_alaw(sample) == code, sample


def test_every_code_survives_decode_then_encode() -> None:
    ulaw_codes = [0xFF if code == 0x7F else code for code in range(256)]  # -0 encodes as +0
    assert [linear_to_ulaw(ULAW_TO_LINEAR[code]) for code in range(256)] == ulaw_codes
    assert [linear_to_alaw(ALAW_TO_LINEAR[code]) for code in range(256)] == list(range(256))


# --- prompt files ----------------------------------------------------------------------------------

SAMPLES = (0, 124, -32768, 32767, 4, -8)
SAMPLES_AS_ULAW = bytes([0xFF, 0xEF, 0x00, 0x80, 0xFE, 0x7E])
SAMPLES_AS_ALAW = bytes([0xD5, 0xD2, 0x2A, 0xAA, 0xD5, 0x55])
ULAW_CODES = bytes([0xFF, 0x80, 0x00, 0xFE])
ULAW_CODES_AS_ALAW = bytes([0xD5, 0xAA, 0x2A, 0xD5])  # 0, 32124, -32124, 8
ALAW_CODES = bytes([0xD5, 0xAA, 0x2A, 0x55])
ALAW_CODES_AS_ULAW = bytes([0xFE, 0x80, 0x00, 0x7E])  # 8, 32256, -32256, -8
WAVE_FORMAT_PCM, WAVE_FORMAT_ALAW, WAVE_FORMAT_MULAW = 1, 6, 7


def load_prompt(path: str, fmt: str) -> bytes:
    """The file's bytes through the parser, as core/prompts.py hands them over."""
    return prompt_audio(Path(path).read_bytes(), path, fmt)


def refused(path: Path, needle: str) -> pytest.RaisesExc[AudioFileError]:
    """Expect AudioFileError naming ``path`` and saying ``needle``."""
    return pytest.raises(AudioFileError, match=re.escape(f"prompt file {path}") + ".*" + re.escape(needle))


def write_wave(path: Path, frames: bytes, *, rate: int = 8000, channels: int = 1, width: int = 2) -> Path:
    """A PCM WAV written by the standard library."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(frames)
    return path


def pcm16(samples: tuple[int, ...]) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


def chunk(name: bytes, body: bytes, size: int | None = None) -> bytes:
    """A RIFF chunk; ``size`` overrides the declared size (a lie about the body)."""
    return name + struct.pack("<I", len(body) if size is None else size) + body + b"\0" * (len(body) & 1)


def fmt_body(tag: int, bits: int, *, rate: int = 8000, channels: int = 1) -> bytes:
    align = channels * bits // 8
    return struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)


def riff(*chunks: bytes, form: bytes = b"WAVE") -> bytes:
    body = form + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize("fmt,expected", [("ulaw", SAMPLES_AS_ULAW), ("alaw", SAMPLES_AS_ALAW)])
def test_a_16_bit_8khz_mono_wave_is_encoded(tmp_path: Path, fmt: str, expected: bytes) -> None:
    path = write_wave(tmp_path / f"hello-{fmt}.wav", pcm16(SAMPLES))
    assert load_prompt(str(path), fmt) == expected


@pytest.mark.parametrize("tag,codes,fmt,expected", [
    (WAVE_FORMAT_MULAW, ULAW_CODES, "ulaw", ULAW_CODES), (WAVE_FORMAT_MULAW, ULAW_CODES, "alaw", ULAW_CODES_AS_ALAW),
    (WAVE_FORMAT_ALAW, ALAW_CODES, "alaw", ALAW_CODES), (WAVE_FORMAT_ALAW, ALAW_CODES, "ulaw", ALAW_CODES_AS_ULAW),
])
def test_a_g711_wave_is_passed_through_or_transcoded(tmp_path: Path, tag: int, codes: bytes, fmt: str,
                                                     expected: bytes) -> None:
    path = tmp_path / f"g711-{tag}-{fmt}.WAV"
    path.write_bytes(riff(chunk(b"fmt ", fmt_body(tag, 8)), chunk(b"LIST", b"INFOjunk!"), chunk(b"data", codes)))
    assert load_prompt(str(path), fmt) == expected


@pytest.mark.parametrize("suffix,codes,fmt,expected", [
    (".ulaw", ULAW_CODES, "ulaw", ULAW_CODES), (".pcmu", ULAW_CODES, "alaw", ULAW_CODES_AS_ALAW),
    (".ul", ULAW_CODES, "ulaw", ULAW_CODES), (".alaw", ALAW_CODES, "alaw", ALAW_CODES),
    (".pcma", ALAW_CODES, "ulaw", ALAW_CODES_AS_ULAW), (".AL", ALAW_CODES, "alaw", ALAW_CODES),
])
def test_raw_g711_files(tmp_path: Path, suffix: str, codes: bytes, fmt: str, expected: bytes) -> None:
    path = tmp_path / f"raw-{fmt}{suffix}"
    path.write_bytes(codes)
    assert load_prompt(str(path), fmt) == expected


@pytest.mark.parametrize("params,frames,needle", [
    (dict(rate=16000), pcm16(SAMPLES), "1 channel(s) at 16000 Hz; it must be 8 kHz mono"),
    (dict(channels=2), pcm16(SAMPLES), "2 channel(s) at 8000 Hz; it must be 8 kHz mono"),
    (dict(width=1), bytes(6), "WAV format 1 with 8 bits is not supported"),
    (dict(width=3), bytes(18), "WAV format 1 with 24 bits is not supported"),
    (dict(width=4), bytes(24), "WAV format 1 with 32 bits is not supported"),
], ids=["16kHz", "stereo", "8-bit", "24-bit", "32-bit"])
def test_unsupported_waves_are_refused(tmp_path: Path, params: dict[str, int], frames: bytes, needle: str) -> None:
    path = write_wave(tmp_path / "unsupported.wav", frames, **params)
    with refused(path, needle):
        load_prompt(str(path), "ulaw")


GOOD_FMT = chunk(b"fmt ", fmt_body(WAVE_FORMAT_PCM, 16))
GOOD_DATA = chunk(b"data", pcm16(SAMPLES))


@pytest.mark.parametrize("content,needle", [
    (b"", "is not a RIFF/WAVE file"),
    (b"RIFX" + riff(GOOD_FMT, GOOD_DATA)[4:], "is not a RIFF/WAVE file"),
    (riff(GOOD_FMT, GOOD_DATA, form=b"AVI "), "is not a RIFF/WAVE file"),
    (riff(GOOD_DATA), "has no fmt or data chunk"),
    (riff(GOOD_FMT), "has no fmt or data chunk"),
    (riff(GOOD_FMT, b"data\x40\x00"), "has no fmt or data chunk"),          # cut inside the chunk header
    (riff(chunk(b"fmt ", fmt_body(WAVE_FORMAT_PCM, 16)[:14]), GOOD_DATA), "fmt chunk of 14 bytes"),
    (riff(chunk(b"fmt ", fmt_body(WAVE_FORMAT_PCM, 16), size=16)[:18]), "truncated"),   # cut inside fmt
    (riff(GOOD_FMT, chunk(b"data", pcm16(SAMPLES), size=4000)), "truncated"),
    (riff(GOOD_FMT, chunk(b"data", b"", size=0xFFFFFFFF)), "truncated"),
    (riff(chunk(b"fmt ", fmt_body(WAVE_FORMAT_MULAW, 16)), GOOD_DATA), "WAV format 7 with 16 bits"),
    (riff(chunk(b"fmt ", fmt_body(0xFFFE, 16)), GOOD_DATA), "WAV format 65534 with 16 bits"),
], ids=["empty", "RIFX", "AVI", "no-fmt", "no-data", "cut-header", "short-fmt", "cut-fmt", "cut-data",
        "huge-data", "16-bit-mulaw", "extensible"])
def test_malformed_waves_are_refused_clearly(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "broken.wav"
    path.write_bytes(content)
    with refused(path, needle):
        load_prompt(str(path), "ulaw")


def test_an_unknown_suffix_is_refused(tmp_path: Path) -> None:
    mp3 = tmp_path / "song.mp3"
    mp3.write_bytes(b"ID3")
    with refused(mp3, ": use .wav"):
        load_prompt(str(mp3), "ulaw")


# --- property tests: any bytes give audio or AudioFileError, never another exception -------------------

FORMATS = st.sampled_from(["ulaw", "alaw"])
FMT_BODIES = st.one_of(
    st.binary(max_size=40),
    st.builds(lambda tag, ch, rate, bits, extra: struct.pack("<HHIIHH", tag, ch, rate, rate, 1, bits) + extra,
              st.sampled_from([1, 6, 7, 3, 0xFFFE, 0]), st.sampled_from([0, 1, 2]), st.sampled_from([8000, 0, 16000]),
              st.sampled_from([8, 16, 0, 24]), st.binary(max_size=6)))
CHUNKS = st.lists(st.builds(
    lambda name, body, lie: name + struct.pack("<I", len(body) if lie is None else lie) + body,
    st.sampled_from([b"fmt ", b"data", b"LIST", b"fact", b"\0\0\0\0"]), st.one_of(FMT_BODIES, st.binary(max_size=64)),
    st.one_of(st.none(), st.integers(0, 0xFFFFFFFF), st.integers(0, 20)),
), max_size=5)


def check_parse(data: bytes, fmt: str, name: str = "p.wav") -> None:
    try:
        audio = prompt_audio(data, name, fmt)
    except AudioFileError as exc:
        assert str(exc).startswith(("prompt file p.wav", "prompt file p.ulaw")) and "\n" not in str(exc)
    else:
        assert isinstance(audio, bytes)


@given(data=st.binary(max_size=200), fmt=FORMATS)
def test_any_bytes_as_a_wav(data: bytes, fmt: str) -> None:
    check_parse(data, fmt)


@given(chunks=CHUNKS, cut=st.integers(0, 400), fmt=FORMATS)
def test_any_riff_wave_chunks(chunks: list[bytes], cut: int, fmt: str) -> None:
    """RIFF/WAVE files built from real and lying chunks (short, odd, huge or cut fmt and data)."""
    body = b"WAVE" + b"".join(chunks)
    data = b"RIFF" + struct.pack("<I", len(body)) + body
    check_parse(data, fmt)
    check_parse(data[:cut], fmt)


@given(data=st.binary(max_size=100), fmt=FORMATS)
def test_any_bytes_as_raw_g711(data: bytes, fmt: str) -> None:
    assert len(prompt_audio(data, "p.ulaw", fmt)) == len(data)
