"""HTTP API of the call history: ``GET /history`` (search) and ``GET /history/{call_id}``."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from aiohttp import web

from aribot.plugins.history.store import HistoryError, HistoryStore


@dataclass
class Slot:
    """Where the routes find the store: filled by ``startup(app)``, emptied by ``shutdown``."""

    store: HistoryStore | None = None
    why: str = "call history has not started"


SLOT = web.AppKey("aribot_history", Slot)
DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
MAX_LIMIT = 1000


class BadQuery(ValueError):
    """A query parameter has a value the API cannot use; the message is shown to the client."""


def add_routes(webapp: web.Application) -> Slot:
    """Add the history routes to aribot's aiohttp application; returns the store slot."""
    slot = webapp[SLOT] = Slot()
    webapp.router.add_get("/history", list_calls)
    webapp.router.add_get("/history/{call_id}", one_call)
    return slot


def parse_time(name: str, text: str, *, end_of_day: bool = False) -> float:
    """Epoch seconds from epoch seconds or an ISO 8601 date/time (no offset = this server's local
    time); a bare date means its start, or with ``end_of_day`` the start of the next day."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        try:
            if DATE_ONLY.fullmatch(text):
                day = date.fromisoformat(text) + timedelta(days=1 if end_of_day else 0)
                return datetime.combine(day, time()).timestamp()
            return datetime.fromisoformat(text).timestamp()
        except ValueError:
            raise BadQuery(f"{name}: expected an ISO 8601 date/time or epoch seconds, got {text!r}") from None
    if not math.isfinite(value):
        raise BadQuery(f"{name}: expected an ISO 8601 date/time or epoch seconds, got {text!r}")
    return value


def parse_int(name: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise BadQuery(f"{name}: expected an integer {low}..{high}, got {text!r}")
    return value


def search_args(query: Any) -> dict[str, Any]:
    """``search()`` keyword arguments from the query string (caller, since, until, q, end_reason,
    backend, limit, offset)."""
    args: dict[str, Any] = {"caller": query.get("caller") or None, "text": query.get("q") or None,
                            "end_reason": query.get("end_reason") or None, "backend": query.get("backend") or None}
    if query.get("since"):
        args["since"] = parse_time("since", query["since"])
    if query.get("until"):
        args["until"] = parse_time("until", query["until"], end_of_day=True)
    args["limit"] = parse_int("limit", query["limit"], 1, MAX_LIMIT) if query.get("limit") else 100
    args["offset"] = parse_int("offset", query["offset"], 0, 10**9) if query.get("offset") else 0
    return args


def _unavailable(request: web.Request) -> web.Response:
    return web.json_response({"error": request.app[SLOT].why}, status=503)


async def list_calls(request: web.Request) -> web.Response:
    """Calls matching the query, newest first (without transcripts)."""
    store = request.app[SLOT].store
    if store is None:
        return _unavailable(request)
    try:
        args = search_args(request.query)
    except BadQuery as exc:
        return web.json_response({"error": str(exc)}, status=400)
    try:
        return web.json_response(await store.search(**args))
    except HistoryError as exc:          # closed by a shutdown meanwhile
        return web.json_response({"error": str(exc)}, status=503)


async def one_call(request: web.Request) -> web.Response:
    """One call with its turns, tool calls and timeline."""
    store = request.app[SLOT].store
    if store is None:
        return _unavailable(request)
    call_id = request.match_info["call_id"]
    try:
        record = await store.get(call_id)
    except HistoryError as exc:
        return web.json_response({"error": str(exc)}, status=503)
    if record is None:
        return web.json_response({"error": f"no call {call_id!r} in the history"}, status=404)
    return web.json_response(record)
