"""``TurnPlayer``: what the model does in one turn — delegate (to the Responses backend or to the
client), then speak, paced on the server's clock, until done or interrupted.

Speech is ``session.output_audio.delta`` chunks of irregular size (``Script.delta_ms``, whole samples,
no ``event_id``, no timing: SDK ``OutputAudioDeltaEvent`` on a primary WebSocket), each followed by the
``session.output_transcript.delta`` words it covers, with ``start_ms``/``end_ms`` on the session timeline
from the turn's start. An interrupted turn sends nothing more: GPT-Live has no done or truncate event.
"""

from __future__ import annotations

import asyncio
import base64
import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aribot.plugins.local_backend.realtime.ids import new_id

from .audio import bytes_per_ms, sample_width
from .records import Interruption, TurnRecord

if TYPE_CHECKING:
    from .protocol import LiveProtocol


class TurnPlayer:
    """Plays one ``TurnRecord``'s turn after ``previous`` (if any) has finished."""

    def __init__(self, proto: LiveProtocol, record: TurnRecord, previous: TurnPlayer | None) -> None:
        self.proto = proto
        self.conn = proto.conn
        self.record = record
        self.previous = previous
        self.clock = proto.clock
        self.cancel_event = asyncio.Event()
        self.finished = asyncio.Event()
        self.in_speech = False
        self.task = asyncio.ensure_future(self._run())

    def interrupt(self, cause: str) -> None:
        """Stop speaking at once (no further delta) and record why."""
        if not self.in_speech or self.cancel_event.is_set():
            return
        self.cancel_event.set()
        self.record.interrupted = True
        audio = self.record.turn.audio
        self.conn.interruptions.append(Interruption(
            turn_index=self.record.index, cause=cause, at=self.clock.time(),
            timeline_ms=int(self.proto.timeline_ms), bytes_sent=len(self.record.audio_sent), bytes_total=len(audio)))

    async def _run(self) -> None:
        try:
            if self.previous is not None:
                await self.previous.finished.wait()
                self.previous = None  # no chain of finished players
            turn = self.record.turn
            if turn.calls:
                await self._delegate_to_backend()
            elif turn.client_delegation:
                await self._delegate_to_client()
            if turn.audio or turn.transcript:
                await self._speak(turn.audio, turn.transcript)
        except Exception as exc:  # a crash here is a bug in the fake
            self.conn.server.record_fake_bug(f"crash in turn {self.record.index}", exc)
        finally:
            self.in_speech = False
            self.record.done = True
            self.finished.set()

    # ----- delegation --------------------------------------------------------------------------
    async def _delegation_created(self, delegation: dict[str, Any]) -> None:
        self.record.delegation_id = delegation["id"]
        self.conn.delegations.append(delegation)
        await self.proto.emit({"type": "session.delegation.created", "offset_ms": int(self.proto.timeline_ms),
                               "delegation": delegation})

    async def _delegate_to_backend(self) -> None:
        backend = self.proto.backend
        if backend is None:
            self.conn.warnings.append(f"turn {self.record.index}: a scripted function call needs Responses "
                                      "delegation; the session uses client delegation, so it was skipped")
            return
        calls = [(call.call_id or new_id("call", 16), call.name, call.arguments) for call in self.record.turn.calls]
        declared = {tool.get("name") for tool in backend.config.get("tools") or []}
        for _, name, _ in calls:
            if name not in declared:
                self.conn.warnings.append(f"scripted function call {name!r} is not among the declared tools "
                                          f"{sorted(n for n in declared if n)}")
        delegation_id, response_id = new_id("item"), new_id("resp")
        self.record.call_ids = [call_id for call_id, _, _ in calls]
        backend.open(delegation_id, {call_id: name for call_id, name, _ in calls}, self.record.turn.answer)
        await self._delegation_created({"id": delegation_id, "type": "delegation", "target": "responses",
                                        "response_id": response_id})
        for event in backend.function_call_events(response_id, calls):
            await self.proto.emit({"type": "response.event", "delegation_id": delegation_id, "event": event})

    async def _delegate_to_client(self) -> None:
        if self.proto.backend is not None:
            self.conn.warnings.append(f"turn {self.record.index}: a client delegation needs client delegation; "
                                      "the session uses Responses delegation, so it was skipped")
            return
        delegation_id = new_id("item")
        self.proto.client_delegations.add(delegation_id)
        await self._delegation_created({"id": delegation_id, "type": "delegation", "target": "client"})

    # ----- speech ------------------------------------------------------------------------------
    def _chunks(self, audio: bytes, fmt: dict[str, Any]) -> list[bytes]:
        """Irregular chunks of whole samples, each ``Script.delta_ms`` long give or take."""
        low, high = self.proto.script.delta_ms
        samples_per_ms, width = bytes_per_ms(fmt) // sample_width(fmt), sample_width(fmt)
        chunks, offset = [], 0
        while offset < len(audio):
            size = self.proto.rng.randint(low * samples_per_ms, high * samples_per_ms) * width
            chunks.append(audio[offset:offset + size])
            offset += size
        return chunks

    async def _guarded(self, event: dict[str, Any], before_send: Callable[[], None] | None = None) -> bool:
        """Send unless the turn was interrupted (checked under the send lock)."""
        return await self.proto.emit(event, guard=lambda: not self.cancel_event.is_set(), before_send=before_send)

    async def _speak(self, audio: bytes, transcript: str) -> None:
        fmt = self.proto.audio_format
        per_ms = bytes_per_ms(fmt)
        chunks = self._chunks(audio, fmt)
        words = re.findall(r"\s*\S+", transcript)
        start_ms = self.record.start_ms = int(self.proto.timeline_ms)
        started, sent_ms, sent_words = self.clock.time(), 0.0, 0
        self.in_speech = True
        for index, chunk in enumerate(chunks):
            event = {"type": "session.output_audio.delta", "delta": base64.b64encode(chunk).decode()}
            if not await self._guarded(event, before_send=lambda chunk=chunk: self.record.audio_sent.extend(chunk)):
                return
            chunk_ms = len(chunk) / per_ms
            due = math.ceil(len(words) * (index + 1) / len(chunks))
            if due > sent_words:
                text = "".join(words[sent_words:due])
                if not await self._guarded({"type": "session.output_transcript.delta", "delta": text,
                                            "start_ms": start_ms + int(sent_ms),
                                            "end_ms": start_ms + int(sent_ms + chunk_ms)}):
                    return
                self.record.transcript_sent += text
                sent_words = due
            sent_ms += chunk_ms
            await self.clock.wait(started + self.proto.script.seconds_for(sent_ms) - self.clock.time(),
                                  self.cancel_event)
            if self.cancel_event.is_set():
                return
        if not chunks and words:  # a transcript without audio
            if await self._guarded({"type": "session.output_transcript.delta", "delta": transcript.strip(),
                                    "start_ms": start_ms, "end_ms": start_ms}):
                self.record.transcript_sent = transcript.strip()
