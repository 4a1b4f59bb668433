"""A tiny strict validator DSL: every spec is ``(value, path) -> None`` and raises ``ProtocolError``.

Objects check required keys first (the real server reports a nested tool as
``Missing required parameter: 'session.tools[0].name'.``), then refuse unknown keys, then
validate each present key in order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from . import errors

Spec = Callable[[Any, str], None]


def join(path: str, key: str) -> str:
    """``session`` + ``audio`` -> ``session.audio``; an empty path gives ``key``."""
    return f"{path}.{key}" if path else key


def obj(fields: Mapping[str, Spec], required: Iterable[str] = ()) -> Spec:
    """A JSON object with exactly the given keys allowed."""
    required = tuple(required)

    def check(value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise errors.invalid_type(path, "an object", value)
        for key in required:
            if key not in value:
                raise errors.missing_parameter(join(path, key))
        for key in value:
            if key not in fields:
                raise errors.unknown_parameter(join(path, key))
        for key, item in value.items():
            fields[key](item, join(path, key))

    return check


def string(*, non_empty: bool = False) -> Spec:
    """A JSON string."""

    def check(value: Any, path: str) -> None:
        if not isinstance(value, str):
            raise errors.invalid_type(path, "a string", value)
        if non_empty and not value:
            raise errors.invalid_value(path, f"Invalid '{path}': empty string. Expected a non-empty string.")

    return check


def boolean() -> Spec:
    """A JSON boolean."""

    def check(value: Any, path: str) -> None:
        if not isinstance(value, bool):
            raise errors.invalid_type(path, "a boolean", value)

    return check


def integer(low: int | None = None, high: int | None = None) -> Spec:
    """A JSON integer within ``[low, high]``."""

    def check(value: Any, path: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise errors.invalid_type(path, "an integer", value)
        if (low is not None and value < low) or (high is not None and value > high):
            raise errors.out_of_range(path, value, low, high)

    return check


def number(low: float | None = None, high: float | None = None) -> Spec:
    """A JSON number (integer or decimal) within ``[low, high]``."""

    def check(value: Any, path: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise errors.invalid_type(path, "a number", value)
        if (low is not None and value < low) or (high is not None and value > high):
            raise errors.out_of_range(path, value, low, high)

    return check


def choice(*values: object) -> Spec:
    """One of the given literal values (strings are type-checked first)."""

    def check(value: Any, path: str) -> None:
        if all(isinstance(v, str) for v in values) and not isinstance(value, str):
            raise errors.invalid_type(path, "a string", value)
        if isinstance(value, bool) or value not in values:
            raise errors.invalid_choice(path, value, values)

    return check


def nullable(spec: Spec) -> Spec:
    """``null`` or ``spec``."""

    def check(value: Any, path: str) -> None:
        if value is not None:
            spec(value, path)

    return check


def array(spec: Spec, *, min_items: int = 0, max_items: int | None = None) -> Spec:
    """A JSON array whose elements match ``spec`` (paths ``x[0]``, ``x[1]`` ...)."""

    def check(value: Any, path: str) -> None:
        if not isinstance(value, list):
            raise errors.invalid_type(path, "an array", value)
        if len(value) < min_items or (max_items is not None and len(value) > max_items):
            raise errors.invalid_value(
                path, f"Invalid '{path}': expected between {min_items} and {max_items} items, got {len(value)}."
            )
        for index, element in enumerate(value):
            spec(element, f"{path}[{index}]")

    return check


def any_json() -> Spec:
    """Anything (free-form JSON such as a tool's JSON Schema contents)."""

    def check(value: Any, path: str) -> None:
        return None

    return check


def json_object() -> Spec:
    """Any JSON object, keys unchecked."""

    def check(value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise errors.invalid_type(path, "an object", value)

    return check


def string_map(max_keys: int = 16, max_value_len: int = 512) -> Spec:
    """``metadata``: up to 16 string keys (<= 64 chars) with string values (<= 512 chars)."""

    def check(value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise errors.invalid_type(path, "an object", value)
        if len(value) > max_keys:
            raise errors.invalid_value(path, f"Invalid '{path}': at most {max_keys} keys are allowed.")
        for key, item in value.items():
            if len(key) > 64:
                raise errors.invalid_value(join(path, key), f"Invalid '{path}': key longer than 64 characters.")
            if not isinstance(item, str):
                raise errors.invalid_type(join(path, key), "a string", item)
            if len(item) > max_value_len:
                raise errors.invalid_value(join(path, key), f"Invalid '{path}.{key}': value too long.")

    return check


def by_type(variants: Mapping[str, Spec]) -> Spec:
    """An object discriminated by its ``type`` key."""

    def check(value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise errors.invalid_type(path, "an object", value)
        if "type" not in value:
            raise errors.missing_parameter(join(path, "type"))
        kind = value["type"]
        if not isinstance(kind, str):
            raise errors.invalid_type(join(path, "type"), "a string", kind)
        if kind not in variants:
            raise errors.invalid_choice(join(path, "type"), kind, variants)
        variants[kind](value, path)

    return check


def string_or(strings: Spec, objects: Spec, expected: str) -> Spec:
    """A string checked by ``strings`` or an object checked by ``objects``."""

    def check(value: Any, path: str) -> None:
        if isinstance(value, str):
            strings(value, path)
        elif isinstance(value, dict):
            objects(value, path)
        else:
            raise errors.invalid_type(path, expected, value)

    return check


def integer_or_inf(low: int, high: int) -> Spec:
    """``max_output_tokens``: an integer in range or the string ``"inf"``."""
    as_int = integer(low, high)

    def check(value: Any, path: str) -> None:
        if isinstance(value, str):
            if value != "inf":
                raise errors.invalid_choice(path, value, ["inf"])
            return
        as_int(value, path)

    return check
