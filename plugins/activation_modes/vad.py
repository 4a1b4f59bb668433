"""Activation mode ``vad``: Asterisk's TALK_DETECT on the caller decides when caller audio starts
flowing to the AI (reference/asterisk-ari.md §1.6; arguments in Asterisk's order: silence ms,
then energy threshold — the quickstart had them reversed).

- ``vadMode``: open at the first talk after the initial delays, even during the greeting, which
  then stops.
- ``afterPrompt``: talk during the greeting does not interrupt it; open at the first talk after
  it, or at once if the caller is talking when it ends; no talk within the maximum wait → the
  no-input action (``NoInput`` event), and keep waiting.

The pre-roll (``[activation] pre_roll_ms``) sends the audio just before the talk event first, so
the first syllable reaches the AI. TALK_DETECT is removed once the stream is open.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aribot import NoInput, Setting, TalkingStarted, choice, hookimpl, number

log = logging.getLogger("aribot.activation.vad")
SUBMODES = {"vadmode": "vadMode", "afterprompt": "afterPrompt"}


def submode(value: Any) -> str:
    return SUBMODES[choice(*SUBMODES)(value)]


class Vad:
    def __init__(self, call: Any) -> None:
        self.call = call
        self.cfg = call.settings.activation
        self.talk_detect = False

    async def prepare(self) -> None:
        """TALK_DETECT before the greeting: ARI waits for an Asterisk playback to end before it
        sets a channel variable."""
        self.talk_detect = await self.call.set_talk_detect(self.cfg.vad_silence_ms, self.cfg.vad_talk_threshold)

    async def run(self, gate: Any) -> None:
        call = self.call
        if not self.talk_detect:
            log.warning("call %s: TALK_DETECT could not be set; listening from now on instead", call.id)
            gate.open("TALK_DETECT unavailable")
            return
        if self.cfg.vad_submode == "vadMode":
            reason = await self._vad_mode()
        else:
            reason = await self._after_prompt()
        gate.open(reason)
        await call.remove_talk_detect()

    async def _vad_mode(self) -> str:
        call = self.call
        delay = self.cfg.vad_initial_silence_delay + self.cfg.vad_activation_delay
        if delay > 0:
            await asyncio.sleep(delay)
        if not call.talking:
            await call.next_event(TalkingStarted)
        await call.stop_greeting()
        return "talk (vadMode)"

    async def _after_prompt(self) -> str:
        call = self.call
        await call.greeting_done.wait()
        if call.talking:
            return "talking when the greeting ended (afterPrompt)"
        wait = self.cfg.vad_max_wait_after_prompt or None
        while await call.next_event(TalkingStarted, timeout=wait) is None:
            log.info("call %s: no talk %.1f s after the greeting; no-input action", call.id, wait)
            call.emit(NoInput(call_id=call.id, reason="no talk after the greeting"))
        return "talk after the greeting (afterPrompt)"


@hookimpl
def register_activation_modes(register):
    register("vad", Vad)


@hookimpl
def register_settings(register):
    register(Setting("activation.vad_submode", "afterPrompt", submode, "vadMode or afterPrompt",
                     "vad: afterPrompt (the greeting plays out) or vadMode (talk interrupts it) (VAD_RECOG_ACTIVATION_MODE)",
                     legacy=("VAD_RECOG_ACTIVATION_MODE", "APP_APPRECOGNITION_VADRECOGACTIVATION")))
    register(Setting("activation.vad_initial_silence_delay", 0.0, number(float, 0, 600), "seconds 0..600",
                     "vadMode: seconds after answer before talk counts (VAD_INITIAL_SILENCE_DELAY_SECONDS)",
                     legacy=("VAD_INITIAL_SILENCE_DELAY_SECONDS", "APP_APPRECOGNITION_VADINITIALSILENCEDELAYSECONDS")))
    register(Setting("activation.vad_activation_delay", 0.0, number(float, 0, 600), "seconds 0..600",
                     "vadMode: further seconds before talk counts (VAD_ACTIVATION_DELAY_SECONDS)",
                     legacy=("VAD_ACTIVATION_DELAY_SECONDS",)))
    register(Setting("activation.vad_max_wait_after_prompt", 5.0, number(float, 0, 600), "seconds 0..600 (0 = no limit)",
                     "afterPrompt: no talk this long after the greeting → no-input action; 0 = wait "
                     "(VAD_MAX_WAIT_AFTER_PROMPT_SECONDS)",
                     legacy=("VAD_MAX_WAIT_AFTER_PROMPT_SECONDS", "APP_APPRECOGNITION_VADMAXWAITAFTERPROMPTSECONDS")))
