"""The first screen of `make demo` (`issu demo up --console`): the world coming up, at once.

Starting the world takes tens of seconds (two Cassandra JVMs, ZooKeeper, RabbitMQ, sshd, the
simulated controllers and computes). Instead of a silent terminal until then, this screen
opens as soon as the interpreter has loaded Textual and shows every piece with its state
and a bar, the steps `World.up` reports, and the seed; once the world is up the console
opens in its place (demo/cli.py).

`World.up` runs in a thread of its own; the pieces' states come from `World.status` polled
in another, so the screen never waits for either.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from textual.app import App, ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Label, ProgressBar, RichLog, Static

from demo.world import PieceStatus, World

# state -> share of the bar (running: started, not answering yet)
_PROGRESS = {"stopped": 0, "missing": 0, "broken": 0, "running": 50, "ready": 100,
             "done": 100, "off": 100}
_STYLE = {"ready": "green", "done": "green", "off": "dim", "running": "yellow",
          "broken": "red", "stopped": "dim", "missing": "dim"}


class PieceRow(Horizontal):
    DEFAULT_CSS = """
    PieceRow { height: 1; }
    PieceRow .name { width: 16; }
    PieceRow .state { width: 9; }
    PieceRow ProgressBar { width: 24; }
    PieceRow .detail { width: 1fr; color: $text-muted; }
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.piece = name

    def compose(self) -> ComposeResult:
        yield Label(self.piece, classes="name")
        yield Label("", classes="state")
        yield ProgressBar(total=100, show_eta=False, show_percentage=False)
        yield Label("", classes="detail")

    def show(self, status: PieceStatus) -> None:
        style = _STYLE.get(status.state, "")
        self.query_one(".state", Label).update(f"[{style}]{status.state}[/]")
        self.query_one(ProgressBar).update(progress=_PROGRESS.get(status.state, 0))
        self.query_one(".detail", Label).update(status.detail)


class WorldStartup(App[str]):
    """Runs `world.up()` (or `up`, the same call) and shows it; exits with "ready" once
    the world is up, or when `q` is pressed: "quit" ("failed" after a failure, which
    stays on the screen until then)."""

    TITLE = "issu demo"
    BINDINGS = [("q", "quit_startup", "quit")]
    DEFAULT_CSS = """
    #headline { height: 1; padding: 0 1; }
    #overall { padding: 0 1; height: 1; }
    #pieces { height: auto; max-height: 60%; padding: 0 1; }
    #log { height: 1fr; border: round $panel; }
    """

    def __init__(self, world: World, *, poll_s: float = 0.5,
                 up: Callable[[World, Callable[[str], None]], object] | None = None) -> None:
        super().__init__()
        self.world, self.poll_s = world, poll_s
        self._up = up or (lambda w, progress: w.up(progress))
        self.started = time.monotonic()
        self.first_frame: float | None = None  # monotonic, once the first frame is painted
        self.ready_at: float | None = None
        self.error: str | None = None
        self._rows: dict[str, PieceRow] = {}
        self._stop = threading.Event()

    def compose(self) -> ComposeResult:
        yield Static(f"starting the demo world on 127.{self.world.opts.net}.x.y ...",
                     id="headline")
        yield ProgressBar(total=100, show_eta=False, id="overall")
        yield VerticalScroll(id="pieces")
        yield RichLog(id="log", wrap=True, markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.call_after_refresh(self._first_paint)
        threading.Thread(target=self._run_up, name="demo-up", daemon=True).start()
        threading.Thread(target=self._poll, name="demo-status", daemon=True).start()

    def _first_paint(self) -> None:
        if self.first_frame is None:
            self.first_frame = time.monotonic()

    # ------------------------------------------------------------------ threads
    def _run_up(self) -> None:
        try:
            self._up(self.world, lambda msg: self.call_from_thread(self._log_step, msg))
        except Exception as exc:  # the message names the piece and its log
            self.call_from_thread(self._world_failed, f"{type(exc).__name__}: {exc}")
            return
        self.call_from_thread(self._world_ready)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                pieces = self.world.status(probe=True)
            except Exception as exc:  # a half-written run directory: try again
                pieces = [PieceStatus("status", "broken", str(exc))]
            try:
                self.call_from_thread(self._show_pieces, pieces)
            except RuntimeError:  # the app is gone
                return
            self._stop.wait(self.poll_s)

    # ------------------------------------------------------------------ UI thread
    def _log_step(self, message: str) -> None:
        self.query_one(RichLog).write(f"{time.monotonic() - self.started:6.1f} s  {message}")

    def _show_pieces(self, pieces: list[PieceStatus]) -> None:
        box = self.query_one("#pieces", VerticalScroll)
        for piece in pieces:
            row = self._rows.get(piece.name)
            if row is None:
                row = self._rows[piece.name] = PieceRow(piece.name)
                box.mount(row)
                row.call_after_refresh(row.show, piece)
            else:
                row.show(piece)
        if pieces and self.ready_at is None:
            done = sum(_PROGRESS.get(p.state, 0) for p in pieces) / len(pieces)
            self.query_one("#overall", ProgressBar).update(progress=done)

    def _world_ready(self) -> None:
        self.ready_at = time.monotonic()
        self.query_one("#overall", ProgressBar).update(progress=100)
        self.query_one("#headline", Static).update(
            f"the demo world is up ({self.ready_at - self.started:.1f} s): opening the console")
        self._stop.set()
        self.exit("ready")

    def _world_failed(self, reason: str) -> None:
        self.error = reason
        self.query_one("#headline", Static).update(
            "[red]the demo world did not come up[/] (q: quit; `issu demo status` says which "
            "piece)")
        self.query_one(RichLog).write(f"FAILED: {reason}")

    def action_quit_startup(self) -> None:
        self._stop.set()
        self.exit("failed" if self.error else "quit")
