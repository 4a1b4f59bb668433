"""Warm (attended) transfers on the lab Asterisk: sipp calls in, the fake Realtime model asks for
``warm_transfer``, the caller hears Asterisk's music on hold while a second sipp (the target,
``SippCallee``) is called through ``Local/<port>@warm-targets/n``; the AI briefs the target,
which accepts (key 1, or "yes": the model calls ``warm_transfer_answer``) or declines, does not
answer, is busy; the caller may hang up on the way. Asterisk must be clean after each."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aribot.plugins.local_backend.realtime.script import Script, Turn
from aribot.sandbox.asterisk import AsteriskLab
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab.ari_proxy import AriFaultProxy
from tests.lab.audio import silence, speech
from tests.lab.calls import audible_frames, heard, padded, start_call, tool_outputs
from tests.lab.probe import Probe
from tests.lab.sipp_callee import SippCallee
from tests.lab.sniffer import RtpSniffer

CONTEXT = "warm-targets"
# A target is the port of a SippCallee on loopback, reached through the lab's sipp endpoint.
TARGETS = f"""
[{CONTEXT}]
exten => _X.,1,Dial(PJSIP/sipp/sip:callee@127.0.0.1:${{EXTEN}})
 same => n,Hangup(${{HANGUPCAUSE}})
"""
ANNOUNCE = speech(800, seed=50)   # "I am connecting you now"
BRIEFING = speech(1000, seed=51)  # "A caller wants ..., press 1 or say yes"
SORRY = speech(700, seed=52)      # "Sorry, they could not take your call"


@pytest.fixture(scope="module")
def asterisk_lab(lab_chroot: Path) -> Iterator[AsteriskLab]:
    """This module's own lab Asterisk: the session's, plus the targets' context."""
    lab = AsteriskLab(lab_chroot, extra_dialplan=TARGETS)
    asyncio.run(lab.start())
    try:
        yield lab
    finally:
        asyncio.run(lab.stop())


def settings(callee: SippCallee, timers: dict[str, Any] | None = None, **warm: Any) -> dict[str, Any]:
    return {"tools": {"warm_transfer": {"allowed": [f"{callee.sip_port}@{CONTEXT}"], "ring_timeout": 8, **warm}},
            "timers": timers or {"no_speech_timeout": 0}}


def transfer_call(callee: SippCallee, **args: Any) -> Turn:
    return Turn.function_call("warm_transfer", {"extension": str(callee.sip_port), "context": CONTEXT,
                                                "reason": "billing question", **args})


def stages(probe: Probe) -> list[str]:
    return [e.stage for e in probe.of("call.transfer")]


async def stage(probe: Probe, name: str, timeout: float = 20.0) -> Any:
    for _ in range(int(timeout / 0.02)):
        found = [e for e in probe.of("call.transfer") if e.stage == name]
        if found:
            return found[0]
        await asyncio.sleep(0.02)
    raise AssertionError(f"no warm transfer stage {name!r}; saw {stages(probe)}")


def accepted_target(channels: list[dict[str, Any]]) -> str:
    (local,) = [c["id"] for c in channels if c["name"].startswith("Local/") and c["name"].endswith(";1")]
    return local


def between(packets: list[Any], start: float, end: float) -> list[Any]:
    return [p for p in packets if start <= p.ts < end]


async def test_accepted_by_key_1_bridges_caller_and_target_and_aribot_leaves(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
) -> None:
    callee = SippCallee(tmp_path / "callee", answer_after_ms=2500, audio=silence(2500), dtmf="1", hold_ms=4000)
    rtp_sniffer.watch(callee.media_port)
    fake.script = Script(turns=[transfer_call(callee), Turn.audio(ANNOUNCE, "I am connecting you now."),
                                Turn.audio(BRIEFING, "A caller has a billing question. Press 1 to accept.")])
    app = await make_aribot(fake.url, history={"path": str(tmp_path / "history.sqlite3")}, **settings(callee))
    probe = Probe.attach(app)
    await callee.start()
    caller_audio = silence(400) + speech(600, seed=1) + silence(4000) + speech(14000, seed=2)
    caller, run = start_call(asterisk_lab, tmp_path / "caller", caller_audio, sniffer=rtp_sniffer,
                             audio_delay_ms=300, hangup="server", wait_bye_timeout_ms=15000)
    accepted = await stage(probe, "accepted", timeout=30)
    ended = await probe.wait("call.ended", timeout=10)
    target = f"{callee.sip_port}@{CONTEXT}"
    assert ended.reason == f"transferred: {target}"
    assert stages(probe) == ["started", "ringing", "answered", "accepted"]
    # aribot is gone from the call: no media leg, its AI session closed, one bridge with the two parties
    _, channels = await asterisk_lab.ari("GET", "/channels")
    _, bridges = await asterisk_lab.ari("GET", "/bridges")
    assert not [c for c in channels if c["name"].startswith("UnicastRTP/")], channels
    ours = [b for b in bridges if b["bridge_class"] == "stasis"]   # (the other: Local;2 and the target, Dial's)
    assert len(ours) == 1 and sorted(ours[0]["channels"]) == sorted([ended.call_id, accepted_target(channels)]), bridges
    assert app.calls == {} and all(c.closed for c in fake.connections)
    result = await callee.wait()
    caller_result = await run
    assert result.ok and result.answered and result.bye_sent, result.error
    assert caller_result.ok and caller_result.bye_received, caller_result.error
    # the caller heard the announcement, then music on hold while the target rang
    first = probe.first("call.transfer")
    ringing, answered = (next(e for e in probe.of("call.transfer") if e.stage == s) for s in ("ringing", "answered"))
    to_caller = heard(rtp_sniffer, caller.media_port)
    assert padded(ANNOUNCE) in b"".join(p.payload for p in between(to_caller, first.ts, ringing.ts + 1))
    moh = between(to_caller, ringing.ts + 0.3, answered.ts)
    assert len(moh) > 50 and audible_frames(moh) > 0.8 * len(moh), (len(moh), audible_frames(moh))
    # the target heard the briefing, and the caller's words once accepted
    to_callee = heard(rtp_sniffer, callee.media_port)
    assert audible_frames(between(to_callee, answered.ts, accepted.ts)) >= 40
    assert audible_frames(between(to_callee, accepted.ts + 0.3, accepted.ts + 3)) > 100
    store = app.extensions["history"]
    await store.flush()
    record = await store.get(ended.call_id)
    assert record["end_reason"] == f"transferred: {target}"
    assert [e["data"]["stage"] for e in record["timeline"] if e["type"] == "call.transfer"] == stages(probe)


async def test_accepted_by_the_ai_after_the_target_says_yes_audio_flows_both_ways(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
) -> None:
    """The target's "yes" is a turn for the AI, which calls warm_transfer_answer(accepted=true);
    what the target says next reaches the caller, and the caller's words reach the target."""
    yes, later = speech(700, seed=60), speech(4000, seed=61)
    callee = SippCallee(tmp_path / "callee", answer_after_ms=1000, audio=silence(2000) + yes + silence(1800) + later,
                        hold_ms=1000)
    rtp_sniffer.watch(callee.media_port)
    fake.script = Script(turns=[transfer_call(callee), Turn.audio(ANNOUNCE, "I am connecting you now."),
                                Turn.audio(BRIEFING, "A caller has a billing question. Do you take it?"),
                                Turn.function_call("warm_transfer_answer", {"accepted": True})])
    app = await make_aribot(fake.url, **settings(callee))
    probe = Probe.attach(app)
    await callee.start()
    caller_audio = silence(400) + speech(600, seed=3) + silence(4000) + speech(12000, seed=4)
    caller, run = start_call(asterisk_lab, tmp_path / "caller", caller_audio, sniffer=rtp_sniffer,
                             audio_delay_ms=300, hangup="server", wait_bye_timeout_ms=15000)
    accepted = await stage(probe, "accepted", timeout=30)
    assert accepted.detail == "said yes"
    result, caller_result = await callee.wait(), await run
    assert result.ok and result.bye_sent, result.error
    assert caller_result.ok and caller_result.bye_received, caller_result.error
    assert (await probe.wait("call.ended")).reason == f"transferred: {callee.sip_port}@{CONTEXT}"
    assert tool_outputs(fake.connections[0])[1] == {"ok": True, "accepted": True}
    to_caller = heard(rtp_sniffer, caller.media_port)
    to_callee = heard(rtp_sniffer, callee.media_port)
    assert audible_frames(between(to_caller, accepted.ts + 1.5, accepted.ts + 4)) > 100   # the target's words
    assert audible_frames(between(to_callee, accepted.ts + 0.3, accepted.ts + 3)) > 100   # the caller's words


async def back_with_the_ai(
    callee: SippCallee, asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot,
    tmp_path: Path, *, briefed: bool = True, arm: Callable[[Probe], Awaitable[None]] | None = None,
    ari: dict[str, Any] | None = None, timers: dict[str, Any] | None = None, **warm: Any,
) -> tuple[Probe, Any, list[Any]]:
    """A transfer that does not happen: the caller must hear the AI's answer after it, and the
    call goes on with the AI until the caller hangs up. Returns the probe, the caller's result
    and what the caller heard."""
    rtp_sniffer.watch(callee.media_port)
    briefing = [Turn.audio(BRIEFING, "A caller has a billing question. Press 1.")] if briefed else []
    fake.script = Script(turns=[transfer_call(callee), Turn.audio(ANNOUNCE, "I am connecting you now."), *briefing,
                                Turn.audio(SORRY, "Sorry, they cannot take your call right now.")])
    app = await make_aribot(fake.url, **settings(callee, timers, **warm), **({"ari": ari} if ari else {}))
    probe = Probe.attach(app)
    await callee.start()
    caller, run = start_call(asterisk_lab, tmp_path / "caller", silence(400) + speech(600, seed=5) + silence(14000),
                             sniffer=rtp_sniffer, audio_delay_ms=300, hangup="caller", hold_ms_after_audio=0)
    if arm is not None:
        await arm(probe)
    ended = await probe.wait("call.ended", timeout=30)
    caller_result = await run
    assert caller_result.ok, caller_result.error
    assert ended.reason == "caller_hangup"      # the call went on with the AI after the transfer did not happen
    to_caller = heard(rtp_sniffer, caller.media_port)
    outcome = probe.of("call.transfer")[-1]
    assert padded(SORRY) in b"".join(p.payload for p in to_caller if p.ts > outcome.ts)   # the AI says so
    conn = fake.connections[0]
    asked = [(e.get("response") or {}).get("instructions", "") for e in conn.received_of_type("response.create")]
    assert any(f"did not happen ({outcome.stage.replace('_', ' ')}" in text for text in asked), asked
    return probe, caller_result, to_caller


@pytest.mark.parametrize("how", ["key_2", "hangs_up"])
async def test_declined_the_caller_is_back_with_the_ai_which_says_so(
    how: str, asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot,
    tmp_path: Path,
) -> None:
    if how == "key_2":
        callee = SippCallee(tmp_path / "callee", answer_after_ms=1000, audio=silence(2000), dtmf="2", hold_ms=5000,
                            hangup="caller")
    else:
        callee = SippCallee(tmp_path / "callee", answer_after_ms=1000, audio=silence(2000), hold_ms=0,
                            hangup="callee")
    probe, _caller, to_caller = await back_with_the_ai(callee, asterisk_lab, rtp_sniffer, fake, make_aribot, tmp_path)
    result = await callee.wait()
    assert result.ok and result.answered, result.error
    assert result.hangup_by == ("caller" if how == "key_2" else "callee")   # key 2: aribot hung up the target
    assert stages(probe) == ["started", "ringing", "answered", "declined"]
    declined = probe.of("call.transfer")[-1]
    assert declined.detail == ("pressed 2" if how == "key_2" else "the target hung up")
    # the music stopped when the caller came back
    assert audible_frames(between(to_caller, declined.ts + 2.5, declined.ts + 6)) == 0


async def test_no_answer_within_ring_timeout_the_caller_is_back_with_the_ai(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
) -> None:
    """The no-speech timer (3 s here) does not count the caller's silence on hold: no re-prompt
    into an empty bridge while the target rings, and the call goes on with the AI after."""
    callee = SippCallee(tmp_path / "callee", answer="no_answer", ring_ms=20000)
    probe, _caller, _heard = await back_with_the_ai(callee, asterisk_lab, rtp_sniffer, fake, make_aribot, tmp_path,
                                                    briefed=False, ring_timeout=5,
                                                    timers={"no_speech_timeout": 3.0, "no_speech_reprompts": 5})
    result = await callee.wait()
    assert result.ok and result.cancelled, result.error              # Asterisk cancelled the ringing
    assert stages(probe) == ["started", "ringing", "no_answer"]
    ringing, no_answer = probe.of("call.transfer")[1:]
    assert 4.5 <= no_answer.ts - ringing.ts < 7.5 and no_answer.detail == "no answer within 5 s"
    assert [t for t in probe.of("call.timer_fired") if ringing.ts <= t.ts <= no_answer.ts] == []


async def test_busy_target_the_caller_is_back_with_the_ai(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
) -> None:
    callee = SippCallee(tmp_path / "callee", answer="busy")
    probe, _caller, _heard = await back_with_the_ai(callee, asterisk_lab, rtp_sniffer, fake, make_aribot, tmp_path,
                                                    briefed=False)
    result = await callee.wait()
    assert result.ok and result.busy, result.error
    assert stages(probe) == ["started", "ringing", "busy"]


async def test_a_target_not_allowed_is_refused_and_nothing_is_called(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
    ari_requests: list[tuple[str, dict[str, Any]]],
) -> None:
    answer = speech(600, seed=70)
    fake.script = Script(turns=[Turn.function_call("warm_transfer", {"extension": "999"}),
                                Turn.audio(answer, "I cannot transfer you there."),
                                Turn.function_call("warm_transfer", {"extension": "200", "context": "from-sipp"}),
                                Turn.audio(answer, "I cannot transfer you there either.")])
    app = await make_aribot(fake.url, tools={"warm_transfer": {"allowed": ["200@warm-targets"]}})
    probe = Probe.attach(app)
    caller, run = start_call(asterisk_lab, tmp_path / "caller", silence(400) + speech(600, seed=6) + silence(3000)
                             + speech(600, seed=7) + silence(3000), sniffer=rtp_sniffer, audio_delay_ms=300)
    result = await run
    assert result.ok, result.error
    first, second = tool_outputs(fake.connections[0])
    assert "999 are not allowed" in first["error"] and "200@warm-targets" in first["error"]
    assert "200@from-sipp are not allowed" in second["error"]
    assert [op for op, _ in ari_requests if op in ("originate", "start_moh", "remove_channel")] == []
    assert probe.of("call.transfer") == []
    assert b"".join(p.payload for p in heard(rtp_sniffer, caller.media_port)).count(padded(answer)) == 2


async def test_the_caller_hanging_up_during_the_briefing_cleans_everything(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
) -> None:
    callee = SippCallee(tmp_path / "callee", answer_after_ms=1000, audio=silence(6000), hold_ms=5000, hangup="caller")
    rtp_sniffer.watch(callee.media_port)
    fake.script = Script(turns=[transfer_call(callee), Turn.audio(ANNOUNCE, "I am connecting you now."),
                                Turn.audio(BRIEFING, "A caller has a billing question. Press 1 to accept.")])
    app = await make_aribot(fake.url, **settings(callee))
    probe = Probe.attach(app)
    await callee.start()
    caller, run = start_call(asterisk_lab, tmp_path / "caller", silence(400) + speech(600, seed=8) + silence(12000),
                             sniffer=rtp_sniffer, audio_delay_ms=300, hangup="server", wait_bye_timeout_ms=15000)
    answered = await stage(probe, "answered")
    await asyncio.sleep(0.5)                                    # the AI is briefing the target
    status, _ = await asterisk_lab.ari("DELETE", f"/channels/{answered.call_id}")   # the caller hangs up
    assert status == 204
    ended = await probe.wait("call.ended")
    assert ended.reason == "caller_hangup" and stages(probe)[-1] == "cancelled"
    result, caller_result = await callee.wait(), await run
    assert result.ok and result.bye_received, result.error       # aribot hung up the target
    assert caller_result.bye_received
    assert await asterisk_lab.wait_clean(3.0) == ([], [])


async def test_a_target_that_does_not_exist_fails_and_the_caller_is_back_with_the_ai(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
) -> None:
    """Allowed, but nothing in the dialplan answers to it: one log line, the AI is told."""
    fake.script = Script(turns=[Turn.function_call("warm_transfer", {"extension": "sales", "context": CONTEXT}),
                                Turn.audio(ANNOUNCE, "I am connecting you now."),
                                Turn.audio(SORRY, "Sorry, I could not reach them.")])
    app = await make_aribot(fake.url, tools={"warm_transfer": {"allowed": [f"sales@{CONTEXT}"]}},
                            timers={"no_speech_timeout": 0})
    probe = Probe.attach(app)
    caller, run = start_call(asterisk_lab, tmp_path / "caller", silence(400) + speech(600, seed=9) + silence(6000),
                             sniffer=rtp_sniffer, audio_delay_ms=300)
    result = await run
    assert result.ok, result.error
    assert stages(probe) == ["started", "ringing", "failed"]
    failed = probe.of("call.transfer")[-1]
    assert failed.detail == "the call to the target could not be placed"
    to_caller = heard(rtp_sniffer, caller.media_port)
    assert padded(SORRY) in b"".join(p.payload for p in to_caller if p.ts > failed.ts)


async def test_stopping_aribot_hangs_up_the_transferred_calls_it_bridges(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
) -> None:
    callee = SippCallee(tmp_path / "callee", answer_after_ms=500, audio=silence(1000), dtmf="1", hold_ms=10000)
    fake.script = Script(turns=[transfer_call(callee), Turn.audio(ANNOUNCE, "I am connecting you now."),
                                Turn.audio(BRIEFING, "A caller has a billing question. Press 1 to accept.")])
    app = await make_aribot(fake.url, **settings(callee))
    probe = Probe.attach(app)
    await callee.start()
    _caller, run = start_call(asterisk_lab, tmp_path / "caller", silence(400) + speech(600, seed=10) + silence(15000),
                              audio_delay_ms=300, hangup="server", wait_bye_timeout_ms=15000)
    await probe.wait("call.ended", timeout=30)
    assert stages(probe)[-1] == "accepted"
    await asyncio.sleep(0.5)
    await app.stop()
    result, caller_result = await callee.wait(), await run
    assert result.bye_received and caller_result.bye_received
    assert await asterisk_lab.wait_clean(3.0) == ([], [])


@pytest.fixture
async def ari_proxy(asterisk_lab: AsteriskLab) -> AsyncIterator[AriFaultProxy]:
    """A fault-injecting proxy in front of this module's lab ARI (requested before make_aribot)."""
    proxy = AriFaultProxy(asterisk_lab.ari_url)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


@pytest.mark.parametrize("fault", ["originate", "bridging"])
async def test_an_ari_error_on_the_way_the_caller_is_back_with_the_ai(
    fault: str, ari_proxy: AriFaultProxy, asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer,
    fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
) -> None:
    """Asterisk refuses the originate, or the caller-target bridge once the target accepted:
    one log line, the target (if any) hung up, the caller back with the AI, nothing left."""
    if fault == "originate":
        callee = SippCallee(tmp_path / "callee", invite_wait_s=1.0)
        ari_proxy.fail("POST /channels/{channelId}", 500)
    else:
        callee = SippCallee(tmp_path / "callee", answer_after_ms=500, audio=silence(1500), dtmf="1", hold_ms=5000,
                            hangup="caller")

    async def arm(probe: Probe) -> None:   # B0 exists by now: the next bridge created is the pair's
        if fault == "bridging":
            await stage(probe, "answered")
            ari_proxy.fail("POST /bridges/{bridgeId}", 500)

    probe, _caller, _heard = await back_with_the_ai(
        callee, asterisk_lab, rtp_sniffer, fake, make_aribot, tmp_path, briefed=fault == "bridging", arm=arm,
        ari={"url": ari_proxy.url})
    failed = probe.of("call.transfer")[-1]
    assert failed.stage == "failed"
    if fault == "originate":
        assert stages(probe) == ["started", "failed"] and "Asterisk could not call Local/" in failed.detail
        assert not (await callee.wait()).invited
    else:
        assert stages(probe) == ["started", "ringing", "answered", "failed"]
        assert "could not connect the caller to the target" in failed.detail
        result = await callee.wait()
        assert result.answered and result.bye_received                  # aribot hung up the target
