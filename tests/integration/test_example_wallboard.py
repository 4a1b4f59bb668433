"""A third party's dashboard page as a drop-in package (examples/aribot-example-wallboard): pip
installed, it is listed as a plugin with the register_pages hook, its page is served by the real
dashboard server with a menu entry, and switching the plugin off takes the page away."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.lab.examples import installed_example
from tests.unit.dashboard_server import start_dashboard

ARIBOT = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "aribot"


@pytest.fixture(scope="module")
def wallboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with installed_example("aribot-example-wallboard", tmp_path_factory.mktemp("wallboard"),
                           "aribot_example_wallboard") as site:
        yield site


async def test_the_wallboard_page_drops_in(wallboard: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(wallboard)}
    listed = subprocess.run([str(ARIBOT), "plugins", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            check=True)
    plugins = {p["name"]: p for p in json.loads(listed.stdout)}
    assert plugins["example_wallboard"]["source"] == "entry point (aribot-example-wallboard)"
    assert "register_pages" in plugins["example_wallboard"]["hooks"]
    async for base, app in start_dashboard(monkeypatch, tmp_path):
        assert "example_wallboard" in {info.name for info in app.plugins.infos()}, app.plugins.infos()
        async with httpx.AsyncClient(base_url=base) as client:
            home = (await client.get("/")).text
            assert '"text":"Wallboard"' in home                            # the menu entry
            page = await client.get("/wallboard")
            assert page.status_code == 200 and "calls now" in page.text   # the page itself, drawn by the plugin
            await app.set_plugin_enabled("example_wallboard", False)
            assert '"text":"Wallboard"' not in (await client.get("/")).text
            assert "calls now" not in (await client.get("/wallboard")).text
