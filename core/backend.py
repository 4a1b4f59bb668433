"""The port between a call and its speech backend: the AI service that listens to the caller and
speaks (OpenAI Realtime, GPT-Live, a local voice, anyone's).

A backend plugin registers a ``BackendType`` by name (``register_backends``). For every call core
creates one ``SpeechBackend`` and gives it a ``BackendHost``: the narrow view of the call a
backend may use. In: the caller's audio frames (``feed``), text or context to add, response
requests, an interruption, a session change, close. Out, as typed events on the bus (through
``host.emit``): AI audio (``host.play_audio``), transcripts, tool requests (``host.run_tool``),
speech started/stopped where the protocol reports them, usage, errors; ``serve()`` returns when
the service ended the session, saying why.

Core keeps what is the same for every backend: the activation gate and pre-roll, playout and
pacing, running tools (filler, manual answers, timeouts), DTMF, timers, the fallback prompt, when
to open a new session (``core/conversation.py``) and the history events.
"""

from __future__ import annotations

import abc
import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, ClassVar, Protocol

if TYPE_CHECKING:
    from aribot.core.events import Event
    from aribot.core.tools import ToolOutcome


@dataclass(frozen=True)
class Capabilities:
    """What a backend's service can do; core adapts to it."""

    turn_events: bool        # it reports the caller's speech started/stopped (else the model takes turns alone)
    truncation: bool         # it can be told how much of its audio the caller heard
    tools: str               # "functions" (calls in the session), "delegation" (a backend model calls them), "none"
    audio_formats: tuple[str, ...] = ("ulaw", "alaw")   # [rtp] formats it takes as they are
    continuous_input: bool = False   # it wants caller audio all the time, silence included, in real time
    max_session_s: float | None = None   # the service's own session limit, if it has one
    billing: str = "tokens"  # what it bills: "tokens" or "seconds" (of active session)
    paced_output: bool = False   # it streams its audio in real time (not faster): no backlog to wait for


class BackendUnavailable(ConnectionError):
    """The service could not be reached, or refused the session; the message says why (no secret)."""


@dataclass(frozen=True)
class SessionLost:
    """Why a live session ended on the service's side. ``recoverable``: a new session could carry
    the conversation on (a dropped connection, the service's session limit); else the call cannot
    go on with this backend (e.g. a safety stop)."""

    reason: str              # short code for events and metrics, e.g. "closed_1006", "expired", "content"
    detail: str              # one line for the log
    recoverable: bool = True


@dataclass(frozen=True)
class SessionChange:
    """An operator's change to a live call's session: only what is not None changes."""

    instructions: str | None = None
    voice: str | None = None
    turn_detection: str | None = None
    tools: list[dict[str, Any]] | None = None   # tool definitions (core.tools.Tool.definition())


@dataclass
class SessionSetup:
    """What a call asks of its backend's session: its choices, and the audio format on the line."""

    audio_format: str                     # "ulaw" or "alaw"
    instructions: str
    voice: str
    tools: list[dict[str, Any]]           # definitions: {"type": "function", "name", "description", "parameters"}
    turn_detection: str = ""              # a backend's own turn-detection mode, if it has several
    extra: dict[str, Any] = field(default_factory=dict)


class BackendHost(Protocol):
    """What a backend may use of its call, and nothing more."""

    id: str
    settings: Any
    ending: bool

    def emit(self, event: "Event") -> None:
        """Put an event about this call on the bus (transcripts, speech, responses, usage …)."""

    def play_audio(self, item_id: str, audio: bytes, received_at: float, response_id: str = "") -> None:
        """AI audio for the caller, in the call's format, in order; ``item_id`` groups one utterance."""

    def end_audio(self, item_id: str) -> None:
        """The utterance ``item_id`` is complete (no more audio will come for it)."""

    def flush_audio(self) -> int:
        """Drop the AI audio not sent to the caller yet; returns the bytes dropped."""

    def played_ms(self, item_id: str) -> int:
        """Milliseconds of ``item_id`` sent to the caller so far."""

    def received_ms(self, item_id: str) -> int:
        """Milliseconds of ``item_id`` received from the backend so far."""

    @property
    def current_item(self) -> str:
        """The utterance being played (or last played), "" after a barge-in."""

    def clear_current_item(self) -> None:
        """Forget the current utterance (after a barge-in)."""

    @property
    def audio_pending(self) -> bool:
        """AI audio is queued or being played."""

    async def run_tool(self, name: str, tool_call_id: str, arguments: str, response_ref: str) -> "ToolOutcome":
        """Run a tool the AI asked for with core's policy (timeout, filler, manual answers, events)."""

    def record_inbound_latency(self, received_at: float) -> None:
        """A caller frame received at ``received_at`` (perf_counter) has just been sent to the service."""


class SpeechBackend(abc.ABC):
    """One call's session with a speech service. Core calls ``start`` (connect and configure,
    within ``[ai] connect_timeout``), then ``serve`` until it returns; after a recoverable
    ``SessionLost`` it may call ``resume`` to open a new session with the conversation so far."""

    capabilities: ClassVar[Capabilities]
    can_resume: ClassVar[bool] = False   # resume() can carry the conversation into a new session

    def __init__(self, host: BackendHost, setup: SessionSetup) -> None:
        self.host = host
        self.setup = setup
        self.ready = False             # a session is configured and takes audio
        self.session_id = ""
        self.expires_at: float | None = None   # time.monotonic() at which the service ends the session, if it says
        self.stats: dict[str, int] = {}

    # --- lifecycle ---------------------------------------------------------------------------------
    @abc.abstractmethod
    async def start(self) -> None:
        """Connect and configure the session; raise BackendUnavailable saying why it failed."""

    @abc.abstractmethod
    async def serve(self) -> SessionLost | None:
        """Handle the service's events until the session ends: None when aribot closed it (the
        call is ending), else why it was lost."""

    async def resume(self) -> int:
        """Open a new session carrying the conversation so far (after ``serve`` returned a
        recoverable loss, or for a planned rollover); returns the items carried over. Raise
        BackendUnavailable if it cannot."""
        raise BackendUnavailable(f"{type(self).__name__} cannot open a new session mid-call")

    async def roll_over(self) -> None:
        """End the live session on aribot's side, for a planned rollover at a quiet moment;
        ``serve`` then returns ``SessionLost("max_session_s", …)``."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the session (the call is ending)."""

    # --- caller audio ------------------------------------------------------------------------------
    @abc.abstractmethod
    def feed(self, frame: bytes, received_at: float | None) -> None:
        """One caller frame (20 ms, the call's format) that passed the activation gate. Called for
        every frame: keep it cheap. ``received_at`` None: held audio (pre-roll)."""

    # --- what core asks of the AI --------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def responding(self) -> bool:
        """The AI is producing an answer now."""

    @property
    @abc.abstractmethod
    def caller_speaking(self) -> bool:
        """The service currently hears the caller speak (False when the protocol does not say)."""

    @abc.abstractmethod
    async def add_text(self, role: str, text: str) -> None:
        """Add ``text`` to the conversation: ``role`` "user" (the caller's words, e.g. DTMF digits)
        or "system" (an instruction or context from aribot or an operator)."""

    @abc.abstractmethod
    async def request_response(self, instructions: str | None = None, tag: str = "") -> asyncio.Future[str]:
        """Make the AI speak now, or after its current answer, following ``instructions`` for
        this answer; the future resolves with how it ended ("completed", "cancelled", "failed",
        "dropped" …). ``tag``: a name to drop it with before it is sent."""

    def drop_request(self, *tags: str) -> None:
        """Forget requests not sent yet (their futures resolve with "dropped")."""

    def next_tag(self) -> str:
        """A new request tag."""
        self._tags = getattr(self, "_tags", 0) + 1
        return f"r{self._tags}"

    @abc.abstractmethod
    async def end_turn(self) -> asyncio.Future[str]:
        """The caller's turn is over now (e.g. it has lasted too long): answer it."""

    @abc.abstractmethod
    async def interrupt(self, cancel: bool) -> None:
        """Stop the AI's audio now on aribot's initiative (a key, an operator, a mode), tell the
        service as its protocol allows; ``cancel``: stop the answer being generated too."""

    @abc.abstractmethod
    async def update(self, change: SessionChange) -> str:
        """Apply an operator's change to the live session: "" when applied, else why not."""

    def ai_spoke(self, response_ref: str) -> bool:
        """The AI has spoken in the answer that ``response_ref`` names (a tool call's context)."""
        return False


BackendFactory = Callable[[BackendHost, SessionSetup], SpeechBackend]


@dataclass(frozen=True)
class BackendType:
    """A backend as a plugin registers it: ``register(BackendType(name, create, capabilities, …))``.

    ``create(host, setup)`` makes a call's SpeechBackend. ``default_voice(settings)`` is the voice
    a call gets unless it chooses one. ``warnings(settings)`` lists what is missing for it to work
    (an empty API key …), said once at start. ``check(settings, timeout)`` is its ``aribot doctor``
    line: reach the service and authenticate, spending no AI minute; returns (ok, detail, fix)."""

    name: str
    create: BackendFactory
    capabilities: Capabilities
    default_voice: Callable[[Any], str] = lambda settings: ""
    warnings: Callable[[Any], list[str]] = lambda settings: []
    check: Callable[[Any, float], Awaitable[tuple[bool, str, str]]] | None = None
    description: str = ""
