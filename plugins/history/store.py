"""Call history in SQLite: one row per call, its transcript turns, tool calls and a timeline.

Events are written as they happen, by one worker thread that owns the one connection (FIFO, so
events are written in the order they were emitted); the asyncio loop, which also paces RTP every
20 ms, never waits for the disk. ``submit()`` only appends the event to a queue; the worker takes
everything queued at once and writes it as one transaction (group commit): one event alone is one
commit, as before, and under load (hundreds of calls) a commit carries every event of the last
few milliseconds, so a crash of aribot loses at most those (a transcript turn is written when it
completes, never per delta). Per event this costs the worker about a third of a commit of its own,
and the worker holds the GIL that much less, which is what delays the pacer (the capacity
benchmark, benchmarks/bench_capacity.py, measures it with and without history). Measured on this
project's 2-core machine (``python -m aribot.plugins.history.bench``), one event per commit: ``submit()``
costs the loop 2-4 µs; the write and commit cost the worker ~18 µs (an occasional WAL checkpoint
takes 10-170 ms, in the worker). WAL with synchronous=NORMAL keeps every commit across a crash of
the process; only a power loss or OS crash can drop the last few commits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aribot.core import events as ev

log = logging.getLogger("aribot.history")
SCHEMA_VERSION = 3
SCHEMA = """
CREATE TABLE calls (id TEXT PRIMARY KEY, caller_number TEXT NOT NULL DEFAULT '',
    caller_name TEXT NOT NULL DEFAULT '', extension TEXT NOT NULL DEFAULT '', started_at REAL NOT NULL,
    answered_at REAL, ended_at REAL, end_reason TEXT, duration_s REAL, mode TEXT, stats TEXT, cost REAL,
    recording TEXT);
CREATE INDEX calls_started_at ON calls (started_at);
CREATE INDEX calls_caller_number ON calls (caller_number);
CREATE TABLE turns (call_id TEXT NOT NULL, seq INTEGER NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('caller', 'assistant')), item_id TEXT NOT NULL DEFAULT '',
    text TEXT NOT NULL, ts REAL NOT NULL, interrupted INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (call_id, seq));
CREATE TABLE tools (call_id TEXT NOT NULL, seq INTEGER NOT NULL, tool TEXT NOT NULL, tool_call_id TEXT NOT NULL,
    arguments TEXT NOT NULL DEFAULT '', result TEXT, error TEXT, duration_ms REAL, ts REAL NOT NULL,
    PRIMARY KEY (call_id, seq));
CREATE TABLE events (call_id TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, ts REAL NOT NULL,
    data TEXT NOT NULL DEFAULT '{}', PRIMARY KEY (call_id, seq));
"""
# what turns a database of version N - 1 into version N (run in one transaction, in order)
MIGRATIONS = {
    2: "ALTER TABLE calls ADD COLUMN cost REAL;",   # the call's AI cost in USD (the cost plugin's CostUpdated)
    3: "ALTER TABLE calls ADD COLUMN recording TEXT;",   # the call's WAV file (plugins/recording), deleted with it
}
CALL_COLUMNS = ("id", "caller_number", "caller_name", "extension", "started_at", "answered_at", "ended_at",
                "end_reason", "duration_s", "mode", "cost")
BACKEND = "json_extract(stats, '$.backend')"  # CallEnded's stats name the call's speech backend
SIDE_FILES = ("-wal", "-shm", "-journal")  # SQLite's files beside the database
# events waiting for the writer thread; beyond this (a disk that stalls for minutes while calls go
# on) new events are dropped and counted rather than filling memory
QUEUE_LIMIT = 100_000
# written to the call's row or its turns and tools, or too frequent for the timeline (a CostUpdated
# follows every Realtime response: only the latest total is kept, in calls.cost)
NOT_IN_TIMELINE = {ev.CallStarted.name, ev.CallAnswered.name, ev.CallEnded.name, ev.Transcript.name,
                   ev.TranscriptDelta.name, ev.ToolCalled.name, ev.ToolFinished.name, ev.CostUpdated.name}


class HistoryError(RuntimeError):
    """The history database cannot be used (cannot be opened, newer schema, not ours)."""


@dataclass
class _Live:
    """What the writer remembers about a call it is recording (worker thread only)."""

    seq: int = 0
    started: dict[str, float] = field(default_factory=dict)   # item_id → when its turn started
    interrupted: set[str] = field(default_factory=set)        # assistant items cut by a barge-in


class HistoryStore:
    """The call-history database at ``path`` (created if missing). ``await open()`` first."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.failed_writes = 0
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._live: dict[str, _Live] = {}
        self._failing = False
        self._queue: deque[ev.Event] = deque()  # submitted, not yet taken by the worker
        self.dropped = 0  # events not written because the queue was full
        self._batch_queued = False              # a _write_queued job is waiting in the executor
        self.commits = 0

    # --- lifecycle ----------------------------------------------------------------------------
    async def open(self) -> None:
        """Open (or create) the database; raise HistoryError saying why it cannot be used."""
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="aribot-history")
        try:
            await self._run(self._open)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # callers' numbers and words: only aribot's user may read them (SQLite creates the WAL
            # and shared-memory files with the database file's mode; ones left by an earlier run
            # keep theirs, so they are checked too)
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            for path in (self.path, *(self.path.with_name(self.path.name + end) for end in SIDE_FILES)):
                _make_private(path)
            conn = sqlite3.connect(self.path, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise HistoryError(f"cannot open {self.path}: {exc}") from exc
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=2000")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if version > SCHEMA_VERSION:
                raise HistoryError(f"{self.path} has history schema version {version}, written by a newer aribot; "
                                   f"this aribot knows version {SCHEMA_VERSION}: upgrade aribot or use another path")
            if version == 0 and tables:
                raise HistoryError(f"{self.path} is not an aribot history database (it has tables {sorted(tables)} "
                                   f"but no schema version)")
            if version == 0:
                conn.executescript(f"BEGIN; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
            elif version < SCHEMA_VERSION:
                steps = " ".join(MIGRATIONS[v] for v in range(version + 1, SCHEMA_VERSION + 1))
                conn.executescript(f"BEGIN; {steps} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
                log.info("call history: %s upgraded from schema version %d to %d", self.path, version, SCHEMA_VERSION)
        except sqlite3.Error as exc:
            conn.close()
            raise HistoryError(f"cannot use {self.path}: {exc}") from exc
        except HistoryError:
            conn.close()
            raise
        self._conn = conn

    async def flush(self) -> None:
        """Wait until every event submitted so far is written."""
        if self._executor is not None:
            await self._run(lambda: None)

    async def close(self) -> None:
        """Write what is queued, then close the database."""
        if self._executor is None:
            return
        await self._run(self._close)
        self._executor.shutdown(wait=False)
        self._executor = None

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _run(self, fn: Any, *args: Any) -> Any:
        if self._executor is None:
            raise HistoryError("the history store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise HistoryError("the history store is not open")
        return self._conn

    # --- writing ------------------------------------------------------------------------------
    def submit(self, event: ev.Event) -> Future[None] | None:
        """Queue ``event`` for writing and return at once (for bus receivers); failures are logged.
        Returns the executor job that will write it when this call scheduled one."""
        if self._executor is None or isinstance(event, ev.TranscriptDelta):
            return None
        if len(self._queue) >= QUEUE_LIMIT:
            self.dropped += 1
            if self.dropped == 1:
                log.error("history: %d events wait for the database (is the disk stalled?); new ones are "
                          "dropped and counted until it catches up", QUEUE_LIMIT)
            return None
        self._queue.append(event)
        if self._batch_queued:
            return None
        self._batch_queued = True
        return self._executor.submit(self._write_queued)

    def _write_queued(self) -> None:
        """Worker: write everything queued so far in one transaction. If that fails, each event is
        tried on its own, so one bad event costs only itself."""
        self._batch_queued = False  # before taking: an event queued from now on schedules a new job
        events: list[ev.Event] = []
        while self._queue:
            events.append(self._queue.popleft())
        if len(events) == 1:
            self._write_logged(events[0])
            return
        if not events:
            return
        try:
            with self.conn:
                for event in events:
                    self._apply(event)
            self.commits += 1
        except Exception:
            for event in events:  # forget what the failed transaction counted; re-read from the database
                self._live.pop(event.call_id, None)
            for event in events:
                self._write_logged(event)
        else:
            self._recovered()

    async def record(self, event: ev.Event) -> None:
        """Write one event now (in the worker thread); errors are raised."""
        await self._run(self._write, event)

    def _write_logged(self, event: ev.Event) -> None:
        try:
            self._write(event)
        except Exception as exc:
            self.failed_writes += 1
            if not self._failing:
                self._failing = True
                log.error("call history: could not record %s of call %s in %s (%s); calls go on, the history "
                          "misses events until writes succeed again", event.name, event.call_id, self.path, exc)
            return
        self._recovered()

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.warning("call history: writes to %s succeed again (%d events lost in all)", self.path,
                        self.failed_writes)

    def _write(self, event: ev.Event) -> None:
        """Write one event as its own transaction."""
        with self.conn:
            self._apply(event)
        self.commits += 1

    def _apply(self, event: ev.Event) -> None:
        """The statements for one event, inside the caller's transaction."""
        if isinstance(event, ev.TranscriptDelta):
            return  # turns are written when they complete (call.transcript)
        conn, cid, ts = self.conn, event.call_id, event.ts
        live, first = self._live.get(cid), cid not in self._live
        if live is None:
            live = _Live(self._last_seq(cid))
        if first:   # a call first seen mid-way (e.g. history enabled during it) still gets a row
            conn.execute("INSERT OR IGNORE INTO calls (id, started_at) VALUES (?, ?)", (cid, ts))
        if isinstance(event, ev.CallStarted):
            conn.execute("UPDATE calls SET caller_number = ?, caller_name = ?, extension = ?, started_at = ? "
                         "WHERE id = ?", (event.caller_number, event.caller_name, event.extension, ts, cid))
        elif isinstance(event, ev.CallAnswered):
            conn.execute("UPDATE calls SET answered_at = ? WHERE id = ?", (ts, cid))
        elif isinstance(event, ev.CostUpdated):
            conn.execute("UPDATE calls SET cost = ? WHERE id = ?", (float(event.usd), cid))
        elif isinstance(event, ev.CallEnded):
            conn.execute("UPDATE calls SET ended_at = ?, end_reason = ?, duration_s = ?, stats = ? WHERE id = ?",
                         (ts, event.reason, event.duration_s, json.dumps(event.stats, default=str), cid))
        elif isinstance(event, ev.Transcript):
            live.seq += 1
            conn.execute("INSERT INTO turns VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (cid, live.seq, event.role, event.item_id, event.text,
                          live.started.get(event.item_id, ts), event.item_id in live.interrupted))
        elif isinstance(event, ev.ToolCalled):
            live.seq += 1
            conn.execute("INSERT INTO tools (call_id, seq, tool, tool_call_id, arguments, ts) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (cid, live.seq, event.tool, event.tool_call_id,
                                                      event.arguments, ts))
        elif isinstance(event, ev.ToolFinished):
            done = (event.result, event.error, event.duration_ms, cid, event.tool_call_id)
            if not conn.execute("UPDATE tools SET result = ?, error = ?, duration_ms = ? "
                                "WHERE call_id = ? AND tool_call_id = ?", done).rowcount:
                live.seq += 1
                conn.execute("INSERT INTO tools VALUES (?, ?, ?, ?, '', ?, ?, ?, ?)",
                             (cid, live.seq, event.tool, event.tool_call_id, *done[:3], ts))
        elif isinstance(event, ev.OutboundOutcome) and event.outcome in ("no_answer", "busy", "failed"):
            # a placed call never answered (plugins/outbound) has no CallEnded: its outcome ends the record
            conn.execute("UPDATE calls SET ended_at = ?, end_reason = ?, duration_s = 0, extension = 'outbound' "
                         "WHERE id = ? AND answered_at IS NULL AND ended_at IS NULL", (ts, event.outcome, cid))
        if event.name not in NOT_IN_TIMELINE:
            self._timeline(live, event)
        if isinstance(event, ev.CallEnded) or isinstance(event, ev.OutboundOutcome) and conn.execute(
                "SELECT 1 FROM calls WHERE id = ? AND ended_at IS NOT NULL", (cid,)).fetchone():
            self._live.pop(cid, None)
        elif first:
            self._live[cid] = live

    def _timeline(self, live: _Live, event: ev.Event) -> None:
        conn, cid = self.conn, event.call_id
        data = {k: v for k, v in event.to_json().items() if k not in ("call_id", "ts", "type")}
        live.seq += 1
        conn.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?)",
                     (cid, live.seq, event.name, event.ts, json.dumps(data, default=str)))
        if isinstance(event, ev.ActivationOpened):
            conn.execute("UPDATE calls SET mode = COALESCE(mode, ?) WHERE id = ?", (event.mode, cid))
        elif isinstance(event, ev.SpeechStarted) and event.item_id:
            live.started.setdefault(event.item_id, event.ts)
        elif isinstance(event, ev.BotAudioStarted) and event.item_id:
            live.started.setdefault(event.item_id, event.ts)
            conn.execute("UPDATE turns SET ts = MIN(ts, ?) WHERE call_id = ? AND item_id = ? AND role = 'assistant'",
                         (event.ts, cid, event.item_id))
        elif isinstance(event, ev.BargeIn) and event.item_id:
            live.interrupted.add(event.item_id)
            conn.execute("UPDATE turns SET interrupted = 1 WHERE call_id = ? AND item_id = ? AND role = 'assistant'",
                         (cid, event.item_id))

    def _last_seq(self, call_id: str) -> int:
        return max(self.conn.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {table} WHERE call_id = ?",
                                     (call_id,)).fetchone()[0] for table in ("turns", "tools", "events"))

    # --- maintenance --------------------------------------------------------------------------
    async def recover_crashed(self) -> int:
        """Close records of calls that were live when aribot crashed (reason ``crashed``)."""
        return await self.close_unfinished("crashed")

    async def close_unfinished(self, reason: str) -> int:
        """End every call without ``ended_at`` at its last recorded event; returns how many."""
        return await self._run(self._close_unfinished, reason)

    def _close_unfinished(self, reason: str) -> int:
        last = "MAX(started_at, COALESCE(answered_at, 0), " + ", ".join(
            f"COALESCE((SELECT MAX(ts) FROM {table} WHERE call_id = calls.id), 0)"
            for table in ("turns", "tools", "events")) + ")"
        with self.conn as conn:
            closed = conn.execute(f"UPDATE calls SET ended_at = {last}, duration_s = {last} - started_at, "
                                  f"end_reason = ? WHERE ended_at IS NULL", (reason,)).rowcount
        self._live.clear()
        return closed

    async def purge(self, retention_days: float) -> int:
        """Delete calls that started more than ``retention_days`` ago (0 = keep all); returns how many."""
        if retention_days <= 0:
            return 0
        return await self._run(self._purge, time.time() - retention_days * 86400)

    def _purge(self, cutoff: float) -> int:
        return self._delete_calls("started_at < ? AND ended_at IS NOT NULL", (cutoff,))

    async def delete(self, call_id: str) -> bool:
        """Delete one call's record and its recording file; False if there was none."""
        return bool(await self._run(self._delete_calls, "id = ?", (call_id,)))

    def _delete_calls(self, where: str, params: tuple[Any, ...]) -> int:
        """Delete the calls matching ``where`` with everything of theirs, then their recording files."""
        with self.conn as conn:
            files = [row[0] for row in conn.execute(f"SELECT recording FROM calls WHERE {where} AND recording IS NOT "
                                                    "NULL", params)]
            for table in ("turns", "tools", "events"):
                conn.execute(f"DELETE FROM {table} WHERE call_id IN (SELECT id FROM calls WHERE {where})", params)
            deleted = conn.execute(f"DELETE FROM calls WHERE {where}", params).rowcount
        for path in files:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.error("call history: could not delete the recording %s (%s); delete it yourself", path,
                          exc.strerror)
        return deleted

    def set_recording(self, call_id: str, path: str | None) -> None:
        """Point the call's record at its recording file (None: at none); written by the worker, after
        the events submitted before, and never waited for. A failure is one log line."""
        if self._executor is not None:
            self._executor.submit(self._set_recording, call_id, path)

    def _set_recording(self, call_id: str, path: str | None) -> None:
        try:
            with self.conn as conn:
                conn.execute("INSERT OR IGNORE INTO calls (id, started_at) VALUES (?, ?)", (call_id, time.time()))
                conn.execute("UPDATE calls SET recording = ? WHERE id = ?", (path, call_id))
        except (sqlite3.Error, HistoryError) as exc:
            log.error("call history: could not note the recording of call %s (%s)", call_id, exc)

    # --- reading ------------------------------------------------------------------------------
    async def search(self, caller: str | None = None, since: float | None = None, until: float | None = None,
                     text: str | None = None, limit: int = 100, offset: int = 0, end_reason: str | None = None,
                     backend: str | None = None) -> list[dict[str, Any]]:
        """Calls, newest first: ``caller`` is a substring of the number or name, ``since`` <=
        started_at < ``until`` (epoch seconds), ``text`` a substring of any transcript turn,
        ``end_reason`` and ``backend`` (the speech backend the call used) exactly that."""
        where, params = ["1"], []
        if caller:
            where.append(r"(caller_number LIKE ? ESCAPE '\' OR caller_name LIKE ? ESCAPE '\')")
            params += [_like(caller)] * 2
        if since is not None:
            where.append("started_at >= ?")
            params.append(since)
        if until is not None:
            where.append("started_at < ?")
            params.append(until)
        if text:
            where.append(r"EXISTS (SELECT 1 FROM turns WHERE call_id = calls.id AND text LIKE ? ESCAPE '\')")
            params.append(_like(text))
        if end_reason:
            where.append("end_reason = ?")
            params.append(end_reason)
        if backend:
            where.append(f"{BACKEND} = ?")
            params.append(backend)
        sql = (f"SELECT {', '.join(CALL_COLUMNS)}, {BACKEND} AS backend FROM calls WHERE {' AND '.join(where)} "
               f"ORDER BY started_at DESC, id LIMIT ? OFFSET ?")
        return await self._run(self._rows, sql, (*params, limit, offset))

    async def choices(self) -> dict[str, list[str]]:
        """The end reasons and backends the history holds, to filter by: {"end_reason": [...], "backend": [...]}."""
        sql = "SELECT DISTINCT {} AS value FROM calls WHERE value IS NOT NULL AND value != '' ORDER BY value"
        return {name: [row["value"] for row in await self._run(self._rows, sql.format(column), ())]
                for name, column in (("end_reason", "end_reason"), ("backend", BACKEND))}

    def _rows(self, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        return [dict(row) for row in self.conn.execute(sql, params)]

    async def get(self, call_id: str) -> dict[str, Any] | None:
        """One call with its ``turns`` (in spoken order), ``tools`` and ``timeline``; None if unknown."""
        return await self._run(self._get, call_id)

    def _get(self, call_id: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM calls WHERE id = ?", (call_id,)).fetchone()
        if row is None:
            return None
        call = dict(row)
        call["stats"] = json.loads(call["stats"]) if call["stats"] else {}
        q = "SELECT * FROM {} WHERE call_id = ? ORDER BY {}"
        call["timeline"] = [{**dict(r), "data": json.loads(r["data"])}
                            for r in self.conn.execute(q.format("events", "seq"), (call_id,))]
        latency = {e["data"].get("item_id"): e["data"].get("latency_ms") for e in call["timeline"]
                   if e["type"] == ev.BotAudioStarted.name}
        call["turns"] = [{**dict(r), "interrupted": bool(r["interrupted"]),
                          **({"latency_ms": latency.get(r["item_id"])} if r["role"] == "assistant" else {})}
                         for r in self.conn.execute(q.format("turns", "ts, seq"), (call_id,))]
        call["tools"] = [dict(r) for r in self.conn.execute(q.format("tools", "seq"), (call_id,))]
        outcomes = [e["data"].get("outcome") for e in call["timeline"] if e["type"] == ev.OutboundOutcome.name]
        if outcomes:   # a call aribot placed: human, machine, no_answer, busy or failed
            call["outcome"] = outcomes[-1]
        for part in ("turns", "tools", "timeline"):
            for item in call[part]:
                del item["call_id"]
        return call

    async def day_summary(self, since: float, until: float | None = None) -> dict[str, Any]:
        """What the dashboard's overview counts of the calls that started in [``since``, ``until``)
        (epoch seconds; ``until`` None = now), events of those calls before ``until`` only:
        ``calls``: (id, started_at, answered, end_reason or None while live, cost USD or None) per
        call; ``latencies``: (local hour 0-23, AI response latency in whole ms, how many);
        ``barge_ins``, ``tool_calls``, ``tool_errors``: counts. Events are found through the
        calls' ids (indexed), so a long history is never scanned; latencies come grouped, so a
        busy day (1M turns) is a few thousand rows."""
        return await self._run(self._day_summary, since, time.time() if until is None else until)

    def _day_summary(self, since: float, until: float) -> dict[str, Any]:
        conn, span = self.conn, (since, until)
        ids = "call_id IN (SELECT id FROM calls WHERE started_at >= ? AND started_at < ?) AND ts < ?"
        calls = [tuple(row) for row in conn.execute(
            "SELECT id, started_at, answered_at IS NOT NULL, CASE WHEN ended_at IS NULL THEN NULL "
            "ELSE COALESCE(end_reason, '') END, cost FROM calls WHERE started_at >= ? AND started_at < ?", span)]
        latencies = [tuple(row) for row in conn.execute(
            "SELECT CAST(strftime('%H', ts, 'unixepoch', 'localtime') AS INTEGER) AS hour, "
            "ROUND(json_extract(data, '$.latency_ms')) AS ms, COUNT(*) FROM events "
            f"WHERE {ids} AND type = ? AND json_extract(data, '$.latency_ms') IS NOT NULL GROUP BY hour, ms",
            (*span, until, ev.BotAudioStarted.name))]
        barge_ins = conn.execute(f"SELECT COUNT(*) FROM events WHERE {ids} AND type = ?",
                                 (*span, until, ev.BargeIn.name)).fetchone()[0]
        tool_calls, tool_errors = conn.execute(
            f"SELECT COUNT(*), COALESCE(SUM(COALESCE(error, '') != ''), 0) FROM tools WHERE {ids}",
            (*span, until)).fetchone()
        return {"calls": calls, "latencies": latencies, "barge_ins": barge_ins, "tool_calls": tool_calls,
                "tool_errors": tool_errors}


def _make_private(path: Path) -> None:
    """Take group and other permissions off ``path`` if it exists (one warning line if it had any)."""
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        return
    if mode & 0o077:
        path.chmod(0o600)
        log.warning("call history: %s was readable by others (mode %o); made it private (600)", path, mode)


def _like(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere (its own % and _ taken literally)."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
