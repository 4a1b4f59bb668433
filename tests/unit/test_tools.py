"""Function tools: schema from type hints, validation, timeouts and errors become outputs."""

from __future__ import annotations

import asyncio
import json
from typing import Literal

from core.tools import Tool, ToolContext, ToolRegistry


def lookup(order_id: str, verbose: bool = False, kind: Literal["a", "b"] = "a",
           tags: list[str] | None = None, ctx: ToolContext | None = None) -> dict:
    """Look up an order by id.

    More text that the model does not need."""
    return {"order_id": order_id, "verbose": verbose, "call": ctx.call_id if ctx else None}


async def slow() -> str:
    """Never finishes in time."""
    await asyncio.sleep(10)
    return "late"


def broken(x: int) -> str:
    """Raises."""
    raise ValueError("bad x")


class FakeCall:
    id = "call-1"
    caller_number = "100"
    extension = "200"


def test_schema_from_signature() -> None:
    tool = Tool.from_function(lookup, "test")
    definition = tool.definition()
    assert definition["name"] == "lookup" and definition["description"] == "Look up an order by id."
    props = definition["parameters"]["properties"]
    assert props["order_id"] == {"type": "string"}
    assert props["kind"] == {"type": "string", "enum": ["a", "b"]}
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert "ctx" not in props and definition["parameters"]["required"] == ["order_id"]


async def test_run_validates_and_injects_context() -> None:
    registry = ToolRegistry([Tool.from_function(f, "t") for f in (lookup, slow, broken)], timeout=0.05)
    ctx = ToolContext(FakeCall())
    output, error = await registry.run("lookup", '{"order_id": "42"}', ctx)
    assert error == "" and json.loads(output) == {"order_id": "42", "verbose": False, "call": "call-1"}
    for name, args, needle in [("lookup", "{}", "missing"), ("lookup", '{"order_id":"1","x":2}', "unknown"),
                               ("lookup", "not json", "bad arguments"), ("nope", "{}", "unknown tool"),
                               ("slow", "{}", "did not finish"), ("broken", '{"x": 1}', "bad x")]:
        output, error = await registry.run(name, args, ctx)
        assert needle in error and json.loads(output) == {"error": error}
