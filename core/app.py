"""The running server: ARI connection, event routing by channel id, live calls, HTTP API,
plugin start-up/shut-down, and a clean stop that leaves nothing behind in Asterisk."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from aribot.core.ari import UNUSED_EVENTS, AriClient, AriError, AriEventStream, AriNotFound
from aribot.core.ari_events import AriEvent, AriEventError, parse_event, shown
from aribot.core.call import Call
from aribot.core.defaults import CORE_SETTINGS
from aribot.core.events import EventBus
from aribot.core.plugins import PluginError, Plugins, load_plugins
from aribot.core.rtp import PortPool
from aribot.core.settings import SettingsError, data_dir, load_settings, unknown_keys
from aribot.core.tools import ToolRegistry

log = logging.getLogger("aribot.app")
# First Stasis argument of a channel aribot originates into its own app for a plugin (a warm
# transfer's target): never a new call. Its StasisStart goes to whoever watches its id
# (App.watch); one nobody watches any more (its plugin gave up on it) is hung up.
OWNED_ARG = "aribot-owned"


def configure(settings_file: str | Path | None = None, *,
              environ: Mapping[str, str] | None = None) -> tuple[Any, Plugins]:
    """Settings and plugins together: core's settings choose the plugins; then everything is
    loaded again with the settings the loaded plugins declare (their defaults under the files and
    the environment). Keys nobody declares are logged, one line each."""
    core = load_settings(settings_file, environ=environ)
    plugins = load_plugins(core)
    owned = [("core", setting) for setting in CORE_SETTINGS]
    core_keys = {setting.key for setting in CORE_SETTINGS}
    for owner, setting in plugins.declared_settings():
        if setting.key in core_keys:
            raise PluginError(f"plugin {owner} declares setting {setting.key}, which is core's")
        owned.append((owner, setting))
    settings = load_settings(settings_file, environ=environ, owned=owned)
    for line in unknown_keys(settings, ToolRegistry.is_tool_key):
        log.warning("%s", line)
    return settings, plugins


def installed_settings() -> list[tuple[str, Any]]:
    """(owner, Setting) of core and of every installed plugin, none blocked (what a fresh install
    knows)."""
    plugins = Plugins()
    plugins.load_entry_points()
    return [("core", setting) for setting in CORE_SETTINGS] + plugins.declared_settings()


def _ids(listing: Any) -> list[str]:
    """The string ids of an ARI list reply (channels, bridges); anything malformed in it is skipped."""
    if not isinstance(listing, list):
        return []
    return [item["id"] for item in listing if isinstance(item, dict) and isinstance(item.get("id"), str)]


def resource_prefix(app_name: str, kind: str) -> str:
    """Id prefix of the channels ("em") and bridges ("br") aribot creates for Stasis app
    ``app_name``: the app is named (hashed), so a sweep never touches another aribot's resources."""
    return f"aribot-{kind}-{hashlib.sha1(app_name.encode()).hexdigest()[:8]}"


class App:
    """One aribot instance. ``await start()``, then ``await stop()``."""

    def __init__(self, settings: Any, plugins: Plugins) -> None:
        self.settings = settings
        self.plugins = plugins
        self.bus = EventBus()
        ari = settings.ari
        self.ari = AriClient(ari.url, ari.username, ari.password, request_timeout=ari.request_timeout)
        self.stream = AriEventStream(self.ari, ari.app, self._on_message, on_connect=self._on_connect,
                                     min_delay=ari.reconnect_min_delay, max_delay=ari.reconnect_max_delay)
        rtp = settings.rtp
        self.ports = PortPool(rtp.host, rtp.port_min, rtp.port_max)
        self.activation_mode = settings.activation.mode
        self.rebuild_registries()
        self.extensions: dict[str, Any] = {}   # services plugins share, e.g. "history"
        # session choices an operator made for new calls (instructions, voice, turn_detection, tools)
        self.overrides: dict[str, Any] = {}
        self.calls: dict[str, Call] = {}
        self._legs: dict[str, Call] = {}
        # channels a plugin took charge of (a transfer's target, a transferred caller): id → handler
        self._watched: dict[str, Callable[[AriEvent], None]] = {}
        self.kept_bridges: set[str] = set()  # this app's bridges a plugin owns; the leftover sweep keeps them
        self._call_tasks: set[asyncio.Task[Any]] = set()
        self.draining = False
        self._asterisk_started = ""  # Asterisk's startup_time at the last connect
        self._orphans: asyncio.Task[None] | None = None
        self.unrouted_events = 0
        self.bad_events = 0   # ARI events that were unusable or whose handling failed (each logged once)
        self.http: Any = None
        self._stream_task: asyncio.Task[None] | None = None
        self._stream_restarts = 0
        self._stopping = False
        plugins.subscribe_handlers(self.bus)

    @property
    def data_dir(self) -> Path:
        """The folder for aribot's own files (``[storage] data_dir`` or the platform's), private."""
        return data_dir(self.settings)

    def rebuild_registries(self) -> None:
        """Tools, activation modes, call features and DTMF handlers from the enabled plugins
        (at start, and when a plugin is enabled or disabled at run time: new calls see it)."""
        plugins, settings = self.plugins, self.settings
        self.tools = ToolRegistry.from_plugins(plugins, settings)
        self.activation_modes: dict[str, Callable[[Call], Any]] = {
            name: factory for name, (_owner, factory) in plugins.activation_modes().items()}
        if self.activation_mode not in self.activation_modes:
            allowed = ", ".join(sorted(self.activation_modes)) or "none (every activation-mode plugin is disabled)"
            raise SettingsError(f"setting activation.mode = {self.activation_mode!r} is not valid: expected "
                                f"one of the registered modes: {allowed}")
        self.backends = plugins.backends()
        known = ", ".join(sorted(self.backends)) or "none (every backend plugin is disabled)"
        for name in [settings.ai.backend, *settings.ai.allowed]:
            if str(name).lower() not in self.backends:
                key = "ai.backend" if name == settings.ai.backend else "ai.allowed"
                raise SettingsError(f"setting {key} names {name!r}, which is not a registered speech backend: "
                                    f"expected one of {known}")
        self.call_features = plugins.call_features()
        self.dtmf_handlers = plugins.dtmf_handlers()
        for owner, check in plugins.implementations("check_app"):
            check(app=self)  # a plugin's SettingsError stops the start, or undoes a switch

    async def set_plugin_enabled(self, name: str, enabled: bool) -> None:
        """Enable or disable a plugin at run time (its startup/shutdown hooks run); it takes effect
        for new calls. A change that would leave aribot unable to serve (e.g. the only activation
        mode in use) is undone."""
        if enabled:
            self.plugins.enable(name)
            self.plugins.subscribe_handlers(self.bus, only=name)
        else:
            await self.plugins.acall("shutdown", only=name, app=self)
            self.bus.disconnect_owner(name)
            self.plugins.disable(name)
        try:
            self.rebuild_registries()
        except SettingsError:
            await self.set_plugin_enabled(name, not enabled)
            raise
        if enabled:
            await self.plugins.acall("startup", only=name, app=self)
        log.info("plugin %s %s for new calls", name, "enabled" if enabled else "disabled")

    # --- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        from aribot.core.http import HttpApi  # the HTTP API imports App for typing only

        for name in dict.fromkeys([self.settings.ai.backend, *self.settings.ai.allowed]):
            for warning in self.backends[str(name).lower()].warnings(self.settings):
                log.warning("backend %s: %s", name, warning)
        await self.ari.start()
        self.http = HttpApi(self)
        await self.http.start()
        await self.plugins.acall("startup", app=self)  # before calls can arrive: plugins see every event
        self._start_stream()

    def _start_stream(self) -> None:
        self._stream_task = asyncio.create_task(self.stream.run(), name="ari-events")
        self._stream_task.add_done_callback(self._stream_ended)

    def _stream_ended(self, task: asyncio.Task[None]) -> None:
        """The ARI event task must run until ``stop()``: if it ends otherwise (a bug), /healthz says
        so and it is started again after ``[ari] reconnect_max_delay``."""
        if self._stopping or task is not self._stream_task:
            return
        self.stream.connected.clear()
        why = "cancelled" if task.cancelled() else repr(task.exception())
        self._stream_restarts += 1
        delay = float(self.settings.ari.reconnect_max_delay)
        log.error("the ARI event task ended unexpectedly (%s); /healthz answers 503 and it restarts in %.1f s",
                  why, delay)
        asyncio.get_running_loop().call_later(delay, self._restart_stream)

    def _restart_stream(self) -> None:
        if not self._stopping and self._stream_task is not None and self._stream_task.done():
            self._start_stream()

    @property
    def ari_problem(self) -> str:
        """Why ARI events are not flowing ("" when they are), short and without addresses (/healthz)."""
        task = self._stream_task
        if task is not None and task.done() and not self._stopping:
            return "the ARI event task stopped; restarting"
        if self.ari_connected:
            return ""
        return self.stream.problem or "not connected"

    async def drain(self, timeout: float) -> None:
        """Graceful shutdown, first part: take no new calls (they are continued in the dialplan),
        let live calls finish for up to ``timeout`` s, then end each one politely: the AI says
        ``[call] shutdown_goodbye`` and the call is hung up or continued per ``on_shutdown``.
        ``stop()`` follows; cancelling this (a second signal) leaves the rest to ``stop()``."""
        self.draining = True
        live = [c for c in self.calls.values() if not c.overflow]
        log.info("draining: new calls are continued in the dialplan; %d live call(s) may go on for up to %.0f s",
                 len(live), timeout)
        deadline = time.monotonic() + timeout
        while self.serving and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        left = [c for c in self.calls.values() if not c.overflow and not c.stopping]
        if not left:
            return
        log.info("draining: ending %d call(s) still live after %.0f s with a goodbye (%s)", len(left), timeout,
                 self.settings.call.on_shutdown)
        for call in left:
            call.spawn(call.end("shutdown", goodbye=self.settings.call.shutdown_goodbye,
                                action=self.settings.call.on_shutdown))
        with contextlib.suppress(asyncio.TimeoutError):  # each end() is bounded; this is a backstop
            await asyncio.wait_for(asyncio.gather(*(call.done.wait() for call in left)), 60.0)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking calls, end live calls per ``[call] on_shutdown``, clean Asterisk, close."""
        self.draining = True
        self._stopping = True
        calls = list(self.calls.values())
        if calls:
            log.info("stopping: ending %d live call(s) (%s)", len(calls), self.settings.call.on_shutdown)
        for call in calls:
            call.finish("shutdown", self.settings.call.on_shutdown)
        if self._call_tasks:
            await asyncio.wait(set(self._call_tasks), timeout=grace)
        if self._orphans is not None:
            self._orphans.cancel()
            await asyncio.gather(self._orphans, return_exceptions=True)
        await self.stream.stop()
        if self._stream_task is not None:
            self._stream_task.cancel()
            await asyncio.gather(self._stream_task, return_exceptions=True)
        await self.plugins.acall("shutdown", app=self)
        await self.bus.drain()
        self.bus.close()
        if self.http is not None:
            await self.http.stop()
        await self.ari.close()

    def resource_prefix(self, kind: str) -> str:
        return resource_prefix(self.settings.ari.app, kind)

    async def sweep_leftovers(self) -> tuple[int, int]:
        """Delete this app's ExternalMedia channels and bridges that belong to no live call (left by
        a crash of aribot, or by calls that ended while ARI was unreachable); returns the counts."""
        channels = await self.ari.call("list_channels")
        bridges = await self.ari.call("list_bridges")
        # after listing: a call registers itself before it creates its leg and bridge, so whatever
        # the lists hold of a call that started meanwhile is owned by now
        owned_legs = {call.leg_id for call in self.calls.values()}
        owned_bridges = {call.bridge_id for call in self.calls.values()} | self.kept_bridges
        stale_channels = [i for i in _ids(channels) if i.startswith(self.resource_prefix("em")) and i not in owned_legs]
        stale_bridges = [i for i in _ids(bridges) if i.startswith(self.resource_prefix("br")) and i not in owned_bridges]
        for op, key, ids in (("hangup", "channelId", stale_channels), ("destroy_bridge", "bridgeId", stale_bridges)):
            for resource in ids:
                try:
                    await self.ari.call(op, **{key: resource})
                except AriNotFound:
                    pass
                except AriError as exc:
                    log.warning("could not delete leftover %s (%s); it stays in Asterisk", resource, exc)
        if stale_channels or stale_bridges:
            log.warning("deleted %d leftover media channel(s) and %d bridge(s) of this app that belonged to no "
                        "live call", len(stale_channels), len(stale_bridges))
        return len(stale_channels), len(stale_bridges)

    def _in_our_stasis(self, channel: Any) -> bool:
        dialplan = channel.get("dialplan") if isinstance(channel, dict) else None
        if not isinstance(dialplan, dict):
            return False
        data = str(dialplan.get("app_data", ""))
        return dialplan.get("app_name") == "Stasis" and (data == self.settings.ari.app
                                                        or data.startswith(self.settings.ari.app + ","))

    async def end_orphans(self, settle_s: float = 1.0) -> int:
        """Callers left in this app's Stasis by an aribot that died (no live call here owns them):
        ``ARIBOT_END_REASON=crashed``, then hung up or continued per ``[call] on_failure``. A
        channel is an orphan only if it is still unowned ``settle_s`` later (a new call's
        StasisStart may be on its way)."""
        channels = await self.ari.call("list_channels")
        legs = self.resource_prefix("em")  # media legs (live or not) are sweep_leftovers' business
        ours = [c for c in channels if self._in_our_stasis(c)] if isinstance(channels, list) else []
        suspects = {i for i in _ids(ours) if not i.startswith(legs) and i not in self.calls and i not in self._legs
                    and i not in self._watched}
        if not suspects:
            return 0
        await asyncio.sleep(settle_s)
        orphans = [cid for cid in suspects if cid not in self.calls and cid not in self._legs
                   and cid not in self._watched and not self.draining]
        action = self.settings.call.on_failure
        for channel_id in orphans:
            try:
                await self.ari.call("set_variable", channelId=channel_id, variable="ARIBOT_END_REASON", value="crashed")
                if action == "continue":
                    await self.ari.call("continue_in_dialplan", channelId=channel_id)
                else:
                    await self.ari.call("hangup", channelId=channel_id, reason="normal")
            except AriNotFound:
                pass
            except AriError as exc:
                log.warning("could not end orphaned caller %s (%s)", channel_id, exc)
        if orphans:
            log.warning("%d caller(s) were left in Stasis app %r by an aribot that stopped without ending "
                        "their calls; they were %s (ARIBOT_END_REASON=crashed)", len(orphans), self.settings.ari.app,
                        "continued in the dialplan" if action == "continue" else "hung up")
        return len(orphans)

    @property
    def serving(self) -> int:
        """Live calls being served (not those refused for capacity)."""
        return sum(1 for call in self.calls.values() if not call.overflow)

    @property
    def ari_connected(self) -> bool:
        task = self._stream_task
        return self.stream.connected.is_set() and not (task is not None and task.done())

    # --- routing ------------------------------------------------------------------------------
    def register_leg(self, call: Call) -> None:
        self._legs[call.leg_id] = call

    def watch(self, channel_id: str, handler: Callable[[AriEvent], None]) -> None:
        """Send the ARI events of ``channel_id`` (when no call owns it) to ``handler``, in order,
        until ``unwatch``; a watched channel is never taken for a new call or an orphan."""
        self._watched[channel_id] = handler

    def unwatch(self, channel_id: str) -> None:
        self._watched.pop(channel_id, None)

    def forget(self, call: Call) -> None:
        self.calls.pop(call.id, None)
        self._legs.pop(call.leg_id, None)

    def _on_message(self, text: str) -> None:
        """One message of the events WebSocket; whatever is wrong with it costs only this event
        (one log line naming the event type, the channel and what aribot did)."""
        try:
            event = parse_event(text)
        except AriEventError as exc:
            self.bad_events += 1
            log.warning("ARI %s for channel %s is unusable (%s); ignored", shown(exc.event_type or "event"),
                        shown(exc.channel_id or "-"), exc)
            return
        if event.problems:
            log.warning("ARI %s for channel %s has malformed fields (%s); they were taken as empty and the event "
                        "handled", shown(event.type), shown(event.channel_id or "-"), "; ".join(event.problems[:5]))
        try:
            self.route(event)
        except Exception as exc:
            self.bad_events += 1
            self._handling_failed(event, exc)

    def _handling_failed(self, event: AriEvent, exc: Exception) -> None:
        """Handling ``event`` raised: log one line; a new caller whose call could not be set up is
        continued in the dialplan rather than left waiting in Stasis."""
        channel = event.channel
        new_caller = (event.type == "StasisStart" and channel is not None and not channel.is_media_leg
                      and channel.id not in self.calls and channel.id not in self._legs)
        action = "ignored"
        if new_caller:
            action = "the caller is continued in the dialplan"
            asyncio.get_running_loop().create_task(self._refuse(channel.id))  # type: ignore[union-attr]
        log.error("ARI %s for channel %s could not be handled (%r); %s, the event stream goes on", shown(event.type),
                  shown(event.channel_id or event.playback_channel_id or "-"), exc, action,
                  exc_info=log.isEnabledFor(logging.DEBUG))

    def route(self, event: AriEvent) -> None:
        """Deliver an event to its call by channel id (the caller's or the call's media leg)."""
        channel_id = event.channel_id or event.playback_channel_id
        call = self.calls.get(channel_id or "") or self._legs.get(channel_id or "")
        if call is not None:
            call.deliver(event)
            return
        watcher = self._watched.get(channel_id or "")
        if watcher is not None:
            watcher(event)
            return
        if event.type == "StasisStart" and event.channel is not None:
            self._on_new_channel(event)
            return
        self.unrouted_events += 1
        log.debug("ARI %s for no live call (channel %s); ignored", event.type, channel_id)

    def _on_new_channel(self, event: AriEvent) -> None:
        channel = event.channel
        assert channel is not None
        if channel.is_media_leg:
            log.info("ignoring StasisStart of %s: a media channel this aribot did not create", channel.name)
            return
        if event.args[:1] == [OWNED_ARG]:
            log.info("hanging up %s (%s): aribot originated it for a plugin that no longer waits for it",
                     channel.id, shown(channel.name))
            asyncio.create_task(self._hang_up(channel.id))
            return
        if self.draining:
            log.info("call %s arrived while stopping; continuing it in the dialplan", channel.id)
            asyncio.create_task(self._refuse(channel.id))
            return
        limit, live = self.settings.call.max_concurrent, self.serving
        call = Call(self, channel, event.args)
        self.calls[call.id] = call
        if limit and live >= limit:
            call.overflow = True
            task = asyncio.create_task(call.run_overflow(live), name=f"overflow-{call.id}")
        else:
            task = asyncio.create_task(call.run(), name=f"call-{call.id}")
        self._call_tasks.add(task)
        task.add_done_callback(self._call_tasks.discard)

    async def _hang_up(self, channel_id: str) -> None:
        try:
            await self.ari.call("hangup", channelId=channel_id, reason="normal")
        except AriNotFound:
            pass
        except AriError as exc:
            log.warning("could not hang up %s (%s); it may be left in Asterisk", channel_id, exc)

    async def _refuse(self, channel_id: str) -> None:
        try:
            await self.ari.call("continue_in_dialplan", channelId=channel_id)
        except AriError as exc:
            log.warning("could not continue refused call %s in the dialplan (%s)", channel_id, exc)

    async def _on_connect(self, reconnect: bool) -> None:
        """Filter out events aribot never uses; after a reconnect, end calls whose caller vanished
        while events were not flowing; then delete this app's leftover media channels and bridges."""
        try:
            await self.ari.call("set_event_filter", applicationName=self.settings.ari.app,
                                body={"disallowed": [{"type": name} for name in UNUSED_EVENTS]})
        except AriError as exc:
            log.warning("could not set the ARI event filter (%s); all events will be delivered", exc)
        restarted = await self._asterisk_restarted()
        if reconnect:
            await self._reconcile_calls("asterisk_restarted" if restarted else "caller_hangup")
        try:
            await self.sweep_leftovers()
        except AriError as exc:
            log.warning("could not look for leftover channels and bridges (%s); will try at the next connect", exc)
        self._orphans = asyncio.create_task(self._end_orphans_logged(), name="end-orphans")

    async def _end_orphans_logged(self) -> None:
        try:
            await self.end_orphans()
        except AriError as exc:
            log.warning("could not look for orphaned callers (%s); will try at the next connect", exc)

    async def _asterisk_restarted(self) -> bool:
        """True if Asterisk's start-up time changed since the last connect (it restarted)."""
        try:
            info = await self.ari.call("asterisk_info", only="status")
        except AriError as exc:
            log.debug("could not read Asterisk's start-up time (%s)", exc)
            return False
        status = info.get("status") if isinstance(info, dict) else None
        started = str(status.get("startup_time", "")) if isinstance(status, dict) else ""
        before, self._asterisk_started = self._asterisk_started, started
        if before and started and before != started:
            log.warning("Asterisk restarted (up since %s); %d live call(s) lost their channels", started,
                        len(self.calls))
            return True
        return False

    async def _reconcile_calls(self, reason: str) -> None:
        for call in list(self.calls.values()):
            try:
                await self.ari.call("get_channel", channelId=call.id)
            except AriNotFound:
                log.warning("call %s: caller channel is gone after the ARI reconnect; ending the call (%s)",
                            call.id, reason)
                call.caller_left.set()
                call.finish(reason)
            except AriError as exc:
                log.warning("call %s: could not check the caller after reconnect (%s)", call.id, exc)

    def snapshot(self) -> list[dict[str, Any]]:
        return [call.snapshot() for call in self.calls.values()]
