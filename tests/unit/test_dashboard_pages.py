"""Dashboard pages are plugins (hook register_pages): the built-in pages come through the hook, a
third-party page gets a menu entry and its path parameters, and a bad page plugin costs only its
own pages. Driven with NiceGUI's simulated user against a real App and its bus."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
from nicegui import ui
from nicegui.testing import user_simulation

import aribot
from aribot.core import events as ev
from aribot.core.app import App
from aribot.plugins.ui_nicegui.live import LiveState
from aribot.plugins.ui_nicegui.pages import Dashboard
from tests.unit.dashboard_server import dashboard_app

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> App:
    return dashboard_app(monkeypatch, tmp_path)


def board(app: App) -> Dashboard:
    state = LiveState(keep_s=60)
    app.bus.subscribe(None, state.on_event, owner="ui_nicegui")
    return Dashboard(app, state)


def wallboard_example() -> Any:
    """The example package's module, imported from examples/ as an installed plugin would be."""
    path = REPO / "examples" / "aribot-example-wallboard" / "aribot_example_wallboard" / "__init__.py"
    spec = importlib.util.spec_from_file_location("aribot_example_wallboard", path)
    module = importlib.util.module_from_spec(spec)   # type: ignore[arg-type]
    sys.modules.setdefault("aribot_example_wallboard", module)
    spec.loader.exec_module(module)                  # type: ignore[union-attr]
    return module


def test_a_page_path_and_title_are_checked() -> None:
    for path in ("wallboard", "/Wall", "/a//b", "/a/{1x}", "/../etc", "/a?b=1"):
        with pytest.raises(ValueError, match="page path"):
            aribot.Page(path, "T", lambda board: None)
    with pytest.raises(ValueError, match="needs a title"):
        aribot.Page("/x", " ", lambda board: None)
    with pytest.raises(ValueError, match="callable"):
        aribot.Page("/x", "X", "not a function")   # type: ignore[arg-type]
    assert aribot.Page("/queue/{name}", "", lambda board, name: None, menu=False).path == "/queue/{name}"


def test_the_built_in_pages_come_through_the_hook(app: App) -> None:
    pages = Dashboard(app, LiveState()).pages()
    assert [(owner, page.path) for owner, page in pages if page.menu] == [
        ("ui_nicegui", "/"), ("ui_nicegui", "/session"), ("ui_nicegui", "/plugins"), ("ui_nicegui", "/history"),
        ("ui_nicegui", "/setup")]
    assert {page.path for _owner, page in pages if not page.menu} == {"/call/{call_id}", "/history/{call_id}"}


async def test_hook_register_pages(app: App) -> None:
    """The example wallboard plugin: its menu entry, its page fed by the bus, and gone once the
    plugin is switched off."""
    app.plugins.register(wallboard_example(), "example_wallboard")
    dash = board(app)
    async with user_simulation(root=dash.root) as user:
        await user.open("/")
        await user.should_see(marker="menu-wallboard")
        await user.open("/wallboard")
        await user.should_see("Wallboard")
        await user.should_see("0", marker="wall-calls")
        app.bus.emit(None, ev.CallStarted(call_id="w1", channel_id="w1", caller_number="4930123", extension="100"))
        await user.should_see("1", marker="wall-calls")
        await user.should_see("4930123")
        app.bus.emit(None, ev.SpeechStarted(call_id="w1", item_id="i1"))
        await user.should_see("caller speaking", marker="wall-call-w1")
    await app.set_plugin_enabled("example_wallboard", False)
    async with user_simulation(root=dash.root) as user:
        await user.open("/")
        await user.should_not_see(marker="menu-wallboard")


async def test_path_parameters_reach_the_page_and_query_parameters_do_not(app: App) -> None:
    seen: list[dict[str, Any]] = []

    class Queues:
        @aribot.hookimpl
        def register_pages(self, register):
            def queue(board: Any, **params: Any) -> None:
                seen.append(params)
                ui.label(f"queue {params.get('name')}")
            register(aribot.Page("/queue/{name}", "", queue, menu=False))

    app.plugins.register(Queues(), "queues")
    async with user_simulation(root=board(app).root) as user:
        await user.open("/queue/sales?name=evil&call_id=x")
        await user.should_see("queue sales")
    assert seen == [{"name": "sales"}]


async def test_a_bad_page_plugin_costs_only_its_own_pages(app: App, caplog: pytest.LogCaptureFixture) -> None:
    class Greedy:   # takes the home page's path and registers something that is not a Page
        @aribot.hookimpl
        def register_pages(self, register):
            register(aribot.Page("/", "Mine", lambda board: ui.label("hijacked")))
            register({"path": "/x"})

    class Broken:   # its registration raises
        @aribot.hookimpl
        def register_pages(self, register):
            raise RuntimeError("no pages today")

    class Failing:  # its page raises when drawn
        @aribot.hookimpl
        def register_pages(self, register):
            def draw(board: Any) -> None:
                ui.label("half drawn")
                raise KeyError("missing")
            register(aribot.Page("/failing", "Failing", draw))

    for plugin, name in ((Greedy(), "greedy"), (Broken(), "broken"), (Failing(), "failing")):
        app.plugins.register(plugin, name)
    dash = board(app)
    caplog.set_level(logging.WARNING, "aribot.ui")
    async with user_simulation(root=dash.root) as user:
        await user.open("/")
        await user.should_see("No calls right now.")
        await user.should_not_see("hijacked")
        await user.open("/failing")
        await user.should_see(marker="page-failed")
        await user.open("/session")
        await user.should_see("Session settings")
    lines = [r.getMessage() for r in caplog.records]
    assert any("plugin greedy: page / left out: the path belongs to ui_nicegui" in line for line in lines), lines
    assert any("plugin greedy: page {'path': '/x'} left out: not an aribot.Page" in line for line in lines), lines
    assert any("plugin broken: page * left out: register_pages raised RuntimeError('no pages today')" in line
               for line in lines), lines
    assert any("page /failing of plugin failing failed (KeyError('missing'))" in line for line in lines), lines
    # a refusal is logged once, not at every page load
    assert sum("plugin greedy: page / left out" in line for line in lines) == 1
