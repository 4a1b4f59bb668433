"""A real call through the lab Asterisk: audio both ways byte-exact, pacing, turns, concurrency."""

from __future__ import annotations

import asyncio
import statistics
from pathlib import Path

from aribot.core.events import MediaConnected
from aribot.plugins.local_backend.realtime.script import Script, Turn
from aribot.sandbox.asterisk import AsteriskLab
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab.audio import speech
from tests.lab.calls import FRAME, caller_turns, heard, padded, place_call
from tests.lab.sipp import SippCaller
from tests.lab.sniffer import RtpSniffer
from tests.lab.wait import until


async def test_audio_both_ways_is_byte_exact_and_paced(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path
) -> None:
    answer = speech(1500, seed=77)
    fake.script = Script(turns=[Turn.audio(answer, "Hello, how can I help?")])
    app = await make_aribot(fake.url)
    caller_audio = caller_turns(1000)
    placed = await place_call(asterisk_lab, tmp_path / "sipp", caller_audio, audio_delay_ms=500,
                              hold_ms_after_audio=300, sniffer=rtp_sniffer)

    conn = fake.connections[0]
    assert bytes(conn.input_audio) == caller_audio          # caller → AI: every byte, in order
    assert not conn.audio_before_pcmu
    packets = placed.packets
    assert b"".join(p.payload for p in packets) == padded(answer)   # AI → caller: every byte
    assert {len(p.payload) for p in packets} == {FRAME}
    intervals = [(b.ts - a.ts) * 1000 for a, b in zip(packets, packets[1:])]
    assert 18.0 <= statistics.median(intervals) <= 22.0
    # paced, not a burst: a burst would take a few ms; Asterisk re-times the frames it forwards, so the
    # span is near (n - 1) * 20 ms but not exactly (the pacing figures come from the benchmarks)
    assert (packets[-1].ts - packets[0].ts) * 1000 >= (len(packets) - 1) * 20 * 0.75
    assert conn.responses[0].status == "completed"
    assert app.calls == {}


async def test_aribot_rtp_header_rules(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path
) -> None:
    """What aribot itself sends to Asterisk: constant SSRC, seq +1, ts +160, marker per talk-spurt."""
    fake.script = Script(turns=[Turn.audio(speech(600, seed=5), "one"), Turn.audio(speech(600, seed=6), "two")])
    app = await make_aribot(fake.url)
    remotes: list[int] = []
    app.bus.subscribe(MediaConnected, lambda e: remotes.append(int(e.remote.rsplit(":", 1)[1])))
    caller = SippCaller(asterisk_lab, tmp_path / "sipp", caller_turns(800, 800), audio_delay_ms=500,
                        hold_ms_after_audio=300)
    watch_task = asyncio.create_task(caller.run())
    await until(lambda: remotes, "the media leg's connection")
    rtp_sniffer.watch(remotes[0])
    result = await watch_task
    assert result.ok, result.error
    sent = rtp_sniffer.packets(remotes[0])
    assert len(sent) == 2 * (600 // 20)
    assert len({p.ssrc for p in sent}) == 1
    assert all((b.seq - a.seq) % 65536 == 1 for a, b in zip(sent, sent[1:]))
    markers = [i for i, p in enumerate(sent) if p.marker]
    assert markers == [0, 30]                                     # one per talk-spurt
    steps = [(b.rtp_ts - a.rtp_ts) % 2**32 for a, b in zip(sent, sent[1:])]
    assert steps[:29] == [160] * 29 and steps[30:] == [160] * 29
    gap_ms = (sent[30].ts - sent[29].ts) * 1000
    assert abs(steps[29] / 8 - gap_ms) <= 25                      # the pause advances the timestamp


async def test_ten_concurrent_calls_are_independent(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path
) -> None:
    answers = {}

    def script_for(conn) -> Script:
        index = len(answers)
        answers[conn] = speech(1000, seed=500 + index)
        return Script(turns=[Turn.audio(answers[conn], f"answer {index}")], seed=index)

    fake.script = script_for
    await make_aribot(fake.url)
    callers = [SippCaller(asterisk_lab, tmp_path / f"sipp{i}", caller_turns(800, seed=i + 1), audio_delay_ms=500,
                          hold_ms_after_audio=300) for i in range(10)]
    for caller in callers:
        rtp_sniffer.watch(caller.media_port)
    results = await asyncio.gather(*(caller.run() for caller in callers))
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert len(fake.connections) == 10
    by_audio = {bytes(conn.input_audio): conn for conn in fake.connections}
    for caller in callers:
        conn = by_audio.get(caller.audio)
        assert conn is not None, "a caller's audio did not reach any Realtime session byte-exact"
        payload = b"".join(p.payload for p in heard(rtp_sniffer, caller.media_port))
        assert payload == padded(answers[conn])


async def test_azure_provider_uses_its_url_and_api_key_header(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path
) -> None:
    answer = speech(500, seed=91)
    fake.script = Script(turns=[Turn.audio(answer, "hello from azure")])
    await make_aribot(fake.azure_url, openai={"provider": "azure", "model": "my-deployment"})
    placed = await place_call(asterisk_lab, tmp_path / "sipp", caller_turns(700), audio_delay_ms=300,
                              hold_ms_after_audio=300, sniffer=rtp_sniffer)
    conn = fake.connections[0]
    assert conn.azure and conn.model == "my-deployment"
    assert "api-key" in conn.headers and "authorization" not in conn.headers
    assert placed.audio == padded(answer)
