"""How fast aribot recovers from each injected fault, over repeated runs (a benchmark, not a test).

The scenarios are the suite's fault tests, against the lab Asterisk and the strict fake Realtime
server; each prints one figure line, collected here into a table:

    .venv/bin/python -m benchmarks.bench_faults --runs 5

- Realtime 1001 at the provider's session limit: gap until the new session was ready, caller
  audio lost (test_rollover)
- Realtime TCP path cut (no close frame): the same (test_rollover)
- ARI events WebSocket cut mid-call: time until reconnected (test_faults)
- Asterisk killed and started again / stopped and started: time until both live calls were
  ended and recorded (test_asterisk_restart)
- aribot killed mid-call and started again: time until the orphaned caller was released, the dead
  aribot's leg and bridge deleted and the record closed as crashed (test_aribot_crash)
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = [
    "tests/integration/test_rollover.py::test_provider_closing_at_its_session_limit_rolls_over_with_the_conversation",
    "tests/integration/test_rollover.py::test_a_cut_network_path_to_the_realtime_api_is_survived",
    "tests/integration/test_faults.py::test_ari_websocket_dropped_and_restored",
    "tests/integration/test_asterisk_restart.py",
    "tests/integration/test_aribot_crash.py",
]
PATTERNS = {
    "Realtime 1001 close: new session ready (ms)": r"rollover after a 1001 close: gap (\d+) ms",
    "Realtime 1001 close: caller audio lost (ms)": r"rollover after a 1001 close: gap \d+ ms, caller audio lost (\d+) ms",
    "Realtime TCP cut: new session ready (ms)": r"rollover after a cut TCP path: gap (\d+) ms",
    "Realtime TCP cut: caller audio lost (ms)": r"rollover after a cut TCP path: gap \d+ ms, caller audio lost (\d+) ms",
    "ARI WebSocket cut: reconnected (ms)": r"ARI events WebSocket cut mid-call: reconnected (\d+) ms",
    "Asterisk killed + started: calls ended (s)": r"Asterisk crash \+ start: both calls ended and recorded ([\d.]+) s",
    "Asterisk stopped + started: calls ended (s)": r"Asterisk stop \+ start: both calls ended and recorded ([\d.]+) s",
    "aribot killed + started: caller released (s)": r"aribot killed mid-call: the caller was released ([\d.]+) s",
}


def run_once() -> str:
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", *TESTS],
                         cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"a fault scenario failed:\n{out.stdout[-3000:]}")
    return out.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_faults", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="repetitions of every scenario (default 3)")
    args = parser.parse_args(argv)
    figures: dict[str, list[float]] = defaultdict(list)
    for run in range(args.runs):
        text = run_once()
        for name, pattern in PATTERNS.items():
            figures[name] += [float(m) for m in re.findall(pattern, text)]
        print(f"run {run + 1}/{args.runs} done", file=sys.stderr, flush=True)
    print("| fault | runs | min | median | max |\n|---|---|---|---|---|")
    for name in PATTERNS:
        values = figures[name]
        if values:
            print(f"| {name} | {len(values)} | {min(values):g} | {statistics.median(values):g} | {max(values):g} |")
        else:
            print(f"| {name} | 0 | - | - | - |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
