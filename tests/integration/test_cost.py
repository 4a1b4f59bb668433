"""Per-call cost through the real Asterisk: a call whose AI cost passes ``[call] max_cost`` ends
politely (the AI's goodbye heard in full, then the hang-up, reason ``max_cost``), and the call's
history record keeps what it cost."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from aribot.plugins.cost.prices import PER_MILLION, token_counts
from aribot.plugins.local_backend.realtime.script import Script, Turn
from aribot.sandbox.asterisk import AsteriskLab
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab.audio import silence, speech
from tests.lab.calls import heard, padded
from tests.lab.probe import Probe
from tests.lab.sipp import SippCaller
from tests.lab.sniffer import RtpSniffer

MAX_COST = 0.001   # USD: the fake's first answer costs about three times that


async def test_a_call_over_max_cost_hears_the_goodbye_then_ends_and_its_cost_is_kept(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "aribot.cost")
    answer, goodbye = speech(600, seed=41), speech(900, seed=42)
    fake.script = Script(turns=[Turn.audio(answer, "here is a long and costly answer"),
                                Turn.audio(goodbye, "sorry, I have to go now, goodbye")])
    app = await make_aribot(fake.url, call={"max_cost": MAX_COST}, history={"path": str(tmp_path / "h.sqlite3")},
                            timers={"no_speech_timeout": 0})
    probe = Probe.attach(app)
    caller = SippCaller(asterisk_lab, tmp_path / "sipp", silence(400) + speech(700, seed=43) + silence(9000),
                        audio_delay_ms=300, hangup="server")
    rtp_sniffer.watch(caller.media_port)
    result = await caller.run()
    assert result.ok and result.bye_received, result.error      # aribot hung up, long before the caller would

    ended = await probe.wait("call.ended")
    assert ended.reason == "max_cost"
    conn = fake.connections[0]
    asked = [(e.get("response") or {}).get("instructions", "") for e in conn.received_of_type("response.create")]
    assert asked == [app.settings.cost.max_cost_goodbye]           # one goodbye, asked once
    packets = heard(rtp_sniffer, caller.media_port)
    assert b"".join(p.payload for p in packets) == padded(answer) + padded(goodbye)   # both heard in full
    assert ended.ts > packets[-1].ts + 0.25                        # hung up after the goodbye was heard

    # the cost is the fake's usage blocks at the default Realtime prices, worked out here again
    prices = {part: app.settings.cost[f"realtime_{part}"] for part in token_counts({})}
    usages = [e.usage for e in probe.of("call.response_done")]
    expected = sum(n * prices[part] / PER_MILLION for usage in usages for part, n in token_counts(usage).items())
    costs = probe.of("call.cost")
    assert len(usages) == 2 and costs[0].usd == 0.0 and costs[0].backend == "openai_realtime"
    assert costs[1].usd > MAX_COST and costs[-1].usd == pytest.approx(expected, rel=1e-9)
    assert costs[-1].ts < ended.ts
    lines = [r.getMessage() for r in caplog.records if "reached [call] max_cost" in r.getMessage()]
    assert len(lines) == 1 and "the AI says goodbye, then the call ends" in lines[0]

    store = app.extensions["history"]
    await store.flush()
    record = await store.get(ended.call_id)
    assert record is not None and record["end_reason"] == "max_cost"
    assert record["cost"] == pytest.approx(costs[-1].usd, rel=1e-12)
    assert "call.cost" not in {e["type"] for e in record["timeline"]}
