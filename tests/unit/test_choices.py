"""Per-call choices (core/choices.py): a call picks its speech backend by Stasis argument or
ARIBOT_BACKEND, only among ``[ai] allowed``; arguments beat variables, variables beat settings; the
voice follows the backend. Only ``[call] per_call_keys`` are taken from the dialplan, every value is
checked, the first argument is never a choice, a ``key=`` the caller dialled is refused, and each
refusal is one log line after which the call goes on with the default (property tests included)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aribot.core.backend import BackendType, Capabilities
from aribot.core.choices import CHANNEL_VARIABLES, KEYS, MAX_INSTRUCTIONS, NAME, SOUND, is_inside, key_list, resolve
from aribot.core.settings import SettingsError, load_settings

CAPS = Capabilities(turn_events=True, truncation=True, tools="functions")
BACKENDS = {name: BackendType(name, lambda host, setup: None, CAPS, default_voice=lambda s, v=voice: v)
            for name, voice in (("openai_realtime", "marin"), ("gpt_live", "cedar"), ("local", ""))}
DEFAULT_KEYS = ["voice", "backend"]   # the shipped [call] per_call_keys
EVERY_KEY = list(KEYS)
PROMPTS = "/srv/aribot/prompts"
INSTRUCTIONS = "be brief"
TOOLS = ["lookup_order", "end_call"]
GOES_ON = "the call goes on with the default"


def settings(allowed: list[str], keys: list[str] | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        activation=SimpleNamespace(mode="immediate"),
        call=SimpleNamespace(greeting="", per_call_keys=DEFAULT_KEYS if keys is None else keys,
                             greeting_dirs=[PROMPTS]),
        ai=SimpleNamespace(instructions=INSTRUCTIONS, backend="openai_realtime", allowed=allowed))


def choices_of(args: list[str], variables: dict[str, str] | None = None, *, keys: list[str] | None = None,
               allowed: list[str] | None = None, dialled: str = ""):
    return resolve(settings(["gpt_live"] if allowed is None else allowed, keys), args, variables or {},
                   default_extension="100", modes=["immediate", "vad"], tools=TOOLS, call_id="c1",
                   backends=BACKENDS, dialled=dialled)


def choose(allowed: list[str], args: list[str], variables: dict[str, str]) -> tuple[str, str, dict[str, str]]:
    choices = choices_of(args, variables, allowed=allowed)
    return choices.backend, choices.voice, choices.sources


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "aribot.choices"]


@pytest.fixture(autouse=True)
def _warnings(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="aribot.choices")


def test_the_channel_variable_is_listed() -> None:
    assert "ARIBOT_BACKEND" in CHANNEL_VARIABLES


# --- backend (among [ai] allowed) ----------------------------------------------------------------

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
    assert choose(["gpt_live"], ["100", f"backend={wanted}"], {}) == ("openai_realtime", "marin", {})
    (line,) = lines(caplog)
    assert f"backend={wanted!r} is not allowed" in line and line.endswith(GOES_ON) and "call c1:" in line


def test_nothing_is_allowed_by_default() -> None:
    assert choose([], ["100", "backend=gpt_live"], {"ARIBOT_BACKEND": "local"})[0] == "openai_realtime"


def test_an_allowed_name_no_plugin_registers_is_refused() -> None:
    assert choose(["gpt_live", "ghost"], ["100", "backend=ghost"], {})[0] == "openai_realtime"


def test_a_refused_argument_leaves_a_good_channel_variable() -> None:
    assert choose(["gpt_live"], ["100", "backend=local"], {"ARIBOT_BACKEND": "gpt_live"})[0] == "gpt_live"


# --- only [call] per_call_keys --------------------------------------------------------------------

@pytest.mark.parametrize(("keys", "args", "variables", "instructions", "voice", "why"), [
    (DEFAULT_KEYS, ["100", "instructions=HACKED"], {}, INSTRUCTIONS, "marin",
     "Stasis argument instructions='HACKED' is not in [call] per_call_keys (voice, backend)"),
    (DEFAULT_KEYS, ["100"], {"ARIBOT_INSTRUCTIONS": "HACKED"}, INSTRUCTIONS, "marin",
     "channel variable ARIBOT_INSTRUCTIONS='HACKED' is not in [call] per_call_keys (voice, backend)"),
    ([], ["100", "voice=cedar"], {}, INSTRUCTIONS, "marin",
     "Stasis argument voice='cedar' is not in [call] per_call_keys (none)"),
    (DEFAULT_KEYS, ["100", "voice=cedar"], {}, INSTRUCTIONS, "cedar", None),
    (["instructions"], ["100", "instructions=sell shoes"], {}, "sell shoes", "marin", None),
    (EVERY_KEY, ["100", "colour=blue"], {}, INSTRUCTIONS, "marin",
     "Stasis argument colour='blue' is not one of mode, greeting, instructions, voice, tools, backend"),
], ids=["instructions-argument", "instructions-variable", "no-keys", "voice", "instructions-listed", "unknown"])
def test_only_listed_keys_are_taken(keys: list[str], args: list[str], variables: dict[str, str], instructions: str,
                                    voice: str, why: str | None, caplog: pytest.LogCaptureFixture) -> None:
    choices = choices_of(args, variables, keys=keys)
    assert (choices.instructions, choices.voice) == (instructions, voice)
    if why is None:
        assert lines(caplog) == []
    else:
        assert lines(caplog) == [f"call c1: {why}; {GOES_ON}"]


# --- each value checked -----------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "value", "why"), [
    ("voice", "", "is empty"),
    ("voice", "a" * 65, "is not a voice name"),
    ("voice", "cedar; rm -rf /", "is not a voice name"),
    ("voice", "x" * 300, "is longer than 256 characters"),
    ("voice", "cedar\nINFO forged log line", "contains control characters"),
    ("mode", "turbo", "is not a registered activation mode (immediate, vad)"),
    ("instructions", "x" * (MAX_INSTRUCTIONS + 1), f"is longer than {MAX_INSTRUCTIONS} characters"),
    ("instructions", "nul\x00byte", "contains control characters"),
    ("greeting", "file:/dev/zero", f"is not a file inside [call] greeting_dirs ({PROMPTS})"),
    ("greeting", "/etc/passwd", f"is not a file inside [call] greeting_dirs ({PROMPTS})"),
    ("greeting", f"file:{PROMPTS}/../../../etc/shadow", "is not a file inside [call] greeting_dirs"),
    ("greeting", f"file:{PROMPTS}", "is not a file inside [call] greeting_dirs"),
    ("greeting", "sound:../../../../etc/passwd", "is neither sound:<name> nor file:<path"),
    ("greeting", "recording:someone-elses-voicemail", "is neither sound:<name> nor file:<path"),
    ("greeting", "http://evil.example/x.wav", "is neither sound:<name> nor file:<path"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None)
def test_a_bad_value_is_refused_with_one_line(key: str, value: str, why: str,
                                              caplog: pytest.LogCaptureFixture) -> None:
    before = choices_of(["100"], keys=EVERY_KEY)
    choices = choices_of(["100", f"{key}={value}"], keys=EVERY_KEY)
    assert getattr(choices, key) == getattr(before, key) and key not in choices.sources
    (line,) = lines(caplog)
    assert line.startswith(f"call c1: Stasis argument {key}=") and f" {why}" in line and line.endswith(GOES_ON)
    assert "\n" not in line and len(line) < 400     # the value is shown escaped and cut short


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("voice", "en-US-AvaNeural", "en-US-AvaNeural"),
    ("mode", "VAD", "vad"),
    ("tools", "none", []),
    ("tools", "lookup_order", ["lookup_order"]),
    ("instructions", "Line one.\nLine two.", "Line one.\nLine two."),
    ("greeting", "sound:hello-world", "sound:hello-world"),
    ("greeting", "sound:en/vm-intro", "sound:en/vm-intro"),
    ("greeting", f"file:{PROMPTS}/hello.wav", f"file:{PROMPTS}/hello.wav"),
    ("greeting", f"{PROMPTS}/sales/hello.ulaw", f"{PROMPTS}/sales/hello.ulaw"),
])
def test_a_good_value_is_taken(key: str, value: str, expected: object, caplog: pytest.LogCaptureFixture) -> None:
    choices = choices_of(["100", f"{key}={value}"], keys=EVERY_KEY)
    assert getattr(choices, key) == expected and choices.sources == {key: "stasis"}
    assert lines(caplog) == []


def test_unknown_tools_are_left_out_the_known_ones_stay(caplog: pytest.LogCaptureFixture) -> None:
    assert choices_of(["100"], {"ARIBOT_TOOLS": "lookup_order,ghost"}, keys=["tools"]).tools == ["lookup_order"]
    (line,) = lines(caplog)
    assert "ARIBOT_TOOLS='lookup_order,ghost' names tools that are not registered ('ghost')" in line


def test_a_file_greeting_needs_a_listed_folder(caplog: pytest.LogCaptureFixture) -> None:
    config = settings([], ["greeting"])
    config.call.greeting_dirs = []
    choices = resolve(config, ["100", f"greeting=file:{PROMPTS}/hello.wav"], {}, default_extension="100",
                      modes=[], tools=[], call_id="c1")
    assert choices.greeting == ""
    assert "is a file and [call] greeting_dirs lists no folder" in lines(caplog)[0]


# --- the extension never carries choices ---------------------------------------------------------------

def test_the_first_argument_is_the_extension_never_a_choice(caplog: pytest.LogCaptureFixture) -> None:
    """``Stasis(app,${EXTEN})`` with EXTEN = ``instructions=HACKED``: one argument, the extension."""
    choices = choices_of(["instructions=HACKED"], keys=EVERY_KEY)
    assert choices.instructions == INSTRUCTIONS and choices.extension == "instructions=HACKED"
    (line,) = lines(caplog)
    assert line == ("call c1: the first Stasis argument 'instructions=HACKED' is the extension, never a choice; "
                    + GOES_ON)


@pytest.mark.parametrize(("dialled", "args"), [
    ("1234,instructions=HACKED", ["1234", "instructions=HACKED"]),
    ("1234, Instructions = HACKED", ["1234", "Instructions = HACKED"]),
    ('1234,"instructions=HACKED"', ["1234", "instructions=HACKED"]),
    ("1234,x,instructions=HACKED", ["100", "1234", "x", "instructions=HACKED"]),   # Stasis(app,100,${EXTEN})
])
def test_a_choice_the_caller_dialled_is_refused(dialled: str, args: list[str],
                                                caplog: pytest.LogCaptureFixture) -> None:
    """An unfiltered ``${EXTEN}`` is split by Asterisk at its commas: even with instructions listed in
    per_call_keys, a key=value that is part of the channel's dialled extension is not taken."""
    choices = choices_of(args, keys=EVERY_KEY, dialled=dialled)
    assert choices.instructions == INSTRUCTIONS and choices.sources == {}
    (line,) = lines(caplog)
    assert "may come from the caller" in line and "${FILTER(0-9*#+,${EXTEN})}" in line and line.endswith(GOES_ON)


def test_what_asterisk_hands_over_for_an_unfiltered_exten(caplog: pytest.LogCaptureFixture) -> None:
    """As seen on the lab's Asterisk 22.10.1 with ``Stasis(app,${EXTEN})`` and a sipp call to
    ``1234,instructions=HACKED,voice=ash``: three arguments, and the channel's dialplan exten is the
    whole user part. With the shipped per_call_keys (voice is listed) nothing is taken."""
    choices = choices_of(["1234", "instructions=HACKED", "voice=ash"], dialled="1234,instructions=HACKED,voice=ash")
    assert (choices.instructions, choices.voice, choices.sources) == (INSTRUCTIONS, "marin", {})
    first, second = lines(caplog)
    assert "instructions='HACKED' is not in [call] per_call_keys" in first
    assert "voice='ash' may come from the caller" in second


def test_the_operators_own_arguments_with_a_plain_dialled_number() -> None:
    choices = choices_of(["800", "instructions=from the dialplan"], keys=EVERY_KEY, dialled="800")
    assert choices.instructions == "from the dialplan" and choices.extension == "800"


# --- the settings ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    (["voice", "backend"], ["voice", "backend"]), ("Voice, INSTRUCTIONS", ["voice", "instructions"]), ([], []),
])
def test_per_call_keys_setting(value: object, expected: list[str]) -> None:
    assert key_list(value) == expected


@pytest.mark.parametrize("value", [["colour"], ["voice", "extension"], {"voice": 1}])
def test_per_call_keys_setting_refuses_unknown_keys(value: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        key_list(value)


def test_the_shipped_default_takes_no_instructions_tools_mode_or_greeting() -> None:
    shipped = load_settings().call.per_call_keys
    assert shipped == DEFAULT_KEYS and not {"instructions", "greeting", "tools", "mode"} & set(shipped)


@pytest.mark.parametrize("bad", ['["colour"]', '["voice","extension"]'])
def test_a_wrong_per_call_key_stops_start_up_naming_the_setting(bad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARIBOT_CALL__PER_CALL_KEYS", bad)
    with pytest.raises(SettingsError, match=r"setting call\.per_call_keys = .* is not valid: expected a list of mode"):
        load_settings()


@pytest.mark.parametrize(("path", "folders", "inside"), [
    ("/srv/p/a.wav", ["/srv/p"], True), ("/srv/p/x/../a.wav", ["/srv/p"], True),
    ("/srv/p/../q/a.wav", ["/srv/p"], False), ("/srv/p", ["/srv/p"], False), ("/srv/pp/a.wav", ["/srv/p"], False),
    ("relative.wav", ["/srv/p"], False), ("/srv/p/a\0.wav", ["/srv/p"], False), ("/srv/p/a.wav", [], False),
    ("/etc/passwd", ["/"], False),
])
def test_is_inside(path: str, folders: list[str], inside: bool) -> None:
    assert is_inside(path, folders) is inside


# --- property tests: no exception escapes, a refusal is one line ------------------------------------------

KEY_TEXT = st.sampled_from([*KEYS, "colour", "Voice", "INSTRUCTIONS", "", " tools "])
VALUE_TEXT = st.one_of(st.text(max_size=40), st.sampled_from(
    ["cedar", "gpt_live", "local", "none", "lookup_order,ghost", "vad", "sound:hello", "file:/dev/zero",
     f"file:{PROMPTS}/a.wav", f"{PROMPTS}/../etc/passwd", "x" * 300, "HACKED\n", "\x00"]))
ARG = st.one_of(st.text(max_size=30), st.builds(lambda k, v: f"{k}={v}", KEY_TEXT, VALUE_TEXT))
VARIABLES = st.dictionaries(st.one_of(st.sampled_from(CHANNEL_VARIABLES), st.text(max_size=12)), VALUE_TEXT,
                            max_size=6)
KEY_SETS = st.lists(st.sampled_from(KEYS), unique=True)


@given(args=st.lists(ARG, max_size=8), variables=VARIABLES, keys=KEY_SETS, dialled=st.text(max_size=40))
def test_any_dialplan_input_gives_choices_or_lines_never_an_exception(
    args: list[str], variables: dict[str, str], keys: list[str], dialled: str
) -> None:
    log = logging.getLogger("aribot.choices")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    log.addHandler(handler)
    try:
        choices = choices_of(args, variables, keys=keys, allowed=["gpt_live"], dialled=dialled)
    finally:
        log.removeHandler(handler)
    candidates = len(args) + len([v for k, v in variables.items() if k in CHANNEL_VARIABLES and v])
    assert len(records) <= candidates                      # at most one line per input
    for record in records:
        text = record.getMessage()
        assert text.startswith("call c1: ") and "the call goes on with" in text and "\n" not in text
    for key in set(KEYS) - set(keys):                      # a key not listed is never taken
        assert key not in choices.sources
    if "instructions" not in keys:
        assert choices.instructions == INSTRUCTIONS
    assert choices.backend in ("openai_realtime", "gpt_live")
    assert choices.mode in ("immediate", "vad")
    assert choices.greeting == "" or SOUND.fullmatch(choices.greeting) or is_inside(
        choices.greeting.removeprefix("file:"), [PROMPTS])
    assert choices.voice in ("marin", "cedar") or NAME.fullmatch(choices.voice)
    assert choices.tools is None or set(choices.tools) <= set(TOOLS)
    assert len(choices.instructions) <= MAX_INSTRUCTIONS


@given(extension=st.text(max_size=40), pairs=st.lists(st.tuples(KEY_TEXT, VALUE_TEXT), max_size=4))
def test_a_dialled_extension_never_chooses_anything(extension: str, pairs: list[tuple[str, str]]) -> None:
    """Whatever the caller dials, passed unfiltered as ``Stasis(app,${EXTEN})`` and split at its
    commas by Asterisk, nothing is chosen, with every key listed in per_call_keys."""
    dialled = ",".join([extension, *(f"{k}={v}" for k, v in pairs)])
    args = [part.strip() for part in dialled.split(",")]
    assert choices_of(args, keys=EVERY_KEY, dialled=dialled).sources == {}
