"""Call recording on real calls (the lab Asterisk, sipp, the strict fake Realtime server): the WAV
holds the caller's exact audio on the left and the AI's exact audio on the right, lined up in time;
the consent is heard first; the history record points at the file, the retention purge deletes it;
the dashboard serves it only with the password and only for that call, and Chromium's player on the
history page loads it; a file left by a killed aribot is readable, and repaired at the next start.

The alignment the recording promises: sample *n* of both channels is what aribot received from the
caller and sent to it about ``n / 8000`` s after the recording started, each side up to
``recorder.DELAY_S`` late (RTP jitter) before padding, so an event in one channel and an event in
the other are as far apart in the file as they were in the call, within about 0.1 s."""

from __future__ import annotations

import asyncio
import base64
import signal
import struct
import time
import wave
from array import array
from pathlib import Path
from typing import Any

import aiohttp

from aribot.core.g711 import ULAW_TO_LINEAR
from aribot.plugins.local_backend.realtime.script import Script, Turn
from aribot.plugins.recording import recorder
from aribot.plugins.recording.route import recording_url
from aribot.sandbox.asterisk import AsteriskLab
from aribot.sandbox.ports import free_tcp_port
from tests.fake_realtime.server import FakeRealtimeServer
from tests.integration.test_dashboard import chromium, wait_page
from tests.lab.audio import silence, speech
from tests.lab.calls import padded, place_call
from tests.lab.probe import Probe
from tests.lab.serve import serve_env, start_serve
from tests.lab.sipp import SippCaller
from tests.lab.sniffer import RtpSniffer
from tests.lab.wait import until

PASSWORD = "recordings-are-personal-data"
CONSENT = "This call is recorded."


def pcm(data: bytes) -> bytes:
    """G.711 µ-law as the recording's 16-bit little-endian samples of one channel."""
    return struct.pack(f"<{len(data)}h", *(ULAW_TO_LINEAR[b] for b in data))


def channels(path: Path) -> tuple[bytes, bytes, int]:
    """(left, right) as 16-bit little-endian samples, and the frame count the header declares."""
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        declared = wav.getnframes()
        frames = wav.readframes(declared)
    samples = array("h", frames)
    return samples[0::2].tobytes(), samples[1::2].tobytes(), declared


def voiced(samples: bytes) -> bytes:
    """The samples that are not 0 (µ-law silence and the recording's padding decode to 0)."""
    values = struct.unpack(f"<{len(samples) // 2}h", samples)
    return struct.pack(f"<{sum(1 for v in values if v)}h", *(v for v in values if v))


def at(haystack: bytes, needle: bytes) -> float:
    """Where ``needle`` (whole samples) starts in ``haystack``, in seconds; it must be there."""
    index = haystack.find(needle)
    while index >= 0 and index % 2:
        index = haystack.find(needle, index + 1)
    assert index >= 0, "not found in the recording"
    return index / 2 / 8000


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def fetch(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}{path}", headers=headers or {}) as resp:
            return resp.status, await resp.read()


async def test_a_recorded_call_its_history_its_route_and_its_player(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path
) -> None:
    consent, answer = speech(900, seed=61), speech(1200, seed=62)
    utterance = speech(1000, seed=63)
    fake.script = Script(turns=[Turn.audio(consent, CONSENT), Turn.audio(answer, "Hello, how can I help?")],
                         caller_transcripts=["I have a question."])
    folder = tmp_path / "recordings"
    app = await make_aribot(fake.url, history={"path": str(tmp_path / "history.sqlite3")},
                            recording={"enabled": True, "path": str(folder), "consent": CONSENT},
                            ui={"enabled": True, "port": 0, "password": PASSWORD})
    probe = Probe.attach(app)
    caller_audio = silence(400) + utterance + silence(2500)
    placed = await place_call(asterisk_lab, tmp_path / "sipp", caller_audio, audio_delay_ms=2500,
                              hold_ms_after_audio=300, sniffer=rtp_sniffer)
    ended = await probe.wait("call.ended")
    store = app.extensions["history"]
    await store.flush()
    await asyncio.get_running_loop().run_in_executor(app.extensions["recording"].executor, lambda: None)

    # the consent is heard first: the caller's first audio is the AI saying it, before the AI heard the caller
    assert placed.audio == padded(consent) + padded(answer)
    conn = fake.connections[0]
    kinds = [event["type"] for _, event in conn.received]
    assert kinds.index("response.create") < kinds.index("input_audio_buffer.append")
    assert probe.first("call.activation_opened").ts > probe.first("call.bot_audio_started").ts

    # the history record points at the file, private in a private folder
    record = await store.get(ended.call_id)
    path = Path(record["recording"])
    assert path.parent == folder and path.exists()
    assert path.stat().st_mode & 0o777 == 0o600 and folder.stat().st_mode & 0o777 == 0o700

    # left = exactly the caller's audio as received, right = exactly the AI's as sent
    left, right, declared = channels(path)
    assert declared * 4 == path.stat().st_size - 44 and len(left) == len(right)
    assert voiced(left) == voiced(pcm(caller_audio))                  # nothing lost, nothing added
    assert voiced(right) == voiced(pcm(padded(consent) + padded(answer)))
    spoke, said, answered = at(left, pcm(utterance)), at(right, pcm(consent)), at(right, pcm(padded(answer)))
    spoke_end = spoke + len(utterance) / 8000
    # in time: the consent ends before the caller speaks (sipp waits 2.5 s, then 0.4 s of silence), the
    # answer follows the caller's last word after the fake's 0.5 s of VAD silence, as in the call
    latency = probe.of("call.bot_audio_started")[1].latency_ms    # the answer's (the consent's has none)
    assert said + len(consent) / 8000 < spoke
    assert 0.3 < answered - spoke_end < 1.5, (answered, spoke_end)
    assert abs(answered - spoke_end - latency / 1000) < 0.15, (answered - spoke_end, latency)
    print(f"recording: {len(left) / 16000:.2f} s; caller's last word → AI answer {answered - spoke_end:.3f} s in "
          f"the file (the call's own response latency: {latency} ms); {path.stat().st_size / (len(left) / 16000):.0f} "
          "bytes per second")

    # the dashboard serves it: only with the password, only for that call, Range answered
    port = app.extensions["ui"].port
    url = recording_url(ended.call_id)
    assert (await fetch(port, url))[0] == 401
    assert (await fetch(port, url, basic("aribot", "wrong-password-0000")))[0] == 401
    status, body = await fetch(port, url, basic("aribot", PASSWORD))
    assert status == 200 and body == path.read_bytes()
    status, body = await fetch(port, url, basic("aribot", PASSWORD) | {"Range": "bytes=0-3"})
    assert status == 206 and body == b"RIFF"
    for other in ("another-call", "..%2F..%2Fhistory.sqlite3"):
        assert (await fetch(port, f"/recording/{other}", basic("aribot", PASSWORD)))[0] == 404

    # Chromium: the history page's player loads the file (with the password, as an operator would)
    driver = await asyncio.to_thread(chromium, tmp_path / "chromium")
    try:
        await asyncio.to_thread(driver.get, f"http://aribot:{PASSWORD}@127.0.0.1:{port}/history/{ended.call_id}")
        await wait_page(driver, "Timeline")
        duration = await until_value(driver, "const a = document.querySelector('audio');"
                                             " return a && a.readyState >= 1 ? a.duration : null")
        assert abs(duration - len(left) / 16000) < 0.05, duration
    finally:
        await asyncio.to_thread(driver.quit)

    # the retention purge deletes the file with the record
    assert await store._run(store._purge, time.time() + 1) == 1
    assert not path.exists() and await store.get(ended.call_id) is None
    assert (await fetch(port, url, basic("aribot", PASSWORD)))[0] == 404


async def until_value(driver: Any, script: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while (value := await asyncio.to_thread(driver.execute_script, script)) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"no value from {script!r} within {timeout} s")
        await asyncio.sleep(0.2)
    return value


async def test_a_sound_consent_is_played_by_asterisk_before_listening(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path
) -> None:
    answer = speech(800, seed=71)
    fake.script = Script(turns=[Turn.audio(answer, "Yes?")])
    app = await make_aribot(fake.url, history={"path": str(tmp_path / "history.sqlite3")},
                            recording={"enabled": True, "path": str(tmp_path / "rec"), "consent": "sound:hello-world"})
    probe = Probe.attach(app)
    placed = await place_call(asterisk_lab, tmp_path / "sipp", silence(400) + speech(800, seed=72) + silence(2500),
                              audio_delay_ms=2500, hold_ms_after_audio=300, sniffer=rtp_sniffer)
    await probe.wait("call.ended")
    first_ai = next(i for i, p in enumerate(placed.packets) if p.payload == padded(answer)[:160])
    prompt = [p for p in placed.packets[:first_ai] if len(set(p.payload)) > 4]
    assert len(prompt) >= 50                                   # over a second of Asterisk's prompt, first
    answered, opened = probe.first("call.answered"), probe.first("call.activation_opened")
    assert opened.ts - answered.ts > 1.0                       # the AI heard nothing while it played
    record = await app.extensions["history"].get(probe.first("call.ended").call_id)
    assert Path(record["recording"]).exists()


async def test_a_killed_aribot_leaves_a_readable_recording_repaired_at_the_next_start(
    asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, tmp_path: Path
) -> None:
    fake.script = Script(turns=[Turn.audio(speech(1500, seed=81), "Hello, how can I help?")],
                         caller_transcripts=["Hello?"])
    folder, http_port = tmp_path / "rec", free_tcp_port()
    env = serve_env(asterisk_lab, fake.url, http_port, legacy=False) | {
        "ARIBOT_HISTORY__PATH": str(tmp_path / "history.sqlite3"), "ARIBOT_RECORDING__ENABLED": "true",
        "ARIBOT_RECORDING__PATH": str(folder)}
    first = await start_serve(tmp_path, env, http_port)
    caller = SippCaller(asterisk_lab, tmp_path / "sipp", silence(400) + speech(800) + silence(15000),
                        audio_delay_ms=300, hangup="server")
    run = asyncio.create_task(caller.run())
    conn = await fake.wait_for_connection()
    await conn.wait_for(lambda: (conn.responses and conn.responses[0].done) or None, timeout=10)
    files = await until(lambda: list(folder.glob("*.wav")), "the recording file")
    await until(lambda: files[0].stat().st_size > 44 + 4 * 8000 * 3, "3 s recorded")
    first.send_signal(signal.SIGKILL)
    await first.wait()
    size = files[0].stat().st_size
    left, right, declared = channels(files[0])                # readable as the kill left it
    assert declared > 0 and 0 <= size - 44 - 4 * declared <= 4 * 8000 * recorder.FLUSH_S * 2
    assert voiced(left) and voiced(right)
    second = await start_serve(tmp_path, env, http_port)       # repairs the header at start
    try:
        result = await run
        assert result.ok and result.bye_received, result.error
    finally:
        second.send_signal(signal.SIGTERM)
        output = (await asyncio.wait_for(second.communicate(), 20))[0].decode()
    _, _, repaired = channels(files[0])
    assert repaired == (size - 44) // 4
    assert ("repaired the header of 1 file(s)" in output) == (repaired != declared), output[-3000:]
    print(f"killed mid-call: the recording declared {declared / 8000:.2f} s of {(size - 44) / 32000:.2f} s "
          f"written; repaired at the next start")
