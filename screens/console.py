"""The dashboard and one screen per pane to zoom in; all render from the shared ConsoleState."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.reactive import Reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable, Static

from issu_tui.journal import Event
from issu_tui.names import natural_sorted
from screens.format import WIDE_COLUMNS, clock
from screens.state import ConsoleState
from screens.widgets.computes import ComputeGrid, ComputePanel
from screens.widgets.controllers import ControllersPane
from screens.widgets.events import EventPanel
from screens.widgets.footer import ConsoleFooter
from screens.widgets.panes import (
    AnalyticsDetail,
    AnalyticsSummary,
    PhasePane,
    SyncPane,
    SyncTables,
)

# name, title, key: the order of `[` / `]` and the number keys
SCREENS = (
    ("dashboard", "Dashboard"),
    ("phase", "Phase"),
    ("sync", "Sync"),
    ("analytics", "Analytics"),
    ("computes", "Computes"),
    ("events", "Events"),
)


# Tab titles when the full ones and the status (READ-ONLY, ...) do not fit the width
SHORT_TITLES = {"dashboard": "Dash", "analytics": "Analyt", "computes": "Comp"}


def tabs(current: str, status: str = "", width: int | None = None) -> Text:
    """The screens' tabs, then the status. Where both do not fit `width` (80 columns with
    READ-ONLY), the longer titles are shortened so that the status stays in sight."""
    text = _tabs(current, status, short=False)
    if width is not None and text.cell_len > width:
        text = _tabs(current, status, short=True)
        text.truncate(width, overflow="ellipsis")
    return text


def _tabs(current: str, status: str, *, short: bool) -> Text:
    # Padding spaces are runs of their own or end one, never start one (see screens/format.py).
    text = Text(" ")
    text.append("issu ", style="bold")
    for i, (name, title) in enumerate(SCREENS, start=1):
        pad, label = ("reverse", "bold reverse") if name == current else ("bold", "")
        text.append(" ", style=pad)
        text.append(f"{i} {SHORT_TITLES.get(name, title) if short else title}", style=label)
        text.append(" ", style=pad)
    if status:
        text.append(" ", style="bold")
        text.append(status, style="bold yellow")
    return text


class ConsoleScreen(Screen[None]):
    """A screen that renders the newest snapshot when shown and on every refresh."""

    NAME = ""

    # Textual repaints the whole screen when focus moves; the widgets whose :focus styles
    # change are restyled and repainted on their own, so opening the grid's filter line need
    # not redraw every pane (at 5,000 computes that repaint was most of the filter's cost).
    focused: Reactive[Widget | None] = Reactive(None, repaint=False)

    def __init__(self, state: ConsoleState) -> None:
        super().__init__(name=self.NAME, id=f"screen-{self.NAME}")
        self.state = state
        self._generation = -1

    def compose_tabs(self) -> ComposeResult:
        yield Static(tabs(self.NAME, self.state.status, self.app.size.width), classes="tabs")

    def show_status(self) -> None:
        self.query_one(".tabs", Static).update(tabs(self.NAME, self.state.status,
                                                    self.app.size.width))

    def on_screen_resume(self) -> None:
        self.show_status()
        self.render_all()
        self.fit_width()

    @on(events.Resize)
    def fit_width(self) -> None:
        """Below WIDE_COLUMNS the footer is compact and leaves out the palette's key (ctrl+p
        still opens it; `?` lists it), so every key that acts fits in 80 columns; the tabs
        shorten their titles when the status would not fit beside them."""
        self.show_status()
        narrow = self.app.size.width < WIDE_COLUMNS
        for footer in self.query(ConsoleFooter):
            footer.compact = narrow
            footer.show_command_palette = not narrow

    def render_all(self) -> None:
        """Redraw everything from the state (when the screen comes back into view)."""
        self._generation = -1
        self.show_snapshot(None)
        self.show_analytics()
        self.show_controllers()

    def show_snapshot(self, new_events: Sequence[Event] | None) -> None:
        """A new snapshot arrived; `new_events` is its tail of events (None: redraw all)."""
        if self.state.snapshot is None or self._generation == self.state.generation:
            return
        self._generation = self.state.generation
        self.update_snapshot(new_events)

    def update_snapshot(self, new_events: Sequence[Event] | None) -> None:
        pass

    def show_analytics(self) -> None:
        pass

    def show_controllers(self) -> None:
        pass

    def show_computes(self) -> None:
        """The compute store changed outside a snapshot (agents' states from analytics)."""
        for panel in self.query(ComputePanel):
            panel.refresh_rows()

    def chosen_computes(self) -> list[str]:
        grids = self.query(ComputeGrid)
        if grids:
            return grids.first().chosen()
        return natural_sorted(self.state.marks)


class DashboardScreen(ConsoleScreen):
    NAME = "dashboard"

    def compose(self) -> ComposeResult:
        yield from self.compose_tabs()
        with Horizontal(id="top"):
            yield PhasePane(id="phase-pane", classes="pane")
            yield SyncPane(id="sync-pane", classes="pane")
        yield ComputePanel(self.state.computes, self.state.marks, id="compute-pane")
        with Horizontal(id="bottom"):
            yield EventPanel(id="event-pane")
            yield AnalyticsSummary(id="analytics-pane", classes="pane")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        for selector, title in (("#phase-pane", "1 Phase"), ("#sync-pane", "2 Sync"),
                                ("#analytics-pane", "3 Analytics"),
                                ("#compute-pane", "4 Computes"), ("#event-pane", "5 Events")):
            self.query_one(selector).border_title = title
        self.query_one(ComputeGrid).focus()

    def update_snapshot(self, new_events: Sequence[Event] | None) -> None:
        snap = self.state.snapshot
        assert snap is not None
        self.query_one(PhasePane).show(snap, wide=self._wide())
        self.query_one(SyncPane).show(snap)
        self.query_one(ComputePanel).refresh_rows()
        events = self.query_one(EventPanel)
        events.set_compact(not self._wide())
        events.set_events(self.state.events, new_events)

    def _wide(self) -> bool:
        # From the size itself, not the breakpoint class, which can land after the first refresh.
        return self.app.size.width >= WIDE_COLUMNS

    def on_resize(self, event: events.Resize) -> None:
        self.query_one(EventPanel).set_compact(not self._wide())
        if self.state.snapshot is not None:
            self.query_one(PhasePane).show(self.state.snapshot, wide=self._wide())

    def show_analytics(self) -> None:
        self.query_one(AnalyticsSummary).show(self.state)


class PhaseScreen(ConsoleScreen):
    NAME = "phase"

    def compose(self) -> ComposeResult:
        yield from self.compose_tabs()
        yield PhasePane(id="phase-pane", classes="pane zoom-head")
        with Horizontal():
            yield DataTable(id="phase-history", cursor_type="row", classes="pane")
            yield DataTable(id="pending-intents", cursor_type="row", classes="pane")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.query_one("#phase-pane").border_title = "Phase"
        history = self.query_one("#phase-history", DataTable)
        history.border_title = "Phase history"
        history.add_columns("Time", "Phase", "Status", "Note")
        intents = self.query_one("#pending-intents", DataTable)
        intents.border_title = "Open intents"
        intents.add_columns("#", "Time", "Intent", "Status", "By")
        history.focus()

    def update_snapshot(self, new_events: Sequence[Event] | None) -> None:
        snap = self.state.snapshot
        assert snap is not None
        self.query_one(PhasePane).show(snap, wide=True)
        history = self.query_one("#phase-history", DataTable)
        if history.row_count != len(snap.phase_history):
            history.clear()
            for h in snap.phase_history:
                history.add_row(clock(h["at"], date=True), h["phase"], h["status"], h["note"])
        intents = self.query_one("#pending-intents", DataTable)
        intents.clear()
        for i in snap.pending_intents:
            summary = i.kind
            if i.args.get("computes"):
                summary += f" {len(i.args['computes'])} computes"
            intents.add_row(str(i.id), clock(i.at), summary, i.status, i.by)


class SyncScreen(ConsoleScreen):
    NAME = "sync"

    def compose(self) -> ComposeResult:
        yield from self.compose_tabs()
        yield SyncPane(id="sync-pane", classes="pane zoom-head")
        yield SyncTables(id="sync-tables", classes="pane")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.query_one("#sync-pane").border_title = "Run-sync lag"
        self.query_one("#sync-tables").border_title = "Tables (pre-sync / post-sync)"
        self.query_one(SyncTables).focus()

    def update_snapshot(self, new_events: Sequence[Event] | None) -> None:
        snap = self.state.snapshot
        assert snap is not None
        self.query_one(SyncPane).show(snap)
        self.query_one(SyncTables).show(snap.sync)


class AnalyticsScreen(ConsoleScreen):
    NAME = "analytics"

    def compose(self) -> ComposeResult:
        yield from self.compose_tabs()
        with Vertical(id="analytics-zoom"):
            yield AnalyticsSummary(id="analytics-pane", classes="pane")
            yield ControllersPane(id="controllers-pane", classes="pane")
            yield AnalyticsDetail(id="analytics-detail")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.query_one("#analytics-pane").border_title = "Analytics (consolidated)"
        self.query_one("#controllers-pane").border_title = \
            "Controller hosts (their profiles' status over SSH)"
        self.query_one(ControllersPane).display = False  # until a poll answers
        self.query_one("#consolidated").border_title = "Which cluster each compute reports to"
        self.query_one("#alarms").border_title = "Alarms of both clusters"
        self.query_one("#consolidated").focus()

    def show_analytics(self) -> None:
        self.query_one(AnalyticsSummary).show(self.state)
        self.query_one(AnalyticsDetail).show(self.state.analytics, self.state.analytics_error,
                                             self.state.analytics_age())

    def show_controllers(self) -> None:
        self.query_one(ControllersPane).show(self.state.controllers,
                                             self.state.controllers_error,
                                             self.state.controllers_age())


class ComputesScreen(ConsoleScreen):
    NAME = "computes"

    def compose(self) -> ComposeResult:
        yield from self.compose_tabs()
        yield ComputePanel(self.state.computes, self.state.marks, id="compute-pane")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.query_one("#compute-pane").border_title = "Computes"
        self.query_one(ComputeGrid).focus()

    def update_snapshot(self, new_events: Sequence[Event] | None) -> None:
        self.query_one(ComputePanel).refresh_rows()


class EventsScreen(ConsoleScreen):
    NAME = "events"

    def compose(self) -> ComposeResult:
        yield from self.compose_tabs()
        yield EventPanel(id="event-pane")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.query_one("#event-pane").border_title = "Events"
        self.query_one(EventPanel).table.focus()

    def update_snapshot(self, new_events: Sequence[Event] | None) -> None:
        self.query_one(EventPanel).set_events(self.state.events, new_events)


SCREEN_CLASSES: dict[str, type[ConsoleScreen]] = {
    cls.NAME: cls for cls in (DashboardScreen, PhaseScreen, SyncScreen, AnalyticsScreen,
                              ComputesScreen, EventsScreen)
}
