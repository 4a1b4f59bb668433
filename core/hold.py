"""The hold sound: audio aribot loops into the call while a tool runs longer than ``[tools]
filler_after`` (``[tools] hold_sound``), after the AI's spoken filler or instead of it (``[tools]
hold_sound_with_filler``), and stopped the moment the tool returns.

aribot plays it itself through the call's playout, as a local item the AI service knows nothing of
(like a file greeting): no AI audio is ever cut for it, it is only topped up (about 200 ms ahead)
while no AI audio waits to be played, and stopping it drops what of it is still queued, so the
caller hears the AI's answer at once. It is not the AI speaking: it has no response latency and
the dashboard does not show the AI as talking."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import Any

from aribot.core.g711 import AudioFileError, encode
from aribot.core.playout import LOCAL_ITEM
from aribot.core.prompts import load_prompt, local_path
from aribot.core.rtp import FRAME_BYTES

log = logging.getLogger("aribot.call")
HOLD_ITEM = LOCAL_ITEM + "hold"
BUILTIN = "beeps"          # [tools] hold_sound = "beeps": a soft double beep every 3 s, no file needed
AHEAD_FRAMES = 10          # hold audio kept queued ahead of the pacer (200 ms)
TOP_UP_S = 0.1             # how often it is topped up
FILLER_WAIT_S = 10.0       # "after": the filler's audio is waited for this long at most


def builtin_beeps(fmt: str) -> bytes:
    """3 s of G.711: two 150 ms beeps of 480 Hz at about -24 dBFS, 150 ms apart, then quiet."""
    rate, amplitude = 8000, 2000
    beep = [int(amplitude * math.sin(2 * math.pi * 480 * n / rate)) for n in range(rate * 150 // 1000)]
    gap = [0] * (rate * 150 // 1000)
    samples = beep + gap + beep
    samples += [0] * (rate * 3 - len(samples))
    return encode(samples, fmt)


def hold_sound_setting(value: Any) -> str:
    """``[tools] hold_sound``: empty (none), ``beeps``, or a file (``file:/x.wav`` or ``/x.wav``)
    that must lie in ``[call] greeting_dirs`` (checked with the other settings)."""
    text = ("" if value is None else str(value)).strip()
    if text in ("", BUILTIN) or local_path(text) is not None:
        if "\0" in text:
            raise ValueError(value)
        return text
    raise ValueError(value)


class HoldSound:
    """One tool run's hold sound on ``call``: ``start(after)`` once the tool has run long enough
    (``after``: the filler's response, whose audio is heard first), ``stop()`` when it returns."""

    def __init__(self, call: Any, media: str) -> None:
        self.call = call
        self.media = media
        self.task: asyncio.Task[None] | None = None
        self.frames = 0   # frames of hold audio queued in all

    @classmethod
    def for_call(cls, call: Any) -> HoldSound | None:
        media = call.settings.tools.get("hold_sound", "")
        return cls(call, media) if media else None

    def start(self, after: Any = None) -> None:
        if self.task is None:
            self.task = self.call.spawn(self._run(after))

    def stop(self) -> int:
        """Stop now; returns the bytes of hold audio that were queued and are dropped."""
        if self.task is not None:
            self.task.cancel()
        return self.call.playout.drop(HOLD_ITEM)

    async def _audio(self) -> bytes | None:
        fmt = self.call.settings.rtp.format
        if self.media == BUILTIN:
            return builtin_beeps(fmt)
        cfg = self.call.settings.call
        try:   # the greeting's rules: only from [call] greeting_dirs, size-capped, read in a worker thread
            audio = await load_prompt(local_path(self.media) or self.media, fmt, cfg.greeting_dirs,
                                      cfg.greeting_max_bytes)
        except AudioFileError as exc:
            log.warning("call %s: hold sound not played: %s; the caller hears silence while the tool runs",
                        self.call.id, exc)
            return None
        return audio if len(audio) >= FRAME_BYTES else None

    async def _run(self, after: Any) -> None:
        audio = await self._audio()
        if audio is None:
            return
        playout = self.call.playout
        if after is not None:   # the filler first: its answer, then its audio played out
            with contextlib.suppress(Exception):
                filler = await asyncio.wait_for(asyncio.shield(after), FILLER_WAIT_S)
                if isinstance(filler, asyncio.Future):
                    await asyncio.wait_for(asyncio.shield(filler), FILLER_WAIT_S)
        position = 0
        while True:
            if not playout.others_queued(HOLD_ITEM):   # never ahead of (or into) AI audio
                queued = playout.queued_bytes(HOLD_ITEM)
                while queued < AHEAD_FRAMES * FRAME_BYTES:
                    chunk = audio[position:position + FRAME_BYTES]
                    if len(chunk) < FRAME_BYTES:    # wrap around: the loop restarts
                        position = 0
                        chunk = audio[:FRAME_BYTES]
                    playout.push(HOLD_ITEM, chunk)
                    position += FRAME_BYTES
                    queued += FRAME_BYTES
                    self.frames += 1
                if self.call.pacer is not None:
                    self.call.pacer.kick()
            await asyncio.sleep(TOP_UP_S)
