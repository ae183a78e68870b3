"""The preflight results: every check with its result, what it found and the fix."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from issu_tui.console_api import PreflightCheck, PreflightView
from screens.format import clock

RESULT_STYLES = {"ok": "green", "FAIL": "bold red", "warn": "yellow"}
STATUS_STYLES = {"passed": "green", "refused": "bold red", "failed": "bold red"}
ORDER = {"FAIL": 0, "warn": 1, "ok": 2}  # what needs the operator's hand first


def check_text(check: PreflightCheck) -> Text:
    text = Text.assemble((check.result, RESULT_STYLES[check.result]), " ",
                         (check.name, "bold"), "\n")
    text.append("found: ", style="bold")
    text.append((check.evidence or "-") + "\n")
    if not check.ok:
        text.append("fix: ", style="bold")
        text.append(check.fix or "(the check names no fix)")
    return text


class PreflightScreen(ModalScreen[None]):
    """`c`: the newest preflight run, failures first; the highlighted check in full below."""

    BINDINGS = [Binding("escape,q,c", "close", "Close", id="dialog.close")]

    def __init__(self, view: PreflightView) -> None:
        super().__init__(classes="dialog-screen")
        self.view = view
        self.checks = sorted(view.checks, key=lambda c: ORDER[c.result])

    def compose(self) -> ComposeResult:
        view = self.view
        head = Text.assemble(("Preflight ", "bold"), (view.status, STATUS_STYLES[view.status]),
                             f": {view.summary}")
        head.append(f"\nintent #{view.intent} at {clock(view.at)}, asked by {view.by}",
                    style="dim")
        with Vertical(classes="dialog wide", id="preflight"):
            yield Static(head, classes="title")
            yield DataTable(id="preflight-checks", cursor_type="row")
            with VerticalScroll(id="preflight-check"):
                yield Static(self._detail(0), id="preflight-detail")

    def _detail(self, index: int) -> Text:
        if not self.checks:
            return Text.assemble(("preflight could not run its checks:\n", "bold red"),
                                 self.view.error or "-")
        return check_text(self.checks[max(0, min(index, len(self.checks) - 1))])

    def on_mount(self) -> None:
        table = self.query_one("#preflight-checks", DataTable)
        table.add_column("Result", key="result")
        table.add_column("Check", key="check")
        table.add_column("Found", key="found")
        for i, check in enumerate(self.checks):
            table.add_row(Text(check.result, style=RESULT_STYLES[check.result]), check.name,
                          check.evidence.splitlines()[0] if check.evidence else "-",
                          key=str(i))
        table.focus()

    @on(DataTable.RowHighlighted, "#preflight-checks")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.query_one("#preflight-detail", Static).update(self._detail(event.cursor_row))

    def action_close(self) -> None:
        self.dismiss(None)
