"""A strict fake of OpenAI's GPT-Live primary WebSocket (``/v1/live/sessions``) for aribot's tests.

Start it with ``async with FakeGptLiveServer(script=Script(turns=[...])) as server:`` and point the client at
``server.url`` (or an ``openai.AsyncOpenAI(base_url=server.base_url)``). Each connection is a
``LiveConnection`` in ``server.connections`` recording what the client did; see README.md.
"""

from aribot.plugins.local_backend.realtime.server import FakeBugError

from .connection import SENT_EVENT_TYPES, LiveConnection
from .errors import ProtocolError
from .protocol import HANDLERS, LiveProtocol
from .records import (
    AppendRecord,
    AudioArrival,
    ClientBug,
    InputGap,
    Interruption,
    ToolOutputRecord,
    TurnRecord,
)
from .script import FunctionCall, Script, Turn, default_turn
from .server import LIVE_PATH, ClientBugError, FakeGptLiveServer
from .validation import check_server_event

__all__ = [
    "HANDLERS",
    "LIVE_PATH",
    "SENT_EVENT_TYPES",
    "AppendRecord",
    "AudioArrival",
    "ClientBug",
    "ClientBugError",
    "FakeBugError",
    "FakeGptLiveServer",
    "FunctionCall",
    "InputGap",
    "Interruption",
    "LiveConnection",
    "LiveProtocol",
    "ProtocolError",
    "Script",
    "ToolOutputRecord",
    "Turn",
    "TurnRecord",
    "check_server_event",
    "default_turn",
]
