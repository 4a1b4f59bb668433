"""An aribot plugin that adds one dashboard page, ``/wallboard``: the live calls in big type for
a screen on the contact centre's wall (how many calls, the longest, who is talking in each).

It uses only the public API: ``aribot.Page`` through the ``register_pages`` hook. NiceGUI is
imported when the page is drawn, so the package loads (and does nothing) when aribot runs
without its dashboard."""

from __future__ import annotations

from typing import Any

import aribot

SPEAKER = {"caller": "caller speaking", "assistant": "AI speaking"}


def wallboard(board: Any) -> None:
    """Draws the page; ``board.live.live()`` lists the live calls (and calls that just ended)."""
    from nicegui import ui

    ui.label("Wallboard").classes("text-2xl")

    @ui.refreshable
    def tiles() -> None:
        calls = [call for call in board.live.live() if not call.ended_at]
        longest = max((call.duration_s for call in calls), default=0.0)
        with ui.row().classes("gap-8"):
            for label, value, marker in (("calls now", str(len(calls)), "wall-calls"),
                                         ("longest", f"{int(longest) // 60}:{int(longest) % 60:02d}", "wall-longest")):
                with ui.card().classes("items-center"):
                    ui.label(value).classes("text-6xl font-bold").mark(marker)
                    ui.label(label)
        with ui.row().classes("gap-4"):
            for call in calls:
                with ui.card().classes("w-64"):
                    ui.label(call.caller_number or "unknown caller").classes("text-xl")
                    ui.label(SPEAKER.get(call.speaking, call.state)).mark(f"wall-call-{call.call_id}")
    tiles()
    # redraw when a call comes, goes or changes speaker, and once a second for the durations
    board.every_change(tiles, lambda: (board.live.version, int(max((c.duration_s for c in board.live.live()),
                                                                    default=0))))


@aribot.hookimpl
def register_pages(register):
    register(aribot.Page("/wallboard", "Wallboard", wallboard, order=60))
