"""The outbound plugin without Asterisk: what a request may hold, hang-up causes, its settings, and
the answering-machine detector measured on espeak-ng greetings (the confusion matrix is printed)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from aribot.core.settings import Setting
from aribot.plugins.local_backend.voice import synthesize
from aribot.plugins.outbound import SETTINGS
from aribot.plugins.outbound.amd import AmdParams, BeepDetector, MachineDetector, classify
from aribot.plugins.outbound.dialer import ENDPOINT, Dialer, Rejected, cause_outcome, endpoint_allowed
from tests.lab.amd_corpus import Greeting, confusion, greetings
from tests.lab.audio import silence, speech, ulaw_encode


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Greeting]:
    return greetings(tmp_path_factory.getbasetemp() / "amd-corpus")


def test_detector_accuracy_on_espeak_greetings(corpus: list[Greeting]) -> None:
    """aribot's detector with its defaults ([outbound] amd_*) on 12 people and 12 machines (varied
    voices and speeds); "not sure" is treated as a person, as the call does. Printed, with the
    Asterisk-like greeting limit of 1500 ms for comparison."""
    assert len([g for g in corpus if g.label == "human"]) >= 10 <= len([g for g in corpus if g.label == "machine"])
    report = []
    for name, params in (("aribot defaults (greeting 2000 ms)", AmdParams(greeting_ms=2000)),
                         ("greeting 1500 ms (AMD()'s default)", AmdParams(greeting_ms=1500))):
        pairs = []
        for greeting in corpus:
            got = classify(greeting.audio, params).outcome
            pairs.append((greeting.label, "human" if got == "notsure" else got))
        report.append((name, pairs))
        print(f"\naribot's detector, {name}, {len(corpus)} espeak-ng greetings:\n{confusion(pairs)}")
    defaults = report[0][1]
    right = {label: sum(1 for a, g in defaults if a == label == g) for label in ("human", "machine")}
    assert right == {"human": 12, "machine": 12}   # measured: 24 of 24 (the 1500 ms limit: 23, one slow "Hello, Smith residence.")


def test_the_defaults_match_the_settings() -> None:
    defaults = {s.key.split(".", 1)[1]: s.default for s in SETTINGS}
    p = AmdParams(greeting_ms=2000)
    assert (defaults["amd_initial_silence_ms"], defaults["amd_greeting_ms"], defaults["amd_after_greeting_silence_ms"],
            defaults["amd_total_analysis_ms"], defaults["amd_silence_threshold"]) == (
        p.initial_silence_ms, p.greeting_ms, p.after_greeting_silence_ms, p.total_analysis_ms, p.silence_threshold)


def test_detector_decides_once_and_says_why() -> None:
    detector = MachineDetector(AmdParams(greeting_ms=2000))
    audio = silence(300) + speech(600, seed=1) + silence(1000)
    decisions = [d for i in range(0, len(audio), 160) if (d := detector.feed(audio[i:i + 160])) is not None]
    assert [d.outcome for d in decisions] == ["human"] and "600 ms" in decisions[0].detail
    assert classify(silence(3000)).outcome == "notsure"                    # nobody speaks: not sure (a person)
    assert classify(speech(3000, seed=2), AmdParams(greeting_ms=2000)).outcome == "machine"
    assert classify(b"").outcome == "notsure" and MachineDetector().feed(b"") is None


def test_beep_detector_hears_a_tone_not_speech() -> None:
    tone = ulaw_encode(int(8000 * math.sin(2 * math.pi * 1000 * i / 8000)) for i in range(8 * 400))
    words = synthesize("please leave a message after the beep", voice="en-us+f3")   # not tests.lab's tonal speech
    beeps = BeepDetector()
    found = [beeps.feed(frame) for frame in _frames(words + tone + silence(100))]
    assert [f for f in found if f] == ["beep"] and beeps.heard_beep
    quiet = BeepDetector(silence_ms=500)
    heard = [f for f in (quiet.feed(frame) for frame in _frames(words + silence(600))) if f]
    assert heard[:1] == ["silence"] and "beep" not in heard


def test_beeps_in_the_corpus_are_found_after_the_greeting(corpus: list[Greeting]) -> None:
    for greeting in (g for g in corpus if g.label == "machine"):
        decision = classify(greeting.audio, AmdParams(greeting_ms=2000))
        beeps, found, at = BeepDetector(), None, 0
        for at in range(decision.at_ms * 8, len(greeting.audio) - 159, 160):
            if (found := beeps.feed(greeting.audio[at:at + 160])) is not None:
                break
        assert found == "beep" and at // 8 > greeting.beep_at_ms, (greeting.text, found, at // 8)


def _frames(audio: bytes) -> list[bytes]:
    return [audio[i:i + 160] for i in range(0, len(audio) - len(audio) % 160, 160)]


@pytest.mark.parametrize("endpoint", ["PJSIP/100", "PJSIP/trunk/sip:+4930123@carrier.example:5060", "SIP/alice",
                                      "PJSIP/sipp/sip:callee@127.0.0.1:5999"])
def test_endpoints_of_the_strict_character_set(endpoint: str) -> None:
    assert ENDPOINT.fullmatch(endpoint)


@pytest.mark.parametrize("endpoint", ["PJSIP/100,Local/1@default", "PJSIP/100&PJSIP/200", "PJSIP/${EXTEN}",
                                      "PJSIP/100)", "PJSIP/1 00", "PJSIP/100;x=1", "100", "/100", "PJSIP/",
                                      "PJSIP/100\n", "PJSIP/\u0661\u0662", "PJSIP/" + "1" * 201, "Local/s@ctx/n'"])
def test_anything_else_is_refused(endpoint: str) -> None:
    assert not ENDPOINT.fullmatch(endpoint)


def test_allowed_patterns() -> None:
    assert endpoint_allowed("PJSIP/100", ["PJSIP/*"]) and endpoint_allowed("PJSIP/100", ["PJSIP/100"])
    assert not endpoint_allowed("PJSIP/100", []) and not endpoint_allowed("SIP/100", ["PJSIP/*"])
    assert not endpoint_allowed("pjsip/100", ["PJSIP/*"])   # case matters, as in Asterisk
    assert endpoint_allowed("PJSIP/trunk/sip:0301@x", ["PJSIP/trunk/sip:0[0-9]*@x"])


def test_hang_up_causes() -> None:
    assert cause_outcome(17) == "busy"
    assert {cause_outcome(c) for c in (18, 19, 20)} == {"no_answer"}
    assert {cause_outcome(c) for c in (0, 1, 3, 16, 21, 34, 38, 127)} == {"failed"}


def _setting(key: str) -> Setting:
    return next(s for s in SETTINGS if s.key == f"outbound.{key}")


@pytest.mark.parametrize(("key", "bad"), [("allowed", ["PJSIP/1,2"]), ("allowed", ["100"]), ("allowed", "x y"),
                                          ("max_concurrent", 0), ("ring_timeout", 0), ("beep_timeout", 500),
                                          ("machine_message", "x" * 2001), ("amd", "perhaps")])
def test_bad_settings_are_refused(key: str, bad: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        _setting(key).parse(bad)


def test_every_setting_has_a_one_line_comment() -> None:
    for setting in SETTINGS:
        assert setting.key.startswith("outbound.") and setting.doc and "\n" not in setting.doc
        setting.parse(setting.default)


def _dialer(**outbound: Any) -> Dialer:
    cfg = {"allowed": ["PJSIP/*"], "caller_id": "", "amd": False, "machine_message": "", "max_concurrent": 2,
           "rate_per_minute": 1, "keep_results": 10} | outbound
    settings = SimpleNamespace(
        outbound=SimpleNamespace(**cfg),
        call=SimpleNamespace(per_call_keys=["instructions", "backend"], greeting_dirs=[]),
        ai=SimpleNamespace(allowed=["openai_realtime"], backend="openai_realtime"))
    app = SimpleNamespace(settings=settings, activation_modes={"immediate": None}, tools=SimpleNamespace(tools={}),
                          backends={"openai_realtime": None, "gpt_live": None}, draining=False, ari_connected=True)
    return Dialer(app)


@pytest.mark.parametrize(("body", "status", "text"), [
    ({"endpoint": "PJSIP/100", "greeting": "sound:hello"}, 400, "not in [call] per_call_keys"),
    ({"endpoint": "PJSIP/100", "backend": "gpt_live"}, 400, "is not allowed ([ai] allowed"),
    ({"endpoint": "PJSIP/100", "instructions": "a\x00b"}, 400, "control characters"),
    ({"endpoint": "PJSIP/100", "amd": "yes"}, 400, "amd must be true or false"),
    ({"endpoint": 100}, 400, "endpoint must be a string"),
    ({"endpoint": "PJSIP/100", "machine_message": "sound:../x"}, 400, "machine_message"),
    ({}, 400, "TECH/resource"),
    ("PJSIP/100", 400, "JSON object"),
])
def test_bad_requests(body: Any, status: int, text: str) -> None:
    with pytest.raises(Rejected) as refused:
        _dialer().check(body)
    assert refused.value.status == status and text in str(refused.value)


def test_a_good_request_and_the_choices_it_carries() -> None:
    checked = _dialer(caller_id='"Shop" <100>').check(
        {"endpoint": "PJSIP/100", "instructions": "Confirm the order.", "backend": "OpenAI_Realtime", "amd": True})
    assert checked == {"endpoint": "PJSIP/100", "caller_id": '"Shop" <100>', "amd": True, "machine_message": "",
                       "choices": {"instructions": "Confirm the order.", "backend": "openai_realtime"}}


def test_off_without_allowed_endpoints_and_limits() -> None:
    with pytest.raises(Rejected, match="outbound calls are off") as off:
        _dialer(allowed=[]).check({"endpoint": "PJSIP/100"})
    assert off.value.status == 403
    dialer = _dialer()
    dialer._rate_check()
    dialer._recent.append(__import__("time").monotonic())
    with pytest.raises(Rejected, match="rate_per_minute") as rate:
        dialer._rate_check()
    assert rate.value.status == 429


def test_history_keeps_the_outcome_of_a_call_never_answered(tmp_path: Path) -> None:
    """The history store: an unanswered call's OutboundOutcome ends its record; ``get`` shows the outcome."""
    import asyncio

    from aribot.core.events import OutboundOutcome
    from aribot.plugins.history.store import HistoryStore

    async def scenario() -> dict[str, Any] | None:
        store = HistoryStore(tmp_path / "h.sqlite3")
        await store.open()
        await store.record(OutboundOutcome(call_id="aribot-out-1", outcome="busy", detail="cause 17"))
        record = await store.get("aribot-out-1")
        await store.close()
        return record

    record = asyncio.run(scenario())
    assert record is not None and record["outcome"] == "busy" and record["end_reason"] == "busy"
    assert record["ended_at"] is not None and record["extension"] == "outbound"
    assert [e["type"] for e in record["timeline"]] == ["call.outbound_outcome"]


async def test_a_call_whose_end_was_missed_stops_counting(monkeypatch: pytest.MonkeyPatch) -> None:
    """ARI events lost while a call rang: after ring_timeout (+ a margin) aribot asks Asterisk, and a
    channel that is gone ends the record (failed), so it no longer counts against max_concurrent."""
    from aribot.core.ari import AriNotFound
    from aribot.plugins.outbound import dialer as dialer_module
    from aribot.plugins.outbound.dialer import Placed

    monkeypatch.setattr(dialer_module, "WATCHDOG_MARGIN_S", 0)
    dialer = _dialer(ring_timeout=0)
    emitted: list[Any] = []

    async def gone(op: str, **params: Any) -> Any:
        raise AriNotFound(op, 404, "Channel not found")

    dialer.app.ari = SimpleNamespace(call=gone)
    dialer.app.calls, dialer.app.unwatch = {}, lambda call_id: None
    dialer.app.bus = SimpleNamespace(emit=lambda sender, event: emitted.append(event))
    placed = Placed("aribot-out-1", "PJSIP/100", amd=False)
    dialer.placed[placed.call_id] = placed
    assert dialer.active == 1
    await dialer._watchdog(placed)
    assert (placed.state, placed.outcome, dialer.active) == ("ended", "failed", 0)
    assert [e.outcome for e in emitted] == ["failed"]
