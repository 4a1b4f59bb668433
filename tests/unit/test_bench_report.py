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


def test_browser_runs_are_placed_against_the_spread_of_the_runs_without() -> None:
    from benchmarks.bench_browser import compare, place, report, summary
    assert [place(v, [1.0, 2.0]) for v in (0.5, 1.0, 1.5, 2.0, 2.5, None)] == [
        "below", "within", "within", "within", "above", "n/a"]
    assert place(1.0, []) == "n/a" and place(3, [3]) == "within"
    without = [capacity_step(50, 900, 5.0, 150), capacity_step(50, 1200, 6.0, 150)]
    within, late = capacity_step(50, 1000, 7.0, 150), capacity_step(50, 2500, 6.5, 150)
    late.pacing_slips = 2
    late.watch_cpu_s = 3.0
    rows = {name: (base, seen, places) for name, base, seen, places in compare(without, [within, late])}
    assert rows["window: pacing p99 (ms)"] == ([0.9, 1.2], [1.0, 2.5], ["within", "above"])
    assert rows["whole calls: pacer slips"] == ([0, 0], [0, 2], ["within", "above"])
    assert rows["window: aribot CPU (% of 1 core)"][2] == ["above", "above"]
    text = summary(without, [within, late])
    assert "- window: pacing p99 (ms): without browsers 0.90–1.20; with: 1.00 within, 2.50 above" in text
    assert "- whole calls: pacer slips: without browsers 0–0; with: 0 within, 2 above" in text
    lines = text.splitlines()
    assert lines[-3] == ("verdict, window (the pages open and drawn): above the spread of the 2 runs without browsers: "
                         "pacing p99 (ms) (1 of 2 runs)")
    assert lines[-2] == ("verdict, whole calls (the pages' opening included): above the spread of the 2 runs without "
                         "browsers: pacer slips (1 of 2 runs)")
    assert lines[-1] == "aribot's CPU in the window: +6.2 points of a core with the console open (medians)"  # 33.75 against 27.5 %
    calm = summary(without, [within]).splitlines()
    assert calm[-3:-1] == [
        "verdict, window (the pages open and drawn): every pacing figure within (or below) the spread of the 2 runs without browsers",
        "verdict, whole calls (the pages' opening included): every pacing figure within (or below) the spread of the 2 "
        "runs without browsers"]
    assert "has no spread" in summary(without[:1], [within])
    table = report([(False, without[0]), (True, late)])
    assert "| 1 | none | 50 / 50 | 0.10 / 0.90 / 9.00 | 0.91 / 0.91 / 0.91 | 0.11 | 0 / 0 | 25.0 | - | 50.0 |" in table
    assert "| 2 | 2 open | 50 / 50 | 0.10 / 2.50 / 9.00 | 0.91 / 0.91 / 0.91 | 0.11 | 0 / 2 | 32.5 | 15.0 | 50.0 |" in table


def test_process_tree_cpu_counts_children(tmp_path) -> None:
    import os
    import subprocess
    import sys

    from benchmarks.bench_browser import tree_cpu_s
    from benchmarks.bench_calls import proc_cpu_s
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert tree_cpu_s(os.getpid()) >= proc_cpu_s(os.getpid()) + proc_cpu_s(child.pid) - 1e-9
    finally:
        child.communicate(b"")
    assert tree_cpu_s(2 ** 22 + 7) == 0.0   # no such process


def test_opening_profile_sorts_main_thread_time_and_finds_stalls() -> None:
    from benchmarks.bench_browser import category, opening_summary
    assert category([("run", "asyncio/runners.py"), ("FileResponse.__call__", "starlette/responses.py")]).startswith(
        "static files")
    assert category([("get_code", "<frozen importlib._bootstrap_external>")]) == "imports"
    assert category([("Transcript.update", "plugins/ui_nicegui/pages.py")]).startswith("the dashboard")
    assert category([("run_asgi", "uvicorn/protocols/http/h11_impl.py")]) == "HTTP and socket.io"
    assert category([("Pacer._tick", "core/playout.py")]).startswith("the calls")
    frames = [{"name": "EpollSelector.select", "file": "selectors.py"}, {"name": "Pacer._tick", "file": "core/playout.py"},
              {"name": "_compress_body", "file": "starlette/middleware/gzip.py"}, {"name": "main", "file": "core/cli.py"}]
    idle, pacer, gzip = [3, 0], [3, 1], [3, 2]
    samples = [idle, gzip, gzip, gzip, pacer, idle, pacer, idle, idle, gzip]
    profile = {"shared": {"frames": frames}, "profiles": [
        {"name": 'Thread 2 "aribot-history_0"', "samples": [idle], "weights": [0.5]},
        {"name": 'Thread 1 "MainThread"', "samples": samples, "weights": [0.01] * len(samples)}]}
    assert opening_summary(profile) == ("busy 0.06 s of 0.1 s: 67 % static files (FileResponse, GZip), 33 % the calls "
                                        "(RTP, AI service, pacer, bus, history); longest busy stretches (ms): 40, 10, 10, 0, 0")
    profile["profiles"][1]["samples"] = [idle] * len(samples)
    assert opening_summary(profile) == "idle for 0.1 s"


def test_window_profile_shares_by_category(tmp_path) -> None:
    from benchmarks.bench_browser import window_summary
    raw = tmp_path / "profile.txt"
    raw.write_text("main (core/cli.py:1);EpollSelector.select (selectors.py:468) 50\n"
                   "Thread.run (threading.py:982);_worker (concurrent/futures/thread.py:81) 20\n"
                   "main (core/cli.py:1);Pacer._tick (core/playout.py:80) 30\n"
                   "main (core/cli.py:1);tick (plugins/ui_nicegui/pages.py:66);update_rows (nicegui/elements/table.py:9) 10\n")
    assert window_summary(raw) == ("40 samples: 75 % the calls (RTP, AI service, pacer, bus, history), "
                                   "25 % the dashboard (NiceGUI, its pages and live state)")
    raw.write_text("")
    assert window_summary(raw) == "no samples"
