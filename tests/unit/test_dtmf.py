"""DTMF privacy (``[dtmf] mask``, on by default): keypad digits (PINs, card numbers) appear as "x"
in log lines, the call history and everything that writes events out (``to_json``: ``/logs``);
the AI, the DTMF handler and ``DTMF_RESULT`` get the digits pressed."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from aribot.core import events as ev
from aribot.core.app import App, configure
from aribot.core.ari_events import parse_event
from aribot.core.call import Call
from aribot.plugins.dtmf.collector import DtmfCollector
from aribot.plugins.history.store import HistoryStore
from tests.contract.ari_docs import CAPTURES
from tests.lab.wait import until


class KeypadCall:
    """What the collector uses of a call, recording what it does."""

    def __init__(self, mask: bool) -> None:
        self.settings = SimpleNamespace(dtmf=SimpleNamespace(
            enabled=True, interdigit_timeout=0, final_timeout=0, max_digits=16, terminator="#", stop_audio=False,
            handler="record", mask=mask))
        self.id = "call-1"
        self.greeting_active = self.bot_speaking = False
        self.variables: dict[str, str] = {}
        self.logged: dict[str, str] = {}
        self.emitted: list[ev.Event] = []
        self.handled: list[str] = []
        self.app = SimpleNamespace(dtmf_handlers={"record": self._handler})
        self.tasks: list[asyncio.Task[Any]] = []

    async def _handler(self, call: Any, digits: str, reason: str) -> None:
        self.handled.append(digits)

    def spawn(self, coro: Any) -> None:
        self.tasks.append(asyncio.create_task(coro))

    async def set_variable(self, name: str, value: str, *, shown: str | None = None) -> bool:
        self.variables[name] = value
        self.logged[name] = value if shown is None else shown   # what Call.set_variable's log line says
        return True

    def emit(self, event: ev.Event) -> None:
        self.emitted.append(event)


async def press(call: KeypadCall, keys: str) -> None:
    collector = DtmfCollector(call)
    for key in keys:
        collector.on_digit(ev.DtmfReceived(call_id=call.id, digit=key))
    await until(lambda: call.handled, "the handler")


@pytest.mark.parametrize("mask,shown", [(True, "xxxx"), (False, "4711")])
async def test_the_collector_logs_masked_digits_and_hands_on_the_real_ones(
        caplog: pytest.LogCaptureFixture, mask: bool, shown: str) -> None:
    caplog.set_level(logging.INFO, "aribot.dtmf")
    call = KeypadCall(mask)
    await press(call, "4711#")
    lines = [r.getMessage() for r in caplog.records if r.name == "aribot.dtmf"]
    assert lines == [f"call call-1: DTMF {shown!r} collected (terminator)"]
    assert call.handled == ["4711"] and call.variables == {"DTMF_RESULT": "4711"}
    assert call.logged == {"DTMF_RESULT": shown}
    [collected] = call.emitted
    assert isinstance(collected, ev.DtmfCollected) and collected.digits == "4711" and collected.masked is mask
    assert collected.to_json()["digits"] == shown


def test_mask_is_on_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)                          # no settings.toml: the declared default
    monkeypatch.delenv("ARIBOT_DTMF__MASK", raising=False)
    settings, _plugins = configure()
    assert settings.dtmf.mask is True


def test_events_write_masked_keys_out() -> None:
    received = ev.DtmfReceived(call_id="c", digit="#", duration_ms=80)
    assert received.masked and received.digit == "#" and received.shown == "x"
    assert json.loads(json.dumps(received.to_json()))["digit"] == "x"
    assert ev.DtmfReceived(call_id="c", digit="5", masked=False).to_json()["digit"] == "5"
    assert ev.DtmfCollected(call_id="c", digits="123456", reason="max_digits").to_json()["digits"] == "xxxxxx"


async def test_the_history_stores_masked_digits(tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite3"
    store = HistoryStore(db)
    await store.open()
    try:
        for key in "4711":
            await store.record(ev.DtmfReceived(call_id="c1", digit=key))
        await store.record(ev.DtmfCollected(call_id="c1", digits="4711", reason="terminator"))
        await store.record(ev.DtmfReceived(call_id="c1", digit="9", masked=False))
        timeline = (await store.get("c1"))["timeline"]
    finally:
        await store.close()
    assert [e["data"].get("digit", e["data"].get("digits")) for e in timeline] == ["x", "x", "x", "x", "xxxx", "9"]
    stored = b"".join(path.read_bytes() for path in tmp_path.iterdir())
    assert b"4711" not in stored and b'"digit": "4"' not in stored and b'"digit": "7"' not in stored


@pytest.mark.parametrize("setting,masked", [(None, True), ("true", True), ("false", False)])
async def test_a_call_emits_key_presses_masked_as_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                      setting: str | None, masked: bool) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ARIBOT_DTMF__MASK", raising=False)
    if setting is not None:
        monkeypatch.setenv("ARIBOT_DTMF__MASK", setting)
    app = App(*configure())
    first = json.loads((CAPTURES / "events_caller_bye.jsonl").read_text().splitlines()[0])
    start = parse_event(first)
    call = Call(app, start.channel, start.args)
    got: list[ev.DtmfReceived] = []
    app.bus.subscribe(ev.DtmfReceived, got.append, owner="test")
    call._on_ari_event(parse_event({"type": "ChannelDtmfReceived", "timestamp": first["timestamp"], "digit": "7",
                                    "duration_ms": 120, "channel": first["channel"], "application": "aribot"}))
    [pressed] = got
    assert pressed.digit == "7" and pressed.duration_ms == 120 and pressed.masked is masked
    assert pressed.to_json()["digit"] == ("x" if masked else "7")
