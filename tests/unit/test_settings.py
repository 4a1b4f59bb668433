"""Settings: defaults, env overrides, the quickstart's names, clear errors, masking."""

from __future__ import annotations

import pytest

from core.settings import SettingsError, effective, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import os
    for name in list(os.environ):
        if name.startswith("ARIBOT_") or name in ("OPENAI_API_KEY", "ASTERISK_ARI_URL", "RECOGNITION_ACTIVATION_MODE"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_load_and_validate() -> None:
    settings = load_settings()
    assert settings.ari.app == "aribot"
    assert settings.rtp.port_min <= settings.rtp.port_max
    assert settings.call.fallback_prompt == ["sound:im-sorry", "sound:please-try-call-later"]


def test_aribot_env_overrides_and_ari_suffix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARIBOT_ARI__URL", "http://10.0.0.1:8088/ari/")
    monkeypatch.setenv("ARIBOT_RTP__PORT_MIN", "30000")
    monkeypatch.setenv("ARIBOT_RTP__PORT_MAX", "30010")
    monkeypatch.setenv("ARIBOT_CALL__GREETING", "")
    settings = load_settings()
    assert settings.ari.url == "http://10.0.0.1:8088"
    assert (settings.rtp.port_min, settings.rtp.port_max) == (30000, 30010)
    assert settings.call.greeting == ""


def test_quickstart_names_work_and_aribot_names_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-legacy")
    monkeypatch.setenv("ASTERISK_ARI_URL", "http://legacy:8088")
    monkeypatch.setenv("RECOGNITION_ACTIVATION_MODE", "IMMEDIATE")
    monkeypatch.setenv("INITIAL_OPENAI_STREAM_IDLE_TIMEOUT_SECONDS", "3.5")
    monkeypatch.setenv("ARIBOT_ARI__URL", "http://new:8088")
    settings = load_settings()
    assert settings.openai.api_key == "sk-legacy"
    assert settings.ari.url == "http://new:8088"
    assert settings.activation.mode == "immediate"
    assert settings.openai.connect_timeout == 3.5


@pytest.mark.parametrize("env,needle", [
    ({"ARIBOT_RTP__PORT_MIN": "abc"}, "rtp.port_min = 'abc'"),
    ({"ARIBOT_ARI__URL": "ftp://x"}, "ari.url"),
    ({"ARIBOT_CALL__ON_FAILURE": "explode"}, "hangup or continue"),
    ({"ARIBOT_RTP__PORT_MIN": "30010", "ARIBOT_RTP__PORT_MAX": "30000"}, "port_min <= port_max"),
    ({"ARIBOT_OPENAI__URL": "https://api"}, "ws:// or wss://"),
])
def test_bad_values_fail_with_one_clear_line(monkeypatch: pytest.MonkeyPatch, env: dict, needle: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_secrets_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARIBOT_OPENAI__API_KEY", "sk-very-secret")
    monkeypatch.setenv("ARIBOT_ARI__PASSWORD", "hunter2")
    shown = effective(load_settings())
    assert shown["openai"]["api_key"] == "***" and shown["ari"]["password"] == "***"
    assert "sk-very-secret" not in repr(shown)
    monkeypatch.setenv("ARIBOT_ARI__PASSWORD", "{not: valid}")
    monkeypatch.setenv("ARIBOT_RTP__FORMAT", "opus")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "opus" in str(info.value)


def test_settings_file_layer(tmp_path) -> None:
    extra = tmp_path / "mine.toml"
    extra.write_text('[ari]\napp = "mybot"\n')
    assert load_settings(extra).ari.app == "mybot"
    with pytest.raises(SettingsError):
        load_settings(tmp_path / "missing.toml")


QUICKSTART_NAMES = [
    ("RECOGNITION_ACTIVATION_MODE", "FIXED_DELAY", "activation.mode", "fixed_delay"),
    ("RECOGNITION_ACTIVATION_MODE", "fixedDelay", "activation.mode", "fixed_delay"),
    ("BARGE_IN_DELAY_SECONDS", "1.5", "activation.fixed_delay", 1.5),
    ("VAD_RECOG_ACTIVATION_MODE", "vadmode", "activation.vad_submode", "vadMode"),
    ("VAD_SILENCE_THRESHOLD_MS", "900", "activation.vad_silence_ms", 900),
    ("VAD_TALK_THRESHOLD", "300", "activation.vad_talk_threshold", 300),
    ("VAD_INITIAL_SILENCE_DELAY_SECONDS", "1", "activation.vad_initial_silence_delay", 1.0),
    ("VAD_ACTIVATION_DELAY_SECONDS", "0.5", "activation.vad_activation_delay", 0.5),
    ("VAD_MAX_WAIT_AFTER_PROMPT_SECONDS", "7", "activation.vad_max_wait_after_prompt", 7.0),
    ("NO_SPEECH_BEGIN_TIMEOUT_SECONDS", "4", "timers.no_speech_timeout", 4.0),
    ("SPEECH_COMPLETE_TIMEOUT_SECONDS", "6", "timers.speech_complete_timeout", 6.0),
    ("SPEECH_END_SILENCE_TIMEOUT_SECONDS", "6.5", "timers.speech_complete_timeout", 6.5),
    ("MAX_RECOGNITION_DURATION_SECONDS", "30", "timers.max_call_duration", 30.0),
    ("DTMF_ENABLED", "false", "dtmf.enabled", False),
    ("DTMF_INTERDIGIT_TIMEOUT_SECONDS", "3", "dtmf.interdigit_timeout", 3.0),
    ("DTMF_FINAL_TIMEOUT_SECONDS", "4", "dtmf.final_timeout", 4.0),
    ("DTMF_MAX_DIGITS", "4", "dtmf.max_digits", 4),
    ("DTMF_TERMINATOR_DIGIT", "*", "dtmf.terminator", "*"),
]


@pytest.mark.parametrize("name,value,key,expected", QUICKSTART_NAMES)
def test_quickstart_names_of_modes_timers_and_dtmf(monkeypatch: pytest.MonkeyPatch, name, value, key, expected) -> None:
    from core.app import configure
    monkeypatch.setenv(name, value)
    settings, _plugins = configure()
    assert settings.get(key) == expected


@pytest.mark.parametrize("env,needle", [
    ({"VAD_RECOG_ACTIVATION_MODE": "sometimes"}, "activation.vad_submode = 'sometimes'"),
    ({"ARIBOT_ACTIVATION__VAD_TALK_THRESHOLD": "0"}, "activation.vad_talk_threshold = 0"),
    ({"DTMF_TERMINATOR_DIGIT": "x"}, "dtmf.terminator = 'x'"),
    ({"ARIBOT_TIMERS__NO_SPEECH_TIMEOUT": "-1"}, "timers.no_speech_timeout = -1"),
    ({"BARGE_IN_DELAY_SECONDS": "soon"}, "activation.fixed_delay = 'soon'"),
    ({"ARIBOT_CALL__ON_END": "explode"}, "call.on_end = 'explode'"),
])
def test_bad_plugin_settings_fail_with_one_clear_line(monkeypatch: pytest.MonkeyPatch, env, needle) -> None:
    from core.app import configure
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as info:
        configure()
    assert needle in str(info.value) and "\n" not in str(info.value)
