"""Listen in: an operator hears a live call in the browser.

The call page's Listen button (``listen_controls``) mints a one-time token for that call
(random, 60 s, single use) and the page's script (static/listen.js) opens the WebSocket
``/listen/{call_id}?token=…`` on the dashboard's own server, so the route sits behind the same
middlewares as every page (Host/Origin rules, Basic auth when a password is set).

On the socket the server sends one JSON text message first::

    {"format": "ulaw" | "alaw", "rate": 8000, "channels": 2, "interleaved": true, "chunk_ms": 100}

then, every ~100 ms, one binary message: raw G.711 bytes, **stereo, interleaved one byte per
sample: left = the caller, right = the AI** (what the pacer sent to the caller, idle silence
included). Both channels advance by elapsed time: a side that has less (the AI between answers,
a late RTP packet) is padded with G.711 silence, so left and right stay aligned.

The tap in the call costs nothing while nobody listens (``Call.listeners`` is empty and the
pacer's ``on_frame`` is None); a listener only appends bytes on the audio path, and its own task
does the rest. A slow browser cannot grow memory: at most ``QUEUE_CHUNKS`` messages wait for the
socket (the oldest is dropped and counted), and a side that runs ahead of real time keeps at most
``SLACK_S`` of audio (the oldest is dropped and counted).

Who may listen: the dashboard's operator. With a password that is the Basic-auth user; on a
loopback dashboard without a password it is the local user (who already has every control of the
dashboard), named ``local`` in the events. Each session emits ``ListenStarted`` /
``ListenStopped`` on the bus (the call's history timeline records them) and logs one line each.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import deque
from pathlib import Path
from typing import Any

from fastapi import WebSocket
from fastapi.responses import FileResponse

from aribot.core import events as ev
from aribot.core.audio_tap import DELAY_S, RATE, SLACK_S, AlignedTap

log = logging.getLogger("aribot.ui")
CHUNK_S = 0.1              # one WebSocket message per this much audio (DELAY_S, SLACK_S: core/audio_tap.py)
QUEUE_CHUNKS = 10          # messages waiting for a slow browser (1 s); beyond, the oldest is dropped
TOKEN_TTL_S = 60.0         # a listen token is valid this long, and once
MAX_TOKENS = 1000          # tokens not yet used; beyond, the oldest are forgotten
STATIC = Path(__file__).parent / "static"
SCRIPT_URL = "/_aribot/listen.js"
CLOSE_CALL_ENDED = 1000

_tokens: dict[str, tuple[str, float, Any]] = {}   # token → (call id, expiry (monotonic), App)


def mint_token(app: Any, call_id: str) -> str | None:
    """A one-time token for listening to ``call_id`` (None if listen-in is off or the call is not live)."""
    if not app.settings.ui.get("listen_in", True) or _live_call(app, call_id) is None:
        return None
    now = time.monotonic()
    for token in [t for t, (_, expires, _) in _tokens.items() if expires <= now]:
        del _tokens[token]
    while len(_tokens) >= MAX_TOKENS:
        del _tokens[next(iter(_tokens))]
    token = secrets.token_urlsafe(24)
    _tokens[token] = (call_id, now + TOKEN_TTL_S, app)
    return token


def redeem_token(token: str, call_id: str) -> tuple[Any, str]:
    """(App, "") for a valid token of ``call_id``, consuming it; (None, why) otherwise."""
    entry = _tokens.pop(token, None) if token else None
    if entry is None:
        return None, "no valid listen token (missing, unknown or already used)"
    token_call, expires, app = entry
    if expires <= time.monotonic():
        return None, "listen token expired"
    if token_call != call_id:
        return None, "listen token of another call"
    return app, ""


def _live_call(app: Any, call_id: str) -> Any:
    call = app.calls.get(call_id)
    if call is None or not hasattr(call, "add_listener") or call.stopping:
        return None
    return call


class Listener(AlignedTap):
    """Collects both sides of one call for one browser socket (the aligned tap of
    core/audio_tap.py) and cuts them into stereo chunks every ~100 ms (its own task): left =
    caller, right = AI, interleaved G.711 bytes."""

    def __init__(self, call: Any, operator: str, client: str, fmt: str, *, loop: Any = None) -> None:
        super().__init__(fmt, loop=loop, delay_s=DELAY_S, slack_s=SLACK_S, max_due_s=QUEUE_CHUNKS * CHUNK_S)
        self.call, self.operator, self.client = call, operator, client
        self.queue: deque[bytes] = deque()
        self.ready = asyncio.Event()     # a chunk waits in the queue
        self.closed = asyncio.Event()
        self.dropped_chunks = 0          # messages a slow browser missed
        self.started = time.monotonic()

    # --- the listener's own task -----------------------------------------------------------------
    def header(self) -> str:
        return json.dumps({"format": self.format, "rate": RATE, "channels": 2, "interleaved": True,
                           "chunk_ms": int(CHUNK_S * 1000)})

    def put(self, chunk: bytes) -> None:
        """Queue a chunk for the socket; a full queue (a slow browser) drops the oldest, counted."""
        if len(self.queue) >= QUEUE_CHUNKS:
            self.queue.popleft()
            self.dropped_chunks += 1
        self.queue.append(chunk)
        self.ready.set()

    async def run(self) -> None:
        """Cut a chunk every CHUNK_S until closed (or the call is gone)."""
        while not self.closed.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.closed.wait(), CHUNK_S)
            if self.call.stopping or self.call.state == "ended":
                self.close()
            chunk = self.cut()
            if chunk is not None and not self.closed.is_set():
                self.put(chunk)

    async def send_loop(self, websocket: Any) -> None:
        while True:
            await self.ready.wait()
            self.ready.clear()
            while self.queue:
                await websocket.send_bytes(self.queue.popleft())

    def close(self) -> None:
        """End the session (Stop, browser gone or call ending): untap the call, emit ListenStopped
        and log once. Synchronous, so a call's teardown records it before CallEnded."""
        if self.closed.is_set():
            return
        self.closed.set()
        self.call.remove_listener(self)
        seconds = round(time.monotonic() - self.started, 1)
        self.call.emit(ev.ListenStopped(call_id=self.call.id, operator=self.operator, seconds=seconds))
        log.info("call %s: %s stopped listening after %.1f s (%s); dropped: %d chunks for a slow browser, %d bytes "
                 "ahead of real time", self.call.id, self.operator, seconds, self.client, self.dropped_chunks,
                 self.dropped_bytes)


def operator_of(scope: dict[str, Any], cfg: Any) -> str:
    """Who is listening: the Basic-auth user (BasicAuth has checked the password) or, on a
    loopback dashboard without a password, the local user."""
    from aribot.plugins.ui_nicegui.server import basic_credentials

    if cfg.password:
        given = basic_credentials(dict(scope.get("headers") or []).get(b"authorization", b""))
        return given[0].decode("utf-8", "replace") if given else str(cfg.username)
    return "local"


def mount_listen(web: Any, cfg: Any) -> None:
    """Add the listen-in WebSocket ``/listen/{call_id}`` and its script to the dashboard's
    FastAPI app; call it before NiceGUI is mounted at "/" (routes match in order)."""
    async def script() -> FileResponse:
        return FileResponse(STATIC / "listen.js", media_type="text/javascript",
                            headers={"cache-control": "no-cache"})

    async def listen(websocket: WebSocket, call_id: str) -> None:
        client = "%s:%s" % (websocket.client or ("?", 0))
        app, why = redeem_token(websocket.query_params.get("token", ""), call_id)
        call = _live_call(app, call_id) if app is not None else None
        if not cfg.get("listen_in", True):
            why = "listen-in is off (ui.listen_in = false)"
        elif app is not None and call is None:
            why = "the call is not live"
        if why or call is None:
            log.warning("dashboard: listen-in to call %r from %s refused: %s", call_id[:64], client, why)
            await websocket.close(code=1008)
            return
        await serve_listener(websocket, call, operator_of(websocket.scope, cfg), client)

    web.add_api_route(SCRIPT_URL, script, methods=["GET"], include_in_schema=False)
    web.add_api_websocket_route("/listen/{call_id}", listen)


async def serve_listener(websocket: Any, call: Any, operator: str, client: str) -> None:
    """One listen session on an accepted-to-be socket, until Stop, the browser leaves or the call ends."""
    listener = Listener(call, operator, client, call.settings.rtp.format)
    try:
        await websocket.accept()
        await websocket.send_text(listener.header())
    except Exception as exc:  # the browser left during the handshake: no session
        log.info("call %s: listen-in from %s gone before it started (%r)", call.id, client, exc)
        return
    call.add_listener(listener)
    call.emit(ev.ListenStarted(call_id=call.id, operator=operator, client=client))
    log.info("call %s: %s started listening (%s)", call.id, operator, client)

    async def until_browser_leaves() -> None:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass

    tasks = [asyncio.ensure_future(coro) for coro in
             (listener.run(), listener.send_loop(websocket), until_browser_leaves(), listener.closed.wait())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        call_ended = listener.closed.is_set()
        listener.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if call_ended:   # the browser is still there: say goodbye properly (it may not read: bounded)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(websocket.close(code=CLOSE_CALL_ENDED, reason="call ended"), 2.0)


def listen_controls(dashboard: Any, call_id: str) -> None:
    """The Listen / Stop buttons of a live call's page (nothing when ``ui.listen_in`` is off).
    Listen creates the page's audio output in the click itself (browsers allow sound only after a
    user gesture), then asks the server for a one-time token and starts static/listen.js."""
    from nicegui import ui

    app = dashboard.app
    if not app.settings.ui.get("listen_in", True):
        return

    def start() -> None:
        token = mint_token(app, call_id)
        if token is None:
            ui.notify("This call is not live any more.")
            return
        target = json.dumps(f"/listen/{call_id}?token={token}")
        ui.run_javascript(
            "(() => { const go = () => window.aribotListenStart(%s);"
            " if (window.aribotListenStart) return go();"
            " const s = document.createElement('script'); s.src = %s; s.onload = go;"
            " document.head.appendChild(s); })()" % (target, json.dumps(SCRIPT_URL)))

    prepare = ("(...args) => { const C = window.AudioContext || window.webkitAudioContext;"
               " if (C && !window.aribotAudio) window.aribotAudio = new C();"
               " if (window.aribotAudio) window.aribotAudio.resume(); emit(...args); }")
    with ui.row().classes("items-center"):
        ui.button("Listen", icon="headphones").on("click", start, js_handler=prepare).mark("listen")
        ui.button("Stop", icon="stop").on(
            "click", js_handler="() => window.aribotListenStop && window.aribotListenStop()").mark("listen-stop")
        ui.label("").classes("aribot-listen-status text-sm").mark("listen-status")
