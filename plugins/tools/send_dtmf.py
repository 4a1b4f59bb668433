"""Tool ``send_dtmf``: the AI presses keys on the caller's line (e.g. to navigate an IVR),
limited to the keys and length the settings allow."""

from __future__ import annotations

from aribot import Setting, ToolContext, as_str, hookimpl, number


async def send_dtmf(digits: str, ctx: ToolContext | None = None) -> dict:
    """Send keypad tones (DTMF) to the caller, e.g. to answer a phone menu.

    Args:
        digits: the keys to press, e.g. "1" or "1234#"
    """
    assert ctx is not None
    config = ctx.config()
    allowed = str(config.get("allowed", "0123456789*#"))
    limit = int(config.get("max_digits", 20))
    bad = sorted(set(digits) - set(allowed))
    if not digits or bad or len(digits) > limit:
        raise ValueError(f"digits must be 1 to {limit} of {allowed!r}" + (f"; {''.join(bad)!r} not allowed" if bad else ""))
    await ctx.send_dtmf(digits)
    return {"ok": True, "sent": digits}


@hookimpl
def register_tools(register):
    register(send_dtmf)


@hookimpl
def register_settings(register):
    register(Setting("tools.send_dtmf.allowed", "0123456789*#", as_str, "the keys the AI may send, e.g. 0123456789*#",
                     "keys the AI may send to the caller"))
    register(Setting("tools.send_dtmf.max_digits", 20, number(int, 1, 100), "an integer 1..100",
                     "longest digit string per call of the tool"))
