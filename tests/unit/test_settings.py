"""Settings: defaults, env overrides, the quickstart's names, clear errors, masking."""

from __future__ import annotations

import pytest

from aribot.core.app import configure
from aribot.core.settings import SettingsError, effective, load_settings


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
    settings, _plugins = configure()
    assert settings.openai.api_key == "sk-legacy"
    assert settings.ari.url == "http://new:8088"
    assert settings.activation.mode == "immediate"
    assert settings.ai.connect_timeout == 3.5


@pytest.mark.parametrize("env,needle", [
    ({"ARIBOT_RTP__PORT_MIN": "abc"}, "rtp.port_min = 'abc'"),
    ({"ARIBOT_ARI__URL": "ftp://x"}, "ari.url"),
    ({"ARIBOT_CALL__ON_FAILURE": "explode"}, "hangup or continue"),
    ({"ARIBOT_RTP__PORT_MIN": "30010", "ARIBOT_RTP__PORT_MAX": "30000"}, "port_min <= port_max"),
    ({"ARIBOT_AI__CONNECT_TIMEOUT": "-1"}, "ai.connect_timeout = -1"),
    ({"ARIBOT_ARI__REQUEST_TIMEOUT": "nan"}, "ari.request_timeout = nan is not valid"),
    ({"ARIBOT_ARI__REQUEST_TIMEOUT": "inf"}, "ari.request_timeout = inf is not valid"),
    ({"ARIBOT_SETTINGS": "/nonexistent/aribot.toml"}, "settings file /nonexistent/aribot.toml (ARIBOT_SETTINGS) does not exist"),
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
    shown = effective(configure()[0])
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
    from aribot.core.app import configure
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
    ({"ARIBOT_OPENAI__URL": "https://api"}, "openai.url = 'https://api' is not valid: expected a ws:// or wss:// URL"),
])
def test_bad_plugin_settings_fail_with_one_clear_line(monkeypatch: pytest.MonkeyPatch, env, needle) -> None:
    from aribot.core.app import configure
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as info:
        configure()
    assert needle in str(info.value) and "\n" not in str(info.value)


# --- where settings come from -------------------------------------------------------------------

def test_sources_in_order_each_value_says_where_it_came_from(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SOURCES_ORDER, each layer over the one before; `origin` names the winner."""
    from aribot.core.settings import origin
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "main.toml").write_text('[ari]\napp = "from-file"\nusername = "file-user"\nrequest_timeout = 7\n'
                                   '[call]\ngreeting = "sound:file"\n[http]\nport = 9001\n')
    (etc / "settings.local.toml").write_text('[ari]\nusername = "local-user"\n[call]\ngreeting = "sound:local"\n')
    (etc / ".secrets.toml").write_text('[ari]\npassword = "from-secrets"\n')
    (etc / ".env").write_text("ARIBOT_HTTP__PORT=9002\nARIBOT_CALL__GREETING=sound:dotenv\n")
    monkeypatch.setenv("ARIBOT_SETTINGS", str(etc / "main.toml"))
    monkeypatch.setenv("ASTERISK_ARI_APP_NAME", "from-quickstart-name")
    monkeypatch.setenv("ARIBOT_CALL__GREETING", "sound:env")
    monkeypatch.setenv("ARIBOT_HTTP__PORT", "unset by the test's end")  # .env puts it in os.environ: undone
    monkeypatch.delenv("ARIBOT_HTTP__PORT")
    settings = load_settings()
    assert settings.ari.request_timeout == 7.0 and origin(settings, "ari.request_timeout") == str(etc / "main.toml")
    assert settings.ari.username == "local-user"
    assert origin(settings, "ari.username") == str(etc / "settings.local.toml")
    assert settings.ari.password == "from-secrets" and origin(settings, "ari.password") == str(etc / ".secrets.toml")
    assert settings.ari.app == "from-quickstart-name"
    assert origin(settings, "ari.app") == "env ASTERISK_ARI_APP_NAME (the quickstart's name)"
    assert settings.http.port == 9002 and origin(settings, "http.port") == f".env ({etc / '.env'}) ARIBOT_HTTP__PORT"
    assert settings.call.greeting == "sound:env" and origin(settings, "call.greeting") == "env ARIBOT_CALL__GREETING"
    assert settings.ari.url == "http://127.0.0.1:8088" and origin(settings, "ari.url") == "default"
    monkeypatch.delenv("ARIBOT_SETTINGS")
    (tmp_path / "settings.toml").write_text('[ari]\napp = "cwd-file"\n')
    monkeypatch.delenv("ASTERISK_ARI_APP_NAME")
    assert load_settings().ari.app == "cwd-file"                         # ./settings.toml without a choice
    assert load_settings(etc / "main.toml").ari.app == "from-file"       # --settings wins over it


def test_a_later_list_replaces_an_earlier_one(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lists are not merged across sources: the environment can narrow what a file allows."""
    (tmp_path / "settings.toml").write_text('[plugins]\ndisabled = ["a", "b"]\n')
    (tmp_path / "settings.local.toml").write_text('[plugins]\ndisabled = ["c"]\n')
    assert load_settings().plugins.disabled == ["c"]
    monkeypatch.setenv("ARIBOT_PLUGINS__DISABLED", '["d"]')
    assert load_settings().plugins.disabled == ["d"]


def test_a_broken_toml_file_is_named_with_its_line(tmp_path) -> None:
    (tmp_path / "settings.toml").write_text('[ari]\nurl = "http://x\n')
    with pytest.raises(SettingsError, match=r"settings file .*settings.toml is not valid TOML: .*line 2"):
        load_settings()


def test_unknown_keys_are_named_with_the_closest_known_one(tmp_path, caplog) -> None:
    from aribot.core.app import configure
    (tmp_path / "settings.toml").write_text('stray = 1\n[ari]\npasword = "x"\n[dtmf]\nmax_digit = 3\n'
                                            '[tools.end_call]\ntimeout = 3\n[somebody_elses]\nkey = 1\n')
    configure()
    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("setting ari.pasword" in line and "did you mean ari.password?" in line for line in lines), lines
    assert any("setting dtmf.max_digit" in line and "did you mean dtmf.max_digits?" in line for line in lines)
    assert any("'stray' is outside any [section]" in line for line in lines)
    assert not any("tools.end_call.timeout" in line or "somebody_elses" in line for line in lines)


def test_data_dir_choice() -> None:
    from pathlib import Path

    from aribot.core.settings import default_data_dir
    home = Path("/home/ann")
    assert default_data_dir({}, 1000, home) == Path("/home/ann/.local/state/aribot")
    assert default_data_dir({"XDG_STATE_HOME": "/x/state"}, 1000, home) == Path("/x/state/aribot")
    assert default_data_dir({}, 0, Path("/root")) == Path("/var/lib/aribot")
    assert default_data_dir({"STATE_DIRECTORY": "/var/lib/aribot-b:/other"}, 0, home) == Path("/var/lib/aribot-b")


def test_data_dir_is_created_private(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aribot.core.settings import data_dir
    monkeypatch.setenv("ARIBOT_STORAGE__DATA_DIR", str(tmp_path / "a" / "b"))
    path = data_dir(load_settings())
    assert path == tmp_path / "a" / "b" and (path.stat().st_mode & 0o777) == 0o700
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("ARIBOT_STORAGE__DATA_DIR", str(tmp_path / "file" / "x"))
    with pytest.raises(SettingsError, match="storage.data_dir: cannot create"):
        data_dir(load_settings())
