"""One call: answer → bridge + ExternalMedia → speech backend session → audio both ways → cleanup.

Every Asterisk resource the call creates (ExternalMedia channel, bridge) is deleted when it
ends, whoever ends it; ``CallEnded`` is emitted only after that (reference/asterisk-ari.md §8).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aribot.core import events as ev
from aribot.core.ari import AriError, AriNotFound, new_id
from aribot.core.ari_events import AriEvent, Channel, shown
from aribot.core.backend import SessionSetup, SpeechBackend
from aribot.core.choices import CHANNEL_VARIABLES, CallChoices, parse_stasis_args, resolve
from aribot.core.controls import CallControls
from aribot.core.conversation import Conversation
from aribot.core.g711 import loud_samples
from aribot.core.hold import HOLD_ITEM
from aribot.core.metrics import CallMetrics
from aribot.core.playout import Pacer, Playout, PlayoutViews
from aribot.core.rtp import PAYLOAD_TYPES, SILENCE_BYTE, RtpEndpoint, RtpSender
from aribot.core.tools import ToolOutcome, run_tool_call

if TYPE_CHECKING:
    from aribot.core.app import App

log = logging.getLogger("aribot.call")
PLAYBACK_LIMIT_S = 120.0  # longest prompt aribot waits for
PLAYBACK_START_S = 3.0    # a playback Asterisk accepted but never started is given up after this
EVENT_QUEUE = 1000        # ARI events of one call waiting to be handled; beyond it new ones are dropped (counted)
PLAYOUT_LIMIT_S = 600     # AI audio waiting to be played (it comes faster than real time); beyond, dropped (counted)
# AI audio streamed in real time (Capabilities.paced_output): a frame of playout buffer, and less
# than a frame left for 40 ms is the end of what the service said (sent padded); see Pacer
PACED_PLAYOUT = {"start_delay_s": 0.02, "partial_wait_s": 0.04}
# Speech as aribot tells it from the caller's frames, only to date a turn's last word where the
# backend reports no turns: a frame is loud with 16 of its 160 samples at about -30 dBFS or more
# (g711.LOUD_SAMPLE), and a turn needs 5 loud frames (100 ms) since the AI last started to speak.
VOICED_SAMPLES = 16
VOICED_FRAMES = 5


@dataclass
class _Playback:
    id: str
    started: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    done: asyncio.Future[bool] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class CallFailure(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class ActivationGate:
    """Whether caller audio flows to the AI. Activation-mode plugins open it."""

    def __init__(self, call: "Call") -> None:
        self.call = call
        self.is_open = False
        self.opened = asyncio.Event()

    def open(self, reason: str = "") -> None:
        """Start streaming: the pre-roll (the last caller audio before this moment) goes first."""
        if not self.is_open:
            pre_roll = self.call.take_pre_roll()
            for payload, _received_at in pre_roll:
                self.call.backend.feed(payload, None)  # held on purpose: not an inbound-latency sample
            self.is_open = True
            self.opened.set()
            self.call.emit(ev.ActivationOpened(call_id=self.call.id, mode=self.call.mode_name,
                                               reason=reason, pre_roll_ms=20 * len(pre_roll)))


class Call(PlayoutViews, CallControls):
    """Wires one caller channel to one speech backend session (it is the backend's BackendHost);
    all its ARI events arrive in order."""

    def __init__(self, app: "App", channel: Channel, args: list[str]) -> None:
        self.app = app
        self.settings = app.settings
        self.ari = app.ari
        self.id = channel.id
        self.channel = channel
        self.args = args
        self.caller_number = channel.caller_number
        self.caller_name = channel.caller_name
        self.extension = parse_stasis_args(args)[0] or channel.exten
        self.owner = f"call:{self.id}"  # owner of this call's bus subscriptions
        self.overflow = False  # refused for capacity: run_overflow() instead of run()
        self.leg_id = new_id(app.resource_prefix("em"))
        self.bridge_id = new_id(app.resource_prefix("br"))
        self.started_at = time.time()
        self.state = "ringing"
        self.choices = CallChoices(self.extension, app.activation_mode, self.settings.call.greeting,
                                   self.settings.ai.instructions, "", backend=self.settings.ai.backend)
        self.metrics = CallMetrics()
        self.gate = ActivationGate(self)
        self._pre_roll: deque[tuple[bytes, float]] = deque(maxlen=self.settings.activation.pre_roll_ms // 20)
        self.input_held = False
        self.talking = False
        self.manual_answers: dict[str, asyncio.Future[str]] = {}  # tool call id → an operator's answer
        self._last_in = b""
        self._last_in_at = 0.0
        self.greeting_active = False
        self.greeting_done = asyncio.Event()
        self._greeting_stop = asyncio.Event()
        fmt = self.settings.rtp.format
        self.playout = Playout(SILENCE_BYTE[fmt])
        self.endpoint = RtpEndpoint(self.id, PAYLOAD_TYPES[fmt], self._on_caller_audio)
        self.pacer: Pacer | None = None
        self.listeners: list[Any] = []  # listen-in taps: caller_audio(payload), ai_audio(frame), close()
        # plugins' steps awaited once the media path is up, before the activation mode and the greeting,
        # e.g. a recording's consent (plugins/recording); a failing one is logged and the call goes on
        self.preludes: list[Callable[[], Awaitable[Any]]] = []
        self.conversation: Conversation | None = None   # created once the call's choices are known
        self._item_response: dict[str, str] = {}   # AI utterance → the backend's response it belongs to
        self._speech_stopped_at: float | None = None  # when the caller stopped speaking (turn latency)
        # a backend that reports no caller turns (GPT-Live): aribot dates the caller's last word itself
        self._voice_fmt: str | None = None   # the call's G.711 format while aribot watches for speech
        self._voiced_at = 0.0                # when the caller's last loud frame arrived
        self._voiced_frames = 0              # loud frames since the AI last started to speak
        self.input_held_frames = 0
        self.end_reason = ""
        self.failed = False
        self.ending = False
        self.caller_left = asyncio.Event()
        self.done = asyncio.Event()
        self._stop = asyncio.Event()
        self._events: asyncio.Queue[AriEvent] = asyncio.Queue(EVENT_QUEUE)
        self.dropped_events = 0
        self.dropped_ai_audio = 0   # bytes of AI audio beyond PLAYOUT_LIMIT_S
        self._leg_started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._playbacks: dict[str, _Playback] = {}
        self._unbridged = asyncio.Event()  # set while the caller is in no bridge
        self._unbridged.set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._consumer: asyncio.Future[None] | None = None
        self._end_action = ""
        self._continue_target: dict[str, Any] | None = None

    # --- helpers ---------------------------------------------------------------------------------
    @property
    def mode_name(self) -> str:
        return self.choices.mode

    def emit(self, event: ev.Event) -> None:
        if type(event) is ev.SpeechStopped:   # a turn's response latency counts from the caller's last word
            self._speech_stopped_at = time.perf_counter() - (event.silence_ms or 0.0) / 1000
        self.app.bus.emit(self, event)

    @property
    def backend(self) -> SpeechBackend:
        """The call's speech backend session (once the call's choices are made)."""
        assert self.conversation is not None, "the call has no backend before its choices are made"
        return self.conversation.backend

    def deliver(self, event: AriEvent) -> None:
        """Queue an ARI event for this call (called by the app's router, in arrival order); a full
        queue (Asterisk flooding one call) drops it, counted, said once."""
        try:
            self._events.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped_events += 1
            if self.dropped_events == 1:
                log.warning("call %s: more than %d ARI events waiting; dropping new ones (ARI %s first), counted in "
                            "the call's stats", self.id, EVENT_QUEUE, shown(event.type))

    def fail(self, reason: str, detail: str = "") -> None:
        """End the call with the fallback prompt, then hang up or continue per settings."""
        if not self._stop.is_set():
            log.error("call %s: %s (%s); playing the fallback prompt, then %s", self.id, reason, detail,
                      "continuing in the dialplan" if self.settings.call.on_failure == "continue" else "hanging up")
            self.failed = True
            self.end_reason = reason
            self._stop.set()

    def finish(self, reason: str, action: str = "hangup", target: dict[str, Any] | None = None) -> None:
        """End the call normally; ``action`` (hangup/continue) applies if the caller is still here;
        ``target`` ({context, extension, priority}) overrides where "continue" goes."""
        if not self._stop.is_set():
            self.end_reason = reason
            self._end_action = action
            self._continue_target = target
            self._stop.set()

    @property
    def stopping(self) -> bool:
        """The call is ending (or has ended)."""
        return self._stop.is_set()

    async def wait_playout(self, limit: float = 30.0) -> None:
        """Return once the AI audio already queued has been sent to the caller (or after ``limit``)."""
        deadline = time.monotonic() + limit
        while self.playout.buffered_bytes and self.pacer is not None and time.monotonic() < deadline:
            if self._stop.is_set() and not self.ending:
                return
            await asyncio.sleep(0.02)

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("call %s: a call task failed (%r); the call goes on", self.id, exc,
                      exc_info=(type(exc), exc, exc.__traceback__))

    # --- audio ----------------------------------------------------------------------------------
    def _on_caller_audio(self, payload: bytes, received_at: float) -> None:
        self._last_in, self._last_in_at = payload, received_at
        if self.input_held:
            self.input_held_frames += 1
        elif self.gate.is_open:
            self.conversation.backend.feed(payload, received_at)  # type: ignore[union-attr]
            if self._voice_fmt is not None and loud_samples(payload, self._voice_fmt) >= VOICED_SAMPLES:
                self._voiced_at = received_at
                self._voiced_frames += 1
        else:
            self._pre_roll.append((payload, received_at))
        if self.listeners:
            for listener in self.listeners:
                listener.caller_audio(payload)

    def add_listener(self, listener: Any) -> None:
        """Tap both directions of the call's audio (listen-in): ``listener.caller_audio(payload)``
        for every caller payload, ``listener.ai_audio(frame)`` for every frame sent to the caller;
        ``listener.close()`` when the call ends. Nobody listening costs nothing."""
        self.listeners.append(listener)
        self._tap_pacer()

    def remove_listener(self, listener: Any) -> None:
        if listener in self.listeners:
            self.listeners.remove(listener)
        self._tap_pacer()

    def _tap_pacer(self) -> None:
        if self.pacer is not None:
            self.pacer.on_frame = self._on_ai_frame if self.listeners else None

    def _on_ai_frame(self, frame: bytes) -> None:
        for listener in self.listeners:
            listener.ai_audio(frame)

    def take_pre_roll(self) -> list[tuple[bytes, float]]:
        frames = list(self._pre_roll)
        self._pre_roll.clear()
        return frames

    # --- BackendHost: what the speech backend uses of the call ---------------------------------------
    def play_audio(self, item_id: str, audio: bytes, received_at: float, response_id: str = "") -> None:
        if self.playout.buffered_bytes + len(audio) > PLAYOUT_LIMIT_S * 8000:
            self.dropped_ai_audio += len(audio)
            if self.dropped_ai_audio == len(audio):
                log.warning("call %s: the AI sent more than %d s of audio ahead of playout; dropping the rest, "
                            "counted in the call's stats", self.id, PLAYOUT_LIMIT_S)
            return
        if response_id:
            self._item_response.setdefault(item_id, response_id)
        self.playout.push(item_id, audio)
        if self.pacer is not None:
            self.pacer.kick(received_at)

    def end_audio(self, item_id: str) -> None:
        self.playout.end_item(item_id)
        if self.pacer is not None:
            self.pacer.kick()   # an idle pacer sends the item's padded last frame now

    def flush_audio(self) -> int:
        return self.pacer.flush() if self.pacer is not None else self.playout.clear()

    async def run_tool(self, name: str, tool_call_id: str, arguments: str, response_ref: str) -> ToolOutcome:
        return await run_tool_call(self, name, tool_call_id, arguments, response_ref)

    def _on_spurt_end(self, item_id: str) -> None:
        self.emit(ev.BotAudioStopped(call_id=self.id, item_id=item_id))

    def _on_first_frame(self, item_id: str, _now: float) -> None:
        if item_id == HOLD_ITEM:   # aribot's hold sound is not the AI answering: no latency, no event
            return
        stopped = self._speech_stopped_at
        if stopped is None and self._voiced_frames >= VOICED_FRAMES:
            stopped = self._voiced_at   # the caller's last loud frame (a backend that reports no turns)
        latency = (time.perf_counter() - stopped) * 1000 if stopped is not None else None
        self._speech_stopped_at = None
        self._voiced_frames = 0
        self.emit(ev.BotAudioStarted(call_id=self.id, response_id=self._item_response.get(item_id, ""),
                                     item_id=item_id, latency_ms=latency))

    # --- lifecycle ------------------------------------------------------------------------------
    async def run(self) -> None:
        self.emit(ev.CallStarted(call_id=self.id, channel_id=self.id, caller_number=self.caller_number,
                                 caller_name=self.caller_name, extension=self.extension, args=tuple(self.args)))
        log.info("call %s: started (caller %r, extension %r)", self.id, self.caller_number, self.extension)
        self._consumer = asyncio.ensure_future(self._consume())
        try:
            await self._choose()
            self._spawn(self.conversation.run())  # type: ignore[union-attr]
            await self._answer_and_bridge()
            for name, factory in self.app.call_features.items():
                self._spawn(self._run_feature(name, factory))
            mode = self.app.activation_modes[self.mode_name](self)
            await self._prepare(mode)
            for prelude in list(self.preludes):
                await self._run_prelude(prelude)
            self._spawn(self._activate(mode))
            await self._greet()
            self.state = "talking"
            await self._stop.wait()
        except CallFailure as exc:
            if self.caller_left.is_set():
                self.finish(exc.reason)
            else:
                self.fail(exc.reason, exc.detail)
        except Exception as exc:
            log.exception("call %s: unexpected error", self.id)
            self.fail("internal_error", repr(exc))
        finally:
            await self._teardown()
            if self._consumer is not None:
                self._consumer.cancel()

    async def _choose(self) -> None:
        """Per-call choices: Stasis key=value arguments and ARIBOT_* channel variables."""
        variables = {k: v for k, v in self.channel.channelvars.items() if k in CHANNEL_VARIABLES}
        if not variables:  # not in ari.conf channelvars: ask (unset ones answer 404)
            replies = await asyncio.gather(*(self.ari.call("get_variable", channelId=self.id, variable=name)
                                             for name in CHANNEL_VARIABLES), return_exceptions=True)
            variables = {name: str(reply.get("value", "")) for name, reply in zip(CHANNEL_VARIABLES, replies)
                         if isinstance(reply, dict)}
        self.choices = resolve(self.settings, self.args, variables, default_extension=self.extension,
                               modes=self.app.activation_modes, tools=self.app.tools.tools, call_id=self.id,
                               overrides=self.app.overrides, backends=self.app.backends, dialled=self.channel.exten)
        if self.choices.sources:
            log.info("call %s: per-call choices %s", self.id,
                     {k: f"{getattr(self.choices, k)!r} ({src})" for k, src in self.choices.sources.items()})
        choices = self.choices
        setup = SessionSetup(audio_format=self.settings.rtp.format, instructions=choices.instructions,
                             voice=choices.voice, tools=self.app.tools.definitions(choices.tools),
                             turn_detection=choices.turn_detection)
        backend_type = self.app.backends[choices.backend]
        self.conversation = Conversation(self, backend_type, setup)
        if not backend_type.capabilities.turn_events:   # no SpeechStopped dates the caller's last word
            self._voice_fmt = self.settings.rtp.format

    async def _run_feature(self, name: str, factory: Any) -> None:
        try:
            await factory(self).run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("call %s: call feature %s failed; the call goes on without it", self.id, name)

    async def _answer_and_bridge(self) -> None:
        try:
            await self.ari.call("answer", channelId=self.id)
        except AriNotFound:
            self.caller_left.set()
            raise CallFailure("caller_hangup", "caller left before answer")
        except AriError as exc:
            raise CallFailure("answer_failed", str(exc))
        self.state = "answered"
        self.emit(ev.CallAnswered(call_id=self.id))
        rtp = self.settings.rtp
        try:
            await self.ari.call("create_bridge", bridgeId=self.bridge_id, type="mixing", name=f"aribot-{self.id}")
            await self.app.ports.open(self.endpoint)
            host = rtp.advertise_host or rtp.host
            self.app.register_leg(self)
            reply = await self.ari.call(
                "external_media", app=self.settings.ari.app, channelId=self.leg_id,
                external_host=f"{host}:{self.endpoint.local[1]}", encapsulation="rtp", transport="udp",
                format=rtp.format, direction="both", data=self.id)
            variables = (reply or {}).get("channelvars") or {}
            self.endpoint.connect(variables["UNICASTRTP_LOCAL_ADDRESS"], variables["UNICASTRTP_LOCAL_PORT"])
            await asyncio.wait_for(asyncio.shield(self._leg_started), self.settings.ari.leg_start_timeout)
            await self.ari.call("add_channel", bridgeId=self.bridge_id, channel=f"{self.id},{self.leg_id}")
        except (AriError, OSError, KeyError, ValueError, asyncio.TimeoutError) as exc:
            if self.caller_left.is_set():
                raise CallFailure("caller_hangup", "caller left during set-up")
            what = (f"ExternalMedia leg did not enter Stasis within {self.settings.ari.leg_start_timeout:g} s "
                    "(ari.leg_start_timeout)" if isinstance(exc, asyncio.TimeoutError) else repr(exc))
            raise CallFailure("media_setup_failed", what)
        self.pacer = Pacer(self.playout, RtpSender(self.endpoint.payload_type), self.endpoint, self.metrics,
                           idle_silence=rtp.idle_silence, on_first_frame=self._on_first_frame,
                           on_spurt_end=self._on_spurt_end,
                           **(PACED_PLAYOUT if self.backend.capabilities.paced_output else {}))
        self._tap_pacer()
        self.pacer.start()
        self.pacer.kick()  # AI audio may have arrived before the media path existed
        self.state = "connected"
        local = f"{self.endpoint.local[0]}:{self.endpoint.local[1]}"
        self.emit(ev.MediaConnected(call_id=self.id, local=local, remote="%s:%s" % self.endpoint.remote))

    async def _prepare(self, mode: Any) -> None:
        """The mode's optional prepare(), before the greeting (an Asterisk playback would delay
        e.g. TALK_DETECT); a failure is logged and the call goes on."""
        if hasattr(mode, "prepare"):
            try:
                await mode.prepare()
            except Exception:
                log.exception("call %s: activation mode %s failed to prepare; going on", self.id, self.mode_name)

    async def _run_prelude(self, prelude: Callable[[], Awaitable[Any]]) -> None:
        try:
            await prelude()
        except Exception:
            log.exception("call %s: a plugin's step before listening failed; the call goes on", self.id)

    async def _activate(self, mode: Any) -> None:
        try:
            await mode.run(self.gate)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("call %s: activation mode %s failed; opening the gate so the caller is heard",
                          self.id, self.mode_name)
            self.gate.open(f"mode failed: {exc!r}")

    async def play_prompt(self, media: list[str], what: str, until: tuple[asyncio.Event, ...] = ()) -> bool:
        """Play media to the caller (e.g. a filler while the AI reconnects); see ``_play``."""
        return await self._play(media, what, until)

    async def _play(self, media: list[str], what: str, until: tuple[asyncio.Event, ...] = ()) -> bool:
        """Play media to the caller and wait until it finished (False if it failed, did not start,
        the caller left, or one of ``until`` was set first)."""
        playback = _Playback(new_id("aribot-pb"))
        self._playbacks[playback.id] = playback
        stops = [asyncio.ensure_future(e.wait()) for e in (self.caller_left, *until)]
        try:
            await self.ari.call("play", channelId=self.id, playbackId=playback.id, media=media)
            await asyncio.wait({playback.started, playback.done, *stops}, timeout=PLAYBACK_START_S,
                               return_when=asyncio.FIRST_COMPLETED)
            if playback.started.done() and not playback.done.done():
                await asyncio.wait({playback.done, *stops}, timeout=PLAYBACK_LIMIT_S,
                                   return_when=asyncio.FIRST_COMPLETED)
            ok = playback.done.done() and playback.done.result()
            if not playback.done.done() and not self.caller_left.is_set():
                await self._delete("stop_playback", playbackId=playback.id)
            if not ok and not self.caller_left.is_set() and not any(e.is_set() for e in until):
                how = "did not play to the end" if playback.started.done() else \
                    f"did not start within {PLAYBACK_START_S:g} s"
                log.warning("call %s: %s %s %s; going on", self.id, what, media, how)
            return ok
        except AriError as exc:
            if not self.caller_left.is_set():
                log.warning("call %s: could not play %s %s (%s); going on without it", self.id, what, media, exc)
            return False
        finally:
            for stop in stops:
                stop.cancel()
            self._playbacks.pop(playback.id, None)

    async def _consume(self) -> None:
        while True:
            event = await self._events.get()
            log.debug("call %s: ARI %s %s", self.id, event.type, event.channel_id or event.playback_id or "")
            try:
                self._on_ari_event(event)
            except Exception as exc:  # one event costs only itself: one line, the call goes on
                log.error("call %s: handling ARI %s for channel %s failed (%r); ignored, the call goes on", self.id,
                          shown(event.type), shown(event.channel_id or event.playback_id or "-"), exc,
                          exc_info=log.isEnabledFor(logging.DEBUG))

    def _on_ari_event(self, event: AriEvent) -> None:
        kind, channel_id = event.type, event.channel_id
        if kind == "StasisStart" and channel_id == self.leg_id:
            if not self._leg_started.done():
                self._leg_started.set_result(None)
        elif kind == "StasisEnd" and channel_id == self.id:
            self.caller_left.set()
            self.finish("caller_hangup")
        elif kind == "StasisEnd" and channel_id == self.leg_id and not self.ending:
            self.fail("media_leg_lost", "the ExternalMedia channel left Stasis")
        elif kind in ("PlaybackStarted", "PlaybackFinished", "PlaybackFailed"):
            playback = self._playbacks.get(event.playback_id or "")
            if playback is not None and not playback.started.done():
                playback.started.set_result(None)
            if playback is not None and kind != "PlaybackStarted" and not playback.done.done():
                playback.done.set_result(kind == "PlaybackFinished" and event.playback_state != "failed")
        elif kind == "ChannelEnteredBridge" and channel_id == self.id:
            self._unbridged.clear()
        elif kind == "ChannelLeftBridge" and channel_id == self.id:
            self._unbridged.set()
        elif kind == "ChannelTalkingStarted" and channel_id == self.id:
            self.talking = True
            self.emit(ev.TalkingStarted(call_id=self.id))
        elif kind == "ChannelTalkingFinished" and channel_id == self.id:
            self.talking = False
            self.emit(ev.TalkingFinished(call_id=self.id, duration_ms=event.number("duration")))
        elif kind == "ChannelDtmfReceived" and channel_id == self.id and event.digit:  # (a malformed one: "")
            self.emit(ev.DtmfReceived(call_id=self.id, digit=event.digit, duration_ms=event.number("duration_ms"),
                                      masked=self.settings.get("dtmf.mask", True) is not False))

    async def _teardown(self) -> None:
        self.ending = True
        self.state = "ending"
        if self.pacer is not None:
            self.pacer.stop()
        for listener in list(self.listeners):
            listener.close()  # before CallEnded: a listen session ends inside its call
        for task in list(self._tasks):
            task.cancel()
        self.app.bus.disconnect_owner(self.owner)
        if self.conversation is not None:
            await self.conversation.close()
        await self._delete("hangup", channelId=self.leg_id)
        await self._delete("destroy_bridge", bridgeId=self.bridge_id)
        self.app.ports.release(self.endpoint)
        if not self.caller_left.is_set() and self._end_action == "keep" and not self.failed:
            await self.set_variable("ARIBOT_END_REASON", self.end_reason)   # handed off: the caller stays
        elif not self.caller_left.is_set():
            # a play issued while the caller is still leaving the bridge can be lost in Asterisk
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._unbridged.wait(), 1.0)
            if self.failed:
                await self._play(list(self.settings.call.fallback_prompt), "fallback prompt")
            action = self.settings.call.on_failure if self.failed else (self._end_action or "hangup")
            await self.set_variable("ARIBOT_END_REASON", self.end_reason)
            await self._leave(action, self._continue_target)
        self.state = "ended"
        duration = time.time() - self.started_at
        conversation = self.conversation
        stats = {"rtp_in": self.endpoint.rx_packets, "rtp_out": self.endpoint.tx_packets,
                 "ari_events_dropped": self.dropped_events, "ai_audio_dropped_bytes": self.dropped_ai_audio,
                 "rtp_dropped": dict(self.endpoint.dropped), "rtp_ssrc_changes": self.endpoint.ssrc_changes,
                 "input_held_frames": self.input_held_frames,
                 **(conversation.backend.stats if conversation else {}),
                 "rollovers": conversation.rollovers if conversation else 0,
                 "backend": conversation.type.name if conversation else "",
                 "metrics": self.metrics.summary(histograms=True)}
        log.info("call %s: ended (%s) after %.1f s; rtp in/out %d/%d, dropped %s", self.id, self.end_reason,
                 duration, self.endpoint.rx_packets, self.endpoint.tx_packets, dict(self.endpoint.dropped) or "none")
        self.app.forget(self)
        self.emit(ev.CallEnded(call_id=self.id, reason=self.end_reason, duration_s=duration, stats=stats))
        self.done.set()

    async def run_overflow(self, live: int) -> None:
        """A call beyond ``[call] max_concurrent``: answered, the overload prompt, then hung up or
        continued in the dialplan (``on_overload``); never half-served. It is still a call on the
        bus (started, ended with reason "overload"), so the history and the dashboard show it."""
        cfg = self.settings.call
        self.state = "refusing"
        self.finish("overload", cfg.on_overload)  # decided: a later StasisEnd does not rename it
        self.emit(ev.CallStarted(call_id=self.id, channel_id=self.id, caller_number=self.caller_number,
                                 caller_name=self.caller_name, extension=self.extension, args=tuple(self.args)))
        log.warning("call %s: over capacity (%d live calls, [call] max_concurrent = %d); playing the overload "
                    "prompt, then %s", self.id, live, cfg.max_concurrent,
                    "continuing in the dialplan" if cfg.on_overload == "continue" else "hanging up")
        self._consumer = asyncio.ensure_future(self._consume())
        try:
            await self.ari.call("answer", channelId=self.id)
            await self._play(list(cfg.overload_prompt), "overload prompt")
        except AriNotFound:
            self.caller_left.set()
        except AriError as exc:
            log.warning("call %s: could not answer the over-capacity call (%s)", self.id, exc)
        try:
            if not self.caller_left.is_set():
                await self.set_variable("ARIBOT_END_REASON", self.end_reason)
                await self._leave(cfg.on_overload)
        finally:
            self._consumer.cancel()
            self.state = "ended"
            self.app.forget(self)
            self.emit(ev.CallEnded(call_id=self.id, reason=self.end_reason, duration_s=time.time() - self.started_at,
                                   stats={}))
            self.done.set()

    # --- bridge moves (a warm transfer) ---------------------------------------------------------
    async def move_out(self, channel_id: str = "") -> None:
        """Take a channel (the caller by default) out of the call's bridge: it neither hears the
        AI nor is heard by it any more (it stays in Stasis). Raises AriError."""
        await self.ari.call("remove_channel", bridgeId=self.bridge_id, channel=channel_id or self.id)

    async def move_in(self, channel_id: str = "") -> None:
        """Put a channel (the caller by default) into the call's bridge, where the AI hears it
        and is heard. Raises AriError."""
        await self.ari.call("add_channel", bridgeId=self.bridge_id, channel=channel_id or self.id)

    def hand_off(self, reason: str) -> None:
        """End aribot's part of the call (media leg, bridge, AI session) but leave the caller where
        it is, in Stasis: the plugin that calls this (a warm transfer that bridged the caller to
        its target) owns the caller from now on. ``ARIBOT_END_REASON`` is still set."""
        self.finish(reason, "keep")

    async def _delete(self, op: str, **ids: str) -> None:
        try:
            await self.ari.call(op, **ids)
        except AriNotFound:
            log.debug("call %s: cleanup %s %s: already gone in Asterisk (404), nothing to delete", self.id, op, ids)
        except AriError as exc:
            log.warning("call %s: cleanup %s %s failed (%s); it may be left in Asterisk", self.id, op, ids, exc)

    async def _leave(self, action: str, target: dict[str, Any] | None = None) -> None:
        """Hang up the caller or send it on in the dialplan, then wait for its StasisEnd."""
        cfg = self.settings.call
        try:
            if action == "continue":
                params: dict[str, Any] = {}
                if target is not None:
                    params = {k: v for k, v in target.items() if v}
                elif cfg.continue_context or cfg.continue_extension:
                    params = {"context": cfg.continue_context or None, "extension": cfg.continue_extension or None,
                              "priority": cfg.continue_priority or 1}
                await self.ari.call("continue_in_dialplan", channelId=self.id, **params)
            else:
                await self.ari.call("hangup", channelId=self.id, reason="normal")
        except AriNotFound:
            log.info("call %s: %s of the caller: already gone in Asterisk (404), nothing left to do", self.id, action)
            self.caller_left.set()
            return
        except AriError as exc:
            log.warning("call %s: %s of the caller failed (%s)", self.id, action, exc)
        try:
            await asyncio.wait_for(self.caller_left.wait(), self.settings.call.cleanup_timeout)
        except asyncio.TimeoutError:
            log.warning("call %s: no StasisEnd from Asterisk %.1f s after %s; cleaned up anyway",
                        self.id, self.settings.call.cleanup_timeout, action)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-friendly view of the call for the HTTP API and the dashboard."""
        return {"id": self.id, "caller_number": self.caller_number, "caller_name": self.caller_name,
                "extension": self.extension, "state": self.state, "mode": self.mode_name,
                "started_at": self.started_at, "gate_open": self.gate.is_open,
                "greeting_active": self.greeting_active, "talking": self.talking}
