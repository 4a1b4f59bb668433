"""The dashboard's web server: NiceGUI mounted on a FastAPI app, served by uvicorn as a task in
aribot's own event loop (python-stack.md §5.1, option B), with HTTP Basic auth whenever it is
bound to anything but loopback."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import logging
from typing import Any, Callable

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from aribot.core.settings import is_loopback_host

log = logging.getLogger("aribot.ui")
is_loopback = is_loopback_host  # a dashboard on such an address needs no password


class BasicAuth:
    """ASGI middleware: every HTTP request and WebSocket needs the dashboard password."""

    def __init__(self, app: ASGIApp, username: str, password: str) -> None:
        self.app = app
        self.expected = b"Basic " + base64.b64encode(f"{username}:{password}".encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            given = dict(scope.get("headers") or []).get(b"authorization", b"")  # bytes: any byte compares
            if not hmac.compare_digest(given, self.expected):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 4401})
                    return
                await send({"type": "http.response.start", "status": 401, "headers": [
                    (b"www-authenticate", b'Basic realm="aribot"'), (b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"aribot dashboard: password required\n"})
                return
        await self.app(scope, receive, send)


class EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: aribot's CLI owns SIGINT/SIGTERM."""

    def capture_signals(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


class DashboardServer:
    def __init__(self, cfg: Any, root: Callable[[], Any]) -> None:
        self.cfg = cfg
        self.root = root
        self.server: EmbeddedServer | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from nicegui import ui

        web = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)  # serve the dashboard, nothing else
        ui.run_with(web, root=self.root, title="aribot", show_welcome_message=False, reconnect_timeout=10.0)
        asgi: ASGIApp = web
        if self.cfg.password:
            asgi = BasicAuth(web, self.cfg.username, self.cfg.password)
        config = uvicorn.Config(asgi, host=self.cfg.host, port=int(self.cfg.port), log_level="warning",
                                ws="wsproto", lifespan="on")
        self.server = EmbeddedServer(config)
        self.task = asyncio.create_task(self.server.serve(), name="ui-server")
        while not self.server.started and not self.task.done():
            await asyncio.sleep(0.02)
        if self.task.done():
            self.task.result()  # raises the start-up error (e.g. the port is taken)
        sockets = [s for server in self.server.servers for s in server.sockets]
        self.port = sockets[0].getsockname()[1] if sockets else int(self.cfg.port)
        log.info("dashboard on http://%s:%d/%s", self.cfg.host, self.port,
                 " (password required)" if self.cfg.password else "")

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self.task, 5)
