"""Plugin manager: built-ins via entry points, blocking by name, hook docs and tests, hooks."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from aribot import hookimpl
from aribot.core import hookspecs
from aribot.core.app import App, configure
from aribot.core.events import CallStarted, EventBus
from aribot.core.plugins import PluginError, Plugins, load_plugins
from aribot.core.settings import SettingsError, render_defaults

REPO = Path(__file__).resolve().parents[2]
HOOKS = sorted(name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
               if hasattr(fn, "aribot_spec"))


def settings(disabled=(), paths=()):
    return SimpleNamespace(plugins=SimpleNamespace(disabled=list(disabled), paths=list(paths)))


def test_every_hook_is_documented_with_its_signature() -> None:
    doc = (REPO / "docs" / "plugins.md").read_text()
    for name in HOOKS:
        args = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"## {name}({args})" in doc, f"docs/plugins.md lacks '## {name}({args})'"


def test_every_hook_has_a_test() -> None:
    text = "\n".join(p.read_text() for p in (REPO / "tests").rglob("test_*.py"))
    for name in HOOKS:
        assert re.search(rf"def test_hook_{name}\b", text), f"no test_hook_{name}"


def test_builtins_come_through_entry_points() -> None:
    plugins = load_plugins(settings())
    info = {p.name: p for p in plugins.infos()}
    assert info["activation_immediate"].source == "built-in"
    assert info["activation_immediate"].enabled
    assert "immediate" in plugins.activation_modes()


def test_blocked_plugin_is_not_registered(caplog) -> None:
    plugins = load_plugins(settings(disabled=["activation_immediate", "no_such_plugin"]))
    info = {p.name: p for p in plugins.infos()}
    assert not info["activation_immediate"].enabled
    assert "immediate" not in plugins.activation_modes() and "vad" in plugins.activation_modes()
    assert "no_such_plugin" in caplog.text


class ThirdPartyMode:
    def __init__(self, call):
        self.call = call

    async def run(self, gate):
        gate.open("third party")


def test_hook_register_activation_modes() -> None:
    plugins = load_plugins(settings())

    class Plugin:
        @hookimpl
        def register_activation_modes(self, register):
            register("After_Beep", ThirdPartyMode)

    plugins.register(Plugin(), "third_party_mode")
    modes = plugins.activation_modes()
    assert modes["after_beep"] == ("third_party_mode", ThirdPartyMode)

    class Clash:
        @hookimpl
        def register_activation_modes(self, register):
            register("immediate", ThirdPartyMode)

    plugins.register(Clash(), "clash")
    with pytest.raises(PluginError, match="registered by both"):
        plugins.activation_modes()


def test_hook_register_tools() -> None:
    plugins = Plugins()

    def lookup(order_id: str) -> dict:
        """Look up an order."""
        return {"order": order_id}

    class Plugin:
        @hookimpl
        def register_tools(self, register):
            register(lookup)

    plugins.register(Plugin(), "tools_test")
    assert plugins.tools() == [("tools_test", lookup)]


async def test_hook_register_event_handlers() -> None:
    plugins = Plugins()
    seen = []

    class Plugin:
        @hookimpl
        def register_event_handlers(self, subscribe):
            subscribe(CallStarted, lambda e: seen.append(e.call_id))

    plugins.register(Plugin(), "listener")
    bus = EventBus()
    plugins.subscribe_handlers(bus)
    bus.emit(object(), CallStarted(call_id="c1", channel_id="c1"))
    assert seen == ["c1"]
    assert bus.disconnect_owner("listener") == 1


SETTINGS_PLUGIN = """
import aribot

@aribot.hookimpl
def register_settings(register):
    register(aribot.Setting("shop.limit", 3, aribot.number(int, 1, 5), "an integer 1..5", "calls per caller"))
    register(aribot.Setting("shop.name", "Corner shop", aribot.as_str, "a name", "what the AI calls the shop",
                            legacy=("SHOP_NAME",)))
"""


def shop_settings(tmp_path: Path, body: str = "") -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir(exist_ok=True)
    (folder / "shop.py").write_text(SETTINGS_PLUGIN)
    path = tmp_path / "settings.toml"
    path.write_text(f'[plugins]\npaths = ["{folder}"]\n{body}')
    return path


def test_hook_register_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.chdir(tmp_path)
    settings, _ = configure(shop_settings(tmp_path))
    assert (settings.shop.limit, settings.shop.name) == (3, "Corner shop")  # the plugin's defaults
    settings, _ = configure(shop_settings(tmp_path, "[shop]\nlimit = 5\nlimt = 4\n"))
    assert settings.shop.limit == 5
    assert "setting shop.limt" in caplog.text and "did you mean shop.limit?" in caplog.text  # a typo is named
    monkeypatch.setenv("SHOP_NAME", "Kiosk")  # a legacy env name the plugin declared
    assert configure(shop_settings(tmp_path))[0].shop.name == "Kiosk"
    monkeypatch.setenv("ARIBOT_SHOP__LIMIT", "9")
    with pytest.raises(SettingsError, match=r"setting shop.limit = 9 is not valid: expected an integer 1\.\.5"):
        configure(shop_settings(tmp_path))
    monkeypatch.delenv("ARIBOT_SHOP__LIMIT")
    settings, _ = configure(shop_settings(tmp_path))
    rendered = render_defaults(settings._aribot_owned)
    assert "[shop]  # plugin shop\nlimit = 3" in rendered and "# calls per caller" in rendered


def test_a_plugin_may_not_redeclare_a_core_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = shop_settings(tmp_path)
    (tmp_path / "plugins" / "shop.py").write_text(SETTINGS_PLUGIN.replace('"shop.limit"', '"ari.url"'))
    with pytest.raises(PluginError, match="plugin shop declares setting ari.url, which is core's"):
        configure(path)


def test_hook_check_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin refuses what is registered (the DTMF collector: a handler nobody offers); App
    creation stops with its line."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ARIBOT_DTMF__HANDLER", "to_crm")
    settings, plugins = configure()
    with pytest.raises(SettingsError, match="setting dtmf.handler = 'to_crm' is not valid: expected one of the "
                                            "registered DTMF handlers: dialplan, to_ai"):
        App(settings, plugins)


def test_hook_register_routes() -> None:
    from aiohttp import web
    plugins = Plugins()

    async def hello(request):
        return web.Response(text="hi")

    class Plugin:
        @hookimpl
        def register_routes(self, app):
            app.router.add_get("/hello", hello)

    plugins.register(Plugin(), "routes")
    webapp = web.Application()
    plugins.pm.hook.register_routes(app=webapp)
    assert any(r.resource.canonical == "/hello" for r in webapp.router.routes())


async def test_hook_startup() -> None:
    plugins = Plugins()
    seen = []

    class Plugin:
        @hookimpl
        async def startup(self, app):
            seen.append(("async", app))

    class Broken:
        @hookimpl
        def startup(self, app):
            raise RuntimeError("broken plugin")

    plugins.register(Plugin(), "p1")
    plugins.register(Broken(), "p2")
    await plugins.acall("startup", app="APP")
    assert seen == [("async", "APP")]


async def test_hook_shutdown() -> None:
    plugins = Plugins()
    seen = []

    class Plugin:
        @hookimpl
        def shutdown(self, app):
            seen.append(app)

    plugins.register(Plugin(), "p1")
    await plugins.acall("shutdown", app="APP")
    assert seen == ["APP"]


def test_unknown_hook_is_refused() -> None:
    plugins = Plugins()

    class Typo:
        @hookimpl
        def register_tool(self, register):
            pass

    with pytest.raises(PluginError, match="unknown hook"):
        plugins.register(Typo(), "typo")


def test_hook_register_call_features() -> None:
    plugins = Plugins()

    class Feature:
        def __init__(self, call):
            self.call = call

        async def run(self):
            pass

    class Plugin:
        @hookimpl
        def register_call_features(self, register):
            register("Recorder", Feature)

    plugins.register(Plugin(), "feature_test")
    assert plugins.call_features() == {"recorder": Feature}
    assert "timers" in load_plugins(settings()).call_features()


BACKEND_PLUGIN = """
import aribot

class Quiet(aribot.SpeechBackend):
    capabilities = aribot.Capabilities(turn_events=False, truncation=False, tools="none")

@aribot.hookimpl
def register_backends(register):
    register(aribot.BackendType("quiet", Quiet, Quiet.capabilities, default_voice=lambda settings: "soft"))
"""


def test_hook_register_backends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin's backend is chosen by [ai] backend by name; an unknown name stops the start with
    the registered names; a name two plugins register is an error."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "quiet.py").write_text(BACKEND_PLUGIN)
    monkeypatch.setenv("ARIBOT_PLUGINS__PATHS", f'["{folder}"]')
    monkeypatch.setenv("ARIBOT_AI__BACKEND", "quiet")
    app = App(*configure())
    assert app.backends["quiet"].default_voice(app.settings) == "soft"
    assert {"openai_realtime", "azure", "gpt_live", "local", "quiet"} <= set(app.backends)
    monkeypatch.setenv("ARIBOT_AI__BACKEND", "nobody")
    with pytest.raises(SettingsError, match="setting ai.backend names 'nobody', which is not a registered speech "
                                            "backend: expected one of azure, gpt_live, local, openai, openai_realtime, quiet"):
        App(*configure())
    (folder / "quiet2.py").write_text(BACKEND_PLUGIN)
    monkeypatch.setenv("ARIBOT_AI__BACKEND", "quiet")
    with pytest.raises(PluginError, match="speech backend 'quiet' is registered by both quiet and quiet2"):
        App(*configure())


def test_hook_register_dtmf_handlers() -> None:
    plugins = Plugins()

    async def shout(call, digits, reason):
        pass

    class Plugin:
        @hookimpl
        def register_dtmf_handlers(self, register):
            register("shout", shout)

    plugins.register(Plugin(), "dtmf_test")
    assert plugins.dtmf_handlers() == {"shout": shout}
    assert {"to_ai", "dialplan"} <= set(load_plugins(settings()).dtmf_handlers())


def test_plugin_folder_modules_and_packages(tmp_path) -> None:
    (tmp_path / "weather_tools.py").write_text(
        "from aribot import hookimpl\n\n"
        "def forecast(city: str) -> str:\n    '''The weather forecast for a city.'''\n    return 'sunny'\n\n"
        "@hookimpl\ndef register_tools(register):\n    register(forecast)\n")
    package = tmp_path / "greeter"
    package.mkdir()
    (package / "__init__.py").write_text("from aribot import hookimpl\nfrom .impl import hello\n\n"
                                         "@hookimpl\ndef register_tools(register):\n    register(hello)\n")
    (package / "impl.py").write_text("def hello() -> str:\n    '''Say hello.'''\n    return 'hi'\n")
    (tmp_path / "_private.py").write_text("raise RuntimeError('never imported')\n")
    plugins = load_plugins(settings(paths=[str(tmp_path)]))
    info = {p.name: p for p in plugins.infos()}
    assert info["weather_tools"].source == f"folder ({tmp_path})" and info["greeter"].enabled
    assert {fn.__name__ for _owner, fn in plugins.tools()} >= {"forecast", "hello"}
    blocked = load_plugins(settings(disabled=["greeter"], paths=[str(tmp_path)]))
    assert "hello" not in {fn.__name__ for _owner, fn in blocked.tools()}
    (tmp_path / "broken.py").write_text("import no_such_module\n")
    with pytest.raises(PluginError, match="broken .* failed to import"):
        load_plugins(settings(paths=[str(tmp_path)]))
    with pytest.raises(PluginError, match="not a folder"):
        load_plugins(settings(paths=[str(tmp_path / "missing")]))


def test_disable_and_enable_at_run_time() -> None:
    plugins = load_plugins(settings(disabled=["tools_current_time"]))
    assert "current_time" not in {fn.__name__ for _o, fn in plugins.tools()}
    plugins.enable("tools_current_time")                    # blocked at start-up: imported now
    assert "current_time" in {fn.__name__ for _o, fn in plugins.tools()}
    plugins.disable("tools_end_call")
    assert "end_call" not in {fn.__name__ for _o, fn in plugins.tools()}
    assert {p.name: p.enabled for p in plugins.infos()}["tools_end_call"] is False
    plugins.enable("tools_end_call")
    assert "end_call" in {fn.__name__ for _o, fn in plugins.tools()}
    with pytest.raises(PluginError):
        plugins.enable("tools_end_call")
    with pytest.raises(PluginError):
        plugins.disable("no_such_plugin")
