"""session.update built from settings is GA-shaped; URL and headers for OpenAI and Azure."""

from __future__ import annotations

import base64
import dataclasses
import json
from types import SimpleNamespace

import pytest
from openai.types.realtime import RealtimeClientEvent
from pydantic import TypeAdapter

from aribot.core.app import configure
from aribot.plugins.openai_realtime import realtime_config
from aribot.plugins.openai_realtime.client import append_message, auth_headers, build_session_update, realtime_url

CLIENT_EVENT = TypeAdapter(RealtimeClientEvent)


@pytest.fixture
def openai_cfg(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ARIBOT_OPENAI__API_KEY", "sk-test")
    return realtime_config(configure()[0])


def test_session_update_is_ga_and_pcmu(openai_cfg) -> None:
    tools = [{"type": "function", "name": "f", "description": "d",
              "parameters": {"type": "object", "properties": {}, "required": []}}]
    update = build_session_update(openai_cfg, "ulaw", tools)
    CLIENT_EVENT.validate_python(update)
    session = update["session"]
    assert session["type"] == "realtime"
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["input"]["turn_detection"]["interrupt_response"] is True
    assert session["tools"] == tools
    for beta_key in ("modalities", "voice", "input_audio_format", "turn_detection", "temperature"):
        assert beta_key not in session


def test_alaw_and_no_turn_detection(openai_cfg) -> None:
    openai_cfg = dataclasses.replace(openai_cfg, turn_detection="none", transcription_model="", noise_reduction="")
    update = build_session_update(openai_cfg, "alaw", [])
    CLIENT_EVENT.validate_python(update)
    audio_in = update["session"]["audio"]["input"]
    assert audio_in["format"] == {"type": "audio/pcma"} and audio_in["turn_detection"] is None
    assert "transcription" not in audio_in and "noise_reduction" not in audio_in


def test_url_and_headers() -> None:
    cfg = SimpleNamespace(url="wss://api.openai.com/v1/realtime", model="gpt-realtime", api_key="k", provider="openai")
    assert realtime_url(cfg) == "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    assert auth_headers(cfg) == {"Authorization": "Bearer k"}
    azure = SimpleNamespace(url="wss://res.openai.azure.com/openai/v1/realtime?model=dep1", model="x",
                            api_key="k", provider="azure")
    assert realtime_url(azure) == "wss://res.openai.azure.com/openai/v1/realtime?model=dep1"
    assert auth_headers(azure) == {"api-key": "k"}


def test_append_message_is_exact_json() -> None:
    audio = bytes(range(160))
    event = json.loads(append_message(audio))
    CLIENT_EVENT.validate_python(event)
    assert base64.b64decode(event["audio"]) == audio


def test_redact_url_hides_keys() -> None:
    from aribot.plugins.openai_realtime.client import redact_url
    url = "wss://res.openai.azure.com/openai/v1/realtime?model=dep&api-key=SECRET"
    assert "SECRET" not in redact_url(url) and "model=dep" in redact_url(url)


async def test_send_now_keeps_order_with_awaited_sends_and_refuses_a_closed_socket() -> None:
    """The per-frame append path writes in the caller's own loop step; mixed with awaited sends,
    the server still receives every frame once, in order; a closed socket gets False, not a write."""
    from aribot.plugins.openai_realtime.client import RealtimeConnection
    from tests.fake_realtime import FakeRealtimeServer

    async with FakeRealtimeServer(api_key="k") as server:
        conn = RealtimeConnection(server.url + "?model=gpt-realtime", {"Authorization": "Bearer k"}, open_timeout=5)
        await conn.open()
        fake = await server.wait_for_connection()
        frames = [bytes([n]) * 160 for n in range(1, 41)]
        for n, frame in enumerate(frames):
            if n % 3 == 2:
                await conn.send(append_message(frame))
            else:
                assert conn.send_now(append_message(frame))
        await fake.wait_for_input_audio(160 * len(frames))
        assert bytes(fake.input_audio) == b"".join(frames)
        assert [size for _t, size in fake.appends] == [160] * len(frames)
        await conn.close()
        assert conn.send_now(append_message(frames[0])) is False
