"""Example aribot speech backend: answers every caller turn with one fixed phrase.

Install it next to aribot (``pip install ./examples/aribot-example-backend``) and set
``[ai] backend = "fixed_phrase"``: each time the caller has spoken and then paused, the caller hears
the phrase (``[fixed_phrase] file``: raw G.711 audio in the call's format; without one, a two-tone
chime). It shows the whole backend contract with nothing but ``import aribot`` and the standard
library: turn detection of its own (so it reports turn events), audio out, transcripts, requests,
a barge-in, close.
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

import aribot

RATE = 8000
FRAME_BYTES = 160
SILENCE = {"ulaw": 0xFF, "alaw": 0xD5}
LOUD = 500            # a sample louder than this (16-bit linear) is speech
TURN_END_FRAMES = 25  # 500 ms of quiet after speech ends the caller's turn


def decode(byte: int, fmt: str) -> int:
    """One G.711 byte as a 16-bit linear sample (ITU-T G.711)."""
    if fmt == "ulaw":
        byte = ~byte & 0xFF
        magnitude = (((byte & 0x0F) << 3) + 0x84) << ((byte >> 4) & 0x07)
        return 0x84 - magnitude if byte & 0x80 else magnitude - 0x84
    byte ^= 0x55
    exponent, mantissa = (byte >> 4) & 0x07, byte & 0x0F
    magnitude = (mantissa << 4) + 8 if exponent == 0 else ((mantissa << 4) + 0x108) << (exponent - 1)
    return magnitude if byte & 0x80 else -magnitude


def chime(fmt: str) -> bytes:
    """Two tones, 300 ms each, as G.711: the phrase when no file is configured."""
    codes = sorted(range(256), key=lambda code: decode(code, fmt))
    values = [decode(code, fmt) for code in codes]

    def nearest(sample: int) -> int:
        low, high = 0, 255
        while low < high:
            mid = (low + high) // 2
            low, high = (mid + 1, high) if values[mid] < sample else (low, mid)
        return codes[low]
    tones = (660.0, 880.0)
    return bytes(nearest(int(8000 * math.sin(2 * math.pi * tone * n / RATE))) for tone in tones
                 for n in range(int(RATE * 0.3)))


class FixedPhrase(aribot.SpeechBackend):
    """One call: hears the caller's turns by energy and answers each with the phrase."""

    capabilities = aribot.Capabilities(turn_events=True, truncation=False, tools="none", billing="seconds")

    def __init__(self, host: aribot.BackendHost, setup: aribot.SessionSetup) -> None:
        super().__init__(host, setup)
        cfg = host.settings.fixed_phrase
        fmt = setup.audio_format
        self.phrase = Path(cfg.file).read_bytes() if cfg.file else chime(fmt)
        self.phrase += bytes([SILENCE[fmt]]) * (-len(self.phrase) % FRAME_BYTES)
        self.text = cfg.text
        self.fmt = fmt
        self.speaking = False       # the caller, as far as this backend can tell
        self.quiet_frames = 0
        self.turns = 0
        self.started_at = 0.0
        self.closed = asyncio.Event()
        self.stats = {"caller_turns": 0, "answers": 0}

    async def start(self) -> None:
        self.ready = True
        self.session_id = f"fixed-{self.host.id}"
        self.started_at = time.monotonic()

    async def serve(self) -> aribot.SessionLost | None:
        await self.closed.wait()
        return None

    async def close(self) -> None:
        self.ready = False
        self.host.emit(aribot.UsageUpdated(call_id=self.host.id, seconds=time.monotonic() - self.started_at))
        self.closed.set()

    def feed(self, frame: bytes, received_at: float | None) -> None:
        loud = any(abs(decode(byte, self.fmt)) > LOUD for byte in frame[::8])
        if loud and not self.speaking:
            self.speaking, self.quiet_frames = True, 0
            self.turns += 1
            self.host.emit(aribot.SpeechStarted(call_id=self.host.id, item_id=f"caller-{self.turns}"))
            if self.host.audio_pending:    # the caller talks over the phrase: stop it
                self.host.flush_audio()
        elif self.speaking and not loud:
            self.quiet_frames += 1
            if self.quiet_frames == TURN_END_FRAMES:
                self.speaking = False
                self.stats["caller_turns"] += 1
                item = f"caller-{self.turns}"
                self.host.emit(aribot.SpeechStopped(call_id=self.host.id, item_id=item))
                self.host.emit(aribot.Transcript(call_id=self.host.id, role="caller", item_id=item, text="(speech)"))
                self.say()
        elif loud:
            self.quiet_frames = 0

    def say(self) -> None:
        """The phrase, its transcript, as one response."""
        self.stats["answers"] += 1
        item = f"phrase-{self.stats['answers']}"
        self.host.emit(aribot.ResponseStarted(call_id=self.host.id, response_id=item))
        self.host.play_audio(item, self.phrase, time.perf_counter(), item)
        self.host.end_audio(item)
        self.host.emit(aribot.Transcript(call_id=self.host.id, role="assistant", item_id=item, text=self.text))
        self.host.emit(aribot.ResponseDone(call_id=self.host.id, response_id=item, status="completed"))

    @property
    def responding(self) -> bool:
        return False

    @property
    def caller_speaking(self) -> bool:
        return self.speaking

    async def add_text(self, role: str, text: str) -> None:
        pass  # a fixed phrase does not listen to text

    async def request_response(self, instructions: str | None = None, tag: str = "") -> asyncio.Future[str]:
        self.say()
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        future.set_result("completed")
        return future

    async def end_turn(self) -> asyncio.Future[str]:
        return await self.request_response()

    async def interrupt(self, cancel: bool) -> None:
        self.host.flush_audio()

    async def update(self, change: aribot.SessionChange) -> str:
        return "a fixed phrase has nothing to change"


def create(host: aribot.BackendHost, setup: aribot.SessionSetup) -> FixedPhrase:
    return FixedPhrase(host, setup)


def file_path(value: Any) -> str:
    text = aribot.as_str(value).strip()
    if text and not Path(text).is_file():
        raise ValueError(value)
    return text


@aribot.hookimpl
def register_backends(register):
    register(aribot.BackendType("fixed_phrase", create, FixedPhrase.capabilities,
                                description="answers every caller turn with one fixed phrase"))


@aribot.hookimpl
def register_settings(register):
    register(aribot.Setting("fixed_phrase.file", "", file_path, "an existing file, or empty",
                            "raw G.711 audio (the call's format) of the phrase; empty = a two-tone chime"))
    register(aribot.Setting("fixed_phrase.text", "Thank you, I heard you.", aribot.as_str, "a string",
                            "what the phrase says (its transcript)"))
