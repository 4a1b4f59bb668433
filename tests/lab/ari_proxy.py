"""A fault-injecting ARI proxy for the lab: aribot talks to it as if it were Asterisk.

REST requests and the events WebSocket (``/ari/events``) are forwarded unchanged, except where a
test arms a fault for one ARI operation (method + path template of Asterisk's api-docs, e.g.
``POST /channels/{channelId}/answer``):

* ``fail(op, status)``: answer ``status`` with an Asterisk-like ``{"message": ...}`` body (the
  reason the api-docs give for that status, if any);
* ``stall(op)``: never answer (until ``release()``), so aribot's ``ari.request_timeout`` fires;
* ``forward=True`` on either: Asterisk performs the request first and only its answer is replaced
  (e.g. 404 for a DELETE that raced with the caller's hang-up) or lost;
* ``drop_event(type, channel_prefix)``: an event never reaches aribot;
* ``rewrite_event(type, change, channel_prefix)``: aribot gets the frames ``change(event)`` returns
  instead (malformed copies, garbage, the event itself …).

Each fault fires ``times`` times (None: always) for requests whose path fields match ``fields``.
Everything that passed is recorded in ``exchanges`` and ``events``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import aiohttp
import yarl
from aiohttp import web

from tests.contract.ari_docs import doc_operations

EVENTS_PATH = "/ari/events"


@dataclass
class Fault:
    """What to do to one ARI operation; ``hits`` counts the requests it was applied to."""

    operation: str                 # "POST /channels/{channelId}/answer"
    status: int = 0                # the error status to answer (0 with ``stall``)
    stall: bool = False            # never answer until released
    forward: bool = False          # let Asterisk perform the request first
    message: str = ""
    times: int | None = 1
    fields: Mapping[str, str] = field(default_factory=dict)
    hits: int = 0

    def applies(self, operation: str, fields: Mapping[str, str]) -> bool:
        return (operation == self.operation and (self.times is None or self.hits < self.times)
                and all(fields.get(k) == v for k, v in self.fields.items()))

    @property
    def label(self) -> str:
        return ("forward+" if self.forward else "") + ("stall" if self.stall else str(self.status))


@dataclass
class EventDrop:
    """Events of ``type`` whose channel id starts with ``channel_prefix`` are not delivered."""

    type: str
    channel_prefix: str = ""
    times: int | None = 1
    hits: int = 0

    def applies(self, event: Mapping[str, Any]) -> bool:
        channel = event.get("channel") or {}
        return (event.get("type") == self.type and (self.times is None or self.hits < self.times)
                and str(channel.get("id", "")).startswith(self.channel_prefix))


@dataclass
class EventRewrite(EventDrop):
    """Events of ``type`` (channel ``channel_prefix*``) are replaced by the frames ``change(event)``
    returns (any text, in order)."""

    change: Callable[[dict[str, Any]], list[str]] = lambda event: [json.dumps(event)]


@dataclass(frozen=True)
class Exchange:
    """One REST request that went through; ``status`` is what aribot got (0: nothing)."""

    operation: str   # "METHOD /template", or "METHOD /path" if no api-docs operation matched
    path: str        # as requested, under /ari
    fields: Mapping[str, str]
    status: int
    fault: str = ""  # the applied fault's label, "" if forwarded untouched


@dataclass(frozen=True)
class RelayedEvent:
    type: str
    channel_id: str
    dropped: bool


@lru_cache(maxsize=1)
def _operation_table() -> list[tuple[str, str, re.Pattern[str]]]:
    """(method, template, regex) of every api-docs operation, the most literal segments first
    (``/channels/externalMedia`` before ``/channels/{channelId}``)."""
    table = []
    for method, template in doc_operations():
        regex = re.compile("^" + re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$")
        table.append((method, template, regex))
    return sorted(table, key=lambda row: -sum(1 for part in row[1].split("/") if part and "{" not in part))


def resolve(method: str, path: str) -> tuple[str, dict[str, str]]:
    """The api-docs operation of a request path under /ari, and its path fields."""
    for op_method, template, regex in _operation_table():
        match = regex.match(path)
        if op_method == method and match:
            return f"{method} {template}", match.groupdict()
    return f"{method} {path}", {}


def _check(operation: str) -> None:
    method, _, template = operation.partition(" ")
    if (method, template) not in doc_operations():
        raise ValueError(f"{operation!r} is not an ARI operation of Asterisk's api-docs")


def asterisk_message(operation: str, status: int) -> str:
    """The reason Asterisk's api-docs give for ``status`` on ``operation``, else the HTTP phrase."""
    method, template = operation.split(" ", 1)
    for error in doc_operations()[(method, template)].get("errorResponses", []):
        if error["code"] == status:
            return str(error["reason"])
    return http.HTTPStatus(status).phrase


class AriFaultProxy:
    """Listen on 127.0.0.1 and forward to ``upstream`` (Asterisk's HTTP base, without /ari)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults: list[Fault] = []
        self.drops: list[EventDrop] = []
        self.rewrites: list[EventRewrite] = []
        self.exchanges: list[Exchange] = []
        self.events: list[RelayedEvent] = []
        self.port = 0
        self._released = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse | aiohttp.ClientWebSocketResponse] = set()

    @property
    def url(self) -> str:
        """The base URL to give aribot as ``ari.url``."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> str:
        """Listen on a free port; return ``url``."""
        self._session = aiohttp.ClientSession(auto_decompress=False)
        server = web.Application()
        server.router.add_route("*", "/ari/{tail:.*}", self._handle)
        self._runner = web.AppRunner(server, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self.url

    async def close(self) -> None:
        """Answer stalled requests, close the WebSockets, stop listening."""
        self.release()
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # --- arming ---------------------------------------------------------------------------------
    def fail(self, operation: str, status: int, *, forward: bool = False, message: str = "",
             times: int | None = 1, **fields: str) -> Fault:
        """Answer ``operation`` with ``status`` (404, 409, 500, 503 ...) and an Asterisk-like body."""
        _check(operation)
        return self._arm(Fault(operation, status, False, forward, message or asterisk_message(operation, status),
                               times, fields))

    def stall(self, operation: str, *, forward: bool = False, times: int | None = 1, **fields: str) -> Fault:
        """Never answer ``operation`` (until ``release()``); ``forward``: Asterisk performs it."""
        _check(operation)
        return self._arm(Fault(operation, 0, True, forward, "", times, fields))

    def drop_event(self, event_type: str, channel_prefix: str = "", *, times: int | None = 1) -> EventDrop:
        """Do not deliver the next ``times`` events of ``event_type`` for channels ``channel_prefix*``."""
        drop = EventDrop(event_type, channel_prefix, times)
        self.drops.append(drop)
        return drop

    def rewrite_event(self, event_type: str, change: Callable[[dict[str, Any]], list[str]], channel_prefix: str = "",
                      *, times: int | None = 1) -> EventRewrite:
        """Send the frames ``change(event)`` returns instead of the next ``times`` events of
        ``event_type`` for channels ``channel_prefix*``."""
        rewrite = EventRewrite(event_type, channel_prefix, times, change=change)
        self.rewrites.append(rewrite)
        return rewrite

    def _arm(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def release(self) -> None:
        """Let every stalled request end (aribot has long given up on it)."""
        self._released.set()

    # --- REST -----------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == EVENTS_PATH and request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._relay_events(request)
        operation, fields = resolve(request.method, request.path[len("/ari"):])
        fault = next((f for f in self.faults if f.applies(operation, fields)), None)
        if fault is not None:
            fault.hits += 1
        body = await request.read()
        status, payload, content_type = 0, b"", ""
        if fault is None or fault.forward:
            status, payload, content_type = await self._forward(request, body)
        if fault is not None:
            self.exchanges.append(Exchange(operation, request.path, fields, 0 if fault.stall else fault.status,
                                           fault.label))
            if fault.stall:
                await self._released.wait()
                return web.json_response({"message": "stalled by the test proxy"}, status=503)
            return web.json_response({"message": fault.message}, status=fault.status)
        self.exchanges.append(Exchange(operation, request.path, fields, status))
        return web.Response(status=status, body=payload or None, content_type=content_type or None)

    async def _forward(self, request: web.Request, body: bytes) -> tuple[int, bytes, str]:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        url = yarl.URL(self.upstream + request.path_qs, encoded=True)
        async with self._session.request(request.method, url, data=body or None, headers=headers) as resp:
            return resp.status, await resp.read(), resp.content_type if resp.content_length != 0 else ""

    # --- events WebSocket -----------------------------------------------------------------------
    async def _relay_events(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
        try:
            upstream = await self._session.ws_connect(
                yarl.URL(self.upstream + request.path_qs, encoded=True), headers=headers, max_msg_size=0)
        except aiohttp.WSServerHandshakeError as exc:
            return web.json_response({"message": exc.message}, status=exc.status)
        except (aiohttp.ClientError, OSError):
            return web.json_response({"message": "Asterisk unreachable"}, status=502)
        client = web.WebSocketResponse(protocols=("ari",), max_msg_size=0)
        await client.prepare(request)
        self._sockets.update((client, upstream))
        pumps = [asyncio.ensure_future(self._events_down(upstream, client)),
                 asyncio.ensure_future(self._pump_up(client, upstream))]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._sockets.difference_update((client, upstream))
            await upstream.close()
            await client.close()
        return client

    async def _events_down(self, upstream: aiohttp.ClientWebSocketResponse, client: web.WebSocketResponse) -> None:
        async for msg in upstream:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            event = json.loads(msg.data)
            drop = next((d for d in self.drops if d.applies(event)), None)
            self.events.append(RelayedEvent(str(event.get("type")), str((event.get("channel") or {}).get("id", "")),
                                            drop is not None))
            if drop is not None:
                drop.hits += 1
                continue
            rewrite = next((r for r in self.rewrites if r.applies(event)), None)
            if rewrite is not None:
                rewrite.hits += 1
                for frame in rewrite.change(event):
                    with contextlib.suppress(ConnectionError):
                        await client.send_str(frame)
                continue
            with contextlib.suppress(ConnectionError):
                await client.send_str(msg.data)

    @staticmethod
    async def _pump_up(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in client:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            await upstream.send_str(msg.data)
