"""One face for both strict fake AI servers, so a scenario that matters to a caller is written once
and runs against each speech backend (``ai`` fixture, parametrised): OpenAI Realtime GA and GPT-Live.

A scenario scripts the AI with protocol-neutral steps (``Say``, ``CallTool``), gets aribot's
settings for the backend (``ai.settings(...)``) and reads what the fake heard through the helpers
below; what each protocol does differently stays here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aribot.plugins.local_backend.realtime import script as realtime
from tests.fake_gpt_live import FakeGptLiveServer
from tests.fake_gpt_live import script as live
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab.calls import tool_outputs as realtime_tool_outputs
from tests.lab.serve import API_KEY

BACKENDS = ("openai_realtime", "gpt_live")


@dataclass(frozen=True)
class Say:
    """The AI says ``text`` as ``audio``; ``after``: what it answers, "caller" (a caller's turn),
    "request" (aribot asked: a greeting, DTMF digits, a goodbye) or "tool" (a tool's output)."""

    audio: bytes
    text: str
    after: str = "caller"


@dataclass(frozen=True)
class CallTool:
    """The AI calls ``name`` with ``arguments`` (after "caller" or "request", as ``Say``)."""

    name: str
    arguments: dict[str, Any]
    after: str = "caller"


@dataclass(frozen=True)
class FallsSilent:
    """GPT-Live only: the model, told to stop (aribot's ``session.instructions.append`` after a
    barge-in it started), says nothing. Realtime cancels a response instead: no turn, no step."""

    after: str = "request"


Step = Say | CallTool | FallsSilent
LIVE_TRIGGER = {"caller": "caller", "request": "append", "tool": "backend"}


class AiFake:
    """A running strict fake and how a scenario reads it."""

    name: str
    server: Any

    @property
    def connections(self) -> list[Any]:
        return self.server.connections

    async def wait_for_connection(self, index: int = 0) -> Any:
        return await self.server.wait_for_connection(index)

    def settings(self, **sections: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """``make_aribot`` overrides: this backend, plus ``sections``."""
        raise NotImplementedError

    def script(self, steps: list[Step], *, transcripts: tuple[str, ...] = (), **options: Any) -> None:
        """Every connection plays ``steps``; ``transcripts``: what the caller's turns say; ``options``:
        Script fields both fakes have, plus ``realtime={...}`` / ``live={...}`` for one of them."""
        self.scripts(steps, transcripts=(transcripts,), **options)

    def scripts(self, *scripts: list[Step], transcripts: tuple[tuple[str, ...], ...] = (),
                **options: Any) -> None:
        """One script per connection (a new session after a rollover takes the next; the last one
        repeats); ``realtime={...}`` / ``live={...}`` apply to the first connection only."""
        own = options.pop(self.own_options, {})
        options.pop("live" if self.own_options == "realtime" else "realtime", None)
        made = [self.make_script(steps, transcripts[i] if i < len(transcripts) else (),
                                 {**options, **(own if i == 0 else {})}) for i, steps in enumerate(scripts)]
        listed = self.lists_before_scripting   # the fake asks for a connection's script once it lists it, or before
        self.server.script = made[0] if len(made) == 1 else (
            lambda conn: made[min(len(self.server.connections) - listed, len(made) - 1)])

    own_options = ""
    lists_before_scripting = 0

    def make_script(self, steps: list[Step], transcripts: tuple[str, ...], options: dict[str, Any]) -> Any:
        raise NotImplementedError

    def heard_caller(self, conn: Any) -> bytes:
        """The caller's audio the AI got on ``conn``, as aribot sent it (GPT-Live: silence filled in)."""
        return bytes(conn.input_audio)

    def check_caller_audio(self, conn: Any, caller_audio: bytes) -> None:
        """The AI got every byte of ``caller_audio`` in order, and nothing else but silence."""
        raise NotImplementedError

    def tool_outputs(self, conn: Any) -> list[dict[str, Any]]:
        raise NotImplementedError

    def context(self, conn: Any) -> list[str]:
        """Texts aribot added to the conversation as the caller's (e.g. DTMF digits)."""
        raise NotImplementedError

    def requests(self, conn: Any) -> list[str]:
        """Instructions of the answers aribot asked for."""
        raise NotImplementedError

    async def end_session(self, conn: Any) -> None:
        """The service ends the session mid-call, as at its session limit."""
        raise NotImplementedError

    def carried_items(self, conn: Any) -> list[dict[str, Any]]:
        """The conversation a new session started with, as message items."""
        raise NotImplementedError

    def assert_clean(self) -> None:
        """No protocol error by aribot, no bug of the fake."""
        raise NotImplementedError


class RealtimeFake(AiFake):
    name = "openai_realtime"

    def __init__(self) -> None:
        self.server = FakeRealtimeServer(api_key=API_KEY)

    def settings(self, **sections: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {**sections, "ai": {"backend": self.name, **sections.get("ai", {})},
                "openai": {"url": self.server.url, **sections.get("openai", {})}}

    @staticmethod
    def _turns(steps: list[Step]) -> list[realtime.Turn]:
        return [realtime.Turn.audio(s.audio, s.text) if isinstance(s, Say) else
                realtime.Turn.function_call(s.name, s.arguments) for s in steps if not isinstance(s, FallsSilent)]

    own_options = "realtime"

    def make_script(self, steps: list[Step], transcripts: tuple[str, ...], options: dict[str, Any]) -> Any:
        return realtime.Script(turns=self._turns(steps), caller_transcripts=list(transcripts), **options)

    def check_caller_audio(self, conn: Any, caller_audio: bytes) -> None:
        assert bytes(conn.input_audio) == caller_audio

    def tool_outputs(self, conn: Any) -> list[dict[str, Any]]:
        return realtime_tool_outputs(conn)

    def context(self, conn: Any) -> list[str]:
        return [e["item"]["content"][0]["text"] for e in conn.received_of_type("conversation.item.create")
                if e["item"]["type"] == "message" and e["item"]["role"] == "user"]

    def requests(self, conn: Any) -> list[str]:
        return [(e.get("response") or {}).get("instructions", "") for e in conn.received_of_type("response.create")]

    async def end_session(self, conn: Any) -> None:
        await conn.close(1001, "session limit reached")

    def carried_items(self, conn: Any) -> list[dict[str, Any]]:
        return [e["item"] for e in conn.received_of_type("conversation.item.create")
                if e["item"]["type"] == "message"]

    def assert_clean(self) -> None:
        for conn in self.connections:
            assert conn.errors_sent == [], conn.errors_sent
        self.server.assert_no_fake_bugs()


class GptLiveFake(AiFake):
    name = "gpt_live"

    def __init__(self) -> None:
        self.server = FakeGptLiveServer(api_key=API_KEY, script=live.Script(usage_interval_s=1.0))

    def settings(self, **sections: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {**sections, "ai": {"backend": self.name, **sections.get("ai", {})},
                "gpt_live": {"url": self.server.url, "api_key": API_KEY, **sections.get("gpt_live", {})},
                "openai": {"api_key": "", **sections.get("openai", {})}}

    @staticmethod
    def _turns(steps: list[Step]) -> list[live.Turn]:
        return [live.Turn.speech(s.audio, s.text, on=LIVE_TRIGGER[s.after]) if isinstance(s, Say) else
                live.Turn.silent(on=LIVE_TRIGGER[s.after]) if isinstance(s, FallsSilent) else
                live.Turn.function_call(s.name, s.arguments, on=LIVE_TRIGGER[s.after]) for s in steps]

    own_options = "live"
    lists_before_scripting = 1

    def make_script(self, steps: list[Step], transcripts: tuple[str, ...], options: dict[str, Any]) -> Any:
        return live.Script(turns=self._turns(steps), caller_transcripts=list(transcripts),
                           **{"usage_interval_s": 1.0, **options})

    def check_caller_audio(self, conn: Any, caller_audio: bytes) -> None:
        heard = bytes(conn.input_audio)
        assert caller_audio in heard, "the caller's audio did not reach GPT-Live whole and in order"
        rest = heard.replace(caller_audio, b"", 1)
        assert set(rest) <= {0xFF, 0x7F, 0xD5, 0x55}, "GPT-Live got audio the caller never sent"
        assert conn.input_gaps == [], f"input audio stopped for over 100 ms: {conn.input_gaps}"

    def tool_outputs(self, conn: Any) -> list[dict[str, Any]]:
        return [json.loads(record.output) for record in conn.tool_outputs]

    def context(self, conn: Any) -> list[str]:
        return [a.content for a in conn.appends if a.type == "session.thinking.append"]

    def requests(self, conn: Any) -> list[str]:
        return [a.content for a in conn.appends if a.type == "session.instructions.append"]

    async def end_session(self, conn: Any) -> None:
        await conn.close_with("expired")

    def carried_items(self, conn: Any) -> list[dict[str, Any]]:
        return list((conn.session or {}).get("input") or [])

    def assert_clean(self) -> None:
        self.server.assert_no_client_bugs()
        self.server.assert_no_fake_bugs()


FAKES: dict[str, Callable[[], AiFake]] = {"openai_realtime": RealtimeFake, "gpt_live": GptLiveFake}
