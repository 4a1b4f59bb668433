"""Call history: the SQLite store, the plugin's wiring and settings, the /history HTTP routes."""

from __future__ import annotations

import logging
import sqlite3
import time
import tomllib
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, AsyncIterator

import pytest
from aiohttp import web

from aribot.core import events as ev
from aribot.core.app import App, configure
from aribot.core.events import EventBus
from aribot.core.settings import SettingsError
from aribot.plugins.history import plugin as history_plugin
from aribot.plugins.history.routes import SLOT, add_routes
from aribot.plugins.history.store import SCHEMA_VERSION, HistoryError, HistoryStore

REPO = Path(__file__).resolve().parents[2]
DAY = 86400.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[HistoryStore]:
    history = HistoryStore(tmp_path / "history.sqlite3")
    await history.open()
    yield history
    await history.close()


def a_call(call_id: str, start: float, number: str = "+4930111", name: str = "", said: str = "hello",
           reason: str | None = "caller_hangup") -> list[ev.Event]:
    """A one-turn call starting at ``start``; ``reason`` None leaves it live."""
    events: list[ev.Event] = [
        ev.CallStarted(call_id=call_id, ts=start, channel_id=call_id, caller_number=number, caller_name=name,
                       extension="100"),
        ev.CallAnswered(call_id=call_id, ts=start + 0.1),
        ev.Transcript(call_id=call_id, ts=start + 2, role="caller", item_id=f"{call_id}-u", text=said),
    ]
    if reason is not None:
        events.append(ev.CallEnded(call_id=call_id, ts=start + 5, reason=reason, duration_s=5.0))
    return events


async def record(store: HistoryStore, events: list[ev.Event]) -> None:
    for event in events:
        await store.record(event)


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Read with a second connection: what another process (or a restart) would see."""
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


async def test_each_event_is_committed_as_it_arrives_and_deltas_are_not_written(store: HistoryStore) -> None:
    t0 = time.time()
    await store.record(ev.CallStarted(call_id="c1", ts=t0, channel_id="c1", caller_number="200"))
    assert rows(store.path, "SELECT id, caller_number, ended_at FROM calls") == [("c1", "200", None)]
    assert store.submit(ev.TranscriptDelta(call_id="c1", role="caller", item_id="u1", text="hel")) is None
    await store.record(ev.TranscriptDelta(call_id="c1", role="caller", item_id="u1", text="lo"))
    assert rows(store.path, "SELECT COUNT(*) FROM turns") == [(0,)]
    store.submit(ev.Transcript(call_id="c1", ts=t0 + 1, role="caller", item_id="u1", text="hello"))
    await store.flush()
    assert rows(store.path, "SELECT role, text FROM turns") == [("caller", "hello")]


async def test_get_returns_turns_tools_and_timeline_in_order(store: HistoryStore) -> None:
    t0 = 1_700_000_000.0
    events = [
        ev.CallStarted(call_id="c1", ts=t0, channel_id="c1", caller_number="+4930111", caller_name="Ada"),
        ev.CallAnswered(call_id="c1", ts=t0 + 0.1),
        ev.ActivationOpened(call_id="c1", ts=t0 + 0.2, mode="immediate", reason="answered"),
        ev.SpeechStarted(call_id="c1", ts=t0 + 1, item_id="u1"),
        ev.SpeechStopped(call_id="c1", ts=t0 + 2, item_id="u1"),
        ev.ToolCalled(call_id="c1", ts=t0 + 2.2, tool="current_time", tool_call_id="call_1", arguments="{}"),
        ev.ToolFinished(call_id="c1", ts=t0 + 2.3, tool="current_time", tool_call_id="call_1",
                        result='{"time": "12:00"}', duration_ms=3.5),
        # the assistant's transcript completes before the caller's, but is spoken after it
        ev.BotAudioStarted(call_id="c1", ts=t0 + 2.5, response_id="r1", item_id="a1", latency_ms=480.0),
        ev.Transcript(call_id="c1", ts=t0 + 2.6, role="assistant", item_id="a1", text="It is noon."),
        ev.Transcript(call_id="c1", ts=t0 + 2.7, role="caller", item_id="u1", text="What time is it?"),
        ev.DtmfReceived(call_id="c1", ts=t0 + 3, digit="5"),
        ev.BotAudioStarted(call_id="c1", ts=t0 + 3.5, response_id="r2", item_id="a2", latency_ms=510.0),
        ev.BargeIn(call_id="c1", ts=t0 + 4, item_id="a2", played_ms=300, dropped_ms=700),
        ev.Transcript(call_id="c1", ts=t0 + 4.5, role="assistant", item_id="a2", text="Anything el"),
        ev.TimerFired(call_id="c1", ts=t0 + 5, timer="no_speech", action="reprompt"),
        ev.CallEnded(call_id="c1", ts=t0 + 9, reason="caller_hangup", duration_s=9.0, stats={"rtp_in": 450}),
    ]
    await record(store, events)
    call = await store.get("c1")
    assert call is not None
    assert (call["caller_number"], call["caller_name"], call["mode"], call["end_reason"]) == \
           ("+4930111", "Ada", "immediate", "caller_hangup")
    assert (call["started_at"], call["answered_at"], call["ended_at"], call["duration_s"]) == (t0, t0 + 0.1, t0 + 9, 9.0)
    assert call["stats"] == {"rtp_in": 450}
    assert [(t["role"], t["text"], t["ts"], t["interrupted"]) for t in call["turns"]] == [
        ("caller", "What time is it?", t0 + 1, False),      # spoken order: when each turn started
        ("assistant", "It is noon.", t0 + 2.5, False),
        ("assistant", "Anything el", t0 + 3.5, True),       # cut by the barge-in
    ]
    assert [t.get("latency_ms") for t in call["turns"]] == [None, 480.0, 510.0]
    assert call["tools"] == [{"seq": 4, "tool": "current_time", "tool_call_id": "call_1", "arguments": "{}",
                              "result": '{"time": "12:00"}', "error": "", "duration_ms": 3.5, "ts": t0 + 2.2}]
    timeline = [(e["type"], e["ts"]) for e in call["timeline"]]
    assert timeline == [("call.activation_opened", t0 + 0.2), ("call.speech_started", t0 + 1),
                        ("call.speech_stopped", t0 + 2), ("call.bot_audio_started", t0 + 2.5),
                        ("call.dtmf", t0 + 3), ("call.bot_audio_started", t0 + 3.5), ("call.barge_in", t0 + 4),
                        ("call.timer_fired", t0 + 5)]
    assert call["timeline"][6]["data"] == {"item_id": "a2", "played_ms": 300, "dropped_ms": 700}
    assert await store.get("nope") is None


async def test_search_by_caller_substring_date_range_and_text(store: HistoryStore) -> None:
    now = time.time()
    await record(store, a_call("old", now - 3 * DAY, number="+4930111", said="my order 42 is late"))
    await record(store, a_call("mid", now - 2 * DAY, number="+4940222", name="Grace Hopper", said="hello"))
    await record(store, a_call("new", now - 1 * DAY, number="+4930333", said="100% sure, order_id"))

    async def ids(**kwargs: Any) -> list[str]:
        return [c["id"] for c in await store.search(**kwargs)]

    assert await ids() == ["new", "mid", "old"]                        # newest first
    assert await ids(caller="4930") == ["new", "old"]                  # substring of the number
    assert await ids(caller="hopper") == ["mid"]                       # ... or of the name, any case
    assert await ids(since=now - 2.5 * DAY) == ["new", "mid"]
    assert await ids(since=now - 2.5 * DAY, until=now - 1.5 * DAY) == ["mid"]
    assert await ids(text="order") == ["new", "old"]
    assert await ids(text="%") == ["new"] and await ids(text="_") == ["new"]   # LIKE wildcards are literal
    assert await ids(caller="4930", text="late") == ["old"]
    assert await ids(limit=1, offset=1) == ["mid"]
    listed = (await store.search(caller="hopper"))[0]
    assert listed["end_reason"] == "caller_hangup" and "turns" not in listed and "stats" not in listed


async def test_search_by_end_reason_and_backend_which_calls_list_and_offer_as_choices(store: HistoryStore) -> None:
    now = time.time()
    for call_id, start, reason, backend in (("a", now - 3, "caller_hangup", "openai_realtime"),
                                            ("b", now - 2, "max_duration", "gpt_live"),
                                            ("c", now - 1, "caller_hangup", "gpt_live")):
        events = a_call(call_id, start, reason=None)
        events.append(ev.CallEnded(call_id=call_id, ts=start + 0.5, reason=reason, duration_s=0.5,
                                   stats={"backend": backend}))
        await record(store, events)
    await record(store, a_call("live", now, reason=None))   # no end, no backend yet

    async def ids(**kwargs: Any) -> list[str]:
        return [c["id"] for c in await store.search(**kwargs)]

    assert await ids(end_reason="caller_hangup") == ["c", "a"]
    assert await ids(backend="gpt_live") == ["c", "b"]
    assert await ids(backend="gpt_live", end_reason="caller_hangup") == ["c"]
    assert await ids(backend="gpt") == []                            # exactly that backend
    assert [(c["id"], c["backend"]) for c in await store.search()] == [
        ("live", None), ("c", "gpt_live"), ("b", "gpt_live"), ("a", "openai_realtime")]
    assert await store.choices() == {"end_reason": ["caller_hangup", "max_duration"],
                                     "backend": ["gpt_live", "openai_realtime"]}


async def test_recover_crashed_closes_live_records_at_their_last_event(tmp_path: Path) -> None:
    path, t0 = tmp_path / "history.sqlite3", time.time()
    first = HistoryStore(path)
    await first.open()
    await record(first, a_call("done", t0 - 60))
    await record(first, a_call("live", t0, reason=None))      # aribot "crashes" in the middle of this call
    await first.record(ev.BargeIn(call_id="live", ts=t0 + 3, item_id="a1", played_ms=1, dropped_ms=2))
    await first.close()

    second = HistoryStore(path)
    await second.open()
    try:
        assert await second.recover_crashed() == 1
        live = await second.get("live")
        assert live is not None and (live["end_reason"], live["ended_at"], live["duration_s"]) == ("crashed", t0 + 3, 3)
        assert [t["text"] for t in live["turns"]] == ["hello"]          # what was said before the crash is kept
        done = await second.get("done")
        assert done is not None and done["end_reason"] == "caller_hangup"
        assert await second.recover_crashed() == 0
    finally:
        await second.close()


async def test_purge_deletes_old_calls_with_their_rows(store: HistoryStore) -> None:
    now = time.time()
    await record(store, a_call("ancient", now - 100 * DAY))
    await store.record(ev.ToolCalled(call_id="ancient", ts=now - 100 * DAY + 1, tool="t", tool_call_id="x",
                                     arguments="{}"))
    await store.record(ev.DtmfReceived(call_id="ancient", ts=now - 100 * DAY + 2, digit="1"))
    await record(store, a_call("recent", now - 10 * DAY))
    await record(store, a_call("live-but-old", now - 100 * DAY, reason=None))   # never deleted while open
    assert await store.purge(0) == 0                                    # 0 = keep forever
    assert await store.purge(90) == 1
    assert [c["id"] for c in await store.search()] == ["recent", "live-but-old"]
    for table in ("turns", "tools", "events"):
        assert rows(store.path, f"SELECT COUNT(*) FROM {table} WHERE call_id = 'ancient'") == [(0,)]


async def test_a_newer_schema_or_a_foreign_database_is_refused(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite3"
    with sqlite3.connect(newer) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(HistoryError, match=f"schema version {SCHEMA_VERSION + 1}, written by a newer aribot"):
        await HistoryStore(newer).open()
    foreign = tmp_path / "foreign.sqlite3"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE orders (id)")
    with pytest.raises(HistoryError, match="not an aribot history database"):
        await HistoryStore(foreign).open()
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(HistoryError, match="garbage.sqlite3"):
        await HistoryStore(garbage).open()
    current = HistoryStore(tmp_path / "ok.sqlite3")
    await current.open()
    await current.close()
    assert rows(tmp_path / "ok.sqlite3", "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert rows(tmp_path / "ok.sqlite3", "PRAGMA journal_mode") == [("wal",)]


async def test_a_failing_write_is_logged_once_and_the_caller_goes_on(store: HistoryStore, caplog) -> None:
    await store.record(ev.CallStarted(call_id="c1", channel_id="c1"))
    with sqlite3.connect(store.path) as conn:
        conn.execute("DROP TABLE turns")                               # every turn write now fails
    for n in range(3):
        store.submit(ev.Transcript(call_id="c1", role="caller", item_id=f"u{n}", text="x"))
    await store.flush()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "could not record call.transcript of call c1" in errors[0].getMessage()
    assert store.failed_writes == 3


# --- the plugin ------------------------------------------------------------------------------------

def fake_app(tmp_path: Path, **history: Any) -> SimpleNamespace:
    """What the plugin uses of core.app.App: settings, its own bus, extensions, http.web."""
    cfg = {"enabled": True, "path": str(tmp_path / "history.sqlite3"), "retention_days": 90, **history}
    webapp = web.Application()
    history_plugin.register_routes(webapp)
    return SimpleNamespace(settings=SimpleNamespace(history=SimpleNamespace(**cfg)), bus=EventBus(), extensions={},
                           data_dir=tmp_path,
                           http=SimpleNamespace(web=webapp))


async def test_plugin_records_the_events_of_its_app_and_closes_on_shutdown(tmp_path: Path) -> None:
    app, other = fake_app(tmp_path), fake_app(tmp_path / "other")
    (tmp_path / "other").mkdir()
    await history_plugin.startup(app)
    store = app.extensions["history"]
    assert app.http.web[SLOT].store is store
    app.bus.emit(None, ev.CallStarted(call_id="c1", channel_id="c1", caller_number="300"))
    app.bus.emit(None, ev.Transcript(call_id="c1", role="caller", item_id="u1", text="hi"))
    app.bus.emit(None, ev.CallEnded(call_id="c1", reason="caller_hangup", duration_s=1.0))
    other.bus.emit(None, ev.CallStarted(call_id="c2", channel_id="c2"))   # another aribot's call: not ours
    app.bus.emit(None, ev.CallStarted(call_id="c3", channel_id="c3"))     # still live when aribot stops
    await history_plugin.shutdown(app)
    assert "history" not in app.extensions and app.http.web[SLOT].store is None
    app.bus.emit(None, ev.CallStarted(call_id="c4", channel_id="c4"))     # after shutdown: not recorded
    assert rows(tmp_path / "history.sqlite3", "SELECT id, caller_number, end_reason FROM calls ORDER BY id") == \
           [("c1", "300", "caller_hangup"), ("c3", "", "shutdown")]
    assert rows(tmp_path / "history.sqlite3", "SELECT text FROM turns") == [("hi",)]


async def test_plugin_serves_calls_without_history_when_the_database_is_unusable(tmp_path: Path, caplog) -> None:
    (tmp_path / "a-file").write_text("")
    app = fake_app(tmp_path, path=str(tmp_path / "a-file" / "history.sqlite3"))   # parent is not a folder
    await history_plugin.startup(app)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "history is off for this run, calls are still served" in errors[0]
    assert "history" not in app.extensions
    app.bus.emit(None, ev.CallStarted(call_id="c1", channel_id="c1"))   # nobody records, nothing breaks
    off = fake_app(tmp_path, enabled=False)
    await history_plugin.startup(off)
    assert "history" not in off.extensions and "enabled = false" in off.http.web[SLOT].why
    await history_plugin.shutdown(app)


def test_settings_defaults_and_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ARIBOT_STORAGE__DATA_DIR", str(tmp_path / "state"))
    settings, _plugins = configure()
    assert (settings.history.enabled, settings.history.path, settings.history.retention_days) == (
        True, "history.sqlite3", 90)
    bad = tmp_path / "bad.toml"
    bad.write_text('[history]\nretention_days = -1\npath = ""\n')
    with pytest.raises(SettingsError) as error:
        configure(bad)
    assert "history.retention_days = -1" in str(error.value) and "history.path = ''" in str(error.value)
    entry_points = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]["aribot"]
    assert entry_points["history"] == "aribot.plugins.history.plugin"


async def test_the_database_is_private_in_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative to [storage] data_dir, which is created 0700; the database file is 0600, and an
    existing one readable by others is made private."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ARIBOT_STORAGE__DATA_DIR", str(tmp_path / "state" / "aribot"))
    monkeypatch.setenv("ARIBOT_UI__ENABLED", "false")
    app = App(*configure())
    await history_plugin.startup(app)
    await history_plugin.shutdown(app)
    db = tmp_path / "state" / "aribot" / "history.sqlite3"
    assert db.stat().st_mode & 0o777 == 0o600 and db.parent.stat().st_mode & 0o777 == 0o700
    db.chmod(0o644)
    await history_plugin.startup(app)
    await history_plugin.shutdown(app)
    assert db.stat().st_mode & 0o777 == 0o600


async def test_the_wal_and_shared_memory_files_are_private_too(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """SQLite gives new -wal/-shm files the database's mode; ones an earlier run left behind keep
    their own, so they are made private as well (one warning each)."""
    db = tmp_path / "history.sqlite3"
    store = HistoryStore(db)
    await store.open()
    await record(store, a_call("c1", time.time(), said="my PIN is 4711"))
    sides = [db.with_name(db.name + end) for end in ("-wal", "-shm")]
    assert all(path.exists() for path in sides)                         # WAL mode: both exist while open
    assert {path.name: path.stat().st_mode & 0o777 for path in (db, *sides)} == {
        "history.sqlite3": 0o600, "history.sqlite3-wal": 0o600, "history.sqlite3-shm": 0o600}
    # a crash leaves them behind; someone (a backup restore, a umask 022 copy) made them readable
    kept = {path: path.read_bytes() for path in sides}
    await store.close()
    for path, data in kept.items():
        path.write_bytes(data)
        path.chmod(0o644)
    caplog.clear()
    store = HistoryStore(db)
    await store.open()
    try:
        assert [path.stat().st_mode & 0o777 for path in sides if path.exists()] == [0o600, 0o600]
        warned = [r.getMessage() for r in caplog.records if "readable by others" in r.getMessage()]
        assert len(warned) == 2 and all("(mode 644); made it private (600)" in line for line in warned)
        assert (await store.get("c1"))["turns"][0]["text"] == "my PIN is 4711"   # nothing lost by that
    finally:
        await store.close()


# --- HTTP routes ---------------------------------------------------------------------------------

@pytest.fixture
async def client(aiohttp_client: Any, store: HistoryStore) -> Any:
    webapp = web.Application()
    add_routes(webapp).store = store
    return await aiohttp_client(webapp)


async def test_routes_search_and_get(client: Any, store: HistoryStore) -> None:
    day = datetime(2026, 11, 24, 12, 0).timestamp()
    await record(store, a_call("c-old", day - DAY, number="+4930111"))
    await record(store, a_call("c-day", day, number="+4940222", said="where is my parcel"))
    await record(store, a_call("c-new", day + DAY, number="+4930333"))

    async def ids(query: str) -> list[str]:
        resp = await client.get(f"/history{query}")
        assert resp.status == 200, await resp.text()
        return [c["id"] for c in await resp.json()]

    assert await ids("") == ["c-new", "c-day", "c-old"]
    assert await ids("?caller=4930") == ["c-new", "c-old"]
    assert await ids("?since=2026-11-24&until=2026-11-24") == ["c-day"]     # a bare until date includes its day
    assert await ids(f"?since={day - 1}&until={day + 1}") == ["c-day"]     # epoch seconds
    assert await ids("?since=2026-11-24T12:00:01") == ["c-new"]
    assert await ids("?q=parcel") == ["c-day"]
    assert await ids("?limit=1&offset=2") == ["c-old"]
    await record(store, [ev.CallEnded(call_id="c-old", ts=day - DAY + 9, reason="max_duration", duration_s=9.0,
                                      stats={"backend": "gpt_live"})])
    assert await ids("?end_reason=max_duration") == ["c-old"]
    assert await ids("?backend=gpt_live") == ["c-old"] and await ids("?backend=local") == []
    resp = await client.get("/history/c-day")
    assert resp.status == 200
    body = await resp.json()
    assert body["id"] == "c-day" and body["turns"][0]["text"] == "where is my parcel"


@pytest.mark.parametrize("query, message", [
    ("since=yesterday", "since: expected an ISO 8601 date/time or epoch seconds, got 'yesterday'"),
    ("until=2026-13-01", "until: expected an ISO 8601 date/time or epoch seconds, got '2026-13-01'"),
    ("since=nan", "since: expected an ISO 8601 date/time or epoch seconds, got 'nan'"),
    ("limit=0", "limit: expected an integer 1..1000, got '0'"),
    ("limit=ten", "limit: expected an integer 1..1000, got 'ten'"),
    ("offset=-1", "offset: expected an integer 0..1000000000, got '-1'"),
])
async def test_routes_refuse_bad_values_with_one_line(client: Any, query: str, message: str) -> None:
    resp = await client.get(f"/history?{query}")
    assert resp.status == 400
    assert await resp.json() == {"error": message}


async def test_routes_unknown_call_and_history_off(client: Any, aiohttp_client: Any) -> None:
    resp = await client.get("/history/no-such-call")
    assert resp.status == 404 and await resp.json() == {"error": "no call 'no-such-call' in the history"}
    webapp = web.Application()
    add_routes(webapp).why = "call history is off ([history] enabled = false)"
    off = await aiohttp_client(webapp)
    resp = await off.get("/history")
    assert resp.status == 503 and "enabled = false" in (await resp.json())["error"]


async def test_events_queued_while_the_worker_is_busy_are_written_in_one_commit_in_order(store: HistoryStore) -> None:
    """Group commit: what piles up while the worker writes goes into one transaction, in order."""
    import threading

    await store.record(ev.CallStarted(call_id="c1", channel_id="c1"))
    commits, gate = store.commits, threading.Event()
    blocked = store._executor.submit(gate.wait, 5)   # the worker is busy (e.g. a WAL checkpoint)
    for n in range(50):
        store.submit(ev.Transcript(call_id="c1", role="caller", item_id=f"u{n}", text=f"turn {n}"))
    gate.set()
    blocked.result(5)
    await store.flush()
    assert store.commits == commits + 1
    assert rows(store.path, "SELECT seq, text FROM turns ORDER BY seq") == [(n + 1, f"turn {n}") for n in range(50)]


async def test_a_bad_event_in_a_group_costs_only_itself(store: HistoryStore, caplog) -> None:
    import threading

    await store.record(ev.CallStarted(call_id="c1", channel_id="c1"))
    gate = threading.Event()
    blocked = store._executor.submit(gate.wait, 5)
    store.submit(ev.Transcript(call_id="c1", role="caller", item_id="u1", text="before"))
    store.submit(ev.Transcript(call_id="c1", role="caller", item_id="u2", text=object()))  # not storable
    store.submit(ev.Transcript(call_id="c1", role="caller", item_id="u3", text="after"))
    gate.set()
    blocked.result(5)
    await store.flush()
    assert [text for (text,) in rows(store.path, "SELECT text FROM turns ORDER BY seq")] == ["before", "after"]
    assert store.failed_writes == 1


async def test_a_stalled_writer_drops_new_events_counted_instead_of_filling_memory(
        store: HistoryStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import threading

    from aribot.plugins.history import store as store_module
    monkeypatch.setattr(store_module, "QUEUE_LIMIT", 3)
    stalled = threading.Event()
    assert store._executor is not None
    store._executor.submit(stalled.wait, 10)            # the one writer thread is stuck (a stalled disk)
    t0 = time.time()
    for i in range(5):
        store.submit(ev.CallStarted(call_id=f"c{i}", ts=t0, channel_id=f"c{i}", caller_number="200"))
    assert store.dropped == 2
    stalled.set()
    await store.flush()
    assert rows(store.path, "SELECT id FROM calls ORDER BY id") == [("c0",), ("c1",), ("c2",)]
    assert len([r for r in caplog.records if "new ones are dropped" in r.getMessage()]) == 1
