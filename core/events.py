"""Call lifecycle events (frozen dataclasses) and the blinker-based EventBus that carries them.

Each event class has one named blinker signal. The sender is the ``Call`` object, so per-call
waits connect with ``sender=call``. Receivers may be sync or async; a failing receiver is logged
and counted and never stops the others or the call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from blinker import ANY, NamedSignal, Namespace

log = logging.getLogger("aribot.events")
DTMF_MASK = "x"  # a masked keypad digit (not a DTMF key itself: 0-9 * # A-D)


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of every event: which call, and when (time.time())."""

    name: ClassVar[str] = "event"
    call_id: str
    ts: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["type"] = self.name
        return data


_EVENT_TYPES: dict[str, type[Event]] = {}


def event(name: str) -> Callable[[type[Event]], type[Event]]:
    """Class decorator: give an Event subclass its wire name and signal."""
    def wrap(cls: type[Event]) -> type[Event]:
        cls.name = name
        _EVENT_TYPES[name] = cls
        return cls
    return wrap


def event_types() -> dict[str, type[Event]]:
    """Wire name → class of every declared event."""
    return dict(_EVENT_TYPES)


@event("call.started")
@dataclass(frozen=True, kw_only=True)
class CallStarted(Event):
    """A caller channel entered Stasis and a Call was created."""

    channel_id: str
    caller_number: str = ""
    caller_name: str = ""
    extension: str = ""
    args: tuple[str, ...] = ()


@event("call.answered")
@dataclass(frozen=True, kw_only=True)
class CallAnswered(Event):
    """The caller channel was answered."""


@event("call.media_connected")
@dataclass(frozen=True, kw_only=True)
class MediaConnected(Event):
    """The ExternalMedia leg is bridged: RTP can flow both ways."""

    local: str
    remote: str


@event("call.backend_ready")
@dataclass(frozen=True, kw_only=True)
class BackendReady(Event):
    """The speech backend's session is connected and configured."""

    session_id: str
    connect_ms: float
    backend: str = ""


@event("call.backend_rollover")
@dataclass(frozen=True, kw_only=True)
class BackendRollover(Event):
    """The backend's session was lost mid-call (or reached ``[ai] max_session_s``) and a new
    session took over with the conversation so far carried into it."""

    reason: str           # "closed_1001", "closed_1011", "expired", ..., or "max_session_s"
    attempt: int          # 1 for the first try of this rollover
    replayed_items: int
    gap_ms: float         # from the old session's end to the new one being ready


@event("call.activation_opened")
@dataclass(frozen=True, kw_only=True)
class ActivationOpened(Event):
    """Caller audio now flows to the AI."""

    mode: str
    reason: str = ""
    pre_roll_ms: int = 0


@event("call.speech_started")
@dataclass(frozen=True, kw_only=True)
class SpeechStarted(Event):
    """The AI's turn detection heard the caller start speaking."""

    item_id: str = ""


@event("call.speech_stopped")
@dataclass(frozen=True, kw_only=True)
class SpeechStopped(Event):
    """The AI's turn detection heard the caller stop speaking. Turn detection decides after some
    silence: ``silence_ms`` is how long before this event the caller's last speech reached aribot,
    where the backend knows it (None: this event's own moment is the best known)."""

    item_id: str = ""
    silence_ms: float | None = None


@event("call.transcript_delta")
@dataclass(frozen=True, kw_only=True)
class TranscriptDelta(Event):
    """A piece of a transcript: role is 'caller' or 'assistant'."""

    role: str
    item_id: str
    text: str


@event("call.transcript")
@dataclass(frozen=True, kw_only=True)
class Transcript(Event):
    """A finished transcript of one caller or assistant turn."""

    role: str
    item_id: str
    text: str


@event("call.response_started")
@dataclass(frozen=True, kw_only=True)
class ResponseStarted(Event):
    """The AI started a response."""

    response_id: str


@event("call.bot_audio_started")
@dataclass(frozen=True, kw_only=True)
class BotAudioStarted(Event):
    """The first RTP frame of an AI answer went to Asterisk; latency is from the caller's stop."""

    response_id: str
    item_id: str
    latency_ms: float | None = None


@event("call.response_done")
@dataclass(frozen=True, kw_only=True)
class ResponseDone(Event):
    """The AI finished a response (completed, cancelled, failed or incomplete)."""

    response_id: str
    status: str
    reason: str = ""
    usage: dict[str, Any] = field(default_factory=dict)  # the service's token usage of this response, as sent


@event("call.barge_in")
@dataclass(frozen=True, kw_only=True)
class BargeIn(Event):
    """The caller interrupted the AI: playout was flushed and the item truncated."""

    item_id: str
    played_ms: int
    dropped_ms: int


@event("call.tool_called")
@dataclass(frozen=True, kw_only=True)
class ToolCalled(Event):
    """The AI asked to run a function tool."""

    tool: str
    tool_call_id: str
    arguments: str


@event("call.tool_awaiting_answer")
@dataclass(frozen=True, kw_only=True)
class ToolAwaitingAnswer(Event):
    """A tool configured to be answered by a person ([tools] manual) waits for an operator."""

    tool: str
    tool_call_id: str
    arguments: str


@event("call.tool_finished")
@dataclass(frozen=True, kw_only=True)
class ToolFinished(Event):
    """A function tool finished; error is empty on success."""

    tool: str
    tool_call_id: str
    result: str
    error: str = ""
    duration_ms: float = 0.0


@event("call.dtmf")
@dataclass(frozen=True, kw_only=True)
class DtmfReceived(Event):
    """The caller pressed a key. ``masked`` (``[dtmf] mask``): written out (``to_json``: the
    history, ``/logs``) as "x"; ``digit`` itself is the key pressed, for the plugins that act on it."""

    digit: str
    duration_ms: int = 0
    masked: bool = True

    @property
    def shown(self) -> str:
        """The key as logs and stored records may show it."""
        return DTMF_MASK * len(self.digit) if self.masked else self.digit

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "digit": self.shown}


@event("call.talking_started")
@dataclass(frozen=True, kw_only=True)
class TalkingStarted(Event):
    """Asterisk's TALK_DETECT heard the caller start talking (ChannelTalkingStarted)."""


@event("call.talking_finished")
@dataclass(frozen=True, kw_only=True)
class TalkingFinished(Event):
    """Asterisk's TALK_DETECT heard the caller stop talking; duration excludes the silence."""

    duration_ms: int = 0


@event("call.greeting_started")
@dataclass(frozen=True, kw_only=True)
class GreetingStarted(Event):
    """The greeting started playing to the caller."""

    media: str


@event("call.greeting_finished")
@dataclass(frozen=True, kw_only=True)
class GreetingFinished(Event):
    """The greeting ended; interrupted when it was stopped before its end."""

    interrupted: bool = False


@event("call.bot_audio_stopped")
@dataclass(frozen=True, kw_only=True)
class BotAudioStopped(Event):
    """The AI's audio stopped: the talk-spurt ended (all queued audio sent) or it was flushed."""

    item_id: str = ""


@event("call.dtmf_collected")
@dataclass(frozen=True, kw_only=True)
class DtmfCollected(Event):
    """Keypad digits were collected; reason: terminator, max_digits, interdigit_timeout, final_timeout.
    ``masked`` as for ``DtmfReceived``: written out as one "x" per digit."""

    digits: str
    reason: str
    masked: bool = True

    @property
    def shown(self) -> str:
        """The digits as logs and stored records may show them."""
        return DTMF_MASK * len(self.digits) if self.masked else self.digits

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "digits": self.shown}


@event("call.no_input")
@dataclass(frozen=True, kw_only=True)
class NoInput(Event):
    """The caller has said nothing when aribot expected it; the no-input action follows."""

    reason: str


@event("call.timer_fired")
@dataclass(frozen=True, kw_only=True)
class TimerFired(Event):
    """A call timer expired: no_speech, speech_complete or max_duration; action says what followed."""

    timer: str
    action: str


@event("call.backend_error")
@dataclass(frozen=True, kw_only=True)
class BackendError(Event):
    """The speech backend's service reported an error, or its connection failed (``fatal``: the
    call could not go on with it)."""

    code: str
    message: str
    fatal: bool = False


@event("call.usage")
@dataclass(frozen=True, kw_only=True)
class UsageUpdated(Event):
    """What the AI service counts for this call: ``seconds`` of session so far (cumulative over the
    call's sessions) for services billed by time; ``tokens``: the usage of one more answer or task
    (to be added up), in the Realtime usage shape (``input_tokens``, ``output_tokens``,
    ``input_token_details`` …), e.g. a delegation model's."""

    seconds: float | None = None
    tokens: dict[str, Any] = field(default_factory=dict)


@event("call.cost")
@dataclass(frozen=True, kw_only=True)
class CostUpdated(Event):
    """What the call has cost so far with the AI service, by the ``[cost]`` prices (the ``cost``
    plugin): ``usd`` in all (cumulative), ``backend`` the call's speech backend, ``breakdown``
    USD by part (``audio_input``, ``text_output``, ``session_minutes`` …). Sent once at 0 when the
    call's AI session is first ready, then whenever the cost changes."""

    usd: float
    backend: str = ""
    breakdown: dict[str, float] = field(default_factory=dict)


@event("call.listen_started")
@dataclass(frozen=True, kw_only=True)
class ListenStarted(Event):
    """An operator started listening to the call in the dashboard (``client``: the browser's
    address and port)."""

    operator: str
    client: str = ""


@event("call.listen_stopped")
@dataclass(frozen=True, kw_only=True)
class ListenStopped(Event):
    """A listen-in session of the call ended (Stop, the browser left, or the call ended) after
    ``seconds``."""

    operator: str
    seconds: float = 0.0


@event("call.transfer")
@dataclass(frozen=True, kw_only=True)
class TransferProgress(Event):
    """A warm transfer moved on: ``stage`` is started, ringing, answered, accepted, declined,
    no_answer, busy, failed or cancelled; ``target`` is "ext@context"; ``detail`` says more."""

    stage: str
    target: str
    detail: str = ""


@event("call.outbound_outcome")
@dataclass(frozen=True, kw_only=True)
class OutboundOutcome(Event):
    """How a call aribot placed (plugins/outbound) went: ``outcome`` is human, machine, no_answer,
    busy or failed; ``detail`` says more (the detector's reason, Asterisk's hang-up cause)."""

    outcome: str
    detail: str = ""


@event("call.ended")
@dataclass(frozen=True, kw_only=True)
class CallEnded(Event):
    """The call is over and every Asterisk resource aribot created for it is gone."""

    reason: str
    duration_s: float
    stats: dict[str, Any] = field(default_factory=dict)


Receiver = Callable[..., Any]


class EventBus:
    """Thin wrapper over blinker: strong refs, isolated receivers, per-owner bookkeeping. Each bus
    has its own signals, so two aribot instances in one process (tests) never share receivers."""

    def __init__(self) -> None:
        self._signals = Namespace()
        self._owned: dict[str, list[tuple[NamedSignal, Receiver]]] = defaultdict(list)
        self._owner_of: dict[Receiver, str] = {}  # shim -> owner: unsubscribe touches one owner's list
        self._tasks: set[asyncio.Task[Any]] = set()
        self.receiver_errors = 0

    def subscribe(
        self,
        event_type: type[Event] | None,
        receiver: Receiver,
        *,
        sender: Any = ANY,
        owner: str = "core",
    ) -> Receiver:
        """Call ``receiver(event)`` for each event of the type (None = every type)."""
        shim = self._isolate(receiver, owner)
        targets = list(_EVENT_TYPES.values()) if event_type is None else [event_type]
        for cls in targets:
            sig = self._signals.signal(cls.name)
            sig.connect(shim, sender=sender, weak=False)
            self._owned[owner].append((sig, shim))
        self._owner_of[shim] = owner
        return shim

    def unsubscribe(self, shim: Receiver) -> None:
        """Disconnect one receiver. Cost grows with its owner's receivers, not with all calls'
        (a call's next_event() subscribes and unsubscribes once per wait)."""
        owner = self._owner_of.pop(shim, None)
        pairs = self._owned.get(owner) if owner is not None else None
        if not pairs:
            return
        keep = []
        for sig, fn in pairs:
            if fn is shim:
                sig.disconnect(fn)
            else:
                keep.append((sig, fn))
        pairs[:] = keep

    def disconnect_owner(self, owner: str) -> int:
        """Unplug every receiver a plugin connected; returns how many."""
        pairs = self._owned.pop(owner, [])
        for sig, shim in pairs:
            sig.disconnect(shim)
            self._owner_of.pop(shim, None)
        return len(pairs)

    def emit(self, sender: Any, ev: Event) -> None:
        """Deliver ``ev`` synchronously to sync receivers; async receivers run as tasks."""
        self._signals.signal(ev.name).send(sender, event=ev)

    def _isolate(self, receiver: Receiver, owner: str) -> Receiver:
        is_async = inspect.iscoroutinefunction(receiver)

        def shim(sender: Any, *, event: Event) -> None:
            try:
                result = receiver(event)
                if is_async or inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._tasks.add(task)
                    task.add_done_callback(lambda t: self._finish(t, owner, event))
            except Exception:
                self.receiver_errors += 1
                log.exception("event receiver of %s failed on %s for call %s; other receivers "
                              "and the call go on", owner, event.name, event.call_id)
        return shim

    def _finish(self, task: asyncio.Task[Any], owner: str, ev: Event) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.receiver_errors += 1
            log.error("async event receiver of %s failed on %s for call %s: %r; other receivers "
                      "and the call go on", owner, ev.name, ev.call_id, task.exception())

    def close(self) -> None:
        """Disconnect every receiver (at shutdown)."""
        for owner in list(self._owned):
            self.disconnect_owner(owner)

    async def drain(self) -> None:
        """Wait for async receivers still running (used at shutdown and in tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
