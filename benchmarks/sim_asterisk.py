"""A simulated Asterisk for capacity runs: ARI (REST + events WebSocket) and the RTP of every
ExternalMedia leg, in one process of its own, so hundreds of calls cost the rig little.

Run by ``benchmarks/bench_capacity.py``, driven over stdin/stdout with one JSON object per line:

- ``{"cmd": "originate", "calls": N, "rate": R}``: N new callers enter the Stasis app at R calls/s;
  answers ``{"event": "connected", "calls": n, "failed": f}`` once each call has its media leg
  bridged (or failed set-up);
- ``{"cmd": "window", "on": true|false}``: measure aribot's RTP only inside the window;
- ``{"cmd": "hangup"}``: every caller hangs up; answers ``{"event": "done", ...}`` with the figures
  once aribot has deleted every leg and bridge (or after 30 s).

What it does like Asterisk 22 (event shapes are the captured ones in
tests/contract/ari-captured-22.10.1): StasisStart of the caller with ``args``, ChannelStateChange on
answer, a 404 for unset variables, the ExternalMedia channel with UNICASTRTP_LOCAL_ADDRESS/PORT and
its own StasisStart, ChannelEnteredBridge on addChannel, ChannelHangupRequest/StasisEnd/
ChannelDestroyed on hangup. A request it does not know gets a 404 and is counted in the result.

RTP: each leg is one UDP socket on loopback, connected to aribot's ``external_host``. A single
thread sends every leg's 20 ms µ-law frame on its own phase (legs are spread over the 20 ms
period as independent Asterisk channels are) and drains the sockets each millisecond; arrival times
are the kernel's (SO_TIMESTAMPNS), so the thread's own scheduling does not enter the pacing figure.
The caller audio loops: silence, then turns of 0.8 s speech and 2.5 s silence (each leg starts at
a random point, so turns do not line up).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import itertools
import json
import os
import random
import select
import socket
import struct
import sys
import threading
import time
from array import array
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from aribot.core.metrics import percentile

REPO = Path(__file__).resolve().parents[1]
CAPTURED = REPO / "tests" / "contract" / "ari-captured-22.10.1"
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
TIMESPEC = struct.Struct("qq")
HEADER = struct.Struct("!BBHII")
SLOTS = 20  # 1 ms slots per 20 ms period
FRAME = 160


def templates() -> dict[str, dict[str, Any]]:
    """A captured caller channel, ExternalMedia channel and bridge, to copy from."""
    caller = leg = bridge = None
    for line in (CAPTURED / "events_caller_bye.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("type") == "StasisStart" and caller is None:
            caller = event["channel"]
        if event.get("type") == "ChannelEnteredBridge" and bridge is None:
            bridge = event["bridge"]
    leg = json.loads((CAPTURED / "externalMedia_response.json").read_text())
    assert caller and leg and bridge
    return {"caller": caller, "leg": leg, "bridge": bridge}


def stamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}+0000"


class Leg:
    """One ExternalMedia leg's RTP socket and what was seen on it."""

    __slots__ = ("sock", "fd", "ssrc", "seq", "ts", "pos", "slot", "sending", "last_ssrc", "last_seq", "last_t",
                 "rx", "lost", "reordered")

    def __init__(self, slot: int, pos: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setblocking(False)
        self.fd = self.sock.fileno()
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(16)
        self.ts = random.getrandbits(32)
        self.pos = pos
        self.slot = slot
        self.sending = False
        self.last_ssrc = -1
        self.last_seq = 0
        self.last_t = 0.0
        self.rx = 0
        self.lost = 0
        self.reordered = 0

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]


class RtpEngine(threading.Thread):
    """Sends every leg's frames on 1 ms slots and records aribot's packets with kernel timestamps."""

    def __init__(self, audio: list[bytes]) -> None:
        super().__init__(name="rtp", daemon=True)
        self.audio = audio
        self.lock = threading.Lock()
        self.legs: dict[int, Leg] = {}
        self.groups: list[list[Leg]] = [[] for _ in range(SLOTS)]
        self.epoll = select.epoll()
        self.window = False
        self.pacing_us = array("I")      # |interval - 20 ms| in µs, inside the window
        self.send_late_us = array("I")   # how late the simulator itself sent, inside the window
        self.rx_window = 0
        self.tx_window = 0
        self.slot_skips = 0
        self.lost_closed = 0  # packets lost on legs already hung up
        self.realtime = False  # the thread got SCHED_FIFO
        self.stopping = False

    def add(self, leg: Leg, dest: tuple[str, int]) -> None:
        leg.sock.connect(dest)
        with self.lock:
            self.legs[leg.fd] = leg
            self.groups[leg.slot].append(leg)
            self.epoll.register(leg.fd, select.EPOLLIN)

    def remove(self, leg: Leg) -> None:
        with self.lock:
            if self.legs.pop(leg.fd, None) is None:
                return
            self.groups[leg.slot].remove(leg)
            self.epoll.unregister(leg.fd)
            self.lost_closed += leg.lost
        leg.sock.close()

    def run(self) -> None:
        # Real-time priority, as Asterisk's own -p option gives its threads: on the CPU this process
        # shares with the fake Realtime server, a 20 ms frame must not wait for the other's time slice.
        try:
            os.sched_setscheduler(threading.get_native_id(), os.SCHED_FIFO, os.sched_param(10))
            self.realtime = True
        except (OSError, AttributeError):
            self.realtime = False
        audio, frames = self.audio, len(self.audio)
        t0 = time.monotonic()
        slot = 0
        while not self.stopping:
            deadline = t0 + slot * 0.001
            delay = deadline - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            late = time.monotonic() - deadline
            if late > 0.010:  # fell 10 ms behind (a stall of this process): skip ahead, count it
                skip = int(late / 0.001)
                slot += skip
                self.slot_skips += skip
            with self.lock:
                group = list(self.groups[slot % SLOTS])
                window = self.window
            if window and group:
                self.send_late_us.append(int(max(0.0, late) * 1e6))
            for leg in group:
                if not leg.sending:
                    continue
                payload = audio[leg.pos % frames]
                leg.pos += 1
                packet = HEADER.pack(0x80, 0, leg.seq & 0xFFFF, leg.ts & 0xFFFFFFFF, leg.ssrc) + payload
                leg.seq += 1
                leg.ts += FRAME
                try:
                    leg.sock.send(packet)
                except OSError:
                    pass
                if window:
                    self.tx_window += 1
            self._drain(window)
            slot += 1

    def _drain(self, window: bool) -> None:
        for fd, _mask in self.epoll.poll(0):
            leg = self.legs.get(fd)
            if leg is None:
                continue
            while True:
                try:
                    data, ancillary, _flags, _addr = leg.sock.recvmsg(2048, 64)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                arrived = 0.0
                for level, kind, value in ancillary:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        sec, nsec = TIMESPEC.unpack_from(value)
                        arrived = sec + nsec * 1e-9
                if len(data) < 12:
                    continue
                b0, b1, seq, _ts, ssrc = HEADER.unpack_from(data)
                leg.rx += 1
                if window:
                    self.rx_window += 1
                if ssrc == leg.last_ssrc:
                    step = (seq - leg.last_seq) & 0xFFFF
                    if step == 0 or step > 0x8000:
                        leg.reordered += 1
                        continue
                    if window:
                        leg.lost += step - 1
                        if not b1 & 0x80 and step == 1:  # inside a talk-spurt
                            self.pacing_us.append(int(abs(arrived - leg.last_t - 0.020) * 1e6))
                leg.last_ssrc, leg.last_seq, leg.last_t = ssrc, seq, arrived


class SimCall:
    def __init__(self, number: int, channel: dict[str, Any]) -> None:
        self.number = number
        self.channel = channel
        self.id: str = channel["id"]
        self.leg: Leg | None = None
        self.leg_channel: dict[str, Any] | None = None
        self.bridge_id = ""
        self.connected = asyncio.get_running_loop().create_future()
        self.started = time.monotonic()
        self.setup_s = 0.0


class SimAsterisk:
    def __init__(self, app_name: str, username: str, password: str, audio: list[bytes]) -> None:
        self.app_name = app_name
        self.auth = aiohttp.encode_basic_auth(username, password)
        self.tpl = templates()
        self.engine = RtpEngine(audio)
        self.audio_frames = len(audio)
        self.startup = stamp()
        self.ws: web.WebSocketResponse | None = None
        self.ws_ready = asyncio.Event()
        self.calls: dict[str, SimCall] = {}
        self.legs: dict[str, SimCall] = {}        # leg channel id -> call
        self.bridges: dict[str, dict[str, Any]] = {}
        self.requests: Counter[str] = Counter()
        self.unexpected: Counter[str] = Counter()
        self.events_sent = 0
        self.sent_log: list[dict[str, Any]] | None = None  # every event sent, when a test asks for it
        self.next_id = itertools.count(1)
        self.setup_s: list[float] = []
        self.failed = 0

    # --- HTTP --------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        r = app.router
        r.add_get("/ari/events", self.events)
        r.add_put("/ari/applications/{app}/eventFilter", self.event_filter)
        r.add_get("/ari/asterisk/info", self.info)
        r.add_get("/ari/asterisk/ping", self.ping)
        r.add_get("/ari/channels", self.list_channels)
        r.add_post("/ari/channels/externalMedia", self.external_media)
        r.add_get("/ari/channels/{id}", self.get_channel)
        r.add_delete("/ari/channels/{id}", self.hangup)
        r.add_post("/ari/channels/{id}/answer", self.answer)
        r.add_get("/ari/channels/{id}/variable", self.get_variable)
        r.add_post("/ari/channels/{id}/variable", self.set_variable)
        r.add_get("/ari/bridges", self.list_bridges)
        r.add_post("/ari/bridges/{id}", self.create_bridge)
        r.add_delete("/ari/bridges/{id}", self.destroy_bridge)
        r.add_post("/ari/bridges/{id}/addChannel", self.add_channel)
        r.add_route("*", "/{tail:.*}", self.unknown)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.headers.get("Authorization") != self.auth:
            return web.json_response({"message": "Authentication required"}, status=401)
        self.requests[f"{request.method} {request.match_info.route.resource.canonical if request.match_info.route.resource else '?'}"] += 1
        return await handler(request)

    async def unknown(self, request: web.Request) -> web.Response:
        self.unexpected[f"{request.method} {request.path}"] += 1
        return web.json_response({"message": "Resource not found"}, status=404)

    def send(self, event_type: str, **fields: Any) -> None:
        if self.ws is None or self.ws.closed:
            return
        event = {"type": event_type, "timestamp": stamp(), **fields, "asterisk_id": "02:fc:00:00:00:01",
                 "application": self.app_name}
        self.events_sent += 1
        if self.sent_log is not None:
            self.sent_log.append(event)
        asyncio.ensure_future(self.ws.send_str(json.dumps(event)))

    async def events(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("app") != self.app_name:
            return web.json_response({"message": "Invalid application provided in param [app]."}, status=400)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.ws = ws
        self.ws_ready.set()
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
        self.ws = None
        self.ws_ready.clear()
        return ws

    async def event_filter(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"name": self.app_name, "channel_ids": [], "bridge_ids": [], "endpoint_ids": [],
                                  "device_names": [], "events_allowed": body.get("allowed", []),
                                  "events_disallowed": body.get("disallowed", [])})

    async def info(self, request: web.Request) -> web.Response:
        return web.json_response({"status": {"startup_time": self.startup, "last_reload_time": self.startup}})

    async def ping(self, request: web.Request) -> web.Response:
        return web.json_response({"asterisk_id": "02:fc:00:00:00:01", "ping": "pong", "timestamp": stamp()})

    def _channel(self, channel_id: str) -> dict[str, Any] | None:
        call = self.calls.get(channel_id)
        if call is not None:
            return call.channel
        call = self.legs.get(channel_id)
        return call.leg_channel if call is not None else None

    async def list_channels(self, request: web.Request) -> web.Response:
        channels = [c.channel for c in self.calls.values()]
        channels += [c.leg_channel for c in self.legs.values() if c.leg_channel]
        return web.json_response(channels)

    async def get_channel(self, request: web.Request) -> web.Response:
        channel = self._channel(request.match_info["id"])
        if channel is None:
            return web.json_response({"message": "Channel not found"}, status=404)
        return web.json_response(channel)

    async def answer(self, request: web.Request) -> web.Response:
        call = self.calls.get(request.match_info["id"])
        if call is None:
            return web.json_response({"message": "Channel not found"}, status=404)
        call.channel["state"] = "Up"
        self.send("ChannelStateChange", channel=call.channel)
        return web.Response(status=204)

    async def get_variable(self, request: web.Request) -> web.Response:
        if self._channel(request.match_info["id"]) is None:
            return web.json_response({"message": "Channel not found"}, status=404)
        return web.json_response({"message": "Provided variable was not found"}, status=404)

    async def set_variable(self, request: web.Request) -> web.Response:
        if self._channel(request.match_info["id"]) is None:
            return web.json_response({"message": "Channel not found"}, status=404)
        return web.Response(status=204)

    async def external_media(self, request: web.Request) -> web.Response:
        q = request.query
        call = self.calls.get(q.get("data", ""))
        if q.get("app") != self.app_name or call is None or q.get("format") != "ulaw" or q.get("encapsulation") != "rtp":
            self.unexpected[f"externalMedia {dict(q)}"] += 1
            return web.json_response({"message": "bad externalMedia request for this simulator"}, status=400)
        host, port = q["external_host"].rsplit(":", 1)
        leg = Leg(slot=random.randrange(SLOTS), pos=random.randrange(self.audio_frames))
        channel = copy.deepcopy(self.tpl["leg"])
        channel.update(id=q["channelId"], name=f"UnicastRTP/{host}:{port}-0x{leg.fd:012x}", state="Up",
                       creationtime=stamp())
        channel["channelvars"] = {"UNICASTRTP_LOCAL_ADDRESS": "127.0.0.1", "UNICASTRTP_LOCAL_PORT": str(leg.port)}
        call.leg, call.leg_channel = leg, channel
        self.legs[channel["id"]] = call
        self.engine.add(leg, (host, int(port)))
        # Asterisk answers the request first; the leg's StasisStart follows
        asyncio.get_running_loop().call_soon(lambda: self.send("StasisStart", args=[], channel=channel))
        return web.json_response(channel)

    async def create_bridge(self, request: web.Request) -> web.Response:
        bridge = copy.deepcopy(self.tpl["bridge"])
        bridge.update(id=request.match_info["id"], name=request.query.get("name", ""), channels=[],
                      creationtime=stamp())
        self.bridges[bridge["id"]] = bridge
        return web.json_response(bridge)

    async def list_bridges(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.bridges.values()))

    async def add_channel(self, request: web.Request) -> web.Response:
        bridge = self.bridges.get(request.match_info["id"])
        if bridge is None:
            return web.json_response({"message": "Bridge not found"}, status=404)
        ids = request.query.get("channel", "").split(",")
        channels = [self._channel(i) for i in ids]
        if any(c is None for c in channels):
            return web.json_response({"message": "Channel not found"}, status=400)
        for channel in channels:
            bridge["channels"].append(channel["id"])
            self.send("ChannelEnteredBridge", bridge=bridge, channel=channel)
            leg_call = self.legs.get(channel["id"])
            if leg_call is not None and leg_call.leg is not None:
                leg_call.leg.sending = True  # media flows once the leg is bridged with the caller
        call = self.calls.get(ids[0])
        if call is not None and not call.connected.done():
            call.bridge_id = bridge["id"]
            call.setup_s = time.monotonic() - call.started
            call.connected.set_result(True)
        return web.Response(status=204)

    async def destroy_bridge(self, request: web.Request) -> web.Response:
        if self.bridges.pop(request.match_info["id"], None) is None:
            return web.json_response({"message": "Bridge not found"}, status=404)
        return web.Response(status=204)

    async def hangup(self, request: web.Request) -> web.Response:
        channel_id = request.match_info["id"]
        if channel_id in self.legs:
            call = self.legs.pop(channel_id)
            if call.leg is not None:
                self.engine.remove(call.leg)
            self._gone(call.leg_channel or {})
            return web.Response(status=204)
        call = self.calls.pop(channel_id, None)
        if call is None:
            return web.json_response({"message": "Channel not found"}, status=404)
        self._gone(call.channel)
        return web.Response(status=204)

    def _gone(self, channel: dict[str, Any]) -> None:
        self.send("ChannelHangupRequest", cause=16, soft=True, channel=channel)
        for bridge in self.bridges.values():
            if channel["id"] in bridge["channels"]:
                bridge["channels"].remove(channel["id"])
                self.send("ChannelLeftBridge", bridge=bridge, channel=channel)
        self.send("StasisEnd", channel=channel)
        self.send("ChannelDestroyed", cause=16, cause_txt="Normal Clearing", channel=channel)

    # --- the load --------------------------------------------------------------------------------
    async def originate(self, calls: int, rate: float) -> dict[str, Any]:
        await asyncio.wait_for(self.ws_ready.wait(), 30)
        new: list[SimCall] = []
        t0 = time.monotonic()
        for i in range(calls):
            await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            number = next(self.next_id)
            channel = copy.deepcopy(self.tpl["caller"])
            channel.update(id=f"{int(time.time())}.{number}", name=f"PJSIP/sim-{number:08x}", state="Ring",
                           protocol_id=f"{number}-sim@127.0.0.1", creationtime=stamp())
            channel["caller"] = {"name": f"Caller {number}", "number": f"+1555{number:07d}"}
            channel["dialplan"] = dict(channel["dialplan"], app_data=f"{self.app_name},100")
            call = SimCall(number, channel)
            self.calls[call.id] = call
            new.append(call)
            self.send("StasisStart", args=["100"], channel=channel)
        done, pending = await asyncio.wait([c.connected for c in new], timeout=60)
        failed = len(pending)
        for future in pending:
            future.cancel()
        self.failed += failed
        self.setup_s += [c.setup_s for c in new if c.connected.done() and not c.connected.cancelled()]
        return {"event": "connected", "calls": len(new) - failed, "failed": failed}

    async def hangup_all(self) -> dict[str, Any]:
        for call in list(self.calls.values()):
            if self.calls.pop(call.id, None) is not None:
                self._gone(call.channel)
            await asyncio.sleep(0)
        deadline = time.monotonic() + 30
        while (self.legs or self.bridges) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        engine = self.engine
        legs = [c.leg for c in self.legs.values() if c.leg is not None]
        return {"event": "done", "pacing_us": summary(engine.pacing_us), "send_late_us": summary(engine.send_late_us),
                "rx_window": engine.rx_window, "tx_window": engine.tx_window, "slot_skips": engine.slot_skips,
                "lost": sum(leg.lost for leg in engine.legs.values()) + engine.lost_closed,
                "left_legs": len(legs), "left_bridges": len(self.bridges),
                "setup_ms": summary(array("I", (int(s * 1000) for s in self.setup_s))),
                "failed": self.failed, "events_sent": self.events_sent, "sim_realtime": engine.realtime, "requests": dict(self.requests),
                "unexpected": dict(self.unexpected)}


def summary(values: array) -> dict[str, float]:
    """Count, nearest-rank p50/p99 and max of µs samples."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {"n": len(ordered), "p50": percentile(ordered, 50), "p99": percentile(ordered, 99), "max": ordered[-1]}


def caller_audio() -> list[bytes]:
    """The looped caller: bench_calls' talker (0.4 s silence, then turns of 0.8 s speech and 2.5 s
    silence), six turns, as 20 ms frames."""
    from benchmarks.bench_calls import caller_audio as talker
    from tests.lab.audio import frames
    return frames(talker(0, 6))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--app", default="aribot")
    parser.add_argument("--username", default="asterisk")
    parser.add_argument("--password", required=True)
    args = parser.parse_args()
    sim = SimAsterisk(args.app, args.username, args.password, caller_audio())
    runner = web.AppRunner(sim.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    sim.engine.start()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def reply(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    reply({"event": "ready"})
    while line := await reader.readline():
        cmd = json.loads(line)
        if cmd["cmd"] == "originate":
            reply(await sim.originate(cmd["calls"], cmd.get("rate", 50.0)))
        elif cmd["cmd"] == "window":
            with sim.engine.lock:
                sim.engine.window = bool(cmd["on"])
            reply({"event": "window", "on": sim.engine.window})
        elif cmd["cmd"] == "hangup":
            reply(await sim.hangup_all())
            break
    sim.engine.stopping = True
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
