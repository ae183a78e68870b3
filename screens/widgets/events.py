"""The event log: every transition and command, newest at the bottom, filterable."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Input

from issu_tui.journal import Event
from screens.format import LEVEL_STYLES, clock

SHOW_MAX = 1000


def parse_event_filter(text: str) -> tuple[str | None, str | None, list[str]]:
    """`kind:compute level:error web-3` -> kind, level, words."""
    kind = level = None
    words = []
    for word in text.split():
        key, sep, value = word.partition(":")
        if sep and key == "kind":
            kind = value
        elif sep and key == "level":
            level = value
        else:
            words.append(word.lower())
    return kind, level, words


def event_matches(event: Event, kind: str | None, level: str | None, words: list[str]) -> bool:
    if kind and event.kind != kind:
        return False
    if level and event.level != level:
        return False
    message = event.message.lower()
    return all(w in message for w in words)


class EventTable(DataTable[str | Text]):
    """Time, level, kind, message; `compact` (the dashboard below WIDE_COLUMNS, where the pane
    is about 44 wide): time and message only, the message in its level's colour, so that the
    message keeps some 30 characters instead of 13."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False, id="events.down"),
        Binding("k", "cursor_up", "Up", show=False, id="events.up"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row")
        self._shown_ids: list[int] = []
        self.compact = False

    def on_mount(self) -> None:
        if not self.columns:  # set_compact may have come first
            self._add_columns()

    def _add_columns(self) -> None:
        self.add_column("Time", key="at")
        if not self.compact:
            self.add_column("Level", key="level")
            self.add_column("Kind", key="kind")
        self.add_column("Message", key="message")

    def set_compact(self, compact: bool) -> bool:
        """Switch the columns; True when they changed (the caller shows the events again)."""
        if compact == self.compact:
            return False
        self.compact = compact
        self.clear(columns=True)
        self._shown_ids = []
        self._add_columns()
        return True

    def _cells(self, event: Event) -> tuple[str | Text, ...]:
        style = LEVEL_STYLES.get(event.level, "")
        if self.compact:
            return clock(event.at), Text(event.message, style=style)
        return clock(event.at), Text(event.level, style=style), event.kind, event.message

    def append(self, new: Iterable[Event]) -> None:
        follow = self.cursor_row >= self.row_count - 1
        with self.app.batch_update():
            for event in new:
                if self._shown_ids and event.id <= self._shown_ids[-1]:
                    continue
                self.add_row(*self._cells(event), key=str(event.id))
                self._shown_ids.append(event.id)
            while len(self._shown_ids) > SHOW_MAX:
                self.remove_row(str(self._shown_ids.pop(0)))
        if follow and self.row_count:
            self.move_cursor(row=self.row_count - 1, animate=False)
            # once laid out (a screen just shown has no size yet), settle at the bottom
            self.call_after_refresh(self._to_end)

    def _to_end(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1, animate=False)
        self.scroll_end(animate=False, immediate=True)

    def replace(self, all_events: Sequence[Event]) -> None:
        self.clear()
        self._shown_ids = []
        self.append(all_events[-SHOW_MAX:])


class EventPanel(Vertical):
    BINDINGS = [Binding("slash", "filter", "Filter", show=False, id="events.filter")]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._filter: tuple[str | None, str | None, list[str]] = (None, None, [])
        self._source: list[Event] = []

    def compose(self) -> ComposeResult:
        yield EventTable()
        yield Input(placeholder="filter: words  kind:compute  level:error",
                    id="event-filter", classes="filter")

    @property
    def table(self) -> EventTable:
        return self.query_one(EventTable)

    def set_events(self, all_events: list[Event], new: Sequence[Event] | None = None) -> None:
        """Show `all_events` (filtered); `new` is the tail added since the last call."""
        self._source = all_events
        kind, level, words = self._filter
        if new is None:
            self.table.replace([e for e in all_events if event_matches(e, kind, level, words)])
        elif new:
            self.table.append(e for e in new if event_matches(e, kind, level, words))
        self._status()

    def set_compact(self, compact: bool) -> None:
        if self.table.set_compact(compact):
            self.set_events(self._source)

    def _status(self) -> None:
        kind, level, words = self._filter
        parts = [f"{self.table.row_count} events"]
        if kind:
            parts.append(f"kind:{kind}")
        if level:
            parts.append(f"level:{level}")
        parts += words
        text = " · ".join(parts)
        if self.border_subtitle != text:
            self.border_subtitle = text

    def action_filter(self) -> None:
        box = self.query_one("#event-filter", Input)
        box.add_class("open")
        box.focus()

    @on(Input.Submitted, "#event-filter")
    def _apply(self, event: Input.Submitted) -> None:
        event.stop()
        self._filter = parse_event_filter(event.value)
        event.input.remove_class("open")
        self.table.focus()
        self.set_events(self._source)

    def on_key(self, event: events.Key) -> None:
        box = self.query_one("#event-filter", Input)
        if event.key == "escape" and box.has_focus:
            event.stop()
            box.value = ""
            box.remove_class("open")
            self._filter = (None, None, [])
            self.table.focus()
            self.set_events(self._source)
