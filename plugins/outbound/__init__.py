"""Outbound calls: ``POST /calls`` on aribot's HTTP API (same token as every route) places a call
through ARI; once answered it runs like an inbound call, with optional answering-machine detection
(amd.py) and a message left on machines. ``GET /calls/{id}`` gives its state and outcome (human,
machine, no_answer, busy, failed), also emitted as ``OutboundOutcome`` (history, timeline, /logs).

Off until ``[outbound] allowed`` lists the endpoints (exact or glob, e.g. ``PJSIP/*``) that calls
may go to. ``aribot call ENDPOINT`` posts a request from the command line. README "Outbound calls".
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from aiohttp import web

from aribot import Setting, as_bool, as_str, hookimpl, number, str_list
from aribot.plugins.outbound.dialer import Dialer, Rejected
from aribot.plugins.outbound.feature import outbound_start

log = logging.getLogger("aribot.outbound")
PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_*?]{0,15}/[A-Za-z0-9_.+:@/*?\[\]-]{1,200}")
MAX_BODY = 64 * 1024


class Slot:
    """Where the routes find the dialer: filled by ``startup``, emptied by ``shutdown``."""

    dialer: Dialer | None = None


SLOT = web.AppKey("aribot_outbound", Slot)


def _patterns(value: Any) -> list[str]:
    patterns = str_list(value)
    if any(not PATTERN.fullmatch(p) for p in patterns):
        raise ValueError(value)
    return patterns


def _message(value: Any) -> str:
    text = as_str(value)
    if len(text) > 2000:
        raise ValueError(value)
    return text


SETTINGS = (
    Setting("outbound.allowed", [], _patterns, "a list of endpoints or globs such as \"PJSIP/*\" (TECH/resource)",
            "endpoints POST /calls may dial (exact, or globs: * ? [..]); empty = outbound calls are off"),
    Setting("outbound.max_concurrent", 5, number(int, 1, 10000), "an integer 1..10000",
            "outbound calls ringing or live at once; more are refused (429)"),
    Setting("outbound.rate_per_minute", 30, number(int, 0, 100000), "an integer 0..100000 (0 = no limit)",
            "calls POST /calls may place per minute; more are refused (429)"),
    Setting("outbound.ring_timeout", 30, number(int, 1, 600), "seconds 1..600",
            "how long a placed call rings before it counts as no_answer"),
    Setting("outbound.caller_id", "", as_str, "a caller id such as \"Shop\" <100>, or empty",
            "caller id of placed calls when the request gives none (empty: the endpoint's)"),
    Setting("outbound.amd", False, as_bool, "true or false",
            "detect answering machines when the request does not say (\"amd\")"),
    Setting("outbound.machine_message", "", _message, "a text of at most 2000 characters, or sound:<name>",
            "left on an answering machine after the beep: the AI says this text (or a sound: plays); empty = hang up"),
    Setting("outbound.opening", "The person you called has answered. Greet them briefly and say why you call.",
            _message, "a text of at most 2000 characters, or empty",
            "after detection found a person: what the AI is asked to say first (empty: wait for the callee)"),
    Setting("outbound.beep_timeout", 20, number(float, 1, 120), "seconds 1..120",
            "on a machine: how long to wait for the beep before leaving the message anyway"),
    Setting("outbound.machine_silence_ms", 2000, number(int, 300, 10000), "milliseconds 300..10000",
            "on a machine without a beep: silence after its greeting that counts as the beep"),
    Setting("outbound.amd_initial_silence_ms", 2500, number(int, 500, 10000), "milliseconds 500..10000",
            "detection: silence before any voice after which the callee counts as a person (not sure)"),
    Setting("outbound.amd_greeting_ms", 2000, number(int, 300, 10000), "milliseconds 300..10000",
            "detection: voice longer than this without a pause is a machine's greeting"),
    Setting("outbound.amd_after_greeting_silence_ms", 800, number(int, 100, 5000), "milliseconds 100..5000",
            "detection: a pause this long after a short greeting means a person"),
    Setting("outbound.amd_total_analysis_ms", 5000, number(int, 1000, 30000), "milliseconds 1000..30000",
            "detection: undecided after this long counts as a person (not sure)"),
    Setting("outbound.amd_silence_threshold", 256, number(int, 1, 32767), "an integer 1..32767",
            "detection: mean sample magnitude (16-bit) above which a 20 ms frame is voice"),
    Setting("outbound.keep_results", 1000, number(int, 10, 1000000), "an integer 10..1000000",
            "finished calls GET /calls/{id} remembers (the history keeps them all)"),
)


@hookimpl
def register_settings(register):
    for setting in SETTINGS:
        register(setting)


@hookimpl
def register_routes(app):
    app[SLOT] = Slot()
    app.router.add_post("/calls", place_call)
    app.router.add_get("/calls/{call_id}", call_outcome)


@hookimpl
def register_call_features(register):
    register("outbound", outbound_start)


@hookimpl
def startup(app):
    dialer = Dialer(app)
    dialer.start()
    app.extensions["outbound"] = dialer
    slot = _slot(app)
    if slot is not None:
        slot.dialer = dialer
    if app.settings.outbound.allowed:
        log.info("outbound calls on: POST /calls may dial %s", ", ".join(app.settings.outbound.allowed))


@hookimpl
async def shutdown(app):
    dialer = app.extensions.pop("outbound", None)
    if dialer is not None:
        await dialer.stop()
    slot = _slot(app)
    if slot is not None:
        slot.dialer = None


def _slot(app: Any) -> Slot | None:
    webapp = getattr(getattr(app, "http", None), "web", None)
    return webapp.get(SLOT) if webapp is not None else None


def _refused(request: web.Request, status: int, message: str) -> web.Response:
    log.warning("POST /calls from %s refused (%d): %s", request.remote, status, message)
    return web.json_response({"error": message}, status=status)


async def place_call(request: web.Request) -> web.Response:
    dialer = request.app[SLOT].dialer
    if dialer is None:
        return _refused(request, 503, "outbound calls are not running (the outbound plugin has not started)")
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _refused(request, 413, f"the body is larger than {MAX_BODY} bytes")
    try:
        body = json.loads(await request.text())
    except (ValueError, UnicodeDecodeError, RecursionError):
        return _refused(request, 400, "the body is not JSON; send {\"endpoint\": \"PJSIP/100\", …}")
    try:
        placed = await dialer.place(body)
    except Rejected as exc:
        return _refused(request, exc.status, str(exc))
    if placed.outcome == "failed":
        return web.json_response({"call_id": placed.call_id, "error": placed.detail}, status=502)
    return web.json_response({"call_id": placed.call_id}, status=201)


async def call_outcome(request: web.Request) -> web.Response:
    dialer = request.app[SLOT].dialer
    if dialer is None:
        return web.json_response({"error": "outbound calls are not running"}, status=503)
    placed = dialer.placed.get(request.match_info["call_id"])
    if placed is None:
        return web.json_response({"error": "no outbound call with this id (placed by this aribot, still "
                                  "remembered: [outbound] keep_results; the history keeps every call)"}, status=404)
    return web.json_response(placed.public())
