"""Per-call choices: a call picks its speech backend by Stasis argument or ARIBOT_BACKEND, only among
``[ai] allowed``; arguments beat variables, variables beat settings; the voice follows the backend."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from aribot.core.backend import BackendType, Capabilities
from aribot.core.choices import CHANNEL_VARIABLES, resolve

CAPS = Capabilities(turn_events=True, truncation=True, tools="functions")
BACKENDS = {name: BackendType(name, lambda host, setup: None, CAPS, default_voice=lambda s, v=voice: v)
            for name, voice in (("openai_realtime", "marin"), ("gpt_live", "cedar"), ("local", ""))}


def settings(allowed: list[str]) -> SimpleNamespace:
    return SimpleNamespace(activation=SimpleNamespace(mode="immediate"), call=SimpleNamespace(greeting=""),
                           ai=SimpleNamespace(instructions="be brief", backend="openai_realtime", allowed=allowed))


def choose(allowed: list[str], args: list[str], variables: dict[str, str]) -> tuple[str, str, dict[str, str]]:
    choices = resolve(settings(allowed), args, variables, default_extension="100", modes=["immediate"],
                      tools=[], call_id="c1", backends=BACKENDS)
    return choices.backend, choices.voice, choices.sources


def test_the_channel_variable_is_listed() -> None:
    assert "ARIBOT_BACKEND" in CHANNEL_VARIABLES


@pytest.mark.parametrize(("args", "variables", "expected"), [
    (["100"], {}, ("openai_realtime", "marin", {})),
    (["100", "backend=gpt_live"], {}, ("gpt_live", "cedar", {"backend": "stasis"})),
    (["100", "backend=GPT_LIVE"], {}, ("gpt_live", "cedar", {"backend": "stasis"})),
    (["100"], {"ARIBOT_BACKEND": "gpt_live"}, ("gpt_live", "cedar", {"backend": "channel variable"})),
    (["100", "backend=openai_realtime"], {"ARIBOT_BACKEND": "gpt_live"},
     ("openai_realtime", "marin", {"backend": "stasis"})),
], ids=["setting", "stasis", "case", "variable", "stasis-beats-variable"])
def test_a_call_picks_an_allowed_backend(args: list[str], variables: dict[str, str],
                                        expected: tuple[str, str, dict[str, str]]) -> None:
    assert choose(["gpt_live"], args, variables) == expected


@pytest.mark.parametrize("wanted", ["local", "nonexistent"])
def test_a_backend_not_allowed_is_refused_with_one_line(wanted: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="aribot.choices"):
        assert choose(["gpt_live"], ["100", f"backend={wanted}"], {}) == ("openai_realtime", "marin", {})
    (line,) = [r.getMessage() for r in caplog.records]
    assert f"backend={wanted!r} is not allowed" in line and "using 'openai_realtime'" in line


def test_nothing_is_allowed_by_default() -> None:
    assert choose([], ["100", "backend=gpt_live"], {"ARIBOT_BACKEND": "local"})[0] == "openai_realtime"


def test_an_allowed_name_no_plugin_registers_is_refused() -> None:
    assert choose(["gpt_live", "ghost"], ["100", "backend=ghost"], {})[0] == "openai_realtime"
