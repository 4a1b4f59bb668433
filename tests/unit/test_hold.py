"""The hold sound's parts that need no call: the built-in loop, the setting's rule and its check
against [call] greeting_dirs (the sound itself on a real call: tests/integration/test_tools.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aribot.core.g711 import decode, loud_samples
from aribot.core.hold import BUILTIN, builtin_beeps, hold_sound_setting
from aribot.core.settings import SettingsError, load_settings


def test_the_built_in_loop_is_3_s_of_two_beeps_then_quiet() -> None:
    for fmt in ("ulaw", "alaw"):
        loop = builtin_beeps(fmt)
        assert len(loop) == 3 * 8000
        loud = [loud_samples(loop[i:i + 160], fmt) >= 16 for i in range(0, len(loop), 160)]
        # 150 ms beep, 150 ms gap, 150 ms beep (7.5 frames each), then 2.55 s of quiet
        assert loud[:7] == [True] * 7 and loud[8:15] == [False] * 7 and loud[16:22] == [True] * 6
        assert not any(loud[23:])
        assert max(abs(s) for s in decode(loop, fmt)) < 2100   # about -24 dBFS: soft


@pytest.mark.parametrize("value", ["", BUILTIN, "file:/srv/hold.wav", "/srv/hold.ulaw"])
def test_the_setting_takes_none_the_built_in_or_a_file(value: str) -> None:
    assert hold_sound_setting(value) == value


@pytest.mark.parametrize("value", ["sound:hold", "music", "file:/x\0.wav", "tone"])
def test_the_setting_refuses_anything_else(value: str) -> None:
    with pytest.raises(ValueError):
        hold_sound_setting(value)


def test_a_hold_file_outside_greeting_dirs_is_refused_with_one_line(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ARIBOT_TOOLS__HOLD_SOUND", "/etc/passwd")
    with pytest.raises(SettingsError, match=r"setting tools.hold_sound = '/etc/passwd' is a file outside "
                                            r"call.greeting_dirs") as info:
        load_settings()
    assert "\n" not in str(info.value)
    monkeypatch.setenv("ARIBOT_TOOLS__HOLD_SOUND", f"file:{tmp_path}/hold.wav")
    monkeypatch.setenv("ARIBOT_CALL__GREETING_DIRS", f'["{tmp_path}"]')
    assert load_settings().tools.hold_sound == f"file:{tmp_path}/hold.wav"
