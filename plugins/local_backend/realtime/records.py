"""What a ``FakeConnection`` records for assertions: responses, truncations, conversation items."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .script import Turn


@dataclass
class ResponseRecord:
    """One response the fake produced (or is producing)."""

    id: str
    kind: str  # Turn.kind: "audio", "function_call", "audio_then_function_call", "failed"
    trigger: str  # "client" (response.create), "vad" (create_response), "idle_timeout"
    turn: Turn
    created_at: float
    item_ids: list[str] = field(default_factory=list)
    audio_by_item: dict[str, bytearray] = field(default_factory=dict)  # bytes actually sent
    call_ids: list[str] = field(default_factory=list)
    status: str = "in_progress"  # then completed / cancelled / failed, or "disconnected" (no response.done)
    cancel_reason: str | None = None  # "turn_detected" / "client_cancelled"
    cancel_requested_at: float | None = None
    done_at: float | None = None
    late_deltas_sent: int = 0
    output_modalities: list[str] = field(default_factory=lambda: ["audio"])

    @property
    def audio(self) -> bytes:
        """All audio bytes actually sent for this response, in order."""
        return b"".join(bytes(chunk) for chunk in self.audio_by_item.values())

    @property
    def done(self) -> bool:
        """``response.done`` has been sent."""
        return self.done_at is not None


@dataclass
class TruncationRecord:
    """One ``conversation.item.truncate`` the client sent, accepted or not."""

    item_id: str
    content_index: int
    audio_end_ms: int
    t: float
    accepted: bool
    audio_sent_ms: float | None  # ms of audio sent for the item (None: unknown item)
    error_code: str | None = None

    def __getitem__(self, key: str) -> Any:
        """Dict-style access too: ``record["accepted"]``."""
        return getattr(self, key)


@dataclass
class ItemState:
    """Server-side state of a conversation item (``item`` is its public, audio-free form)."""

    item: dict[str, Any]
    audio_bytes: int = 0  # assistant audio sent for it
    audio_limit_ms: float | None = None  # after a truncation: the remaining length
    bytes_per_ms: int = 8
    model_audio: bool = False  # an assistant audio message produced by a response
    truncated: bool = False

    @property
    def id(self) -> str:
        """The item id."""
        return str(self.item["id"])

    @property
    def audio_ms(self) -> float:
        """Milliseconds of assistant audio the item holds (sent, minus truncation)."""
        sent = self.audio_bytes / self.bytes_per_ms
        return sent if self.audio_limit_ms is None else min(sent, self.audio_limit_ms)


class Conversation:
    """The default conversation: ordered items with lookup by id and by call id."""

    def __init__(self) -> None:
        self.items: list[ItemState] = []

    def get(self, item_id: str) -> ItemState | None:
        """The item with this id, if any."""
        return next((state for state in self.items if state.id == item_id), None)

    def last_id(self) -> str | None:
        """Id of the last item (None when empty)."""
        return self.items[-1].id if self.items else None

    def add(self, state: ItemState, previous_item_id: str | None = None, *, at_end: bool = True) -> str | None:
        """Insert ``state`` (at the end, or after ``previous_item_id``; "root" = first). Returns its predecessor."""
        if at_end:
            previous = self.last_id()
            self.items.append(state)
            return previous
        if previous_item_id == "root":
            self.items.insert(0, state)
            return None
        index = next(i for i, s in enumerate(self.items) if s.id == previous_item_id)
        self.items.insert(index + 1, state)
        return previous_item_id

    def remove(self, item_id: str) -> None:
        """Delete an item."""
        self.items = [state for state in self.items if state.id != item_id]

    def has_function_call(self, call_id: str) -> bool:
        """True if a function_call item with this call_id exists."""
        return any(s.item.get("type") == "function_call" and s.item.get("call_id") == call_id for s in self.items)
