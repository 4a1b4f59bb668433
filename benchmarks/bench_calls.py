"""Benchmark: N concurrent real calls through the lab Asterisk, measured from outside and inside.

Run as root (after scripts/setup):  .venv/bin/python -m benchmarks.bench_calls --calls 1 50

Per step it runs ``aribot serve`` (a subprocess, as in production), the fake Realtime server (its
own process, answering every caller turn with 1 s of audio, 4x faster than real time), and N sipp
callers talking for several turns each. It prints:

- pacing: |interval - 20 ms| between consecutive RTP frames aribot sent to Asterisk inside a
  talk-spurt, measured by a loopback sniffer (kernel timestamps), p50/p99/max;
- frame lateness: RTP frame sent - its absolute deadline (aribot's own clock);
- bot-audio latency: AI delta received by aribot while idle -> its first RTP frame sent (aribot's
  own clock, merged histograms from every call's call.ended event);
- inbound latency: caller RTP received by aribot -> input_audio_buffer.append sent;
- aribot's CPU (user+sys from /proc) per call-second and its RSS growth per call.
This is a benchmark: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from aribot.core.metrics import histogram_percentile, percentile
from aribot.sandbox.asterisk import AsteriskLab
from aribot.sandbox.ports import free_tcp_port, free_udp_port_range
from aribot.sandbox.provision import ensure_chroot
from tests.lab.audio import silence, speech
from tests.lab.flood import RtpFlood
from tests.lab.sipp import SippCaller
from tests.lab.sniffer import RtpSniffer

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class StepResult:
    calls: int
    browser: bool = False
    flood: bool = False  # one call flooded with forged RTP at 10x its rate; pacing figures of the others
    flood_port: int = 0
    pages_seen: int = 0
    ok: int = 0
    wall_s: float = 0.0
    pacing_error_ms: list[float] = field(default_factory=list)
    histograms: dict[str, dict[int, int]] = field(default_factory=dict)
    dropped_rtp: int = 0
    cpu_s: float = 0.0
    call_seconds: float = 0.0
    rss_idle_kb: int = 0
    rss_peak_kb: int = 0

    def merge(self, stats: dict[str, Any]) -> None:
        for name, bins in stats["metrics"]["histograms"].items():
            target = self.histograms.setdefault(name, {})
            for index, count in bins.items():
                target[int(index)] = target.get(int(index), 0) + count
        self.dropped_rtp += sum(stats["rtp_dropped"].values())

    def hist_percentile(self, name: str, q: float) -> float | None:
        return histogram_percentile(self.histograms.get(name, {}), q)


def proc_times(pid: int) -> tuple[float, float]:
    """User and kernel CPU seconds of a process so far (/proc/<pid>/stat utime, stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def proc_cpu_s(pid: int) -> float:
    return sum(proc_times(pid))


def proc_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def caller_audio(seed: int, turns: int) -> bytes:
    audio = silence(400)
    for turn in range(turns):
        audio += speech(800, seed=seed * 10 + turn) + silence(2500)
    return audio


async def wait_healthy(port: int) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("aribot did not become healthy")


async def run_step(lab: AsteriskLab, sniffer: RtpSniffer, calls: int, turns: int, workdir: Path,
                   browser: bool = False, flood: bool = False) -> StepResult:
    result = StepResult(calls, browser=browser, flood=flood)
    flooder: asyncio.Task[int] | None = None
    workdir.mkdir(parents=True, exist_ok=True)
    fake_port, http_port, ui_port = free_tcp_port(), free_tcp_port(), free_tcp_port()
    fake = await asyncio.create_subprocess_exec(
        str(BIN / "python"), "-m", "tests.fake_realtime", "--port", str(fake_port), "--no-validate",
        cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    low, high = free_udp_port_range(max(100, calls * 4))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARIBOT_")} | {
        "ARIBOT_ARI__URL": lab.ari_url, "ARIBOT_ARI__USERNAME": lab.ari_username,
        "ARIBOT_ARI__PASSWORD": lab.ari_password, "ARIBOT_ARI__APP": lab.app,
        "ARIBOT_OPENAI__URL": f"ws://127.0.0.1:{fake_port}/v1/realtime", "ARIBOT_OPENAI__API_KEY": "test-key",
        "ARIBOT_OPENAI__VAD_SILENCE_DURATION_MS": "500", "ARIBOT_RTP__PORT_MIN": str(low),
        "ARIBOT_RTP__PORT_MAX": str(high), "ARIBOT_HTTP__PORT": str(http_port),
        "ARIBOT_UI__ENABLED": "true" if browser else "false", "ARIBOT_UI__PORT": str(ui_port),
        "ARIBOT_HISTORY__PATH": str(workdir / "history.sqlite3"),
        "ARIBOT_LOG__LEVEL": "WARNING", "ARIBOT_CALL__GREETING": ""}
    aribot = await asyncio.create_subprocess_exec(str(BIN / "aribot"), "serve", cwd=workdir, env=env)
    watched: list[int] = []
    try:
        await asyncio.sleep(0.5)
        await wait_healthy(http_port)
        result.rss_idle_kb = proc_rss_kb(aribot.pid)
        async with aiohttp.ClientSession() as session, session.ws_connect(f"http://127.0.0.1:{http_port}/logs") as ws:
            callers = [SippCaller(lab, workdir / f"c{i}", caller_audio(i, turns), audio_delay_ms=500,
                                  hold_ms_after_audio=500) for i in range(calls)]
            ended: list[dict[str, Any]] = []

            async def collect() -> None:
                async for msg in ws:
                    event = json.loads(msg.data)
                    if event["type"] == "call.media_connected":
                        port = int(event["remote"].rsplit(":", 1)[1])
                        if flood and flooder is None:  # the first call: 500 forged packets/s "from Asterisk"
                            nonlocal_flood(event, port)
                            continue
                        sniffer.watch(port)
                        watched.append(port)
                    elif event["type"] == "call.ended":
                        ended.append(event)

            async def sample_rss() -> None:
                while True:
                    result.rss_peak_kb = max(result.rss_peak_kb, proc_rss_kb(aribot.pid))
                    await asyncio.sleep(0.25)

            def nonlocal_flood(event: dict[str, Any], port: int) -> None:
                nonlocal flooder
                local = event["local"].rsplit(":", 1)
                result.flood_port = port
                remote = event["remote"].rsplit(":", 1)[0]
                flooder = asyncio.create_task(RtpFlood(src=(remote, port), dst=(local[0], int(local[1])),
                                                       pps=500).run(seconds=3600))

            collector = asyncio.create_task(collect())
            sampler = asyncio.create_task(sample_rss())
            cpu0, t0 = proc_cpu_s(aribot.pid), time.monotonic()
            watcher = asyncio.create_task(watch_dashboard(ui_port, http_port, workdir)) if browser else None
            outcomes = await asyncio.gather(*(c.run() for c in callers))
            if watcher is not None:
                result.pages_seen = await watcher
            for _ in range(100):
                if len(ended) >= calls:
                    break
                await asyncio.sleep(0.05)
            result.wall_s = time.monotonic() - t0
            result.cpu_s = proc_cpu_s(aribot.pid) - cpu0
            sampler.cancel()
            collector.cancel()
        result.ok = sum(1 for o in outcomes if o.ok)
        for outcome in outcomes:
            if not outcome.ok:
                print(f"  call failed: {outcome.error} ({outcome.workdir})", file=sys.stderr)
        reasons = sorted({e["reason"] for e in ended})
        print(f"  {len(ended)} call.ended events, reasons {reasons}", file=sys.stderr)
        for event in ended:
            result.merge(event["stats"])
            result.call_seconds += event["duration_s"]
        for port in watched:
            packets = sniffer.packets(port)
            for a, b in zip(packets, packets[1:]):
                if not b.marker and a.ssrc == b.ssrc:
                    result.pacing_error_ms.append(abs((b.ts - a.ts) * 1000 - 20.0))
    finally:
        if flooder is not None:
            flooder.cancel()
        for port in watched:
            sniffer.unwatch(port)
            sniffer.clear(port)
        for proc in (aribot, fake):
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()
    return result


async def watch_dashboard(ui_port: int, http_port: int, workdir: Path) -> int:
    """A real Chromium on the live-call page, then on one call's view, while the calls run."""
    from tests.integration.test_dashboard import chromium

    driver = await asyncio.to_thread(chromium, workdir / "chromium")
    seen = 0
    try:
        await asyncio.to_thread(driver.get, f"http://127.0.0.1:{ui_port}/")
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                async with session.get(f"http://127.0.0.1:{http_port}/calls") as resp:
                    live = await resp.json()
                if live:
                    break
                await asyncio.sleep(0.1)
        await asyncio.sleep(3)
        seen += 1
        if live:
            await asyncio.to_thread(driver.get, f"http://127.0.0.1:{ui_port}/call/{live[0]['id']}")
            await asyncio.sleep(6)
            seen += 1
    finally:
        await asyncio.to_thread(driver.quit)
    return seen


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report(results: list[StepResult]) -> str:
    head = ("| calls | ok | pacing \\|Δ−20 ms\\| p50 / p99 / max (ms) | frame lateness p50 / p99 (ms) "
            "| bot-audio latency p50 / p99 (ms) | inbound latency p50 / p99 (ms) | aribot CPU ms per call-second "
            "| RSS per call (KiB) | RTP dropped |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        pe = r.pacing_error_ms
        label = f"{r.calls} + dashboard" if r.browser else str(r.calls)
        label += " + RTP flood on 1 (others' pacing)" if r.flood else ""
        lines.append(
            f"| {label} | {r.ok} | {fmt(percentile(pe, 50))} / {fmt(percentile(pe, 99))} / "
            f"{fmt(max(pe) if pe else None)} | {fmt(r.hist_percentile('pacing_lateness_ms', 50))} / "
            f"{fmt(r.hist_percentile('pacing_lateness_ms', 99))} | {fmt(r.hist_percentile('first_frame_latency_ms', 50))} / "
            f"{fmt(r.hist_percentile('first_frame_latency_ms', 99))} | "
            f"{fmt(r.hist_percentile('inbound_latency_ms', 50))} / {fmt(r.hist_percentile('inbound_latency_ms', 99))} | "
            f"{fmt(1000 * r.cpu_s / r.call_seconds if r.call_seconds else None, 1)} | "
            f"{(r.rss_peak_kb - r.rss_idle_kb) // max(1, r.calls)} | {r.dropped_rtp} |")
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[1, 50], help="concurrent calls per step")
    parser.add_argument("--turns", type=int, default=4, help="caller turns per call (each answered with 1 s)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/aribot-bench"), help="sipp files and logs")
    parser.add_argument("--browser", type=int, nargs="*", default=[], metavar="CALLS",
                        help="also run these steps with the dashboard open in headless Chromium")
    parser.add_argument("--flood", type=int, nargs="*", default=[], metavar="CALLS",
                        help="also run these steps with one call flooded at 10x its RTP rate (forged to come "
                             "from Asterisk; needs root); pacing is then measured on the other calls")
    args = parser.parse_args()
    lab = AsteriskLab(ensure_chroot())
    await lab.start()
    results = []
    try:
        with RtpSniffer() as sniffer:
            steps = ([(calls, False, False) for calls in args.calls] + [(calls, True, False) for calls in args.browser]
                     + [(calls, False, True) for calls in args.flood])
            for calls, browser, flood in steps:
                print(f"running {calls} concurrent call(s), {args.turns} turns each"
                      f"{' with the dashboard open in Chromium' if browser else ''}"
                      f"{' with one call flooded' if flood else ''} ...", file=sys.stderr)
                tag = "-ui" if browser else "-flood" if flood else ""
                results.append(await run_step(lab, sniffer, calls, args.turns, args.workdir / f"{calls}{tag}",
                                              browser, flood))
    finally:
        await lab.stop()
    print(f"aribot benchmark, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, {args.turns} turns per call\n")
    print(report(results))


if __name__ == "__main__":
    asyncio.run(main())
