"""What an answered outbound call does first (a call feature): without detection the outcome is
``human`` at once; with it, the callee's first seconds go to the detector (amd.py) while the AI
hears nothing, then

- a person (or not sure): the AI hears the callee from now on; the greeting (a sound) plays, or
  the AI is asked to open the conversation (``[outbound] opening``);
- a machine: aribot waits for the beep (or silence, at most ``beep_timeout`` s), leaves
  ``machine_message`` (the AI says it, or a ``sound:`` plays) and hangs up (end reason ``machine``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aribot.core.rtp import SILENCE_BYTE
from aribot.plugins.outbound.amd import AmdParams, BeepDetector, MachineDetector
from aribot.plugins.outbound.dialer import Dialer

log = logging.getLogger("aribot.outbound")
STALL_S = 0.1  # no callee frame for this long: 5 frames of silence
MACHINE_PROMPT = ("You reached an answering machine and the beep has sounded. Leave this message, word for word, "
                  "then stop talking: {message}")


class CalleeAudio:
    """A listener on the call (``Call.add_listener``): the callee's frames, in order, as a queue.
    A callee that sends nothing (silence suppression, a stalled stream) is heard as silence: the
    detectors count time in frames."""

    def __init__(self, silence: bytes) -> None:
        self.frames: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.silence = silence
        self._gap: list[bytes] = []

    async def next_frame(self) -> bytes | None:
        """The next frame; None once the call's audio ended."""
        if self._gap:
            return self._gap.pop()
        try:
            return await asyncio.wait_for(self.frames.get(), STALL_S)
        except asyncio.TimeoutError:
            self._gap = [self.silence] * (round(STALL_S * 50) - 1)
            return self.silence

    def caller_audio(self, payload: bytes) -> None:
        self.frames.put_nowait(payload)

    def ai_audio(self, frame: bytes) -> None:
        pass

    def close(self) -> None:
        self.frames.put_nowait(None)


class OutboundStart:
    """The call feature; does nothing on calls aribot did not place."""

    def __init__(self, call: Any) -> None:
        self.call = call
        dialer: Dialer | None = call.app.extensions.get("outbound")
        self.dialer = dialer
        self.placed = dialer.placed.get(call.id) if dialer is not None else None
        if self.placed is not None and self.placed.amd:
            call.hold_input(True)   # before the activation mode opens the gate: the AI hears nothing yet

    async def run(self) -> None:
        placed, call, dialer = self.placed, self.call, self.dialer
        if placed is None or dialer is None:
            return
        if not placed.amd:
            dialer.record(placed, "human", "answered (no detection)", call)
            return
        cfg = call.settings.outbound
        params = AmdParams(initial_silence_ms=int(cfg.amd_initial_silence_ms), greeting_ms=int(cfg.amd_greeting_ms),
                           after_greeting_silence_ms=int(cfg.amd_after_greeting_silence_ms),
                           total_analysis_ms=int(cfg.amd_total_analysis_ms),
                           silence_threshold=int(cfg.amd_silence_threshold))
        fmt = call.settings.rtp.format
        audio = CalleeAudio(bytes([SILENCE_BYTE[fmt]]) * 160)
        call.add_listener(audio)
        try:
            detector = MachineDetector(params, fmt)
            decision = None
            while decision is None:
                frame = await audio.next_frame()
                if frame is None:
                    return
                decision = detector.feed(frame)
            if decision.outcome != "machine":
                dialer.record(placed, "human", f"{decision.outcome}: {decision.detail}", call)
                log.info("outbound %s: a person answered (%s)", call.id, decision.detail)
                call.hold_input(False)
                await self._open()
                return
            dialer.record(placed, "machine", decision.detail, call)
            log.info("outbound %s: an answering machine (%s); waiting for the beep", call.id, decision.detail)
            heard = await self._wait_beep(audio, fmt, float(cfg.beep_timeout), int(cfg.amd_silence_threshold))
        finally:
            call.remove_listener(audio)
        await self._leave_message(heard)

    async def _open(self) -> None:
        call, placed = self.call, self.placed
        assert placed is not None
        if placed.greeting:
            await call.play_prompt([placed.greeting], "outbound greeting")
        elif opening := str(call.settings.outbound.opening).strip():
            await call.ask_ai(opening)

    async def _wait_beep(self, audio: CalleeAudio, fmt: str, timeout: float, threshold: int) -> str:
        beeps = BeepDetector(fmt, silence_ms=int(self.call.settings.outbound.machine_silence_ms),
                             silence_threshold=threshold)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frame = await audio.next_frame()
            if frame is None:
                return "gone"
            if (found := beeps.feed(frame)) is not None:
                return found
        return "timeout"

    async def _leave_message(self, heard: str) -> None:
        call = self.call
        if heard == "gone":
            return
        message = str(self.placed.machine_message if self.placed else "").strip()
        log.info("outbound %s: %s; %s", call.id, {"beep": "the beep ended", "silence": "silence after the greeting",
                                                 "timeout": "no beep in time"}[heard],
                 "leaving the message" if message else "no machine_message: hanging up")
        if message.startswith("sound:"):
            await call.play_prompt([message], "machine message")
            await call.end("machine")
        elif message:
            await call.end("machine", goodbye=MACHINE_PROMPT.format(message=message))
        else:
            await call.end("machine")


def outbound_start(call: Any) -> OutboundStart:
    return OutboundStart(call)
