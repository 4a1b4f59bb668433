"""A thin ARI client on aiohttp: REST operations (one table, checked against Asterisk's own API
docs by the contract tests), typed errors, and the events WebSocket with reconnect + backoff."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import string
import time
from typing import Any, Awaitable, Callable

import aiohttp

log = logging.getLogger("aribot.ari")

# name → (HTTP method, path under /ari, parameters sent in the query string)
OPERATIONS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "ping": ("GET", "/asterisk/ping", ()),
    "asterisk_info": ("GET", "/asterisk/info", ("only",)),
    "get_application": ("GET", "/applications/{applicationName}", ()),
    "list_channels": ("GET", "/channels", ()),
    "get_channel": ("GET", "/channels/{channelId}", ()),
    "answer": ("POST", "/channels/{channelId}/answer", ()),
    "hangup": ("DELETE", "/channels/{channelId}", ("reason",)),
    "continue_in_dialplan": ("POST", "/channels/{channelId}/continue", ("context", "extension", "priority")),
    "external_media": ("POST", "/channels/externalMedia",
                       ("app", "channelId", "external_host", "encapsulation", "transport", "format", "direction", "data")),
    "set_variable": ("POST", "/channels/{channelId}/variable", ("variable", "value")),
    "get_variable": ("GET", "/channels/{channelId}/variable", ("variable",)),
    "play": ("POST", "/channels/{channelId}/play/{playbackId}", ("media",)),
    "stop_playback": ("DELETE", "/playbacks/{playbackId}", ()),
    "send_dtmf": ("POST", "/channels/{channelId}/dtmf", ("dtmf", "between", "duration")),
    "originate": ("POST", "/channels/{channelId}", ("endpoint", "app", "appArgs", "callerId", "timeout", "formats")),
    "start_moh": ("POST", "/channels/{channelId}/moh", ("mohClass",)),
    "stop_moh": ("DELETE", "/channels/{channelId}/moh", ()),
    "list_bridges": ("GET", "/bridges", ()),
    "create_bridge": ("POST", "/bridges/{bridgeId}", ("type", "name")),
    "add_channel": ("POST", "/bridges/{bridgeId}/addChannel", ("channel",)),
    "remove_channel": ("POST", "/bridges/{bridgeId}/removeChannel", ("channel",)),
    "destroy_bridge": ("DELETE", "/bridges/{bridgeId}", ()),
    "events": ("GET", "/events", ("app", "subscribeAll")),  # the WebSocket upgrade
    "set_event_filter": ("PUT", "/applications/{applicationName}/eventFilter", ()),  # JSON body: the filter
}
# Events aribot never uses; filtering them in Asterisk saves half the traffic of a call
# (20 of 41 events of a captured call were ChannelVarset).
UNUSED_EVENTS = ("ChannelVarset", "Dial", "ChannelDialplan", "ChannelCallerId", "ChannelConnectedLine")


class AriError(Exception):
    """An ARI request failed; ``status`` is the HTTP status (0 when Asterisk was unreachable)."""

    def __init__(self, op: str, status: int, message: str) -> None:
        super().__init__(f"ARI {op} failed: {status or 'no response'} {message}".strip())
        self.op, self.status, self.message = op, status, message


class AriNotFound(AriError):
    """404: the channel, bridge or playback does not exist (any more)."""


class AriConflict(AriError):
    """409: e.g. the channel is not in Stasis, or the id already exists."""


class AriUnprocessable(AriError):
    """422: e.g. the channel is not in the Stasis application (yet)."""


class AriUnavailable(AriError):
    """Asterisk did not answer, or answered 5xx."""


def error_for(op: str, status: int, message: str) -> AriError:
    kind = {404: AriNotFound, 409: AriConflict, 422: AriUnprocessable}.get(status)
    if kind is None:
        kind = AriUnavailable if status == 0 or status >= 500 else AriError
    return kind(op, status, message)


def new_id(prefix: str) -> str:
    """A pre-assigned resource id (ARI allows up to 149 chars)."""
    return prefix + "-" + "".join(random.choices(string.ascii_lowercase + string.digits, k=16))


class AriClient:
    """REST half of ARI. ``url`` is Asterisk's HTTP base (without /ari)."""

    def __init__(self, url: str, username: str, password: str, *, request_timeout: float = 5.0) -> None:
        self.base = url.rstrip("/") + "/ari"
        self.headers = {"Authorization": aiohttp.encode_basic_auth(username, password)}
        self.timeout = aiohttp.ClientTimeout(total=request_timeout)
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self.session is None:
            self.session = aiohttp.ClientSession(headers=self.headers, timeout=self.timeout)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def call(self, op: str, **params: Any) -> Any:
        """Run one operation of OPERATIONS; path fields and query params come from ``params``."""
        method, template, query_names = OPERATIONS[op]
        path_fields = {k: params.pop(k) for k in list(params) if "{" + k + "}" in template}
        unknown = set(params) - set(query_names) - {"body"}
        if unknown:
            raise TypeError(f"ARI {op} takes no parameter {sorted(unknown)}")
        body = params.pop("body", None)
        query: list[tuple[str, str]] = []
        for name, value in params.items():
            if value is None:
                continue
            if isinstance(value, (list, tuple)):  # allowMultiple: Asterisk reads one comma-separated value
                value = ",".join(str(item) for item in value)  # (repeated parameters: only the last one counts)
            query.append((name, ("true" if value else "false") if isinstance(value, bool) else str(value)))
        assert self.session is not None, "AriClient.start() was not called"
        url = self.base + template.format(**path_fields)
        try:
            async with self.session.request(method, url, params=query, json=body) as resp:
                text = await resp.text()
                if resp.status >= 300:
                    raise error_for(op, resp.status, _message(text))
                if resp.status == 204 or not text:
                    return None
                return await resp.json(content_type=None)
        except asyncio.TimeoutError as exc:  # (aiohttp's own timeouts are TimeoutErrors too)
            raise error_for(op, 0, f"within {self.timeout.total:g} s (ari.request_timeout)") from exc
        except aiohttp.ClientError as exc:
            raise error_for(op, 0, f"{type(exc).__name__}: {exc}") from exc

    def events_url(self) -> str:
        return self.base + OPERATIONS["events"][1]


def _message(text: str) -> str:
    try:
        data = json.loads(text)
        return str(data.get("message", text)) if isinstance(data, dict) else text
    except ValueError:
        return text[:200]


class AriEventStream:
    """The events WebSocket: connect, deliver each message, reconnect with exponential backoff.

    While it is down Asterisk unregisters the app (new Stasis() calls fail and continue in the
    dialplan); live calls keep their RTP. ``on_connect`` runs after each (re)connect.
    """

    def __init__(
        self,
        client: AriClient,
        app: str,
        on_message: Callable[[str], None],
        *,
        on_connect: Callable[[bool], Awaitable[None]] | None = None,
        min_delay: float = 0.5,
        max_delay: float = 10.0,
    ) -> None:
        self.client = client
        self.app = app
        self.on_message = on_message
        self.on_connect = on_connect
        self.min_delay, self.max_delay = min_delay, max_delay
        self.connected = asyncio.Event()
        self.connects = 0
        self.last_error = ""   # for the log and `aribot doctor`: may name Asterisk's address
        self.problem = "not connected yet"   # short, no address: for /healthz
        self.bad_messages = 0  # messages whose handling raised (each logged, then skipped)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._stopping = False

    async def run(self) -> None:
        delay = self.min_delay
        while not self._stopping:
            started = time.monotonic()
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except aiohttp.WSServerHandshakeError as exc:
                hint = "; check ari.username/ari.password" if exc.status in (401, 403) else ""
                self.last_error = f"upgrade refused with HTTP {exc.status}{hint}"
                self.problem = f"the events WebSocket upgrade was refused with HTTP {exc.status}"
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.problem = f"Asterisk unreachable ({type(exc).__name__})"
            except Exception as exc:  # a bug or a malformed reply in the connect handling: reconnect
                self.last_error = f"unexpected {type(exc).__name__}: {exc}"
                self.problem = f"the event task failed ({type(exc).__name__}); reconnecting"
                log.error("ARI events: unexpected error %r; dropping the connection and reconnecting", exc,
                          exc_info=True)
            self.connected.clear()
            self._ws = None
            if self._stopping:
                break
            if time.monotonic() - started > 30:
                delay = self.min_delay
            log.warning("ARI events WebSocket to %s is down (%s); live calls keep their audio; "
                        "reconnecting in %.1f s", self.client.base, self.last_error or "closed", delay)
            await asyncio.sleep(delay)
            delay = min(self.max_delay, delay * 2)

    async def _session(self) -> None:
        assert self.client.session is not None
        params = {"app": self.app, "subscribeAll": "false"}
        async with self.client.session.ws_connect(
            self.client.events_url(), params=params, heartbeat=10, timeout=aiohttp.ClientWSTimeout(ws_close=2),
            max_msg_size=16 * 1024 * 1024,
        ) as ws:
            self._ws = ws
            reconnect = self.connects > 0
            self.connects += 1
            self.last_error = self.problem = ""
            self.connected.set()
            log.info("ARI events WebSocket connected to %s, app %s%s", self.client.base, self.app,
                     " (reconnected)" if reconnect else "")
            if self.on_connect is not None:
                await self.on_connect(reconnect)
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    try:
                        self.on_message(msg.data)
                    except Exception as exc:  # one message costs only itself; the stream goes on
                        self.bad_messages += 1
                        log.error("ARI events: handling a message failed (%r); skipped, the stream goes on", exc)
                elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                    break
            self.last_error = f"the WebSocket closed (code {ws.close_code})"
            self.problem = f"the events WebSocket closed (code {ws.close_code}); reconnecting"
        self._ws = None

    async def stop(self) -> None:
        self._stopping = True
        if self._ws is not None:
            await self._ws.close()
