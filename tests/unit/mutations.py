"""Mutations of valid JSON events for property tests of everything a remote side sends (ARI
events, AI server events): any field, at any depth, replaced by any JSON-ish value or removed,
or a new field added. The events themselves come from captures (ARI) or from the strict fakes."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

# what a broken or hostile sender might put anywhere: wrong types, empty and odd values, nesting
SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20)
           | st.sampled_from(["", "abc", "5", "-1", "1e400", "null", "channel:", "A", "#", "{}", "\x00"]))
JSONISH = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=8) | st.sampled_from(["id", "type", "name"]), inner,
                                         max_size=4), max_leaves=12)
REMOVE = object()


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (keys and list indexes) into ``value``, the root excluded."""
    found: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        found.append(prefix + (key,))
        found += paths(child, prefix + (key,))
    return found


def mutate(event: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """A copy of ``event`` with ``path`` set to ``value`` (REMOVE: deleted)."""
    copied = copy.deepcopy(event)
    parent: Any = copied
    for key in path[:-1]:
        parent = parent[key]
    if value is REMOVE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return copied


@st.composite
def mutations(draw: Any, corpus: list[dict[str, Any]], keep_type: bool = False) -> dict[str, Any]:
    """One event of ``corpus`` with one to three fields changed (``keep_type``: never its "type",
    so the mutation reaches the event's own handler)."""
    event = copy.deepcopy(draw(st.sampled_from(corpus)))
    for _ in range(draw(st.integers(1, 3))):
        candidates = [p for p in paths(event) if not (keep_type and p == ("type",))]
        if not candidates or draw(st.integers(0, 9)) == 0:   # sometimes a field the event never had
            parent_paths = [()] + [p for p in candidates if isinstance(_at(event, p), dict)]
            parent = draw(st.sampled_from(parent_paths))
            key = draw(st.text(max_size=8) | st.sampled_from(["caller", "args", "digit", "playback", "delta"]))
            if keep_type and parent == () and key == "type":
                continue
            event = mutate(event, parent + (key,), draw(JSONISH))
            continue
        path = draw(st.sampled_from(candidates))
        event = mutate(event, path, draw(JSONISH | st.just(REMOVE)))
    return event


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value
