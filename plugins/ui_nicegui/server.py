"""The dashboard's web server: NiceGUI mounted on a FastAPI app, served by uvicorn as a task in
aribot's own event loop (python-stack.md §5.1, option B), behind two ASGI middlewares: the browser
rules (Host and Origin, core.browser_guard) on every request and WebSocket, then HTTP Basic auth
whenever a password is set (required off loopback).

Every action of a page (hang up, transfer, instruct, plugin switches …) reaches the server as a
socket.io message on the page's own socket, never as a plain HTTP POST; NiceGUI accepts any
origin on that socket (``cors_allowed_origins='*'``), so the Origin rule here is what keeps other
sites' pages off it, and ``bind_page_messages`` makes a socket act only on the page it
handshook for."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import inspect
import logging
from typing import Any, Callable

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from aribot.core.browser_guard import BrowserGuard
from aribot.core.settings import is_loopback_host
from aribot.plugins.recording.route import mount_recordings
from aribot.plugins.ui_nicegui.listen import mount_listen

log = logging.getLogger("aribot.ui")
is_loopback = is_loopback_host  # a dashboard on such an address needs no password
PAGE_MESSAGES = ("event", "javascript_response", "ack", "log")  # NiceGUI's messages that name a page (client_id)


def header(scope: Scope, name: bytes) -> str | None:
    """The first ``name`` header of an ASGI scope, decoded as Latin-1 (any byte decodes)."""
    for key, value in scope.get("headers") or []:
        if key == name:
            return value.decode("latin-1")
    return None


async def deny(scope: Scope, receive: Receive, send: Send, status: int, body: bytes,
               headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """Answer an HTTP request, or refuse a WebSocket handshake, with ``status`` and ``body``."""
    response = [(b"content-type", b"text/plain; charset=utf-8"), *headers]
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        if "websocket.http.response" not in (scope.get("extensions") or {}):
            await send({"type": "websocket.close", "code": 1008})  # the server answers 403
            return
        await send({"type": "websocket.http.response.start", "status": status, "headers": response})
        await send({"type": "websocket.http.response.body", "body": body})
        return
    await send({"type": "http.response.start", "status": status, "headers": response})
    await send({"type": "http.response.body", "body": body})


class BrowserCheck:
    """ASGI middleware: the Host and Origin rules on every HTTP request and WebSocket handshake;
    a refusal answers 421 or 403 and logs one line."""

    def __init__(self, app: ASGIApp, guard: BrowserGuard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            refusal = self.guard.check(header(scope, b"host"), header(scope, b"origin"), scope.get("scheme", "http"))
            if refusal is not None:
                client = scope.get("client") or ("?", 0)
                what = "WebSocket" if scope["type"] == "websocket" else scope.get("method", "?")
                log.warning("dashboard: %s %s from %s refused (%d): %s", what, scope.get("path", ""), client[0],
                            refusal.status, refusal.reason)
                await deny(scope, receive, send, refusal.status, f"aribot dashboard: {refusal.reason}\n".encode())
                return
        await self.app(scope, receive, send)


def basic_credentials(value: bytes) -> tuple[bytes, bytes] | None:
    """(user, password) of an ``Authorization: Basic`` header; None for anything else (another
    scheme, bad base64, no colon, any byte) — never an exception."""
    scheme, _, encoded = value.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    return (user, password) if colon else None


class BasicAuth:
    """ASGI middleware: every HTTP request and WebSocket needs the dashboard password."""

    def __init__(self, app: ASGIApp, username: str, password: str) -> None:
        self.app = app
        self.username = username.encode("utf-8", "surrogatepass")
        self.password = password.encode("utf-8", "surrogatepass")

    def authorized(self, scope: Scope) -> bool:
        given = basic_credentials(dict(scope.get("headers") or []).get(b"authorization", b""))
        if given is None:
            return False
        user_ok = hmac.compare_digest(given[0], self.username)
        password_ok = hmac.compare_digest(given[1], self.password)  # both compared: no early exit
        return user_ok and password_ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not self.authorized(scope):
            await deny(scope, receive, send, 401, b"aribot dashboard: password required\n",
                       ((b"www-authenticate", b'Basic realm="aribot"'),))
            return
        await self.app(scope, receive, send)


def bind_page_messages(sio: Any) -> None:
    """Make NiceGUI's page messages (a click, a JavaScript answer …) act only on the page whose
    handshake put the socket in that page's room: NiceGUI itself trusts the ``client_id`` a message
    names, so one socket could otherwise drive another page."""
    handlers = sio.handlers.setdefault("/", {})
    for name in PAGE_MESSAGES:
        original = handlers.get(name)
        if original is None or getattr(original, "bound_to_page", False):
            continue

        def allowed(sid: str, msg: Any, name: str = name) -> bool:
            client_id = msg.get("client_id") if isinstance(msg, dict) else None
            if isinstance(client_id, str) and client_id in sio.rooms(sid):
                return True
            log.warning("dashboard: a %r message on socket %s refused: it names a page this socket did not "
                        "open", name, sid)
            return False

        if inspect.iscoroutinefunction(original):
            async def bound(sid: str, msg: Any, *rest: Any, _original: Any = original, _allowed: Any = allowed) -> Any:
                return await _original(sid, msg, *rest) if _allowed(sid, msg) else None
        else:
            def bound(sid: str, msg: Any, *rest: Any, _original: Any = original, _allowed: Any = allowed) -> Any:
                return _original(sid, msg, *rest) if _allowed(sid, msg) else None
        bound.bound_to_page = True  # type: ignore[attr-defined]
        handlers[name] = bound


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
        from nicegui import core, ui

        web = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)  # serve the dashboard, nothing else
        mount_listen(web, self.cfg)  # before NiceGUI's mount at "/": listen-in's socket and script
        mount_recordings(web, getattr(self.root, "__self__", None))  # /recording/{call}: the Dashboard's app
        # no gzip: NiceGUI compressed its ~43 static files at level 9 in aribot's own event loop each
        # time a page opened, which delayed 50 calls' audio frames (docs/capacity.md); the dashboard
        # is on loopback or a LAN, where compression saves little
        ui.run_with(web, root=self.root, title="aribot", show_welcome_message=False, reconnect_timeout=10.0,
                    gzip_middleware_factory=None)
        bind_page_messages(core.sio)
        asgi: ASGIApp = web
        if self.cfg.password:
            asgi = BasicAuth(asgi, self.cfg.username, self.cfg.password)
        browsers = BrowserGuard("ui", self.cfg.host, self.cfg.allowed_hosts, self.cfg.allowed_origins)
        asgi = BrowserCheck(asgi, browsers)
        config = uvicorn.Config(asgi, host=self.cfg.host, port=int(self.cfg.port), log_level="warning",
                                access_log=False, ws="wsproto", lifespan="on")
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
        if note := browsers.startup_note():
            log.warning("dashboard on %s: %s", self.cfg.host, note)

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self.task, 5)
