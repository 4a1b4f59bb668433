"""Function tools: a typed Python function becomes a Realtime tool definition (flat GA form);
calls are validated against that schema, run with a timeout and always answered with a JSON
string output — an exception, a timeout or bad arguments become an error output, never a dead
call (reference/openai-realtime.md §4.5, §5.2). A plain (sync) function runs in a worker thread,
so a slow one cannot stall the event loop that paces every call's RTP."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
import threading
import time
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Union, get_args, get_origin

from aribot.core import events as ev
from aribot.core.hold import HoldSound
from aribot.core.settings import SettingsError, number

log = logging.getLogger("aribot.tools")
# sync tools running at once; one more waits for a free thread (within its own timeout). A thread
# whose tool timed out keeps its slot until the function returns: Python cannot stop a thread.
TOOL_THREADS = 16


class ToolContext:
    """What a tool may know and do about its call. Annotate a parameter with this type to get
    it injected; the model never sees that parameter."""

    def __init__(self, call: Any, tool: str = "", response_id: str = "") -> None:
        self._call = call
        self.tool = tool
        self.response_id = response_id
        self.expired = False  # the tool timed out: what it still asks for is dropped
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

    @property
    def call_id(self) -> str:
        return self._call.id

    @property
    def caller_number(self) -> str:
        return self._call.caller_number

    @property
    def extension(self) -> str:
        return self._call.extension

    @property
    def dialplan_context(self) -> str:
        """The dialplan context the caller came from (where Stasis() ran)."""
        return self._call.channel.context

    def after(self, coro: Any) -> None:
        """Run ``coro`` for this call once the tool has returned (its output goes first). Safe
        from a sync tool's worker thread; ignored once the tool has timed out."""
        if self._loop is not None and not _on_loop(self._loop):
            self._loop.call_soon_threadsafe(self.after, coro)
            return
        if self.expired:
            coro.close()
            log.warning("call %s: tool %s asked for follow-up work after it timed out; not done",
                        self.call_id, self.tool)
            return
        self._call.spawn(coro)

    @property
    def settings(self) -> Any:
        return self._call.settings

    def config(self, name: str | None = None) -> dict[str, Any]:
        """This tool's settings table ``[tools.<name>]`` (an empty dict when there is none)."""
        tables = self._call.settings.get("tools", {}) or {}
        table = tables.get(name or self.tool) or {}
        return {str(k).lower(): v for k, v in table.items()} if isinstance(table, dict) else {}

    @property
    def ai_spoke(self) -> bool:
        """The AI said something in the response that called this tool."""
        return self._call.backend.ai_spoke(self.response_id)

    async def hangup(self, reason: str = "tool", goodbye: str = "") -> None:
        """End the call after the audio already queued (and, with ``goodbye``, a goodbye the AI
        says following those instructions) has been heard; ``[call] on_end`` applies."""
        await self._call.end(reason, goodbye=goodbye)

    async def transfer(self, context: str, extension: str, priority: int = 1, announcement: str = "") -> None:
        """Leave aribot and continue in the dialplan at ``context,extension,priority`` once the
        audio already queued (and an optional announcement) has been heard."""
        target = {"context": context, "extension": extension, "priority": priority}
        await self._call.end("transfer", goodbye=announcement, action="continue", target=target)

    async def send_dtmf(self, digits: str, duration_ms: int = 100, between_ms: int = 100) -> None:
        """Send DTMF digits to the caller's channel (RFC 4733 towards the phone)."""
        await self._call.ari.call("send_dtmf", channelId=self._call.id, dtmf=digits,
                                  duration=duration_ms, between=between_ms)


@dataclass(frozen=True)
class ToolResult:
    """What a tool may return instead of a plain value: ``respond=False`` tells aribot not to
    ask the AI for an answer after this output (e.g. the tool ends the call itself)."""

    value: Any
    respond: bool = True


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


def parameter_docs(doc: str) -> dict[str, str]:
    """Parameter descriptions from a docstring (``name: text`` under ``Args:``, or ``:param name: text``)."""
    found = dict(re.findall(r":param\s+(\w+):\s*(.+)", doc))
    section = re.split(r"\n\s*(?:Args|Arguments|Parameters):\s*\n", doc, maxsplit=1)
    if len(section) == 2:
        for line in section[1].splitlines():
            match = re.match(r"\s+(\w+)(?:\s*\([^)]*\))?:\s*(.+)", line)
            if match:
                found.setdefault(match.group(1), match.group(2).strip())
            elif line.strip() and not line.startswith((" ", "\t")):
                break
    return found


def validate(value: Any, schema: dict[str, Any], path: str = "arguments") -> list[str]:
    """Problems of ``value`` against the schemas ``json_schema`` makes (empty when it fits)."""
    if "anyOf" in schema:
        if all(validate(value, option, path) for option in schema["anyOf"]):
            return [f"{path} matches none of the allowed types"]
        return []
    kind = schema.get("type")
    checks = {"string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
              "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              "array": lambda v: isinstance(v, list), "object": lambda v: isinstance(v, dict)}
    if kind in checks and not checks[kind](value):
        return [f"{path} must be {kind}, not {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path} must be one of {schema['enum']}"]
    problems: list[str] = []
    if kind == "array" and schema.get("items"):
        for index, item in enumerate(value):
            problems += validate(item, schema["items"], f"{path}[{index}]")
    if kind == "object" and "properties" in schema:
        missing = [p for p in schema.get("required", []) if p not in value]
        unknown = sorted(set(value) - set(schema["properties"]))
        problems += [f"{path}.{p} is required" for p in missing] + [f"{path}.{p} is not a parameter" for p in unknown]
        for name, item in value.items():
            if name in schema["properties"]:
                problems += validate(item, schema["properties"][name], f"{path}.{name}")
    return problems


@dataclass
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[..., Any]
    owner: str
    context_params: tuple[str, ...] = ()
    enabled: bool = True
    timeout: float | None = None

    @classmethod
    def from_function(cls, function: Callable[..., Any], owner: str) -> "Tool":
        hints = typing.get_type_hints(function)
        doc = inspect.getdoc(function) or ""
        described = parameter_docs(doc)
        props: dict[str, Any] = {}
        required: list[str] = []
        context: list[str] = []
        for pname, param in inspect.signature(function).parameters.items():
            hint = hints.get(pname, param.annotation)
            if hint is ToolContext or ToolContext in get_args(hint):
                context.append(pname)
                continue
            props[pname] = json_schema(hint)
            if pname in described:
                props[pname]["description"] = described[pname]
            if param.default is inspect.Parameter.empty:
                required.append(pname)
        summary = re.split(r"\n\s*\n", doc, maxsplit=1)[0].strip()
        schema = {"type": "object", "properties": props, "required": required}
        return cls(function.__name__, summary, schema, function, owner, tuple(context))

    def definition(self) -> dict[str, Any]:
        return {"type": "function", "name": self.name, "description": self.description,
                "parameters": self.parameters}


@dataclass
class ToolOutcome:
    output: str                 # the function_call_output sent to the model (a JSON string)
    error: str = ""             # empty on success
    respond: bool = True        # ask the AI to answer after this output
    timed_out: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class ToolRegistry:
    """Tools by name, built from the plugins' ``register_tools`` hooks and ``[tools]`` settings."""

    def __init__(self, tools: list[Tool], timeout: float, threads: int = TOOL_THREADS) -> None:
        self.tools = {tool.name: tool for tool in tools}
        self.timeout = timeout
        self.threads = threads
        self.abandoned = 0  # sync tools that timed out (their result is discarded when they return)
        self._slots: asyncio.Semaphore | None = None

    @staticmethod
    def is_tool_key(key: str) -> bool:
        """``tools.<name>.timeout``: every tool's own time limit, declared by no plugin."""
        parts = key.split(".")
        return len(parts) == 3 and parts[0] == "tools" and parts[2] == "timeout"

    @classmethod
    def from_plugins(cls, plugins: Any, settings: Any) -> "ToolRegistry":
        cfg = settings.tools
        tools = []
        for owner, function in plugins.tools():
            tool = Tool.from_function(function, owner)
            if tool.name in {t.name for t in tools}:
                raise ValueError(f"tool {tool.name!r} is registered by two plugins ({owner} and another)")
            table = cfg.get(tool.name) if isinstance(cfg.get(tool.name), dict) else {}
            tool.enabled = tool.name not in cfg.disabled
            try:
                tool.timeout = number(float, 0, 600)(table.get("timeout", 0) or 0) or None
            except (TypeError, ValueError):
                raise SettingsError(f"setting tools.{tool.name}.timeout = {table.get('timeout')!r} is not valid: "
                                    "expected seconds 0..600 (0 = [tools] timeout)") from None
            tools.append(tool)
        return cls(tools, float(cfg.timeout))

    def definitions(self, names: list[str] | None = None) -> list[dict[str, Any]]:
        """Definitions for the AI session: every enabled tool, or only ``names`` (a per-call choice)."""
        return [t.definition() for t in self.tools.values() if t.enabled and (names is None or t.name in names)]

    async def run(self, name: str, arguments: str, context: ToolContext,
                  allowed: list[str] | None = None) -> ToolOutcome:
        """Run one tool call of the model."""
        tool = self.tools.get(name)
        if tool is None or not tool.enabled or (allowed is not None and name not in allowed):
            return _error(f"there is no tool named {name!r}")
        try:
            args = json.loads(arguments or "{}")
        except ValueError as exc:
            return _error(f"the arguments of {name} are not valid JSON ({exc})")
        problems = validate(args, tool.parameters)
        if problems:
            return _error(f"bad arguments for {name}: " + "; ".join(problems))
        for pname in tool.context_params:
            args[pname] = context
        timeout = tool.timeout or self.timeout
        threaded = not inspect.iscoroutinefunction(tool.function)
        try:
            async with asyncio.timeout(timeout):
                result = await self._in_thread(tool.function, args) if threaded else tool.function(**args)
                if inspect.isawaitable(result):
                    result = await result
        except TimeoutError:
            context.expired = True
            if threaded:
                self.abandoned += 1
                log.warning("call %s: tool %s did not return within %g s; the model is told so and its result "
                            "will be discarded (its worker thread stays busy until it returns)",
                            context.call_id, name, timeout)
            return _error(f"{name} did not finish within {timeout:g} s", timed_out=True)
        except Exception as exc:
            log.warning("call %s: tool %s raised %r; the model gets an error output and the call goes on",
                        context.call_id, name, exc)
            return _error(f"{name} failed: {exc}")
        respond = True
        if isinstance(result, ToolResult):
            result, respond = result.value, result.respond
        try:
            output = result if isinstance(result, str) else json.dumps(result)
        except TypeError:
            output = json.dumps(str(result))
        return ToolOutcome(output, respond=respond)

    async def _in_thread(self, function: Callable[..., Any], args: dict[str, Any]) -> Any:
        """``function(**args)`` in a daemon worker thread (a hung tool never blocks aribot's exit),
        at most ``threads`` at once. Cancelled (the timeout), the caller gets nothing and the
        thread's result is dropped when it comes."""
        loop = asyncio.get_running_loop()
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.threads)
        slots = self._slots
        await slots.acquire()
        future: asyncio.Future[Any] = loop.create_future()

        def settle(result: Any, error: BaseException | None) -> None:
            slots.release()
            if future.done():       # timed out (cancelled): the result is discarded
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        def work() -> None:
            result, error = None, None
            try:
                result = function(**args)
            except Exception as exc:  # handed to the loop: the tool's failure becomes an error output
                error = exc
            except BaseException as exc:  # SystemExit and the like end this thread, not aribot
                error = RuntimeError(f"raised {exc!r}")
            try:
                loop.call_soon_threadsafe(settle, result, error)
            except RuntimeError:  # the loop is closed (aribot stopped): nobody waits any more
                pass

        try:
            threading.Thread(target=work, name=f"aribot-tool-{getattr(function, '__name__', 'tool')}",
                             daemon=True).start()
        except BaseException:
            slots.release()
            raise
        return await future


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """True in the thread that runs ``loop``."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _error(message: str, *, timed_out: bool = False) -> ToolOutcome:
    return ToolOutcome(json.dumps({"error": message}), message, timed_out=timed_out)


async def run_tool_call(call: Any, name: str, tool_call_id: str, arguments: str, response_ref: str) -> ToolOutcome:
    """A tool the AI asked for on ``call``, with core's policy whatever the backend: events before
    and after, the AI's filler when it runs longer than ``[tools] filler_after``, an operator's
    answer for ``[tools] manual`` tools, the tool's time limit, and the call's allowed tools."""
    call.emit(ev.ToolCalled(call_id=call.id, tool=name, tool_call_id=tool_call_id, arguments=arguments))
    started = time.perf_counter()
    cfg, backend = call.settings.tools, call.backend
    filler_tag = backend.next_tag()
    hold = HoldSound.for_call(call)

    def too_long() -> None:   # the tool runs past filler_after: the AI says so, and/or the hold sound plays
        said = None
        if cfg.filler and (hold is None or cfg.hold_sound_with_filler == "after"):
            said = call.spawn(backend.request_response(cfg.filler, tag=filler_tag))
        if hold is not None:
            hold.start(after=said)

    filler = None
    if cfg.filler_after and (cfg.filler or hold is not None):
        filler = asyncio.get_running_loop().call_later(cfg.filler_after, too_long)
    try:
        if name in cfg.manual:
            outcome = await _manual_answer(call, name, tool_call_id, arguments)
        else:
            outcome = await call.app.tools.run(name, arguments, ToolContext(call, name, response_ref),
                                               allowed=call.choices.tools)
    finally:
        if filler is not None:
            filler.cancel()
        if hold is not None:
            hold.stop()                   # the moment the tool returns: what is queued of it is dropped
        backend.drop_request(filler_tag)  # a filler not said yet is no longer wanted
    call.emit(ev.ToolFinished(call_id=call.id, tool=name, tool_call_id=tool_call_id, result=outcome.output,
                              error=outcome.error, duration_ms=(time.perf_counter() - started) * 1000))
    return outcome


async def _manual_answer(call: Any, name: str, tool_call_id: str, arguments: str) -> ToolOutcome:
    """A tool answered by a person: wait for the operator's answer on the dashboard."""
    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    call.manual_answers[tool_call_id] = future
    call.emit(ev.ToolAwaitingAnswer(call_id=call.id, tool=name, tool_call_id=tool_call_id, arguments=arguments))
    timeout = call.settings.tools.manual_timeout
    try:
        answer = await asyncio.wait_for(future, timeout)
    except asyncio.TimeoutError:
        message = f"no operator answered {name} within {timeout:g} s"
        return ToolOutcome(json.dumps({"error": message}), message, timed_out=True)
    finally:
        call.manual_answers.pop(tool_call_id, None)
    try:
        json.loads(answer)
        return ToolOutcome(answer)
    except ValueError:
        return ToolOutcome(json.dumps({"answer": answer}))
