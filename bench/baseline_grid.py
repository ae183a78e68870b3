"""The compute grid as it was before the virtualised one: a keyed DataTable holding every row.

A verbatim copy of screens/widgets/computes.py before the change (the only edit: this
docstring), kept here so that bench/bench_tui.py can measure the console with the old grid
beside the new one in one run. Only the benchmark imports it; the product never does.

(The original docstring:) Rows are keyed by compute name; a refresh updates only the cells
that changed (inside the App's batch_update), and rebuilds only when the set or order of
shown rows changes.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Input

from issu_tui.journal import ComputeRow
from screens.format import STATE_STYLES, gap

COLUMNS = (
    ("mark", " "), ("name", "Name"), ("state", "State"), ("version", "Version"),
    ("cluster", "Cluster"), ("agent", "Agent"), ("gap", "Gap"), ("batch", "Batch"),
    ("address", "Address"), ("last", "Last action"),
)
COLUMN_KEYS = tuple(key for key, _ in COLUMNS)
FILTER_FIELDS = ("name", "state", "version", "cluster", "agent", "address")
MARK = "●"

Cells = tuple[str, ...]


def cells_of(row: ComputeRow, marked: bool) -> Cells:
    return (MARK if marked else " ", row.name, row.state, row.version or "-",
            row.cluster or "-", row.agent_state or "-", gap(row.gap_ms),
            "-" if row.batch is None else str(row.batch), row.address, row.last_action or "-")


def render_cell(column: str, value: str, state: str) -> str | Text:
    if column == "state":
        return Text(value, style=STATE_STYLES.get(state, ""))
    if column == "mark":
        return Text(value, style="bold cyan")
    return value


def parse_filter(text: str) -> list[tuple[str | None, str]]:
    """`state:failed web` -> [("state", "failed"), (None, "web")]: fields AND-ed together."""
    terms: list[tuple[str | None, str]] = []
    for word in text.split():
        key, sep, value = word.partition(":")
        if sep and key.lower() in FILTER_FIELDS:
            terms.append((key.lower(), value.lower()))
        else:
            terms.append((None, word.lower()))
    return terms


def matches(row: ComputeRow, terms: list[tuple[str | None, str]]) -> bool:
    for key, value in terms:
        if key is None:
            if value not in row.name.lower() and value not in row.address.lower():
                return False
        else:
            field = {"agent": row.agent_state}.get(key, getattr(row, key, ""))
            if value not in str(field).lower():
                return False
    return True


class ComputeGrid(DataTable[str | Text]):
    """The computes, one keyed row each; marks live in a set shared with the App."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False, id="grid.down"),
        Binding("k", "cursor_up", "Up", show=False, id="grid.up"),
        Binding("space", "toggle_mark", "Mark", id="grid.mark"),
        Binding("shift+down", "mark_down", "Mark down", show=False, id="grid.mark_down"),
        Binding("shift+up", "mark_up", "Mark up", show=False, id="grid.mark_up"),
        Binding("a", "mark_shown", "Mark shown", show=False, id="grid.mark_shown"),
        Binding("U", "clear_marks", "Clear marks", show=False, id="grid.clear_marks"),
        Binding("enter", "detail", "Detail", show=False, id="grid.detail"),
    ]

    class DetailRequested(Message):
        def __init__(self, name: str) -> None:
            self.name = name
            super().__init__()

    class MarksChanged(Message):
        pass

    def __init__(self, marks: set[str], *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.marks = marks
        self.filter_terms: list[tuple[str | None, str]] = []
        self._rows: dict[str, ComputeRow] = {}
        self._previous: dict[str, ComputeRow] = {}
        self._order: list[str] = []
        self._cells: dict[str, Cells] = {}

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    # ------------------------------------------------------------------ data

    def set_rows(self, rows: Iterable[ComputeRow]) -> None:
        self._previous = self._rows
        self._rows = {r.name: r for r in rows}
        self._sync()

    def set_filter(self, text: str) -> None:
        self.filter_terms = parse_filter(text)
        self._previous = {}
        self._sync()

    def shown(self) -> list[str]:
        return list(self._order)

    def _sync(self) -> None:
        shown = [n for n in sorted(self._rows) if matches(self._rows[n], self.filter_terms)]
        with self.app.batch_update():
            if shown != self._order:
                self._rebuild(shown)
                return
            previous = self._previous
            for name in shown:
                row = self._rows[name]
                if previous.get(name) == row and name in self._cells:
                    continue  # unchanged since the last refresh (marks are redrawn apart)
                new = cells_of(row, name in self.marks)
                old = self._cells.get(name)
                if new == old:
                    continue
                for i, key in enumerate(COLUMN_KEYS):
                    if old is None or new[i] != old[i]:
                        self.update_cell(name, key, render_cell(key, new[i], row.state))
                self._cells[name] = new

    def _rebuild(self, shown: list[str]) -> None:
        current = self.current_name()
        self.clear()
        self._cells = {}
        for name in shown:
            row = self._rows[name]
            cells = cells_of(row, name in self.marks)
            self.add_row(*(render_cell(k, v, row.state) for k, v in zip(COLUMN_KEYS, cells,
                                                                        strict=True)),
                         key=name)
            self._cells[name] = cells
        self._order = shown
        if current in self._cells:
            self.move_cursor(row=shown.index(current), animate=False)

    def _refresh_mark(self, name: str) -> None:
        if name in self._cells:
            cells = self._cells[name]
            mark = MARK if name in self.marks else " "
            if cells[0] != mark:
                self.update_cell(name, "mark", render_cell("mark", mark, ""))
                self._cells[name] = (mark, *cells[1:])

    # ------------------------------------------------------------------ selection

    def current_name(self) -> str | None:
        if not self._order or not 0 <= self.cursor_row < len(self._order):
            return None
        return self._order[self.cursor_row]

    def chosen(self) -> list[str]:
        """What an action applies to: the marked computes, or the one under the cursor."""
        if self.marks:
            return sorted(self.marks)
        current = self.current_name()
        return [current] if current else []

    def _mark(self, name: str | None, on: bool | None = None) -> None:
        if name is None:
            return
        if on is None:
            on = name not in self.marks
        if on:
            self.marks.add(name)
        else:
            self.marks.discard(name)
        self._refresh_mark(name)

    def action_toggle_mark(self) -> None:
        self._mark(self.current_name())
        self.action_cursor_down()
        self.post_message(self.MarksChanged())

    def action_mark_down(self) -> None:
        self._mark(self.current_name(), True)
        self.action_cursor_down()
        self._mark(self.current_name(), True)
        self.post_message(self.MarksChanged())

    def action_mark_up(self) -> None:
        self._mark(self.current_name(), True)
        self.action_cursor_up()
        self._mark(self.current_name(), True)
        self.post_message(self.MarksChanged())

    def action_mark_shown(self) -> None:
        with self.app.batch_update():
            for name in self._order:
                self._mark(name, True)
        self.post_message(self.MarksChanged())

    def action_clear_marks(self) -> None:
        gone = list(self.marks)
        self.marks.clear()
        with self.app.batch_update():
            for name in gone:
                self._refresh_mark(name)
        self.post_message(self.MarksChanged())

    def refresh_marks(self) -> None:
        """Marks changed elsewhere (another screen's grid): redraw the mark column."""
        with self.app.batch_update():
            for name in self._order:
                self._refresh_mark(name)

    def action_detail(self) -> None:
        name = self.current_name()
        if name:
            self.post_message(self.DetailRequested(name))


class ComputePanel(Vertical):
    """The grid with its filter line and a status line (shown/marked counts)."""

    BINDINGS = [
        Binding("slash", "filter", "Filter", id="grid.filter"),
    ]

    def __init__(self, marks: set[str], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._marks = marks

    def compose(self) -> ComposeResult:
        yield ComputeGrid(self._marks)
        yield Input(placeholder="filter: name  state:failed  version:5.0  cluster:new",
                    id="compute-filter", classes="filter")

    @property
    def grid(self) -> ComputeGrid:
        return self.query_one(ComputeGrid)

    def set_rows(self, rows: Iterable[ComputeRow]) -> None:
        self.grid.set_rows(rows)
        self.update_status()

    def update_status(self) -> None:
        grid = self.grid
        terms = " ".join(f"{k}:{v}" if k else v for k, v in grid.filter_terms)
        text = f"{len(grid.shown())}/{len(grid._rows)} shown · {len(grid.marks)} marked"
        if terms:
            text += f" · filter: {terms}"
        if self.border_subtitle != text:
            self.border_subtitle = text

    def action_filter(self) -> None:
        box = self.query_one("#compute-filter", Input)
        box.add_class("open")
        box.focus()

    @on(Input.Submitted, "#compute-filter")
    def _apply_filter(self, event: Input.Submitted) -> None:
        event.stop()
        self.grid.set_filter(event.value)
        event.input.remove_class("open")
        self.grid.focus()
        self.update_status()

    def on_key(self, event: events.Key) -> None:
        box = self.query_one("#compute-filter", Input)
        if event.key == "escape" and box.has_focus:
            event.stop()
            box.value = ""
            box.remove_class("open")
            self.grid.set_filter("")
            self.grid.focus()
            self.update_status()

    @on(ComputeGrid.MarksChanged)
    def _marks_changed(self) -> None:
        self.update_status()
