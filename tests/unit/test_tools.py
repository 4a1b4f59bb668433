"""Function tools: schema from type hints and docstrings, validation, timeouts and errors become
outputs, the injected context, ToolResult."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Literal

import pytest

from aribot.core.tools import Tool, ToolContext, ToolRegistry, ToolResult, parameter_docs, validate


def lookup(order_id: str, verbose: bool = False, kind: Literal["a", "b"] = "a",
           tags: list[str] | None = None, ctx: ToolContext | None = None) -> dict:
    """Look up an order by id.

    More text that the model does not need.

    Args:
        order_id: the order number the caller gives
        verbose (bool): include the history
    """
    return {"order_id": order_id, "verbose": verbose, "call": ctx.call_id if ctx else None}


async def slow() -> str:
    """Never finishes in time."""
    await asyncio.sleep(10)
    return "late"


def broken(x: int) -> str:
    """Raises."""
    raise ValueError("bad x")


def quiet() -> ToolResult:
    """Asks for no answer."""
    return ToolResult({"ok": True}, respond=False)


class FakeCall:
    id = "call-1"
    caller_number = "100"
    extension = "200"
    settings = SimpleNamespace(get=lambda key, default=None: {"lookup": {"Limit": 3}} if key == "tools" else default)


def test_schema_from_signature_and_docstring() -> None:
    definition = Tool.from_function(lookup, "test").definition()
    assert definition["name"] == "lookup" and definition["description"] == "Look up an order by id."
    props = definition["parameters"]["properties"]
    assert props["order_id"] == {"type": "string", "description": "the order number the caller gives"}
    assert props["verbose"] == {"type": "boolean", "description": "include the history"}
    assert props["kind"] == {"type": "string", "enum": ["a", "b"]}
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert "ctx" not in props and definition["parameters"]["required"] == ["order_id"]
    assert parameter_docs(":param x: the x\n:param y: why") == {"x": "the x", "y": "why"}
    with pytest.raises(TypeError):
        Tool.from_function(_bad_hint, "t")


def _bad_hint(when: complex) -> None:
    """A type the model cannot be told about."""


def test_validate_against_the_schema() -> None:
    schema = Tool.from_function(lookup, "t").parameters
    assert validate({"order_id": "1", "tags": ["x"], "kind": "b"}, schema) == []
    problems = validate({"order_id": 5, "verbose": "yes", "kind": "c", "tags": ["x", 2], "extra": 1}, schema)
    assert problems == ["arguments.extra is not a parameter", "arguments.order_id must be string, not int",
                        "arguments.verbose must be boolean, not str", "arguments.kind must be one of ['a', 'b']",
                        "arguments.tags[1] must be string, not int"]
    assert validate({}, schema) == ["arguments.order_id is required"]
    assert validate(True, {"type": "integer"}) and validate(1.5, {"type": "number"}) == []


async def test_run_validates_injects_context_and_turns_failures_into_outputs() -> None:
    registry = ToolRegistry([Tool.from_function(f, "t") for f in (lookup, slow, broken, quiet)], timeout=0.05)
    ctx = ToolContext(FakeCall(), "lookup")
    outcome = await registry.run("lookup", '{"order_id": "42"}', ctx)
    assert outcome.error == "" and json.loads(outcome.output) == {"order_id": "42", "verbose": False, "call": "call-1"}
    assert ctx.config() == {"limit": 3} and ctx.config("other") == {}
    for name, args, needle in [("lookup", "{}", "order_id is required"),
                               ("lookup", '{"order_id":"1","x":2}', "x is not a parameter"),
                               ("lookup", "not json", "not valid JSON"), ("nope", "{}", "no tool named"),
                               ("slow", "{}", "did not finish within 0.05 s"), ("broken", '{"x": 1}', "bad x"),
                               ("broken", '{"x": "1"}', "must be integer")]:
        outcome = await registry.run(name, args, ctx)
        assert needle in outcome.error and json.loads(outcome.output) == {"error": outcome.error}
    quiet_outcome = await registry.run("quiet", "{}", ctx)
    assert quiet_outcome.respond is False and json.loads(quiet_outcome.output) == {"ok": True}
    assert (await registry.run("lookup", '{"order_id": "1"}', ctx, allowed=["quiet"])).error


async def test_disabled_tools_and_per_tool_timeout() -> None:
    plugins = SimpleNamespace(tools=lambda: [("p", lookup), ("p", slow)])
    settings = SimpleNamespace(tools=_Table(timeout=5.0, disabled=["lookup"], slow={"timeout": 0.05}))
    registry = ToolRegistry.from_plugins(plugins, settings)
    assert [d["name"] for d in registry.definitions()] == ["slow"]
    assert not registry.tools["lookup"].enabled
    outcome = await registry.run("slow", "{}", ToolContext(FakeCall(), "slow"))
    assert outcome.timed_out and "0.05 s" in outcome.error
    assert (await registry.run("lookup", '{"order_id": "1"}', ToolContext(FakeCall()))).error


class _Table(dict):
    def __getattr__(self, name):
        return self[name]
