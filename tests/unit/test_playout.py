"""Playout re-framing and the pacer's absolute deadlines (no wall-clock assertions)."""

from __future__ import annotations

import asyncio
import random

from aribot.core.metrics import CallMetrics
from aribot.core.playout import Pacer, Playout
from aribot.core.rtp import FRAME_BYTES, FRAME_SECONDS, RtpPacket, RtpSender


def drain(playout: Playout) -> list[bytes]:
    frames = []
    while (frame := playout.pop()) is not None:
        frames.append(frame)
    return frames


def test_reframes_irregular_deltas_exactly() -> None:
    rng = random.Random(1)
    audio = bytes(rng.randrange(0, 0x7F) for _ in range(8000))
    playout = Playout()
    pos = 0
    frames: list[bytes] = []
    while pos < len(audio):
        size = rng.randint(1, 1300)
        playout.push("item1", audio[pos:pos + size])
        pos += size
        frames += drain(playout)
    playout.end_item("item1")
    frames += drain(playout)
    assert all(len(f) == FRAME_BYTES for f in frames)
    joined = b"".join(frames)
    assert joined[:len(audio)] == audio
    assert set(joined[len(audio):]) <= {0xFF}
    assert playout.played["item1"] == playout.received["item1"] == len(audio)


def test_partial_frame_waits_until_item_ends() -> None:
    playout = Playout()
    playout.push("a", b"\x01" * 200)
    assert len(drain(playout)) == 1          # 40 bytes wait for more audio
    playout.push("b", b"\x02" * 160)         # a new item ends the previous one
    frames = drain(playout)
    assert frames[0] == b"\x01" * 40 + b"\xff" * 120 and frames[1] == b"\x02" * 160
    assert playout.current_item == "b"


def test_clear_drops_everything_and_counts() -> None:
    playout = Playout()
    playout.push("a", b"\x01" * 1000)
    playout.pop()
    assert playout.clear() == 840
    assert playout.pop() is None and playout.played_ms("a") == 20 and playout.received_ms("a") == 125


class CaptureEndpoint:
    def __init__(self) -> None:
        self.sent: list[RtpPacket] = []

    def send(self, packet: bytes) -> None:
        self.sent.append(RtpPacket.parse(packet))


async def test_pacer_schedules_absolute_deadlines_and_stops_on_flush() -> None:
    loop = asyncio.get_running_loop()
    playout = Playout()
    endpoint = CaptureEndpoint()
    pacer = Pacer(playout, RtpSender(0), endpoint, CallMetrics())  # type: ignore[arg-type]
    playout.push("a", b"\x01" * 160 * 10)
    pacer.kick()
    t0 = pacer._t0
    assert len(endpoint.sent) == 1 and endpoint.sent[0].marker   # first frame goes out at once
    for n in range(1, 4):
        handle = pacer._handle
        assert handle is not None and abs(handle.when() - (t0 + n * FRAME_SECONDS)) < 1e-9
        await asyncio.sleep(max(0.0, handle.when() - loop.time()) + 0.002)
        assert len(endpoint.sent) == n + 1
    pacer.flush()
    await asyncio.sleep(0.05)
    assert len(endpoint.sent) == 4 and not pacer.running
    seqs = [p.sequence for p in endpoint.sent]
    assert seqs == [(seqs[0] + i) % 65536 for i in range(4)]
    assert [p.marker for p in endpoint.sent] == [True, False, False, False]
    pacer.stop()


async def test_pacer_idle_silence_runs_continuously() -> None:
    playout = Playout()
    endpoint = CaptureEndpoint()
    pacer = Pacer(playout, RtpSender(0), endpoint, CallMetrics(), idle_silence=True)  # type: ignore[arg-type]
    pacer.start()
    await asyncio.sleep(0.07)
    pacer.stop()
    assert len(endpoint.sent) >= 3
    assert all(p.payload == b"\xff" * 160 for p in endpoint.sent)
