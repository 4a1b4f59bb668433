"""Tool ``end_call``: the AI ends the call; the caller hears a goodbye to its end first."""

from __future__ import annotations

from aribot import Setting, ToolContext, ToolResult, as_str, hookimpl


async def end_call(reason: str = "", ctx: ToolContext | None = None) -> ToolResult:
    """End the phone call. Use it when the conversation is over or the caller asks to hang up.

    Args:
        reason: why the call ends, in a few words
    """
    assert ctx is not None
    goodbye = "" if ctx.ai_spoke else ctx.config().get("goodbye", "")
    ctx.after(ctx.hangup("end_call" + (f": {reason}" if reason else ""), goodbye=goodbye))
    return ToolResult({"ok": True, "note": "The call is ending; do not say anything more."}, respond=False)


@hookimpl
def register_tools(register):
    register(end_call)


@hookimpl
def register_settings(register):
    register(Setting("tools.end_call.goodbye", "Say a short, polite goodbye.", as_str,
                     "instructions for the goodbye, or empty",
                     "instructions for the goodbye when the AI ends the call without having said one"))
