"""The drop-in example packages of examples/, installed the way a user would (pip) for a test."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@contextmanager
def installed_example(name: str, work: Path, module: str) -> Iterator[Path]:
    """pip install ``examples/<name>`` with the test venv's pip into a folder of its own under
    ``work`` that this process (and any `aribot` it starts with PYTHONPATH) puts on its path: other
    tests running in parallel with the same venv never see it, and nothing is left behind."""
    source, target = work / name, work / "site"
    shutil.copytree(EXAMPLES / name, source)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["install", "--no-deps", "--no-build-isolation", "--no-index", "--target", str(target),
                          str(source)], check=True)
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        sys.modules.pop(module, None)
