"""A rehearsal shown like an upgrade (`issu tui --rehearsal REPORT.json`), read-only.

The upgrade's phase timeline with what the rehearsal measured in each (time taken, time
predicted on production), the tables copied with their quarantined cells, and what would go
wrong on the day. It renders a `RehearsalView` (issu_tui/rehearsal_view.py) and nothing else:
no key acts on anything.
"""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from issu_tui.console_api import RehearsalView
from screens.format import duration, number

MARKS = {"ok": ("✓", "green", "ok"), "problems": ("✗", "bold red", "would lose data"),
         "failed": ("✗", "bold red", "FAILED"), "not-run": ("·", "dim", "not run"),
         "not-rehearsed": ("○", "dim", "not rehearsed")}


def _took(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}s" if value < 60 else duration(value)


def heading(view: RehearsalView) -> Group:
    # A space next to a style change is a run of its own (see screens/format.py).
    head = Text(" ")
    head.append("REHEARSAL", style="bold reverse")
    head.append(" ")
    head.append(f"{view.from_version}→{view.to_version}", style="bold")
    head.append(" ")
    head.append("PASSED" if view.ok else "FAILED", style="bold green" if view.ok else "bold red")
    head.append(" ")
    head.append("read-only: nothing here acts on a cluster", style="yellow")
    about = Text(f" snapshot {view.snapshot}: {view.cells:,} cells in {view.rows:,} rows, "
                 f"{view.znodes:,} znodes; rehearsed {view.started_at} on {view.machine}",
                 style="dim", no_wrap=True, overflow="ellipsis")
    line = Text(" ")
    for i, phase in enumerate(view.phases):
        mark, style, _ = MARKS.get(phase.status, MARKS["not-run"])
        if i:
            line.append(" ")
        line.append(f"{mark}{phase.name}", style=style)
    return Group(head, about, line)


def findings(view: RehearsalView) -> Group:
    lines: list[Text] = []
    if view.problems or view.refusals:
        lines.append(Text("What would go wrong on the day", style="bold red"))
        lines += [Text(f"  {p}") for p in view.problems]
        lines += [Text(f"  preflight would refuse: {p}") for p in view.refusals]
    else:
        lines.append(Text("Nothing would be lost or refused on the day", style="bold green"))
    for table in view.quarantine:
        lines.append(Text.assemble(("Quarantined in ", "bold"), (table.table, "bold"),
                                   f": {number(table.count)} cell(s)"))
        lines += [Text(f"  {n} x {reason}") for reason, n in table.reasons]
        lines += [Text(f"  sample: key {key} column {column}") for key, column, _ in
                  table.samples]
    lines.append(Text("Measured and predicted", style="bold"))
    lines += [Text(f"  {fact}") for fact in view.facts]
    if view.translated:
        lines.append(Text("Translated samples (before -> after)", style="bold"))
        lines += [Text(f"  {line}") for line in view.translated]
    return Group(*lines)


class RehearsalScreen(Screen[None]):
    """The whole rehearsal on one screen; tab moves between the tables and the findings."""

    DEFAULT_CSS = """
    RehearsalScreen #rehearsal-head { height: 3; }
    RehearsalScreen #rehearsal-phases { height: 9; }
    RehearsalScreen #rehearsal-tables { height: 1fr; min-height: 4; }
    RehearsalScreen #rehearsal-findings { height: 1fr; min-height: 4; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "app.quit", "Quit"),
        Binding("tab", "app.focus_next", "Next pane", show=False),
    ]

    def __init__(self, view: RehearsalView) -> None:
        super().__init__(id="screen-rehearsal")
        self.view = view

    def compose(self) -> ComposeResult:
        yield Static(heading(self.view), id="rehearsal-head")
        with Vertical():
            yield DataTable(id="rehearsal-phases", cursor_type="row")
            yield DataTable(id="rehearsal-tables", cursor_type="row")
            with VerticalScroll(id="rehearsal-findings"):
                yield Static(findings(self.view), id="rehearsal-findings-text")
        yield Footer()

    def on_mount(self) -> None:
        phases = self.query_one("#rehearsal-phases", DataTable)
        for key, label in (("phase", "Phase"), ("result", "Result"), ("took", "Took"),
                           ("predicted", "On production"), ("what", "What it did")):
            phases.add_column(label, key=key)
        for phase in self.view.phases:
            _, style, word = MARKS.get(phase.status, MARKS["not-run"])
            phases.add_row(phase.name, Text(word, style=style), _took(phase.seconds),
                           _took(phase.predicted_s), phase.what, key=phase.name)
        tables = self.query_one("#rehearsal-tables", DataTable)
        for key, label in (("job", "Job"), ("table", "Keyspace.table"), ("copied", "Copied"),
                           ("quarantined", "Quarantined"), ("took", "Took"),
                           ("translator", "Translator")):
            tables.add_column(label, key=key)
        for t in self.view.tables:
            tables.add_row(t.job, t.table, number(t.copied),
                           Text(number(t.quarantined), style="bold red" if t.quarantined
                                else ""), _took(t.seconds), t.translator,
                           key=f"{t.job}:{t.table}")
        phases.focus()
