"""aribot: answer Asterisk calls with a speech-to-speech AI. This module is the public plugin API.

A plugin is a module with functions marked ``@aribot.hookimpl`` (the hooks are listed in
docs/plugins.md), registered through the entry-point group ``aribot``::

    import aribot

    def opening_hours(day: str = "weekday") -> str:
        \"\"\"The shop's opening hours.\"\"\"
        return "9 to 18"

    @aribot.hookimpl
    def register_tools(register):
        register(opening_hours)

What a plugin may use is exported here, and only this is stable:

- ``hookimpl``: the marker for hook implementations.
- Settings a plugin declares (``register_settings``): ``Setting`` and the parsers ``as_bool``,
  ``as_str``, ``number``, ``choice``, ``str_list``, ``http_url``, ``ws_url``, ``media_list``;
  ``SettingsError`` for a value the plugin refuses.
- Tools (``register_tools``): ``ToolContext`` (a tool's view of its call), ``ToolResult``.
- Events a plugin may subscribe to (``register_event_handlers``): ``Event`` and every event class
  (``CallStarted``, ``Transcript``, ``ToolCalled``, ``DtmfReceived``, ``CallEnded`` …); ``event_types()``
  maps their wire names to the classes.
- The objects hooks receive: ``App`` (``startup``/``shutdown``), ``Call`` (activation modes and
  call features get it), ``ActivationGate`` (an activation mode's ``run(gate)``).
- Speech backends (``register_backends``): ``BackendType`` (what a plugin registers),
  ``SpeechBackend`` (one call's session: subclass it), ``BackendHost`` (what it may use of the
  call), ``Capabilities``, ``SessionSetup``, ``SessionChange``, ``SessionLost``,
  ``BackendUnavailable`` (docs/backends.md).
- Dashboard pages (``register_pages``): ``Page``.

Everything under ``aribot.core``, ``aribot.plugins`` and ``aribot.sandbox`` is internal and may
change between releases. Names are imported on first use, so ``import aribot`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from aribot.core.hookspecs import hookimpl

__version__ = "0.2.0"

_SETTINGS = ("Setting", "SettingsError", "as_bool", "as_str", "number", "choice", "str_list", "http_url",
             "ws_url", "media_list")
_EVENTS = ("Event", "event_types", "CallStarted", "CallAnswered", "MediaConnected", "BackendReady",
           "BackendRollover", "ActivationOpened", "SpeechStarted", "SpeechStopped", "TranscriptDelta",
           "Transcript", "ResponseStarted", "BotAudioStarted", "ResponseDone", "BargeIn", "ToolCalled",
           "ToolAwaitingAnswer", "ToolFinished", "DtmfReceived", "TalkingStarted", "TalkingFinished",
           "GreetingStarted", "GreetingFinished", "BotAudioStopped", "DtmfCollected", "NoInput", "TimerFired",
           "BackendError", "UsageUpdated", "CostUpdated", "ListenStarted", "ListenStopped",
           "TransferProgress", "OutboundOutcome", "CallEnded")
_BACKENDS = ("BackendType", "Capabilities", "SpeechBackend", "BackendHost", "SessionSetup", "SessionChange",
             "SessionLost", "BackendUnavailable")
# public name -> the internal module that defines it (imported when the name is first used)
_LAZY: dict[str, str] = {
    **{name: "aribot.core.settings" for name in _SETTINGS},
    **{name: "aribot.core.events" for name in _EVENTS},
    "ToolContext": "aribot.core.tools",
    "Page": "aribot.core.pages",
    "ToolResult": "aribot.core.tools",
    "App": "aribot.core.app",
    "Call": "aribot.core.call",
    "ActivationGate": "aribot.core.call",
    **{name: "aribot.core.backend" for name in _BACKENDS},
}

# literal, so tools see the public names (tests/unit/test_packaging.py keeps it equal to _LAZY's)
__all__ = ["__version__", "hookimpl", "Setting", "SettingsError", "as_bool", "as_str", "number", "choice",
           "str_list", "http_url", "ws_url", "media_list", "Event", "event_types", "CallStarted", "CallAnswered",
           "MediaConnected", "BackendReady", "BackendRollover", "ActivationOpened", "SpeechStarted",
           "SpeechStopped", "TranscriptDelta", "Transcript", "ResponseStarted", "BotAudioStarted", "ResponseDone",
           "BargeIn", "ToolCalled", "ToolAwaitingAnswer", "ToolFinished", "DtmfReceived", "TalkingStarted",
           "TalkingFinished", "GreetingStarted", "GreetingFinished", "BotAudioStopped", "DtmfCollected", "NoInput",
           "TimerFired", "BackendError", "UsageUpdated", "CostUpdated", "ListenStarted", "ListenStopped",
           "TransferProgress", "OutboundOutcome", "CallEnded",
           "ToolContext", "ToolResult", "App",
           "Call", "ActivationGate", "BackendType", "Capabilities", "SpeechBackend", "BackendHost", "SessionSetup",
           "SessionChange", "SessionLost", "BackendUnavailable", "Page"]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports on demand
    from aribot.core.app import App
    from aribot.core.backend import (
        BackendHost,
        BackendType,
        BackendUnavailable,
        Capabilities,
        SessionChange,
        SessionLost,
        SessionSetup,
        SpeechBackend,
    )
    from aribot.core.call import ActivationGate, Call
    from aribot.core.events import (
        ActivationOpened,
        BackendError,
        BackendReady,
        BackendRollover,
        BargeIn,
        BotAudioStarted,
        BotAudioStopped,
        CallAnswered,
        CallEnded,
        CallStarted,
        CostUpdated,
        DtmfCollected,
        DtmfReceived,
        Event,
        GreetingFinished,
        GreetingStarted,
        ListenStarted,
        ListenStopped,
        MediaConnected,
        NoInput,
        OutboundOutcome,
        ResponseDone,
        ResponseStarted,
        SpeechStarted,
        SpeechStopped,
        TalkingFinished,
        TalkingStarted,
        TimerFired,
        ToolAwaitingAnswer,
        ToolCalled,
        ToolFinished,
        Transcript,
        TranscriptDelta,
        TransferProgress,
        UsageUpdated,
        event_types,
    )
    from aribot.core.pages import Page
    from aribot.core.settings import (
        Setting,
        SettingsError,
        as_bool,
        as_str,
        choice,
        http_url,
        media_list,
        number,
        str_list,
        ws_url,
    )
    from aribot.core.tools import ToolContext, ToolResult


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'aribot' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
