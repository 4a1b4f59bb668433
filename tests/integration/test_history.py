"""Call history with real calls: both sides' transcripts, tool calls, latency and end reason are
recorded, the record survives a restart, and a call left live by a crash is closed as crashed."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp

from aribot.core import events as ev
from aribot.plugins.history.store import HistoryStore
from aribot.plugins.local_backend.realtime.script import Script, Turn
from aribot.sandbox.asterisk import AsteriskLab
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab.audio import speech
from tests.lab.calls import caller_turns, place_call
from tests.lab.probe import Probe


async def get_json(port: int, path: str) -> tuple[int, object]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}{path}") as resp:
            return resp.status, await resp.json()


async def test_a_call_is_recorded_and_kept_across_a_restart(
    asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, make_aribot, tmp_path: Path
) -> None:
    db = tmp_path / "history.sqlite3"
    fake.script = Script(turns=[Turn.function_call("current_time", {}),
                                Turn.audio(speech(600, seed=31), "It is twelve o'clock.")])
    app = await make_aribot(fake.url, history={"path": str(db)})
    probe = Probe.attach(app)
    await place_call(asterisk_lab, tmp_path / "sipp", caller_turns(700), audio_delay_ms=300, hold_ms_after_audio=300)
    ended = await probe.wait("call.ended")
    store = app.extensions["history"]
    await store.flush()
    record = await store.get(ended.call_id)
    assert record is not None
    assert record["end_reason"] == ended.reason == "caller_hangup"
    assert record["started_at"] < record["answered_at"] < record["ended_at"] == ended.ts
    assert record["mode"] == "immediate" and record["stats"]["rtp_in"] > 0
    assert [(t["role"], t["text"]) for t in record["turns"]] == [
        ("caller", "caller turn 1"), ("assistant", "It is twelve o'clock.")]
    latency = record["turns"][1]["latency_ms"]
    assert latency is not None and latency == probe.first("call.bot_audio_started").latency_ms
    (tool,) = record["tools"]
    assert (tool["tool"], tool["arguments"], tool["error"]) == ("current_time", "{}", "")
    assert "UTC" in tool["result"] and tool["duration_ms"] >= 0
    types = [e["type"] for e in record["timeline"]]
    assert {"call.speech_started", "call.response_done", "call.bot_audio_started"} <= set(types)

    await app.stop()                                                   # restart on the same database
    again = await make_aribot(fake.url, history={"path": str(db)})
    found = await again.extensions["history"].search(since=record["started_at"] - 60, text="twelve")
    assert [c["id"] for c in found] == [ended.call_id]
    status, body = await get_json(again.http.port, f"/history/{ended.call_id}")
    assert status == 200 and body["turns"] == record["turns"] and body["end_reason"] == "caller_hangup"
    number = record["caller_number"]
    # the lab's caller has a number only if its Asterisk loads res_pjsip_caller_id
    status, body = await get_json(again.http.port, f"/history?caller={number}&q=twelve%20o")
    assert status == 200 and [c["id"] for c in body] == [ended.call_id]
    if number:
        status, body = await get_json(again.http.port, f"/history?caller={number}x")
        assert status == 200 and body == []

async def test_a_call_live_during_a_crash_is_closed_as_crashed_at_the_next_start(
    fake: FakeRealtimeServer, make_aribot, tmp_path: Path
) -> None:
    db, t0 = tmp_path / "history.sqlite3", time.time() - 120
    before_crash = HistoryStore(db)                  # what a killed aribot leaves: started, never ended
    await before_crash.open()
    for event in (ev.CallStarted(call_id="lost-1", ts=t0, channel_id="lost-1", caller_number="+4930999"),
                  ev.CallAnswered(call_id="lost-1", ts=t0 + 0.2),
                  ev.Transcript(call_id="lost-1", ts=t0 + 3, role="caller", item_id="u1", text="my order"),
                  ev.ToolCalled(call_id="lost-1", ts=t0 + 4, tool="lookup", tool_call_id="c1", arguments="{}")):
        await before_crash.record(event)
    await before_crash.close()

    app = await make_aribot(fake.url, history={"path": str(db)})
    record = await app.extensions["history"].get("lost-1")
    assert record is not None
    assert (record["end_reason"], record["ended_at"], record["duration_s"]) == ("crashed", t0 + 4, 4)
    assert [t["text"] for t in record["turns"]] == ["my order"] and record["tools"][0]["result"] is None
