"""Built-in DTMF handlers: what collected digits do (``[dtmf] handler``)."""

from __future__ import annotations

from typing import Any

from aribot import hookimpl


async def to_ai(call: Any, digits: str, reason: str) -> None:
    """The AI is told what the caller typed and answers."""
    typed = f"typed {' '.join(digits)} on the keypad" if digits else "pressed the end key without digits"
    await call.tell_ai(f"[keypad] The caller {typed}.")


async def dialplan(call: Any, digits: str, reason: str) -> None:
    """Leave Stasis and continue at the next dialplan priority, with DTMF_RESULT set."""
    call.finish("dtmf", action="continue", target={})


@hookimpl
def register_dtmf_handlers(register):
    register("to_ai", to_ai)
    register("dialplan", dialplan)
