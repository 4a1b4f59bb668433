"""The App's ARI router, driven by a real captured call: one call per caller channel, the
ExternalMedia leg's own StasisStart is not a new call, unknown events are ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from aribot.core import app as app_module
from aribot.core.app import App, configure
from aribot.core.ari_events import parse_event
from tests.contract.ari_docs import CAPTURES


class RecordingCall:
    instances: list["RecordingCall"] = []

    def __init__(self, app, channel, args):
        self.id, self.leg_id, self.args = channel.id, "", args
        self.events: list[str] = []
        RecordingCall.instances.append(self)

    async def run(self):
        pass

    def deliver(self, event):
        self.events.append(event.type)


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> App:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(app_module, "Call", RecordingCall)
    RecordingCall.instances = []
    return App(*configure())


def events(name: str):
    return [parse_event(line) for line in (CAPTURES / name).read_text().splitlines() if line.strip()]


async def test_captured_call_makes_one_call_and_routes_its_events(app: App) -> None:
    captured = events("events_caller_bye.jsonl")
    caller = captured[0].channel
    for event in captured:
        app.route(event)
    assert [c.id for c in RecordingCall.instances] == [caller.id]
    call = RecordingCall.instances[0]
    assert call.args == ["100"]
    assert call.events.count("StasisEnd") == 1 and "ChannelTalkingStarted" in call.events
    # the UnicastRTP leg was not registered by this aribot: its events are ignored, not a call
    assert app.unrouted_events > 0


async def test_registered_leg_events_go_to_their_call(app: App) -> None:
    captured = events("events_caller_bye.jsonl")
    app.route(captured[0])
    call = RecordingCall.instances[0]
    leg_start = next(e for e in captured[1:] if e.type == "StasisStart")
    call.leg_id = leg_start.channel_id
    app.register_leg(call)  # type: ignore[arg-type]
    app.route(leg_start)
    assert call.events == ["StasisStart"] and len(RecordingCall.instances) == 1


async def test_unknown_and_stray_events(app: App) -> None:
    app.route(parse_event('{"type": "BrandNewEvent", "application": "aribot"}'))
    app.route(parse_event('{"type": "ChannelVarset", "variable": "X", "value": "1"}'))
    app._on_message("{ not json")
    assert RecordingCall.instances == [] and app.unrouted_events == 2


async def test_draining_refuses_new_calls(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    refused: list[str] = []

    async def refuse(channel_id: str) -> None:
        refused.append(channel_id)

    monkeypatch.setattr(app, "_refuse", refuse)
    app.draining = True
    app.route(events("events_caller_bye.jsonl")[0])
    import asyncio
    await asyncio.sleep(0)
    assert RecordingCall.instances == [] and refused == ["1795469550.0"]
