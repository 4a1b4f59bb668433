"""Call-history plugin: every call's record (caller, timings, transcript turns, tool calls, timeline,
end reason) is written to SQLite as the call goes (``[history]`` settings), kept across restarts,
searchable over the HTTP API (``/history``) and from other plugins (``app.extensions["history"]``).

At start-up, records of calls that were live when aribot crashed are closed (reason ``crashed``)
and records older than ``retention_days`` are deleted (again every hour). If the database cannot
be used, one error line says why and aribot serves calls without history.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aribot import Setting, SettingsError, as_bool, hookimpl, number
from aribot.core.settings import nonempty
from aribot.plugins.history.routes import SLOT, Slot, add_routes
from aribot.plugins.history.store import HistoryError, HistoryStore

log = logging.getLogger("aribot.history")
PURGE_EVERY_S = 3600.0


@dataclass
class Recorder:
    """The history of one running App."""

    app: Any
    store: HistoryStore
    retention_days: int
    purger: asyncio.Task[None] | None = field(default=None, repr=False)


@hookimpl
def register_settings(register):
    register(Setting("history.enabled", True, as_bool, "true or false",
                     "record every call (caller, timings, transcript, tool calls, end reason) in SQLite"))
    register(Setting("history.path", "history.sqlite3", nonempty, "a file path for the SQLite database",
                     "SQLite file of the call history, created private (0600); relative to [storage] data_dir"))
    register(Setting("history.retention_days", 90, number(int, 0, 36500), "whole days 0..36500 (0 = keep forever)",
                     "calls older than this many days are deleted (at start and hourly); 0 = keep forever"))


@hookimpl
def register_routes(app):
    add_routes(app)


def _slot(app: Any) -> Slot:
    web = getattr(getattr(app, "http", None), "web", None)
    slot = web.get(SLOT) if web is not None else None
    return slot if slot is not None else Slot()


@hookimpl
async def startup(app):
    cfg, slot = app.settings.history, _slot(app)
    if not cfg.enabled:
        slot.why = "call history is off ([history] enabled = false)"
        log.info("%s", slot.why)
        return
    try:
        path = Path(cfg.path).expanduser()
        store = HistoryStore(path if path.is_absolute() else app.data_dir / path)
    except SettingsError as exc:
        slot.why = f"call history is off for this run: {exc}"
        log.error("call history: %s; history is off for this run, calls are still served", exc)
        return
    try:
        await store.open()
        crashed = await store.recover_crashed()
        purged = await store.purge(cfg.retention_days)
    except (HistoryError, sqlite3.Error) as exc:
        await store.close()
        slot.why = f"call history is off for this run: {exc}"
        log.error("call history: %s; history is off for this run, calls are still served", exc)
        return
    recorder = Recorder(app, store, cfg.retention_days)
    app.extensions["history"] = store
    app.extensions["history_recorder"] = recorder
    slot.store = store
    # every call event of this aribot, queued for the writer thread (never touches the disk here)
    app.bus.subscribe(None, lambda event: store.submit(event) and None, owner="history")
    if cfg.retention_days:
        recorder.purger = asyncio.create_task(_purge_periodically(recorder), name="history-purge")
    kept = f"{cfg.retention_days} days" if cfg.retention_days else "forever"
    log.info("call history in %s (kept %s; closed %d record(s) left open by a crash, deleted %d older call(s))",
             store.path.resolve(), kept, crashed, purged)


async def _purge_periodically(recorder: Recorder) -> None:
    while True:
        await asyncio.sleep(PURGE_EVERY_S)
        try:
            if purged := await recorder.store.purge(recorder.retention_days):
                log.info("call history: deleted %d call(s) older than %d days", purged, recorder.retention_days)
        except (HistoryError, sqlite3.Error) as exc:
            log.warning("call history: deleting old calls failed (%s); retrying in %.0f s", exc, PURGE_EVERY_S)


@hookimpl
async def shutdown(app):
    recorder = app.extensions.pop("history_recorder", None)
    if recorder is None:
        return
    app.bus.disconnect_owner("history")
    if recorder.purger is not None:
        recorder.purger.cancel()
    slot = _slot(app)
    slot.store, slot.why = None, "call history has stopped"
    app.extensions.pop("history", None)
    try:
        if unfinished := await recorder.store.close_unfinished("shutdown"):
            log.warning("call history: %d call(s) still live at shutdown recorded as ended (shutdown)", unfinished)
    except (HistoryError, sqlite3.Error) as exc:
        log.error("call history: could not close the records of live calls (%s); they will show as crashed", exc)
    await recorder.store.close()
