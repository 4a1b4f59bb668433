"""The benchmark's figure arithmetic (histogram merge and percentiles), so the table cannot rot."""

from __future__ import annotations

from benchmarks.bench_calls import StepResult, report
from core.metrics import CallMetrics


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
    from core.metrics import percentile
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0], 50) == 1.0 and percentile([3.0, 1.0], 51) == 3.0
    assert percentile(range(1, 101), 99) == 99 and percentile(range(1, 101), 100) == 100
