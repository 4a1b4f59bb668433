"""A third party's activation mode: listen one second after the call is answered."""

import asyncio

import aribot


class AfterOneSecond:
    def __init__(self, call: aribot.Call) -> None:
        self.call = call

    async def run(self, gate: aribot.ActivationGate) -> None:
        await asyncio.sleep(1.0)
        gate.open("one second after answer")


@aribot.hookimpl
def register_activation_modes(register):
    register("after_one_second", AfterOneSecond)
