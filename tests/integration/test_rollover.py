"""The Realtime WebSocket closing mid-call (the provider's session limit, 1001) or reaching
``ai.max_session_s``: the call goes on in a new session that starts with the conversation so
far as items, the caller's audio carries over with at most a short gap, and only after
``reconnect_attempts`` failed tries does the caller hear the fallback."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from aribot.core.events import BackendRollover, CallEnded, Transcript
from aribot.plugins.local_backend.realtime.script import Script, Turn
from aribot.sandbox.asterisk import AsteriskLab
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab.audio import speech
from tests.lab.calls import caller_turns, heard, padded, place_call, prompt_frames
from tests.lab.probe import log_lines, subscribe
from tests.lab.sipp import SippCaller
from tests.lab.sniffer import RtpSniffer
from tests.lab.tcpproxy import TcpProxy
from tests.lab.wait import until

FRAME_MS = 20


def created_items(conn) -> list[dict]:
    """The conversation.item.create items a connection received, in order."""
    return [event["item"] for _, event in conn.received if event.get("type") == "conversation.item.create"]


def carried_over(caller_audio: bytes, *sessions: bytes) -> list[int]:
    """Check the sessions, in order, got the caller's audio in order (the first a prefix, the last a
    suffix, each the next slice after at most a gap); returns the bytes lost at each switch."""
    assert caller_audio.startswith(sessions[0]) and caller_audio.endswith(sessions[-1])
    position, gaps = len(sessions[0]), []
    for index, audio in enumerate(sessions[1:], 1):
        # the last one is anchored at the end: silence frames all look alike, so a search could
        # place an all-silence session a frame early and miscount the loss
        last = index == len(sessions) - 1
        found = len(caller_audio) - len(audio) if last else caller_audio.find(audio, position) if audio else position
        assert found >= position, "a session got audio out of order, or audio the caller never sent"
        gaps.append(found - position)
        position = found + len(audio)
    assert position == len(caller_audio)
    return gaps


async def test_provider_closing_at_its_session_limit_rolls_over_with_the_conversation(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = speech(600, seed=81), speech(600, seed=82)
    scripts = [Script(turns=[Turn.audio(first, "First answer.")], caller_transcripts=["I have a question."],
                      max_session_s=4.0),
               Script(turns=[Turn.audio(second, "Second answer.")], caller_transcripts=["And another one."])]
    fake.script = lambda conn: scripts[min(len(fake.connections), len(scripts) - 1)]  # before it is listed
    app = await make_aribot(fake.url)
    rollovers, ended = subscribe(app, BackendRollover), subscribe(app, CallEnded)
    caller_audio = caller_turns(800, 800, gap_ms=4500)
    placed = await place_call(asterisk_lab, tmp_path / "sipp", caller_audio, audio_delay_ms=500,
                              hold_ms_after_audio=300, sniffer=rtp_sniffer)
    assert len(fake.connections) == 2
    old, new = fake.connections
    assert old.closed_code == 1001 and old.closed_by == "server"
    assert created_items(new)[:2] == [   # the new session starts with the conversation so far
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "I have a question."}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "First answer."}]},
    ]
    assert new.responses[0].status == "completed"   # the second turn was answered in the new session
    assert placed.audio == padded(first) + padded(second)
    (lost,) = carried_over(caller_audio, bytes(old.input_audio), bytes(new.input_audio))
    assert lost <= 8 * 10 * FRAME_MS   # at most 200 ms of the caller's audio lost in the switch
    assert [(r.reason, r.attempt, r.replayed_items) for r in rollovers] == [("closed_1001", 1, 2)]
    assert rollovers[0].gap_ms < 1000
    assert ended[0].reason == "caller_hangup" and ended[0].stats["rollovers"] == 1
    assert len(log_lines(caplog, "opening a new session with the conversation so far")) == 1
    print(f"rollover after a 1001 close: gap {rollovers[0].gap_ms:.0f} ms, caller audio lost {lost // 8} ms")


async def test_max_session_age_rolls_over_at_a_quiet_moment(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
) -> None:
    first, second = speech(600, seed=83), speech(600, seed=84)
    scripts = [Script(turns=[Turn.audio(first, "One.")], caller_transcripts=["Hello there."]),
               Script(turns=[Turn.audio(second, "Two.")])]
    fake.script = lambda conn: scripts[min(len(fake.connections), len(scripts) - 1)]  # before it is listed
    app = await make_aribot(fake.url, ai={"max_session_s": 3.0})
    rollovers = subscribe(app, BackendRollover)
    caller_audio = caller_turns(800, 800, gap_ms=4000)
    placed = await place_call(asterisk_lab, tmp_path / "sipp", caller_audio, audio_delay_ms=500,
                              hold_ms_after_audio=300, sniffer=rtp_sniffer)
    old, new = fake.connections[:2]
    assert old.closed_by == "client" and old.responses[0].status == "completed"  # not cut mid-answer
    assert [r.reason for r in rollovers][:1] == ["max_session_s"]
    assert created_items(new)[:2] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello there."}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "One."}]},
    ]
    assert placed.audio == padded(first) + padded(second)
    # the call is long enough for a second rollover; each switch loses at most 200 ms
    lost = carried_over(caller_audio, *(bytes(c.input_audio) for c in fake.connections))
    assert max(lost) <= 8 * 10 * FRAME_MS


async def test_when_no_new_session_can_be_opened_the_caller_gets_the_fallback(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    fake.script = Script(turns=[Turn.audio(speech(500, seed=85), "Hi.")])
    app = await make_aribot(fake.url, ai={"reconnect_attempts": 2})
    ended = subscribe(app, CallEnded)
    caller = SippCaller(asterisk_lab, tmp_path / "sipp", caller_turns(700, gap_ms=8000), audio_delay_ms=300,
                        hangup="server")
    rtp_sniffer.watch(caller.media_port)
    run = asyncio.create_task(caller.run())
    conn = await fake.wait_for_connection()
    await conn.wait_for_response(0, timeout=10)
    await conn.wait_for(lambda: conn.responses[0].done or None, timeout=10)
    fake.refuse_status = 503
    await conn.close(1011, "server error")
    result = await run
    assert result.ok and result.bye_received, result.error
    assert ended[0].reason == "ai_closed"
    assert len(log_lines(caplog, "failed: HTTP 503")) == 2   # two tries, each one line
    assert prompt_frames(rtp_sniffer, caller.media_port) > 50   # then the fallback prompt
    lines = log_lines(caplog, "ai_closed")
    assert len(lines) == 1 and "2 new session(s) failed" in lines[0]


async def test_a_cut_network_path_to_the_realtime_api_is_survived(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
) -> None:
    """A TCP proxy between aribot and the Realtime server cuts the connection mid-call (no close
    frame: 1006): the call goes on in a new session through the same path."""
    proxy = TcpProxy("127.0.0.1", fake.port)
    port = await proxy.start()
    first, second = speech(600, seed=86), speech(600, seed=87)
    scripts = [Script(turns=[Turn.audio(first, "First.")], caller_transcripts=["Question one."]),
               Script(turns=[Turn.audio(second, "Second.")])]
    fake.script = lambda conn: scripts[min(len(fake.connections), len(scripts) - 1)]
    app = await make_aribot(f"ws://127.0.0.1:{port}/v1/realtime")
    rollovers, transcripts = subscribe(app, BackendRollover), subscribe(app, Transcript)
    caller_audio = caller_turns(800, 800, gap_ms=4000)
    caller = SippCaller(asterisk_lab, tmp_path / "sipp", caller_audio, audio_delay_ms=500, hold_ms_after_audio=300)
    rtp_sniffer.watch(caller.media_port)
    run = asyncio.create_task(caller.run())
    conn = await fake.wait_for_connection()
    await conn.wait_for(lambda: (conn.responses and conn.responses[0].done) or None, timeout=10)
    await until(lambda: {t.role for t in transcripts} == {"caller", "assistant"}, "both transcripts of the turn")
    assert await proxy.drop_all() == 1
    result = await run
    assert result.ok, result.error
    old, new = fake.connections
    assert [r.reason for r in rollovers] == ["closed_1006"]
    assert created_items(new)[:2] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Question one."}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "First."}]},
    ]
    assert b"".join(p.payload for p in heard(rtp_sniffer, caller.media_port)) == padded(first) + padded(second)
    (lost,) = carried_over(caller_audio, bytes(old.input_audio), bytes(new.input_audio))
    print(f"rollover after a cut TCP path: gap {rollovers[0].gap_ms:.0f} ms, caller audio lost {lost // 8} ms")
    assert lost <= 8 * 25 * FRAME_MS  # frames in flight on the cut socket are lost: at most 500 ms
    await proxy.close()
