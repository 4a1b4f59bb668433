"""DTMF through the real Asterisk: sipp's RFC 4733 digits (sip-tester's pcaps) → DTMF_RESULT."""

from __future__ import annotations

from pathlib import Path

import pytest

from aribot.plugins.local_backend.realtime.script import Script, Turn
from aribot.sandbox.asterisk import AsteriskLab
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab import sipp_scenario
from tests.lab.audio import silence, speech
from tests.lab.calls import place_call
from tests.lab.dtmf_pcaps import spread_end_packets
from tests.lab.probe import Probe
from tests.lab.sipp import SippCaller


def dtmf_result_requests(ari_requests) -> list[str]:
    return [p["value"] for op, p in ari_requests if op == "set_variable" and p["variable"] == "DTMF_RESULT"]


@pytest.mark.parametrize("keys,dtmf,expected", [
    ("1,2,3,#", {}, ("123", "terminator")),
    ("4,5,6,7", {"max_digits": 3}, ("456", "max_digits")),
    ("7,8", {"interdigit_timeout": 0.8, "final_timeout": 0}, ("78", "interdigit_timeout")),
    ("1,2,3", {"interdigit_timeout": 5, "final_timeout": 0.7}, ("12", "final_timeout")),
], ids=["terminator", "max_digits", "interdigit_timeout", "final_timeout"])
async def test_digits_are_collected_into_dtmf_result_and_told_to_the_ai(
    asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, make_aribot, tmp_path: Path, ari_requests,
    keys: str, dtmf: dict, expected: tuple[str, str],
) -> None:
    fake.script = Script(turns=[Turn.audio(speech(400, seed=1), "you typed it")])
    app = await make_aribot(fake.url, dtmf=dtmf)
    probe = Probe.attach(app)
    presses = [(300 + 450 * i, key) for i, key in enumerate(keys.split(","))]
    await place_call(asterisk_lab, tmp_path / "sipp", silence(4000), dtmf=presses, audio_delay_ms=300,
                     hold_ms_after_audio=300)
    collected = probe.of("call.dtmf_collected")
    assert [(c.digits, c.reason) for c in collected][:1] == [expected]
    assert dtmf_result_requests(ari_requests)[:1] == [expected[0]]
    conn = fake.connections[0]
    told = [e["item"]["content"][0]["text"] for e in conn.received_of_type("conversation.item.create")]
    assert told and " ".join(expected[0]) in told[0]              # to_ai: the AI is told the digits ...
    assert conn.responses and conn.responses[0].trigger == "client"   # ... and answers


async def test_dialplan_handler_continues_with_dtmf_result(
    asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, make_aribot, tmp_path: Path
) -> None:
    app = await make_aribot(fake.url, dtmf={"handler": "dialplan"})
    probe = Probe.attach(app)
    mark = len(asterisk_lab.log_text())
    caller = SippCaller(asterisk_lab, tmp_path / "sipp", silence(3000), dtmf=[(300, "9"), (750, "4"), (1200, "#")],
                        audio_delay_ms=300, hangup="server")
    result = await caller.run()
    assert result.ok and result.bye_received, result.error
    assert probe.first("call.ended").reason == "dtmf"
    await asterisk_lab.wait_for_log(r"after-stasis 100 STASISSTATUS=SUCCESS DTMF_RESULT=94 ARIBOT_END_REASON=dtmf",
                                    since=mark)


async def test_the_lab_caller_sends_each_key_once_even_with_spread_end_packets(
    asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, make_aribot, tmp_path: Path, monkeypatch
) -> None:
    """The cause of the suite's DTMF flake, made certain: every key's three RFC 4733 end packets
    20 ms apart. With voice of another SSRC flowing between them Asterisk reports a key two or
    three times (up to 375 ms later, its DTMF timeout), so no time window in aribot could tell a
    repeat report from a second press; the lab caller pauses its voice while a key plays, as a
    phone does, and each press arrives once. (Real presses of the same key are kept: "2", "2".)"""
    monkeypatch.setattr(sipp_scenario, "DTMF_PCAP_DIR", spread_end_packets(tmp_path / "pcaps"))
    app = await make_aribot(fake.url, dtmf={"terminator": "#"})
    probe = Probe.attach(app)
    presses = [(300 + 450 * i, key) for i, key in enumerate("1,2,2,#".split(","))]
    await place_call(asterisk_lab, tmp_path / "sipp", silence(3500), dtmf=presses, audio_delay_ms=300,
                     hold_ms_after_audio=300)
    assert [e.digit for e in probe.of("call.dtmf")] == ["1", "2", "2", "#"]
    assert [(c.digits, c.reason) for c in probe.of("call.dtmf_collected")] == [("122", "terminator")]
