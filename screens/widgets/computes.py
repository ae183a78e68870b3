"""The compute grid: a virtualised table (Textual's Line API) over a filtered, sorted index.

The widget renders only the rows on screen, from a `ComputeView` (screens/widgets/
compute_index.py) kept beside it: marks, the filter, the order and the cursor all work on
that index, never on widget rows, so a refresh, a key or a repaint costs the same at 50 or
50,000 computes. It looks and answers like the DataTable it replaces (same keys, same
component styles), and keeps DataTable's read API (`get_cell`, `rows`, `cursor_row`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Input
from textual.widgets.data_table import RowKey

from issu_tui.journal import ComputeRow
from screens.format import STATE_STYLES
from screens.widgets.compute_index import (
    COLUMN_KEYS,
    COLUMNS,
    SORTS,
    ComputeStore,
    ComputeView,
    cells_of,
    natural_key,
)

__all__ = ["COLUMNS", "ComputeGrid", "ComputePanel", "render_cell"]


def render_cell(column: str, value: str, state: str) -> str | Text:
    if column == "state":
        return Text(value, style=STATE_STYLES.get(state, ""))
    if column == "mark":
        return Text(value, style="bold cyan")
    return value


_CELL_STYLES = {state: Style.parse(style) if style else Style() for state, style in
                STATE_STYLES.items()}
_MARK_STYLE = Style.parse("bold cyan")
_SORTED_STYLE = Style.parse("underline")
_PLAIN = Style()
LINE_CACHE = 256  # rendered rows kept: a few screens' worth
# Narrower than every column, the grid leaves columns out in this order (the detail screen,
# enter, shows them all; filters still match them), then scrolls sideways.
DROP_ORDER = ("last", "address", "batch", "gap", "cluster")


class _ShownRows(Mapping[RowKey, ComputeRow]):
    """The shown rows keyed like DataTable's `rows` (code written for the old grid reads it)."""

    def __init__(self, view: ComputeView) -> None:
        self._view = view

    def __getitem__(self, key: RowKey) -> ComputeRow:
        name = str(key.value)
        if name not in self._view:
            raise KeyError(name)
        return self._view.store.rows[name]

    def __iter__(self) -> Iterator[RowKey]:
        return (RowKey(name) for name in self._view.shown)

    def __len__(self) -> int:
        return len(self._view)


class ComputeGrid(ScrollView, can_focus=True):
    """The computes, one line each, the header fixed on top; marks live in a set shared with
    the App. Only the rows on screen are ever rendered."""

    ALLOW_SELECT = False
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "compute-grid--header", "compute-grid--cursor", "compute-grid--hover",
    }
    # DataTable's look, so the console reads as it always has.
    DEFAULT_CSS = """
    ComputeGrid {
        background: $surface;
        color: $foreground;
        height: auto;
        max-height: 100%;
        /* -filtering: focus is on the grid's own filter line; the grid keeps its focused
           look, so opening and closing the filter does not repaint every row */
        &:focus, &.-filtering {
            background-tint: $foreground 5%;
            & > .compute-grid--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .compute-grid--header {
                background-tint: $foreground 5%;
            }
        }
        & > .compute-grid--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        &:ansi > .compute-grid--header {
            background: ansi_bright_blue;
            color: ansi_default;
        }
        & > .compute-grid--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        & > .compute-grid--hover {
            background: $block-hover-background;
        }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        # DataTable's keys, as the grid had them
        Binding("up", "cursor_up", "Cursor up", show=False),
        Binding("down", "cursor_down", "Cursor down", show=False),
        Binding("right", "cursor_right", "Cursor right", show=False),
        Binding("left", "cursor_left", "Cursor left", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("ctrl+home", "scroll_top", "Top", show=False),
        Binding("ctrl+end", "scroll_bottom", "Bottom", show=False),
        Binding("home", "scroll_top", "First", show=False),
        Binding("end", "scroll_bottom", "Last", show=False),
        Binding("shift+home", "scroll_home", "Scroll left", show=False),
        Binding("shift+end", "scroll_end", "Scroll right", show=False),
        # the console's own
        Binding("j", "cursor_down", "Down", show=False, id="grid.down"),
        Binding("k", "cursor_up", "Up", show=False, id="grid.up"),
        Binding("space", "toggle_mark", "Mark", id="grid.mark"),
        Binding("shift+down", "mark_down", "Mark down", show=False, id="grid.mark_down"),
        Binding("shift+up", "mark_up", "Mark up", show=False, id="grid.mark_up"),
        Binding("a", "mark_shown", "Mark shown", show=False, id="grid.mark_shown"),
        Binding("U", "clear_marks", "Clear marks", show=False, id="grid.clear_marks"),
        Binding("enter", "detail", "Detail", show=False, id="grid.detail"),
        Binding("S", "cycle_sort", "Sort", show=False, id="grid.sort"),
    ]

    class DetailRequested(Message):
        def __init__(self, name: str) -> None:
            self.name = name
            super().__init__()

    def __init__(self, store: ComputeStore, marks: set[str], *,
                 on_marks: Callable[[], None] | None = None, id: str | None = None) -> None:
        """`on_marks` is called when a key changed the marks, in the same handler, so that
        what shows the count is painted in the same frame as the mark."""
        super().__init__(id=id)
        self.store = store
        self.marks = marks
        self._on_marks = on_marks
        self.view = ComputeView(store)
        self.cursor_row = 0
        self._hover_row: int | None = None
        self._widths: list[int] = []
        self._columns: tuple[int, ...] = tuple(range(len(COLUMNS)))  # the columns shown
        self._table_width = 0
        self._drawn_marks: dict[int, tuple[str, bool]] = {}  # screen line -> what it shows
        self._styles: tuple[Style, Style, Style, Style] | None = None
        self._lines: dict[tuple[object, ...], Strip] = {}  # rendered rows, by what they show
        self._widths_drawn = 0  # bumped when the column widths change

    def on_mount(self) -> None:
        self.sync()

    # ------------------------------------------------------------------ data

    @property
    def filter_terms(self) -> list[tuple[str | None, str]]:
        return self.view.terms

    def sync(self) -> None:
        """Bring the view up to the store (new rows from the journal) and redraw what moved."""
        current = self.current_name()
        moved, changed = self.view.sync()
        self._after_change(current, moved, changed)

    def set_filter(self, text: str) -> None:
        current = self.current_name()
        self.view.set_filter(text)
        self._after_change(current, True, set())

    def action_cycle_sort(self) -> None:
        """`S`: order by the next of name (natural), state, version, cluster, gap."""
        current = self.current_name()
        self.view.set_sort(SORTS[(SORTS.index(self.view.sort) + 1) % len(SORTS)])
        self._widths_drawn += 1  # the header marks the column the grid is sorted by
        self.refresh_line(0)
        self._after_change(current, True, set())
        if self._on_marks is not None:
            self._on_marks()  # the status line says the order

    def shown(self) -> list[str]:
        return list(self.view.shown)

    def _after_change(self, current: str | None, moved: bool, changed: set[str]) -> None:
        if self.store.widths != self._widths:
            self._widths = list(self.store.widths)
            self._fit_columns()
            moved = True
        if not moved:
            self._refresh_names(changed)
            return
        self.virtual_size = Size(self._table_width, len(self.view) + 1)
        index = self.view.index(current)
        if index is not None and index != self.cursor_row:
            # the row under the cursor keeps its place on screen while others come and go
            self.scroll_to(y=self.scroll_y + index - self.cursor_row, animate=False,
                           force=True)
        self.cursor_row = self._clamp(self.cursor_row if index is None else index)
        self._scroll_cursor_into_view()
        self.refresh()

    def _refresh_names(self, names: set[str]) -> None:
        top, height = int(self.scroll_y), self._page_height()
        if len(names) > height:
            visible = self.view.shown[top:top + height]
            lines = [top + i for i, name in enumerate(visible) if name in names]
        else:
            found = (self.view.index(name) for name in names)
            lines = [i for i in found if i is not None and top <= i < top + height]
        for index in lines:
            self._refresh_row(index)

    # ------------------------------------------------------------------ DataTable's reads

    @property
    def row_count(self) -> int:
        return len(self.view)

    @property
    def rows(self) -> Mapping[RowKey, ComputeRow]:
        return _ShownRows(self.view)

    def get_cell(self, name: str, column: str) -> str | Text:
        row = self.store.rows.get(name)
        if row is None:
            raise KeyError(f"no compute {name!r} in the grid")
        column_index = COLUMN_KEYS.index(column)
        return render_cell(column, cells_of(row, name in self.marks)[column_index], row.state)

    # ------------------------------------------------------------------ cursor

    def current_name(self) -> str | None:
        shown = self.view.shown
        return shown[self.cursor_row] if 0 <= self.cursor_row < len(shown) else None

    def _clamp(self, row: int) -> int:
        return max(0, min(row, len(self.view) - 1))

    def _page_height(self) -> int:
        """Rows of computes on screen (the header takes a line)."""
        return max(1, self.scrollable_content_region.height - 1)

    def move_cursor(self, *, row: int | None = None, animate: bool = False,
                    scroll: bool = True) -> None:
        if row is None:
            return
        new = self._clamp(row)
        if new != self.cursor_row:
            self._refresh_row(self.cursor_row)
            self.cursor_row = new
            self._refresh_row(new)
        if scroll:
            self._scroll_cursor_into_view(animate=animate)

    def _scroll_cursor_into_view(self, animate: bool = False) -> None:
        top, height = int(self.scroll_y), self._page_height()
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=animate, force=True)
        elif self.cursor_row >= top + height:
            self.scroll_to(y=self.cursor_row - height + 1, animate=animate, force=True)

    def _fit_columns(self) -> bool:
        """Leave out columns (DROP_ORDER) until the rest fit the width; True if that changed
        what is shown."""
        width = self.scrollable_content_region.width or self.size.width
        shown = list(range(len(COLUMNS)))
        widths = self._widths or [0] * len(COLUMNS)

        def total() -> int:
            return sum(widths[i] + 2 for i in shown)

        for key in DROP_ORDER:
            if not width or total() <= width:
                break
            shown.remove(COLUMN_KEYS.index(key))
        columns, table_width = tuple(shown), total()
        if (columns, table_width) == (self._columns, self._table_width):
            return False
        self._columns, self._table_width = columns, table_width
        self._widths_drawn += 1
        return True

    @property
    def columns_shown(self) -> tuple[str, ...]:
        return tuple(COLUMN_KEYS[i] for i in self._columns)

    def on_resize(self, event: events.Resize) -> None:
        self._drawn_marks.clear()  # every line is drawn again at the new size
        if self._fit_columns():
            self.virtual_size = Size(self._table_width, len(self.view) + 1)
            self.refresh()
        self._scroll_cursor_into_view()

    def _keyboard(self) -> None:
        """A key moved things: the mouse's hover highlight goes, as in DataTable."""
        if self._hover_row is not None:
            self._refresh_row(self._hover_row)
            self._hover_row = None

    def action_cursor_up(self) -> None:
        self._keyboard()
        self.move_cursor(row=self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        self._keyboard()
        self.move_cursor(row=self.cursor_row + 1)

    def action_cursor_left(self) -> None:
        self._keyboard()
        self.scroll_left()

    def action_cursor_right(self) -> None:
        self._keyboard()
        self.scroll_right()

    def action_page_down(self) -> None:
        self._keyboard()
        height = self._page_height()
        self.scroll_relative(y=height, animate=False, force=True)
        self.move_cursor(row=self.cursor_row + height, scroll=False)
        self._scroll_cursor_into_view()

    def action_page_up(self) -> None:
        self._keyboard()
        height = self._page_height()
        self.scroll_relative(y=-height, animate=False, force=True)
        self.move_cursor(row=self.cursor_row - height, scroll=False)
        self._scroll_cursor_into_view()

    def action_scroll_top(self) -> None:
        self._keyboard()
        self.move_cursor(row=0)

    def action_scroll_bottom(self) -> None:
        self._keyboard()
        self.move_cursor(row=len(self.view) - 1)

    def action_scroll_home(self) -> None:
        self._keyboard()
        self.scroll_x = 0

    def action_scroll_end(self) -> None:
        self._keyboard()
        self.scroll_x = self.max_scroll_x

    # ------------------------------------------------------------------ mouse

    def _row_at(self, event: events.MouseEvent) -> int | None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y < 1:
            return None
        row = int(self.scroll_y) + offset.y - 1
        return row if row < len(self.view) else None

    def on_mouse_move(self, event: events.MouseMove) -> None:
        row = self._row_at(event)
        if row != self._hover_row:
            if self._hover_row is not None:
                self._refresh_row(self._hover_row)
            self._hover_row = row
            if row is not None:
                self._refresh_row(row)

    def on_leave(self, event: events.Leave) -> None:
        self._keyboard()

    def on_click(self, event: events.Click) -> None:
        row = self._row_at(event)
        if row is not None:
            event.stop()
            self.move_cursor(row=row)

    # ------------------------------------------------------------------ marks

    def chosen(self) -> list[str]:
        """What an action applies to: the marked computes, or the one under the cursor."""
        if self.marks:
            return sorted(self.marks, key=natural_key)
        current = self.current_name()
        return [current] if current else []

    def _mark(self, on: bool | None = None) -> None:
        name = self.current_name()
        if name is None:
            return
        if on is None:
            on = name not in self.marks
        if on:
            self.marks.add(name)
        else:
            self.marks.discard(name)
        self._refresh_row(self.cursor_row)

    def action_toggle_mark(self) -> None:
        self._mark()
        self.action_cursor_down()
        self._marks_changed()

    def action_mark_down(self) -> None:
        self._mark(True)
        self.action_cursor_down()
        self._mark(True)
        self._marks_changed()

    def action_mark_up(self) -> None:
        self._mark(True)
        self.action_cursor_up()
        self._mark(True)
        self._marks_changed()

    def action_mark_shown(self) -> None:
        self.marks.update(self.view.shown)
        self.refresh()
        self._marks_changed()

    def action_clear_marks(self) -> None:
        self.marks.clear()
        self.refresh()
        self._marks_changed()

    def _marks_changed(self) -> None:
        if self._on_marks is not None:
            self._on_marks()

    def refresh_marks(self) -> None:
        """Marks changed elsewhere (another screen's grid, an action): redraw the rows on
        screen whose mark is not what they show."""
        marks = self.marks
        for line, (name, marked) in list(self._drawn_marks.items()):
            if (name in marks) != marked:
                self.refresh(Region(0, line, self.size.width, 1))

    def _on_blur(self, event: events.Blur) -> None:
        if self.has_class("-filtering"):
            # Focus went to the grid's own filter line and the grid keeps its focused look:
            # what Widget does on blur, without its repaint of every row on screen.
            event.prevent_default()
            self.has_focus = False
            if self.parent is not None:
                self.parent.post_message(events.DescendantBlur(self))

    def action_detail(self) -> None:
        name = self.current_name()
        if name:
            self.post_message(self.DetailRequested(name))

    # ------------------------------------------------------------------ rendering

    def _refresh_row(self, index: int) -> None:
        self.refresh_line(index + 1)  # the header is line 0

    def render_lines(self, crop: Region) -> list[Strip]:
        get = self.get_component_rich_style
        self._styles = (get("compute-grid--header"), get("compute-grid--cursor"),
                        get("compute-grid--hover"), self.rich_style)
        try:
            return super().render_lines(crop)
        finally:
            self._styles = None

    def render_line(self, y: int) -> Strip:
        styles = self._styles
        if styles is None:  # called on its own, not through render_lines
            get = self.get_component_rich_style
            styles = (get("compute-grid--header"), get("compute-grid--cursor"),
                      get("compute-grid--hover"), self.rich_style)
        header, cursor, hover, base = styles
        width = self.size.width
        scroll_x, scroll_y = self.scroll_offset
        if y == 0:
            segments = self._header_segments(header, width)
        else:
            index = scroll_y + y - 1
            if index >= len(self.view):
                self._drawn_marks.pop(y, None)
                return Strip.blank(width, base)
            name = self.view.shown[index]
            marked = name in self.marks
            self._drawn_marks[y] = (name, marked)
            row = self.store.rows[name]
            component = _PLAIN
            if index == self._hover_row:
                component += hover
            if index == self.cursor_row:
                component += cursor
            # A scroll moves every row on screen: those drawn already are taken from here.
            key = (index, row, marked, component, base, width, scroll_x, self._widths_drawn)
            strip = self._lines.get(key)
            if strip is None:
                if len(self._lines) > LINE_CACHE:
                    self._lines.clear()
                segments = self._row_segments(index, row, marked, base, component, width)
                strip = Strip(segments).crop(scroll_x, scroll_x + width)
                strip = self._lines[key] = strip.adjust_cell_length(width, base).simplify()
            return strip
        strip = Strip(segments).crop(scroll_x, scroll_x + width)
        return strip.adjust_cell_length(width, base).simplify()

    def _header_segments(self, header: Style, width: int) -> list[Segment]:
        segments = []
        for column in self._columns:
            key, label = COLUMNS[column]
            cell_width = self._widths[column]
            style = header + Style.from_meta({"row": -1, "column": column})
            if key == self.view.sort and key != "name":
                style += _SORTED_STYLE
            segments.append(Segment(" " + label.ljust(cell_width)[:cell_width] + " ", style))
        remaining = max(0, width - self._table_width)
        segments.append(Segment(" " * remaining, header + Style.from_meta(
            {"row": -1, "column": 0, "out_of_bounds": True})))
        return segments

    def _row_segments(self, index: int, row: ComputeRow, marked: bool, base: Style,
                      component: Style, width: int) -> list[Segment]:
        # As DataTable draws a cell: the row's style and the cursor's under the cell's own,
        # then the cursor's colours over it (its colours win, the cell keeps bold).
        post = Style.from_color(component.color, component.bgcolor)
        segments = []
        cells = cells_of(row, marked)
        for column in self._columns:
            text, cell_width = cells[column], self._widths[column]
            pre = base + Style.from_meta({"row": index, "column": column}) + component
            pad = pre + post
            if column == 0:
                own = _MARK_STYLE
            elif column == 2:
                own = _CELL_STYLES.get(row.state, _PLAIN)
            else:
                own = _PLAIN
            text = text[:cell_width]
            fill = " " * (cell_width - len(text) + 1)
            if own is _PLAIN:
                segments.append(Segment(" " + text + fill, pad))
            else:
                segments += [Segment(" ", pad), Segment(text, pre + own + post),
                             Segment(fill, pad)]
        remaining = max(0, width - self._table_width)
        segments.append(Segment(" " * remaining, base + component + Style.from_meta(
            {"row": index, "column": 0, "out_of_bounds": True})))
        return segments


class ComputePanel(Vertical):
    """The grid with its filter line and a status line (shown/marked counts)."""

    # The filter line opens over the grid's last rows instead of shrinking it: the grid keeps
    # its size, so opening and closing the filter repaints no row of it (console.tcss keeps
    # the line laid out while hidden, so no widget's geometry or painting order changes).
    DEFAULT_CSS = """
    ComputePanel { layers: default filter; }
    ComputePanel > .filter { layer: filter; dock: bottom; }
    """

    BINDINGS = [
        Binding("slash", "filter", "Find", id="grid.filter"),
    ]

    def __init__(self, store: ComputeStore, marks: set[str], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._store = store
        self._marks = marks

    def compose(self) -> ComposeResult:
        yield ComputeGrid(self._store, self._marks, on_marks=self.update_status)
        yield Input(placeholder="filter: name  state:failed  version:5.0  cluster:new  "
                    "addr:127.24.1.1",
                    id="compute-filter", classes="filter")

    @property
    def grid(self) -> ComputeGrid:
        return self.query_one(ComputeGrid)

    def refresh_rows(self) -> None:
        """The store took new rows (a refresh): show them, and the marks made elsewhere."""
        grid = self.grid
        grid.sync()
        grid.refresh_marks()
        self.update_status()

    def update_status(self) -> None:
        grid = self.grid
        terms = " ".join(f"{k}:{v}" if k else v for k, v in grid.filter_terms)
        text = f"{len(grid.view)}/{len(self._store)} shown · {len(grid.marks)} marked"
        if grid.view.sort != "name":
            text += f" · by {grid.view.sort}"
        if terms:
            text += f" · filter: {terms}"
        stale = self._store.stale_agents
        if stale:  # their analytics-api did not answer the last poll
            text += f" · {stale} agent{'s' if stale != 1 else ''} stale (?)"
        if self.border_subtitle == text:
            return
        width, height = self.outer_size
        if not height:
            self.border_subtitle = text
            return
        # What setting border_subtitle does, but repainting the bottom border line only: a
        # full refresh would compose the whole panel (the grid under it) again, for a count.
        self._border_subtitle = self.render_str(text).expand_tabs(4).split()[0]
        left, top = self.content_offset
        self.refresh(Region(-left, height - 1 - top, width, 1))

    def action_filter(self) -> None:
        box = self.query_one("#compute-filter", Input)
        self.grid.add_class("-filtering")
        box.add_class("open")
        box.focus()

    @on(Input.Submitted, "#compute-filter")
    def _apply_filter(self, event: Input.Submitted) -> None:
        event.stop()
        self.grid.set_filter(event.value)
        event.input.remove_class("open")
        self._refocus_grid()
        self.update_status()

    def _refocus_grid(self) -> None:
        grid = self.grid
        grid.focus()
        grid.remove_class("-filtering")

    def on_key(self, event: events.Key) -> None:
        box = self.query_one("#compute-filter", Input)
        if event.key == "escape" and box.has_focus:
            event.stop()
            box.value = ""
            box.remove_class("open")
            self.grid.set_filter("")
            self._refocus_grid()
            self.update_status()
