"""``aribot demo``: the sandbox Asterisk, aribot with its dashboard, and a demo call, in one command.

1. The Asterisk 22 sandbox starts (``aribot.sandbox``; built on first use), with the softphone endpoint
   of ``aribot lab`` and a dialplan context for the demo caller.
2. aribot starts in this process with the sandbox's ARI credentials, the dashboard on, and the
   speech backend of ``--backend``, else the configured one if its key is set, else the local voice.
3. A demo call: ARI originates ``Local/demo@aribot-demo-caller``; its Stasis half is an ordinary
   call for aribot, its dialplan half plays a synthesised caller (espeak-ng) saying a few lines
   with pauses for the answers, then hangs up. The call view fills with a live transcript.
4. It runs until Ctrl-C (``--once``: until the demo calls ended) and stops everything: live calls
   are ended, Asterisk is checked clean and stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import socket
import sys
from dataclasses import dataclass, field
from typing import Any

from aribot.core.events import CallEnded, CallStarted
from aribot.sandbox.asterisk import AsteriskLab
from aribot.sandbox.ports import free_udp_port_range

log = logging.getLogger("aribot.demo")

CALLER_LINES = (
    "Hello, I would like to check the status of my order please.",
    "Thank you. That is all for today, goodbye.",
)
CONTEXT = "aribot-demo-caller"
SOUND = "demo-caller"


@dataclass
class DemoOptions:
    """What ``aribot demo`` was asked for."""

    calls: int = 1
    once: bool = False
    ui_port: int | None = None
    sip_port: int = 5062
    sip_bind: str = "127.0.0.1"
    phone_password: str = field(default_factory=lambda: secrets.token_urlsafe(9))
    backend: str = ""   # --backend: the speech backend to use ("" = the configured one if ready, else local)
    gap_s: float = 7.0


def caller_audio(lines: tuple[str, ...] = CALLER_LINES, gap_s: float = 7.0) -> bytes:
    """The demo caller as µ-law: a short lead-in, then each line followed by ``gap_s`` of silence
    (room for the answer: the local backend plays the line back after a phrase)."""
    from aribot.plugins.local_backend.voice import synthesize

    audio = b"\xff" * 8 * 1500
    for line in lines:
        audio += synthesize(line, words_per_minute=150) + b"\xff" * int(8000 * gap_s)
    return audio


def demo_dialplan(sound_path: str) -> str:
    """The demo caller's context: answer, play the caller's voice (silences included, so RTP flows
    all the time, as from a phone), hang up."""
    return f"""
[{CONTEXT}]
exten => demo,1,NoOp(aribot demo caller)
 same => n,Answer()
 same => n,Playback({sound_path})
 same => n,Hangup()
"""


def _free_port(preferred: int, kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])


def configure_for_lab(settings: Any, lab: AsteriskLab, options: DemoOptions, backends: dict[str, Any]) -> str:
    """Point ``settings`` at the sandbox; returns the backend in use: ``--backend``, else the
    configured one if it is ready to use (its key is set), else the local voice."""
    low, high = free_udp_port_range(64)
    settings.set("ari.url", lab.ari_url)
    settings.set("ari.username", lab.ari_username)
    settings.set("ari.password", lab.ari_password)
    settings.set("ari.app", lab.app)
    settings.set("rtp.host", "127.0.0.1")
    settings.set("rtp.advertise_host", "")
    settings.set("rtp.port_min", low)
    settings.set("rtp.port_max", high)
    settings.set("ui.enabled", True)
    if settings.http.port and _free_port(int(settings.http.port), socket.SOCK_STREAM) != settings.http.port:
        settings.set("http.port", 0)  # the HTTP API on a free port rather than no demo at all
    if options.ui_port is not None:
        settings.set("ui.port", options.ui_port)
    elif settings.ui.port and _free_port(int(settings.ui.port), socket.SOCK_STREAM) != settings.ui.port:
        print(f"demo: dashboard port {settings.ui.port} is taken; using a free one", flush=True)
        settings.set("ui.port", 0)
    chosen = options.backend or str(settings.ai.backend)
    if chosen not in backends:
        raise RuntimeError(f"there is no speech backend {chosen!r}; installed: {', '.join(sorted(backends))}")
    if not options.backend and backends[chosen].warnings(settings) and "local" in backends:
        chosen = "local"   # not ready (no key): the offline voice instead
    settings.set("ai.backend", chosen)
    return chosen


async def originate_demo_call(lab: AsteriskLab, number: int) -> str:
    """One demo call into the Stasis app; returns the Stasis channel's id."""
    channel_id = f"aribot-demo-{number}-{secrets.token_hex(3)}"
    status, body = await lab.ari(
        "POST", "/channels", endpoint=f"Local/demo@{CONTEXT}/n", app=lab.app, appArgs="demo,mode=immediate",
        callerId=f"Demo caller <100{number}>", channelId=channel_id, otherChannelId=f"{channel_id}-caller",
    )  # fmt: skip
    if status != 200:
        raise RuntimeError(f"Asterisk refused the demo call: HTTP {status} {body}")
    return channel_id


def dashboard_summary(app: Any) -> list[str]:
    """What the dashboard's live state holds about each call (printed at the end with --once)."""
    live = app.extensions.get("live")
    if live is None:
        return ["the dashboard is off (plugin disabled)"]
    lines = []
    for call in live.calls.values():
        lines.append(f"dashboard: call {call.call_id} from {call.caller_name} <{call.caller_number}>, "
                     f"state {call.state}, ended {call.end_reason or '-'}, {len(call.turns)} transcript turns")
        lines += [f"dashboard:   {turn.role}: {turn.text}" for turn in call.turns if turn.text]
    return lines


async def run_demo(settings: Any, plugins: Any, options: DemoOptions) -> int:
    """The whole demo (see the module docstring); returns the exit code."""
    from aribot.core.app import App
    from aribot.sandbox.run import LabError, prepare_chroot

    try:
        chroot = await asyncio.to_thread(prepare_chroot, sys.stdout)
    except LabError as exc:
        print(f"demo: {exc}", file=sys.stderr, flush=True)
        return 1
    sip_port = _free_port(options.sip_port)
    if sip_port != options.sip_port:
        print(f"demo: SIP port {options.sip_port} is taken; the softphone endpoint uses {sip_port}", flush=True)
    lab = AsteriskLab(chroot, sip_port=sip_port, sip_bind=options.sip_bind, phone_password=options.phone_password)
    lab.extra_dialplan = demo_dialplan(lab.path_in_chroot(lab.var_dir / SOUND))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    app = None
    try:
        await lab.start()
        sound = await asyncio.to_thread(caller_audio, CALLER_LINES, options.gap_s)
        (lab.var_dir / f"{SOUND}.ulaw").write_bytes(sound)
        backend = configure_for_lab(settings, lab, options, plugins.backends())
        app = App(settings, plugins)
        ended: list[CallEnded] = []
        app.bus.subscribe(CallEnded, ended.append)
        app.bus.subscribe(CallStarted, lambda e: print(f"demo: call {e.call_id} started", flush=True))
        await app.start()
        await asyncio.wait_for(app.stream.connected.wait(), 10)
        ui = app.extensions.get("ui")
        url = f"http://{settings.ui.host}:{ui.port}/" if ui is not None else "(dashboard disabled)"
        print(f"demo: dashboard {url}", flush=True)
        print(f"demo: AI backend {backend}" + (" (espeak-ng + pocketsphinx, an echo test)" if backend == "local" else ""),
              flush=True)
        print(f"demo: softphone: SIP {options.sip_bind}:{sip_port}, user phone, password {options.phone_password}; "
              "dial any number", flush=True)
        for number in range(1, options.calls + 1):
            await originate_demo_call(lab, number)
        print(f"demo: {options.calls} demo call(s) placed; " + ("waiting for them to end" if options.once
                                                                else "Ctrl-C stops everything"), flush=True)
        while not stop.is_set():
            if options.once and len(ended) >= options.calls:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
        for call in ended:
            print(f"demo: call {call.call_id} ended ({call.reason})", flush=True)
        for line in dashboard_summary(app):
            print(line, flush=True)
    except Exception as exc:  # noqa: BLE001 - one line for the user, then clean up
        print(f"demo: failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if app is not None:
            await app.stop()
        if lab.running:
            channels, bridges = await lab.wait_clean(3.0)
            print(f"demo: Asterisk left {'clean' if not channels and not bridges else 'with leftovers'}: "
                  f"{len(channels)} channels, {len(bridges)} bridges", flush=True)
        await lab.stop()
        print("demo: stopped", flush=True)
    return 0
