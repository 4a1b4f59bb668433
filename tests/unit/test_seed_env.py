"""The original quickstart's env names, table-driven over every legacy name core and the installed
plugins declare (``installed_settings``): each one alone sets its key, the first listed of two
names wins, ARIBOT_<SECTION>__<KEY> wins over any of them, and a bad value is one line naming the
key. Sample values come from each setting's default; EXPLICIT holds the few that cannot."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from aribot.core.app import configure, installed_settings
from aribot.core.settings import Setting, SettingsError, as_str, env_name, nonempty

LEGACY_SETTINGS = [setting for _owner, setting in installed_settings() if setting.legacy]
LEGACY_NAMES = [(name, setting) for setting in LEGACY_SETTINGS for name in setting.legacy]
NAME_IDS = [name for name, _setting in LEGACY_NAMES]
FIRST_AND_LATER = [(first, later, setting) for setting in LEGACY_SETTINGS
                   for first, later in itertools.combinations(setting.legacy, 2)]

# Keys whose valid values cannot be derived from the default: two (env value, parsed value) pairs,
# the first unlike the default, the second unlike the first.
EXPLICIT: dict[str, tuple[tuple[str, Any], tuple[str, Any]]] = {
    "ari.url": (("http://first.example:8088/ari/", "http://first.example:8088"),
                ("https://second.example", "https://second.example")),
    "rtp.host": (("127.0.0.2", "127.0.0.2"), ("127.0.0.3", "127.0.0.3")),
    "call.greeting": (("sound:hello-world", "sound:hello-world"),
                      ("file:/srv/prompts/hi.wav", "file:/srv/prompts/hi.wav")),
    "activation.mode": (("IMMEDIATE", "immediate"), ("fixedDelay", "fixed_delay")),
    "activation.vad_submode": (("vadmode", "vadMode"), ("afterPrompt", "afterPrompt")),
    "log.level": (("debug", "DEBUG"), ("warning", "WARNING")),
    "dtmf.terminator": (("*", "*"), ("a", "A")),
}
FREE_TEXT_PARSERS = (as_str, nonempty)
BAD_CANDIDATES = ("not valid", "")


def parses_to(setting: Setting, text: str, expected: Any) -> bool:
    try:
        return setting.parse(text) == expected
    except (ValueError, TypeError, KeyError):
        return False


def sample(setting: Setting, variant: int) -> tuple[str, Any]:
    """A valid value of ``setting`` as (env value, parsed value): variant 1 unlike the default,
    variant 2 unlike variant 1. From EXPLICIT, else derived from the default's type; a legacy
    setting with neither fails the test that asks."""
    if setting.key in EXPLICIT:
        return EXPLICIT[setting.key][variant - 1]
    default = setting.default
    if isinstance(default, bool):
        flipped = default if variant == 2 else not default
        return str(flipped).lower(), flipped
    if isinstance(default, (int, float)):
        step = variant if isinstance(default, int) else variant / 2
        for value in (default + step, default - step):
            if parses_to(setting, str(value), value):
                return str(value), value
    if isinstance(default, str) and setting.parse in FREE_TEXT_PARSERS:
        text = f"value {variant} of {setting.key}"
        return text, text
    pytest.fail(f"no sample value for {setting.key} (legacy {', '.join(setting.legacy)}): add one to EXPLICIT")


def bad_value(setting: Setting) -> str | None:
    """A value ``setting`` refuses, or None when it takes any string."""
    for text in BAD_CANDIDATES:
        try:
            setting.parse(text)
        except (ValueError, TypeError, KeyError):
            return text
    return None


def configured(key: str) -> Any:
    settings, _plugins = configure()
    return settings.get(key)


@pytest.fixture(autouse=True)
def _no_settings_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only the environment: no settings.toml, .secrets.toml or .env of the working directory."""
    monkeypatch.chdir(tmp_path)


def test_there_are_legacy_names_and_no_stale_samples() -> None:
    assert len(LEGACY_NAMES) > 20 and FIRST_AND_LATER
    assert set(EXPLICIT) <= {setting.key for setting in LEGACY_SETTINGS}, "EXPLICIT names a key without legacy names"
    names = [name for name, _setting in LEGACY_NAMES]
    assert len(names) == len(set(names)), "one legacy name sets two keys"


@pytest.mark.parametrize("name,setting", LEGACY_NAMES, ids=NAME_IDS)
def test_every_legacy_name_has_valid_samples(name: str, setting: Setting) -> None:
    (first_text, first), (second_text, second) = sample(setting, 1), sample(setting, 2)
    assert parses_to(setting, first_text, first) and parses_to(setting, second_text, second)
    assert first != setting.parse(setting.default) and second != first


@pytest.mark.parametrize("name,setting", LEGACY_NAMES, ids=NAME_IDS)
def test_a_legacy_name_alone_sets_its_key(monkeypatch: pytest.MonkeyPatch, name: str, setting: Setting) -> None:
    text, expected = sample(setting, 1)
    monkeypatch.setenv(name, text)
    assert configured(setting.key) == expected


@pytest.mark.parametrize("first,later,setting", FIRST_AND_LATER, ids=[f"{a}-over-{b}" for a, b, _ in FIRST_AND_LATER])
def test_the_first_listed_legacy_name_wins(monkeypatch: pytest.MonkeyPatch, first: str, later: str,
                                           setting: Setting) -> None:
    (first_text, expected), (later_text, _) = sample(setting, 1), sample(setting, 2)
    monkeypatch.setenv(first, first_text)
    monkeypatch.setenv(later, later_text)
    assert configured(setting.key) == expected


@pytest.mark.parametrize("name,setting", LEGACY_NAMES, ids=NAME_IDS)
def test_the_aribot_name_wins_over_a_legacy_name(monkeypatch: pytest.MonkeyPatch, name: str,
                                                 setting: Setting) -> None:
    (aribot_text, expected), (legacy_text, _) = sample(setting, 1), sample(setting, 2)
    monkeypatch.setenv(env_name(setting.key), aribot_text)
    monkeypatch.setenv(name, legacy_text)
    assert configured(setting.key) == expected


BAD = [(name, setting) for name, setting in LEGACY_NAMES if bad_value(setting) is not None]
ANY_STRING = [(name, setting) for name, setting in LEGACY_NAMES if bad_value(setting) is None]


@pytest.mark.parametrize("name,setting", ANY_STRING, ids=[name for name, _ in ANY_STRING])
def test_a_legacy_setting_without_bad_values_takes_any_string(name: str, setting: Setting) -> None:
    assert setting.parse is as_str, f"{setting.key} refuses none of {BAD_CANDIDATES}: add a bad candidate"


@pytest.mark.parametrize("name,setting", BAD, ids=[name for name, _ in BAD])
def test_a_bad_value_through_a_legacy_name_is_one_line_naming_the_key(monkeypatch: pytest.MonkeyPatch, name: str,
                                                                      setting: Setting) -> None:
    monkeypatch.setenv(name, str(bad_value(setting)))
    with pytest.raises(SettingsError) as info:
        configure()
    message = str(info.value)
    assert message.startswith(f"setting {setting.key} = ") and "is not valid: expected" in message
    assert "\n" not in message and "; setting" not in message
