"""Media over WebSocket (Asterisk's chan_websocket, 22.10.1): a sans-IO protocol core.

Prototype for issue 18 (see docs/design-ws-media.md); nothing imports it yet. It knows the
protocol and the bookkeeping, not sockets: the transport that will own the WebSocket feeds it
Asterisk's TEXT messages and sends what it returns.

- ``parse_event`` / ``encode_command``: chan_websocket's control messages in both formats
  (``json``, chosen per call with ``transport_data=f(json)``, and the legacy ``plain-text``).
- ``MediaSender``: AI audio towards Asterisk. Cuts it into whole frames of the channel's
  ``optimal_frame_size`` (Asterisk drops a message's partial trailing frame), puts a
  ``MARK_MEDIA`` before each frame, sends as far ahead as flow control allows (its own window
  below Asterisk's XOFF level, and ``MEDIA_XOFF``/``MEDIA_XON``), and turns
  ``MEDIA_MARK_PROCESSED`` into milliseconds played per item. Barge-in is ``FLUSH_MEDIA``
  followed by a fence mark: when the fence comes back, the played figures are final.

Protocol facts (22.10.1 ``channels/chan_websocket.c``) that the numbers below come from:
queue limit 1000 frames, XOFF at 900, XON below 800; one frame leaves the queue per timer tick
(ptime, 20 ms); a mark is reported in the tick that reaches it, with the frame right behind it
(so a mark placed *before* frame k is reported when frame k is handed to the bridge); FLUSH_MEDIA
frees queued marks without reporting them; a TEXT message over 128 bytes is ignored; a frame of
more than 65535 bytes (header included) closes the socket.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

MessageFormat = Literal["json", "plain-text"]

QUEUE_LENGTH_MAX = 1000       # binary messages are ignored while Asterisk queues this many frames
XOFF_LEVEL = 900              # MEDIA_XOFF when the queue reaches this
XON_LEVEL = 800               # MEDIA_XON when it falls below this
MAX_TEXT_BYTES = 128          # longer TEXT messages are logged and ignored by Asterisk
MAX_WS_FRAME = 65535          # header + payload; larger closes the socket (code 1009)
CLIENT_HEADER = 8             # 2 + 2 (16-bit length) + 4 (mask): aribot connects, so it masks
MAX_BINARY_PAYLOAD = MAX_WS_FRAME - CLIENT_HEADER
PTIME_MS = 20

# format -> (sample rate, bytes per 20 ms = MEDIA_START optimal_frame_size, silence byte)
# (22.10.1 main/codec_builtin.c: default_ms * minimum_bytes / minimum_ms; slin is little-endian)
FORMATS: dict[str, tuple[int, int, int]] = {
    "ulaw": (8000, 160, 0xFF),
    "alaw": (8000, 160, 0xD5),
    "slin": (8000, 320, 0x00),
    "slin16": (16000, 640, 0x00),
    "slin24": (24000, 960, 0x00),
    "slin48": (48000, 1920, 0x00),
}

COMMANDS = frozenset({
    "ANSWER", "HANGUP", "START_MEDIA_BUFFERING", "STOP_MEDIA_BUFFERING", "MARK_MEDIA", "FLUSH_MEDIA",
    "GET_STATUS", "REPORT_QUEUE_DRAINED", "PAUSE_MEDIA", "CONTINUE_MEDIA", "SET_MEDIA_DIRECTION",
})
_ID_COMMANDS = frozenset({"MARK_MEDIA", "STOP_MEDIA_BUFFERING"})   # take an optional correlation id
_BOOLS = {"true": True, "false": False}


class WsMediaError(ValueError):
    """A message that breaks the protocol (ours or Asterisk's)."""


def optimal_frame_size(fmt: str) -> int:
    """Bytes of one 20 ms frame of ``fmt`` (what MEDIA_START reports as optimal_frame_size)."""
    try:
        return FORMATS[fmt][1]
    except KeyError:
        raise WsMediaError(f"format {fmt!r}: use one of {', '.join(FORMATS)}") from None


def media_url(base: str, connection_id: str) -> str:
    """The URL aribot connects to in server mode: ``base`` is Asterisk's HTTP server as ARI uses
    it (``http://host:8088``, with http.conf's ``prefix`` if any), ``ws``/``wss`` follow it."""
    scheme, sep, rest = base.partition("://")
    if not sep or scheme not in ("http", "https", "ws", "wss"):
        raise WsMediaError(f"not an http(s) or ws(s) URL: {base!r}")
    scheme = {"http": "ws", "https": "wss"}.get(scheme, scheme)
    return f"{scheme}://{rest.rstrip('/')}/media/{connection_id}"


def external_media_params(app: str, channel_id: str, fmt: str, *, msg_format: MessageFormat = "json",
                          extra_options: str = "") -> dict[str, str]:
    """Query parameters of ``POST /channels/externalMedia`` for a server-mode media WebSocket
    (aribot connects to Asterisk). ``extra_options``: more dial-string options, e.g. ``n``."""
    optimal_frame_size(fmt)
    if any(c in extra_options for c in "/&?# ") or "f(" in extra_options:
        # a bad f(...) value crashes 22.10.1 (webchan_request logs the NULL requestor's name)
        raise WsMediaError(f"dial-string options {extra_options!r}: no separators, no f(...)")
    options = ("f(json)" if msg_format == "json" else "") + extra_options
    params = {"app": app, "channelId": channel_id, "transport": "websocket", "encapsulation": "none",
              "connection_type": "server", "format": fmt}
    if options:
        params["transport_data"] = options
    return params


# --- control messages ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class WsEvent:
    """One event from Asterisk; ``fields`` holds its parameters, typed (ints, bools, dicts)."""

    name: str
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def correlation_id(self) -> str:
        return str(self.fields.get("correlation_id", ""))


@dataclass(frozen=True, slots=True)
class MediaStart:
    """MEDIA_START: the first message on a media WebSocket."""

    connection_id: str
    channel: str
    channel_id: str
    format: str
    optimal_frame_size: int
    ptime: int
    channel_variables: dict[str, str]

    @classmethod
    def from_event(cls, event: WsEvent) -> "MediaStart":
        if event.name != "MEDIA_START":
            raise WsMediaError(f"expected MEDIA_START, got {event.name}")
        f = event.fields
        try:
            start = cls(str(f["connection_id"]), str(f["channel"]), str(f.get("channel_id", "")),
                        str(f["format"]), int(f["optimal_frame_size"]), int(f["ptime"]),
                        dict(f.get("channel_variables") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise WsMediaError(f"MEDIA_START without a valid {exc}") from None
        if start.optimal_frame_size <= 0 or start.ptime <= 0:
            raise WsMediaError(f"MEDIA_START with frame size {start.optimal_frame_size}, ptime {start.ptime}")
        return start


def _typed(value: str) -> Any:
    if value in _BOOLS:
        return _BOOLS[value]
    if value.isdigit() or (value[:1] == "-" and value[1:].isdigit()):
        return int(value)
    return value


def _parse_plain(text: str) -> WsEvent:
    name, _, rest = text.strip().partition(" ")
    if not name or not name.replace("_", "").isalnum() or not name.isupper():
        raise WsMediaError(f"not an event: {text[:60]!r}")
    if name in ("MEDIA_MARK_PROCESSED", "MEDIA_BUFFERING_COMPLETED"):
        return WsEvent(name, {"correlation_id": rest})
    fields: dict[str, Any] = {}
    if name == "ERROR":
        head, sep, error_text = rest.partition("error_text:")
        rest = head
        if sep:
            fields["error_text"] = error_text
    for token in rest.split():
        key, sep, value = token.partition(":")
        if not sep:
            raise WsMediaError(f"{name}: parameter without ':' in {text[:60]!r}")
        fields[key] = value if key in ("channel", "channel_id", "connection_id", "digit") else _typed(value)
    return WsEvent(name, fields)


def parse_event(text: str) -> WsEvent:
    """Parse one TEXT message from Asterisk, JSON or plain-text (told apart by the first byte)."""
    if text[:1] == "{":
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise WsMediaError(f"bad JSON event: {exc}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("event"), str):
            raise WsMediaError(f"JSON event without 'event': {text[:60]!r}")
        name = obj.pop("event")
        return WsEvent(name, obj)
    return _parse_plain(text)


def encode_command(command: str, msg_format: MessageFormat, correlation_id: str = "",
                   direction: str = "") -> str:
    """One command as Asterisk 22.10.1 reads it; refuses what it would ignore or misread."""
    if command not in COMMANDS:
        raise WsMediaError(f"unknown command {command!r}")
    if correlation_id and command not in _ID_COMMANDS:
        raise WsMediaError(f"{command} takes no correlation id")
    if correlation_id and not all(c.isalnum() or c in "-_.:" for c in correlation_id):
        raise WsMediaError(f"correlation id {correlation_id!r}: use letters, digits and -_.:")
    if command == "SET_MEDIA_DIRECTION":
        if msg_format != "json":
            raise WsMediaError("SET_MEDIA_DIRECTION needs the json format")
        if direction not in ("both", "in", "out"):
            raise WsMediaError(f"direction {direction!r}: both, in or out")
        text = json.dumps({"command": command, "direction": direction}, separators=(",", ":"))
    elif msg_format == "json":
        obj = {"command": command}
        if correlation_id:
            obj["correlation_id"] = correlation_id
        text = json.dumps(obj, separators=(",", ":"))
    else:
        text = f"{command} {correlation_id}" if correlation_id else command
    if len(text.encode()) > MAX_TEXT_BYTES:
        raise WsMediaError(f"{command} is {len(text.encode())} bytes; Asterisk ignores more than {MAX_TEXT_BYTES}")
    return text


# --- AI audio towards Asterisk ------------------------------------------------------------------
@dataclass(slots=True)
class _Mark:
    seq: int
    kind: Literal["frame", "tail", "fence"]
    item_id: str
    item_bytes: int        # real audio bytes of item_id handed over once this mark is reported
    frames_gone: int       # frames out of Asterisk's queue once this mark is reported
    first_of_item: bool = False


@dataclass(slots=True)
class _Pending:
    item_id: str
    buf: bytearray = field(default_factory=bytearray)
    ended: bool = False


@dataclass(frozen=True, slots=True)
class Notice:
    """What a reported mark tells the call: ``started`` (the first frame of ``item_id`` reached
    the bridge), ``stopped`` (Asterisk's queue ran dry after ``item_id``: the spurt ended),
    ``flushed`` (barge-in done: played figures final)."""

    kind: Literal["started", "stopped", "flushed"]
    item_id: str


class MediaSender:
    """Sans-IO sender of AI audio over chan_websocket, with per-item played bookkeeping.

    ``push``/``end_item`` queue audio; ``pull()`` returns the messages to send now (``bytes`` are
    BINARY, ``str`` TEXT, in order); ``on_event`` digests Asterisk's events and returns notices.
    ``window_frames``: how many frames may wait in Asterisk's queue (kept below XOFF so XOFF is a
    backstop, not the regulator). ``mark_every``: a mark before every n-th frame (1: truncation
    exact to the frame); item starts always get one."""

    def __init__(self, fmt: str = "ulaw", *, msg_format: MessageFormat = "json",
                 window_frames: int = 750, mark_every: int = 1, frame_bytes: int | None = None) -> None:
        if not 0 < window_frames < XOFF_LEVEL:
            raise WsMediaError(f"window_frames {window_frames}: 1..{XOFF_LEVEL - 1}")
        if mark_every < 1:
            raise WsMediaError("mark_every must be at least 1")
        self.fmt = fmt
        self.frame_bytes = frame_bytes or optimal_frame_size(fmt)
        self.silence = bytes([FORMATS.get(fmt, (0, 0, 0))[2]]) * self.frame_bytes
        self.msg_format = msg_format
        self.window_frames = window_frames
        self.mark_every = mark_every
        self.max_frames_per_message = max(1, MAX_BINARY_PAYLOAD // self.frame_bytes)
        self._pending: deque[_Pending] = deque()
        self._marks: deque[_Mark] = deque()
        self._seq = 0
        self.frames_sent = 0           # frames handed to the socket (padding included)
        self.frames_gone = 0           # of those, frames Asterisk played or flushed (as far as reported)
        self.xoff = False
        self.flushing = False
        self._sent_item = ""           # item of the last frame sent
        self._since_mark = 0
        self.received: dict[str, int] = {}
        self.sent: dict[str, int] = {}
        self.played: dict[str, int] = {}
        self.current_item = ""         # item whose frame Asterisk played last
        self.protocol_errors = 0

    # --- input ----------------------------------------------------------------------------------
    def push(self, item_id: str, data: bytes) -> None:
        """Queue audio of ``item_id``; a new item ends (and pads) the previous one."""
        self.received[item_id] = self.received.get(item_id, 0) + len(data)
        tail = self._pending[-1] if self._pending else None
        if tail is None or tail.item_id != item_id or tail.ended:
            if tail is not None:
                tail.ended = True
            tail = _Pending(item_id)
            self._pending.append(tail)
        tail.buf += data

    def end_item(self, item_id: str) -> None:
        """No more audio for ``item_id``: its partial last frame is sent padded with silence."""
        for pending in self._pending:
            if pending.item_id == item_id:
                pending.ended = True

    @property
    def in_flight(self) -> int:
        """Frames sent that Asterisk has not yet reported played or flushed."""
        return self.frames_sent - self.frames_gone

    @property
    def buffered_bytes(self) -> int:
        return sum(len(p.buf) for p in self._pending)

    @property
    def idle(self) -> bool:
        """Nothing buffered here and nothing in flight in Asterisk."""
        return not self._pending and self.in_flight == 0 and not self._marks

    # --- output ---------------------------------------------------------------------------------
    def _mark(self, kind: Literal["frame", "tail", "fence"], item_id: str, item_bytes: int,
              frames_gone: int, first: bool = False) -> str:
        self._seq += 1
        self._marks.append(_Mark(self._seq, kind, item_id, item_bytes, frames_gone, first))
        if self.msg_format == "json":   # hot path: no json.dumps for a hex id
            return f'{{"command":"MARK_MEDIA","correlation_id":"{self._seq:x}"}}'
        return f"MARK_MEDIA {self._seq:x}"

    def _next_frame(self) -> tuple[str, bytes, int] | None:
        """(item, frame, real bytes in it) of the next whole frame, or None."""
        while self._pending:
            head = self._pending[0]
            n = len(head.buf)
            if n >= self.frame_bytes or (head.ended and n > 0):
                take = min(self.frame_bytes, n)
                frame = bytes(head.buf[:take])
                del head.buf[:take]
                if take < self.frame_bytes:
                    frame += self.silence[: self.frame_bytes - take]
                return head.item_id, frame, take
            if head.ended or len(self._pending) > 1:
                self._pending.popleft()
                continue
            return None
        return None

    def pull(self) -> list[bytes | str]:
        """The messages to send now, in order: marks (TEXT) and runs of frames (BINARY)."""
        out: list[bytes | str] = []
        run = bytearray()
        run_frames = 0
        budget = 0 if self.xoff else self.window_frames - self.in_flight
        while budget > 0:
            nxt = self._next_frame()
            if nxt is None:
                break
            item, frame, real = nxt
            first = item != self._sent_item
            if first or self._since_mark >= self.mark_every - 1:
                if run:
                    out.append(bytes(run))
                    run.clear()
                    run_frames = 0
                item_bytes = self.sent.get(item, 0) + real
                out.append(self._mark("frame", item, item_bytes, self.frames_sent + 1, first))
                self._since_mark = 0
            else:
                self._since_mark += 1
            self.sent[item] = self.sent.get(item, 0) + real
            self._sent_item = item
            run += frame
            run_frames += 1
            self.frames_sent += 1
            budget -= 1
            if run_frames >= self.max_frames_per_message:
                out.append(bytes(run))
                run.clear()
                run_frames = 0
        if run:
            out.append(bytes(run))
        if out and not self._pending_frames_ready():
            # a tail mark: reported one tick after the last frame left the queue (the spurt's end)
            item = self._sent_item
            out.append(self._mark("tail", item, self.sent.get(item, 0), self.frames_sent))
        return out

    def _pending_frames_ready(self) -> bool:
        return any(len(p.buf) >= self.frame_bytes or (p.ended and p.buf) for p in self._pending)

    def flush(self) -> list[str]:
        """Barge-in: drop what is buffered here and ask Asterisk to drop its queue. Returns the
        commands to send (FLUSH_MEDIA, then a fence mark); ``on_event`` returns a ``flushed``
        notice when the fence comes back, after every mark Asterisk reached before the flush."""
        self._pending.clear()
        self.flushing = True
        self._sent_item = ""     # audio pushed after this starts a new spurt with its own marks
        self._since_mark = 0
        flush = encode_command("FLUSH_MEDIA", self.msg_format)
        return [flush, self._mark("fence", self.current_item, 0, self.frames_sent)]

    # --- events from Asterisk -------------------------------------------------------------------
    def on_event(self, event: WsEvent) -> list[Notice]:
        """Digest one event; returns what it means for the call (may be nothing)."""
        if event.name == "MEDIA_MARK_PROCESSED":
            return self._on_mark(event.correlation_id)
        if event.name == "MEDIA_XOFF":
            self.xoff = True
        elif event.name == "MEDIA_XON":
            self.xoff = False
        elif event.name == "STATUS":
            self.xoff = bool(event.fields.get("queue_full", self.xoff))
        return []

    def _on_mark(self, correlation_id: str) -> list[Notice]:
        try:
            seq = int(correlation_id, 16)
        except ValueError:
            self.protocol_errors += 1
            return []
        notices: list[Notice] = []
        if not self._marks or not self._marks[0].seq <= seq <= self._marks[-1].seq:
            self.protocol_errors += 1   # unknown, repeated or not ours: change nothing
            return notices
        while self._marks[0].seq < seq:
            # reached before ours but never reported: only marks a flush freed may be skipped
            self._marks.popleft()
            if not self.flushing:
                self.protocol_errors += 1
        mark = self._marks.popleft()
        if mark.kind == "fence":
            self.frames_gone = mark.frames_gone
            self.flushing = any(m.kind == "fence" for m in self._marks)
            notices.append(Notice("flushed", self.current_item))
            return notices
        self.frames_gone = max(self.frames_gone, mark.frames_gone)
        if mark.kind == "frame":
            self.played[mark.item_id] = max(self.played.get(mark.item_id, 0), mark.item_bytes)
            self.current_item = mark.item_id
            if mark.first_of_item:
                notices.append(Notice("started", mark.item_id))
        elif mark.kind == "tail" and self.frames_sent == mark.frames_gone:
            notices.append(Notice("stopped", mark.item_id))
        return notices

    # --- figures ------------------------------------------------------------------------------
    def _ms(self, nbytes: int) -> int:
        return nbytes * PTIME_MS // self.frame_bytes

    def played_ms(self, item_id: str) -> int:
        """Milliseconds of ``item_id`` Asterisk reported handed to the bridge (padding excluded)."""
        return self._ms(self.played.get(item_id, 0))

    def sent_ms(self, item_id: str) -> int:
        return self._ms(self.sent.get(item_id, 0))

    def received_ms(self, item_id: str) -> int:
        return self._ms(self.received.get(item_id, 0))
