"""The plugin contract: every hook aribot calls. Registration hooks are sync; async work lives
on the registered objects. Documented in docs/plugins.md (a test keeps the two in step)."""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("aribot")
hookimpl = pluggy.HookimplMarker("aribot")


@hookspec
def register_activation_modes(register):
    """Register activation modes: call ``register(name, factory)``; ``factory(call)`` returns an
    object whose async ``run(gate)`` opens the caller-audio gate when the mode decides."""


@hookspec
def register_tools(register):
    """Register function tools the AI may call: call ``register(function)`` for each."""


@hookspec
def register_event_handlers(subscribe):
    """Subscribe to call events: call ``subscribe(EventClass, receiver)``; receivers may be async."""


@hookspec
def register_settings(register):
    """Declare the plugin's own settings: call ``register(aribot.Setting(key, default, parse, allowed,
    doc))`` for each key of its section(s); defaults, validation and settings.toml come from them."""


@hookspec
def register_routes(app):
    """Add routes to the aiohttp ``web.Application`` of aribot's HTTP API before it starts."""


@hookspec
def startup(app):
    """Called once when aribot has started (ARI connecting, HTTP up); may be async."""


@hookspec
def shutdown(app):
    """Called once when aribot stops, after live calls ended; may be async."""


@hookspec
def register_call_features(register):
    """Register per-call behaviours: call ``register(name, factory)``; for every call
    ``factory(call)`` returns an object whose async ``run()`` lasts the call (timers, DTMF …)."""


@hookspec
def register_dtmf_handlers(register):
    """Register what collected DTMF digits do: call ``register(name, handler)``; the async
    ``handler(call, digits, reason)`` runs for the handler chosen in ``[dtmf] handler``."""


@hookspec
def check_app(app):
    """Raise ``aribot.SettingsError`` if the plugin cannot work with what is registered now (e.g. a
    setting names a handler no plugin offers); called at start and after a plugin is switched."""


@hookspec
def register_backends(register):
    """Register speech backends: call ``register(aribot.BackendType(name, create, capabilities, …))``
    for each; ``[ai] backend`` chooses one by name (docs/backends.md)."""


@hookspec
def register_pages(register):
    """Add dashboard pages: call ``register(aribot.Page(path, title, build, order, menu))`` for each;
    the dashboard draws ``build(board, **params)`` at ``path`` and lists ``title`` in its menu."""
