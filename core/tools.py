"""Function tools: a typed Python function becomes a Realtime tool definition (flat GA form);
calls are validated, run with a timeout and always answered with a JSON string output."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Literal, Union, get_args, get_origin

log = logging.getLogger("aribot.tools")


class ToolContext:
    """What a tool may know and do about its call. Annotate a parameter with this type to get
    it injected; the model never sees that parameter."""

    def __init__(self, call: Any) -> None:
        self._call = call

    @property
    def call_id(self) -> str:
        return self._call.id

    @property
    def caller_number(self) -> str:
        return self._call.caller_number

    @property
    def extension(self) -> str:
        return self._call.extension

    async def hangup(self, reason: str = "tool") -> None:
        """End the call once the audio already queued has played (``[call] on_end`` applies)."""
        await self._call.end(reason)


_JSON_TYPES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean",
                               dict: "object", list: "array"}


def json_schema(annotation: Any) -> dict[str, Any]:
    """JSON schema of a type hint (str, int, float, bool, list[X], dict, Literal, Optional)."""
    origin = get_origin(annotation)
    if annotation in _JSON_TYPES:
        return {"type": _JSON_TYPES[annotation]}
    if origin is Literal:
        values = list(get_args(annotation))
        return {"type": _JSON_TYPES.get(type(values[0]), "string"), "enum": values}
    if origin in (list, tuple, set):
        args = get_args(annotation)
        return {"type": "array", "items": json_schema(args[0]) if args else {}}
    if origin is dict:
        return {"type": "object"}
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        if len(options) == 1:
            return json_schema(options[0])
        return {"anyOf": [json_schema(a) for a in options]}
    if annotation is inspect.Parameter.empty or annotation is Any:
        return {}
    raise TypeError(f"type {annotation!r} cannot be described to the model")


@dataclass
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[..., Any]
    owner: str
    context_params: tuple[str, ...] = ()

    @classmethod
    def from_function(cls, function: Callable[..., Any], owner: str) -> "Tool":
        hints = typing.get_type_hints(function)
        props: dict[str, Any] = {}
        required: list[str] = []
        context: list[str] = []
        for pname, param in inspect.signature(function).parameters.items():
            hint = hints.get(pname, param.annotation)
            if hint is ToolContext or ToolContext in get_args(hint):
                context.append(pname)
                continue
            props[pname] = json_schema(hint)
            if param.default is inspect.Parameter.empty:
                required.append(pname)
        doc = inspect.getdoc(function) or ""
        schema = {"type": "object", "properties": props, "required": required}
        return cls(function.__name__, doc.split("\n\n")[0].strip(), schema, function, owner, tuple(context))

    def definition(self) -> dict[str, Any]:
        return {"type": "function", "name": self.name, "description": self.description,
                "parameters": self.parameters}


class ToolRegistry:
    """Tools by name, built from the plugins' ``register_tools`` hooks."""

    def __init__(self, tools: list[Tool], timeout: float) -> None:
        self.tools = {tool.name: tool for tool in tools}
        self.timeout = timeout

    @classmethod
    def from_plugins(cls, plugins: Any, timeout: float) -> "ToolRegistry":
        return cls([Tool.from_function(fn, owner) for owner, fn in plugins.tools()], timeout)

    def definitions(self, names: list[str] | None = None) -> list[dict[str, Any]]:
        """Tool definitions for session.update: all, or only ``names`` (a per-call choice)."""
        return [tool.definition() for tool in self.tools.values() if names is None or tool.name in names]

    async def run(self, name: str, arguments: str, context: ToolContext,
                  allowed: list[str] | None = None) -> tuple[str, str]:
        """Run a tool call; returns (output JSON string, error text or '')."""
        tool = self.tools.get(name)
        if tool is None or (allowed is not None and name not in allowed):
            return _error(f"unknown tool {name!r}")
        try:
            args = json.loads(arguments or "{}")
            if not isinstance(args, dict):
                raise ValueError("arguments are not a JSON object")
        except ValueError as exc:
            return _error(f"bad arguments for {name}: {exc}")
        props = tool.parameters["properties"]
        unknown = sorted(set(args) - set(props))
        missing = [p for p in tool.parameters["required"] if p not in args]
        if unknown or missing:
            return _error(f"bad arguments for {name}: missing {missing}, unknown {unknown}")
        for pname in tool.context_params:
            args[pname] = context
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                result = tool.function(**args)
                if inspect.isawaitable(result):
                    result = await result
        except TimeoutError:
            return _error(f"tool {name} did not finish within {self.timeout:g} s")
        except Exception as exc:
            log.warning("tool %s raised %r after %.0f ms; the model gets an error output",
                        name, exc, (time.perf_counter() - started) * 1000)
            return _error(f"tool {name} failed: {exc}")
        try:
            return (result if isinstance(result, str) else json.dumps(result)), ""
        except TypeError:
            return json.dumps(str(result)), ""


def _error(message: str) -> tuple[str, str]:
    return json.dumps({"error": message}), message
