"""Function tools during real calls: the built-ins, failures that become outputs, the filler."""

from __future__ import annotations

from pathlib import Path

import pytest

from aribot.core.hold import builtin_beeps
from aribot.plugins.local_backend.realtime.script import Script, Turn
from aribot.sandbox.asterisk import AsteriskLab
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab.audio import silence, speech
from tests.lab.calls import caller_turns, heard, padded, place_call, tool_outputs
from tests.lab.probe import Probe
from tests.lab.sipp import SippCaller
from tests.lab.sniffer import RtpSniffer


def instructions(conn) -> list[str]:
    return [(e.get("response") or {}).get("instructions", "") for e in conn.received_of_type("response.create")]


async def test_end_call_after_the_ai_said_goodbye_hangs_up_once_it_was_heard(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
) -> None:
    """The model says goodbye and calls end_call in one response: aribot asks for nothing more.
    (When the model only calls the tool, aribot asks it for a goodbye first: test_backends.py, on
    both backends.)"""
    goodbye = speech(900, seed=1)
    fake.script = Script(turns=[Turn.audio_then_function_call(goodbye, "Goodbye!", "end_call",
                                                              {"reason": "caller is done"})])
    app = await make_aribot(fake.url)
    probe = Probe.attach(app)
    caller = SippCaller(asterisk_lab, tmp_path / "sipp", caller_turns(700, gap_ms=6000), audio_delay_ms=300,
                        hangup="server")
    rtp_sniffer.watch(caller.media_port)
    result = await caller.run()
    assert result.ok and result.bye_received, result.error
    packets = heard(rtp_sniffer, caller.media_port)
    assert b"".join(p.payload for p in packets) == padded(goodbye)       # the whole goodbye ...
    ended = probe.first("call.ended")
    assert ended.reason.startswith("end_call") and ended.ts > packets[-1].ts + 0.25   # ... then the hang-up
    conn = fake.connections[0]
    assert tool_outputs(conn)[0]["ok"] is True
    assert instructions(conn) == []                               # no follow-up answer after the tool
    finished = probe.first("call.tool_finished")
    assert finished.tool == "end_call" and finished.error == ""


async def test_transfer_call_lands_in_the_target_and_refuses_others(
    asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, make_aribot, tmp_path: Path
) -> None:
    fake.script = Script(turns=[Turn.function_call("transfer_call", {"extension": "999"}),
                                Turn.audio(speech(400, seed=2), "I cannot transfer you there."),
                                Turn.function_call("transfer_call", {"extension": "200"})])
    app = await make_aribot(fake.url, tools={"transfer_call": {"context": "aribot-continue", "allowed": ["200", "300"]}})
    probe = Probe.attach(app)
    mark = len(asterisk_lab.log_text())
    caller = SippCaller(asterisk_lab, tmp_path / "sipp", caller_turns(600, 600), audio_delay_ms=300, hangup="server")
    result = await caller.run()
    assert result.ok and result.bye_received, result.error
    refused, accepted = tool_outputs(fake.connections[0])
    assert "not allowed" in refused["error"] and "200" in refused["error"]   # the model is told why
    assert accepted == {"ok": True, "transferred_to": "200"}
    assert probe.first("call.ended").reason == "transfer"
    await asterisk_lab.wait_for_log(r"aribot-lab continued 200", since=mark)


async def test_send_dtmf_digits_arrive_at_the_caller(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path
) -> None:
    fake.script = Script(turns=[Turn.function_call("send_dtmf", {"digits": "1#"}), Turn.audio(speech(300, seed=3), "ok"),
                                Turn.function_call("send_dtmf", {"digits": "9x"})])
    await make_aribot(fake.url)
    placed = await place_call(asterisk_lab, tmp_path / "sipp", caller_turns(600, 600), audio_delay_ms=300,
                              hold_ms_after_audio=500, sniffer=rtp_sniffer)
    events = [p.payload[0] for p in rtp_sniffer.packets(placed.caller.media_port) if p.pt != 0 and p.payload]
    keys = [e for i, e in enumerate(events) if i == 0 or e != events[i - 1]]   # one per digit (RFC 4733 repeats)
    assert keys == [1, 11]                                         # "1", then "#" (event 11)
    sent, refused = tool_outputs(fake.connections[0])
    assert sent == {"ok": True, "sent": "1#"} and "'x' not allowed" in refused["error"]


async def test_failing_tools_and_bad_arguments_become_error_outputs(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
    plugin_folder,
) -> None:
    answers = [speech(300, seed=10 + n) for n in range(3)]
    fake.script = Script(turns=[
        Turn.function_call("raises", {}), Turn.audio(answers[0], "sorry, that failed"),
        Turn.function_call("hangs", {}), Turn.audio(answers[1], "that took too long"),
        Turn.function_call("slow_lookup", {"order_id": 42}), Turn.audio(answers[2], "let me try again"),
    ])
    app = await make_aribot(fake.url, tools={"filler_after": 0, "hangs": {"timeout": 0.5}},
                            plugins={"paths": [plugin_folder("faulty_tools")]})
    probe = Probe.attach(app)
    caller = SippCaller(asterisk_lab, tmp_path / "sipp", caller_turns(500, 500, 500), audio_delay_ms=300,
                        hold_ms_after_audio=300)
    rtp_sniffer.watch(caller.media_port)
    result = await caller.run()
    assert result.ok and result.bye_sent, result.error              # the call went on to its end
    errors = [o["error"] for o in tool_outputs(fake.connections[0])]
    assert "the order system is down" in errors[0]
    assert "did not finish within 0.5 s" in errors[1]
    assert "order_id must be string, not int" in errors[2]
    payload = b"".join(p.payload for p in heard(rtp_sniffer, caller.media_port))
    assert payload == b"".join(padded(a) for a in answers)          # the AI answered after each error
    finished = probe.of("call.tool_finished")
    assert [f.tool for f in finished] == ["raises", "hangs", "slow_lookup"] and all(f.error for f in finished)
    assert 450 <= finished[1].duration_ms < 1500
    assert fake.connections[0].errors_sent == []


async def test_a_slow_tool_gets_a_filler_then_the_answer(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
    plugin_folder,
) -> None:
    filler, answer = speech(400, seed=20), speech(500, seed=21)
    fake.script = Script(turns=[Turn.function_call("slow_lookup", {"order_id": "7"}),
                                Turn.audio(filler, "Let me check."), Turn.audio(answer, "It has shipped.")])
    app = await make_aribot(fake.url, tools={"filler_after": 0.4}, plugins={"paths": [plugin_folder("faulty_tools")]})
    placed = await place_call(asterisk_lab, tmp_path / "sipp", caller_turns(600, gap_ms=4000), audio_delay_ms=300,
                              hold_ms_after_audio=300, sniffer=rtp_sniffer)
    conn = fake.connections[0]
    assert instructions(conn)[0] == app.settings.tools.filler
    received = [e["type"] for _t, e in conn.received if e.get("type") in ("response.create", "conversation.item.create")]
    assert received == ["response.create", "conversation.item.create", "response.create"]  # filler, output, answer
    assert tool_outputs(conn) == [{"order_id": "7", "status": "shipped"}]
    payload = placed.audio
    assert payload == padded(filler) + padded(answer)
    assert conn.errors_sent == []


@pytest.mark.parametrize("with_filler", ["instead", "after"])
async def test_a_slow_tool_gets_the_hold_sound_until_it_returns(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
    plugin_folder, with_filler: str,
) -> None:
    """[tools] hold_sound: aribot loops the sound into the call once the tool has run filler_after
    seconds (after the AI's filler, or instead of it) and drops what is queued of it the moment the
    tool returns: the caller hears [the filler], then the loop from its start, byte for byte, then
    the answer whole. The hold sound is not the AI answering: no bot-audio event of its own, and the
    answer's response latency counts the tool's time."""
    filler, answer = speech(400, seed=22), speech(500, seed=23)
    turns = [Turn.function_call("slower_lookup", {"order_id": "8"})]
    turns += [Turn.audio(filler, "Let me check.")] if with_filler == "after" else []
    fake.script = Script(turns=turns + [Turn.audio(answer, "It was delivered.")])
    app = await make_aribot(fake.url, tools={"filler_after": 0.4, "hold_sound": "beeps",
                                             "hold_sound_with_filler": with_filler},
                            plugins={"paths": [plugin_folder("faulty_tools")]})
    probe = Probe.attach(app)
    placed = await place_call(asterisk_lab, tmp_path / "sipp", caller_turns(600, gap_ms=5000), audio_delay_ms=300,
                              hold_ms_after_audio=300, sniffer=rtp_sniffer)
    conn = fake.connections[0]
    assert tool_outputs(conn) == [{"order_id": "8", "status": "delivered"}]
    said = instructions(conn)
    assert (app.settings.tools.filler in said) == (with_filler == "after")
    payload = placed.audio
    before = padded(filler) if with_filler == "after" else b""
    assert payload.startswith(before) and payload.endswith(padded(answer))
    hold = payload[len(before):len(payload) - len(padded(answer))]
    loop = builtin_beeps("ulaw")
    assert hold == (loop * 2)[:len(hold)]                       # the loop from its start, byte for byte
    # the tool ran 2.5 s from the call: the hold plays from 0.4 s (after the filler's 0.4 s in "after")
    # to the tool's return, give or take the 200 ms queued ahead (dropped) and a top-up period
    played_s = len(hold) / 8000
    expected = 2.5 - 0.4 - (0.4 if with_filler == "after" else 0.0)
    assert expected - 0.5 < played_s <= expected + 0.1, played_s
    started = probe.of("call.bot_audio_started")
    assert [e.item_id for e in started if e.item_id.startswith("aribot-")] == []   # the hold is not the AI
    assert len(started) == (2 if with_filler == "after" else 1)    # the filler and/or the answer, each once
    first = started[0].latency_ms   # the caller waited for the first AI audio: the filler's, or the answer's
    assert first is not None and (first > 2500 if with_filler == "instead" else 400 < first < 2500), first
    assert conn.errors_sent == []


async def test_disabled_tool_is_listed_but_not_offered(
    asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, make_aribot, tmp_path: Path
) -> None:
    import aiohttp

    app = await make_aribot(fake.url, tools={"disabled": ["current_time"]})
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{app.http.port}/tools") as resp:
            listed = {t["name"]: t["enabled"] for t in await resp.json()}
    assert listed["current_time"] is False and listed["end_call"] is True
    result = await SippCaller(asterisk_lab, tmp_path / "sipp", silence(1500), audio_delay_ms=300).run()
    assert result.ok, result.error
    offered = [t["name"] for t in fake.connections[0].session["tools"]]
    assert "current_time" not in offered and "end_call" in offered


async def test_a_blocking_sync_tool_times_out_while_the_call_keeps_its_pacing(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
    plugin_folder,
) -> None:
    """A plain function that blocks for 1.5 s runs in a worker thread: the AI's audio playing
    meanwhile keeps its 20 ms pacing (no frame late enough to re-anchor, no gap in what the caller
    hears), the tool is abandoned at its 0.5 s timeout with the output an async tool gets, and the
    AI's next answer follows."""
    speaking, answer = speech(2500, seed=40), speech(500, seed=41)
    fake.script = Script(turns=[
        Turn.audio_then_function_call(speaking, "Let me look that up.", "blocking_lookup", {"order_id": "7"}),
        Turn.audio(answer, "That is taking too long, sorry.")])
    app = await make_aribot(fake.url, tools={"filler_after": 0, "blocking_lookup": {"timeout": 0.5}},
                            plugins={"paths": [plugin_folder("blocking_tools")]})
    probe = Probe.attach(app)
    placed = await place_call(asterisk_lab, tmp_path / "sipp", caller_turns(600, gap_ms=6000), audio_delay_ms=300,
                              hold_ms_after_audio=300, sniffer=rtp_sniffer)
    conn = fake.connections[0]
    assert tool_outputs(conn) == [{"error": "blocking_lookup did not finish within 0.5 s"}]
    assert placed.audio == padded(speaking) + padded(answer)
    assert (await probe.wait("call.ended")).stats["metrics"]["pacing_slips"] == 0
    first_answer = placed.packets[:len(padded(speaking)) // 160]
    gaps_ms = [(b.ts - a.ts) * 1000 for a, b in zip(first_answer, first_answer[1:])]
    assert max(gaps_ms) < 200                  # a loop blocked for 1.5 s leaves a gap of a second or more
    assert app.tools.abandoned == 1
    assert conn.errors_sent == []
