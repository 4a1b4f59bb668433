"""The cost plugin without Asterisk: a Realtime usage block priced by hand, GPT-Live's seconds and
delegated tokens, free and per-minute backends, bad usage and bad prices, ``[call] max_cost``, and
what the history and /metrics keep of ``CostUpdated``."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import aribot
import aribot.plugins.cost as cost_plugin
import aribot.plugins.metrics as metrics_plugin
from aribot.core import events as ev
from aribot.core.defaults import CORE_SETTINGS
from aribot.core.events import EventBus
from aribot.core.settings import SettingsError, load_settings
from aribot.plugins.cost.prices import PRICE_SETTINGS, UsageError, token_counts
from aribot.plugins.history.store import SCHEMA_VERSION, HistoryStore
from tests.unit.test_metrics import fake_app as metrics_app
from tests.unit.test_metrics import scrape, value

REPO = Path(__file__).resolve().parents[2]

# A real Realtime response.done usage block (gpt-4o-realtime, as posted on OpenAI's forum).
USAGE = {"total_tokens": 821, "input_tokens": 789, "output_tokens": 32,
         "input_token_details": {"text_tokens": 313, "audio_tokens": 476, "cached_tokens": 640,
                                 "cached_tokens_details": {"text_tokens": 256, "audio_tokens": 384}},
         "output_token_details": {"text_tokens": 9, "audio_tokens": 23}}
# By hand, at the default prices (USD per 1M tokens):
#   text input    313 - 256 =  57 × $4    =  228.0
#   text cached               256 × $0.4  =  102.4
#   audio input   476 - 384 =  92 × $32   = 2944.0
#   audio cached              384 × $0.4  =  153.6
#   text output                 9 × $16   =  144.0
#   audio output               23 × $64   = 1472.0
#                                           5044.0 per 1M → $0.005044
USAGE_USD = 0.005044

# the history schema as aribot 0.2.0 wrote it (version 1): the upgrade must start from exactly this
SCHEMA_1 = """
CREATE TABLE calls (id TEXT PRIMARY KEY, caller_number TEXT NOT NULL DEFAULT '',
    caller_name TEXT NOT NULL DEFAULT '', extension TEXT NOT NULL DEFAULT '', started_at REAL NOT NULL,
    answered_at REAL, ended_at REAL, end_reason TEXT, duration_s REAL, mode TEXT, stats TEXT);
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


def settings_with(tmp_path: Path, toml: str = "") -> Any:
    """Core's and the cost plugin's settings, defaults plus ``toml``."""
    path = tmp_path / "settings.toml"
    path.write_text(toml)
    owned = [("core", s) for s in CORE_SETTINGS] + [("cost", s) for s in PRICE_SETTINGS]
    return load_settings(path, environ={}, owned=owned)


class FakeCall:
    """What the meter uses of a live aribot.Call."""

    def __init__(self) -> None:
        self.ending = self.stopping = False
        self.ended: list[tuple[str, str]] = []
        self.tasks: list[asyncio.Task[Any]] = []

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self.tasks.append(task)
        return task

    async def end(self, reason: str, *, goodbye: str = "") -> None:
        self.ended.append((reason, goodbye))


def metered_app(tmp_path: Path, toml: str = "") -> tuple[SimpleNamespace, FakeCall, list[ev.CostUpdated]]:
    """An App with the cost plugin started, one live call "c1", and every CostUpdated it sends."""
    call = FakeCall()
    app = SimpleNamespace(settings=settings_with(tmp_path, toml), bus=EventBus(), calls={"c1": call}, extensions={})
    sent: list[ev.CostUpdated] = []
    app.bus.subscribe(ev.CostUpdated, sent.append)
    cost_plugin.startup(app)
    return app, call, sent


def done(usage: Any, call_id: str = "c1") -> ev.ResponseDone:
    return ev.ResponseDone(call_id=call_id, response_id="r", status="completed", usage=usage)


def test_a_realtime_usage_block_is_priced_by_kind_with_cached_tokens_at_the_cached_rate(tmp_path: Path) -> None:
    assert token_counts(USAGE) == {"text_input": 57, "text_input_cached": 256, "text_output": 9,
                                   "audio_input": 92, "audio_input_cached": 384, "audio_output": 23}
    app, _call, sent = metered_app(tmp_path)
    app.bus.emit(None, ev.BackendReady(call_id="c1", session_id="s", connect_ms=1.0, backend="openai_realtime"))
    app.bus.emit(None, done(USAGE))
    assert [e.usd for e in sent] == [0.0, pytest.approx(USAGE_USD, abs=1e-12)]
    assert sent[1].backend == "openai_realtime"
    assert sent[1].breakdown == pytest.approx({"text_input": 228e-6, "text_input_cached": 102.4e-6,
                                               "audio_input": 2944e-6, "audio_input_cached": 153.6e-6,
                                               "text_output": 144e-6, "audio_output": 1472e-6})
    # no usage (a cancelled response before any tokens): no work, no event; a second answer adds up
    app.bus.emit(None, done({}))
    app.bus.emit(None, done(USAGE))
    assert [e.usd for e in sent][1:] == pytest.approx([USAGE_USD, 2 * USAGE_USD])
    assert sent[-1].to_json()["type"] == "call.cost" and aribot.CostUpdated is ev.CostUpdated
    # the call ends: its state is dropped; a late event of it starts nothing
    app.bus.emit(None, ev.CallEnded(call_id="c1", reason="caller_hangup", duration_s=9.0))
    del app.calls["c1"]
    app.bus.emit(None, done(USAGE))
    assert app.extensions["cost"].calls == {} and len(sent) == 3
    cost_plugin.shutdown(app)
    assert "cost" not in app.extensions


def test_azure_and_a_usage_without_details(tmp_path: Path) -> None:
    """Azure is priced like openai_realtime; tokens without details count as text."""
    app, _call, sent = metered_app(tmp_path, "[cost]\nrealtime_text_input = 10\nrealtime_text_output = 20\n")
    app.bus.emit(None, ev.BackendReady(call_id="c1", session_id="s", connect_ms=1.0, backend="azure"))
    app.bus.emit(None, done({"input_tokens": 1000, "output_tokens": 500}))
    assert sent[-1].usd == pytest.approx((1000 * 10 + 500 * 20) / 1e6)
    assert sent[-1].breakdown == pytest.approx({"text_input": 0.01, "text_output": 0.01})


def test_gpt_live_is_billed_per_second_plus_the_delegation_models_tokens(tmp_path: Path) -> None:
    app, _call, sent = metered_app(tmp_path)
    app.bus.emit(None, ev.BackendReady(call_id="c1", session_id="s", connect_ms=1.0, backend="gpt_live"))
    app.bus.emit(None, ev.UsageUpdated(call_id="c1", seconds=30.0))
    assert sent[-1].usd == pytest.approx(30 / 60 * 0.05)                  # $0.025, not rounded up to a minute
    app.bus.emit(None, ev.UsageUpdated(call_id="c1", seconds=90.0))       # cumulative: never summed
    assert sent[-1].usd == pytest.approx(0.075)
    app.bus.emit(None, ev.UsageUpdated(call_id="c1", seconds=60.0))       # an older snapshot changes nothing
    app.bus.emit(None, done(USAGE))                                       # not how GPT-Live bills
    assert len(sent) == 3
    # one delegated task, as plugins/gpt_live reports it: (812 - 512) × $5 + 512 × $0.5 + 21 × $30 = $0.002386
    app.bus.emit(None, ev.UsageUpdated(call_id="c1", tokens={
        "input_tokens": 812, "output_tokens": 21, "input_token_details": {"text_tokens": 812, "cached_tokens": 512},
        "output_token_details": {"text_tokens": 21}}))
    assert sent[-1].usd == pytest.approx(0.075 + 0.002386)
    assert sent[-1].breakdown == pytest.approx({"session_minutes": 0.075, "responses_text_input": 0.0015,
                                                "responses_text_input_cached": 0.000256,
                                                "responses_text_output": 0.00063})


def test_local_is_free_and_another_backend_is_priced_per_minute(tmp_path: Path) -> None:
    app, _call, sent = metered_app(tmp_path, "[cost]\nother_per_minute = 0.12\n")
    app.bus.emit(None, ev.BackendReady(call_id="c1", session_id="s", connect_ms=1.0, backend="local"))
    app.bus.emit(None, done(USAGE))
    app.bus.emit(None, ev.UsageUpdated(call_id="c1", seconds=120.0))
    assert [(e.usd, e.backend, e.breakdown) for e in sent] == [(0.0, "local", {})]
    app.calls["c2"] = FakeCall()
    app.bus.emit(None, ev.BackendReady(call_id="c2", session_id="s", connect_ms=1.0, backend="acme_voice"))
    app.bus.emit(None, ev.UsageUpdated(call_id="c2", seconds=45.0))
    assert sent[-1].call_id == "c2" and sent[-1].usd == pytest.approx(0.09)      # 45 s × $0.12 / 60


@pytest.mark.parametrize("usage, why", [
    ("lots", "usage is str, not an object"),
    ({"input_tokens": -3}, "input_tokens is -3, not a token count"),
    ({"input_tokens": True}, "input_tokens is True, not a token count"),
    ({"input_tokens": 1.5}, "input_tokens is 1.5"),
    ({"input_tokens": 10, "input_token_details": {"text_tokens": 20}}, "add up to more than input_tokens = 10"),
    ({"input_tokens": 10, "input_token_details": "text"}, "input_token_details is str, not an object"),
    ({"input_tokens": 10, "input_token_details": {"text_tokens": 10, "cached_tokens_details": {"text_tokens": 11}}},
     "cached tokens (11 text, 0 audio) exceed the input tokens (10 text, 0 audio)"),
    ({"output_tokens": 10**12}, "output_tokens is 1000000000000"),
])
def test_a_malformed_usage_block_is_refused_with_a_reason(usage: Any, why: str) -> None:
    with pytest.raises(UsageError, match=why.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        token_counts(usage)


def test_bad_usage_is_logged_not_counted_and_never_disturbs_the_call(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "aribot.cost")
    app, _call, sent = metered_app(tmp_path)
    app.bus.emit(None, ev.BackendReady(call_id="c1", session_id="s", connect_ms=1.0, backend="openai_realtime"))
    for usage in ("lots", {"input_tokens": -3}, {"output_tokens": [1]}):
        app.bus.emit(None, done(usage))
    app.bus.emit(None, done(USAGE))                                            # a good one still counts
    assert [e.usd for e in sent] == [0.0, pytest.approx(USAGE_USD)] and app.bus.receiver_errors == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["call c1: the usage of response r from backend openai_realtime is not valid (usage is str, "
                        "not an object); not counted, the call goes on"]
    app.calls["c2"] = FakeCall()
    app.bus.emit(None, ev.BackendReady(call_id="c2", session_id="s", connect_ms=1.0, backend="gpt_live"))
    app.bus.emit(None, ev.UsageUpdated(call_id="c2", seconds="soon"))          # type: ignore[arg-type]
    assert app.bus.receiver_errors == 0 and "seconds is 'soon'" in caplog.records[-1].getMessage()
    app.bus.emit(None, ev.CallEnded(call_id="c1", reason="caller_hangup", duration_s=9.0))
    assert "3 usage blocks in all were not valid" in caplog.records[-1].getMessage()


async def test_max_cost_ends_the_call_once_with_a_goodbye(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "aribot.cost")
    app, call, sent = metered_app(tmp_path, "[call]\nmax_cost = 0.01\n")
    app.bus.emit(None, ev.BackendReady(call_id="c1", session_id="s", connect_ms=1.0, backend="openai_realtime"))
    app.bus.emit(None, done(USAGE))                       # $0.005044: under the limit
    await asyncio.sleep(0)
    assert call.ended == []
    app.bus.emit(None, done(USAGE))                       # $0.010088: reached
    app.bus.emit(None, done(USAGE))                       # the goodbye's own response: no second end
    await asyncio.gather(*call.tasks)
    goodbye = app.settings.cost.max_cost_goodbye
    assert call.ended == [("max_cost", goodbye)] and "goodbye" in goodbye
    lines = [r.getMessage() for r in caplog.records if "max_cost" in r.getMessage()]
    assert lines == ["call c1: its AI cost $0.0101 reached [call] max_cost $0.0100; the AI says goodbye, then the "
                     "call ends (reason max_cost)"]
    assert len(sent) == 4


async def test_no_limit_by_default_and_a_call_already_ending_is_left_alone(tmp_path: Path) -> None:
    app, call, _sent = metered_app(tmp_path)
    assert app.settings.call.max_cost == 0.0
    app.bus.emit(None, ev.BackendReady(call_id="c1", session_id="s", connect_ms=1.0, backend="openai_realtime"))
    for _ in range(5):
        app.bus.emit(None, done(USAGE))
    assert call.tasks == []
    app, call, _sent = metered_app(tmp_path, "[call]\nmax_cost = 0.001\n")
    call.ending = True
    app.bus.emit(None, ev.BackendReady(call_id="c1", session_id="s", connect_ms=1.0, backend="openai_realtime"))
    app.bus.emit(None, done(USAGE))
    assert call.tasks == []


@pytest.mark.parametrize("toml, line", [
    ("[cost]\nrealtime_audio_input = -1\n",
     "setting cost.realtime_audio_input = -1 is not valid: expected USD per 1M tokens, 0 or more"),
    ("[cost]\ngpt_live_per_minute = \"cheap\"\n",
     "setting cost.gpt_live_per_minute = 'cheap' is not valid: expected USD per minute, 0 or more"),
    ("[call]\nmax_cost = -0.5\n", "setting call.max_cost = -0.5 is not valid: expected USD 0..1000000 (0 = no limit)"),
])
def test_a_bad_price_or_limit_is_one_clear_settings_error(tmp_path: Path, toml: str, line: str) -> None:
    with pytest.raises(SettingsError) as failed:
        settings_with(tmp_path, toml)
    assert str(failed.value) == line


def test_the_plugin_is_registered_like_the_other_built_ins() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"]["aribot"]["cost"] == "aribot.plugins.cost"
    assert "aribot.plugins.cost" in pyproject["tool"]["setuptools"]["packages"]
    settings = (REPO / "settings.toml").read_text()
    assert "[cost]  # plugin cost\n" in settings and "\nmax_cost = 0.0 " in settings


async def test_history_keeps_the_latest_cost_out_of_the_timeline_and_upgrades_a_version_1_database(
    tmp_path: Path
) -> None:
    path = tmp_path / "history.sqlite3"
    with sqlite3.connect(path) as conn:                 # a database as aribot's history schema 1 wrote it
        conn.executescript(SCHEMA_1 + "PRAGMA user_version = 1;")
        conn.execute("INSERT INTO calls (id, caller_number, started_at, ended_at, end_reason) "
                     "VALUES ('old', '+4930', 1.0, 2.0, 'caller_hangup')")
    store = HistoryStore(path)
    await store.open()
    try:
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)   # every step since 1
        old = await store.get("old")
        assert old is not None and old["cost"] is None and old["caller_number"] == "+4930"
        for event in (ev.CallStarted(call_id="c1", channel_id="c1", caller_number="+4940", ts=10.0),
                      ev.CostUpdated(call_id="c1", usd=0.0, backend="openai_realtime"),
                      ev.ResponseDone(call_id="c1", response_id="r1", status="completed", usage=USAGE),
                      ev.CostUpdated(call_id="c1", usd=USAGE_USD, backend="openai_realtime",
                                     breakdown={"audio_input": 0.002944}),
                      ev.CallEnded(call_id="c1", reason="max_cost", duration_s=3.0)):
            store.submit(event)
        await store.flush()
        record = await store.get("c1")
        assert record is not None and record["cost"] == USAGE_USD and record["end_reason"] == "max_cost"
        assert [e["type"] for e in record["timeline"]] == ["call.response_done"]
        found = await store.search(caller="+4940")
        assert [(c["id"], c["cost"]) for c in found] == [("c1", USAGE_USD)]
        assert {c["id"]: c["cost"] for c in await store.search()} == {"c1": USAGE_USD, "old": None}
    finally:
        await store.close()


async def test_metrics_count_cost_by_backend_and_observe_each_metered_call_once() -> None:
    app = metrics_app()
    metrics_plugin.startup(app)
    for call_id, backend, totals in (("c1", "openai_realtime", (0.0, 0.004, 0.011)), ("c2", "gpt_live", (0.0, 0.3))):
        for usd in totals:
            app.bus.emit(None, ev.CostUpdated(call_id=call_id, usd=usd, backend=backend))
    app.bus.emit(None, ev.CallEnded(call_id="c1", reason="max_cost", duration_s=4.0))
    app.bus.emit(None, ev.CallEnded(call_id="c3", reason="caller_hangup", duration_s=4.0))   # not metered
    samples = scrape(app)
    assert value(samples, "aribot_cost_usd_total", backend="openai_realtime") == pytest.approx(0.011)
    assert value(samples, "aribot_cost_usd_total", backend="gpt_live") == pytest.approx(0.3)
    assert value(samples, "aribot_call_cost_usd_count") == 1
    assert value(samples, "aribot_call_cost_usd_bucket", le="0.01") == 0
    assert value(samples, "aribot_call_cost_usd_bucket", le="0.025") == 1
    assert value(samples, "aribot_call_cost_usd_sum") == pytest.approx(0.011)
    assert value(samples, "aribot_calls_ended_total", reason="max_cost") == 1
    metrics_plugin.shutdown(app)
