"""A strict fake of the OpenAI Realtime API (GA protocol) for aribot's tests: the engine of
``aribot.plugins.local_backend.realtime`` with scripted turns and every sent frame validated.

Start it with ``async with FakeRealtimeServer(script=Script(turns=[...])) as server:`` and point
the client at ``server.url`` (+ ``?model=...``). Every connection is a ``FakeConnection`` in
``server.connections`` that records what the client sent and what the fake answered.
"""

from aribot.plugins.local_backend.realtime.connection import FakeConnection
from aribot.plugins.local_backend.realtime.errors import ProtocolError
from aribot.plugins.local_backend.realtime.records import ResponseRecord, TruncationRecord
from aribot.plugins.local_backend.realtime.script import (
    AudioOutput,
    Failure,
    FunctionCallOutput,
    Script,
    Turn,
    default_audio,
    default_turn,
)

from .server import FakeBugError, FakeRealtimeServer
from .validation import check_server_event

__all__ = [
    "AudioOutput",
    "Failure",
    "FakeBugError",
    "FakeConnection",
    "FakeRealtimeServer",
    "FunctionCallOutput",
    "ProtocolError",
    "ResponseRecord",
    "Script",
    "TruncationRecord",
    "Turn",
    "check_server_event",
    "default_audio",
    "default_turn",
]
