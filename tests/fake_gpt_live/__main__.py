"""Run the fake standalone: ``python -m tests.fake_gpt_live --host 127.0.0.1 --port 8766``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math

from aribot.core.runtime import freeze_startup_objects, tune_gc

from .script import Script
from .server import FakeGptLiveServer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m tests.fake_gpt_live", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--api-key", default="test-key", help="expected key; 'none' accepts any")
    parser.add_argument("--speed", type=float, default=1.0, help="audio pacing x real time ('inf': unpaced)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-session-s", type=float, default=None)
    parser.add_argument("--usage-interval-s", type=float, default=60.0, help="session.usage.updated period")
    parser.add_argument("--no-validate", action="store_true",
                        help="skip the SDK-type check of each sent frame (benchmarks: saves CPU)")
    parser.add_argument("--keep-records", type=int, default=None, metavar="N",
                        help="keep only each connection's last N events (long or many calls: bounded memory)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


async def serve_forever(args: argparse.Namespace) -> None:
    """Serve until interrupted."""
    script = Script(speed=math.inf if math.isinf(args.speed) else args.speed, seed=args.seed,
                    max_session_s=args.max_session_s, usage_interval_s=args.usage_interval_s)
    api_key = None if args.api_key.lower() == "none" else args.api_key
    server = FakeGptLiveServer(api_key=api_key, script=script, validate_outgoing=not args.no_validate,
                               keep_records=args.keep_records)
    await server.start(args.host, args.port)
    freeze_startup_objects()
    print(f"fake GPT-Live server on {server.url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m tests.fake_gpt_live``."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    if not args.verbose:
        logging.getLogger("websockets").setLevel(logging.WARNING)
    tune_gc()  # hundreds of connections in one loop, as aribot (core/runtime.py)
    try:
        asyncio.run(serve_forever(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
