"""Activation mode ``immediate``: caller audio flows to the AI from the moment of answer, the
greeting included; a caller who talks over the greeting stops it."""

from __future__ import annotations

from typing import Any

from aribot import TalkingStarted, hookimpl
from aribot.core.controls import is_local_media


class Immediate:
    def __init__(self, call: Any) -> None:
        self.call = call
        self.talk_detect = False

    async def prepare(self) -> None:
        """An Asterisk-played greeting suspends the caller's media, so the AI cannot hear talk
        over it, and a backend without turn events (GPT-Live) does not say when the caller talks
        over an aribot-played one: TALK_DETECT does, for as long as the greeting lasts (set before
        it starts)."""
        greeting = self.call.choices.greeting
        if greeting and (not is_local_media(greeting) or not self.call.backend.capabilities.turn_events):
            cfg = self.call.settings.activation
            self.talk_detect = await self.call.set_talk_detect(cfg.vad_silence_ms, cfg.vad_talk_threshold)

    async def run(self, gate: Any) -> None:
        gate.open("answered")
        if self.talk_detect:
            self.call.on(TalkingStarted, lambda _event: self.call.spawn(self.call.stop_greeting()))
            await self.call.greeting_done.wait()
            await self.call.remove_talk_detect()


@hookimpl
def register_activation_modes(register):
    register("immediate", Immediate)
