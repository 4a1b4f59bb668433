"""ARI failing under a real call (sipp → lab Asterisk → fault-injecting ARI proxy → aribot).

Each case arms one fault on one call's path while a second call is in conversation; the faulted
call must end with the expected reason, the caller hears the fallback prompt where the design
promises it, one log line says what happened and what aribot did, Asterisk is left clean, and
the second call is served byte-exact as if nothing happened.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from aribot.core.app import App
from aribot.core.call import Call
from aribot.core.events import CallStarted
from aribot.plugins.local_backend.realtime.script import Script, Turn
from aribot.sandbox.asterisk import AsteriskLab
from aribot.sandbox.ports import free_udp_port_range
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab.ari_proxy import AriFaultProxy
from tests.lab.audio import silence, speech
from tests.lab.calls import caller_turns, heard, padded, prompt_frames
from tests.lab.probe import Probe, log_lines
from tests.lab.sipp import SippCaller, SippResult
from tests.lab.sniffer import RtpSniffer

ANSWER = "POST /channels/{channelId}/answer"
EXTERNAL_MEDIA = "POST /channels/externalMedia"
CREATE_BRIDGE = "POST /bridges/{bridgeId}"
ADD_CHANNEL = "POST /bridges/{bridgeId}/addChannel"
HANGUP = "DELETE /channels/{channelId}"
DESTROY_BRIDGE = "DELETE /bridges/{bridgeId}"
ARI_TIMEOUTS = {"request_timeout": 1.0, "leg_start_timeout": 1.0}
FALLBACK_SOUND = "Playing 'im-sorry.gsm'"
END_CALL_REASON = "end_call: caller is done"


Arm = Callable[[AriFaultProxy, App, Call | None], object]


@dataclass(frozen=True)
class Case:
    """One fault. ``arm(proxy, app, call)`` runs before the faulted call starts (``call`` None),
    or with ``at_teardown`` once it is connected (``call``: the faulted Call, to target its ids)."""

    arm: Arm
    reason: str                # the faulted call's CallEnded reason
    log: tuple[str, ...]       # the one log line about the faulted call contains all of these
    prompt: bool = True        # the caller hears the fallback prompt, then is hung up
    level: int = logging.ERROR
    at_teardown: bool = False
    declined: bool = False     # never answered: the prompt is early media, then SIP 603 instead of a BYE

    @property
    def needles(self) -> tuple[str, ...]:
        return self.log + (("playing the fallback prompt, then hanging up",) if self.prompt else ())


def failing(operation: str, status: int, *, forward: bool = False) -> Arm:
    return lambda proxy, app, call: proxy.fail(operation, status, forward=forward)


def stalling(operation: str, *, forward: bool = False) -> Arm:
    return lambda proxy, app, call: proxy.stall(operation, forward=forward)


def gone(log: str) -> tuple[str, ...]:
    return ("already gone in Asterisk (404)", log)


CASES = {
    "answer-500": Case(failing(ANSWER, 500), "answer_failed", ("answer_failed", "ARI answer failed: 500"),
                       declined=True),
    "external-media-500": Case(failing(EXTERNAL_MEDIA, 500), "media_setup_failed",
                               ("media_setup_failed", "ARI external_media failed: 500")),
    "external-media-409": Case(failing(EXTERNAL_MEDIA, 409), "media_setup_failed",
                               ("media_setup_failed", "ARI external_media failed: 409")),
    "external-media-stalls": Case(stalling(EXTERNAL_MEDIA), "media_setup_failed",
                                  ("media_setup_failed", "ARI external_media failed: no response within 1 s")),
    "external-media-answer-lost": Case(stalling(EXTERNAL_MEDIA, forward=True), "media_setup_failed",
                                       ("media_setup_failed", "ARI external_media failed: no response within 1 s")),
    "create-bridge-503": Case(failing(CREATE_BRIDGE, 503), "media_setup_failed",
                              ("media_setup_failed", "ARI create_bridge failed: 503")),
    "create-bridge-answer-lost": Case(stalling(CREATE_BRIDGE, forward=True), "media_setup_failed",
                                      ("media_setup_failed", "ARI create_bridge failed: no response within 1 s")),
    "add-channel-500": Case(failing(ADD_CHANNEL, 500), "media_setup_failed",
                            ("media_setup_failed", "ARI add_channel failed: 500")),
    "add-channel-done-but-500": Case(failing(ADD_CHANNEL, 500, forward=True), "media_setup_failed",
                                     ("media_setup_failed", "ARI add_channel failed: 500")),
    "leg-stasis-start-lost": Case(lambda proxy, app, call: proxy.drop_event("StasisStart", app.resource_prefix("em")),
                                  "media_setup_failed", ("media_setup_failed", "did not enter Stasis within 1 s")),
    "leg-already-gone": Case(lambda proxy, app, call: proxy.fail(HANGUP, 404, forward=True, channelId=call.leg_id),
                             END_CALL_REASON, gone("cleanup hangup"), prompt=False, level=logging.DEBUG,
                             at_teardown=True),
    "bridge-already-gone": Case(lambda proxy, app, call: proxy.fail(DESTROY_BRIDGE, 404, forward=True,
                                                                    bridgeId=call.bridge_id),
                                END_CALL_REASON, gone("cleanup destroy_bridge"), prompt=False, level=logging.DEBUG,
                                at_teardown=True),
    "caller-already-gone": Case(lambda proxy, app, call: proxy.fail(HANGUP, 404, forward=True, channelId=call.id),
                                END_CALL_REASON, gone("hangup of the caller"), prompt=False, level=logging.INFO,
                                at_teardown=True),
}


@pytest.fixture
async def ari_proxy(asterisk_lab: AsteriskLab) -> AsyncIterator[AriFaultProxy]:
    """The fault-injecting proxy in front of the lab's ARI (request it before ``make_aribot``,
    so aribot is stopped before the proxy closes)."""
    proxy = AriFaultProxy(asterisk_lab.ari_url)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


def faults_applied(proxy: AriFaultProxy) -> int:
    """How many requests and events the proxy recorded as faulted or dropped."""
    return sum(1 for e in proxy.exchanges if e.fault) + sum(1 for e in proxy.events if e.dropped)


def about(caplog: pytest.LogCaptureFixture, call_id: str, needle: str, level: int) -> list[str]:
    """Log lines at ``level`` or above about ``call_id`` that contain ``needle``."""
    return [line for line in log_lines(caplog, needle, level) if call_id in line]


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
async def test_an_ari_fault_on_one_call(
    ari_proxy: AriFaultProxy, asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer,
    make_aribot, tmp_path: Path, caplog: pytest.LogCaptureFixture, case: Case,
) -> None:
    caplog.set_level(logging.DEBUG, logger="aribot")
    answer, goodbye = speech(600, seed=41), speech(500, seed=42)
    fake.script = lambda conn: Script(turns=[Turn.audio(answer, "Hello.")] if not fake.connections else [
        Turn.audio_then_function_call(goodbye, "Goodbye!", "end_call", {"reason": "caller is done"})])
    app = await make_aribot(fake.url, ari={"url": ari_proxy.url, **ARI_TIMEOUTS})
    probe = Probe.attach(app)
    calls: dict[str, Call] = {}   # each Call as it starts (the faulted one may be gone from app.calls at once)
    app.bus.subscribe(CallStarted, lambda e: calls.setdefault(e.call_id, app.calls[e.call_id]))
    mark = len(asterisk_lab.log_text())
    # long enough to be in conversation through the whole faulted call (its prompt is about 4 s)
    bystander = SippCaller(asterisk_lab, tmp_path / "bystander", caller_turns(800, gap_ms=5000), audio_delay_ms=300,
                           hold_ms_after_audio=300)
    faulted = SippCaller(asterisk_lab, tmp_path / "faulted", caller_turns(700, gap_ms=4000, seed=1),
                         audio_delay_ms=300, hangup="server")
    for caller in (bystander, faulted):
        rtp_sniffer.watch(caller.media_port)
    bystander_run = asyncio.create_task(bystander.run())
    await probe.wait("call.media_connected")
    await fake.wait_for_connection()
    if not case.at_teardown:
        case.arm(ari_proxy, app, None)
    faulted_run = asyncio.create_task(faulted.run())
    faulted_id = (await probe.wait("call.started", count=2)).call_id
    faulted_call = calls[faulted_id]
    if case.at_teardown:
        await probe.wait("call.media_connected", count=2)
        case.arm(ari_proxy, app, faulted_call)
    faulted_result = await faulted_run
    ended = {e.call_id: e for e in probe.of("call.ended")}
    assert faults_applied(ari_proxy) == 1                        # the fault fired, once
    assert ended[faulted_id].reason == case.reason
    if case.declined:
        assert "received 'SIP/2.0 603 Decline" in faulted_result.error, faulted_result.error
    else:
        assert faulted_result.ok and faulted_result.bye_received, faulted_result.error
    played = asterisk_lab.log_text()[mark:]
    assert (FALLBACK_SOUND in played) is case.prompt
    if case.prompt:
        assert prompt_frames(rtp_sniffer, faulted.media_port) > 50         # heard (> 1 s of it)
    else:
        assert b"".join(p.payload for p in heard(rtp_sniffer, faulted.media_port)) == padded(goodbye)
    lines = about(caplog, faulted_id, case.log[0], case.level)
    assert len(lines) == 1 and all(needle in lines[0] for needle in case.needles), lines
    assert await left_in_asterisk(asterisk_lab, faulted_call) == []      # (the other call may still be on)
    assert_served(bystander, await bystander_run, fake, rtp_sniffer, [answer])
    assert await asterisk_lab.wait_clean(5.0) == ([], [])
    assert app.ports.in_use == 0


async def left_in_asterisk(lab: AsteriskLab, call: Call, timeout: float = 5.0) -> list[str]:
    """Which of the call's channels and bridge are still in Asterisk once they should be gone."""
    ours = {call.id, call.leg_id, call.bridge_id}
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        _, channels = await lab.ari("GET", "/channels")
        _, bridges = await lab.ari("GET", "/bridges")
        left = sorted(ours & {item["id"] for item in [*channels, *bridges]})
        if not left or asyncio.get_running_loop().time() > deadline:
            return left
        await asyncio.sleep(0.05)


def assert_served(caller: SippCaller, result: SippResult, fake: FakeRealtimeServer, sniffer: RtpSniffer,
                  answers: list[bytes]) -> None:
    """The call was served as if nothing else happened: its audio reached the AI byte-exact, and it
    heard the whole answer of its own AI session (``answers[i]`` for the fake's connection i)."""
    assert result.ok and result.bye_sent, result.error
    index = next((i for i, conn in enumerate(fake.connections) if bytes(conn.input_audio) == caller.audio), None)
    assert index is not None, "no AI session received this caller's audio byte-exact"
    assert b"".join(p.payload for p in heard(sniffer, caller.media_port)) == padded(answers[index])


async def test_more_calls_than_rtp_ports(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``[rtp]`` has 2 ports and 3 calls come in: the two first are served byte-exact, the third
    hears the fallback prompt and is hung up, one log line says why, nothing is left behind."""
    answers = [speech(600, seed=51 + n) for n in range(3)]
    fake.script = lambda conn: Script(turns=[Turn.audio(answers[len(fake.connections)], "Hello.")])
    low, high = free_udp_port_range(2)
    app = await make_aribot(fake.url, rtp={"port_min": low, "port_max": high})
    probe = Probe.attach(app)
    mark = len(asterisk_lab.log_text())
    served = [SippCaller(asterisk_lab, tmp_path / f"served{n}", caller_turns(800, gap_ms=6000, seed=n),
                         audio_delay_ms=300, hold_ms_after_audio=300) for n in range(2)]
    extra = SippCaller(asterisk_lab, tmp_path / "extra", silence(2000), hangup="server")
    for caller in (*served, extra):
        rtp_sniffer.watch(caller.media_port)
    runs = [asyncio.create_task(caller.run()) for caller in served]
    await probe.wait("call.media_connected", count=2)
    extra_result = await extra.run()
    extra_id = probe.of("call.started")[2].call_id
    ended = {e.call_id: e for e in probe.of("call.ended")}
    assert ended[extra_id].reason == "media_setup_failed"
    assert extra_result.ok and extra_result.bye_received, extra_result.error
    assert prompt_frames(rtp_sniffer, extra.media_port) > 50                 # the fallback prompt was heard
    assert FALLBACK_SOUND in asterisk_lab.log_text()[mark:]
    lines = about(caplog, extra_id, "media_setup_failed", logging.ERROR)
    assert len(lines) == 1 and f"no free UDP port in 127.0.0.1:{low}-{high}" in lines[0], lines
    for caller, run in zip(served, runs):
        assert_served(caller, await run, fake, rtp_sniffer, answers)
    assert await asterisk_lab.wait_clean(5.0) == ([], [])
    assert app.ports.in_use == 0
