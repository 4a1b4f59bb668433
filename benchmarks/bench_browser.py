"""Dashboard benchmark: does a supervisor's open console disturb the pacing of live calls?

Run as root:  ./scripts/bench capacity --browser   (50 calls, 3 runs of each kind)
   or, after scripts/setup:  .venv/bin/python -m benchmarks.bench_browser --calls 50 --runs 3

The capacity benchmark's rig (``benchmarks/bench_capacity.py`` ``run_step``: ``aribot serve`` pinned
to CPU 0, the simulated Asterisk and the fake backend on the other CPUs), with the dashboard on in
aribot as ``aribot serve`` starts it (``ui.enabled``, a free ``ui.port``; the ui_nicegui plugin's
``startup`` serves it from aribot's own event loop). Runs alternate, ``--runs`` of each, so
run-to-run spread is visible next to the effect:

- *without*: the dashboard served, no page open;
- *with*: two headless Chromiums (Debian's, driven with selenium as in
  tests/integration/test_dashboard.py), one on the live calls page ``/``, one on the first call's
  page ``/call/<id>`` (transcript and level meters). They open once every call is connected, and
  the window starts only once the home page lists every call, the call page shows its call and
  neither has loaded a file for 2 s; after the window both are read again (rows, speakers,
  transcript bubbles, meter levels): the printed check says what the pages showed, so a blank page
  cannot pass for a measurement.

Every run's window starts as long after the calls connected (``--lead``), with or without pages.
So the window's figures (pacing at the simulated Asterisk, CPU) are the steady state with the
console open; the whole-call figures (frame lateness, bot-audio latency, pacer slips, from each
call's ``call.ended`` statistics) include the pages' opening.

The browsers are pinned to the load's CPUs: on a 2-core machine they compete with the rig, not
with aribot's core. Their CPU (the whole chromedriver/Chromium process tree, from /proc, reaped
children included) is reported apart from aribot's and the rig's.

Per run it prints pacing |Δ−20 ms| p50/p99/max at the simulated Asterisk, frame lateness
p50/p99/max (aribot's clock), bot-audio latency p99, pacer slips, aribot's and the browsers' CPU,
then per figure whether the with-browser runs lie within the spread (lowest to highest) of the
without-browser runs. ``--profile`` samples aribot with py-spy in every window (the steady state),
``--profile-open`` while the browsers open the pages (until no file has loaded for 2 s) and says what
aribot's main thread was busy with and its longest busy stretches (each one stalls every call's
pacer). This is a benchmark: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from aribot.sandbox.ports import free_tcp_port
from benchmarks.bench_calls import CLK_TCK
from benchmarks.bench_capacity import (
    BIN,
    Step,
    add_run_arguments,
    fmt,
    ms,
    pin,
    placement,
    run_step,
    summarize_profile,
    where,
)

# the figures compared between the runs with and without browsers; lower is better for each. "window":
# the measured window, the pages open and drawn; "whole calls": answer to hang-up, the pages' opening included
FIGURES: list[tuple[str, Callable[[Step], float | None]]] = [
    ("window: pacing p99 (ms)", lambda s: s.pacing_us["p99"] / 1000 if s.pacing_us.get("n") else None),
    ("window: pacing max (ms)", lambda s: s.pacing_us["max"] / 1000 if s.pacing_us.get("n") else None),
    ("whole calls: frame lateness p99 (ms)", lambda s: s.hist("pacing_lateness_ms", 99)),
    ("whole calls: frame lateness max (ms)", lambda s: s.hist("pacing_lateness_ms", 100)),
    ("whole calls: pacer slips", lambda s: s.pacing_slips),
    ("whole calls: bot-audio latency p99 (ms)", lambda s: s.hist("first_frame_latency_ms", 99)),
    ("window: aribot CPU (% of 1 core)", lambda s: s.core_pct),
]
CPU_FIGURE = FIGURES[-1][0]

RESOURCES = "return performance.getEntriesByType('resource').length;"
QUIET_S = 2.0
HOME_ROWS = """return Array.from(document.querySelectorAll('.q-table tbody tr'))
         .map(r => ({text: r.innerText, href: r.querySelector("a[href^='/call/']")?.getAttribute('href')}));"""
CALL_PAGE = """return {title: document.querySelector('.text-2xl')?.innerText || '',
         bubbles: document.querySelectorAll('.q-message').length,
         words: Array.from(document.querySelectorAll('.q-message-text')).map(m => m.innerText).join(' ').length,
         meters: Array.from(document.querySelectorAll('.q-linear-progress')).map(m => m.getAttribute('aria-valuenow'))};"""


def tree_cpu_s(root: int) -> float:
    """CPU seconds of a process and all its descendants so far, from /proc: utime+stime of each,
    plus cutime+cstime (what its children that ended and were reaped had used)."""
    stats: dict[int, list[str]] = {}
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        stats[int(entry.name)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += sum(int(value) for value in stats[pid][11:15])
        todo.extend(children.get(pid, []))
    return total / CLK_TCK


def start_chromium(user_data: Path, cpus: set[int]) -> Any:
    """tests/integration/test_dashboard.py's headless Chromium, started on ``cpus`` (this thread's
    affinity is what chromedriver, and so Chromium, inherit)."""
    from tests.integration.test_dashboard import chromium

    before = os.sched_getaffinity(0)
    if cpus:
        os.sched_setaffinity(0, cpus)
    try:
        return chromium(user_data)
    finally:
        os.sched_setaffinity(0, before)


class Browsers:
    """Two headless Chromiums on the dashboard of the aribot under test: the live calls page and
    one live call's page (a bench_capacity ``Watch``); with ``pages`` false none, only a check that
    the dashboard is served."""

    def __init__(self, ui_port: int, cpus: set[int], workdir: Path, pages: bool = True, lead_s: float = 0.0,
                 timeout: float = 30.0, profile_open: bool = False) -> None:
        self.port = ui_port
        self.lead_s = lead_s
        self.profile_open = profile_open
        self.base = f"http://127.0.0.1:{ui_port}"
        self.cpus = cpus
        self.workdir = workdir
        self.pages = pages
        self.timeout = timeout
        self.drivers: list[Any] = []
        self.call_path = ""

    async def open(self, step: Step, aribot_pid: int) -> None:
        """Open the pages (or only check the dashboard is served), then wait until ``lead_s`` has
        passed since this began, so that every run's window starts as long after the calls connected."""
        start = time.monotonic()
        _, writer = await asyncio.open_connection("127.0.0.1", self.port)  # refused if the dashboard is not served
        writer.close()
        await writer.wait_closed()
        if self.pages:
            await self.open_pages(step, aribot_pid)
        else:
            step.watch_checks.append(f"dashboard listening on port {self.port}, no page open")
        took = time.monotonic() - start
        if took > self.lead_s:
            step.notes.append(f"opening the pages took {took:.1f} s, more than --lead {self.lead_s:.0f} s")
        await asyncio.sleep(self.lead_s - took)

    async def open_pages(self, step: Step, aribot_pid: int) -> None:
        for name in ("home", "call"):
            self.drivers.append(await asyncio.to_thread(start_chromium, self.workdir / f"chromium-{name}", self.cpus))
        home, call = self.drivers
        profiler, profile = None, self.workdir / "opening.speedscope.json"
        if self.profile_open:
            profiler = await asyncio.create_subprocess_exec(
                str(BIN / "py-spy"), "record", "--nonblocking", "--idle", "-p", str(aribot_pid), "-r", "200",
                "-f", "speedscope", "-o", str(profile), stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL, preexec_fn=pin(self.cpus))
            await asyncio.sleep(0.5)
        opened = time.monotonic()
        await asyncio.to_thread(home.get, self.base + "/")
        rows = await self.until(home, HOME_ROWS, lambda rows: sum(bool(r["href"]) for r in rows) >= step.connected,
                                "every call listed")
        self.call_path = rows[0]["href"]
        await asyncio.to_thread(call.get, self.base + self.call_path)
        await self.until(call, CALL_PAGE, lambda page: page["title"].startswith("Call from") and len(page["meters"]) == 2,
                         "the call shown")
        levels = set()
        for _ in range(5):  # the meters redraw 5 times a second: they move while the call talks
            levels.add(tuple((await asyncio.to_thread(call.execute_script, CALL_PAGE))["meters"]))
            await asyncio.sleep(0.2)
        settled, loaded = await self.settle(opened)
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its file and exits
            await profiler.wait()
        step.watch_checks.append(f"before the window: {await self.look(step)}; call page meters took "
                                 f"{len(levels)} different values in 1 s; pages settled ({loaded} files loaded, none "
                                 f"for {QUIET_S:.0f} s), the last {settled:.1f} s after the home page was asked for")
        if profiler is not None:
            step.watch_checks.append("the opening, aribot's main thread (py-spy, 200 Hz): "
                                     + opening_summary(json.loads(profile.read_text())))

    async def settle(self, since: float) -> tuple[float, int]:
        """Wait until neither page has loaded a file for QUIET_S (a page keeps fetching components and
        fonts after it first shows): the opening stays out of the window. (when the last file was
        seen, in seconds after ``since``; files loaded)"""
        start = time.monotonic()
        seen: list[int] = []
        quiet_since = start
        while time.monotonic() - quiet_since < QUIET_S and time.monotonic() - start < self.timeout:
            now = [await asyncio.to_thread(driver.execute_script, RESOURCES) for driver in self.drivers]
            if now != seen:
                seen, quiet_since = now, time.monotonic()
            await asyncio.sleep(0.25)
        return quiet_since - since, sum(seen)

    async def until(self, driver: Any, script: str, ok: Callable[[Any], Any], what: str) -> Any:
        deadline = time.monotonic() + self.timeout
        while True:
            seen = await asyncio.to_thread(driver.execute_script, script)
            if ok(seen):
                return seen
            if time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not show {what} within {self.timeout:.0f} s: {seen!r}")
            await asyncio.sleep(0.2)

    async def look(self, step: Step) -> str:
        """What the two pages show right now."""
        home, call = self.drivers
        rows = await asyncio.to_thread(home.execute_script, HOME_ROWS)
        live = sum("ended" not in row["text"] for row in rows)
        speaking = {who: sum(row["text"].split("\t")[5:6] == [who] for row in rows) for who in ("caller", "AI")}
        page = await asyncio.to_thread(call.execute_script, CALL_PAGE)
        return (f"home page {len(rows)} rows ({live} live of {step.connected} calls; speaking: {speaking['caller']} "
                f"caller, {speaking['AI']} AI); call page {self.call_path} {page['title']!r}, {page['bubbles']} "
                f"transcript bubbles ({page['words']} characters), meters caller/AI {'/'.join(map(str, page['meters']))}")

    def cpu_s(self) -> float:
        return sum(tree_cpu_s(driver.service.process.pid) for driver in self.drivers)

    async def check(self, step: Step) -> None:
        if self.drivers:
            step.watch_checks.append(f"after the window: {await self.look(step)}")

    async def close(self) -> None:
        for driver in self.drivers:
            await asyncio.to_thread(driver.quit)
        self.drivers = []


def number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.2f}"


def idle(function: str) -> bool:
    """A stack whose innermost Python function is this waits: the loop in epoll, a worker thread
    (the history writer, AnyIO's) for work."""
    return function.rsplit(".", 1)[-1] in ("select", "_worker", "wait", "get")


def category(stack: list[tuple[str, str]]) -> str:
    """What a main-thread stack (outermost first, (function, file) pairs) is busy with."""
    files = " ".join(file for _, file in stack)
    if any("FileResponse" in name for name, _ in stack) or "gzip.py" in files:
        return "static files (FileResponse, GZip)"
    if "<frozen importlib" in files:
        return "imports"
    if "nicegui" in files:
        return "the dashboard (NiceGUI, its pages and live state)"
    if any(lib in files for lib in ("starlette", "uvicorn", "fastapi", "engineio", "socketio", "anyio")):
        return "HTTP and socket.io"
    return "the calls (RTP, AI service, pacer, bus, history)"


def opening_summary(speedscope: dict[str, Any], top: int = 5) -> str:
    """py-spy's speedscope profile (with idle samples, in time order) -> how long aribot's main thread
    was busy, on what, and its longest busy stretches: each one a stall of every call's pacer."""
    frames = [(frame["name"], frame.get("file", "")) for frame in speedscope["shared"]["frames"]]
    main = next(p for p in speedscope["profiles"] if "MainThread" in p["name"])
    busy: dict[str, float] = {}
    stretches, run, total = [], 0.0, 0.0
    for sample, weight in zip(main["samples"], main["weights"]):
        total += weight
        if not sample or idle(frames[sample[-1]][0]):
            stretches.append(run)
            run = 0.0
            continue
        run += weight
        kind = category([frames[i] for i in sample])
        busy[kind] = busy.get(kind, 0.0) + weight
    stretches.append(run)
    spent = sum(busy.values())
    if not spent:
        return f"idle for {total:.1f} s"
    longest = ", ".join(f"{1000 * t:.0f}" for t in sorted(stretches, reverse=True)[:top])
    return f"busy {spent:.2f} s of {total:.1f} s: {shares(busy)}; longest busy stretches (ms): {longest}"


def window_summary(path: Path) -> str:
    """py-spy's raw (collapsed) stacks of a window (run_step's --profile) -> aribot's samples by what
    they were busy with, every thread, waiting left out."""
    busy: dict[str, float] = {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or not stack:
            continue
        frames = [(name, file) for name, _, file in (frame.partition(" (") for frame in stack.split(";"))]
        if not idle(frames[-1][0]):
            kind = category(frames)
            busy[kind] = busy.get(kind, 0) + int(count)
    return f"{sum(busy.values()):.0f} samples: {shares(busy)}" if busy else "no samples"


def shares(busy: dict[str, float]) -> str:
    total = sum(busy.values())
    return ", ".join(f"{100 * t / total:.0f} % {kind}" for kind, t in sorted(busy.items(), key=lambda kv: -kv[1]))


def place(value: float | None, spread: list[float]) -> str:
    """Where ``value`` lies against the lowest to highest of ``spread``: within, above or below."""
    if value is None or not spread:
        return "n/a"
    if value > max(spread):
        return "above"
    return "below" if value < min(spread) else "within"


def compare(without: list[Step], with_browsers: list[Step]) -> list[tuple[str, list[float], list[float], list[str]]]:
    """Per figure: the without-browser values, the with-browser values and where each of those lies."""
    rows = []
    for name, value in FIGURES:
        base = [v for v in map(value, without) if v is not None]
        seen = [v for v in map(value, with_browsers) if v is not None]
        rows.append((name, base, seen, [place(v, base) for v in seen]))
    return rows


def summary(without: list[Step], with_browsers: list[Step]) -> str:
    """One line per figure, then the verdicts: do the with-browser pacing figures lie within the
    spread of the without-browser runs (lower counts as within: the browsers cannot improve pacing),
    in the window and over whole calls, and how much CPU the open console costs aribot."""
    lines: list[str] = []
    above: dict[str, list[str]] = {"window": [], "whole calls": []}
    for name, base, seen, places in compare(without, with_browsers):
        if not base or not seen:
            lines.append(f"- {name}: not measured")
            continue
        spread = number(min(base)) if len(base) == 1 else f"{number(min(base))}–{number(max(base))}"
        lines.append(f"- {name}: without browsers {spread}; with: " + ", ".join(f"{number(v)} {p}" for v, p in zip(seen, places)))
        if name != CPU_FIGURE and "above" in places:
            part, _, figure = name.partition(": ")
            above[part].append(f"{figure} ({places.count('above')} of {len(places)} runs)")
    runs = f"{len(without)} run{'s' if len(without) > 1 else ''} without browsers"
    for part, what in (("window", "the pages open and drawn"), ("whole calls", "the pages' opening included")):
        lines.append(f"verdict, {part} ({what}): " + (f"above the spread of the {runs}: " + "; ".join(above[part])
                                                      if above[part] else f"every pacing figure within (or below) the spread of the {runs}"))
    if len(without) < 2:
        lines.append("(a single run without browsers has no spread: repeat with --runs 3)")
    cpu_base = [v for v in map(FIGURES[-1][1], without) if v is not None]
    cpu_seen = [v for v in map(FIGURES[-1][1], with_browsers) if v is not None]
    if cpu_base and cpu_seen:
        lines.append(f"aribot's CPU in the window: {statistics.median(cpu_seen) - statistics.median(cpu_base):+.1f} points "
                     f"of a core with the console open (medians)")
    return "\n".join(lines)


def report(runs: list[tuple[bool, Step]]) -> str:
    lines = [
        "| run | browsers | connected / ended ok | window: pacing \\|Δ−20 ms\\| p50 / p99 / max (ms) "
        "| whole calls: frame lateness p50 / p99 / max (ms) | whole calls: bot-audio latency p99 (ms) "
        "| whole calls: dropped / pacer slips | window: aribot CPU (% of 1 core) | window: browsers CPU (% of 1 core) "
        "| window: rig load CPU (%) |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    for number, (browsers, s) in enumerate(runs, 1):
        share = (lambda cpu: fmt(100 * cpu / s.window_s, 1)) if s.window_s else (lambda cpu: "-")
        lines.append(
            f"| {number} | {'2 open' if browsers else 'none'} | {s.connected} / {s.ended_ok} | {ms(s.pacing_us, 'p50')} / "
            f"{ms(s.pacing_us, 'p99')} / {ms(s.pacing_us, 'max')} | {fmt(s.hist('pacing_lateness_ms', 50))} / "
            f"{fmt(s.hist('pacing_lateness_ms', 99))} / {fmt(s.hist('pacing_lateness_ms', 100))} | "
            f"{fmt(s.hist('first_frame_latency_ms', 99))} | {s.dropped} / {s.pacing_slips} | {share(s.cpu_s)} | "
            f"{share(s.watch_cpu_s) if browsers else '-'} | {share(s.load_cpu_s)} |")
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50, help="concurrent calls in every run")
    parser.add_argument("--runs", type=int, default=3, help="runs of each kind, alternating: without, with, without …")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/aribot-browser"), help="logs, history, profiles")
    parser.add_argument("--lead", type=float, default=15.0,
                        help="seconds from the rig's 3 s settle after all calls connected to the window, the same "
                             "in every run (the browsers open in them)")
    parser.add_argument("--profile-open", action="store_true",
                        help="sample aribot with py-spy while the browsers open the pages (until they settle) and "
                             "say what its main thread was busy with")
    add_run_arguments(parser)
    args = parser.parse_args()
    args.aribot_env = dict(item.split("=", 1) for item in args.aribot_env)
    aribot_cpus, load_cpus, _ = placement(args.no_pin)
    runs: list[tuple[bool, Step]] = []
    profiles: list[tuple[int, str]] = []
    for run in range(args.runs):
        for browsers in (False, True):
            number = len(runs) + 1
            print(f"run {number} of {2 * args.runs}: {args.calls} calls, {'two browsers' if browsers else 'no browser'} "
                  "on the dashboard ...", file=sys.stderr)
            ui_port = free_tcp_port()
            run_args = argparse.Namespace(**{**vars(args), "aribot_env": {
                "ARIBOT_UI__ENABLED": "true", "ARIBOT_UI__PORT": str(ui_port), **args.aribot_env}})
            workdir = args.workdir / f"run{number}"
            watch = Browsers(ui_port, load_cpus, workdir, pages=browsers, lead_s=args.lead, profile_open=args.profile_open)
            step = await run_step(args.calls, run_args, workdir, aribot_cpus, load_cpus, watch)
            runs.append((browsers, step))
            for line in step.notes + step.watch_checks:
                print(f"  {line}", file=sys.stderr)
            if args.profile:
                profile = workdir / "profile.txt"
                shares = f"{window_summary(profile)}\n" if args.profile == "aribot" else ""
                profiles.append((number, shares + summarize_profile(profile)))
    settings = " ".join(f"{k}={v}" for k, v in args.aribot_env.items()) or "default settings"
    title = (f"aribot with the dashboard open, backend {args.backend}, {time.strftime('%Y-%m-%d %H:%M')}, "
             f"{where(aribot_cpus, load_cpus, args.backend)}, the browsers on CPU "
             f"{','.join(map(str, sorted(load_cpus))) or 'any'}; {settings}; {args.calls} calls, {args.window:.0f} s window "
             f"from {3 + args.lead:.0f} s after the last call connected")
    print(title + "\n")
    print(report(runs))
    print("\nwindow: the measured window, every call live and the pages open and drawn; whole calls: answer to "
          "hang-up (call.ended statistics), the pages' opening included")
    print("\npages seen by the browsers:")
    for number, (browsers, step) in enumerate(runs, 1):
        for line in step.watch_checks:
            print(f"- run {number}, {line}")
    print("\n" + summary([s for b, s in runs if not b], [s for b, s in runs if b]))
    for number, text in profiles:
        print(f"\nprofile of {args.profile} in run {number} (py-spy, 100 Hz, the whole window): {text}")
    if args.json:
        args.json.write_text(json.dumps({"title": title, "runs": [{"browsers": b, "step": asdict(s)} for b, s in runs]},
                                        indent=1))


if __name__ == "__main__":
    asyncio.run(main())
