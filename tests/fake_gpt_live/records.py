"""What a ``LiveConnection`` records for assertions.

Times named ``at`` are on the server's clock (``server.clock``: a test's ``ManualClock`` or
``time.monotonic``); ``*_ms`` values are on the session timeline (ms of input audio received).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .script import Turn


@dataclass(frozen=True)
class AudioArrival:
    """One accepted ``session.input_audio.append``."""

    at: float
    size: int


@dataclass(frozen=True)
class InputGap:
    """No input audio arrived from ``start`` to ``end`` (clock seconds), longer than the gap threshold."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        """The gap's length."""
        return self.end - self.start


@dataclass
class AppendRecord:
    """One accepted instructions / thinking / commentary append."""

    type: str
    content: str
    delegation_id: str | None
    client_event_id: str | None
    start_ms: int
    end_ms: int
    acked: bool = False


@dataclass(frozen=True)
class ToolOutputRecord:
    """One ``function_call_output`` the client gave the backend."""

    call_id: str
    name: str
    output: Any
    delegation_id: str
    at: float


@dataclass(frozen=True)
class Interruption:
    """The model stopped speaking: ``cause`` ``"caller"`` (barge-in) or ``"append"`` (an append cut in)."""

    turn_index: int
    cause: str
    at: float
    timeline_ms: int
    bytes_sent: int
    bytes_total: int


@dataclass
class TurnRecord:
    """One turn the model took (``index`` 0-based over the whole connection, default turns included);
    ``start_ms``: where it was taken on the session timeline, then where its speech began."""

    index: int
    trigger: str
    turn: Turn = field(repr=False)
    started_at: float
    start_ms: int
    audio_sent: bytearray = field(default_factory=bytearray, repr=False)
    transcript_sent: str = ""
    delegation_id: str | None = None
    call_ids: list[str] = field(default_factory=list)
    interrupted: bool = False
    done: bool = False

    @property
    def kind(self) -> str:
        """The turn's kind (``speech``, ``function_call``, ``client_delegation``, ``silent``)."""
        return self.turn.kind


@dataclass(frozen=True)
class ClientBug:
    """A protocol violation by the client, answered with an ``error`` event."""

    at: float
    event_type: str | None
    code: str
    message: str
    param: str | None
    client_event_id: str | None
