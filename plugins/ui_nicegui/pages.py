"""The dashboard's pages (NiceGUI sub pages of one root): live calls, a call, session settings,
plugins, setup checklist and call history. Everything they show comes from the bus (LiveState)
or from the running App; every redraw is driven by one timer per page, only when data changed."""

from __future__ import annotations

import datetime as dt
import inspect
import logging
import time
from typing import Any

from nicegui import PageArguments, ui

from aribot.core.controls import SessionUpdateRefused, transfer_targets
from aribot.core.pages import Page
from aribot.plugins.recording.route import recording_url
from aribot.plugins.ui_nicegui.listen import listen_controls
from aribot.plugins.ui_nicegui.live import CallView, LiveState, TimelineEntry, TurnView
from aribot.plugins.ui_nicegui.timeline import describe

log = logging.getLogger("aribot.ui")

VOICES = ["marin", "cedar", "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse"]
TURN_DETECTION = ["server_vad", "semantic_vad", "none"]
HISTORY_PAGE = 25  # calls per history page
TABLE_ROWS = 12    # live-call rows the table may send per redraw period (more calls: fewer redraws)


class Dashboard:
    """Binds the pages to one running App and its LiveState."""

    def __init__(self, app: Any, state: LiveState) -> None:
        self.app = app
        self.state = state
        self.interval = 1.0 / max(0.5, float(app.settings.ui.refresh_hz))
        self._refused: set[tuple[str, str]] = set()   # (plugin, path) refusals already logged

    @property
    def live(self) -> LiveState:
        """The live calls as the bus shows them (what a page plugin reads)."""
        return self.state

    # --- frame ---------------------------------------------------------------------------------
    def pages(self) -> list[tuple[str, Page]]:
        """(plugin, Page) of every enabled plugin's pages, by menu order; the first plugin to
        register a path keeps it (the built-in pages register first). A plugin that registers
        something else, or fails, is logged once and its pages are left out."""
        found: dict[str, tuple[str, Page]] = {}
        for owner, register_pages in self.app.plugins.implementations("register_pages"):
            offered: list[Any] = []
            try:
                register_pages(register=offered.append)
            except Exception as exc:
                self._refuse(owner, "*", f"register_pages raised {exc!r}")
                continue
            for page in offered:
                if not isinstance(page, Page):
                    self._refuse(owner, repr(page)[:60], "not an aribot.Page")
                elif page.path in found:
                    self._refuse(owner, page.path, f"the path belongs to {found[page.path][0]}")
                else:
                    found[page.path] = (owner, page)
        return sorted(found.values(), key=lambda item: (item[1].order, item[1].path))

    def _refuse(self, owner: str, path: str, why: str) -> None:
        if (owner, path) not in self._refused:
            self._refused.add((owner, path))
            log.warning("dashboard: plugin %s: page %s left out: %s", owner, path, why)

    def root(self) -> None:
        pages = self.pages()
        with ui.header().classes("items-center gap-6 bg-slate-800"):
            ui.label("aribot").classes("text-xl font-bold")
            for _owner, page in pages:
                if page.menu:
                    ui.link(page.title, page.path).classes("text-white").mark(f"menu-{page.path.strip('/') or 'home'}")
            status = ui.label().classes("ml-auto").mark("ari-status")
            ui.timer(1.0, lambda: status.set_text("ARI connected" if self.app.ari_connected else "ARI disconnected"))
        ui.sub_pages({page.path: self._builder(owner, page) for owner, page in pages}).classes("w-full")

    def _builder(self, owner: str, page: Page) -> Any:
        """The sub page's builder: ``page.build(self, **path parameters)`` (never query parameters);
        a page that fails says so on the page and in one log line, and the rest of the dashboard
        goes on."""
        def failed(exc: BaseException) -> None:
            log.error("dashboard: page %s of plugin %s failed (%r); shown as an error on that page only",
                      page.path, owner, exc)
            ui.label(f"This page failed: {exc.__class__.__name__}. The log has the details.").mark("page-failed")

        async def build(args: PageArguments) -> None:
            try:
                result = page.build(self, **args.path_parameters)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                failed(exc)
        build.__annotations__ = {"args": PageArguments}  # a real class: NiceGUI matches it by identity
        return build

    def every_change(self, draw: Any, version: Any) -> None:
        """Redraw ``draw`` (a ``ui.refreshable``) whenever ``version()`` changes, at most refresh_hz."""
        seen = [version()]

        def tick() -> None:
            now = version()
            if now != seen[0]:
                seen[0] = now
                draw.refresh()
        ui.timer(self.interval, tick)

    # --- home ----------------------------------------------------------------------------------
    def home(self) -> None:
        from aribot.plugins.ui_nicegui.overview import overview_page

        overview_page(self)

    # --- live calls ----------------------------------------------------------------------------
    def live_calls(self) -> None:
        """One table whose rows are data: a redraw of 50 calls is one message, not 400 elements."""
        ui.label("Live calls").classes("text-2xl")
        columns = [{"name": name, "label": label, "field": name, "align": "left"} for name, label in (
            ("caller", "Caller"), ("extension", "To"), ("state", "State"), ("mode", "Mode"),
            ("duration", "Duration"), ("speaking", "Speaking"), ("tool", "Tool"), ("cost", "Cost"))]
        table = ui.table(columns=columns, rows=[], row_key="id").classes("w-full").mark("live-calls")
        table.add_slot("body-cell-caller", """<q-td :props="props">
            <a :href="'/call/' + props.row.id" class="text-primary">{{ props.value }}</a></q-td>""")
        empty = ui.label("No calls right now.")

        def rows() -> list[dict[str, Any]]:
            return [{"id": c.call_id, "caller": c.caller_number or c.caller_name or "unknown caller",
                     "extension": c.extension, "state": f"ended ({c.end_reason})" if c.end_reason else c.state,
                     "mode": c.mode, "duration": _duration(c.duration_s),
                     "speaking": {"caller": "caller", "assistant": "AI"}.get(c.speaking, ""),
                     "tool": c.tool_in_progress, "cost": _usd(c.cost_usd)} for c in self.state.live()]

        seen: list[Any] = [None, 0.0]   # the rows sent, when

        def tick() -> None:
            # each redraw sends the whole table: with many calls, redraw less often, so that at most
            # refresh_hz x TABLE_ROWS rows a second go out (50 calls at 4 Hz: about once a second; at
            # 4 Hz the table alone doubled the calls' pacing p99, docs/capacity.md)
            if time.monotonic() - seen[1] < self.interval * max(1.0, len(self.state.calls) / TABLE_ROWS):
                return
            now = rows()
            if now != seen[0]:
                seen[0], seen[1] = now, time.monotonic()
                table.update_rows(now)
                empty.set_visibility(not now)
        tick()
        ui.timer(self.interval, tick)

    # --- one call ------------------------------------------------------------------------------
    def call_view(self, call_id: str) -> None:
        view = self.state.calls.get(call_id)
        if view is None:
            ui.label("This call is not live (any more).")
            ui.link("Look it up in the history", f"/history/{call_id}")
            return
        live_call = self.app.calls.get(call_id)
        ui.label(f"Call from {view.caller_number or view.caller_name or 'unknown'} to {view.extension}").classes("text-2xl")
        with ui.row().classes("items-center gap-4"):
            ui.label("caller")
            meter_in = ui.linear_progress(value=0, show_value=False).props("color=green").classes("w-40").mark("level-in")
            ui.label("AI")
            meter_out = ui.linear_progress(value=0, show_value=False).props("color=blue").classes("w-40").mark("level-out")
            if live_call is not None:
                listen_controls(self, call_id)   # Listen / Stop beside the levels of what one would hear

        def levels() -> None:
            call = self.app.calls.get(call_id)
            heard, sent = call.levels() if call is not None else (0.0, 0.0)
            meter_in.set_value(round(heard, 2))
            meter_out.set_value(round(sent, 2))
        ui.timer(0.2, levels)

        summary = CallSummary(view, call_id)
        with ui.row().classes("w-full items-start no-wrap gap-8"):
            with ui.column().classes("w-2/3"):
                transcript = Transcript(view)
            with ui.column().classes("w-1/3"):
                ui.label("Timeline").classes("text-lg")
                timeline = Timeline(view)

        def update() -> None:
            summary.update()
            transcript.update()
            timeline.update()
        ui.timer(self.interval, update)
        if live_call is not None:
            self._call_actions(call_id, view)

    def _call_actions(self, call_id: str, view: CallView) -> None:
        with ui.card().classes("w-full"):
            ui.label("Act on this call").classes("text-lg")
            with ui.row().classes("items-center"):
                ui.button("Hang up", on_click=lambda: self._act(call_id, "hangup")).props("color=red")
                targets = {entry: (ext, ctx) for (ext, ctx), entry in transfer_targets(self.app.settings).items()}
                target = ui.select(list(targets), label="Transfer to").classes("w-40").mark("transfer-target")
                ui.button("Transfer", on_click=lambda: self._act(call_id, "transfer", targets.get(target.value))).mark(
                    "transfer")
            with ui.row().classes("items-center w-full"):
                note = ui.input("Instruction to the AI").classes("w-96").mark("instruction")
                ui.button("Send to AI", on_click=lambda: self._act(call_id, "instruct", note.value))

        @ui.refreshable
        def answers() -> None:
            for tool in [t for t in view.tools if t.awaiting_answer]:
                with ui.row().classes("items-center"):
                    ui.label(f"{tool.tool}({tool.arguments}) waits for your answer")
                    box = ui.input("Answer").mark(f"answer-{tool.tool_call_id}")
                    ui.button("Send answer", on_click=lambda b=box, t=tool: self._act(call_id, "answer", (t.tool_call_id, b.value)))
        answers()
        self.every_change(answers, lambda: sum(t.awaiting_answer for t in view.tools))

    async def _act(self, call_id: str, action: str, arg: Any = None) -> None:
        call = self.app.calls.get(call_id)
        if call is None:
            ui.notify("The call has ended.")
            return
        if action == "hangup":
            call.spawn(call.end("operator_hangup", action="hangup"))
            ui.notify("Hanging up")
        elif action == "transfer":
            if arg is None:
                ui.notify("Choose an allowed target first.")
                return
            extension, context = arg
            target = {"context": context or call.channel.context, "extension": extension, "priority": 1}
            call.spawn(call.end("operator_transfer", action="continue", target=target))
            ui.notify(f"Transferring to {extension}")
        elif action == "instruct" and arg:
            await call.instruct_ai(str(arg))
            ui.notify("Sent to the AI")
        elif action == "answer":
            tool_call_id, answer = arg
            ui.notify("Answer sent" if call.answer_tool(tool_call_id, str(answer or "")) else "Nothing waits for it")

    # --- session settings ------------------------------------------------------------------------
    def session_page(self) -> None:
        app, settings = self.app, self.app.settings
        backend = app.backends.get(str(settings.ai.backend))
        current = {"instructions": settings.ai.instructions,
                   "voice": backend.default_voice(settings) if backend else "",
                   "turn_detection": settings.get("openai.turn_detection") or "server_vad", **app.overrides}
        ui.label("Session settings").classes("text-2xl")
        instructions = ui.textarea("Instructions", value=current["instructions"]).classes("w-full").mark("instructions")
        voices = VOICES + [v for v in (current["voice"],) if v and v not in VOICES]  # a backend's own voice too
        voice = ui.select(voices, value=current["voice"] or None, label="Voice").classes("w-40").mark("voice")
        turns = ui.select(TURN_DETECTION, value=current["turn_detection"], label="Turn detection").mark("turn-detection")
        offered = current.get("tools")
        boxes = {name: ui.checkbox(name, value=tool.enabled and (offered is None or name in offered)).mark(f"tool-{name}")
                 for name, tool in app.tools.tools.items()}

        def chosen() -> dict[str, Any]:
            return {"instructions": instructions.value, "voice": voice.value, "turn_detection": turns.value,
                    "tools": [name for name, box in boxes.items() if box.value]}

        def save() -> None:
            app.overrides.clear()
            app.overrides.update(chosen())
            ui.notify("Saved for new calls")

        async def apply() -> None:
            call = app.calls.get(live.value or "")
            if call is None:
                ui.notify("Choose a live call")
                return
            try:
                await call.update_session(**chosen())
            except SessionUpdateRefused as exc:
                ui.notify(f"Not applied: {exc}", type="negative")
                return
            ui.notify("Applied to the call")

        with ui.row().classes("items-center"):
            ui.button("Save for new calls", on_click=save)
            live = ui.select({c.id: f"{c.caller_number or c.id} → {c.extension}" for c in app.calls.values()},
                             label="Live call").classes("w-60").mark("apply-call")
            ui.button("Apply to this call", on_click=apply)

    # --- plugins -------------------------------------------------------------------------------
    def plugins_page(self) -> None:
        ui.label("Plugins").classes("text-2xl")
        ui.label("Changes take effect for new calls.")

        async def toggle(name: str, enabled: bool) -> None:
            try:
                await self.app.set_plugin_enabled(name, enabled)
                ui.notify(f"{name} {'enabled' if enabled else 'disabled'} for new calls")
            except Exception as exc:  # a plugin error or a setting it would break: say it, change nothing
                ui.notify(f"{name}: {exc}", type="negative")
            plugins.refresh()

        @ui.refreshable
        def plugins() -> None:
            for info in self.app.plugins.infos():
                with ui.row().classes("items-center gap-4"):
                    ui.switch(value=info.enabled, on_change=lambda e, n=info.name: toggle(n, e.value)).mark(
                        f"plugin-{info.name}").props("disable" if info.name == "ui_nicegui" else "")
                    ui.label(info.name).classes("font-bold")
                    ui.label(info.source)
                    ui.label(info.version)
                    ui.label(", ".join(info.hooks)).classes("text-gray-500")
        plugins()

    # --- setup checklist -----------------------------------------------------------------------
    async def setup_page(self) -> None:
        from aribot.core.doctor import run_checks

        ui.label("Setup checklist").classes("text-2xl")
        results = ui.column()

        async def check() -> None:
            results.clear()
            with results:
                ui.label("checking …")
            checks = await run_checks(self.app.settings, app=self.app)
            results.clear()
            with results:
                for item in checks:
                    icon, colour = {"OK": ("check_circle", "text-green-600"), "WARN": ("warning", "text-amber-600"),
                                    "SKIP": ("remove_circle_outline", "text-gray-500")}.get(
                                        item.status, ("error", "text-red-600"))
                    with ui.row().classes("items-center"):
                        ui.icon(icon).classes(colour)
                        ui.label(f"{item.status} {item.name}").classes("font-bold").mark(f"check-{item.name}")
                        ui.label(item.detail + (f": {item.hint}" if item.hint else ""))
        ui.button("Run the checks again", on_click=check)
        await check()

    # --- history -------------------------------------------------------------------------------
    async def history_page(self) -> None:
        store = self.app.extensions.get("history")
        ui.label("Call history").classes("text-2xl")
        if store is None:
            ui.label("Call history is disabled (plugin history or [history] enabled).")
            return
        choices = await store.choices()
        with ui.row().classes("items-center"):
            caller = ui.input("Caller").mark("history-caller")
            since = ui.input("From (YYYY-MM-DD)").mark("history-since")
            until = ui.input("To (YYYY-MM-DD)").mark("history-until")
            text = ui.input("Words").mark("history-text")
            reason = ui.select({"": "any", **{r: r for r in choices["end_reason"]}}, value="",
                               label="End reason").classes("w-40").mark("history-reason")
            backend = ui.select({"": "any", **{b: b for b in choices["backend"]}}, value="",
                                label="Backend").classes("w-40").mark("history-backend")
            ui.button("Search", on_click=lambda: show(0))
        offset = [0]

        def show(first: int) -> None:
            offset[0] = max(0, first)
            found.refresh()

        @ui.refreshable
        async def found() -> None:
            rows = await store.search(caller=caller.value or None, since=_day(since.value),
                                      until=_day(until.value, end=True), text=text.value or None,
                                      end_reason=reason.value or None, backend=backend.value or None,
                                      limit=HISTORY_PAGE + 1, offset=offset[0])
            more, rows = len(rows) > HISTORY_PAGE, rows[:HISTORY_PAGE]
            if not rows:
                ui.label("No calls found.")
            for row in rows:
                with ui.row().classes("items-center gap-4").mark("history-row"):
                    ui.link(_when(row["started_at"]), f"/history/{row['id']}")
                    ui.label(row.get("caller_number") or row.get("caller_name") or "unknown caller")
                    ui.label(f"to {row.get('extension', '')}")
                    ui.label(_duration(row.get("duration_s") or 0))
                    ui.label(row.get("end_reason") or "live or unfinished")
                    ui.label(row.get("backend") or "")
                    if row.get("cost") is not None:
                        ui.label(_usd(row["cost"])).mark("history-cost")
            with ui.row().classes("items-center"):
                if offset[0]:
                    ui.button("Newer", on_click=lambda: show(offset[0] - HISTORY_PAGE)).mark("history-newer")
                if rows:
                    ui.label(f"calls {offset[0] + 1}–{offset[0] + len(rows)}, newest first")
                if more:
                    ui.button("Older", on_click=lambda: show(offset[0] + HISTORY_PAGE)).mark("history-older")
        await found()

    async def history_view(self, call_id: str) -> None:
        store = self.app.extensions.get("history")
        record = await store.get(call_id) if store is not None else None
        if record is None:
            ui.label("No record of this call.")
            return
        ui.label(f"Call from {record.get('caller_number') or 'unknown'} to {record.get('extension', '')}").classes("text-2xl")
        cost = f", cost {_usd(record['cost'])}" if record.get("cost") is not None else ""
        ui.label(f"{_when(record['started_at'])}, {_duration(record.get('duration_s') or 0)}, "
                 f"ended: {record.get('end_reason') or 'unknown'}{cost}")
        if record.get("recording"):   # plugins/recording: the call's stereo WAV (caller left, AI right)
            ui.audio(recording_url(call_id)).mark("recording")
        for turn in [t for t in record.get("turns", []) if (t.get("text") or "").strip()]:   # no empty bubble
            latency = turn.get("latency_ms")
            ui.chat_message(turn["text"], name="AI" if turn["role"] == "assistant" else "Caller",
                            stamp=f"answered in {latency:.0f} ms" if latency is not None else None,
                            sent=turn["role"] == "assistant")
        for tool in record.get("tools", []):
            ui.label(f"{tool['tool']}({tool['arguments']}) → {tool['error'] or tool['result']}"
                     f" in {tool['duration_ms'] or 0:.0f} ms")
        lines = [(entry["ts"], text) for entry in record.get("timeline", [])
                 if (text := describe(entry["type"], entry.get("data") or {})) is not None]
        if lines:
            ui.label("Timeline").classes("text-lg")
            start = record["started_at"]
            for ts, text in lines:
                ui.label(f"{_offset(ts - start)}  {text}").classes("font-mono text-sm").mark("timeline-entry")


class InPlace:
    """A part of the call page that follows its CallView in place: ``update()`` (on the page's
    timer) does nothing unless the view changed, then ``draw()`` adds what is new."""

    def __init__(self, view: CallView) -> None:
        self.view = view
        self.version = -1

    def update(self) -> None:
        if self.view.version != self.version:
            self.version = self.view.version
            self.draw()

    def draw(self) -> None:
        raise NotImplementedError

    @staticmethod
    def forget(shown: dict[int, Any], items: list[Any], element: int) -> None:
        """Delete the elements of items a long call's view trimmed off (``shown`` is by id(item);
        ``element`` is the index of the element to delete in each shown tuple)."""
        kept = {id(item) for item in items}
        for key in [key for key in shown if key not in kept]:
            shown.pop(key)[element].delete()


class Transcript(InPlace):
    """The call's words and tools, updated in place: new turns are added, a growing turn only
    changes its text (no redraw of the whole conversation for each word).

    A chat message has exactly one child: Quasar draws every child of a q-chat-message as a bubble
    of its own, so an extra (even empty) element would be an empty bubble. A turn is shown only
    once it has words; its response latency and "(interrupted)" are added to its bubble once known."""

    def __init__(self, view: CallView) -> None:
        super().__init__(view)
        self.turns = ui.column().classes("w-full")
        self.tools = ui.column().classes("w-full")
        # by id(turn): the turn, its message, the bubble's column, its words and notes
        self.shown_turns: dict[int, tuple[TurnView, ui.chat_message, ui.column, ui.label, dict[str, ui.label]]] = {}
        self.shown_tools: list[ui.label] = []
        self.update()

    def draw(self) -> None:
        self.forget(self.shown_turns, self.view.turns, 1)
        position = 0
        for turn in self.view.turns:
            shown = self.shown_turns.get(id(turn))
            if shown is not None and shown[0] is turn:
                position += 1
            elif not turn.text.strip():
                continue
            else:  # in the order of the conversation, though the caller's words often come after the AI's
                with self.turns, ui.chat_message(name="AI" if turn.role == "assistant" else "Caller",
                                                 sent=turn.role == "assistant").mark("turn") as message:
                    with ui.column().classes("gap-0") as bubble:
                        shown = self.shown_turns[id(turn)] = (turn, message, bubble, ui.label(), {})
                message.move(self.turns, target_index=position)
                position += 1
            _, _, bubble, text, notes = shown
            text.set_text(turn.text)
            for note, words in (("latency", f"answered in {turn.latency_ms:.0f} ms" if turn.latency_ms is not None
                                     else ""), ("interrupted", "(interrupted)" if turn.interrupted else "")):
                if note in notes:
                    notes[note].set_text(words)
                elif words:
                    with bubble:
                        notes[note] = ui.label(words).classes("text-xs italic").mark(f"turn-{note}")
        for index, tool in enumerate(self.view.tools):
            if index == len(self.shown_tools):
                with self.tools:
                    self.shown_tools.append(ui.label())
            outcome = "running…" if tool.duration_ms is None else (tool.error or tool.result)
            took = f" in {tool.duration_ms:.0f} ms" if tool.duration_ms is not None else ""
            self.shown_tools[index].set_text(f"tool {tool.tool}({tool.arguments}) → {outcome}{took}")


class Timeline(InPlace):
    """The call's timeline, newest last, updated in place: new entries are appended, entries a
    long call's view forgot are removed (no redraw of the whole list)."""

    def __init__(self, view: CallView) -> None:
        super().__init__(view)
        self.box = ui.column().classes("w-full gap-0").mark("timeline")
        self.shown: dict[int, tuple[TimelineEntry, ui.label]] = {}
        self.update()

    def draw(self) -> None:
        self.forget(self.shown, self.view.timeline, 1)
        for entry in self.view.timeline:
            if id(entry) not in self.shown:
                with self.box:
                    label = ui.label(f"{_offset(entry.ts - self.view.started_at)}  {entry.text}")
                self.shown[id(entry)] = (entry, label.classes("font-mono text-sm").mark("timeline-entry"))


class CallSummary:
    """State, mode, duration, end, latencies, keys and cost of a call, drawn once and then only
    re-texted when a value changed: rebuilding it every second (the duration ticks) made garbage
    whose collection delayed the pacer (docs/capacity.md, "With the dashboard open")."""

    def __init__(self, view: CallView, call_id: str) -> None:
        self.view = view
        with ui.row().classes("items-center gap-4"):
            self.state = ui.badge("")
            self.labels = {name: ui.label("").mark(marker) if marker else ui.label("")
                           for name, marker in (("mode", ""), ("duration", ""), ("ended", "end-reason"),
                                                ("latency", ""), ("keys", ""), ("cost", "call-cost"))}
            self.history = ui.link("Call history", f"/history/{call_id}")
        for element in (*self.labels.values(), self.history):
            element.set_visibility(False)   # shown once they have something to say
        self.update()

    def texts(self) -> dict[str, str]:
        view = self.view
        return {"mode": f"mode {view.mode}", "duration": _duration(view.duration_s),
                "ended": f"ended: {view.end_reason}" if view.end_reason else "",
                "latency": "AI answered in " + ", ".join(f"{ms:.0f} ms" for ms in view.latencies_ms[-5:])
                           if view.latencies_ms else "",
                "keys": f"keys: {view.dtmf}" if view.dtmf else "",
                "cost": f"cost so far {_usd(view.cost_usd)}" if view.cost_usd is not None else ""}

    def update(self) -> None:
        if self.state.text != self.view.state:
            self.state.set_text(self.view.state)
        for name, text in self.texts().items():
            label = self.labels[name]
            if label.text != text:
                label.set_text(text)
                label.set_visibility(bool(text))
        if self.history.visible != bool(self.view.ended_at):
            self.history.set_visibility(bool(self.view.ended_at))


def _usd(value: float | None) -> str:
    """A cost as a supervisor reads it: cents to 4 places below a dollar (a call costs cents)."""
    if value is None:
        return ""
    return f"${value:.4f}" if value < 1 else f"${value:.2f}"


def _offset(seconds: float) -> str:
    """Seconds since the call started, as m:ss.s."""
    minutes, secs = divmod(max(0.0, seconds), 60)
    return f"{int(minutes)}:{secs:04.1f}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


def _when(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def _day(text: str | None, end: bool = False) -> float | None:
    if not text:
        return None
    try:
        day = dt.datetime.strptime(text.strip(), "%Y-%m-%d")
    except ValueError:
        ui.notify(f"{text!r} is not a date like 2026-11-24")
        return None
    return (day + dt.timedelta(days=1) if end else day).timestamp()
