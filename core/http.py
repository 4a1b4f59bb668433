"""HTTP API (aiohttp): GET /healthz, GET /calls, GET /tools, WebSocket /logs (every call event)."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, hdrs, web

from aribot.core.browser_guard import BrowserGuard
from aribot.core.events import Event

if TYPE_CHECKING:
    from aribot.core.app import App

log = logging.getLogger("aribot.http")
LOG_QUEUE = 2000
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="aribot"'}


OPEN_PATHS = frozenset({"/healthz"})  # a load balancer's probe needs no token (nor a Host of ours)
QUERY_TOKEN_PATHS = frozenset({"/logs"})  # a browser's WebSocket cannot send a header; nowhere else


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None for any other (or no) scheme."""
    scheme, _, value = header.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def refuse(request: web.Request, status: int, why: str, message: str, **headers: str) -> web.Response:
    """One log line (method, path without the query, peer, why; never a token) and the answer."""
    log.warning("HTTP API: %s %s from %s refused (%d): %s", request.method, request.path, request.remote, status, why)
    return web.json_response({"error": message}, status=status, headers=headers)


def request_guard(token: str, browsers: BrowserGuard) -> Any:
    """aiohttp middleware: every route but OPEN_PATHS checks, in this order, the Host and Origin
    rules (core.browser_guard), that a ``?token=`` is only sent where a header cannot be
    (QUERY_TOKEN_PATHS), and, when ``token`` is set, ``Authorization: Bearer <token>`` (or that
    ``?token=`` on QUERY_TOKEN_PATHS)."""
    expected = token.encode()

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        refusal = browsers.check(request.headers.get(hdrs.HOST), request.headers.get(hdrs.ORIGIN), request.scheme)
        if refusal is not None:
            return refuse(request, refusal.status, refusal.reason, refusal.reason)
        in_query = "token" in request.query
        if in_query and request.path not in QUERY_TOKEN_PATHS:
            return refuse(request, 401, "a token in the query string",
                          "?token= is accepted only by the /logs WebSocket (URLs end up in logs and browser "
                          "history): send Authorization: Bearer <http.token>", **CHALLENGE)
        if not token:
            return await handler(request)
        given = bearer_token(request.headers.get(hdrs.AUTHORIZATION, ""))
        if given is None:
            given = request.query.get("token", "") if in_query else ""
        if not hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected):  # any character compares
            return refuse(request, 401, f"{'wrong' if given else 'no'} token",
                          "a valid token is required (Authorization: Bearer <http.token>)", **CHALLENGE)
        return await handler(request)

    return guard


class HttpApi:
    def __init__(self, app: "App") -> None:
        self.app = app
        token = app.settings.http.token
        self.browsers = BrowserGuard("http", app.settings.http.host, app.settings.http.allowed_hosts,
                                     app.settings.http.allowed_origins)
        self.web = web.Application(middlewares=[request_guard(token, self.browsers)])
        self.web.add_routes([
            web.get("/healthz", self.healthz),
            web.get("/calls", self.calls),
            web.get("/tools", self.tools),
            web.get("/logs", self.logs),
        ])
        self._clients: set[asyncio.Queue[str | None]] = set()
        self._receiver = app.bus.subscribe(None, self._on_event, owner="core.http")
        app.plugins.pm.hook.register_routes(app=self.web)
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.dropped_log_events = 0

    async def start(self) -> None:
        cfg = self.app.settings.http
        # no access log: its request line would carry a /logs ?token= (refusals log one line each instead)
        self.runner = web.AppRunner(self.web, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, cfg.host, int(cfg.port))
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1] if sockets else int(cfg.port)
        log.info("HTTP API on http://%s:%d (/healthz, /calls, /tools, /logs)%s", cfg.host, self.port,
                 ", token required" if cfg.token else "")
        if note := self.browsers.startup_note():
            log.warning("HTTP API on %s: %s", cfg.host, note)

    async def stop(self) -> None:
        self.app.bus.unsubscribe(self._receiver)
        for queue in list(self._clients):
            queue.put_nowait(None)
        if self.runner is not None:
            await self.runner.cleanup()

    async def healthz(self, request: web.Request) -> web.Response:
        problem = self.app.ari_problem  # short and without Asterisk's address (this route needs no token)
        body = {"ari": "disconnected" if problem else "connected", "app": self.app.settings.ari.app,
                "calls": len(self.app.calls), "draining": self.app.draining}
        if problem:
            body["error"] = problem
        return web.json_response(body, status=503 if problem else 200)

    async def calls(self, request: web.Request) -> web.Response:
        return web.json_response(self.app.snapshot())

    async def tools(self, request: web.Request) -> web.Response:
        tools = [{**tool.definition(), "plugin": tool.owner, "enabled": tool.enabled}
                 for tool in self.app.tools.tools.values()]
        return web.json_response(tools)

    async def logs(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        queue: asyncio.Queue[str | None] = asyncio.Queue(LOG_QUEUE)
        self._clients.add(queue)
        await ws.send_json({"type": "hello", "calls": self.app.snapshot()})
        reader = asyncio.create_task(self._drain_incoming(ws))
        try:
            while (message := await queue.get()) is not None and not ws.closed:
                await ws.send_str(message)
        except ConnectionError:
            pass
        finally:
            self._clients.discard(queue)
            reader.cancel()
            await ws.close()
        return ws

    async def _drain_incoming(self, ws: web.WebSocketResponse) -> None:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_json({"type": "error", "message": "/logs is read-only"})

    def _on_event(self, event: Event) -> None:
        if not self._clients:
            return
        message = json.dumps(event.to_json(), default=str)
        for queue in self._clients:
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                self.dropped_log_events += 1
                if self.dropped_log_events == 1:   # one line, not one per event of a slow reader
                    log.warning("HTTP API: a /logs client reads slower than events come (%d waiting); "
                                "its newest events are dropped and counted (dropped_log_events)", LOG_QUEUE)
