"""``RealtimeServer``: the WebSocket endpoint, handshake rules, auth and fault injection.

One GA Realtime server serves two masters: the local voice backend (``[ai] backend = "local"``,
a ``Script`` whose turns are computed from the caller's audio) and the test suite's strict fake
(``tests.fake_realtime.FakeRealtimeServer``: scripted turns, and every frame it sends checked
against the openai SDK's GA models through ``validator``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from .clock import Clock, MonotonicClock
from .connection import FakeConnection
from .errors import ProtocolError
from .protocol import RealtimeProtocol
from .script import Script

log = logging.getLogger("aribot.realtime_server")

OPENAI_PATH = "/v1/realtime"
AZURE_PATH = "/openai/v1/realtime"
BETA_REMOVED = "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API."
ScriptSource = Script | Callable[[FakeConnection], Script] | None
Validator = Callable[[dict[str, Any]], list[str]]


class FakeBugError(AssertionError):
    """The server sent a frame that its validator rejects: a bug in the server itself."""


class RealtimeServer:
    """A strict local stand-in for ``wss://api.openai.com/v1/realtime`` (GA protocol).

    ``validator`` returns the problems of each frame about to be sent (none: no check).
    ``refuse_status`` and ``accept_delay_s`` may be changed at any time to inject faults.
    ``clock`` times every pause of the server; a test may swap in its own before clients connect.
    ``keep_records``: each connection keeps only its last this many sent and received events and
    appends (None: all of them, for tests that inspect a whole call); a long call then costs the
    server bounded memory (the local backend in aribot, the capacity benchmark).
    """

    def __init__(self, *, api_key: str | None = "test-key", script: ScriptSource = None,
                 validator: Validator | None = None, keep_records: int | None = None) -> None:
        self.api_key = api_key
        self.keep_records = keep_records
        self.script = script
        self.validator = validator
        self.refuse_status: int | None = None
        self.accept_delay_s: float = 0.0
        self.clock: Clock = MonotonicClock()
        self.connections: list[FakeConnection] = []
        self.rejected_handshakes: list[dict[str, Any]] = []
        self.fake_bugs: list[str] = []
        self.host = "127.0.0.1"
        self.port = 0
        self._server: Server | None = None
        self._connection_added = asyncio.Event()

    # ----- lifecycle ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        """OpenAI-style endpoint; the client appends ``?model=...``."""
        return f"ws://{self.host}:{self.port}{OPENAI_PATH}"

    @property
    def azure_url(self) -> str:
        """Azure GA-style endpoint; the client appends ``?model=<deployment>``."""
        return f"ws://{self.host}:{self.port}{AZURE_PATH}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> RealtimeServer:
        """Listen on ``host:port`` (0 = a free port)."""
        self._server = await serve(self._handle, host, port, process_request=self._process_request,
                                   max_size=32 * 1024 * 1024, ping_interval=None, close_timeout=2.0)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]
        log.info("fake Realtime server listening on %s", self.url)
        return self

    async def stop(self) -> None:
        """Close every connection (1001) and stop listening."""
        if self._server is not None:
            for conn in self.connections:
                conn.mark_closed(1001, "", "server")
            self._server.close(close_connections=True)
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> RealtimeServer:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
        if exc_type is None:
            self.assert_no_fake_bugs()

    # ----- self-check --------------------------------------------------------------------
    def check_outgoing(self, event: dict[str, Any]) -> None:
        """Record (and log) any way ``event`` is not a valid GA server event."""
        if self.validator is None:
            return
        for problem in self.validator(event):
            log.error("FAKE BUG: %s", problem)
            self.fake_bugs.append(problem)

    def record_fake_bug(self, what: str, exc: BaseException) -> None:
        """Record an exception raised inside the fake (always a fake bug)."""
        log.error("FAKE BUG: %s", what, exc_info=exc)
        self.fake_bugs.append(f"{what}: {''.join(traceback.format_exception(exc))}")

    def assert_no_fake_bugs(self) -> None:
        """Raise ``FakeBugError`` if the fake ever sent an invalid frame."""
        if self.fake_bugs:
            raise FakeBugError("the fake sent invalid GA frames:\n" + "\n".join(self.fake_bugs))

    # ----- waiting -----------------------------------------------------------------------
    async def wait_for_connections(self, count: int, timeout: float = 5.0) -> list[FakeConnection]:
        """Wait until ``count`` WebSocket sessions were accepted."""
        deadline = time.monotonic() + timeout
        while len(self.connections) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"only {len(self.connections)} of {count} connections after {timeout}s "
                                   f"(rejected handshakes: {self.rejected_handshakes})")
            self._connection_added.clear()
            try:
                await asyncio.wait_for(self._connection_added.wait(), remaining)
            except TimeoutError:
                pass
        return self.connections[:count]

    async def wait_for_connection(self, index: int = 0, timeout: float = 5.0) -> FakeConnection:
        """Connection ``index`` (0-based) once accepted."""
        return (await self.wait_for_connections(index + 1, timeout))[index]

    # ----- handshake ---------------------------------------------------------------------
    def _reject(self, connection: ServerConnection, request: Request, status: int, text: str) -> Response:
        self.rejected_handshakes.append({"t": time.time(), "path": request.path, "status": status, "text": text})
        log.info("handshake %s refused: %s %s", request.path, status, text)
        return connection.respond(HTTPStatus(status), text + "\n")

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.accept_delay_s > 0:
            await self.clock.wait(self.accept_delay_s)
        if self.refuse_status is not None:
            return self._reject(connection, request, self.refuse_status, "Refused by fault injection.")
        url = urlsplit(request.path)
        query = parse_qs(url.query)
        if url.path not in (OPENAI_PATH, AZURE_PATH):
            return self._reject(connection, request, 404, f"Not found: {url.path}")
        if "call_id" in query:
            return self._reject(connection, request, 400, "The fake does not support attaching with call_id.")
        if url.path == AZURE_PATH and "api-version" in query:
            return self._reject(connection, request, 400, "api-version is not supported on the GA /openai/v1 "
                                                          "endpoint.")
        if not query.get("model", [""])[0]:
            return self._reject(connection, request, 400, "Missing required parameter: 'model'.")
        return None

    def _auth_ok(self, request: Request, azure: bool) -> bool:
        if self.api_key is None:
            return True
        if azure:
            query = parse_qs(urlsplit(request.path).query)
            return request.headers.get("api-key") == self.api_key or query.get("api-key") == [self.api_key]
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    def _script_for(self, conn: FakeConnection) -> Script:
        if self.script is None:
            return Script()
        if isinstance(self.script, Script):
            return self.script
        return self.script(conn)

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        url = urlsplit(request.path)
        azure = url.path == AZURE_PATH
        model = parse_qs(url.query)["model"][0]
        headers = _headers_dict(request.headers)
        conn = FakeConnection(ws, self, model=model, azure=azure, script=Script(), headers=headers,
                              path=request.path, keep_records=self.keep_records)
        conn.script = self._script_for(conn)
        conn.protocol = RealtimeProtocol(conn)
        self.connections.append(conn)
        self._connection_added.set()
        log.info("%s connection from %s to %s", conn.label, ws.remote_address, request.path)
        if not self._auth_ok(request, azure):
            await self._refuse(conn, ProtocolError("invalid_api_key", "Incorrect API key provided."),
                               "invalid_request_error.invalid_api_key")
            return
        if "OpenAI-Beta" in request.headers:
            await self._refuse(conn, ProtocolError("beta_api_not_supported", BETA_REMOVED),
                               "invalid_request_error.beta_api_not_supported")
            return
        try:
            await conn.run()
        finally:
            if self.keep_records is not None:  # bounded records: a closed connection is not kept either
                self.connections.remove(conn)

    async def _refuse(self, conn: FakeConnection, error: ProtocolError, reason: str) -> None:
        """Complete the upgrade, send one ``error`` and close with 3000 (reference §1.1)."""
        await conn.emit({"type": "error", "error": error.payload(None)})
        await conn.close(3000, reason)


def _headers_dict(headers: Headers) -> dict[str, str]:
    """Header names lower-cased; repeated headers joined with ', '."""
    result: dict[str, str] = {}
    for name, value in headers.raw_items():
        key = name.lower()
        result[key] = f"{result[key]}, {value}" if key in result else value
    return result
