"""The capacity benchmark's simulated Asterisk (benchmarks/sim_asterisk.py) is faithful enough to
stand in for the real one: aribot serves calls through it end to end, every ARI request aribot
makes is one of Asterisk 22's, every event it sends carries what Asterisk's event models require,
and after the hang-up nothing is left. A harness that drifted from Asterisk would fail here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from aribot.core.app import App, configure
from aribot.sandbox.ports import free_tcp_port, free_udp_port_range
from benchmarks.sim_asterisk import SimAsterisk, caller_audio
from tests.contract.ari_docs import event_models, validate_request
from tests.lab.serve import API_KEY, write_settings
from tests.lab.wait import until


async def test_simulated_asterisk_carries_calls_through_aribot(tmp_path: Path, fake: Any,
                                                               ari_requests: list[tuple[str, dict[str, Any]]]) -> None:
    sim = SimAsterisk("aribot-sim", "asterisk", "sim-secret", caller_audio())
    sim.sent_log = []
    runner = web.AppRunner(sim.app(), access_log=None)
    await runner.setup()
    port = free_tcp_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    sim.engine.start()
    low, high = free_udp_port_range(16)
    path = write_settings(tmp_path / "settings.toml", {
        "ari": {"url": f"http://127.0.0.1:{port}", "password": "sim-secret", "app": "aribot-sim"},
        "rtp": {"port_min": low, "port_max": high},
        "openai": {"url": fake.url, "api_key": API_KEY, "vad_silence_duration_ms": 500},
        "activation": {"mode": "immediate"}, "call": {"greeting": ""}, "http": {"port": 0},
        "ui": {"enabled": False}, "history": {"path": str(tmp_path / "history.sqlite3")}})
    app = App(*configure(path))
    await app.start()
    try:
        reply = await sim.originate(3, rate=50)
        assert reply == {"event": "connected", "calls": 3, "failed": 0}
        with sim.engine.lock:
            sim.engine.window = True
        connections = await fake.wait_for_connections(3)
        for conn in connections:           # every caller's first turn answered, its audio heard
            await conn.wait_for_response_done(0, timeout=10)
        await until(lambda: sim.engine.pacing_us and all(leg.rx >= 50 for leg in sim.engine.legs.values()),
                    "a second of aribot's audio on every simulated leg", interval=0.05)
        with sim.engine.lock:
            sim.engine.window = False
        done = await sim.hangup_all()
    finally:
        await app.stop()
        sim.engine.stopping = True
        await runner.cleanup()
    assert (done["left_legs"], done["left_bridges"], done["unexpected"], done["failed"]) == (0, 0, {}, 0)
    assert done["lost"] == 0 and done["pacing_us"]["n"] >= 3 * 40
    assert done["pacing_us"]["p50"] < 5000       # 20 ms frames, not bursts (loose: CI shares its cores)
    assert all(len(conn.input_audio) >= 160 * 50 for conn in connections)  # the callers reached the AI
    assert [p for op, params in ari_requests for p in validate_request(op, params)] == []
    models = event_models()
    for event in sim.sent_log:
        model = models[event["type"]]
        missing = [prop for prop, spec in model["properties"].items() if spec.get("required") and prop not in event]
        assert missing == [], f"{event['type']} lacks {missing}"
    assert {"StasisStart", "ChannelEnteredBridge", "StasisEnd", "ChannelDestroyed"} <= {e["type"] for e in sim.sent_log}
