"""Function tools: schema from type hints and docstrings, validation, timeouts and errors become
outputs, the injected context, ToolResult."""

from __future__ import annotations

import asyncio
import json
import threading
from types import SimpleNamespace
from typing import Any, Literal

import pytest

from aribot.core.settings import SettingsError
from aribot.core.tools import Tool, ToolContext, ToolRegistry, ToolResult, parameter_docs, validate
from tests.lab.wait import until


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


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), "nan", "-inf", 10**400, -1, 601])
def test_a_bad_per_tool_timeout_is_refused_with_one_line(timeout: Any) -> None:
    plugins = SimpleNamespace(tools=lambda: [("p", slow)])
    settings = SimpleNamespace(tools=_Table(timeout=5.0, disabled=[], slow={"timeout": timeout}))
    with pytest.raises(SettingsError) as info:
        ToolRegistry.from_plugins(plugins, settings)
    assert str(info.value).startswith("setting tools.slow.timeout = ") and "expected seconds 0..600" in str(info.value)


class _Table(dict):
    def __getattr__(self, name):
        return self[name]


# --- sync tools run in a worker thread (issue 15) -------------------------------------------------

class SpawningCall(FakeCall):
    """A call that records what tools hand to ``ctx.after`` and from which thread."""

    def __init__(self) -> None:
        self.spawned: list[tuple[str, Any]] = []

    def spawn(self, coro: Any) -> None:
        self.spawned.append((threading.current_thread().name, coro))
        coro.close()


async def _noop() -> None:
    pass


async def test_a_stuck_sync_tool_times_out_while_the_loop_keeps_running() -> None:
    """The tool blocks its thread until released; meanwhile the event loop (which paces every
    call's RTP) keeps turning, the model gets the same timeout output as for an async tool, and
    what the tool returns, or asks for, afterwards is discarded."""
    release, returned = threading.Event(), threading.Event()

    def stuck(ctx: ToolContext) -> str:
        """Waits for the test."""
        release.wait(30)
        ctx.after(_noop())          # asked for after the timeout: not done
        returned.set()
        return "late"

    registry = ToolRegistry([Tool.from_function(stuck, "t")], timeout=0.05)
    call = SpawningCall()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    turning = asyncio.create_task(ticker())
    try:
        outcome = await registry.run("stuck", "{}", ToolContext(call, "stuck"))
        ticks_while_stuck = ticks
    finally:
        turning.cancel()
    assert outcome.timed_out and outcome.error == "stuck did not finish within 0.05 s"
    assert json.loads(outcome.output) == {"error": outcome.error}
    assert ticks_while_stuck > 10 and registry.abandoned == 1
    release.set()
    await until(lambda: returned.is_set() and registry._slots._value == registry.threads, "the thread's return")
    await asyncio.sleep(0)
    assert call.spawned == []


async def test_sync_tools_answer_from_a_worker_thread_and_may_schedule_work() -> None:
    seen: list[str] = []

    def where(ctx: ToolContext) -> dict:
        """Says which thread it ran in."""
        seen.append(threading.current_thread().name)
        ctx.after(_noop())
        return {"ok": True}

    registry = ToolRegistry([Tool.from_function(f, "t") for f in (where, broken)], timeout=5)
    call = SpawningCall()
    outcome = await registry.run("where", "{}", ToolContext(call, "where"))
    assert json.loads(outcome.output) == {"ok": True} and seen == ["aribot-tool-where"]
    await until(lambda: call.spawned, "the follow-up")
    assert [name for name, _ in call.spawned] == [threading.current_thread().name]  # on the loop's thread
    failed = await registry.run("broken", '{"x": 1}', ToolContext(call, "broken"))
    assert failed.error == "broken failed: bad x" and not failed.timed_out


async def test_at_most_threads_sync_tools_run_at_once() -> None:
    lock, running, peak, release = threading.Lock(), [0], [0], threading.Event()

    def busy() -> str:
        """Holds a thread."""
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        release.wait(30)
        with lock:
            running[0] -= 1
        return "done"

    registry = ToolRegistry([Tool.from_function(busy, "t")], timeout=60, threads=2)
    runs = [asyncio.create_task(registry.run("busy", "{}", ToolContext(SpawningCall(), "busy"))) for _ in range(5)]
    await until(lambda: running[0] == 2 and len(registry._slots._waiters or ()) == 3,
                "two tools running, three waiting for a thread")
    release.set()
    outcomes = await asyncio.gather(*runs)
    assert [o.output for o in outcomes] == ["done"] * 5 and peak[0] == 2
