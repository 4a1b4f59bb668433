"""The built-in backends as plugins: each asks only for what it uses (no OpenAI key for the local
voice; GPT-Live takes its own key or the OpenAI one), and each owns its settings section."""

from __future__ import annotations

from pathlib import Path

import pytest

from aribot.core.app import configure

KEYS = ("ARIBOT_OPENAI__API_KEY", "ARIBOT_GPT_LIVE__API_KEY", "OPENAI_API_KEY")


@pytest.fixture(autouse=True)
def no_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in KEYS:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(("backend", "env", "wanted"), [
    ("local", {}, ""),
    ("openai_realtime", {}, "openai.api_key is empty"),
    ("openai_realtime", {"ARIBOT_OPENAI__API_KEY": "sk-1"}, ""),
    ("openai_realtime", {"ARIBOT_GPT_LIVE__API_KEY": "sk-1"}, "openai.api_key is empty"),
    ("gpt_live", {}, "no OpenAI key (gpt_live.api_key, openai.api_key, OPENAI_API_KEY)"),
    ("gpt_live", {"ARIBOT_GPT_LIVE__API_KEY": "sk-1"}, ""),
    ("gpt_live", {"ARIBOT_OPENAI__API_KEY": "sk-1"}, ""),
    ("gpt_live", {"OPENAI_API_KEY": "sk-1"}, ""),
], ids=lambda v: v if isinstance(v, str) else ",".join(v) or "no-key")
def test_each_backend_asks_only_for_its_own_key(monkeypatch: pytest.MonkeyPatch, backend: str, env: dict[str, str],
                                                wanted: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings, plugins = configure()
    warnings = plugins.backends()[backend].warnings(settings)
    assert (wanted in warnings[0]) if wanted else warnings == []
    assert all("sk-1" not in warning for warning in warnings)


def test_gpt_live_settings_and_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    settings, _plugins = configure()
    cfg = settings.gpt_live
    assert (cfg.url, cfg.model, cfg.voice) == ("wss://api.openai.com/v1/live/sessions", "gpt-live-1", "marin")
    monkeypatch.setenv("ARIBOT_GPT_LIVE__URL", "wss://example.test/v1/live/sessions")
    monkeypatch.setenv("ARIBOT_GPT_LIVE__MODEL", "gpt-live-1.1")
    monkeypatch.setenv("ARIBOT_GPT_LIVE__VOICE", "cedar")
    monkeypatch.setenv("ARIBOT_AI__BACKEND", "gpt_live")
    settings, plugins = configure()
    assert (settings.gpt_live.url, settings.gpt_live.model, settings.gpt_live.voice) == (
        "wss://example.test/v1/live/sessions", "gpt-live-1.1", "cedar")
    assert plugins.backends()["gpt_live"].default_voice(settings) == "cedar"


def test_a_gpt_live_url_must_be_a_websocket_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from aribot.core.settings import SettingsError
    monkeypatch.setenv("ARIBOT_GPT_LIVE__URL", "https://api.openai.com/v1/live/sessions")
    with pytest.raises(SettingsError, match="gpt_live.url"):
        configure()


def test_the_local_voice_touches_no_other_backends_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARIBOT_AI__BACKEND", "local")
    settings, plugins = configure()
    before = (settings.openai.url, settings.openai.api_key, settings.gpt_live.url)
    assert plugins.backends()["local"].warnings(settings) == []
    assert (settings.openai.url, settings.openai.api_key, settings.gpt_live.url) == before


@pytest.mark.parametrize(("backend", "wanted"), [
    ("gpt_live", "backend gpt_live is not ready: no OpenAI key"),
    ("openai_realtime", "backend openai_realtime is not ready: openai.api_key is empty"),
    ("nobody", "there is no speech backend 'nobody'; installed: azure, gpt_live, local, openai, openai_realtime"),
])
def test_demo_with_a_backend_that_cannot_work_says_why_before_starting_anything(
        backend: str, wanted: str, capsys: pytest.CaptureFixture[str]) -> None:
    from aribot.core.cli import main
    assert main(["demo", "--backend", backend]) == 2
    err = capsys.readouterr().err
    assert wanted in err and err.count("\n") == 1
