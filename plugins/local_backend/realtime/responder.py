"""One streaming response (reference §8.2 steps 10-22): items, paced deltas, cancellation, done."""

from __future__ import annotations

import asyncio
import base64
import copy
import math
import re
import time
from typing import TYPE_CHECKING, Any

from .ids import call_id as new_call_id
from .ids import item_id as new_item_id
from .ids import random_token
from .items import with_object
from .records import ItemState, ResponseRecord
from .script import AudioOutput, FunctionCallOutput
from .session import bytes_per_ms

if TYPE_CHECKING:
    from .protocol import RealtimeProtocol


class ResponseRun:
    """Streams one scripted turn; ``request_cancel`` stops it and closes what is open."""

    def __init__(self, proto: RealtimeProtocol, record: ResponseRecord, params: dict[str, Any]) -> None:
        self.proto = proto
        self.record = record
        self.script = proto.script
        session_output = proto.session["audio"]["output"]
        override = params.get("audio", {}).get("output", {})
        self.format = copy.deepcopy(override.get("format") or session_output["format"])
        if self.format["type"] == "audio/pcm":
            self.format = {"type": "audio/pcm", "rate": 24000}
        self.voice = override.get("voice", session_output["voice"])
        self.modalities = list(params.get("output_modalities") or proto.session["output_modalities"])
        self.max_output_tokens = params.get("max_output_tokens", proto.session["max_output_tokens"])
        self.metadata = params.get("metadata")
        self.bytes_per_ms = bytes_per_ms(self.format)
        self.clock = proto.conn.server.clock
        self.cancel_event = asyncio.Event()
        self.finished = asyncio.Event()
        self.output: list[dict[str, Any]] = []  # public items for response.done
        self.task: asyncio.Task[None] | None = None
        record.output_modalities = self.modalities

    @property
    def cancelled(self) -> bool:
        """True once a cancel was requested."""
        return self.cancel_event.is_set()

    @property
    def active(self) -> bool:
        """True until ``response.done`` has been sent."""
        return not self.finished.is_set()

    def request_cancel(self, reason: str) -> None:
        """Stop sending deltas at once; the task then closes open items and sends ``response.done``."""
        if not self.cancelled:
            self.record.cancel_reason = reason
            self.record.cancel_requested_at = time.time()
            self.cancel_event.set()

    async def wait_finished(self) -> None:
        """Return once the response task ended (``response.done`` sent or socket gone)."""
        await self.finished.wait()

    def _response(self, status: str, status_details: dict[str, Any] | None, usage: dict[str, Any] | None
                  ) -> dict[str, Any]:
        return {
            "object": "realtime.response",
            "id": self.record.id,
            "status": status,
            "status_details": status_details,
            "output": copy.deepcopy(self.output),
            "conversation_id": self.proto.conversation_id,
            "output_modalities": self.modalities,
            "max_output_tokens": self.max_output_tokens,
            "audio": {"output": {"format": self.format, "voice": self.voice}},
            "usage": usage,
            "metadata": self.metadata,
        }

    async def start(self) -> None:
        """Send ``response.created`` now, then stream the rest in a task."""
        await self.proto.emit({"type": "response.created", "response": self._response("in_progress", None, None)})
        self.task = asyncio.create_task(self._run(), name=f"fake-realtime {self.record.id}")

    async def _run(self) -> None:
        try:
            if self.script.response_latency_s > 0:
                await self._pause(self.script.response_latency_s)
            failure = self.record.turn.failure
            for index, output in enumerate(self.record.turn.outputs):
                if self.cancelled or failure is not None:
                    break
                if isinstance(output, AudioOutput):
                    await self._message_item(index, output)
                else:
                    await self._function_call_item(index, output)
            await self._finish()
        except Exception as exc:
            self.proto.conn.server.record_fake_bug(f"crash in response {self.record.id}", exc)
        finally:
            if self.record.done_at is None:
                self.record.status = "disconnected"  # the socket went away before response.done
            self.finished.set()
            self.proto.on_response_finished(self)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up at once on cancellation."""
        await self.clock.wait(seconds, self.cancel_event)

    async def _emit_guarded(self, event: dict[str, Any]) -> bool:
        """Send unless the response was cancelled (checked while holding the send lock)."""
        return await self.proto.emit(event, guard=lambda: not self.cancelled)

    def _item(self, item: dict[str, Any]) -> dict[str, Any]:
        return with_object(item, self.script.include_object)

    async def _add_item(self, index: int, item: dict[str, Any], state: ItemState) -> str | None:
        previous = self.proto.conversation.add(state)
        self.record.item_ids.append(state.id)
        ids = {"response_id": self.record.id, "output_index": index}
        await self.proto.emit({"type": "response.output_item.added", **ids, "item": copy.deepcopy(item)})
        await self.proto.emit({"type": "conversation.item.added", "previous_item_id": previous,
                               "item": copy.deepcopy(item)})
        return previous

    async def _close_item(self, index: int, item: dict[str, Any], state: ItemState, previous: str | None) -> None:
        state.item = copy.deepcopy(item)
        self.output.append(copy.deepcopy(item))
        await self.proto.emit({"type": "response.output_item.done", "response_id": self.record.id,
                               "output_index": index, "item": copy.deepcopy(item)})
        await self.proto.emit({"type": "conversation.item.done", "previous_item_id": previous,
                               "item": copy.deepcopy(item)})

    def _chunks(self, audio: bytes) -> list[bytes]:
        low, high = self.script.delta_bytes
        chunks, offset = [], 0
        while offset < len(audio):
            size = self.proto.rng.randint(low, high)
            chunks.append(audio[offset:offset + size])
            offset += size
        return chunks

    async def _message_item(self, index: int, output: AudioOutput) -> None:
        audio_mode = self.modalities == ["audio"]
        item = self._item({"id": new_item_id(), "type": "message", "status": "in_progress",
                           "role": "assistant", "content": []})
        state = ItemState(copy.deepcopy(item), bytes_per_ms=self.bytes_per_ms, model_audio=audio_mode)
        previous = await self._add_item(index, item, state)
        ids = {"response_id": self.record.id, "item_id": item["id"], "output_index": index, "content_index": 0}
        part_kind, text_key = ("audio", "transcript") if audio_mode else ("text", "text")
        await self.proto.emit({"type": "response.content_part.added", **ids, "part": {"type": part_kind, text_key: ""}})
        tokens = re.findall(r"\s*\S+", output.transcript)
        sent_text = await (self._stream_audio(ids, output, tokens, state) if audio_mode
                           else self._stream_text(ids, tokens))
        if audio_mode:
            await self.proto.emit({"type": "response.output_audio.done", **ids})
            await self.proto.emit({"type": "response.output_audio_transcript.done", **ids, "transcript": sent_text})
        else:
            await self.proto.emit({"type": "response.output_text.done", **ids, "text": sent_text})
        part = {"type": part_kind, text_key: sent_text}
        await self.proto.emit({"type": "response.content_part.done", **ids, "part": part})
        content = {"type": "output_audio" if audio_mode else "output_text", text_key: sent_text}
        item = {**item, "status": "incomplete" if self.cancelled else "completed", "content": [content]}
        await self._close_item(index, item, state, previous)

    def _text_delta(self, kind: str, ids: dict[str, Any], text: str) -> dict[str, Any]:
        event = {"type": kind, **ids, "delta": text}
        if self.script.obfuscation:
            event["obfuscation"] = random_token(self.proto.rng)
        return event

    async def _stream_text(self, ids: dict[str, Any], tokens: list[str]) -> str:
        sent = ""
        for token in tokens:
            if not await self._emit_guarded(self._text_delta("response.output_text.delta", ids, token)):
                break
            sent += token
            await self._pause(0)
        return sent

    async def _stream_audio(self, ids: dict[str, Any], output: AudioOutput, tokens: list[str],
                            state: ItemState) -> str:
        """Interleave transcript and audio deltas, paced at ``speed`` x real time; returns the sent transcript."""
        chunks = self._chunks(output.audio)
        self.record.audio_by_item.setdefault(state.id, bytearray())
        sent_text, sent_tokens, next_chunk = "", 0, 0
        started, sent_ms = self.clock.time(), 0.0
        for chunk in chunks:
            due = math.ceil(len(tokens) * (next_chunk + 1) / len(chunks))
            while sent_tokens < due:
                delta = self._text_delta("response.output_audio_transcript.delta", ids, tokens[sent_tokens])
                if not await self._emit_guarded(delta):
                    break
                sent_text += tokens[sent_tokens]
                sent_tokens += 1
            if not await self._send_audio(ids, chunk, state, guarded=True):
                break
            next_chunk += 1
            sent_ms += len(chunk) / self.bytes_per_ms
            await self._pause(started + self.script.seconds_for(sent_ms) - self.clock.time())
            if self.cancelled:
                break
        if self.cancelled:
            for chunk in chunks[next_chunk:next_chunk + self.script.late_deltas_after_interrupt]:
                await self._send_audio(ids, chunk, state, guarded=False)
                self.record.late_deltas_sent += 1
            return sent_text
        for token in tokens[sent_tokens:]:  # only when there was no audio at all
            await self.proto.emit(self._text_delta("response.output_audio_transcript.delta", ids, token))
            sent_text += token
        return sent_text

    async def _send_audio(self, ids: dict[str, Any], chunk: bytes, state: ItemState, *, guarded: bool) -> bool:
        """Send one audio delta; its bytes are counted as sent atomically with the send."""
        def count_sent() -> None:
            self.record.audio_by_item[state.id].extend(chunk)
            state.audio_bytes += len(chunk)
            self.proto.voice_locked = True

        event = {"type": "response.output_audio.delta", **ids, "delta": base64.b64encode(chunk).decode()}
        guard = (lambda: not self.cancelled) if guarded else None
        return await self.proto.emit(event, guard=guard, before_send=count_sent)

    async def _function_call_item(self, index: int, output: FunctionCallOutput) -> None:
        call_id = output.call_id or new_call_id()
        self.record.call_ids.append(call_id)
        item = self._item({"id": new_item_id(), "type": "function_call", "status": "in_progress",
                           "name": output.name, "call_id": call_id, "arguments": ""})
        state = ItemState(copy.deepcopy(item))
        previous = await self._add_item(index, item, state)
        ids = {"response_id": self.record.id, "item_id": item["id"], "output_index": index, "call_id": call_id}
        pieces = self._split_arguments(output.arguments)
        sent = ""
        for piece in pieces:
            if not await self._emit_guarded({"type": "response.function_call_arguments.delta", **ids, "delta": piece}):
                break
            sent += piece
            await self._pause(0)
        if self.cancelled:
            item = {**item, "status": "incomplete", "arguments": sent}
        else:
            await self.proto.emit({"type": "response.function_call_arguments.done", **ids, "name": output.name,
                                   "arguments": output.arguments})
            item = {**item, "status": "completed", "arguments": output.arguments}
        await self._close_item(index, item, state, previous)

    def _split_arguments(self, arguments: str) -> list[str]:
        """Cut the arguments JSON into 1..4 irregular pieces."""
        if len(arguments) < 2:
            return [arguments] if arguments else []
        cuts = sorted(self.proto.rng.sample(range(1, len(arguments)), min(3, len(arguments) - 1)))
        bounds = [0, *cuts, len(arguments)]
        return [arguments[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]

    def _usage(self) -> dict[str, Any]:
        audio_tokens = int(len(self.record.audio) / self.bytes_per_ms / 1000 * 20)
        text_tokens = sum(len(str(item.get("arguments", ""))) // 4 for item in self.output)
        text_tokens += sum(len(c.get("transcript") or c.get("text") or "") // 4
                           for item in self.output for c in item.get("content", []))
        input_tokens = 120 + 20 * len(self.proto.conversation.items)
        return {
            "total_tokens": input_tokens + audio_tokens + text_tokens,
            "input_tokens": input_tokens,
            "output_tokens": audio_tokens + text_tokens,
            "input_token_details": {"text_tokens": 100, "audio_tokens": input_tokens - 100, "image_tokens": 0,
                                    "cached_tokens": 0,
                                    "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0}},
            "output_token_details": {"text_tokens": text_tokens, "audio_tokens": audio_tokens},
        }

    async def _finish(self) -> None:
        failure = self.record.turn.failure
        if self.script.response_done_delay_s > 0 and not self.cancelled:
            await self._pause(self.script.response_done_delay_s)
        details: dict[str, Any] | None
        if self.cancelled:
            status, details = "cancelled", {"type": "cancelled", "reason": self.record.cancel_reason}
        elif failure is not None:
            status = "failed"
            details = {"type": "failed", "error": {"type": failure.error_type, "code": failure.code,
                                                   "message": failure.message}}
        else:
            status, details = "completed", None
        await self.proto.emit({"type": "rate_limits.updated", "rate_limits": [
            {"name": "tokens", "limit": 40000, "remaining": 38490, "reset_seconds": 2.265}]})
        self.record.status = status
        if await self.proto.emit({"type": "response.done", "response": self._response(status, details, self._usage())}):
            self.record.done_at = time.time()
