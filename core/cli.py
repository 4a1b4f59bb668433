"""Command line: ``aribot serve``, ``aribot plugins``, ``aribot config``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from typing import Any, Sequence

from core import __version__
from core.plugins import PluginError
from core.settings import SettingsError, effective

log = logging.getLogger("aribot")


def _load(args: argparse.Namespace) -> tuple[Any, Any]:
    from core.app import configure
    return configure(args.settings)


def cmd_serve(args: argparse.Namespace) -> int:
    settings, plugins = _load(args)
    logging.basicConfig(level=settings.log.level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(serve(settings, plugins))


async def serve(settings: Any, plugins: Any) -> int:
    """Run until SIGINT/SIGTERM; live calls are ended per settings and Asterisk is left clean."""
    from core.app import App

    app = App(settings, plugins)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("aribot %s serving Stasis app %r via %s (activation %s)", __version__, settings.ari.app,
             settings.ari.url, settings.activation.mode)
    if not settings.openai.api_key:
        log.warning("openai.api_key is empty (ARIBOT_OPENAI__API_KEY / OPENAI_API_KEY): the Realtime API will "
                    "refuse calls and callers will hear the fallback prompt")
    await app.start()
    await stop.wait()
    log.info("signal received: stopping")
    await app.stop()
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
    print(json.dumps(effective(settings), indent=2, default=str))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from core.doctor import doctor, render
    checks = asyncio.run(doctor(args.settings))
    print(render(checks, as_json=args.json))
    return 0 if all(check.ok for check in checks) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aribot", description="Answer Asterisk calls with a speech-to-speech AI.")
    parser.add_argument("--version", action="version", version=f"aribot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, text in (("serve", cmd_serve, "run the server in the foreground"),
                             ("plugins", cmd_plugins, "list the loaded plugins: name, source, hooks (--all: disabled too)"),
                             ("config", cmd_config, "print the effective settings (secrets masked)"),
                             ("doctor", cmd_doctor, "check ARI, the Stasis app, RTP and the Realtime key (exit 1 on a failure)")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--settings", help="a settings TOML file layered over the defaults")
        cmd.set_defaults(func=func)
        if name == "plugins":
            cmd.add_argument("--json", action="store_true", help="machine-readable output")
            cmd.add_argument("--all", action="store_true", help="also list disabled plugins")
        if name == "doctor":
            cmd.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SettingsError, PluginError) as exc:
        print(f"aribot: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
