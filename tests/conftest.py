"""Suite-wide: no ARIBOT_* or quickstart variables from the developer's shell leak into tests, and
no aribot a test starts (in-process or as a command) writes into the machine's own data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from aribot.core.app import installed_settings

# property tests: the same examples on every run (a failure reproduces; CI is not a lottery) and no
# per-example deadline (a loaded 2-core machine is slow, not wrong); HYPOTHESIS_PROFILE=explore
# draws fresh random examples for a deeper local search
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=200,
                          suppress_health_check=[HealthCheck.too_slow], database=None)
settings.register_profile("explore", deadline=None, max_examples=5000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

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
