"""Command line: ``aribot serve``, ``plugins``, ``config``, ``doctor``, ``call``, ``lab`` and ``demo``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from typing import Any, Sequence

from aribot import __version__
from aribot.core.plugins import PluginError
from aribot.core.runtime import freeze_startup_objects, tune_gc
from aribot.core.settings import (
    SOURCES_ORDER,
    SettingsError,
    declared,
    effective,
    origin,
    owned_settings,
    render_defaults,
    render_effective,
)

log = logging.getLogger("aribot")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
SETTINGS_HELP = "the settings file (instead of $ARIBOT_SETTINGS or ./settings.toml)"


def _load(args: argparse.Namespace) -> tuple[Any, Any]:
    from aribot.core.app import configure
    return configure(args.settings)


def cmd_serve(args: argparse.Namespace) -> int:
    settings, plugins = _load(args)
    backend = plugins.backends().get(str(settings.ai.backend))
    unusable = backend is None or bool(backend.warnings(settings))
    if args.demo_if_unconfigured and not settings.ari.password and unusable:
        print(f"aribot: no Asterisk (ari.password) and backend {settings.ai.backend} is not ready to use (no key?): "
              "running the demo (aribot demo) instead", flush=True)
        args.calls, args.once, args.ui_port, args.sip_port, args.bind, args.password, args.log_level = (
            1, False, None, 5062, "127.0.0.1", None, None)
        args.backend = None
        return cmd_demo(args)
    logging.getLogger().setLevel(settings.log.level)
    tune_gc()
    return asyncio.run(serve(settings, plugins))


async def serve(settings: Any, plugins: Any) -> int:
    """Run until SIGINT/SIGTERM; live calls are ended per settings and Asterisk is left clean."""
    from aribot.core.app import App

    app = App(settings, plugins)
    signals: asyncio.Queue[int] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, signals.put_nowait, sig)
    log.info("aribot %s serving Stasis app %r via %s (backend %s, activation %s)", __version__, settings.ari.app,
             settings.ari.url, settings.ai.backend, settings.activation.mode)
    await app.start()
    freeze_startup_objects()
    first = await signals.get()
    log.info("%s received: stopping gracefully (a second signal stops at once)", signal.Signals(first).name)
    drain = asyncio.create_task(app.drain(settings.call.drain_timeout))
    second = asyncio.create_task(signals.get())
    await asyncio.wait({drain, second}, return_when=asyncio.FIRST_COMPLETED)
    if second.done():
        log.warning("second signal: ending %d live call(s) at once", app.serving)
        drain.cancel()
        await asyncio.gather(drain, return_exceptions=True)
    else:
        second.cancel()
    await app.stop()  # records are written by the plugins' shutdown, after the calls ended
    log.info("stopped cleanly")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    _settings, plugins = _load(args)
    shown = [p for p in plugins.infos() if p.enabled or args.all]
    rows = [(p.name, "enabled" if p.enabled else "disabled", p.source, p.version, p.module, ",".join(p.hooks))
            for p in shown]
    if args.json:
        keys = ("name", "state", "source", "version", "module", "hooks")
        print(json.dumps([dict(zip(keys, row)) | {"path": p.path} for row, p in zip(rows, shown)], indent=2))
        return 0
    widths = [max(len(str(r[i])) for r in rows + [("name", "state", "source", "version", "module", "hooks")])
              for i in range(6)]
    for row in [("name", "state", "source", "version", "module", "hooks"), *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    settings, _plugins = _load(args)
    if args.defaults:
        print(render_defaults(owned_settings(settings)), end="")
    elif args.json:
        shown = effective(settings)
        print(json.dumps({setting.key: {"value": _get(shown, setting.key), "source": origin(settings, setting.key)}
                          for setting in declared(settings)}, indent=2, default=str))
    else:
        print(render_effective(settings), end="")
    return 0


def _get(data: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        data = data[part]
    return data


def cmd_doctor(args: argparse.Namespace) -> int:
    from aribot.core.doctor import doctor, render
    checks = asyncio.run(doctor(args.settings))
    print(render(checks, as_json=args.json))
    return 0 if all(check.ok for check in checks) else 1


def cmd_lab(args: argparse.Namespace) -> int:
    from aribot.sandbox.run import run_lab
    try:
        return asyncio.run(run_lab(sip_port=args.sip_port, bind=args.bind, password=args.password, app=args.app))
    except KeyboardInterrupt:  # before Asterisk started (e.g. while the chroot was being built)
        print("aribot lab: interrupted", file=sys.stderr)
        return 130


def cmd_demo(args: argparse.Namespace) -> int:
    from aribot.sandbox.demo import DemoOptions, run_demo

    settings, plugins = _load(args)
    logging.getLogger().setLevel((args.log_level or "WARNING").upper())
    options = DemoOptions(calls=args.calls, once=args.once, ui_port=args.ui_port, sip_port=args.sip_port,
                          sip_bind=args.bind, backend=(args.backend or "").lower())
    if args.password:
        options.phone_password = args.password
    if options.backend:
        backend = plugins.backends().get(options.backend)
        if backend is None:
            print(f"aribot demo: there is no speech backend {options.backend!r}; installed: "
                  f"{', '.join(sorted(plugins.backends()))}", file=sys.stderr)
            return 2
        problems = backend.warnings(settings)
        if problems:
            print(f"aribot demo: backend {options.backend} is not ready: {'; '.join(problems)} "
                  "(without --backend the demo uses the local voice)", file=sys.stderr)
            return 2
    try:
        return asyncio.run(run_demo(settings, plugins, options))
    except KeyboardInterrupt:  # before the demo's own handlers were installed
        print("aribot demo: interrupted", file=sys.stderr)
        return 130


def _api_base(settings: Any) -> str:
    host = str(settings.http.host)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{host}]:{settings.http.port}" if ":" in host else f"http://{host}:{settings.http.port}"


def _api(settings: Any, method: str, path: str, body: dict[str, Any] | None = None,
         timeout: float = 10.0) -> tuple[int, Any]:
    """One request to the running aribot's HTTP API (the token from settings); (status, JSON)."""
    import urllib.error
    import urllib.request

    headers = {"Content-Type": "application/json"}
    if settings.http.token:
        headers["Authorization"] = f"Bearer {settings.http.token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(_api_base(settings) + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except ValueError:
            return exc.code, {"error": exc.reason}


def cmd_call(args: argparse.Namespace) -> int:
    """Place a call through the running aribot (POST /calls); --wait prints its outcome."""
    import time
    import urllib.error

    settings, _plugins = _load(args)
    body: dict[str, Any] = {"endpoint": args.endpoint}
    for key in ("instructions", "greeting", "backend", "caller_id", "machine_message"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    if args.amd is not None:
        body["amd"] = args.amd
    where = _api_base(settings)
    try:
        status, reply = _api(settings, "POST", "/calls", body)
        if status >= 300:
            error = reply.get("error") if isinstance(reply, dict) else None
            print(f"aribot call: refused by aribot at {where} ({status}): {error or reply}", file=sys.stderr)
            return 1
        call_id = reply["call_id"]
        print(call_id, flush=True)
        deadline = time.monotonic() + args.wait
        while args.wait and time.monotonic() < deadline:
            status, state = _api(settings, "GET", f"/calls/{call_id}")
            if status == 200 and state.get("state") == "ended":
                print(f"{state.get('outcome') or 'unknown'}: {state.get('detail', '')} (ended: {state.get('end_reason')})")
                return 0
            time.sleep(0.5)
        if args.wait:
            print(f"aribot call: {call_id} has not ended after {args.wait:g} s", file=sys.stderr)
            return 1
        return 0
    except urllib.error.URLError as exc:
        print(f"aribot call: aribot is not running at {where} ({getattr(exc, 'reason', exc)}); start it with "
              "`aribot serve`", file=sys.stderr)
        return 1
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"aribot call: no usable answer from {where} ({exc!r})", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aribot", description="Answer Asterisk calls with a speech-to-speech AI.")
    parser.add_argument("--version", action="version", version=f"aribot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, text in (("serve", cmd_serve, "run the server in the foreground"),
                             ("plugins", cmd_plugins, "list the loaded plugins: name, source, hooks (--all: disabled too)"),
                             ("config", cmd_config, "print the effective settings, each with where it came from "
                                                    "(secrets masked)"),
                             ("doctor", cmd_doctor, "check ARI, the Stasis app, RTP and the speech backend (exit 1 on a failure)")):
        cmd = sub.add_parser(name, help=text, description=f"{text[0].upper()}{text[1:]}.", epilog=SOURCES_ORDER,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        cmd.add_argument("--settings", metavar="FILE", help=SETTINGS_HELP)
        if name == "config":
            cmd.add_argument("--json", action="store_true", help="machine-readable: {key: {value, source}}")
            cmd.add_argument("--defaults", action="store_true",
                             help="print every setting's default with its description (a settings.toml to start from)")
        cmd.set_defaults(func=func)
        if name == "plugins":
            cmd.add_argument("--json", action="store_true", help="machine-readable output")
            cmd.add_argument("--all", action="store_true", help="also list disabled plugins")
        if name == "doctor":
            cmd.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "serve":
            cmd.add_argument("--demo-if-unconfigured", action="store_true",
                             help="with neither an ARI password nor an OpenAI key configured, run `aribot demo`")
    call = sub.add_parser("call", help="place a call through the running aribot (POST /calls; see [outbound])",
                          description="Place a call through the running aribot's HTTP API (its [http] port and "
                                      "token from the settings). Prints the call id.")
    call.add_argument("endpoint", help="what Asterisk dials, e.g. PJSIP/100 (must match [outbound] allowed)")
    call.add_argument("--settings", metavar="FILE", help=SETTINGS_HELP)
    call.add_argument("--instructions", help="the AI's instructions for this call ([call] per_call_keys)")
    call.add_argument("--greeting", help="sound:<name> played when the callee answers ([call] per_call_keys)")
    call.add_argument("--backend", help="speech backend among [ai] allowed ([call] per_call_keys)")
    call.add_argument("--caller-id", dest="caller_id", help="caller id, e.g. '\"Shop\" <100>'")
    call.add_argument("--amd", action=argparse.BooleanOptionalAction, default=None,
                      help="detect answering machines (default: [outbound] amd)")
    call.add_argument("--machine-message", dest="machine_message", help="left on an answering machine")
    call.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                      help="wait up to SECONDS for the call to end and print its outcome")
    call.set_defaults(func=cmd_call)
    lab = sub.add_parser("lab", help="run a private Asterisk 22 with a softphone account to try aribot (needs root)")
    lab.add_argument("--sip-port", type=int, default=None,
                     help="UDP port for SIP (default 5062, or a free port if 5062 is taken)")
    lab.add_argument("--bind", default="127.0.0.1",
                     help="SIP address (default 127.0.0.1; 0.0.0.0 lets a softphone on another machine in)")
    lab.add_argument("--password", default=None, help="the softphone's SIP password (default: a random one, printed)")
    lab.add_argument("--app", default="aribot", help="Stasis app the dialplan hands calls to (default aribot)")
    lab.set_defaults(func=cmd_lab)
    demo = sub.add_parser("demo", help="the sandbox Asterisk, aribot with its dashboard and a demo call "
                                       "(local voice backend without an OpenAI key; needs root)")
    demo.add_argument("--settings", metavar="FILE", help=SETTINGS_HELP)
    demo.add_argument("--calls", type=int, default=1, help="demo calls to place at start (default 1)")
    demo.add_argument("--once", action="store_true", help="stop when the demo calls have ended (default: on Ctrl-C)")
    demo.add_argument("--ui-port", type=int, default=None, help="dashboard port (default: ui.port, or a free one)")
    demo.add_argument("--sip-port", type=int, default=5062, help="softphone SIP port (default 5062, or a free one)")
    demo.add_argument("--bind", default="127.0.0.1", help="SIP address (0.0.0.0 lets a softphone on another machine in)")
    demo.add_argument("--password", default=None, help="the softphone's SIP password (default: a random one, printed)")
    demo.add_argument("--log-level", default=None, help="aribot's log level on stderr (default WARNING)")
    demo.add_argument("--backend", default=None,
                      help="speech backend (e.g. gpt_live, openai_realtime; default: the configured one if its key "
                           "is set, else local)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # warnings while loading (unknown settings keys) already in the log format; `serve` then sets log.level
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    try:
        return args.func(args)
    except (SettingsError, PluginError) as exc:
        print(f"aribot: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
