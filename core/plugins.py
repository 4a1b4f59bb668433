"""Plugin manager: pluggy with entry-point group ``aribot``; built-ins come through aribot's own
entry points, blocked names (settings ``[plugins] disabled``) are never imported."""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import inspect
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import pluggy

from aribot.core import hookspecs
from aribot.core.events import Event, EventBus

log = logging.getLogger("aribot.plugins")
GROUP = "aribot"
OWN_DIST = "aribot"


class PluginError(RuntimeError):
    """A plugin could not be loaded or registered something invalid."""


@dataclass(frozen=True)
class PluginInfo:
    """What ``aribot plugins`` and the dashboard show about one plugin."""

    name: str
    module: str
    source: str  # "built-in" or "entry point (<dist>)"
    version: str
    enabled: bool
    hooks: tuple[str, ...]
    path: str = ""


class Plugins:
    """The loaded plugin manager plus the registries built from it."""

    def __init__(self, disabled: Iterable[str] = ()) -> None:
        """``disabled``: names from settings (unknown ones are reported)."""
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self._infos: dict[str, PluginInfo] = {}
        self._disabled_objects: dict[str, Any] = {}
        self._disabled = {name.strip() for name in disabled if name.strip()}
        for name in self._disabled:
            self.pm.set_blocked(name)

    # --- loading ---------------------------------------------------------------------------------
    def load_entry_points(self) -> None:
        """Import and register every non-blocked entry point of the group."""
        known: set[str] = set()
        for ep in sorted(importlib.metadata.entry_points(group=GROUP), key=_builtin_first):
            dist = ep.dist.name if ep.dist else "?"
            version = ep.dist.version if ep.dist else ""
            source = "built-in" if dist == OWN_DIST else f"entry point ({dist})"
            known.add(ep.name)
            if self.pm.is_blocked(ep.name) or self.pm.has_plugin(ep.name):
                self._infos.setdefault(ep.name, PluginInfo(ep.name, ep.value, source, version, False, ()))
                continue
            try:
                module = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {ep.name} ({ep.value}, from {dist}) failed to import: {exc!r}; "
                    f"fix it or add it to [plugins] disabled"
                ) from exc
            self.register(module, ep.name, source=source, version=version)
        for name in sorted(self._disabled - known):
            log.warning("[plugins] disabled names %r, but no installed plugin has that name; ignored", name)

    def load_folder(self, folder: str | Path) -> None:
        """Register every plugin module (``name.py``) and package (``name/__init__.py``) of a
        folder named in ``[plugins] paths``; the plugin's name is the file or folder name."""
        root = Path(folder).expanduser()
        if not root.is_dir():
            raise PluginError(f"[plugins] paths names {root}, which is not a folder")
        for entry in sorted(root.iterdir()):
            if entry.name.startswith(("_", ".")):
                continue
            if entry.suffix == ".py":
                name, spec = entry.stem, importlib.util.spec_from_file_location(f"aribot_folder.{entry.stem}", entry)
            elif (entry / "__init__.py").is_file():
                name = entry.name
                spec = importlib.util.spec_from_file_location(f"aribot_folder.{entry.name}", entry / "__init__.py",
                                                              submodule_search_locations=[str(entry)])
            else:
                continue
            if self.pm.is_blocked(name) or self.pm.has_plugin(name):
                self._infos.setdefault(name, PluginInfo(name, str(entry), f"folder ({root})", "", False, ()))
                continue
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as exc:
                sys.modules.pop(spec.name, None)
                raise PluginError(f"plugin {name} ({entry}) failed to import: {exc!r}; fix it or add it to "
                                  f"[plugins] disabled") from exc
            self.register(module, name, source=f"folder ({root})")

    def register(self, plugin: Any, name: str, *, source: str = "registered", version: str = "") -> None:
        """Register a plugin object (module or instance) unless its name is blocked."""
        if self.pm.register(plugin, name=name) is None:
            return
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(name=name)
            raise PluginError(f"plugin {name} implements an unknown hook: {exc}") from exc
        hooks = tuple(sorted(h.name for h in self.pm.get_hookcallers(plugin) or ()))
        path = getattr(plugin, "__file__", "") or ""
        module = getattr(plugin, "__name__", type(plugin).__name__)
        self._infos[name] = PluginInfo(name, module, source, version, True, hooks, path)

    def unregister(self, name: str) -> None:
        if self.pm.has_plugin(name):
            self.pm.unregister(name=name)
        self._infos.pop(name, None)

    def disable(self, name: str) -> None:
        """Unregister and block a plugin (its module stays imported; its hooks stop)."""
        info = self._infos.get(name)
        if info is None or not info.enabled:
            raise PluginError(f"no enabled plugin named {name!r}")
        plugin = self.pm.get_plugin(name)
        self.pm.set_blocked(name)
        self._disabled_objects[name] = plugin
        self._infos[name] = PluginInfo(name, info.module, info.source, info.version, False, (), info.path)

    def enable(self, name: str) -> None:
        """Unblock and register again a plugin disabled at start-up or at run time."""
        info = self._infos.get(name)
        if info is None or info.enabled:
            raise PluginError(f"no disabled plugin named {name!r}")
        self.pm.unblock(name)
        self._disabled.discard(name)
        plugin = self._disabled_objects.pop(name, None)
        if plugin is None and info.source.startswith("folder"):
            self.load_folder(info.source[len("folder ("):-1])
            return
        if plugin is None:  # blocked at start-up: never imported
            (entry_point,) = importlib.metadata.entry_points(group=GROUP, name=name)
            plugin = entry_point.load()
        self._infos.pop(name, None)
        self.register(plugin, name, source=info.source, version=info.version)

    def infos(self) -> list[PluginInfo]:
        return sorted(self._infos.values(), key=lambda info: (not info.enabled, info.name))

    # --- registries --------------------------------------------------------------------------------
    def _per_plugin(self, hook_name: str) -> Iterable[tuple[str, Callable[..., Any]]]:
        """(plugin name, impl function) for each implementation of a hook (llm's trick)."""
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            yield self.pm.get_name(impl.plugin) or "?", impl.function

    def implementations(self, hook_name: str) -> list[tuple[str, Callable[..., Any]]]:
        """(plugin name, function) of every enabled plugin's implementation of a hook."""
        return list(self._per_plugin(hook_name))

    def _named(self, hook_name: str, what: str) -> dict[str, tuple[str, Callable[..., Any]]]:
        """name → (owning plugin, object) for ``register(name, obj)`` hooks; names are
        case-insensitive and a name registered twice is an error."""
        found: dict[str, tuple[str, Callable[..., Any]]] = {}
        for owner, fn in self._per_plugin(hook_name):
            def register(name: str, obj: Callable[..., Any], _owner: str = owner) -> None:
                key = name.strip().lower()
                if key in found:
                    raise PluginError(f"{what} {key!r} is registered by both {found[key][0]} and {_owner}")
                found[key] = (_owner, obj)
            fn(register=register)
        return found

    def activation_modes(self) -> dict[str, tuple[str, Callable[..., Any]]]:
        """Mode name → (owning plugin, factory(call))."""
        return self._named("register_activation_modes", "activation mode")

    def call_features(self) -> dict[str, Callable[..., Any]]:
        """Per-call behaviours: name → factory(call)."""
        return {name: obj for name, (_owner, obj) in self._named("register_call_features", "call feature").items()}

    def dtmf_handlers(self) -> dict[str, Callable[..., Any]]:
        """What collected digits do: name → async handler(call, digits, reason)."""
        return {name: obj for name, (_owner, obj) in self._named("register_dtmf_handlers", "DTMF handler").items()}

    def backends(self) -> dict[str, Any]:
        """Speech backend name → BackendType; a name registered twice is an error."""
        found: dict[str, Any] = {}
        owners: dict[str, str] = {}
        for owner, fn in self._per_plugin("register_backends"):
            def register(backend: Any, _owner: str = owner) -> None:
                name = backend.name.strip().lower()
                if name in found:
                    raise PluginError(f"speech backend {name!r} is registered by both {owners[name]} and {_owner}")
                found[name], owners[name] = backend, _owner
            fn(register=register)
        return found

    def tools(self) -> list[tuple[str, Callable[..., Any]]]:
        """(owning plugin, function) for every registered tool."""
        found: list[tuple[str, Callable[..., Any]]] = []
        for owner, fn in self._per_plugin("register_tools"):
            fn(register=lambda function, _owner=owner: found.append((_owner, function)))
        return found

    def subscribe_handlers(self, bus: EventBus, only: str | None = None) -> None:
        """Connect every plugin's (or only one plugin's) event receivers, owned by its name."""
        for owner, fn in self._per_plugin("register_event_handlers"):
            if only is not None and owner != only:
                continue
            def subscribe(event_type: type[Event] | None, receiver: Callable[..., Any],
                          _owner: str = owner) -> None:
                bus.subscribe(event_type, receiver, owner=_owner)
            fn(subscribe=subscribe)

    def declared_settings(self) -> list[tuple[str, Any]]:
        """(owning plugin, Setting) of every setting the plugins declare; a key declared twice is
        an error."""
        found: dict[str, tuple[str, Any]] = {}
        for owner, fn in self._per_plugin("register_settings"):
            def register(setting: Any, _owner: str = owner) -> None:
                key = setting.key.lower()
                if key in found:
                    raise PluginError(f"setting {key} is declared by both {found[key][0]} and {_owner}")
                found[key] = (_owner, setting)
            fn(register=register)
        return list(found.values())

    async def acall(self, hook_name: str, only: str | None = None, **kwargs: Any) -> list[Any]:
        """Call a notification hook (of every plugin, or ``only`` one); await async impls; a
        failing impl is logged, not raised."""
        results: list[Any] = []
        for owner, fn in self._per_plugin(hook_name):
            if only is not None and owner != only:
                continue
            try:
                value = fn(**kwargs)
                if inspect.isawaitable(value):
                    value = await value
                results.append(value)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("plugin %s failed in %s; aribot goes on", owner, hook_name)
        return results


def _builtin_first(ep: importlib.metadata.EntryPoint) -> tuple[int, str]:
    return (0 if ep.dist and ep.dist.name == OWN_DIST else 1, ep.name)


def load_plugins(settings: Any) -> Plugins:
    """Build the plugin manager from settings: block disabled names, then load entry points."""
    plugins = Plugins(settings.plugins.disabled)
    plugins.load_entry_points()
    for folder in settings.plugins.paths:
        plugins.load_folder(folder)
    return plugins
