"""Integration fixtures: the lab Asterisk (one per session), the RTP sniffer, a strict fake
Realtime server per test, and aribot itself in-process with settings pointing at both."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from nicegui.testing.general import nicegui_reset_globals

from aribot.core.app import App, configure
from aribot.core.ari import AriClient
from aribot.sandbox.asterisk import AsteriskLab
from tests.contract.ari_docs import validate_request
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab.ai_fakes import BACKENDS, FAKES, AiFake
from tests.lab.fixtures import asterisk_lab, lab_chroot, rtp_sniffer  # noqa: F401
from tests.lab.serve import API_KEY, lab_settings, write_settings

TEST_PLUGINS = Path(__file__).resolve().parents[1] / "lab" / "plugins"


@pytest.fixture
def plugin_folder(tmp_path: Path) -> Callable[..., str]:
    """``plugin_folder("order_tools", ...)``: a folder holding those plugins of tests/lab/plugins,
    for ``make_aribot(..., plugins={"paths": [folder]})`` (aribot's own loading path, as a user's)."""
    def make(*names: str) -> str:
        folder = tmp_path / "plugins"
        folder.mkdir(exist_ok=True)
        for name in names:
            shutil.copy(TEST_PLUGINS / f"{name}.py", folder / f"{name}.py")
        return str(folder)
    return make


@pytest.fixture
async def fake() -> AsyncIterator[FakeRealtimeServer]:
    """A strict fake Realtime GA server; every frame it sends is checked against the SDK types."""
    server = FakeRealtimeServer(api_key=API_KEY)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
    server.assert_no_fake_bugs()


@pytest.fixture(params=BACKENDS)
async def ai(request: pytest.FixtureRequest) -> AsyncIterator[AiFake]:
    """A strict fake of each speech backend's service in turn (OpenAI Realtime GA, GPT-Live), for the
    scenarios that matter to a caller; aribot must not break its protocol."""
    fake = FAKES[request.param]()
    await fake.server.start()
    try:
        yield fake
    finally:
        await fake.server.stop()
    fake.assert_clean()


@pytest.fixture
def ari_requests(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Every ARI request aribot makes, recorded; each is validated against Asterisk's api-docs."""
    made: list[tuple[str, dict[str, Any]]] = []
    original = AriClient.call

    async def recording_call(self: AriClient, op: str, **params: Any) -> Any:
        made.append((op, dict(params)))
        return await original(self, op, **params)

    monkeypatch.setattr(AriClient, "call", recording_call)
    return made


MakeAribot = Callable[..., Awaitable[App]]


@pytest.fixture
async def make_aribot(
    asterisk_lab: AsteriskLab, tmp_path: Path, ari_requests: list[tuple[str, dict[str, Any]]]  # noqa: F811
) -> AsyncIterator[MakeAribot]:
    """Start aribot in-process (``await make_aribot(url, section={...})``); at teardown it is
    stopped, Asterisk must be clean within 2 s and every ARI request must match the api-docs."""
    apps: list[App] = []
    fresh_ui = contextlib.ExitStack()

    async def make(realtime_url: str, **overrides: dict[str, Any]) -> App:
        path = write_settings(tmp_path / f"settings-{len(apps)}.toml",
                              lab_settings(asterisk_lab, realtime_url, **overrides))
        settings, plugins = configure(path)
        if settings.ui.enabled and not any(a.settings.ui.enabled for a in apps):
            fresh_ui.enter_context(nicegui_reset_globals())   # NiceGUI's app is process-global: a fresh one
        app = App(settings, plugins)
        await app.start()
        apps.append(app)
        await asyncio.wait_for(app.stream.connected.wait(), 5)
        return app

    yield make
    # checked while aribot still runs: each call must have cleaned up after itself
    channels, bridges = await asterisk_lab.wait_clean(2.0)
    for app in apps:
        await app.stop()
    fresh_ui.close()
    assert (channels, bridges) == ([], []), f"left in Asterisk: {channels} {bridges}"
    problems = [p for op, params in ari_requests for p in validate_request(op, params)]
    assert problems == [], problems
