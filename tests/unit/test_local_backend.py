"""The local voice backend over a real WebSocket: strict GA frames (checked against the openai SDK's
models, as the suite's fake is), energy turn detection, the caller's words played back byte-exact,
offline transcription, and the fixed phrases for responses the core asks for."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect

from aribot.plugins.local_backend.plugin import PAUSE_MS, PHRASES, LocalBackend
from aribot.plugins.local_backend.realtime.vad import rms
from aribot.plugins.local_backend.voice import decode_g711, encode_g711, resample, synthesize
from tests.fake_realtime.validation import check_server_event

SESSION = {
    "type": "realtime", "output_modalities": ["audio"],
    "audio": {
        "input": {"format": {"type": "audio/pcmu"}, "transcription": {"model": "gpt-4o-mini-transcribe"},
                  "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                                     "silence_duration_ms": 500, "create_response": True,
                                     "interrupt_response": True}},
        "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"},
    },
}  # fmt: skip
SILENCE = b"\xff"


@pytest.fixture
async def backend() -> AsyncIterator[LocalBackend]:
    local = LocalBackend()
    await local.start()
    assert local.server is not None
    local.server.validator = check_server_event  # every frame it sends must be a valid GA event
    try:
        yield local
    finally:
        bugs = list(local.server.fake_bugs)
        await local.stop()
        assert bugs == []


async def open_session(local: LocalBackend) -> ClientConnection:
    ws = await connect(f"{local.url}?model=gpt-realtime", additional_headers={"Authorization": f"Bearer {local.api_key}"})
    assert json.loads(await ws.recv())["type"] == "session.created"
    await ws.send(json.dumps({"type": "session.update", "session": SESSION}))
    assert json.loads(await ws.recv())["type"] == "session.updated"
    return ws


async def events_until(ws: ClientConnection, last: str, timeout: float = 20.0) -> list[dict]:
    seen: list[dict] = []
    async with asyncio.timeout(timeout):
        while not seen or seen[-1]["type"] != last:
            seen.append(json.loads(await ws.recv()))
    return seen


async def append(ws: ClientConnection, audio: bytes) -> None:
    for start in range(0, len(audio), 160):
        await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                  "audio": base64.b64encode(audio[start:start + 160]).decode()}))


def test_synthesised_speech_is_whole_frames_of_loud_ulaw() -> None:
    audio = synthesize("testing one two three")
    assert len(audio) % 160 == 0 and len(audio) > 8000  # over a second
    windows = [audio[i:i + 160] for i in range(0, len(audio), 160)]
    assert max(rms(w, "audio/pcmu") for w in windows) > 3000
    assert min(rms(w, "audio/pcmu") for w in windows) < 300  # pauses between words stay quiet


def test_g711_and_resampling_round_trip() -> None:
    tone = 8000 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)
    back = decode_g711(encode_g711(tone)).astype(float)
    assert np.max(np.abs(back - tone)) < 8000 * 0.04  # µ-law's step at this level
    up = resample(tone, 8000, 16000)
    assert len(up) == 16000 and np.max(np.abs(up[::2] - tone)) < 1e-6
    down = resample(up, 16000, 8000)
    assert np.max(np.abs(down[100:-100] - tone[100:-100])) < 8000 * 0.05


async def test_a_caller_turn_is_answered_with_a_phrase_and_the_callers_own_words(backend: LocalBackend) -> None:
    ws = await open_session(backend)
    words = synthesize("hello, this is a test call")
    lead = SILENCE * 8 * 600
    await append(ws, lead + words + SILENCE * 8 * 1000)
    events = await events_until(ws, "response.done")
    kinds = [e["type"] for e in events]
    for before, after in (("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped"),
                          ("input_audio_buffer.speech_stopped", "input_audio_buffer.committed"),
                          ("input_audio_buffer.committed", "response.created"),
                          ("response.created", "response.output_audio.delta")):
        assert kinds.index(before) < kinds.index(after)
    started = next(e for e in events if e["type"] == "input_audio_buffer.speech_started")
    stopped = next(e for e in events if e["type"] == "input_audio_buffer.speech_stopped")
    sent_all = lead + words + SILENCE * 8 * 1000
    first_loud = next(i for i in range(0, len(sent_all), 160) if rms(sent_all[i:i + 160], "audio/pcmu") > 300)
    assert started["audio_start_ms"] == first_loud // 8 - 300  # the first loud window, minus prefix padding
    assert stopped["audio_end_ms"] > 600 + len(words) // 8 - 300
    audio = b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta")
    sent = sent_all[started["audio_start_ms"] * 8:stopped["audio_end_ms"] * 8]
    pause = SILENCE * 8 * PAUSE_MS
    assert audio == backend.phrases["heard"] + pause + sent + pause  # the echo is byte-exact
    assert words in audio
    done = events[-1]["response"]
    assert done["status"] == "completed" and done["output"][0]["content"][0]["transcript"].startswith(PHRASES["heard"])
    completed = "conversation.item.input_audio_transcription.completed"
    if completed not in kinds:  # transcription runs beside the response: before or after its end
        events += await events_until(ws, completed)
    transcript = next(e for e in events if e["type"] == completed)
    assert transcript["item_id"] == stopped["item_id"] and transcript["transcript"].strip()
    await ws.close()


async def test_quiet_noise_is_not_a_turn(backend: LocalBackend) -> None:
    ws = await open_session(backend)
    rng = np.random.default_rng(1)
    noise = encode_g711(rng.normal(0, 100, 8000 * 2))  # RMS 100: room noise, under the 300 threshold
    await append(ws, noise)
    await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))  # acknowledged after every append
    events = await events_until(ws, "input_audio_buffer.cleared")
    assert [e["type"] for e in events] == ["input_audio_buffer.cleared"]
    await ws.close()


@pytest.mark.parametrize(("instructions", "key"), [
    ("The call has reached its time limit. Say a short, polite goodbye.", "goodbye"),
    ("The caller has said nothing for a while. Briefly ask whether they are still there.", "still_there"),
    ("Greet the caller.", "hello"),
])
async def test_responses_the_core_asks_for_get_a_fitting_phrase(backend: LocalBackend, instructions: str,
                                                                 key: str) -> None:
    ws = await open_session(backend)
    await ws.send(json.dumps({"type": "response.create", "response": {"instructions": instructions}}))
    events = await events_until(ws, "response.done")
    audio = b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta")
    assert audio == backend.phrases[key]
    assert events[-1]["response"]["output"][0]["content"][0]["transcript"] == PHRASES[key]
    await ws.close()


async def test_a_wrong_key_is_refused(backend: LocalBackend) -> None:
    async with connect(f"{backend.url}?model=gpt-realtime", additional_headers={"Authorization": "Bearer nope"}) as ws:
        error = json.loads(await ws.recv())
        assert error["type"] == "error" and error["error"]["code"] == "invalid_api_key"
