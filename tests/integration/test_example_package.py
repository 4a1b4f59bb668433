"""The drop-in tools package: pip-installed into the test venv it appears in `aribot plugins`,
GET /tools and the session.update of the next call; listed in [plugins] disabled, it is gone
from all three. The AI can call its tools through the real Asterisk."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from aribot.plugins.local_backend.realtime.script import Script, Turn
from aribot.sandbox.asterisk import AsteriskLab
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab.audio import speech
from tests.lab.calls import caller_turns, padded, place_call, tool_outputs
from tests.lab.examples import installed_example as installed_example_package
from tests.lab.serve import ARIBOT
from tests.lab.sniffer import RtpSniffer


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with installed_example_package("aribot-example-orders", tmp_path_factory.mktemp("example"),
                                   "aribot_example_orders") as site:
        yield site


def listed_plugins(tmp_path: Path, site: Path, disabled: bool) -> dict[str, dict]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(site)}
    if disabled:
        env["ARIBOT_PLUGINS__DISABLED"] = '["example_orders"]'
    out = subprocess.run([str(ARIBOT), "plugins", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=True)
    return {p["name"]: p for p in json.loads(out.stdout)}


@pytest.mark.parametrize("disabled", [False, True], ids=["installed", "disabled"])
async def test_example_package_drops_in_and_out(
    installed_example: Path, asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer,
    make_aribot, tmp_path: Path, disabled: bool,
) -> None:
    plugins = listed_plugins(tmp_path, installed_example, disabled)
    answer = speech(500, seed=5)
    fake.script = Script(turns=[Turn.function_call("lookup_order", {"order_id": "1001"}),
                                Turn.audio(answer, "Your order has shipped.")])
    app = await make_aribot(fake.url, plugins={"disabled": ["example_orders"] if disabled else []})
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{app.http.port}/tools") as resp:
            tools = {t["name"]: t for t in await resp.json()}
    placed = await place_call(asterisk_lab, tmp_path / "sipp", caller_turns(600), audio_delay_ms=300,
                              hold_ms_after_audio=300, sniffer=rtp_sniffer)
    offered = {t["name"] for t in fake.connections[0].session["tools"]}
    if disabled:
        assert "example_orders" not in plugins
        assert not {"lookup_order", "opening_hours"} & set(tools) and not {"lookup_order", "opening_hours"} & offered
        assert "no tool named 'lookup_order'" in tool_outputs(fake.connections[0])[0]["error"]
        return
    assert plugins["example_orders"]["source"] == "entry point (aribot-example-orders)"
    assert plugins["example_orders"]["state"] == "enabled" and plugins["example_orders"]["version"] == "0.1.0"
    assert tools["lookup_order"]["plugin"] == "example_orders" and tools["opening_hours"]["enabled"] is True
    assert tools["opening_hours"]["parameters"]["properties"]["day"]["enum"] == ["weekday", "saturday", "sunday"]
    assert {"lookup_order", "opening_hours"} <= offered
    assert tool_outputs(fake.connections[0])[0] == {"order_id": "1001", "status": "shipped", "carrier": "DHL",
                                               "expected": "tomorrow", "asked_by": "sipp"}
    assert placed.audio == padded(answer)
