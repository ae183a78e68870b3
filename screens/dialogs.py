"""Modal dialogs: confirmations (defaulting to No), typed confirmations, detail, help."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, DataTable, Input, Label, Static

from issu_tui.console_api import ComputeDetail
from issu_tui.names import natural_sorted
from screens.format import STATE_STYLES, clock, gap

LIST_MAX = 200


@dataclass(frozen=True)
class MoveRequest:
    action: str
    computes: tuple[str, ...]
    batch_size: int
    parallel: int


@dataclass(frozen=True)
class TypedResult:
    word: str
    reason: str
    force: bool
    drop_new_data: bool


class CountField(Input):
    """A whole-number field that says what it refused instead of dropping it silently."""

    class Refused(Message):
        def __init__(self, field: CountField, text: str) -> None:
            super().__init__()
            self.field = field
            self.text = text

    def __init__(self, value: str, *, id: str) -> None:
        super().__init__(value, id=id, restrict=r"[0-9]*")
        self._attempt = ""

    def replace(self, text: str, start: int, end: int) -> None:
        self._attempt = text  # restricted() below is told nothing about what was refused
        super().replace(text, start, end)

    def restricted(self) -> None:
        self.post_message(self.Refused(self, self._attempt))


class MoveConfirm(ModalScreen[MoveRequest | None]):
    """Upgrade or roll back these computes? Lists them, asks batch size and parallelism.

    With nothing eligible it only says why: there is no button that would ask for nothing.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel")]
    FIELD_NAMES: ClassVar[dict[str, str]] = {"batch-size": "batch size", "parallel": "parallel"}

    def __init__(self, action: str, computes: list[str], skipped: list[tuple[str, str]],
                 batch_size: int, parallel: int) -> None:
        super().__init__(classes="dialog-screen")
        self.action = action
        self.computes = natural_sorted(computes)
        order = {name: i for i, name in enumerate(natural_sorted(n for n, _ in skipped))}
        self.skipped = sorted(skipped, key=lambda s: order[s[0]])
        self.defaults = (batch_size, parallel)

    @property
    def verb(self) -> str:
        return "Upgrade" if self.action == "upgrade" else "Roll back"

    def compose(self) -> ComposeResult:
        if not self.computes:
            yield from self._compose_nothing()
            return
        verb = self.verb
        count = len(self.computes)
        with Vertical(classes="dialog"):
            yield Label(f"{verb} {count} compute{'s' if count != 1 else ''}?", classes="title")
            shown = ", ".join(self.computes[:LIST_MAX])
            if count > LIST_MAX:
                shown += f" and {count - LIST_MAX} more"
            with VerticalScroll(classes="dialog-list"):
                yield Static(shown, id="move-list")
                if self.skipped:
                    yield Static(Text(f"skipped: {self._skipped_text()}", style="yellow"),
                                 id="move-skipped")
            with Horizontal(classes="dialog-fields"):
                yield Label("batch size")
                yield CountField(str(self.defaults[0]), id="batch-size")
                yield Label("parallel")
                yield CountField(str(self.defaults[1]), id="parallel")
            yield Static("", id="move-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("No", id="no", variant="primary")
                yield Button(f"Yes, {verb.lower()}", id="yes", variant="warning")

    def _compose_nothing(self) -> ComposeResult:
        noun = "upgrade" if self.action == "upgrade" else "roll back"
        with Vertical(classes="dialog"):
            yield Label(f"Nothing to {noun}", classes="title")
            with VerticalScroll(classes="dialog-list"):
                yield Static(Text(f"No chosen compute can {noun} now: {self._skipped_text()}",
                                  style="yellow"), id="move-skipped")
            with Horizontal(classes="buttons"):
                yield Button("Close", id="no", variant="primary")

    def _skipped_text(self) -> str:
        text = "; ".join(f"{n} {why}" for n, why in self.skipped[:LIST_MAX])
        if len(self.skipped) > LIST_MAX:
            text += f"; and {len(self.skipped) - LIST_MAX} more"
        return text or "none chosen"

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#no")
    def _no(self) -> None:
        self.dismiss(None)

    @on(CountField.Refused)
    def _refused(self, event: CountField.Refused) -> None:
        name = self.FIELD_NAMES.get(event.field.id or "", "this field")
        self._say(f"{name}: whole numbers only, {event.text!r} refused")

    @on(CountField.Changed)
    def _changed(self) -> None:
        problem = self._problem()
        self._say(problem or "")
        self.query_one("#yes", Button).disabled = problem is not None

    def _problem(self) -> str | None:
        for field_id, name in self.FIELD_NAMES.items():
            if int(self.query_one(f"#{field_id}", CountField).value or 0) < 1:
                return f"{name}: at least 1"
        return None

    def _say(self, message: str) -> None:
        self.query_one("#move-error", Static).update(message)

    @on(Button.Pressed, "#yes")
    def _yes(self) -> None:
        problem = self._problem()
        if problem is not None:
            self._say(problem)
            return
        batch = int(self.query_one("#batch-size", CountField).value)
        parallel = int(self.query_one("#parallel", CountField).value)
        self.dismiss(MoveRequest(self.action, tuple(self.computes), batch, parallel))

    @on(Input.Submitted)
    def _submitted(self) -> None:
        # Enter in a field moves on; it never confirms by itself.
        self.focus_next()


class StepConfirm(ModalScreen[bool]):
    """Run this step? What it does and touches; `No` has the focus, `escape` cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel")]

    def __init__(self, title: str, explanation: str, yes: str) -> None:
        super().__init__(classes="dialog-screen")
        self.title_text = title
        self.explanation = explanation
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="title")
            with VerticalScroll(classes="dialog-list"):
                yield Static(self.explanation, classes="dialog-text")
            with Horizontal(classes="buttons"):
                yield Button("No", id="no", variant="primary")
                yield Button(self.yes, id="yes", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_cancel(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed, "#no")
    def _no(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed, "#yes")
    def _yes(self) -> None:
        self.dismiss(True)


class TypedConfirm(ModalScreen[TypedResult | None]):
    """Finalize, abort or close the way back: the operator types the word; a reason is
    recorded."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel")]

    def __init__(self, word: str, explanation: str, *, force_needed: bool = False,
                 offer_drop: bool = False, title: str = "") -> None:
        super().__init__(classes="dialog-screen")
        self.word = word
        self.title_text = title or f"{word.capitalize()} the upgrade?"
        self.explanation = explanation
        self.force_needed = force_needed
        self.offer_drop = offer_drop

    @property
    def expected(self) -> str:
        return "force" if self.force_needed else self.word

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="title")
            yield Static(self.explanation, classes="dialog-text")
            yield Label(f"Type {self.expected!r} to confirm:")
            yield Input(id="typed", placeholder=self.expected)
            yield Static("", id="typed-hint", classes="error")
            yield Input(id="reason", placeholder="reason (recorded in the journal)")
            if self.offer_drop:
                yield Checkbox("also drop data written to the new cluster", id="drop")
            yield Static("", id="typed-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("No", id="no", variant="primary")
                yield Button(self.word.capitalize(), id="yes", variant="error", disabled=True)

    def on_mount(self) -> None:
        self.query_one("#typed", Input).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Changed, "#typed")
    def _typed(self, event: Input.Changed) -> None:
        typed = event.value.strip()
        self.query_one("#yes", Button).disabled = typed != self.expected
        self.query_one("#typed-hint", Static).update(self.typed_hint(typed))

    def typed_hint(self, typed: str) -> str:
        """Why the button is still disabled (nothing while the field is empty or right)."""
        button = self.word.capitalize()
        if not typed or typed == self.expected:
            return ""
        if self.expected.startswith(typed):
            return f"{button} stays disabled until the whole word {self.expected!r} is typed"
        return f"{typed!r} is not {self.expected!r}: {button} stays disabled"

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.focus_next()

    @on(Button.Pressed, "#no")
    def _no(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#yes")
    def _yes(self) -> None:
        if self.query_one("#typed", Input).value.strip() != self.expected:
            return
        reason = self.query_one("#reason", Input).value.strip()
        if self.force_needed and not reason:
            self.query_one("#typed-error", Static).update("a forced action needs a reason")
            return
        drop = self.query_one("#drop", Checkbox).value if self.offer_drop else False
        self.dismiss(TypedResult(self.word, reason, self.force_needed, drop))


class ComputeDetailScreen(ModalScreen[None]):
    """One compute: its row, its history and the output of every command run on it."""

    BINDINGS = [Binding("escape,q,enter", "close", "Close", id="dialog.close")]

    def __init__(self, detail: ComputeDetail) -> None:
        super().__init__(classes="dialog-screen")
        self.detail = detail

    def compose(self) -> ComposeResult:
        row = self.detail.row
        with Vertical(classes="dialog wide"):
            head = Text.assemble((f"{row.name}  ", "bold"), f"{row.address}  ",
                                 (f"{row.state}  ", STATE_STYLES.get(row.state, "")),
                                 f"version {row.version or '-'}  cluster {row.cluster or '-'}"
                                 f"  agent {row.agent_state or '-'}  gap {gap(row.gap_ms)}"
                                 f"  batch {row.batch if row.batch is not None else '-'}")
            yield Static(head, classes="title")
            yield DataTable(id="history", cursor_type="row")
            with VerticalScroll(id="commands"):
                yield Static(self._commands(), id="command-output")

    def _commands(self) -> Text:
        text = Text()
        if not self.detail.commands:
            text.append("no command has run on this compute yet", style="dim")
        for cmd in self.detail.commands:
            code = cmd.get("exit_code")
            style = "green" if code == 0 else "bold red"
            text.append(f"{clock(cmd['at'])} {cmd['step']}: ", style="bold")
            text.append(f"$ {cmd['command']}  ")
            text.append(f"exit {code} in {cmd.get('duration_s') or 0:.1f}s\n", style=style)
            if cmd.get("stdout"):
                text.append(cmd["stdout"].rstrip() + "\n")
            if cmd.get("stderr"):
                text.append(cmd["stderr"].rstrip() + "\n", style="red")
        return text

    def on_mount(self) -> None:
        table = self.query_one("#history", DataTable)
        table.add_columns("Time", "From", "To", "Detail")
        for h in self.detail.history[-200:]:
            table.add_row(clock(h["at"]), h["from_state"],
                          Text(h["to_state"], style=STATE_STYLES.get(h["to_state"], "")),
                          h["detail"])

    def action_close(self) -> None:
        self.dismiss(None)


@dataclass(frozen=True)
class HelpEntry:
    key: str
    description: str
    binding_id: str
    enabled: bool


class HelpScreen(ModalScreen[None]):
    """Generated from the live bindings: what you see here is what the keys do."""

    BINDINGS = [Binding("escape,q,question_mark", "close", "Close", id="dialog.close")]

    def __init__(self, entries: list[HelpEntry]) -> None:
        super().__init__(classes="dialog-screen")
        self.entries = entries

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label("Keys (remap by id in the keymap)", classes="title")
            yield DataTable(id="help-table", cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one("#help-table", DataTable)
        table.add_columns("Key", "Action", "Id")
        for e in self.entries:
            style = "" if e.enabled else "dim"
            table.add_row(Text(e.key, style="bold " + style), Text(e.description, style=style),
                          Text(e.binding_id, style="dim"))
        table.focus()

    def action_close(self) -> None:
        self.dismiss(None)


class NoticeScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,enter,q", "close", "Close", id="dialog.close")]

    def __init__(self, title: str, body: str) -> None:
        super().__init__(classes="dialog-screen")
        self.title_text = title
        self.body = body

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="title")
            with VerticalScroll(classes="dialog-list"):
                yield Static(self.body, classes="dialog-text")
            with Horizontal(classes="buttons"):
                yield Button("OK", id="ok", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#ok", Button).focus()

    @on(Button.Pressed, "#ok")
    def action_close(self) -> None:
        self.dismiss(None)
