"""The benchmark's figure arithmetic (histogram merge and percentiles), so the table cannot rot."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aribot.core.metrics import CallMetrics
from benchmarks.bench_calls import StepResult, report

if TYPE_CHECKING:
    from benchmarks.bench_capacity import Step


def test_histograms_merge_across_calls_into_percentiles() -> None:
    step = StepResult(calls=2)
    for values in ([0.1] * 98 + [5.0, 5.0], [0.1] * 100):
        metrics = CallMetrics()
        for value in values:
            metrics.first_frame_latency.add(value)
        step.merge({"metrics": metrics.summary(histograms=True), "rtp_dropped": {"foreign_source": 1}})
    assert abs(step.hist_percentile("first_frame_latency_ms", 50) - 0.11) < 1e-9
    assert abs(step.hist_percentile("first_frame_latency_ms", 99.5) - 5.01) < 1e-9
    assert step.dropped_rtp == 2
    step.pacing_error_ms = [0.5, 1.5]
    assert "| 2 | 0 | 0.50 / 1.50 / 1.50 |" in report([step])


def test_nearest_rank_percentile() -> None:
    from aribot.core.metrics import percentile
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0], 50) == 1.0 and percentile([3.0, 1.0], 51) == 3.0
    assert percentile(range(1, 101), 99) == 99 and percentile(range(1, 101), 100) == 100


def capacity_step(calls: int, p99_us: int, cpu_s: float, rss_kb: int) -> "Step":
    from benchmarks.bench_capacity import Step
    step = Step(calls, connected=calls, ended_ok=calls, window_s=20.0, cpu_s=cpu_s, sys_s=cpu_s / 4,
                rss_idle_kb=60_000, rss_kb=60_000 + rss_kb * calls, load_cpu_s=10.0)
    step.pacing_us = {"n": 1000, "p50": 100, "p99": p99_us, "max": 9000}
    step.sim_send_late_us = {"n": 10, "p50": 50, "p99": 400, "max": 900}
    step.histograms = {"first_frame_latency_ms": {10: 99, 30: 1}, "inbound_latency_ms": {2: 100},
                       "pacing_lateness_ms": {90: 100}}
    return step


def test_capacity_table_conclusion_and_plot(tmp_path) -> None:
    from benchmarks.bench_capacity import conclusion, plot, report
    steps = [capacity_step(100, 900, 5.0, 140), capacity_step(200, 1900, 9.0, 138),
             capacity_step(400, 7500, 16.0, 136)]
    steps[1].input_dropped = 0
    table = report(steps)
    assert ("| 200 | 200 / 200 | 0.10 / 1.90 / 9.00 | 0.91 | 0.11 / 0.11 | 0.03 / 0.03 | 0 / 0 | 45.0 (11) | 135 | 138 "
            "| 0.40, 50 |") in table
    # the largest step within 2 ms p99, nothing dropped, < 1 MiB per call
    assert conclusion(steps, 1).startswith("largest step meeting the goal") and "200 calls on 1 core(s)" in conclusion(steps, 1)
    steps[1].lost_to_asterisk = 3                               # a lost frame disqualifies a step
    assert "100 calls on 1 core(s)" in conclusion(steps, 1)
    steps[1].lost_to_asterisk = 0
    again = capacity_step(200, 2500, 9.0, 138)                  # a second run of 200 calls misses the goal
    assert "100 calls on 1 core(s)" in conclusion(steps + [again], 1)
    assert "100 calls on 1 core(s)" in conclusion(two := steps[:1] + [capacity_step(100, 950, 6.0, 140)], 1)
    assert "every one of its 2 runs" in conclusion(two, 1)
    plot(steps, tmp_path / "capacity.png", "test")
    assert (tmp_path / "capacity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_profile_summary_ranks_own_and_inclusive_samples(tmp_path) -> None:
    from benchmarks.bench_capacity import summarize_profile
    raw = tmp_path / "profile.txt"
    raw.write_text("main (core/cli.py:1);feed (core/session.py:70);send_now (core/realtime.py:9) 6\n"
                   "main (core/cli.py:1);feed (core/session.py:75) 2\n"
                   "main (core/cli.py:1);select (selectors.py:468) 2\n")
    summary = summarize_profile(raw)
    assert summary.startswith("10 samples")
    lines = summary.splitlines()
    assert lines[1] == "   60.0 %  send_now (core/realtime.py)"
    assert "   80.0 %  feed (core/session.py)" in lines and not any("main (" in line for line in lines[5:])
