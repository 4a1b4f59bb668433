"""Conversation item events: ``conversation.item.create`` / ``.truncate`` / ``.delete`` / ``.retrieve``."""

from __future__ import annotations

import base64
import binascii
import copy
import time
from typing import TYPE_CHECKING, Any

from . import errors
from .errors import ProtocolError
from .ids import item_id as new_item_id
from .ids import new_id
from .records import Conversation, ItemState, TruncationRecord

if TYPE_CHECKING:
    from .connection import FakeConnection


def with_object(item: dict[str, Any], include_object: bool) -> dict[str, Any]:
    """Add ``object: "realtime.item"`` after ``id`` when the script asks for it (docs say yes, recordings no)."""
    if not include_object:
        return item
    return {"id": item["id"], "object": "realtime.item", **{k: v for k, v in item.items() if k != "id"}}


class ItemEvents:
    """Mixin of ``RealtimeProtocol``: the handlers that act on conversation items."""

    conn: FakeConnection
    conversation: Conversation

    async def emit(self, event: dict[str, Any], **kwargs: Any) -> bool:
        """Provided by ``RealtimeProtocol``."""
        raise NotImplementedError

    async def item_create(self, event: dict[str, Any]) -> None:
        """``conversation.item.create``: validate references, then ``item.added`` + ``item.done``."""
        item, previous_id = event["item"], event.get("previous_item_id")
        if previous_id is not None and previous_id != "root" and self.conversation.get(previous_id) is None:
            raise errors.item_not_found(previous_id, "previous_item_id")
        if "id" in item and self.conversation.get(item["id"]) is not None:
            raise errors.invalid_value("item.id", f"Item with id '{item['id']}' already exists.")
        if item["type"] == "function_call_output" and not self.conversation.has_function_call(item["call_id"]):
            raise errors.unknown_tool_call(item["call_id"])
        for index, part in enumerate(item.get("content", [])):
            if part.get("type") == "input_audio":
                try:
                    base64.b64decode(part["audio"], validate=True)
                except (binascii.Error, ValueError):
                    raise errors.invalid_value(f"item.content[{index}].audio", "Invalid base64 audio.") from None
        public = with_object(self._public_item(item), self.conn.script.include_object)
        state = ItemState(copy.deepcopy(public))
        previous = (self.conversation.add(state) if previous_id is None
                    else self.conversation.add(state, previous_id, at_end=False))
        await self.emit({"type": "conversation.item.added", "previous_item_id": previous, "item": public})
        await self.emit({"type": "conversation.item.done", "previous_item_id": previous, "item": public})

    @staticmethod
    def _public_item(item: dict[str, Any]) -> dict[str, Any]:
        """The server's echo of a created item: an id, a status, and no audio bytes."""
        item_id = item.get("id") or new_item_id()
        if item["type"] == "function_call_output":
            return {"id": item_id, "type": "function_call_output", "call_id": item["call_id"], "output": item["output"]}
        if item["type"] == "function_call":
            return {"id": item_id, "type": "function_call", "status": "completed", "name": item["name"],
                    "call_id": item.get("call_id") or new_id("call", 16), "arguments": item["arguments"]}
        content = []
        for part in item["content"]:
            if part["type"] == "input_audio":
                content.append({"type": "input_audio", "transcript": part.get("transcript")})
            elif part["type"] == "input_image":
                content.append({"type": "input_image", "image_url": part["image_url"]})
            else:
                content.append({"type": part["type"], "text": part["text"]})
        return {"id": item_id, "type": "message", "status": "completed", "role": item["role"], "content": content}

    async def truncate(self, event: dict[str, Any]) -> None:
        """``conversation.item.truncate``: only model audio, up to the ms actually sent; always recorded."""
        item_id, content_index, end_ms = event["item_id"], event["content_index"], event["audio_end_ms"]
        state = self.conversation.get(item_id)
        record = TruncationRecord(item_id, content_index, end_ms, time.time(), False,
                                  None if state is None else state.audio_ms)
        try:
            if state is None:
                raise errors.item_not_found(item_id)
            if not state.model_audio or state.audio_bytes == 0:
                raise errors.cannot_truncate()
            if content_index != 0:
                raise errors.invalid_value("content_index", f"Invalid 'content_index': {content_index}. The item "
                                                            "has a single content part; use 0.")
            if end_ms > state.audio_ms:
                raise errors.audio_shorter_than(int(state.audio_ms), end_ms)
        except ProtocolError as error:
            record.error_code = error.code
            self.conn.truncations.append(record)
            raise
        state.audio_limit_ms = float(end_ms)
        state.truncated = True
        record.accepted = True
        self.conn.truncations.append(record)
        await self.emit({"type": "conversation.item.truncated", "item_id": item_id, "content_index": 0,
                         "audio_end_ms": end_ms})

    async def item_delete(self, event: dict[str, Any]) -> None:
        """``conversation.item.delete`` -> ``conversation.item.deleted``."""
        if self.conversation.get(event["item_id"]) is None:
            raise errors.item_not_found(event["item_id"])
        self.conversation.remove(event["item_id"])
        await self.emit({"type": "conversation.item.deleted", "item_id": event["item_id"]})

    async def item_retrieve(self, event: dict[str, Any]) -> None:
        """``conversation.item.retrieve`` -> ``conversation.item.retrieved`` (audio-free item)."""
        state = self.conversation.get(event["item_id"])
        if state is None:
            raise errors.item_not_found(event["item_id"])
        await self.emit({"type": "conversation.item.retrieved", "item": copy.deepcopy(state.item)})
