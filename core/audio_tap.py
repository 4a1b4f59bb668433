"""Both sides of a call's audio, lined up by elapsed time: the tap that listen-in
(plugins/ui_nicegui/listen.py) and recording (plugins/recording) put on a call with
``Call.add_listener``.

On the audio path the tap only appends bytes: ``caller_audio(payload)`` for every caller RTP
payload, ``ai_audio(frame)`` for every 20 ms frame the pacer sent. Its owner's own task calls
``take()`` (or ``cut()``) now and then and gets, for each side, the samples due since the last
time: sample *n* of both sides is the audio of ``t0 + n / 8000`` s (less ``delay_s``, the lateness a
side may have before it is padded). A side that has less than is due (the AI between answers, a
late RTP packet) is padded with G.711 silence, so left and right stay aligned. With ``by_arrival``
the audio a side starts after a pause is placed where it arrived within the piece taken (the
padding goes before it), not at the piece's start: without it a take places it up to one take
period early (listen-in takes every 100 ms; a recording, taking less often, needs it). A side that runs
ahead of real time keeps at most ``slack_s`` of audio (the oldest is dropped and counted), so
memory stays bounded whatever the sides do.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aribot.core.rtp import SILENCE_BYTE

RATE = 8000      # G.711 samples per second, one byte each
DELAY_S = 0.04   # what a side may be late (RTP jitter) before it is padded with silence
SLACK_S = 0.5    # a side ahead of real time keeps at most this much; older audio is dropped


class AlignedTap:
    """A call listener (``Call.add_listener``) that lines up the caller (left) and the AI (right)
    by elapsed time. ``max_due_s``: after a stalled loop at most this much is taken at once (the
    rest of the gap is skipped, for a live listener); None takes all of it (a recording)."""

    def __init__(self, fmt: str, *, loop: Any = None, delay_s: float = DELAY_S, slack_s: float = SLACK_S,
                 max_due_s: float | None = None, by_arrival: bool = False) -> None:
        self.format = fmt
        self.silence = SILENCE_BYTE[fmt]
        self.caller = bytearray()
        self.ai = bytearray()
        self.delay_s, self.slack_s, self.max_due_s, self.by_arrival = delay_s, slack_s, max_due_s, by_arrival
        self.caller_since: float | None = None   # by_arrival: when a side's audio after a pause began
        self.ai_since: float | None = None
        self.dropped_bytes = 0           # audio of a side beyond slack_s ahead of real time
        self.skipped_samples = 0         # per side: a stall beyond max_due_s
        self.sent_samples = 0            # per side: taken (or skipped) so far
        self._loop = loop or asyncio.get_running_loop()
        self._t0 = self._loop.time()

    # --- the audio path (Call): append only ----------------------------------------------------
    def caller_audio(self, payload: bytes) -> None:
        if self.by_arrival and not self.caller:
            self.caller_since = self._loop.time() - len(payload) / RATE
        self.caller += payload

    def ai_audio(self, frame: bytes) -> None:
        if self.by_arrival and not self.ai:
            self.ai_since = self._loop.time() - len(frame) / RATE
        self.ai += frame

    # --- the owner's task ---------------------------------------------------------------------
    def take(self, final: bool = False) -> tuple[bytes, bytes] | None:
        """(caller, AI): the samples of each side due since the last take, equally long (None if
        nothing is due yet). ``final``: the end; what a side still holds is taken too."""
        due = int((self._loop.time() - self._t0 - self.delay_s) * RATE) - self.sent_samples
        if final:
            due = max(due, len(self.caller), len(self.ai))
        if due <= 0:
            return None
        if self.max_due_s is not None and due > self.max_due_s * RATE:   # the loop stalled: skip the gap
            keep = int(self.max_due_s * RATE)
            self.sent_samples += due - keep
            self.skipped_samples += due - keep
            due = keep
        start = self.sent_samples
        self.sent_samples += due
        at_caller, at_ai = self._offset(self.caller_since, start), self._offset(self.ai_since, start)
        if at_caller < due:   # the side's audio has begun within this piece: later audio follows on
            self.caller_since = None
        if at_ai < due:
            self.ai_since = None
        return self._take(self.caller, due, at_caller), self._take(self.ai, due, at_ai)

    def _offset(self, since: float | None, start: int) -> int:
        """Where in the piece that begins at sample ``start`` a side's audio that began at ``since`` goes."""
        return 0 if since is None else max(0, int((since - self._t0) * RATE) - start)

    def cut(self) -> bytes | None:
        """``take()`` interleaved: one G.711 byte of the caller, one of the AI, and so on."""
        sides = self.take()
        if sides is None:
            return None
        out = bytearray(2 * len(sides[0]))
        out[0::2], out[1::2] = sides
        return bytes(out)

    def _take(self, buf: bytearray, n: int, offset: int = 0) -> bytes:
        offset = min(offset, n)
        chunk = bytes([self.silence]) * offset + bytes(buf[:n - offset])
        del buf[:n - offset]
        if len(buf) > self.slack_s * RATE:
            excess = len(buf) - int(self.slack_s * RATE)
            del buf[:excess]
            self.dropped_bytes += excess
        return chunk + bytes([self.silence]) * (n - len(chunk)) if len(chunk) < n else chunk
