"""Suite-wide: no ARIBOT_* or quickstart variables from the developer's shell leak into tests, and
no aribot a test starts (in-process or as a command) writes into the machine's own data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aribot.core.app import installed_settings

LEAKY = {name for _owner, setting in installed_settings() for name in setting.legacy} | {"ARIBOT_SETTINGS"}


@pytest.fixture(scope="session")
def _state_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, _state_directory: Path) -> None:
    for name in list(os.environ):
        if name.startswith("ARIBOT_") or name in LEAKY or name in ("STATE_DIRECTORY", "XDG_STATE_HOME"):
            monkeypatch.delenv(name)
    # the data folder of every aribot a test starts, unless the test sets [storage] data_dir
    monkeypatch.setenv("STATE_DIRECTORY", str(_state_directory))
