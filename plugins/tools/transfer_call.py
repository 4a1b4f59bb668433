"""Tool ``transfer_call``: continue the caller in the dialplan at an extension the settings allow
(``[tools.transfer_call] allowed``); a target outside the list is refused and the model is told."""

from __future__ import annotations

from aribot import Setting, ToolContext, ToolResult, as_str, hookimpl, str_list
from aribot.core.controls import transfer_targets


async def transfer_call(extension: str, context: str = "", ctx: ToolContext | None = None) -> ToolResult:
    """Transfer the caller to another extension (a person or a department).

    Args:
        extension: the extension to transfer to, one of those you were told are available
        context: the dialplan context of that extension; leave empty for the usual one
    """
    assert ctx is not None
    config = ctx.config()
    target_context = context or str(config.get("context", "") or "")
    targets = transfer_targets(ctx.settings)
    if (extension, target_context) not in targets:
        allowed = ", ".join(sorted(targets.values())) or "none"
        raise ValueError(f"transfers to {extension}{'@' + target_context if target_context else ''} are not "
                         f"allowed; allowed targets: {allowed}")
    announcement = "" if ctx.ai_spoke else str(config.get("announcement", "") or "")
    ctx.after(ctx.transfer(target_context or ctx.dialplan_context, extension, 1, announcement))
    return ToolResult({"ok": True, "transferred_to": extension}, respond=False)


@hookimpl
def register_tools(register):
    register(transfer_call)


@hookimpl
def register_settings(register):
    register(Setting("tools.transfer_call.context", "", as_str, "a dialplan context or empty",
                     "dialplan context for transfers; empty = the caller's own context"))
    register(Setting("tools.transfer_call.allowed", [], str_list, 'a list of "ext" or "ext@context"',
                     'extensions the AI may transfer to, "ext" or "ext@context"; empty = none'))
    register(Setting("tools.transfer_call.announcement", "", as_str, "instructions for the AI, or empty",
                     "instructions for what the AI says before transferring; empty = nothing more"))
