"""Capacity benchmark: how many concurrent calls one core of aribot carries with exact pacing.

Run as root:  ./scripts/bench capacity          (steps 50 100 200 400 by default)
   or, after scripts/setup:  .venv/bin/python -m benchmarks.bench_capacity --calls 50 100 200 400

Per step, three processes besides aribot:

- ``aribot serve`` exactly as in production (default plugins, history in SQLite, headless, activation
  mode ``immediate`` because the simulator sends no TALK_DETECT events), pinned to CPU 0;
- a simulated Asterisk (``benchmarks/sim_asterisk.py``): ARI REST + events WebSocket and every
  ExternalMedia leg's RTP, each call a caller that talks in turns (0.8 s speech, 2.5 s silence);
- the strict fake of the chosen backend's service (``--backend``, SDK validation off): Realtime
  (``tests.fake_realtime``) answering every caller turn with 1 s of audio sent 4x faster than real
  time, or GPT-Live (``tests.fake_gpt_live``) answering each with 1 s of audio paced in real time,
  as the service does (aribot then also streams silence between the caller's turns);
both pinned to the other CPUs, so aribot's core is its own and the figures are per core.

Calls are originated at ``--rate`` per second; once all are connected and 3 s have passed, a
window of ``--window`` seconds is measured:

- pacing: |interval - 20 ms| between consecutive frames of a talk-spurt as they reached the
  simulated Asterisk (kernel receive timestamps), p50/p99/max;
- frame lateness, bot-audio latency (AI delta received while idle -> first RTP frame sent) and
  inbound latency (caller RTP received -> input_audio_buffer.append sent): aribot's own clock,
  whole calls, from each call's ``call.ended`` statistics;
- dropped: RTP aribot dropped + caller frames it dropped before the AI + frames lost on the way to
  Asterisk (sequence gaps); pacer slips: times a call's pacer fell 3 frames (60 ms) behind and
  re-anchored (whole calls, ramp-up and hang-up included);
- aribot's CPU (user+sys from /proc) per call-minute and as % of one core; RSS per call (at the
  window's end minus before the first call, divided by the calls);
- the rig: the simulator's own send lateness p99 and the load processes' CPU.

It prints a table, writes the figures as JSON and, with ``--plot``, a PNG of CPU and memory
against calls. This is a benchmark: it prints figures and asserts nothing. ``run_step`` also takes
a ``Watch``, something a run adds around its window (``benchmarks/bench_browser.py``: browsers on
the dashboard).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from aribot.core.call import PACED_PLAYOUT
from aribot.core.metrics import histogram_percentile
from aribot.sandbox.ports import free_tcp_port, free_udp_port_range
from benchmarks.bench_calls import proc_cpu_s, proc_rss_kb, proc_times, wait_healthy

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@dataclass
class Step:
    calls: int
    connected: int = 0
    ended_ok: int = 0
    window_s: float = 0.0
    pacing_us: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, dict[int, int]] = field(default_factory=dict)
    rtp_dropped: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    input_dropped: int = 0
    lost_to_asterisk: int = 0
    pacing_slips: int = 0
    cpu_s: float = 0.0
    sys_s: float = 0.0  # of cpu_s, in the kernel
    load_cpu_s: float = 0.0
    load_cpu: dict[str, float] = field(default_factory=dict)
    rss_idle_kb: int = 0
    rss_kb: int = 0
    rx_window: int = 0
    tx_window: int = 0
    sim_send_late_us: dict[str, float] = field(default_factory=dict)
    setup_ms: dict[str, float] = field(default_factory=dict)
    appends: int = 0
    buffer_ms: float = 0.0   # the backend's deliberate playout buffer, which bot-audio latency includes
    notes: list[str] = field(default_factory=list)
    watch_cpu_s: float = 0.0  # CPU of what a Watch added (bench_browser: the browsers), in the window; not the rig's
    watch_checks: list[str] = field(default_factory=list)  # what the Watch saw (bench_browser: the pages' contents)

    def hist(self, name: str, q: float) -> float | None:
        return histogram_percentile(self.histograms.get(name, {}), q)

    @property
    def core_pct(self) -> float:
        return 100 * self.cpu_s / self.window_s if self.window_s else 0.0

    @property
    def cpu_ms_per_call_minute(self) -> float:
        return 1000 * self.cpu_s / (self.calls * self.window_s / 60) if self.window_s else 0.0

    @property
    def rss_per_call_kb(self) -> int:
        return (self.rss_kb - self.rss_idle_kb) // max(1, self.calls)

    @property
    def dropped(self) -> int:
        """Audio lost: RTP aribot dropped, caller frames it dropped, frames lost on the way to Asterisk."""
        return self.rtp_dropped + self.input_dropped + self.lost_to_asterisk

    def meets_goal(self) -> bool:
        p99 = self.pacing_us.get("p99")
        return (self.connected == self.calls and self.ended_ok == self.calls and p99 is not None and p99 <= 2000
                and (self.hist("first_frame_latency_ms", 99) or 0) < self.buffer_ms + 5 and self.dropped == 0 and self.pacing_slips == 0
                and self.rss_per_call_kb < 1024)


FAKES = {"openai_realtime": "tests.fake_realtime", "gpt_live": "tests.fake_gpt_live"}
# backends whose audio is paced from a small buffer (no truncate: see core/call.py PACED_PLAYOUT); the
# latency goal is measured beyond that buffer
PLAYOUT_BUFFER_MS = {"gpt_live": 1000 * PACED_PLAYOUT["start_delay_s"]}


def backend_env(backend: str, port: int) -> dict[str, str]:
    """aribot's settings for the backend under test, pointed at its fake on ``port``."""
    if backend == "gpt_live":
        return {"ARIBOT_AI__BACKEND": "gpt_live", "ARIBOT_GPT_LIVE__URL": f"ws://127.0.0.1:{port}/v1/live/sessions",
                "ARIBOT_GPT_LIVE__API_KEY": "test-key"}
    return {"ARIBOT_AI__BACKEND": "openai_realtime", "ARIBOT_OPENAI__URL": f"ws://127.0.0.1:{port}/v1/realtime",
            "ARIBOT_OPENAI__API_KEY": "test-key", "ARIBOT_OPENAI__VAD_SILENCE_DURATION_MS": "500"}


def pin(cpus: set[int]) -> Any:
    def apply() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)
    return apply


class Watch(Protocol):
    """What a run adds besides the calls, around its measured window (bench_browser: browsers on the
    dashboard). ``open`` runs once every call is connected (given aribot's pid), ``cpu_s`` brackets the
    window, ``check`` runs after it, ``close`` always."""

    async def open(self, step: Step, aribot_pid: int) -> None: ...

    def cpu_s(self) -> float: ...

    async def check(self, step: Step) -> None: ...

    async def close(self) -> None: ...


class Proc:
    """A child speaking JSON lines on stdin/stdout (the simulator)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def read(self, timeout: float = 120.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"simulator exited (code {await self.proc.wait()})")
        return json.loads(line)

    async def ask(self, timeout: float = 120.0, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()
        return await self.read(timeout)


async def run_step(calls: int, args: argparse.Namespace, workdir: Path, aribot_cpus: set[int],
                   load_cpus: set[int], watch: Watch | None = None) -> Step:
    step = Step(calls, buffer_ms=PLAYOUT_BUFFER_MS.get(args.backend, 0.0))
    workdir.mkdir(parents=True, exist_ok=True)
    history = workdir / "history.sqlite3"
    for leftover in workdir.glob("history.sqlite3*"):
        leftover.unlink()
    fake_port, ari_port, http_port = free_tcp_port(), free_tcp_port(), free_tcp_port()
    password = secrets.token_hex(8)
    load_env = dict(os.environ, PYTHONPATH=str(REPO))
    fake = await asyncio.create_subprocess_exec(
        str(BIN / "python"), "-m", FAKES[args.backend], "--port", str(fake_port), "--no-validate",
        "--keep-records", "200", cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=open(workdir / "fake.log", "w"),
        preexec_fn=pin(load_cpus), env=load_env)
    sim_proc = await asyncio.create_subprocess_exec(
        str(BIN / "python"), "-m", "benchmarks.sim_asterisk", "--port", str(ari_port), "--password", password,
        cwd=REPO, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=open(workdir / "sim.log", "w"), preexec_fn=pin(load_cpus), env=load_env)
    sim = Proc(sim_proc)
    assert (await sim.read(30))["event"] == "ready"
    low, high = free_udp_port_range(max(100, calls * 2))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARIBOT_")} | {
        "ARIBOT_ARI__URL": f"http://127.0.0.1:{ari_port}", "ARIBOT_ARI__PASSWORD": password,
        **backend_env(args.backend, fake_port), "ARIBOT_ACTIVATION__MODE": "immediate",
        "ARIBOT_RTP__PORT_MIN": str(low), "ARIBOT_RTP__PORT_MAX": str(high), "ARIBOT_HTTP__PORT": str(http_port),
        "ARIBOT_UI__ENABLED": "false", "ARIBOT_HISTORY__PATH": str(history),
        "ARIBOT_LOG__LEVEL": "WARNING", "ARIBOT_CALL__GREETING": "",
        "ARIBOT_TIMERS__NO_SPEECH_TIMEOUT": "0",
        "ARIBOT_CALL__MAX_CONCURRENT": "0"}  # the steps go past the default limit of 100 calls on purpose
    env.update(args.aribot_env)
    aribot = await asyncio.create_subprocess_exec(
        str(BIN / "aribot"), "serve", cwd=workdir, env=env, stderr=open(workdir / "aribot.log", "w"),
        preexec_fn=pin(aribot_cpus))
    load_pids = {"fake": fake.pid, "sim": sim_proc.pid}
    try:
        await wait_healthy(http_port)
        await asyncio.sleep(1.0)
        step.rss_idle_kb = proc_rss_kb(aribot.pid)
        reply = await sim.ask(cmd="originate", calls=calls, rate=args.rate)
        step.connected = reply["calls"]
        if reply["failed"]:
            step.notes.append(f"{reply['failed']} call(s) did not connect")
        await asyncio.sleep(3.0)
        if watch is not None:
            await watch.open(step, aribot.pid)
        await sim.ask(cmd="window", on=True)
        cpu0, sys0, t0 = proc_cpu_s(aribot.pid), proc_times(aribot.pid)[1], time.monotonic()
        load0 = {name: proc_cpu_s(pid) for name, pid in load_pids.items()}
        watch0 = watch.cpu_s() if watch is not None else 0.0
        profiler = None
        if args.profile:
            profiler = await asyncio.create_subprocess_exec(
                str(BIN / "py-spy"), "record", "--nonblocking", "-p", str(fake.pid if args.profile == "fake" else aribot.pid), "-r", "100", "-d", str(int(args.window)),
                "-f", "raw", "-o", str(workdir / "profile.txt"), stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL, preexec_fn=pin(load_cpus))
        await asyncio.sleep(args.window)
        if profiler is not None:
            await profiler.wait()
        step.cpu_s = proc_cpu_s(aribot.pid) - cpu0
        step.sys_s = proc_times(aribot.pid)[1] - sys0  # on loopback: includes delivery to the peers
        step.load_cpu = {name: proc_cpu_s(pid) - load0[name] for name, pid in load_pids.items()}
        step.load_cpu_s = sum(step.load_cpu.values())
        step.watch_cpu_s = watch.cpu_s() - watch0 if watch is not None else 0.0
        step.window_s = time.monotonic() - t0
        step.rss_kb = proc_rss_kb(aribot.pid)
        await sim.ask(cmd="window", on=False)
        if watch is not None:
            await watch.check(step)
        ended: list[dict[str, Any]] = []
        async with aiohttp.ClientSession() as session, session.ws_connect(
                f"http://127.0.0.1:{http_port}/logs", max_msg_size=0) as ws:
            await ws.receive()  # hello
            done = await sim.ask(cmd="hangup", timeout=60)
            deadline = time.monotonic() + 30
            while len(ended) < step.connected and time.monotonic() < deadline:
                try:
                    msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    break
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                event = json.loads(msg.data)
                if event["type"] == "call.ended":
                    ended.append(event)
        for event in ended:
            stats = event["stats"]
            if event["reason"] == "caller_hangup":
                step.ended_ok += 1
            for name, bins in stats["metrics"]["histograms"].items():
                target = step.histograms.setdefault(name, {})
                for index, count in bins.items():
                    target[int(index)] = target.get(int(index), 0) + count
            for reason, count in stats["rtp_dropped"].items():
                step.drops[reason] = step.drops.get(reason, 0) + count
            step.rtp_dropped += sum(stats["rtp_dropped"].values())
            step.input_dropped += stats.get("input_dropped_frames", 0)
            step.pacing_slips += stats["metrics"].get("pacing_slips", 0)
            step.appends += stats.get("appended_frames", 0)
        reasons = sorted({e["reason"] for e in ended})
        if reasons != ["caller_hangup"]:
            step.notes.append(f"end reasons {reasons}")
        step.pacing_us = done["pacing_us"]
        step.sim_send_late_us = done["send_late_us"]
        step.setup_ms = done["setup_ms"]
        step.lost_to_asterisk = done["lost"]
        step.rx_window, step.tx_window = done["rx_window"], done["tx_window"]
        if done["unexpected"]:
            step.notes.append(f"simulator got unexpected requests {done['unexpected']}")
        if done["left_legs"] or done["left_bridges"]:
            step.notes.append(f"left in the simulated Asterisk: {done['left_legs']} legs, {done['left_bridges']} bridges")
        if not done.get("sim_realtime"):
            step.notes.append("the simulator's RTP thread runs without real-time priority (not root?)")
        if done["slot_skips"]:
            step.notes.append(f"simulator stalled: {done['slot_skips']} ms of send slots skipped")
    finally:
        if watch is not None:
            await watch.close()
        for proc in (aribot, sim_proc, fake):
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 20)
                except asyncio.TimeoutError:
                    proc.kill()
                    await proc.wait()
    return step


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def ms(summary: dict[str, float], key: str) -> str:
    return fmt(summary[key] / 1000) if summary.get("n") else "-"


def report(steps: list[Step]) -> str:
    lines = [
        "| calls | connected / ended ok | pacing \\|Δ−20 ms\\| p50 / p99 / max (ms) | frame lateness p99 (ms) "
        "| bot-audio latency p50 / p99 (ms) | inbound latency p50 / p99 (ms) | dropped / pacer slips | aribot CPU (% of 1 core; kernel) "
        "| CPU ms per call-minute | RSS per call (KiB) | rig: sim send late p99 (ms), load CPU (%) |",
        "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in steps:
        lines.append(
            f"| {s.calls} | {s.connected} / {s.ended_ok} | {ms(s.pacing_us, 'p50')} / {ms(s.pacing_us, 'p99')} / "
            f"{ms(s.pacing_us, 'max')} | {fmt(s.hist('pacing_lateness_ms', 99))} | "
            f"{fmt(s.hist('first_frame_latency_ms', 50))} / {fmt(s.hist('first_frame_latency_ms', 99))} | "
            f"{fmt(s.hist('inbound_latency_ms', 50))} / {fmt(s.hist('inbound_latency_ms', 99))} | {s.dropped} / "
            f"{s.pacing_slips} | "
            f"{fmt(s.core_pct, 1)} ({fmt(100 * s.sys_s / s.window_s if s.window_s else None, 0)}) | "
            f"{fmt(s.cpu_ms_per_call_minute, 0)} | {s.rss_per_call_kb} | "
            f"{ms(s.sim_send_late_us, 'p99')}, {fmt(100 * s.load_cpu_s / s.window_s if s.window_s else None, 0)} |")
    return "\n".join(lines)


def conclusion(steps: list[Step], aribot_cores: int) -> str:
    """The largest call count whose every run met the goal, with its median CPU and memory."""
    by_calls: dict[int, list[Step]] = {}
    for step in steps:
        by_calls.setdefault(step.calls, []).append(step)
    good = [calls for calls, runs in by_calls.items() if all(run.meets_goal() for run in runs)]
    if not good:
        return ("no step met the goal (pacing p99 <= 2 ms, bot-audio latency p99 < 5 ms beyond the playout buffer, "
                "nothing dropped, no pacer slip, < 1 MiB per call)")
    best = max(good)
    runs = by_calls[best]
    cpu = statistics.median(run.core_pct for run in runs)
    rss = statistics.median(run.rss_per_call_kb for run in runs)
    return (f"largest step meeting the goal in {'every one of its ' + str(len(runs)) + ' runs' if len(runs) > 1 else 'its run'}"
            f" (pacing p99 <= 2 ms, bot-audio p99 < 5 ms beyond the playout buffer, nothing dropped, no pacer slip): {best} calls on {aribot_cores} core(s) = "
            f"{best / aribot_cores:.0f} calls per core, {cpu:.0f} % of the core busy, {rss:.0f} KiB per call (medians)")


def summarize_profile(path: Path, top: int = 12) -> str:
    """py-spy's raw (collapsed) stacks -> the functions with the most samples: on-CPU in the
    function itself, and inclusive (anywhere on the stack). Waiting in epoll is idle time."""
    own: dict[str, int] = {}
    anywhere: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or not stack:
            continue
        n = int(count)
        total += n
        frames = [frame.rsplit(":", 1)[0] + ")" if frame.endswith(")") and ":" in frame else frame
                  for frame in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for frame in set(frames):
            anywhere[frame] = anywhere.get(frame, 0) + n
    if not total:
        return "no samples"

    def rows(counts: dict[str, int], skip: tuple[str, ...] = ()) -> list[str]:
        ranked = sorted(((c, f) for f, c in counts.items() if not f.startswith(skip)), reverse=True)[:top]
        return [f"  {100 * c / total:5.1f} %  {f}" for c, f in ranked]

    outer = ("<module>", "main ", "cmd_serve", "run ", "Runner.run", "BaseEventLoop.run", "BaseEventLoop._run_once",
             "_run_code", "_run_module_as_main", "Thread.", "serve ")
    return "\n".join([f"{total} samples; on-CPU in the function:", *rows(own),
                      "inclusive (the function and what it calls):", *rows(anywhere, outer)])


def plot(steps: list[Step], path: Path, title: str) -> None:
    """CPU (% of one core) and RSS above idle (MiB) against concurrent calls: the median of the
    runs of each step, bars from the lowest to the highest run; pacing p99 written at each point."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_calls: dict[int, list[Step]] = {}
    for step in steps:
        by_calls.setdefault(step.calls, []).append(step)
    calls = sorted(by_calls)

    def series(value: Any) -> tuple[list[float], list[list[float]]]:
        mids, spans = [], [[], []]
        for n in calls:
            values = [value(run) for run in by_calls[n]]
            mid = statistics.median(values)
            mids.append(mid)
            spans[0].append(mid - min(values))
            spans[1].append(max(values) - mid)
        return mids, spans

    fig, (cpu_ax, mem_ax) = plt.subplots(1, 2, figsize=(10, 4))
    cpu, cpu_span = series(lambda s: s.core_pct)
    cpu_ax.errorbar(calls, cpu, yerr=cpu_span, fmt="o-", color="tab:blue", capsize=3)
    cpu_ax.axhline(100, color="grey", linestyle=":", linewidth=1)
    cpu_ax.set(xlabel="concurrent calls", ylabel="aribot CPU, % of one core")
    p99, _ = series(lambda s: (s.pacing_us.get("p99") or 0) / 1000)
    for n, y, p in zip(calls, cpu, p99):
        cpu_ax.annotate(f"pacing p99 {p:.1f} ms", (n, y), textcoords="offset points", xytext=(8, -10),
                        fontsize=8, ha="left")
    mem, mem_span = series(lambda s: (s.rss_kb - s.rss_idle_kb) / 1024)
    mem_ax.errorbar(calls, mem, yerr=mem_span, fmt="o-", color="tab:orange", capsize=3)
    mem_ax.set(xlabel="concurrent calls", ylabel="aribot RSS above idle, MiB")
    for n, y in zip(calls, mem):
        mem_ax.annotate(f"{1024 * y / n:.0f} KiB/call", (n, y), textcoords="offset points", xytext=(8, -10),
                        fontsize=8, ha="left")
    for ax in (cpu_ax, mem_ax):
        ax.set_xlim(0, max(calls) * 1.3)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def placement(no_pin: bool) -> tuple[set[int], set[int], int]:
    """(aribot's CPUs, the load's CPUs, cores aribot has): aribot alone on the first CPU, the rest
    for the load; nothing pinned (empty sets, every CPU) with ``no_pin`` or a single CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    if no_pin or len(cpus) < 2:
        return set(), set(), len(cpus)
    return {cpus[0]}, set(cpus[1:]), 1


def where(aribot_cpus: set[int], load_cpus: set[int], backend: str) -> str:
    if not aribot_cpus:
        return f"no pinning, {len(os.sched_getaffinity(0))} CPUs shared"
    return (f"aribot pinned to CPU {min(aribot_cpus)}, the simulated Asterisk and the fake {backend} server on CPU "
            f"{','.join(map(str, sorted(load_cpus)))}")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of how a step runs (run_step reads them), shared with bench_browser."""
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured per step, all calls live")
    parser.add_argument("--rate", type=float, default=50.0, help="new calls per second while ramping up")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    parser.add_argument("--set", dest="aribot_env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra aribot settings as ARIBOT_* env vars, e.g. ARIBOT_OPENAI__APPEND_FRAMES=5")
    parser.add_argument("--profile", nargs="?", const="aribot", choices=["aribot", "fake"],
                        help="sample aribot (or the fake Realtime server) with py-spy during each window "
                             "(profile.txt in the step's workdir)")
    parser.add_argument("--backend", choices=sorted(FAKES), default="openai_realtime",
                        help="the speech backend, against its strict fake (default openai_realtime)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin aribot to CPU 0 and the load to the rest")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[50, 100, 200, 300, 400],
                        help="concurrent calls per step")
    parser.add_argument("--runs", type=int, default=1, help="runs of each step (the table shows each)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/aribot-capacity"), help="logs and history")
    parser.add_argument("--plot", type=Path, help="write a PNG of CPU and memory against calls here")
    add_run_arguments(parser)
    parser.add_argument("--from-json", type=Path, metavar="JSON",
                        help="print the table (and --plot) of a run saved with --json, without running anything")
    args = parser.parse_args()
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        steps = [Step(**step) for step in saved["steps"]]
        for step in steps:  # JSON object keys are strings
            step.histograms = {name: {int(k): v for k, v in bins.items()} for name, bins in step.histograms.items()}
        print(saved["title"] + "\n\n" + report(steps))
        print("\n" + conclusion(steps, 1 if "pinned to CPU" in saved["title"] else len(os.sched_getaffinity(0))))
        if args.plot:
            plot(steps, args.plot, saved["title"])
        return
    args.aribot_env = dict(item.split("=", 1) for item in args.aribot_env)
    aribot_cpus, load_cpus, cores = placement(args.no_pin)
    steps: list[Step] = []
    profiles: list[tuple[int, str]] = []
    for calls in args.calls:
        for run in range(args.runs):
            label = f" (run {run + 1} of {args.runs})" if args.runs > 1 else ""
            print(f"step: {calls} concurrent calls{label} ...", file=sys.stderr)
            steps.append(await run_step(calls, args, args.workdir / str(calls), aribot_cpus, load_cpus))
            for note in steps[-1].notes:
                print(f"  {note}", file=sys.stderr)
            if args.profile:
                profiles.append((calls, summarize_profile(args.workdir / str(calls) / "profile.txt")))
    settings = " ".join(f"{k}={v}" for k, v in args.aribot_env.items()) or "default settings"
    title = (f"aribot capacity, backend {args.backend}, {time.strftime('%Y-%m-%d')}, "
             f"{where(aribot_cpus, load_cpus, args.backend)}; {settings}; {args.window:.0f} s window")
    if args.backend in PLAYOUT_BUFFER_MS:
        title += f"; bot-audio latency includes the backend's {PLAYOUT_BUFFER_MS[args.backend]:.0f} ms playout buffer"
    print(title + "\n")
    print(report(steps))
    print("\n" + conclusion(steps, cores))
    for calls, summary in profiles:
        print(f"\nprofile of {args.profile} at {calls} calls (py-spy, 100 Hz, the whole window): {summary}")
    if args.json:
        args.json.write_text(json.dumps({"title": title, "steps": [asdict(s) for s in steps]}, indent=1))
    if args.plot:
        plot(steps, args.plot, title)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    asyncio.run(main())
