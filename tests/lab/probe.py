"""What a live aribot did, for tests: its bus events with times, its log lines, and where caller
frames sit."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest

from aribot.core.events import Event, MediaConnected
from tests.lab.audio import FRAME_BYTES as FRAME
from tests.lab.sniffer import RtpSniffer


@dataclass
class Probe:
    """Every bus event of an App, in order, with its time (event.ts, time.time())."""

    events: list[Event] = field(default_factory=list)

    @classmethod
    def attach(cls, app: Any, sniffer: RtpSniffer | None = None) -> "Probe":
        probe = cls()
        app.bus.subscribe(None, probe.events.append)
        if sniffer is not None:
            # watch aribot's own RTP port as soon as a call has one: caller frames arriving there
            app.bus.subscribe(MediaConnected, lambda e: sniffer.watch(int(e.local.rsplit(":", 1)[1])))
        return probe

    def of(self, name: str) -> list[Any]:
        return [e for e in self.events if e.name == name]

    def first(self, name: str) -> Any:
        found = self.of(name)
        assert found, f"no {name} event; saw {[e.name for e in self.events]}"
        return found[0]

    async def wait(self, name: str, timeout: float = 10.0, count: int = 1) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.of(name)) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"no {name} event within {timeout} s; saw {[e.name for e in self.events]}")
            await asyncio.sleep(0.01)
        return self.of(name)[count - 1]

    def aribot_port(self) -> int:
        return int(self.first("call.media_connected").local.rsplit(":", 1)[1])


def frame_index(audio: bytes, frame: bytes) -> int:
    """Position (in frames) of a distinct 160-byte frame inside the caller's audio."""
    for index in range(len(audio) // FRAME):
        if audio[index * FRAME:(index + 1) * FRAME] == frame:
            return index
    raise AssertionError("frame not found in the caller's audio")


def arrival_time(sniffer: RtpSniffer, port: int, frame: bytes) -> float:
    """When a caller frame reached aribot's RTP socket (kernel timestamp)."""
    for packet in sniffer.packets(port):
        if packet.payload == frame:
            return packet.ts
    raise AssertionError("frame never reached aribot's RTP port")


def subscribe(app: Any, event_type: type[Event]) -> list[Any]:
    """Every event of one type the App emits from now on, in a list that fills as they come."""
    seen: list[Any] = []
    app.bus.subscribe(event_type, seen.append)
    return seen


def log_lines(caplog: pytest.LogCaptureFixture, needle: str, level: int = logging.WARNING) -> list[str]:
    """Messages at ``level`` or above that contain ``needle``."""
    return [r.getMessage() for r in caplog.records if r.levelno >= level and needle in r.getMessage()]
