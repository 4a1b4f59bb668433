"""The event bus: isolation of failing receivers, async receivers, per-sender and per-owner."""

from __future__ import annotations

import asyncio

from aribot.core.events import CallAnswered, CallEnded, CallStarted, EventBus, SpeechStarted, event_types


class Sender:
    pass


async def test_failing_receiver_does_not_stop_others() -> None:
    bus = EventBus()
    seen: list[str] = []

    def bad(event):
        raise RuntimeError("boom")

    async def good_async(event):
        await asyncio.sleep(0)
        seen.append("async:" + event.call_id)

    bus.subscribe(CallStarted, bad, owner="p1")
    bus.subscribe(CallStarted, lambda e: seen.append("sync:" + e.call_id), owner="p2")
    bus.subscribe(CallStarted, good_async, owner="p3")
    bus.emit(Sender(), CallStarted(call_id="c1", channel_id="c1"))
    await bus.drain()
    assert sorted(seen) == ["async:c1", "sync:c1"]
    assert bus.receiver_errors == 1


async def test_per_sender_and_owner_disconnect() -> None:
    """A receiver for one sender gets only that sender's events; one for every sender gets all.
    (blinker gives no order between the two kinds, so each receiver is checked on its own.)"""
    bus = EventBus()
    a, b = Sender(), Sender()
    of_a: list[str] = []
    of_any: list[str] = []
    bus.subscribe(SpeechStarted, lambda e: of_a.append(e.call_id), sender=a, owner="plugin")
    bus.subscribe(None, lambda e: of_any.append(f"{e.name}:{e.call_id}"), owner="ui")
    bus.emit(a, SpeechStarted(call_id="a"))
    bus.emit(b, SpeechStarted(call_id="b"))
    bus.emit(b, CallEnded(call_id="b", reason="caller_hangup", duration_s=1.0))
    assert of_a == ["a"]
    assert of_any == ["call.speech_started:a", "call.speech_started:b", "call.ended:b"]
    assert bus.disconnect_owner("plugin") == 1
    bus.emit(a, SpeechStarted(call_id="a2"))
    assert of_a == ["a"] and of_any[-1] == "call.speech_started:a2"
    assert bus.disconnect_owner("ui") == len(event_types())   # one receiver per event type
    bus.emit(a, SpeechStarted(call_id="a3"))
    assert of_any[-1] == "call.speech_started:a2" and bus.disconnect_owner("ui") == 0


def test_events_serialise_with_type_and_call_id() -> None:
    data = CallEnded(call_id="c9", reason="caller_hangup", duration_s=1.5).to_json()
    assert data["type"] == "call.ended" and data["call_id"] == "c9" and "ts" in data
    assert "call.started" in event_types() and "call.tool_finished" in event_types()


async def test_unsubscribe_removes_only_that_receiver() -> None:
    """next_event() subscribes and unsubscribes once per wait: it must drop exactly its receiver,
    of its owner, and leave every other call's receivers (of the same event type) in place."""
    bus = EventBus()
    got: list[str] = []
    shims = {owner: bus.subscribe(CallAnswered, lambda e, o=owner: got.append(o), owner=owner)
             for owner in ("call:a", "call:b", "call:c")}
    twin = bus.subscribe(CallAnswered, lambda e: got.append("b2"), owner="call:b")
    bus.unsubscribe(shims["call:b"])
    bus.unsubscribe(shims["call:b"])  # twice: a no-op
    bus.emit(None, CallAnswered(call_id="x"))
    assert sorted(got) == ["b2", "call:a", "call:c"]
    assert bus.disconnect_owner("call:b") == 1 and twin not in bus._owner_of
