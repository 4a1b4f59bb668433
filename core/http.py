"""HTTP API (aiohttp): GET /healthz, GET /calls, GET /tools, WebSocket /logs (every call event)."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from aribot.core.events import Event

if TYPE_CHECKING:
    from aribot.core.app import App

log = logging.getLogger("aribot.http")
LOG_QUEUE = 2000


OPEN_PATHS = frozenset({"/healthz"})  # a load balancer's probe needs no token


def token_guard(token: str) -> Any:
    """aiohttp middleware: every route but OPEN_PATHS needs ``Authorization: Bearer <token>`` (or
    ``?token=`` where a header cannot be set, e.g. a browser's WebSocket to /logs)."""
    expected = token.encode()

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        given = header[7:] if header[:7].lower() == "bearer " else request.query.get("token", "")
        if not hmac.compare_digest(given.encode(errors="surrogateescape"), expected):  # any byte compares
            log.warning("HTTP API: %s %s from %s refused: %s token", request.method, request.path, request.remote,
                        "wrong" if given else "no")
            return web.json_response({"error": "a valid token is required (Authorization: Bearer <http.token>)"},
                                     status=401, headers={"WWW-Authenticate": 'Bearer realm="aribot"'})
        return await handler(request)

    return guard


class HttpApi:
    def __init__(self, app: "App") -> None:
        self.app = app
        token = app.settings.http.token
        self.web = web.Application(middlewares=[token_guard(token)] if token else [])
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
        self.runner = web.AppRunner(self.web, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, cfg.host, int(cfg.port))
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1] if sockets else int(cfg.port)
        log.info("HTTP API on http://%s:%d (/healthz, /calls, /tools, /logs)%s", cfg.host, self.port,
                 ", token required" if cfg.token else "")

    async def stop(self) -> None:
        self.app.bus.unsubscribe(self._receiver)
        for queue in list(self._clients):
            queue.put_nowait(None)
        if self.runner is not None:
            await self.runner.cleanup()

    async def healthz(self, request: web.Request) -> web.Response:
        body = {"ari": "connected" if self.app.ari_connected else "disconnected", "app": self.app.settings.ari.app,
                "calls": len(self.app.calls), "draining": self.app.draining}
        if not self.app.ari_connected:
            body["error"] = self.app.stream.last_error or "not connected yet"
        return web.json_response(body, status=200 if self.app.ari_connected else 503)

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
