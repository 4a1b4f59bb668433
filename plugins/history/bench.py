"""Cost of recording call events: ``python -m aribot.plugins.history.bench [path] [--calls N]``.

Prints the event loop's cost per ``submit()`` and the worker thread's cost per committed write.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from aribot.core import events as ev
from aribot.plugins.history.store import HistoryStore


def call_events(call_id: str, turns: int = 4) -> list[ev.Event]:
    """A typical call: start, answer, per turn speech/transcripts/response/audio, end."""
    events: list[ev.Event] = [ev.CallStarted(call_id=call_id, channel_id=call_id, caller_number="+4930123"),
                              ev.CallAnswered(call_id=call_id)]
    for n in range(turns):
        user, bot = f"item_u{n}", f"item_b{n}"
        events += [ev.SpeechStarted(call_id=call_id, item_id=user), ev.SpeechStopped(call_id=call_id, item_id=user),
                   ev.Transcript(call_id=call_id, role="caller", item_id=user, text="I would like to know " * 3),
                   ev.ResponseStarted(call_id=call_id, response_id=f"resp{n}"),
                   ev.BotAudioStarted(call_id=call_id, response_id=f"resp{n}", item_id=bot, latency_ms=420.0),
                   ev.Transcript(call_id=call_id, role="assistant", item_id=bot, text="Sure, here it is. " * 4),
                   ev.ResponseDone(call_id=call_id, response_id=f"resp{n}", status="completed"),
                   ev.BotAudioStopped(call_id=call_id, item_id=bot)]
    events.append(ev.CallEnded(call_id=call_id, reason="caller_hangup", duration_s=42.0, stats={"rtp_in": 2100}))
    return events


async def bench(path: Path, calls: int) -> None:
    store = HistoryStore(path)
    await store.open()
    timed: list[float] = []
    original = store._write

    def write(event: ev.Event) -> None:
        start = time.perf_counter()
        original(event)
        timed.append(time.perf_counter() - start)

    store._write = write  # type: ignore[method-assign]
    submit: list[float] = []
    for n in range(calls):
        for event in call_events(f"bench-{n}"):
            start = time.perf_counter()
            store.submit(event)
            submit.append(time.perf_counter() - start)
        await asyncio.sleep(0)
    await store.flush()
    await store.close()

    def us(values: list[float]) -> str:
        values = sorted(values)
        return (f"p50 {statistics.median(values) * 1e6:.0f} µs, p99 {values[int(len(values) * 0.99)] * 1e6:.0f} µs, "
                f"max {values[-1] * 1e6:.0f} µs")
    print(f"{len(timed)} events of {calls} calls into {path}")
    print(f"event loop, submit(): {us(submit)}")
    print(f"worker thread, write + commit: {us(timed)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", nargs="?", help="database file (default: a temporary one)")
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench(Path(args.path or Path(tmp) / "bench.sqlite3"), args.calls))


if __name__ == "__main__":
    main()
