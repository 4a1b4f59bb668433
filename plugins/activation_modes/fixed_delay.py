"""Activation mode ``fixed_delay``: caller audio flows to the AI a fixed delay after the greeting
ends (or after answer when there is no greeting); the pre-roll covers the gap."""

from __future__ import annotations

import asyncio
from typing import Any

from aribot import Setting, hookimpl, number


class FixedDelay:
    def __init__(self, call: Any) -> None:
        self.call = call

    async def run(self, gate: Any) -> None:
        await self.call.greeting_done.wait()
        await asyncio.sleep(self.call.settings.activation.fixed_delay)
        gate.open(f"{self.call.settings.activation.fixed_delay:g} s after the greeting")


@hookimpl
def register_activation_modes(register):
    register("fixed_delay", FixedDelay)


@hookimpl
def register_settings(register):
    register(Setting("activation.fixed_delay", 0.5, number(float, 0, 60), "seconds 0..60",
                     "fixed_delay: seconds after the greeting ends (or answer) before listening (BARGE_IN_DELAY_SECONDS)",
                     legacy=("BARGE_IN_DELAY_SECONDS",)))
