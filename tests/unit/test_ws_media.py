"""core/ws_media.py against chan_websocket's protocol as Asterisk 22.10.1 implements it.

``FakeChanWebsocket`` models the queue of 22.10.1 ``channels/chan_websocket.c`` (whole frames
only, a partial trailing frame dropped, marks as queue entries reported in the timer tick that
reaches them together with the frame behind them, FLUSH_MEDIA freeing queued marks unreported,
XOFF at 900 / XON below 800 / binary ignored at 1000). The message texts are the ones the lab's
Asterisk 22.10.1 sent (docs/design-ws-media.md, "Observed in the lab").
"""

from __future__ import annotations

import json

import pytest

from aribot.core.ws_media import (
    MAX_BINARY_PAYLOAD,
    MAX_TEXT_BYTES,
    MediaSender,
    MediaStart,
    WsMediaError,
    encode_command,
    external_media_params,
    media_url,
    optimal_frame_size,
    parse_event,
)

# as Asterisk 22.10.1 sent them in the lab (server mode, f(json) and the plain-text default)
JSON_START = (
    '{"event":"MEDIA_START","connection_id":"c2a8d8cc-a646-4044-aa09-66e39dccd0ff",'
    '"channel":"WebSocket/INCOMING/0x7fc25c002530","channel_id":"ws-a","format":"ulaw",'
    '"optimal_frame_size":160,"ptime":20,"channel_variables":{"MEDIA_WEBSOCKET_CONNECTION_ID":'
    '"c2a8d8cc-a646-4044-aa09-66e39dccd0ff","MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE":"160"}}'
)
PLAIN_START = (
    "MEDIA_START connection_id:ade33703-6b18-4921-b3af-8748a986db83 "
    "channel:WebSocket/INCOMING/0x7fc25c001410 channel_id:ws-b format:slin16 optimal_frame_size:640 ptime:20"
)
JSON_STATUS = ('{"event":"STATUS","channel_id":"ws-a","queue_length":1000,"xon_level":800,"xoff_level":900,'
               '"queue_full":true,"bulk_media":false,"media_paused":false}')


class FakeChanWebsocket:
    """Asterisk's side of one media WebSocket, reduced to its queue (22.10.1 semantics)."""

    def __init__(self, frame_bytes: int = 160, msg_format: str = "json") -> None:
        self.frame_bytes = frame_bytes
        self.json = msg_format == "json"
        self.queue: list[tuple[str, object]] = []   # ("frame", bytes) | ("mark", id)
        self.length = 0                             # frames only, as frame_queue_length
        self.full = False
        self.played: list[bytes] = []
        self.events: list[str] = []
        self.ignored_messages = 0
        self.report_drained = False

    def _event(self, name: str, **fields: object) -> None:
        if self.json:
            self.events.append(json.dumps({"event": name, "channel_id": "ws-a", **fields}, separators=(",", ":")))
        else:
            cid = fields.get("correlation_id")
            self.events.append(f"{name} {cid}" if cid else name)

    def receive(self, message: bytes | str) -> None:
        if isinstance(message, bytes):
            if self.length >= 1000:
                self.ignored_messages += 1
                return
            whole = len(message) - len(message) % self.frame_bytes   # the rest is dropped
            for off in range(0, whole, self.frame_bytes):
                self.queue.append(("frame", message[off:off + self.frame_bytes]))
                self.length += 1
                if not self.full and self.length >= 900:
                    self.full = True
                    self._event("MEDIA_XOFF")
            return
        assert len(message.encode()) <= MAX_TEXT_BYTES
        if self.json:
            obj = json.loads(message)
            command, cid = obj["command"], obj.get("correlation_id", "")
        else:
            command, _, cid = message.partition(" ")
        if command == "MARK_MEDIA":
            self.queue.append(("mark", cid))
        elif command == "FLUSH_MEDIA":
            self.queue.clear()
            self.length = 0
        elif command == "REPORT_QUEUE_DRAINED":
            self.report_drained = True
        else:
            raise AssertionError(f"unexpected command {message}")

    def tick(self) -> None:
        """One timer tick (20 ms): XON check, marks at the head, then one frame."""
        if self.full and self.length < 800:
            self.full = False
            self._event("MEDIA_XON")
        while self.queue and self.queue[0][0] == "mark":
            self._event("MEDIA_MARK_PROCESSED", correlation_id=self.queue.pop(0)[1])
        if self.queue:
            self.played.append(self.queue.pop(0)[1])  # type: ignore[arg-type]
            self.length -= 1
        elif self.report_drained:
            self.report_drained = False
            self._event("QUEUE_DRAINED")

    def take_events(self) -> list[str]:
        out, self.events = self.events, []
        return out


def run(sender: MediaSender, ast: FakeChanWebsocket, ticks: int = 0) -> list:
    """Send what the sender has, tick Asterisk ``ticks`` times, feed its events back; notices."""
    notices = []
    for msg in sender.pull():
        ast.receive(msg)
    for _ in range(ticks):
        ast.tick()
        for text in ast.take_events():
            notices += sender.on_event(parse_event(text))
        for msg in sender.pull():
            ast.receive(msg)
    return notices


def audio(n: int, seed: int = 1) -> bytes:
    return bytes((seed * 31 + i * 7) % 0x7F for i in range(n))


# --- helpers and control messages ----------------------------------------------------------------
def test_frame_sizes_follow_asterisk_codec_table() -> None:
    assert [optimal_frame_size(f) for f in ("ulaw", "alaw", "slin", "slin16", "slin24")] == [160, 160, 320, 640, 960]
    with pytest.raises(WsMediaError):
        optimal_frame_size("opus")   # passthrough in Asterisk: no re-framing, no marks


def test_media_url_and_external_media_params() -> None:
    assert media_url("http://127.0.0.1:8088", "abc") == "ws://127.0.0.1:8088/media/abc"
    assert media_url("https://pbx:8089/asterisk/", "abc") == "wss://pbx:8089/asterisk/media/abc"
    with pytest.raises(WsMediaError):
        media_url("127.0.0.1:8088", "abc")
    params = external_media_params("aribot", "em-1", "slin16")
    assert params == {"app": "aribot", "channelId": "em-1", "transport": "websocket", "encapsulation": "none",
                      "connection_type": "server", "format": "slin16", "transport_data": "f(json)"}
    assert "transport_data" not in external_media_params("aribot", "em-1", "ulaw", msg_format="plain-text")
    assert external_media_params("aribot", "em-1", "ulaw", extra_options="n")["transport_data"] == "f(json)n"
    for bad in ("n/x", "f(xml)"):   # f(xml) would crash Asterisk 22.10.1 (SIGSEGV seen in the lab)
        with pytest.raises(WsMediaError):
            external_media_params("aribot", "em-1", "ulaw", extra_options=bad)


def test_parse_media_start_json_and_plain() -> None:
    start = MediaStart.from_event(parse_event(JSON_START))
    assert (start.channel_id, start.format, start.optimal_frame_size, start.ptime) == ("ws-a", "ulaw", 160, 20)
    assert start.channel_variables["MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE"] == "160"
    plain = MediaStart.from_event(parse_event(PLAIN_START))
    assert plain.channel == "WebSocket/INCOMING/0x7fc25c001410"
    assert (plain.channel_id, plain.format, plain.optimal_frame_size) == ("ws-b", "slin16", 640)
    assert plain.channel_variables == {}
    with pytest.raises(WsMediaError):
        MediaStart.from_event(parse_event("MEDIA_START channel:x"))
    with pytest.raises(WsMediaError):
        MediaStart.from_event(parse_event('{"event":"MEDIA_XON","channel_id":"ws-a"}'))


@pytest.mark.parametrize("text,name,fields", [
    ('{"event":"MEDIA_MARK_PROCESSED","channel_id":"ws-a","correlation_id":"m0"}', "MEDIA_MARK_PROCESSED",
     {"channel_id": "ws-a", "correlation_id": "m0"}),
    ("MEDIA_MARK_PROCESSED end", "MEDIA_MARK_PROCESSED", {"correlation_id": "end"}),
    ("MEDIA_MARK_PROCESSED", "MEDIA_MARK_PROCESSED", {"correlation_id": ""}),
    ("MEDIA_BUFFERING_COMPLETED utt-1", "MEDIA_BUFFERING_COMPLETED", {"correlation_id": "utt-1"}),
    ('{"event":"DTMF_END","channel_id":"ws-a","digit":"5"}', "DTMF_END", {"channel_id": "ws-a", "digit": "5"}),
    ("DTMF_END digit:5 channel_id:1795469297.0", "DTMF_END", {"digit": "5", "channel_id": "1795469297.0"}),
    ("MEDIA_XOFF", "MEDIA_XOFF", {}),
    ('{"event":"QUEUE_DRAINED","channel_id":"ws-a"}', "QUEUE_DRAINED", {"channel_id": "ws-a"}),
    ("STATUS channel_id:ws-a queue_length:12 xon_level:800 xoff_level:900 queue_full:false bulk_media:false "
     "media_paused:true", "STATUS", {"channel_id": "ws-a", "queue_length": 12, "xon_level": 800,
                                     "xoff_level": 900, "queue_full": False, "bulk_media": False,
                                     "media_paused": True}),
    ("ERROR channel_id:ws-a error_text:MARK_MEDIA not supported in passthrough mode", "ERROR",
     {"channel_id": "ws-a", "error_text": "MARK_MEDIA not supported in passthrough mode"}),
    ('{"event":"ERROR","channel_id":"ws-a","error_text":"Unable to parse JSON command"}', "ERROR",
     {"channel_id": "ws-a", "error_text": "Unable to parse JSON command"}),
])
def test_parse_events(text: str, name: str, fields: dict) -> None:
    event = parse_event(text)
    assert event.name == name
    assert event.fields == fields


def test_parse_status_json_types() -> None:
    event = parse_event(JSON_STATUS)
    assert event.fields["queue_length"] == 1000 and event.fields["queue_full"] is True


@pytest.mark.parametrize("bad", ["", "{not json", '{"command":"X"}', "media_start x:y", "STATUS queue_length"])
def test_parse_rejects_garbage(bad: str) -> None:
    with pytest.raises(WsMediaError):
        parse_event(bad)


def test_encode_commands() -> None:
    assert encode_command("FLUSH_MEDIA", "json") == '{"command":"FLUSH_MEDIA"}'
    assert encode_command("FLUSH_MEDIA", "plain-text") == "FLUSH_MEDIA"
    assert encode_command("MARK_MEDIA", "plain-text", "a1") == "MARK_MEDIA a1"
    assert json.loads(encode_command("MARK_MEDIA", "json", "a1")) == {"command": "MARK_MEDIA", "correlation_id": "a1"}
    assert json.loads(encode_command("SET_MEDIA_DIRECTION", "json", direction="in")) == {
        "command": "SET_MEDIA_DIRECTION", "direction": "in"}
    for args in [("NOPE", "json"), ("FLUSH_MEDIA", "json", "x"), ("SET_MEDIA_DIRECTION", "plain-text", "", "in"),
                 ("SET_MEDIA_DIRECTION", "json", "", "sideways"), ("MARK_MEDIA", "json", "has space")]:
        with pytest.raises(WsMediaError):
            encode_command(*args)
    # Asterisk ignores TEXT messages over 128 bytes (it only logs a warning): refuse to send one
    with pytest.raises(WsMediaError, match="128"):
        encode_command("MARK_MEDIA", "json", "x" * 100)


# --- the sender ------------------------------------------------------------------------------------
def test_whole_frames_with_a_mark_before_each_and_a_tail() -> None:
    sender = MediaSender("ulaw")
    sender.push("it1", audio(400))          # 2.5 frames: the half frame waits for more or the end
    msgs = sender.pull()
    kinds = ["T" if isinstance(m, str) else len(m) for m in msgs]
    assert kinds == ["T", 160, "T", 160, "T"]   # mark, frame, mark, frame, tail mark
    sender.end_item("it1")
    msgs = sender.pull()
    frame = [m for m in msgs if isinstance(m, bytes)][0]
    assert frame[:80] == audio(400)[320:] and frame[80:] == b"\xff" * 80   # padded with µ-law silence
    assert sender.sent_ms("it1") == 50 and sender.received_ms("it1") == 50


def test_binary_messages_are_whole_frames_within_the_size_limit() -> None:
    for fmt in ("ulaw", "slin16"):
        sender = MediaSender(fmt, mark_every=10_000, window_frames=899)
        fb = optimal_frame_size(fmt)
        sender.push("it", audio(fb * 600 + 7))
        sizes = [len(m) for m in sender.pull() if isinstance(m, bytes)]
        assert sizes and all(s % fb == 0 and s <= MAX_BINARY_PAYLOAD for s in sizes)
        assert sum(sizes) == fb * 600


def test_audio_arrives_byte_exact_and_played_ms_follows_marks() -> None:
    sender, ast = MediaSender("ulaw"), FakeChanWebsocket()
    data = audio(160 * 50 + 40)
    sender.push("it1", data[:1000])
    run(sender, ast)
    sender.push("it1", data[1000:])
    sender.end_item("it1")
    notices = run(sender, ast, ticks=10)
    assert [n.kind for n in notices] == ["started"]
    assert sender.played_ms("it1") == 200                  # 10 ticks: 10 frames handed to the bridge
    run(sender, ast, ticks=45)
    assert b"".join(ast.played)[: len(data)] == data       # nothing lost, re-framed exactly
    assert sender.played_ms("it1") == sender.sent_ms("it1") == 1005   # padding is not counted
    assert sender.idle and sender.protocol_errors == 0


def test_spurt_start_and_stop_notices() -> None:
    sender, ast = MediaSender("ulaw"), FakeChanWebsocket()
    sender.push("a", audio(320))
    sender.end_item("a")
    kinds = [(n.kind, n.item_id) for n in run(sender, ast, ticks=4)]
    assert kinds == [("started", "a"), ("stopped", "a")]
    sender.push("b", audio(160))
    sender.end_item("b")
    assert [(n.kind, n.item_id) for n in run(sender, ast, ticks=3)] == [("started", "b"), ("stopped", "b")]


def test_no_stop_between_deltas_of_a_continuous_answer() -> None:
    sender, ast = MediaSender("ulaw"), FakeChanWebsocket()
    notices = []
    for _ in range(5):                      # deltas arrive faster than real time
        sender.push("a", audio(480))
        notices += run(sender, ast, ticks=1)
    sender.end_item("a")
    notices += run(sender, ast, ticks=30)
    assert [n.kind for n in notices] == ["started", "stopped"]


def test_barge_in_truncates_at_the_frames_asterisk_played() -> None:
    for played_ticks in (1, 7, 33, 120):
        sender, ast = MediaSender("ulaw"), FakeChanWebsocket()
        sender.push("a", audio(160 * 250))  # 5 s, sent at once
        run(sender, ast, ticks=played_ticks)
        msgs = sender.flush()
        assert msgs[0] == '{"command":"FLUSH_MEDIA"}'
        for msg in msgs:
            ast.receive(msg)
        notices = run(sender, ast, ticks=2)
        assert [n.kind for n in notices][-1] == "flushed" and not sender.flushing
        assert len(ast.played) == played_ticks
        assert sender.played_ms("a") == played_ticks * 20   # what the caller heard, to the frame
        assert sender.in_flight == 0 and sender.protocol_errors == 0


def test_marks_reached_while_the_flush_travels_still_count() -> None:
    sender, ast = MediaSender("ulaw"), FakeChanWebsocket()
    sender.push("a", audio(160 * 100))
    run(sender, ast, ticks=10)
    flush = sender.flush()                  # decided now, reaches Asterisk 3 ticks later
    for _ in range(3):
        ast.tick()
    for msg in flush:
        ast.receive(msg)
    notices = []
    for _ in range(2):
        ast.tick()
    for text in ast.take_events():
        notices += sender.on_event(parse_event(text))
    assert notices[-1].kind == "flushed"
    assert len(ast.played) == 13 and sender.played_ms("a") == 260


def test_new_answer_after_barge_in_plays_and_is_counted_apart() -> None:
    sender, ast = MediaSender("ulaw"), FakeChanWebsocket()
    sender.push("a", audio(160 * 100))
    run(sender, ast, ticks=5)
    for msg in sender.flush():
        ast.receive(msg)
    sender.push("b", audio(160 * 3, seed=2))  # the next answer, before the fence came back
    sender.end_item("b")
    kinds = [(n.kind, n.item_id) for n in run(sender, ast, ticks=6)]
    assert ("flushed", "a") in kinds and ("started", "b") in kinds and ("stopped", "b") in kinds
    assert sender.played_ms("a") == 100 and sender.played_ms("b") == 60
    assert b"".join(ast.played[-3:]) == audio(160 * 3, seed=2)


def test_window_keeps_asterisk_queue_below_xoff() -> None:
    sender, ast = MediaSender("ulaw", window_frames=750), FakeChanWebsocket()
    sender.push("a", audio(160 * 1500))     # 30 s of audio
    sender.end_item("a")
    run(sender, ast)
    assert ast.length == 750 and sender.in_flight == 750
    run(sender, ast, ticks=100)
    assert ast.length == 750 and not ast.full   # refilled as marks come back, never XOFF
    run(sender, ast, ticks=1000)
    assert len(ast.played) == 1100 and ast.ignored_messages == 0


def test_xoff_stops_sending_until_xon() -> None:
    sender = MediaSender("ulaw")
    sender.push("a", audio(160 * 10))
    assert sender.on_event(parse_event('{"event":"MEDIA_XOFF","channel_id":"x"}')) == []
    assert sender.pull() == []
    sender.on_event(parse_event("MEDIA_XON"))
    assert len([m for m in sender.pull() if isinstance(m, bytes)]) == 10
    sender.on_event(parse_event(JSON_STATUS))   # queue_full:true in a STATUS also holds it
    assert sender.xoff


def test_asterisk_model_drops_what_the_sender_never_sends() -> None:
    """The fake follows 22.10.1: a partial frame is dropped, a full queue ignores a message."""
    ast = FakeChanWebsocket()
    ast.receive(b"\x11" * 100)
    ast.receive(b"\x22" * 240)
    assert ast.length == 1
    for _ in range(10):
        ast.receive(b"\x33" * 16000)
    ast.receive(b"\x44" * 160)
    assert ast.length == 1001 and ast.ignored_messages == 1 and ast.take_events()[0].startswith('{"event":"MEDIA_XOFF"')


def test_plain_text_marks_and_slin16_milliseconds() -> None:
    sender, ast = MediaSender("slin16", msg_format="plain-text"), FakeChanWebsocket(640, "plain-text")
    sender.push("a", audio(640 * 10))
    sender.end_item("a")
    msgs = sender.pull()
    assert msgs[0] == "MARK_MEDIA 1"
    for msg in msgs:
        ast.receive(msg)
    notices = run(sender, ast, ticks=4)
    assert notices[0].kind == "started" and sender.played_ms("a") == 80
    run(sender, ast, ticks=8)
    assert sender.played_ms("a") == 200 and sender.idle


def test_sparse_marks_undercount_at_most_the_unmarked_frames() -> None:
    sender, ast = MediaSender("ulaw", mark_every=5), FakeChanWebsocket()
    sender.push("a", audio(160 * 100))
    run(sender, ast, ticks=13)
    for msg in sender.flush():
        ast.receive(msg)
    run(sender, ast, ticks=2)
    assert len(ast.played) == 13
    assert sender.played_ms("a") == 220   # marks before frames 1, 6, 11: frame 11 is the last reported


def test_unknown_or_foreign_marks_are_counted_not_trusted() -> None:
    sender = MediaSender("ulaw")
    sender.push("a", audio(320))
    sender.pull()
    assert sender.on_event(parse_event("MEDIA_MARK_PROCESSED zz")) == []
    assert sender.on_event(parse_event("MEDIA_MARK_PROCESSED 99")) == []
    assert sender.protocol_errors == 2 and sender.played_ms("a") == 0


def test_settings_are_checked() -> None:
    with pytest.raises(WsMediaError):
        MediaSender("ulaw", window_frames=900)
    with pytest.raises(WsMediaError):
        MediaSender("ulaw", mark_every=0)
