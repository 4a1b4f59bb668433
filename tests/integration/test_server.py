"""aribot as a server: the CLI contract (env names), clean stop, HTTP API, greeting, tools."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
from pathlib import Path

import aiohttp
import pytest

from aribot.core.events import CallEnded
from aribot.plugins.local_backend.realtime.script import Script, Turn
from aribot.sandbox.asterisk import AsteriskLab
from aribot.sandbox.ports import free_tcp_port
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab.audio import speech
from tests.lab.calls import caller_turns, heard, padded, place_call
from tests.lab.serve import API_KEY, ARIBOT, serve_env, wait_healthy
from tests.lab.sipp import SippCaller
from tests.lab.sniffer import RtpSniffer

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("legacy", [False, True], ids=["aribot-names", "quickstart-names"])
async def test_cli_serve_call_and_sigterm_mid_call(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, tmp_path: Path, legacy: bool
) -> None:
    """`aribot serve` configured only by env vars answers a call; SIGTERM during the call (with no
    drain time) ends it with the AI's goodbye, exits 0 and leaves Asterisk clean."""
    answer, goodbye = speech(600, seed=31), speech(400, seed=32)
    fake.script = Script(turns=[Turn.audio(answer, "hi"), Turn.audio(goodbye, "Goodbye.")])
    http_port = free_tcp_port()
    env = serve_env(asterisk_lab, fake.url, http_port, legacy=legacy) | {"ARIBOT_CALL__DRAIN_TIMEOUT": "0"}
    proc = await asyncio.create_subprocess_exec(
        str(ARIBOT), "serve", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        health = await wait_healthy(http_port)
        assert health["ari"] == "connected" and health["app"] == asterisk_lab.app
        caller = SippCaller(asterisk_lab, tmp_path / "sipp", caller_turns(700, gap_ms=6000), audio_delay_ms=500,
                            hangup="server")
        rtp_sniffer.watch(caller.media_port)
        run = asyncio.create_task(caller.run())
        conn = await fake.wait_for_connection()
        await conn.wait_for_response(0, timeout=10)
        await rtp_sniffer.wait_packets(caller.media_port, len(padded(answer)) // 160, timeout=10)
        proc.send_signal(signal.SIGTERM)
        result = await run
        output = (await asyncio.wait_for(proc.communicate(), 15))[0].decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, output
    assert result.ok and result.bye_received, result.error
    assert b"".join(p.payload for p in heard(rtp_sniffer, caller.media_port)) == padded(answer) + padded(goodbye)
    assert "stopped cleanly" in output and "ended (shutdown)" in output
    assert lab_password_absent(output, asterisk_lab)
    assert await asterisk_lab.wait_clean(2.0) == ([], [])


def lab_password_absent(output: str, lab: AsteriskLab) -> bool:
    return lab.ari_password not in output and API_KEY not in output


def test_cli_config_masks_secrets_and_plugins_lists(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARIBOT_")}
    env |= {"OPENAI_API_KEY": "sk-secret-value", "ARIBOT_ARI__PASSWORD": "pw-secret"}
    shown = subprocess.run([str(ARIBOT), "config", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           check=True)
    config = json.loads(shown.stdout)
    assert config["openai.api_key"] == {"value": "***", "source": "env OPENAI_API_KEY (the quickstart's name)"}
    assert config["ari.password"] == {"value": "***", "source": "env ARIBOT_ARI__PASSWORD"}
    assert config["ari.url"] == {"value": "http://127.0.0.1:8088", "source": "default"}
    assert "secret" not in shown.stdout
    text = subprocess.run([str(ARIBOT), "config"], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert re.search(r'^password = "\*\*\*" +# env ARIBOT_ARI__PASSWORD$', text.stdout, re.M), text.stdout
    assert "sk-secret-value" not in text.stdout and "pw-secret" not in text.stdout
    listed = subprocess.run([str(ARIBOT), "plugins", "--json"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, check=True)
    plugins = {p["name"]: p for p in json.loads(listed.stdout)}
    assert plugins["activation_immediate"]["state"] == "enabled"
    assert plugins["activation_immediate"]["source"] == "built-in"
    env["ARIBOT_PLUGINS__DISABLED"] = '["activation_immediate"]'
    listed = subprocess.run([str(ARIBOT), "plugins", "--json"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, check=True)
    assert "activation_immediate" not in {p["name"] for p in json.loads(listed.stdout)}
    listed = subprocess.run([str(ARIBOT), "plugins", "--json", "--all"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, check=True)
    assert {p["name"]: p for p in json.loads(listed.stdout)}["activation_immediate"]["state"] == "disabled"
    bad = subprocess.run([str(ARIBOT), "serve"], cwd=tmp_path, env=env | {"ARIBOT_RTP__PORT_MIN": "x"},
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "rtp.port_min = 'x'" in bad.stderr
    no_mode = subprocess.run([str(ARIBOT), "serve"], cwd=tmp_path, env=env | {"ARIBOT_ACTIVATION__MODE": "Immediate"},
                             capture_output=True, text=True, timeout=30)
    assert no_mode.returncode == 2 and "activation.mode" in no_mode.stderr


@pytest.mark.parametrize("action", ["hangup", "continue"])
async def test_stop_ends_live_calls_per_settings(
    asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, make_aribot, tmp_path: Path, action: str
) -> None:
    app = await make_aribot(fake.url, call={"on_shutdown": action})
    ended: list[CallEnded] = []
    app.bus.subscribe(CallEnded, ended.append)
    mark = len(asterisk_lab.log_text())
    caller = SippCaller(asterisk_lab, tmp_path / "sipp", caller_turns(500, gap_ms=8000), hangup="server")
    run = asyncio.create_task(caller.run())
    await fake.wait_for_connection()
    await app.stop()
    result = await run
    assert result.ok and result.bye_received, result.error
    assert ended and ended[0].reason == "shutdown"
    assert await asterisk_lab.wait_clean(2.0) == ([], [])
    after = asterisk_lab.log_text()[mark:]
    assert ("after-stasis 100" in after) == (action == "continue")


async def test_http_api_healthz_tools_and_logs(
    asterisk_lab: AsteriskLab, fake: FakeRealtimeServer, make_aribot, tmp_path: Path
) -> None:
    answer = speech(400, seed=41)
    fake.script = Script(turns=[Turn.audio(answer, "fine, thanks")])
    app = await make_aribot(fake.url)
    base = f"http://127.0.0.1:{app.http.port}"
    async with aiohttp.ClientSession() as session:
        async with session.get(base + "/healthz") as resp:
            assert resp.status == 200 and (await resp.json())["ari"] == "connected"
        async with session.get(base + "/tools") as resp:
            tools = {t["name"]: t for t in await resp.json()}
            assert resp.status == 200 and set(tools) == {"end_call", "transfer_call", "send_dtmf", "current_time",
                                                         "warm_transfer", "warm_transfer_answer"}
            assert tools["end_call"]["plugin"] == "tools_end_call" and tools["end_call"]["enabled"] is True
            assert tools["transfer_call"]["parameters"]["required"] == ["extension"]
        async with session.ws_connect(base + "/logs") as ws:
            hello = await ws.receive_json()
            assert hello == {"type": "hello", "calls": []}
            caller = SippCaller(asterisk_lab, tmp_path / "sipp", caller_turns(600), audio_delay_ms=300,
                                hold_ms_after_audio=300)
            run = asyncio.create_task(caller.run())
            seen: list[dict] = []
            while not seen or seen[-1]["type"] != "call.ended":
                seen.append(await asyncio.wait_for(ws.receive_json(), 15))
            assert (await run).ok
    types = [m["type"] for m in seen]
    for expected in ("call.started", "call.answered", "call.media_connected", "call.backend_ready",
                     "call.activation_opened", "call.speech_started", "call.speech_stopped", "call.response_started",
                     "call.bot_audio_started", "call.transcript", "call.response_done", "call.ended"):
        assert expected in types, f"{expected} missing from /logs: {types}"
    call_ids = {m["call_id"] for m in seen}
    assert len(call_ids) == 1
    assistant = [m["text"] for m in seen if m["type"] == "call.transcript" and m["role"] == "assistant"]
    assert assistant == ["fine, thanks"]
    latency = [m["latency_ms"] for m in seen if m["type"] == "call.bot_audio_started"]
    assert latency and latency[0] is not None and latency[0] >= 0


async def test_healthz_is_503_until_ari_connects(make_aribot, tmp_path: Path) -> None:
    from aribot.core.app import App, configure
    from tests.lab.serve import write_settings

    path = write_settings(tmp_path / "s.toml", {"ari": {"url": f"http://127.0.0.1:{free_tcp_port()}"},
                                                "http": {"port": 0}, "ui": {"enabled": False}})
    app = App(*configure(path))
    await app.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{app.http.port}/healthz") as resp:
                body = await resp.json()
        assert resp.status == 503 and body["ari"] == "disconnected" and "error" in body
    finally:
        await app.stop()


async def test_greeting_plays_before_the_ai_listens(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path
) -> None:
    answer = speech(500, seed=51)
    fake.script = Script(turns=[Turn.audio(answer, "welcome")])
    await make_aribot(fake.url, call={"greeting": "sound:hello-world"})
    caller_audio = caller_turns(700)
    # the caller starts talking after the greeting (hello-world is about 1.4 s)
    placed = await place_call(asterisk_lab, tmp_path / "sipp", caller_audio, audio_delay_ms=2500,
                              hold_ms_after_audio=300, sniffer=rtp_sniffer)
    packets = placed.packets
    payload = b"".join(p.payload for p in packets)
    assert payload.endswith(padded(answer))
    greeting = payload[: -len(padded(answer))]
    assert len(greeting) >= 1000 * 8 and len(set(greeting)) > 20     # more than a second of real audio
    assert bytes(fake.connections[0].input_audio) == caller_audio


async def test_function_call_round_trip(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer, make_aribot, tmp_path: Path,
    plugin_folder,
) -> None:
    answer = speech(600, seed=61)
    fake.script = Script(turns=[Turn.function_call("lookup_order", {"order_id": "42"}),
                                Turn.audio(answer, "Order 42 has shipped.")])
    app = await make_aribot(fake.url, plugins={"paths": [plugin_folder("order_tools")]})
    assert "lookup_order" in [t["name"] for t in app.tools.definitions()]
    placed = await place_call(asterisk_lab, tmp_path / "sipp", caller_turns(700), audio_delay_ms=300,
                              hold_ms_after_audio=300, sniffer=rtp_sniffer)
    conn = fake.connections[0]
    assert "lookup_order" in [t["name"] for t in conn.session["tools"]]
    outputs = [e["item"] for e in conn.received_of_type("conversation.item.create")]
    assert len(outputs) == 1 and json.loads(outputs[0]["output"]) == {"order_id": "42", "status": "shipped"}
    assert conn.errors_sent == []            # the fake refuses a response.create before response.done
    assert [r.status for r in conn.responses] == ["completed", "completed"]
    assert placed.audio == padded(answer)
