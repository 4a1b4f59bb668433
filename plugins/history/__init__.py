"""Call history: ended calls with transcript, tool calls, timings and end reason, in SQLite."""

from aribot.plugins.history.store import HistoryError, HistoryStore

__all__ = ["HistoryError", "HistoryStore"]
