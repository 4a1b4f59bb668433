"""Asterisk 22.10.1's ARI definition (its own rest-api JSON) and request validation against it."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from aribot.core.ari import OPERATIONS

REPO = Path(__file__).resolve().parents[2]
CAPTURES = REPO / "tests" / "contract" / "ari-captured-22.10.1"


def api_docs_dir() -> Path:
    """The team's shared copy if present, else the lab's Asterisk package's own copy
    (``/usr/share/asterisk/rest-api``, byte-identical to tag 22.10.1)."""
    from aribot.sandbox.provision import default_chroot
    candidates = [Path(os.environ["ARIBOT_ARI_API_DOCS"])] if "ARIBOT_ARI_API_DOCS" in os.environ else []
    candidates += [REPO.parent / "shared" / "ari-api-docs", default_chroot() / "usr/share/asterisk/rest-api"]
    for path in candidates:
        if (path / "channels.json").is_file():
            return path
    raise RuntimeError(f"no ARI api-docs in {[str(c) for c in candidates]}; run scripts/setup (as root)")


@lru_cache(maxsize=1)
def doc_operations() -> dict[tuple[str, str], dict[str, Any]]:
    ops: dict[tuple[str, str], dict[str, Any]] = {}
    for path in api_docs_dir().glob("*.json"):
        for api in json.loads(path.read_text()).get("apis", []):
            for op in api.get("operations", []):
                ops[(op["httpMethod"], api["path"])] = op
    return ops


@lru_cache(maxsize=1)
def event_models() -> dict[str, Any]:
    return json.loads((api_docs_dir() / "events.json").read_text())["models"]


def validate_request(name: str, params: dict[str, Any]) -> list[str]:
    """Problems with one request aribot's client made: unknown parameters, repeated values where
    allowMultiple is false, values outside allowableValues."""
    method, path, _query = OPERATIONS[name]
    doc = {p["name"]: p for p in doc_operations()[(method, path)].get("parameters", [])}
    problems = []
    for key, value in params.items():
        if "{" + key + "}" in path or value is None:
            continue
        if key == "body":
            if not any(spec["paramType"] == "body" for spec in doc.values()):
                problems.append(f"{name}: sends a JSON body but the operation takes none")
            continue
        spec = doc.get(key)
        if spec is None:
            problems.append(f"{name}: unknown parameter {key}")
            continue
        if isinstance(value, (list, tuple)) and not spec.get("allowMultiple"):  # (sent as one comma list)
            problems.append(f"{name}: {key} given several values but allowMultiple is false")
        allowed = spec.get("allowableValues") or {}
        if allowed.get("valueType") == "LIST":
            for item in value if isinstance(value, (list, tuple)) else [value]:
                if str(item) not in allowed["values"]:
                    problems.append(f"{name}: {key}={item!r} not in {allowed['values']}")
    return problems
