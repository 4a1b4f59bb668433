"""AI audio towards the caller: re-framing (sans-IO ``Playout``) and the RTP ``Pacer``.

Realtime deltas come in any size and faster than real time. ``Playout`` cuts them into exact
160-byte frames per item (the last partial frame of an item is padded with silence) and keeps
per-item byte counts for barge-in truncation. ``Pacer`` sends one frame per 20 ms on absolute
monotonic deadlines (t0 + n·20 ms), never a relative sleep, so error does not accumulate.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Protocol

from aribot.core.metrics import CallMetrics
from aribot.core.rtp import FRAME_BYTES, FRAME_SECONDS, RtpEndpoint, RtpSender

COMPACT_AT = 1 << 16
LOCAL_ITEM = "aribot-"   # the prefix of items aribot plays itself (a file greeting, the hold sound)


@dataclass(slots=True)
class _Segment:
    item_id: str
    buf: bytearray = field(default_factory=bytearray)
    pos: int = 0
    ended: bool = False

    @property
    def available(self) -> int:
        return len(self.buf) - self.pos


class PlayoutViews:
    """What a speech backend reads of a call's playout (core/backend.py BackendHost), for any host
    that has a ``playout`` and ``metrics``: the call itself, and the test host of backend unit tests."""

    playout: "Playout"
    metrics: CallMetrics

    def played_ms(self, item_id: str) -> int:
        return self.playout.played_ms(item_id)

    def received_ms(self, item_id: str) -> int:
        return self.playout.received_ms(item_id)

    @property
    def current_item(self) -> str:
        return self.playout.current_item

    def clear_current_item(self) -> None:
        self.playout.current_item = ""

    @property
    def audio_pending(self) -> bool:
        return self.playout.buffered_bytes > 0

    def record_inbound_latency(self, received_at: float) -> None:
        self.metrics.inbound_latency.add((time.perf_counter() - received_at) * 1000)


class Playout:
    """FIFO of AI audio, item by item. ``played`` counts real audio bytes sent (not padding)."""

    def __init__(self, silence: int = 0xFF) -> None:
        self.silence = silence
        self._segments: deque[_Segment] = deque()
        self.received: dict[str, int] = {}
        self.played: dict[str, int] = {}
        self.current_item = ""

    def push(self, item_id: str, data: bytes) -> None:
        """Queue audio of ``item_id``; a new item ends (and pads) the previous one."""
        self.received[item_id] = self.received.get(item_id, 0) + len(data)
        tail = self._segments[-1] if self._segments else None
        if tail is None or tail.item_id != item_id or tail.ended:
            if tail is not None:
                tail.ended = True
            tail = _Segment(item_id)
            self._segments.append(tail)
        tail.buf += data

    def end_item(self, item_id: str) -> None:
        """No more audio will come for ``item_id``: its partial last frame may be sent padded."""
        for seg in self._segments:
            if seg.item_id == item_id:
                seg.ended = True

    def pop(self) -> bytes | None:
        """The next 160-byte frame, or None when nothing is ready."""
        while self._segments:
            seg = self._segments[0]
            avail = seg.available
            if avail >= FRAME_BYTES or (seg.ended and avail > 0):
                take = min(FRAME_BYTES, avail)
                frame = bytes(seg.buf[seg.pos:seg.pos + take])
                seg.pos += take
                if seg.pos >= COMPACT_AT:
                    del seg.buf[:seg.pos]
                    seg.pos = 0
                self.played[seg.item_id] = self.played.get(seg.item_id, 0) + take
                self.current_item = seg.item_id
                if take < FRAME_BYTES:
                    frame += bytes([self.silence]) * (FRAME_BYTES - take)
                return frame
            if seg.ended or len(self._segments) > 1:
                self._segments.popleft()
                continue
            return None
        return None

    def clear(self) -> int:
        """Drop everything queued (barge-in); returns the number of bytes dropped."""
        dropped = sum(seg.available for seg in self._segments)
        self._segments.clear()
        return dropped

    def end_partial(self) -> bool:
        """If all that is left to play is less than a frame of an item still open, treat it as
        the item's end (it is sent padded); True if there was such a stub."""
        if len(self._segments) == 1:
            seg = self._segments[0]
            if not seg.ended and 0 < seg.available < FRAME_BYTES:
                seg.ended = True
                return True
        return False

    def queued(self, item_id: str) -> bool:
        """True while audio of ``item_id`` is still waiting to be sent."""
        return any(seg.item_id == item_id and seg.available for seg in self._segments)

    def queued_bytes(self, item_id: str) -> int:
        """Bytes of ``item_id`` still waiting to be sent."""
        return sum(seg.available for seg in self._segments if seg.item_id == item_id)

    def others_queued(self, item_id: str) -> bool:
        """True while audio of any item but ``item_id`` waits to be sent."""
        return any(seg.item_id != item_id and seg.available for seg in self._segments)

    def drop(self, item_id: str) -> int:
        """Drop what of ``item_id`` is still queued (aribot's own audio, e.g. the hold sound, stopped);
        the rest plays on. Returns the bytes dropped."""
        dropped = sum(seg.available for seg in self._segments if seg.item_id == item_id)
        if dropped:
            self._segments = deque(seg for seg in self._segments if seg.item_id != item_id)
        return dropped

    @property
    def buffered_bytes(self) -> int:
        return sum(seg.available for seg in self._segments)

    def played_ms(self, item_id: str) -> int:
        return self.played.get(item_id, 0) // 8

    def received_ms(self, item_id: str) -> int:
        return self.received.get(item_id, 0) // 8


class Timer(Protocol):
    """A pending ``call_at`` (an ``asyncio.TimerHandle`` in production)."""

    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """What the pacer needs of an event loop: its monotonic ``time()`` and ``call_at()``."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], object], /) -> Timer: ...


class Pacer:
    """Sends Playout frames over RTP, one per 20 ms, on absolute deadlines of ``loop.time()``.

    ``loop`` is the running event loop unless a test passes a clock it moves by hand. A tick that
    runs late sends the frames that fell due meanwhile back to back (at most 3 behind the late one);
    later than that, it counts a slip and restarts the deadlines from now (no burst).

    For a service that streams its audio in real time (GPT-Live) rather than ahead of it:
    ``start_delay_s`` holds each talk-spurt's first frame that long (a playout buffer of about a
    frame: deltas end mid-frame and the next one arrives just as it is needed, a little late with
    jitter), and ``partial_wait_s``: less than a frame left with nothing more for that long is sent
    padded, so the caller hears the last of an answer the service stopped at once. The defaults
    (0, None) start at once and hold a partial frame until its item ends."""

    def __init__(
        self,
        playout: Playout,
        sender: RtpSender,
        endpoint: RtpEndpoint,
        metrics: CallMetrics,
        *,
        idle_silence: bool = False,
        on_first_frame: Callable[[str, float], None] | None = None,
        on_spurt_end: Callable[[str], None] | None = None,
        on_frame: Callable[[bytes], None] | None = None,
        loop: Scheduler | None = None,
        start_delay_s: float = 0.0,
        partial_wait_s: float | None = None,
    ) -> None:
        self.playout = playout
        self.start_delay_s = start_delay_s
        self.partial_wait_s = partial_wait_s
        self._partial_handle: Timer | None = None
        self._first_received: float | None = None   # when the audio that starts a delayed spurt arrived
        self.sender = sender
        self.endpoint = endpoint
        self.metrics = metrics
        self.idle_frame = bytes([playout.silence]) * FRAME_BYTES if idle_silence else None
        self.on_first_frame = on_first_frame
        self.on_spurt_end = on_spurt_end
        self.on_frame = on_frame  # a tap (listen-in): every frame sent, idle silence included; None = off
        self._loop: Scheduler = asyncio.get_running_loop() if loop is None else loop
        self._handle: Timer | None = None
        self._t0 = 0.0
        self._n = 0
        self._talking = False
        self._last_send = 0.0
        self._stopped = False
        self.frames_sent = 0
        self._item = ""                       # the item of the last frame sent
        self.last_frame: bytes | None = None  # for level meters

    @property
    def running(self) -> bool:
        return self._handle is not None

    def start(self) -> None:
        """With idle silence the pacer runs for the whole call; otherwise it starts on kick()."""
        if self.idle_frame is not None and not self.running:
            self._anchor(self._loop.time())
            self._tick()

    def kick(self, received_at: float | None = None, *, now: bool = False) -> None:
        """New audio was queued: start a talk-spurt if the pacer is idle (after ``start_delay_s``
        unless ``now``)."""
        if self._stopped:
            return
        if self._partial_handle is not None:
            self._partial_handle.cancel()
            self._partial_handle = None
        if not self.running:
            if self.start_delay_s and not now:
                self._anchor(self._loop.time() + self.start_delay_s)
                self._first_received = received_at
                self._handle = self._loop.call_at(self._t0, self._tick)
                return
            self._anchor(self._loop.time())
            self._tick()
            if received_at is not None and self._talking:
                self.metrics.first_frame_latency.add((time.perf_counter() - received_at) * 1000)

    def flush(self) -> int:
        """Barge-in: drop queued audio; the next deadline finds nothing and the spurt ends."""
        return self.playout.clear()

    def stop(self) -> None:
        self._stopped = True
        for handle in (self._handle, self._partial_handle):
            if handle is not None:
                handle.cancel()
        self._handle = self._partial_handle = None

    def _send_partial(self) -> None:
        self._partial_handle = None
        if self.playout.end_partial():
            self.kick(now=True)

    def _anchor(self, now: float) -> None:
        self._t0 = now
        self._n = 0

    def _tick(self) -> None:
        self._handle = None
        now = self._loop.time()
        frame = self.last_frame = self.playout.pop()
        if frame is None:
            if self._talking and self.on_spurt_end is not None:
                self.on_spurt_end(self.playout.current_item)
            self._talking = False
            self._first_received = None
            if self.partial_wait_s is not None and self._partial_handle is None and self.playout.buffered_bytes:
                self._partial_handle = self._loop.call_at(now + self.partial_wait_s, self._send_partial)
            if self.idle_frame is None:
                return
            self.endpoint.send(self.sender.packet(self.idle_frame, marker=False, now=now))
            frame = self.idle_frame
        else:
            marker = not self._talking
            item = self.playout.current_item
            # a new talk-spurt, or the AI's item straight after aribot's own audio (the hold sound):
            # its first frame is sent now (one AI item after another goes on as one spurt)
            if (marker or (item != self._item and self._item.startswith(LOCAL_ITEM))) \
                    and self.on_first_frame is not None:
                self.on_first_frame(item, now)
            self._item = item
            if self._first_received is not None:
                self.metrics.first_frame_latency.add((time.perf_counter() - self._first_received) * 1000)
                self._first_received = None
            self.endpoint.send(self.sender.packet(frame, marker=marker, now=now))
            if self._talking:
                self.metrics.send_intervals.add((now - self._last_send) * 1000)
            self._talking = True
            self.frames_sent += 1
        if self.on_frame is not None:
            self.on_frame(frame)
        self.metrics.pacing_lateness.add((now - (self._t0 + self._n * FRAME_SECONDS)) * 1000)
        self._last_send = now
        self._n += 1
        deadline = self._t0 + self._n * FRAME_SECONDS
        if deadline < now - 3 * FRAME_SECONDS:
            self.metrics.pacing_slips += 1
            self._anchor(now + FRAME_SECONDS)
            deadline = self._t0
        self._handle = self._loop.call_at(deadline, self._tick)
