"""What a plugin registers to add a page to the dashboard (hook ``register_pages``). Plain data:
the core never imports NiceGUI; the dashboard plugin (ui_nicegui) draws the pages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

PATH = re.compile(r"^/(?:[a-z0-9_-]+|\{[a-z_][a-z0-9_]*\})(?:/(?:[a-z0-9_-]+|\{[a-z_][a-z0-9_]*\}))*$|^/$")


@dataclass(frozen=True)
class Page:
    """A dashboard page: ``build(board, **params)`` draws it with NiceGUI when a browser opens
    ``path`` (``{name}`` parts of the path arrive as keyword arguments); it may be ``async``.
    ``board`` gives ``app`` (the running App), ``live`` (the live calls as the bus shows them),
    ``interval`` (seconds between redraws, from ``[ui] refresh_hz``) and ``every_change(draw,
    version)`` (redraw a ``ui.refreshable`` when ``version()`` changes). ``title`` is the menu
    entry (``menu=False``: reachable by link only); entries are sorted by ``order``."""

    path: str
    title: str
    build: Callable[..., Any]
    order: int = 100
    menu: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not PATH.match(self.path):
            raise ValueError(f"page path {self.path!r} must look like /name or /name/{{param}} (lower case, "
                             f"digits, - and _)")
        if not callable(self.build):
            raise ValueError(f"page {self.path}: build must be callable")
        if self.menu and not str(self.title).strip():
            raise ValueError(f"page {self.path}: a menu entry needs a title")
