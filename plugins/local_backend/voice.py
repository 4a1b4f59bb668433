"""Local speech for the local backend: espeak-ng speaks, pocketsphinx listens (both offline).

Everything is 8 kHz G.711 at the edges, as on the call: ``synthesize`` returns µ-law (or A-law)
bytes ready to send as ``response.output_audio.delta``; ``Recogniser.transcribe`` takes a caller
turn's µ-law bytes. numpy does the sample-rate conversions (espeak-ng speaks at 22 050 Hz,
pocketsphinx's English model listens at 16 kHz) and the G.711 table look-ups.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shutil
import subprocess
import threading
from typing import Any

import numpy as np

from aribot.core.g711 import ALAW_TO_LINEAR, ULAW_TO_LINEAR, linear_to_alaw, linear_to_ulaw

log = logging.getLogger("aribot.local_backend")
RATE = 8000
ESPEAK = "espeak-ng"


class VoiceError(RuntimeError):
    """Local speech is not available; the message says what is missing and how to get it."""


@functools.cache
def _encoder(fmt: str) -> np.ndarray:
    """int16 sample + 32768 -> G.711 code, for the whole 16-bit range."""
    encode = linear_to_ulaw if fmt == "ulaw" else linear_to_alaw
    return np.array([encode(s) for s in range(-32768, 32768)], dtype=np.uint8)


@functools.cache
def _decoder(fmt: str) -> np.ndarray:
    return np.array(ULAW_TO_LINEAR if fmt == "ulaw" else ALAW_TO_LINEAR, dtype=np.int16)


def encode_g711(samples: np.ndarray, fmt: str = "ulaw") -> bytes:
    """Linear samples (any float or int array) -> G.711 bytes, clipped to 16 bits."""
    clipped = np.clip(np.rint(samples), -32768, 32767).astype(np.int32) + 32768
    return _encoder(fmt)[clipped].tobytes()


def decode_g711(data: bytes, fmt: str = "ulaw") -> np.ndarray:
    """G.711 bytes -> int16 samples."""
    return _decoder(fmt)[np.frombuffer(data, dtype=np.uint8)]


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling: a windowed-sinc low-pass below the lower Nyquist frequency (when
    going down), then linear interpolation onto the new sample times."""
    x = samples.astype(np.float64)
    if rate_out == rate_in or not len(x):
        return x
    if rate_out < rate_in:
        taps = np.arange(101) - 50
        cutoff = 0.45 * rate_out / rate_in  # of the input rate; 0.5 would be the output's Nyquist
        kernel = np.sinc(2 * cutoff * taps) * np.hamming(len(taps))
        x = np.convolve(x, kernel / kernel.sum(), mode="same")
    times = np.arange(int(len(x) * rate_out / rate_in)) * (rate_in / rate_out)
    return np.interp(times, np.arange(len(x)), x)


def _wav_samples(wav: bytes) -> tuple[int, np.ndarray]:
    """(rate, int16 samples) of espeak-ng's --stdout WAV (its size fields are not filled in)."""
    if wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        raise VoiceError("espeak-ng did not write a WAV file")
    pos, rate = 12, 22050
    while pos + 8 <= len(wav):
        chunk, size = wav[pos:pos + 4], int.from_bytes(wav[pos + 4:pos + 8], "little")
        if chunk == b"fmt ":
            rate = int.from_bytes(wav[pos + 12:pos + 16], "little")
        elif chunk == b"data":
            body = wav[pos + 8:]
            return rate, np.frombuffer(body[: len(body) // 2 * 2], dtype="<i2")
        pos += 8 + size
    raise VoiceError("espeak-ng's WAV has no data chunk")


def synthesize(text: str, *, voice: str = "en-us", words_per_minute: int = 160, fmt: str = "ulaw",
               gain: float = 0.7) -> bytes:
    """``text`` spoken by espeak-ng, as 8 kHz G.711 bytes (a whole number of 20 ms frames)."""
    if shutil.which(ESPEAK) is None:
        raise VoiceError("espeak-ng is not installed: run scripts/setup (it apt-installs espeak-ng)")
    try:
        out = subprocess.run([ESPEAK, "--stdout", "-v", voice, "-s", str(words_per_minute), text],
                             capture_output=True, timeout=30, check=True)
    except subprocess.CalledProcessError as exc:
        raise VoiceError(f"espeak-ng failed ({exc.returncode}): {exc.stderr.decode(errors='replace').strip()}")
    except subprocess.TimeoutExpired as exc:
        raise VoiceError("espeak-ng took more than 30 s") from exc
    rate, samples = _wav_samples(out.stdout)
    audio = encode_g711(resample(samples, rate, RATE) * gain, fmt)
    silence = b"\xff" if fmt == "ulaw" else b"\xd5"
    return audio + silence * (-len(audio) % 160)


class Recogniser:
    """pocketsphinx with its bundled US-English model, loaded once, one decode at a time."""

    def __init__(self) -> None:
        self._decoder: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._decoder is None:
            try:
                from pocketsphinx import Decoder
            except ImportError as exc:
                raise VoiceError("pocketsphinx is not installed: run scripts/setup") from exc
            self._decoder = Decoder(logfn="/dev/null")
        return self._decoder

    def transcribe_sync(self, audio: bytes, fmt: str = "ulaw") -> str:
        """The words pocketsphinx hears in 8 kHz G.711 ``audio`` ("" for none)."""
        if len(audio) < 1600:  # under 200 ms: nothing to recognise
            return ""
        pcm16k = np.clip(resample(decode_g711(audio, fmt), RATE, 16000), -32768, 32767).astype("<i2")
        with self._lock:
            decoder = self._load()
            decoder.start_utt()
            decoder.process_raw(pcm16k.tobytes(), full_utt=True)
            decoder.end_utt()
            hyp = decoder.hyp()
        return hyp.hypstr.strip() if hyp is not None else ""

    async def transcribe(self, audio: bytes) -> str:
        """``transcribe_sync`` in a worker thread (a 3 s turn takes about 0.5 s of CPU)."""
        try:
            return await asyncio.to_thread(self.transcribe_sync, audio)
        except VoiceError as exc:
            log.error("local backend: cannot transcribe (%s); the turn is answered without words", exc)
            return ""
