"""Playout re-framing, and the pacer's absolute deadlines and recovery from a stalled loop, on a
manual clock (nothing here waits for or measures the wall clock)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from aribot.core.metrics import CallMetrics
from aribot.core.playout import Pacer, Playout
from aribot.core.rtp import FRAME_BYTES, FRAME_SECONDS, RtpPacket, RtpSender
from tests.unit.timing import ManualClock


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
    """Stands in for the RtpEndpoint: keeps each packet it is given, with the clock's time."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.sent: list[tuple[float, RtpPacket]] = []

    def send(self, packet: bytes) -> None:
        self.sent.append((self.clock.now, RtpPacket.parse(packet)))

    @property
    def times(self) -> list[float]:
        return [t for t, _packet in self.sent]

    @property
    def packets(self) -> list[RtpPacket]:
        return [packet for _t, packet in self.sent]


def paced(clock: ManualClock, **options: Any) -> tuple[Pacer, Playout, CaptureEndpoint]:
    """A pacer on ``clock`` that sends into a ``CaptureEndpoint``."""
    playout, endpoint = Playout(), CaptureEndpoint(clock)
    pacer = Pacer(playout, RtpSender(0), endpoint, CallMetrics(), loop=clock, **options)  # type: ignore[arg-type]
    return pacer, playout, endpoint


def frames(*values: int) -> bytes:
    """One 160-byte frame per value, each filled with its value."""
    return b"".join(bytes([value]) * FRAME_BYTES for value in values)


def test_pacer_sends_on_absolute_deadlines_and_ends_the_spurt_after_a_flush() -> None:
    clock, spurts = ManualClock(), []
    pacer, playout, endpoint = paced(clock, on_first_frame=lambda item, t: spurts.append(("first", item, t)),
                                     on_spurt_end=lambda item: spurts.append(("end", item, clock.now)))
    playout.push("a", frames(*range(1, 11)))
    t0 = clock.now
    pacer.kick()
    assert endpoint.times == [t0] and pacer.running   # the first frame goes out at once
    for n in range(1, 4):
        assert [timer.when for timer in clock.pending()] == [t0 + n * FRAME_SECONDS]
        clock.advance_to(t0 + n * FRAME_SECONDS)
    assert endpoint.times == [t0 + n * FRAME_SECONDS for n in range(4)]
    assert pacer.flush() == 6 * FRAME_BYTES
    clock.advance_to(t0 + 10 * FRAME_SECONDS)          # the next deadline finds nothing: the spurt ends
    assert len(endpoint.sent) == 4 and not pacer.running and clock.pending() == []
    assert spurts == [("first", "a", t0), ("end", "a", t0 + 4 * FRAME_SECONDS)]
    packets = endpoint.packets
    assert [p.payload for p in packets] == [frames(n) for n in range(1, 5)]
    assert [p.marker for p in packets] == [True, False, False, False]
    assert [(p.sequence - packets[0].sequence) % 65536 for p in packets] == [0, 1, 2, 3]
    assert [(p.timestamp - packets[0].timestamp) % 2**32 for p in packets] == [0, 160, 320, 480]
    assert pacer.metrics.pacing_lateness.values() == [0.0] * 4 and pacer.metrics.pacing_slips == 0


def test_pacer_idle_silence_runs_continuously_and_audio_joins_its_deadlines() -> None:
    clock = ManualClock()
    pacer, playout, endpoint = paced(clock, idle_silence=True)
    t0 = clock.now
    pacer.start()
    clock.advance_to(t0 + 2 * FRAME_SECONDS)
    playout.push("a", frames(7))
    pacer.kick()                                       # already running: no extra frame, no new anchor
    clock.advance_to(t0 + 4 * FRAME_SECONDS)
    pacer.stop()
    clock.advance_to(t0 + 10 * FRAME_SECONDS)
    assert endpoint.times == [t0 + n * FRAME_SECONDS for n in range(5)] and clock.pending() == []
    assert [p.payload for p in endpoint.packets] == [frames(0xFF)] * 3 + [frames(7), frames(0xFF)]
    assert [p.marker for p in endpoint.packets] == [False, False, False, True, False]


@pytest.mark.parametrize("late_ms", [1, 19, 21, 39, 41, 59, 61, 79, 81, 99, 1001])  # each side of each frame edge
def test_a_late_tick_catches_up_at_most_3_frames_and_later_re_anchors(late_ms: int) -> None:
    clock = ManualClock()
    pacer, playout, endpoint = paced(clock)
    playout.push("a", frames(*range(1, 101)))
    t0 = clock.now
    pacer.kick()
    clock.advance_to(t0 + 3 * FRAME_SECONDS)            # frames 0-3 on time
    woke = t0 + 4 * FRAME_SECONDS + late_ms / 1000
    clock.stall_until(woke)                             # the loop was blocked: frame 4's tick runs late
    burst = endpoint.times.count(woke)
    if late_ms < 4 * 20:  # the late frame and those that fell due meanwhile go out back to back
        assert burst == late_ms // 20 + 1 and pacer.metrics.pacing_slips == 0
        grid, next_frame = t0, 4 + burst                # still on the first deadlines
    else:                 # more than 3 frames behind: this frame only, a slip, new deadlines from now
        assert burst == 1 and pacer.metrics.pacing_slips == 1
        grid, next_frame = woke + FRAME_SECONDS, 0
    assert len(endpoint.sent) == 4 + burst and pacer.metrics.pacing_lateness.values()[4] == pytest.approx(late_ms)
    assert [timer.when for timer in clock.pending()] == [grid + next_frame * FRAME_SECONDS]
    clock.advance_to(grid + (next_frame + 2) * FRAME_SECONDS)
    assert endpoint.times[-3:] == [grid + (next_frame + n) * FRAME_SECONDS for n in range(3)]
    assert [p.payload for p in endpoint.packets] == [frames(n) for n in range(1, len(endpoint.sent) + 1)]  # in order
    assert not any(p.marker for p in endpoint.packets[1:])  # one talk-spurt throughout


def test_real_time_audio_a_frame_of_buffer_and_the_stub_of_a_stopped_answer_goes_out() -> None:
    """Paced output (GPT-Live): deltas end mid-frame and the next arrives just as it is needed. A
    spurt starts one frame late, so a delta a little late still joins it; less than a frame left
    with nothing more for 40 ms is the end of what was said: sent padded at once."""
    clock = ManualClock()
    pacer, playout, endpoint = paced(clock, start_delay_s=0.02, partial_wait_s=0.04)
    t0 = clock.now
    playout.push("a", frames(1) + bytes([2]) * 100)          # 32.5 ms of audio
    pacer.kick(received_at=0.0)
    assert endpoint.times == [] and [t.when for t in clock.pending()] == [t0 + 0.02]   # held a frame
    clock.advance_to(t0 + 0.02)
    assert endpoint.times == [t0 + 0.02]
    clock.advance_to(t0 + 0.035)
    playout.push("a", bytes([2]) * 60 + bytes([3]) * 100)     # the next delta, 12.5 ms later than its audio starts
    pacer.kick()                                              # running: joins the deadlines
    clock.advance_to(t0 + 0.04)
    assert [p.payload for p in endpoint.packets] == [frames(1), frames(2)]
    assert [p.marker for p in endpoint.packets] == [True, False]
    clock.advance_to(t0 + 0.06)                               # 100 bytes left: the spurt ends, the wait starts
    assert len(endpoint.sent) == 2 and [t.when for t in clock.pending()] == [pytest.approx(t0 + 0.10)]
    clock.advance_to(t0 + 0.10)                               # nothing came: the stub goes out padded, at once
    assert endpoint.times[-1] == pytest.approx(t0 + 0.10)
    assert endpoint.packets[-1].payload == bytes([3]) * 100 + bytes([0xFF]) * 60
    clock.advance_to(t0 + 0.2)
    assert playout.played["a"] == 420 and not pacer.running and clock.pending() == []
    assert pacer.metrics.first_frame_latency.count == 1


def test_real_time_audio_that_comes_within_the_wait_is_not_padded() -> None:
    clock = ManualClock()
    pacer, playout, endpoint = paced(clock, start_delay_s=0.02, partial_wait_s=0.04)
    t0 = clock.now
    playout.push("a", bytes([1]) * 240)                       # a frame and a half
    pacer.kick()
    clock.advance_to(t0 + 0.04)                               # the half frame waits
    clock.advance_to(t0 + 0.07)                               # 30 ms into the wait: the rest arrives
    playout.push("a", bytes([1]) * 80)
    pacer.kick(received_at=None)
    assert [t.when for t in clock.pending()] == [pytest.approx(t0 + 0.09)]   # a new spurt, a frame later; no wait
    clock.advance_to(t0 + 0.2)
    assert [p.payload for p in endpoint.packets] == [frames(1), frames(1)]   # no padding in the middle


def test_a_turns_response_latency_counts_from_the_callers_last_word_to_the_first_frame_sent(monkeypatch) -> None:
    """Call: SpeechStopped starts the clock (minus the silence the backend says turn detection
    waited), the AI answer's first RTP frame stops it; an answer with no caller turn before it has
    no latency. Only the two core methods run, on a stand-in with what they use."""
    from types import SimpleNamespace

    from aribot.core import call as core_call
    from aribot.core import events as ev

    now = [100.0]
    monkeypatch.setattr(core_call.time, "perf_counter", lambda: now[0])
    sent: list[Any] = []
    call = SimpleNamespace(id="c1", _speech_stopped_at=None, _item_response={"a1": "r1"},
                           app=SimpleNamespace(bus=SimpleNamespace(emit=lambda _sender, event: sent.append(event))))
    call.emit = lambda event: core_call.Call.emit(call, event)
    call.emit(ev.SpeechStopped(call_id="c1", item_id="u1", silence_ms=500.0))   # the caller's last word: 99.5
    now[0] = 100.35
    core_call.Call._on_first_frame(call, "a1", 0.0)
    call.emit(ev.SpeechStopped(call_id="c1", item_id="u2"))                     # undated: counts from the event
    now[0] = 101.0
    core_call.Call._on_first_frame(call, "a2", 0.0)
    core_call.Call._on_first_frame(call, "a3", 0.0)                             # no caller turn before it
    started = [e for e in sent if isinstance(e, ev.BotAudioStarted)]
    assert [(e.item_id, e.response_id) for e in started] == [("a1", "r1"), ("a2", ""), ("a3", "")]
    assert started[0].latency_ms == pytest.approx(850.0)
    assert started[1].latency_ms == pytest.approx(650.0)
    assert started[2].latency_ms is None


def test_dropping_one_item_leaves_the_others_and_the_next_item_is_announced() -> None:
    """aribot's own audio (the hold sound) is dropped alone when the tool returns; the AI's item that
    follows it at once is announced by its first frame although the talk-spurt goes on (no marker)."""
    clock, firsts = ManualClock(), []
    pacer, playout, endpoint = paced(clock, on_first_frame=lambda item, t: firsts.append(item))
    playout.push("aribot-hold", frames(1, 2, 3, 4))
    assert playout.queued_bytes("aribot-hold") == 4 * FRAME_BYTES and not playout.others_queued("aribot-hold")
    pacer.kick()
    clock.advance_to(clock.now + FRAME_SECONDS)        # two hold frames out
    playout.push("ai-1", frames(9, 9))
    assert playout.others_queued("aribot-hold") and playout.others_queued("ai-1")
    assert playout.drop("aribot-hold") == 2 * FRAME_BYTES and playout.drop("aribot-hold") == 0
    assert playout.queued_bytes("ai-1") == 2 * FRAME_BYTES   # the AI's audio stays
    clock.advance_to(clock.now + 2 * FRAME_SECONDS)
    assert [p.payload for p in endpoint.packets] == [frames(1), frames(2), frames(9), frames(9)]
    assert [p.marker for p in endpoint.packets] == [True, False, False, False]
    assert firsts == ["aribot-hold", "ai-1"]


def test_one_ai_item_straight_after_another_goes_on_as_one_spurt() -> None:
    clock, firsts = ManualClock(), []
    pacer, playout, endpoint = paced(clock, on_first_frame=lambda item, t: firsts.append(item))
    playout.push("ai-1", frames(1, 2))
    playout.push("ai-2", frames(3))
    pacer.kick()
    clock.advance_to(clock.now + 2 * FRAME_SECONDS)
    assert [p.payload for p in endpoint.packets] == [frames(1), frames(2), frames(3)]
    assert firsts == ["ai-1"] and [p.marker for p in endpoint.packets] == [True, False, False]
