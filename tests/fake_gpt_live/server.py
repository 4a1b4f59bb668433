"""``FakeGptLiveServer``: the WebSocket endpoint ``/v1/live/sessions``, handshake rules, fault injection and
the self-check of every frame the fake sends."""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from aribot.plugins.local_backend.realtime.clock import Clock, MonotonicClock
from aribot.plugins.local_backend.realtime.server import FakeBugError
from tests.lab.wait import until

from .connection import SENT_EVENT_TYPES, LiveConnection
from .protocol import LiveProtocol
from .records import ClientBug
from .script import Script
from .validation import check_server_event

log = logging.getLogger("aribot.fake_gpt_live")

LIVE_PATH = "/v1/live/sessions"
ScriptSource = Script | Callable[[LiveConnection], Script] | None


class ClientBugError(AssertionError):
    """The client broke the GPT-Live protocol (see ``LiveConnection.client_bugs``)."""


class FakeGptLiveServer:
    """A strict local stand-in for ``wss://api.openai.com/v1/live/sessions`` (primary WebSocket).

    ``script``: one ``Script`` for every connection (each keeps its own position) or a function of the
    connection. ``refuse_status`` / ``accept_delay_s`` may change at any time to inject faults. ``clock``
    times every pause of the server (handshake delay, startup latency, audio pacing, usage, expiry); a
    test may pass its own. ``validate_outgoing=False`` skips the SDK check of each sent frame;
    ``keep_records=N`` keeps only each connection's last N events and arrivals (bounded memory).
    """

    def __init__(self, *, api_key: str | None = "test-key", script: ScriptSource = None,
                 validate_outgoing: bool = True, clock: Clock | None = None, keep_records: int | None = None) -> None:
        self.api_key = api_key
        self.keep_records = keep_records
        self.script = script
        self.validator = check_server_event if validate_outgoing else None
        self.clock: Clock = clock or MonotonicClock()
        self.refuse_status: int | None = None
        self.accept_delay_s = 0.0
        self.connections: list[LiveConnection] = []
        self.rejected_handshakes: list[dict[str, Any]] = []
        self.fake_bugs: list[str] = []
        self.host = "127.0.0.1"
        self.port = 0
        self._server: Server | None = None

    # ----- lifecycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The primary WebSocket URL (no query string: the model goes in ``session.start``)."""
        return f"ws://{self.host}:{self.port}{LIVE_PATH}"

    @property
    def base_url(self) -> str:
        """``base_url`` for an ``openai.AsyncOpenAI`` client, whose ``live.connect()`` adds ``/live/sessions``."""
        return f"http://{self.host}:{self.port}/v1"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> FakeGptLiveServer:
        """Listen on ``host:port`` (0 = a free port)."""
        self._server = await serve(self._handle, host, port, process_request=self._process_request,
                                   max_size=16 * 1024 * 1024, ping_interval=None, close_timeout=2.0)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]
        log.info("fake GPT-Live server listening on %s", self.url)
        return self

    async def stop(self) -> None:
        """Close every connection (1001) and stop listening."""
        if self._server is not None:
            for conn in self.connections:
                conn.mark_closed(1001, "server")
            self._server.close(close_connections=True)
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FakeGptLiveServer:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
        if exc_type is None:
            self.assert_no_fake_bugs()

    # ----- self-check and client bugs ----------------------------------------------------------
    def check_outgoing(self, event: dict[str, Any]) -> None:
        """Record every way ``event`` is not a valid GPT-Live server event, or not one this fake declares
        in ``SENT_EVENT_TYPES`` (a fake bug)."""
        problems = self.validator(event) if self.validator is not None else []
        if event["type"] not in SENT_EVENT_TYPES:
            problems.append(f"{event['type']!r} is not in SENT_EVENT_TYPES")
        for problem in problems:
            log.error("FAKE BUG: %s", problem)
            self.fake_bugs.append(problem)

    def record_fake_bug(self, what: str, exc: BaseException) -> None:
        """Record an exception raised inside the fake (always a fake bug)."""
        log.error("FAKE BUG: %s", what, exc_info=exc)
        self.fake_bugs.append(f"{what}: {''.join(traceback.format_exception(exc))}")

    def assert_no_fake_bugs(self) -> None:
        """Raise ``FakeBugError`` if the fake ever sent an invalid frame or crashed."""
        if self.fake_bugs:
            raise FakeBugError("the fake GPT-Live server misbehaved:\n" + "\n".join(self.fake_bugs))

    @property
    def client_bugs(self) -> list[ClientBug]:
        """Protocol violations of every connection's client, in connection order."""
        return [bug for conn in self.connections for bug in conn.client_bugs]

    def assert_no_client_bugs(self) -> None:
        """Raise ``ClientBugError`` listing every protocol violation a client made."""
        if self.client_bugs:
            raise ClientBugError("the client broke the GPT-Live protocol:\n" + "\n".join(map(str, self.client_bugs)))

    # ----- waiting -----------------------------------------------------------------------------
    async def wait_for_connection(self, index: int = 0, timeout: float = 5.0) -> LiveConnection:
        """Connection ``index`` (0-based) once accepted (the timeout is a hang guard)."""
        return await until(lambda: self.connections[index] if len(self.connections) > index else None,
                           f"GPT-Live connection #{index} (rejected: {self.rejected_handshakes})", timeout,
                           interval=0.005)

    # ----- handshake ---------------------------------------------------------------------------
    def _reject(self, connection: ServerConnection, request: Request, status: int, message: str,
                code: str | None, param: str | None = None) -> Response:
        """An HTTP refusal before the upgrade, with an OpenAI-style JSON error body."""
        self.rejected_handshakes.append({"t": time.time(), "path": request.path, "status": status, "code": code})
        log.info("handshake %s refused: %s %s", request.path, status, message)
        body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
        response = connection.respond(HTTPStatus(status), json.dumps(body) + "\n")
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        return response

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.accept_delay_s > 0:
            await self.clock.wait(self.accept_delay_s)
        if self.refuse_status is not None:
            return self._reject(connection, request, self.refuse_status, "Refused by fault injection.",
                                "fault_injection")
        url = urlsplit(request.path)
        if url.path != LIVE_PATH:
            return self._reject(connection, request, 404, f"Invalid URL (GET {url.path})", None)
        authorization = request.headers.get("Authorization")
        if self.api_key is not None and authorization != f"Bearer {self.api_key}":
            if not authorization:
                return self._reject(connection, request, 401, "You didn't provide an API key. You need to provide "
                                    "your API key in an Authorization header using Bearer auth.", None)
            return self._reject(connection, request, 401, "Incorrect API key provided.", "invalid_api_key")
        if url.query:
            return self._reject(connection, request, 400, "GPT-Live takes no query parameters on "
                                f"{LIVE_PATH}; send the model in session.start (got '?{url.query}').",
                                "unknown_parameter", url.query.split("=", 1)[0])
        if "OpenAI-Beta" in request.headers:
            return self._reject(connection, request, 400, "GPT-Live does not take an OpenAI-Beta header.",
                                "beta_api_not_supported")
        return None

    def _script_for(self, conn: LiveConnection) -> Script:
        if self.script is None:
            return Script()
        return self.script if isinstance(self.script, Script) else self.script(conn)

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        headers = {name.lower(): value for name, value in request.headers.raw_items()}
        conn = LiveConnection(ws, self, script=Script(), headers=headers, path=request.path,
                              keep_records=self.keep_records)
        self.connections.append(conn)
        try:
            conn.script = self._script_for(conn)
            conn.protocol = LiveProtocol(conn)
        except Exception as exc:
            self.record_fake_bug("cannot set up the connection", exc)
            await ws.close(1011, "fake setup failed")
            return
        log.info("%s connection from %s", conn.label, ws.remote_address)
        await conn.run()
