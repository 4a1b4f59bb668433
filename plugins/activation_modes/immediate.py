"""Activation mode ``immediate``: caller audio flows to the AI from the moment of answer."""

from __future__ import annotations

from typing import Any

from core import hookimpl


class Immediate:
    """Opens the gate at once; the Realtime server's turn detection runs the conversation."""

    def __init__(self, call: Any) -> None:
        self.call = call

    async def run(self, gate: Any) -> None:
        gate.open("answered")


@hookimpl
def register_activation_modes(register):
    register("immediate", Immediate)
