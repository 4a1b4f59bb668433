"""Suite-wide: no ARIBOT_* or quickstart variables from the developer's shell leak into tests."""

from __future__ import annotations

import os

import pytest

from core.settings import LEGACY_ENV

LEAKY = {name for names in LEGACY_ENV.values() for name in names}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ARIBOT_") or name in LEAKY:
            monkeypatch.delenv(name)
