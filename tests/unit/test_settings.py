"""Settings: defaults, env overrides, the quickstart's names, clear errors, masking."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from aribot.core.app import configure, installed_settings
from aribot.core.settings import (
    TOKEN_ALLOWED,
    Setting,
    SettingsError,
    effective,
    env_name,
    is_secret,
    load_settings,
    toml_value,
)

INSTALLED = installed_settings()


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
    ({"ARIBOT_OPENAI__URL": "https://api"}, "openai.url = 'https://api' is not valid: expected a wss:// URL"),
    ({"ARIBOT_OPENAI__URL": "ws://api.openai.com/v1/realtime"}, "openai.url = 'ws://api.openai.com/v1/realtime' is "
                                                                "not valid: expected a wss:// URL (ws:// only to a loopback"),
    ({"ARIBOT_GPT_LIVE__URL": "ws://10.0.0.5:8080/v1/live"}, "gpt_live.url = 'ws://10.0.0.5:8080/v1/live' is not valid"),
    ({"ARIBOT_GPT_LIVE__URL": "ws://127.0.0.1.example.com/x"}, "gpt_live.url = 'ws://127.0.0.1.example.com/x'"),
    ({"ARIBOT_TIMERS__MAX_CALL_DURATION": "nan"}, "timers.max_call_duration = nan is not valid"),
    ({"ARIBOT_OPENAI__VAD_THRESHOLD": "-inf"}, "openai.vad_threshold = -inf is not valid"),
    ({"ARIBOT_UI__PASSWORD": "short-pw"}, "ui.password = *** is not valid: expected a password: empty, or at least 16"),
    ({"ARIBOT_DTMF__MASK": "sometimes"}, "dtmf.mask = 'sometimes' is not valid: expected true or false"),
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


# --- hardening (issue 15): non-finite numbers, tokens, ws://, markers, fuzzing -----------------

FLOAT_SETTINGS = [setting.key for _owner, setting in installed_settings() if isinstance(setting.default, float)]


NON_FINITE = (float("nan"), float("inf"), float("-inf"), "nan", "NaN", "inf", "-inf", "+inf", "Infinity",
              "-Infinity", "1e999", " nan ")


@pytest.mark.parametrize("key", FLOAT_SETTINGS)
def test_every_float_setting_refuses_nan_and_infinity(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    """Its rule refuses every spelling; through the environment (a string) the refusal is one line
    naming the key, the value and what is allowed."""
    assert len(FLOAT_SETTINGS) > 20
    setting = next(s for _owner, s in INSTALLED if s.key == key)
    for value in NON_FINITE:
        with pytest.raises((ValueError, TypeError)):
            setting.parse(value)
    monkeypatch.setenv(env_name(key), "nan")
    with pytest.raises(SettingsError) as info:
        load_settings(owned=INSTALLED)
    assert str(info.value) == f"setting {key} = nan is not valid: expected {setting.allowed}"


@pytest.mark.parametrize("literal", ["nan", "inf", "-inf"])
def test_non_finite_toml_literals_are_refused(literal: str) -> None:
    Path("settings.toml").write_text(f"[ai]\nconnect_timeout = {literal}\n[call]\nmax_concurrent = {10**30}\n")
    with pytest.raises(SettingsError) as info:
        load_settings(owned=INSTALLED)
    assert str(info.value) == (f"setting ai.connect_timeout = {literal} is not valid: expected seconds 0..300 (0 = no "
                               f"limit); setting call.max_concurrent = {10**30} is not valid: expected an integer "
                               "0..100000 (0 = no limit)")


@pytest.mark.parametrize("env,needle", [
    ({"ARIBOT_HTTP__TOKEN": "   "}, f"setting http.token = *** is not valid: expected {TOKEN_ALLOWED}"),
    ({"ARIBOT_HTTP__TOKEN": "fifteen-chars!!"}, "setting http.token = *** is not valid"),
    ({"ARIBOT_HTTP__TOKEN": "  fifteen-chars!!\t"}, "setting http.token = *** is not valid"),
    ({"ARIBOT_UI__PASSWORD": " \t "}, "setting ui.password = *** is not valid: expected a password: empty, or at"),
    ({"ARIBOT_HTTP__PORT": "1" * 400}, "setting http.port = 1111"),
    ({"ARIBOT_HTTP__PORT": "@int abc"}, "settings cannot be read: Cannot convert 'abc' to integer"),
    ({"ARIBOT_CALL__GREETING": "@format {this.nothing_here}"}, "(values with dynaconf @ markers: "
                                                               "ARIBOT_CALL__GREETING)"),
    ({"ARIBOT_HTTP__TOKEN": "@json {not-a-token-but-long"}, "settings cannot be read (values with dynaconf @ markers: "
                                                            "ARIBOT_HTTP__TOKEN)"),
])
def test_tokens_huge_numbers_and_dynaconf_markers_fail_with_one_clear_line(
        monkeypatch: pytest.MonkeyPatch, env: dict, needle: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as info:
        load_settings(owned=INSTALLED)
    message = str(info.value)
    assert needle in message and "\n" not in message
    for key, value in env.items():
        if ("TOKEN" in key or "PASSWORD" in key) and value.strip():
            assert value.strip() not in message                         # a secret is never shown


def test_a_plugin_rule_that_overflows_is_a_bad_value_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin's own parser may raise OverflowError (``int(float("inf"))``): one line like any."""
    size = Setting("myplugin.size", 1, lambda value: int(float(value)), "a whole number", "a plugin's size")
    monkeypatch.setenv("ARIBOT_MYPLUGIN__SIZE", "inf")
    with pytest.raises(SettingsError) as info:
        load_settings(owned=[*INSTALLED, ("myplugin", size)])
    assert str(info.value) == "setting myplugin.size = inf is not valid: expected a whole number"


def test_a_dynaconf_marker_in_a_settings_file_is_named() -> None:
    """dynaconf reads ``@`` markers in file values too; a broken one names the key and its file."""
    Path("settings.toml").write_text('[call]\ngreeting = "@int x"\n[http]\ntoken = "@json {0123456789abcdef"\n')
    with pytest.raises(SettingsError) as info:
        load_settings(owned=INSTALLED)
    path = Path("settings.toml").resolve()
    assert str(info.value) == ("settings cannot be read (values with dynaconf @ markers: "
                               f"call.greeting ({path}), http.token ({path}))")     # a secret among them: no detail


def test_a_token_is_stripped_and_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARIBOT_HTTP__TOKEN", "  sixteen-chars!!!\n")
    monkeypatch.setenv("ARIBOT_UI__PASSWORD", "a long dashboard passphrase")
    settings = load_settings(owned=INSTALLED)
    assert settings.http.token == "sixteen-chars!!!"
    assert settings.ui.password == "a long dashboard passphrase"
    assert load_settings(owned=INSTALLED).http.host == "127.0.0.1"
    monkeypatch.setenv("ARIBOT_HTTP__TOKEN", "")
    assert load_settings(owned=INSTALLED).http.token == ""                 # none: fine on loopback


@pytest.mark.parametrize("url", ["ws://127.0.0.1:9000/v1/realtime", "ws://localhost:9000/v1/realtime",
                                 "ws://[::1]:9000/v1/realtime", "ws://127.8.9.10/x", "wss://api.openai.com/v1/realtime",
                                 "wss://example.openai.azure.com/openai/realtime"])
def test_ws_urls_to_loopback_and_wss_anywhere_are_accepted(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("ARIBOT_OPENAI__URL", url)
    monkeypatch.setenv("ARIBOT_GPT_LIVE__URL", url + "/")
    settings = load_settings(owned=INSTALLED)
    assert settings.openai.url == url and settings.gpt_live.url == url


@pytest.mark.parametrize("url", ["ws://api.openai.com/v1/realtime", "ws://192.168.1.10:9000/v1/realtime",
                                 "ws://0.0.0.0:9000/x", "ws://localhost.evil.example/x", "ws://:9000/x", "ws://[::1/x"])
def test_ws_urls_elsewhere_are_refused(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("ARIBOT_OPENAI__URL", url)
    with pytest.raises(SettingsError, match=r"^setting openai.url = .* is not valid: expected a wss:// URL \(ws:// only "
                                            r"to a loopback host"):
        load_settings(owned=INSTALLED)


def test_max_concurrent_has_a_limit_by_default() -> None:
    assert load_settings().call.max_concurrent == 100


# property tests: any value for any declared key, from the environment or a settings file, either
# loads or is refused with one SettingsError line naming the key (or the variable); nothing else
# escapes, and a secret's value is never in the message

KEYS = sorted(setting.key for _owner, setting in INSTALLED)
# each example loads every setting (~0.1 s): a quarter of the profile's examples
FUZZ = hypothesis_settings(max_examples=max(20, hypothesis_settings.default.max_examples // 4))
SPECIAL = ["nan", "-inf", "inf", "NaN", "1e999", "1" * 40, "-1", "0", "  ", "", "@int x", "@json {", "@bool maybe",
           "@format {this.nope}", "@float nan", "@none", "@del", "[1, 2", '{"a": 1}', "[\"a\", {\"b\": 1}]",
           "ws://evil.example/x", "wss://ok.example/x", "true", "@jinja {{ 1 / 0 }}"]
ENV_TEXT = st.one_of(st.sampled_from(SPECIAL), st.text(st.characters(blacklist_categories=("Cs",),
                                                                     blacklist_characters="\x00"), max_size=30))
TOML_SCALAR = st.one_of(st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
                        st.text(max_size=20), st.sampled_from(SPECIAL))
TOML_VALUE = st.one_of(TOML_SCALAR, st.lists(TOML_SCALAR, max_size=3),
                       st.dictionaries(st.sampled_from(["a", "b"]), TOML_SCALAR, max_size=2))


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return toml_value(value)


def _check(key: str, shown: Any, where: str) -> None:
    try:
        load_settings(owned=INSTALLED)
    except SettingsError as exc:
        message = str(exc)
        assert "\n" not in message, message
        assert key in message or where in message, message
        if is_secret(key) and isinstance(shown, str) and len(shown.strip()) >= 6:
            assert shown.strip() not in message, message


@FUZZ
@given(key=st.sampled_from(KEYS), value=ENV_TEXT)
def test_any_env_value_loads_or_is_refused_with_one_line(key: str, value: str) -> None:
    name = env_name(key)
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        _check(key, value, name)
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


@FUZZ
@given(key=st.sampled_from(KEYS), value=TOML_VALUE)
def test_any_settings_file_value_loads_or_is_refused_with_one_line(key: str, value: Any) -> None:
    section, name = key.rsplit(".", 1)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "settings.toml"
        path.write_text(f"[{section}]\n{name} = {_toml(value)}\n")
        saved = os.environ.get("ARIBOT_SETTINGS")
        os.environ["ARIBOT_SETTINGS"] = str(path)
        try:
            _check(key, value, str(path))
        finally:
            if saved is None:
                os.environ.pop("ARIBOT_SETTINGS", None)
            else:
                os.environ["ARIBOT_SETTINGS"] = saved
