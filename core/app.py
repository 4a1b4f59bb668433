"""The running server: ARI connection, event routing by channel id, live calls, HTTP API,
plugin start-up/shut-down, and a clean stop that leaves nothing behind in Asterisk."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Callable

from core.ari import UNUSED_EVENTS, AriClient, AriError, AriEventStream, AriNotFound
from core.ari_events import AriEvent, AriEventError, parse_event
from core.call import Call
from core.events import EventBus
from core.plugins import Plugins, load_plugins
from core.rtp import PortPool
from core.settings import SettingsError, load_settings, validate
from core.tools import ToolRegistry

log = logging.getLogger("aribot.app")


def configure(settings_file: str | Path | None = None) -> tuple[Any, Plugins]:
    """Settings and plugins together: core rules, then the rules the loaded plugins register."""
    settings = load_settings(settings_file)
    plugins = load_plugins(settings)
    validate(settings, plugins.settings_rules(), core=False)
    return settings, plugins


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
        self._call_tasks: set[asyncio.Task[Any]] = set()
        self.draining = False
        self.unrouted_events = 0
        self.http: Any = None
        self._stream_task: asyncio.Task[None] | None = None
        plugins.subscribe_handlers(self.bus)

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
        self.call_features = plugins.call_features()
        self.dtmf_handlers = plugins.dtmf_handlers()
        if "dtmf" in self.call_features and settings.dtmf.handler not in self.dtmf_handlers:
            raise SettingsError(f"setting dtmf.handler = {settings.dtmf.handler!r} is not valid: expected one of "
                                f"the registered DTMF handlers: {', '.join(sorted(self.dtmf_handlers)) or 'none'}")

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
        from core.http import HttpApi  # the HTTP API imports App for typing only

        await self.ari.start()
        self.http = HttpApi(self)
        await self.http.start()
        await self.plugins.acall("startup", app=self)  # before calls can arrive: plugins see every event
        self._stream_task = asyncio.create_task(self.stream.run(), name="ari-events")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking calls, end live calls per ``[call] on_shutdown``, clean Asterisk, close."""
        self.draining = True
        calls = list(self.calls.values())
        if calls:
            log.info("stopping: ending %d live call(s) (%s)", len(calls), self.settings.call.on_shutdown)
        for call in calls:
            call.finish("shutdown", self.settings.call.on_shutdown)
        if self._call_tasks:
            await asyncio.wait(set(self._call_tasks), timeout=grace)
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

    @property
    def ari_connected(self) -> bool:
        return self.stream.connected.is_set()

    # --- routing ------------------------------------------------------------------------------
    def register_leg(self, call: Call) -> None:
        self._legs[call.leg_id] = call

    def forget(self, call: Call) -> None:
        self.calls.pop(call.id, None)
        self._legs.pop(call.leg_id, None)

    def _on_message(self, text: str) -> None:
        try:
            event = parse_event(text)
        except AriEventError as exc:
            log.warning("ARI sent an unusable event (%s: %.120r); ignored", exc, text)
            return
        self.route(event)

    def route(self, event: AriEvent) -> None:
        """Deliver an event to its call by channel id (the caller's or the call's media leg)."""
        channel_id = event.channel_id or event.playback_channel_id
        call = self.calls.get(channel_id or "") or self._legs.get(channel_id or "")
        if call is not None:
            call.deliver(event)
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
        if self.draining:
            log.info("call %s arrived while stopping; continuing it in the dialplan", channel.id)
            asyncio.create_task(self._refuse(channel.id))
            return
        call = Call(self, channel, event.args)
        self.calls[call.id] = call
        task = asyncio.create_task(call.run(), name=f"call-{call.id}")
        self._call_tasks.add(task)
        task.add_done_callback(self._call_tasks.discard)

    async def _refuse(self, channel_id: str) -> None:
        try:
            await self.ari.call("continue_in_dialplan", channelId=channel_id)
        except AriError as exc:
            log.warning("could not continue refused call %s in the dialplan (%s)", channel_id, exc)

    async def _on_connect(self, reconnect: bool) -> None:
        """Filter out events aribot never uses; after a reconnect, end calls whose caller
        vanished while events were not flowing."""
        try:
            await self.ari.call("set_event_filter", applicationName=self.settings.ari.app,
                                body={"disallowed": [{"type": name} for name in UNUSED_EVENTS]})
        except AriError as exc:
            log.warning("could not set the ARI event filter (%s); all events will be delivered", exc)
        if not reconnect:
            return
        for call in list(self.calls.values()):
            try:
                await self.ari.call("get_channel", channelId=call.id)
            except AriNotFound:
                log.warning("call %s: caller channel is gone after the ARI reconnect; ending the call", call.id)
                call.caller_left.set()
                call.finish("caller_hangup")
            except AriError as exc:
                log.warning("call %s: could not check the caller after reconnect (%s)", call.id, exc)

    def snapshot(self) -> list[dict[str, Any]]:
        return [call.snapshot() for call in self.calls.values()]
