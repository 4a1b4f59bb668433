"""Call timers (each 0 = off; defaults in settings.toml ``[timers]``):

- ``no_speech_timeout``: while aribot listens and the AI is silent, no caller speech for this long
  → the no-input action: the AI re-prompts ("are you still there?") up to ``no_speech_reprompts``
  times, then says goodbye and the call ends. A ``NoInput`` event (e.g. from the vad mode's
  maximum wait after the greeting) triggers the same action.
- ``speech_complete_timeout``: one caller utterance longer than this is committed and answered
  (caller audio is held while the AI answers, so a never-ending noise cannot starve the call).
- ``max_call_duration``: the AI says goodbye and the call ends after the goodbye has played.
The AI session's own start-up limit is ``[ai] connect_timeout`` (core). With a backend that reports no
turn events (GPT-Live) the caller's transcript counts as speech and ``speech_complete_timeout`` never fires.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aribot import Setting, as_str, hookimpl, number
from aribot.core import events as ev

log = logging.getLogger("aribot.timers")
ACTIVITY = (ev.SpeechStarted, ev.SpeechStopped, ev.TalkingStarted, ev.TalkingFinished, ev.ResponseStarted,
            ev.ResponseDone, ev.BotAudioStarted, ev.BotAudioStopped, ev.ActivationOpened, ev.TranscriptDelta,
            ev.TransferProgress)


async def first_of(*events: asyncio.Event, timeout: float | None = None) -> None:
    """Wait until one of ``events`` is set (or ``timeout``); the waiters never outlive the call."""
    waiters = {asyncio.ensure_future(e.wait()) for e in events}
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


class CallTimers:
    """The three timers of one call."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.cfg = call.settings.timers
        self.caller_speaking = False
        self.last_activity = time.monotonic()
        self.activity = asyncio.Event()
        self.no_input = asyncio.Event()
        self.reprompts = 0

    async def run(self) -> None:
        call = self.call
        for kind in ACTIVITY:
            call.on(kind, self._on_activity)
        call.on(ev.NoInput, lambda _e: self.no_input.set())
        tasks = []
        if self.cfg.max_call_duration:
            tasks.append(self._max_duration())
        if self.cfg.speech_complete_timeout:
            tasks.append(self._speech_complete())
        if self.cfg.no_speech_timeout:
            tasks.append(self._no_speech())
        await asyncio.gather(*tasks)

    def _on_activity(self, event: ev.Event) -> None:
        if isinstance(event, (ev.SpeechStarted, ev.TalkingStarted)):
            self.caller_speaking = True
            self.reprompts = 0
        elif isinstance(event, (ev.SpeechStopped, ev.TalkingFinished)):
            self.caller_speaking = False
        self.last_activity = time.monotonic()
        self.activity.set()

    def _fired(self, timer: str, action: str) -> None:
        log.info("call %s: %s timer fired; %s", self.call.id, timer, action)
        self.call.emit(ev.TimerFired(call_id=self.call.id, timer=timer, action=action))

    async def _max_duration(self) -> None:
        await asyncio.sleep(self.cfg.max_call_duration)
        self._fired("max_duration", "the AI says goodbye, then the call ends")
        await self.call.end("max_duration", goodbye=self.cfg.max_duration_goodbye)

    async def _speech_complete(self) -> None:
        call = self.call
        while True:
            await call.next_event(ev.SpeechStarted)
            stopped = await call.next_event(ev.SpeechStopped, timeout=self.cfg.speech_complete_timeout)
            if stopped is not None:
                continue
            self._fired("speech_complete", "the utterance is committed and answered")
            call.hold_input(True)
            try:
                answered = await call.end_turn()
                await answered
                await call.wait_playout()
            finally:
                call.hold_input(False)

    async def _no_speech(self) -> None:
        call = self.call
        await first_of(call.gate.opened, self.no_input)
        timeout = self.cfg.no_speech_timeout
        while True:
            self.activity.clear()
            if self.no_input.is_set():
                self.no_input.clear()
            elif call.bot_speaking or self.caller_speaking or call.input_held:
                # the AI is not listening (e.g. the caller is on hold during a warm transfer): no
                # silence of the caller's counts until something happens again
                await self.activity.wait()
                continue
            else:
                remaining = self.last_activity + timeout - time.monotonic()
                if remaining > 0:
                    await first_of(self.activity, self.no_input, timeout=remaining)
                    continue
            if self.reprompts >= self.cfg.no_speech_reprompts:
                self._fired("no_speech", "the AI says goodbye, then the call ends")
                await call.end("no_input", goodbye=self.cfg.no_speech_goodbye)
                return
            self.reprompts += 1
            self._fired("no_speech", f"re-prompt {self.reprompts} of {self.cfg.no_speech_reprompts}")
            self.last_activity = time.monotonic()
            await call.ask_ai(self.cfg.no_speech_prompt)


@hookimpl
def register_call_features(register):
    register("timers", CallTimers)


@hookimpl
def register_settings(register):
    seconds = "seconds 0..86400 (0 = off)"
    register(Setting("timers.no_speech_timeout", 10.0, number(float, 0, 86400), seconds,
                     "AI silent and no caller speech this long → the AI re-prompts (NO_SPEECH_BEGIN_TIMEOUT_SECONDS); 0 = off",
                     legacy=("NO_SPEECH_BEGIN_TIMEOUT_SECONDS",)))
    register(Setting("timers.no_speech_reprompts", 2, number(int, 0, 20), "a count 0..20",
                     "re-prompts before the call is ended politely"))
    register(Setting("timers.no_speech_prompt",
                     "The caller has said nothing for a while. Briefly ask whether they are still there.",
                     as_str, "instructions for the AI", "instructions for a re-prompt"))
    register(Setting("timers.no_speech_goodbye", "The caller is not answering. Say a short, polite goodbye.",
                     as_str, "instructions for the AI", "instructions for the last words after the re-prompts"))
    register(Setting("timers.speech_complete_timeout", 20.0, number(float, 0, 86400), seconds,
                     "one caller utterance longer than this is cut and answered (SPEECH_COMPLETE_TIMEOUT_SECONDS); 0 = off",
                     legacy=("SPEECH_COMPLETE_TIMEOUT_SECONDS", "SPEECH_END_SILENCE_TIMEOUT_SECONDS")))
    register(Setting("timers.max_call_duration", 3300.0, number(float, 0, 86400), seconds,
                     "seconds; then the AI says goodbye and the call ends (MAX_CALL_DURATION_SECONDS); 0 = off",
                     legacy=("MAX_CALL_DURATION_SECONDS", "MAX_RECOGNITION_DURATION_SECONDS")))
    register(Setting("timers.max_duration_goodbye", "The call has reached its time limit. Say a short, polite goodbye.",
                     as_str, "instructions for the AI", "instructions for the goodbye"))
