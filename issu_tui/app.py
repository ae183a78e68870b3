"""The operator console's App: polls the core API in workers and drives the screens.

The only core module that imports screens. The ConsoleBackend is injected; every blocking
call runs in a thread worker, the next poll is scheduled when the previous one finishes (so
polls never overlap), and polling pauses while a modal dialog is open.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import termios
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.worker import get_current_worker

import screens
from issu_tui.console_api import (
    ActionRefused,
    AnalyticsSnapshot,
    ComputeDetail,
    ConsoleBackend,
    ConsoleSnapshot,
    Eligibility,
    EmbeddedExecutor,
    NextStep,
    PreflightView,
)
from issu_tui.controller_view import ControllersView
from issu_tui.names import natural_sorted
from issu_tui.rehearsal_view import RehearsalView
from screens.commands import ConsoleCommands
from screens.console import SCREEN_CLASSES, SCREENS, ConsoleScreen
from screens.dialogs import (
    ComputeDetailScreen,
    HelpEntry,
    HelpScreen,
    MoveConfirm,
    MoveRequest,
    NoticeScreen,
    StepConfirm,
    TypedConfirm,
    TypedResult,
)
from screens.format import WIDE_COLUMNS
from screens.preflight import PreflightScreen
from screens.rehearsal import RehearsalScreen
from screens.state import ConsoleState
from screens.widgets.computes import ComputeGrid

SCREEN_NAMES = tuple(name for name, _ in SCREENS)
# Why R does nothing, by run-sync's state (when the phase is not the reason).
_RUNSYNC_WHY = {"not started": "run-sync has not been started by its phase yet; n runs it",
                "stopped": "finalize stopped run-sync for good"}


class IssuApp(App[int]):
    """`issu tui`: supervise and drive an upgrade through the journal."""

    CSS_PATH = Path(screens.__file__).parent / "console.tcss"
    TITLE = "issu"
    HORIZONTAL_BREAKPOINTS: list[tuple[int, str]] | None = [
        (0, "-narrow"), (WIDE_COLUMNS, "-wide")]
    COMMANDS = App.COMMANDS | {ConsoleCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("n", "next_step", "Next", id="app.next_step"),
        Binding("V", "verify", "Verify", show=False, id="app.verify"),
        Binding("u", "upgrade", "Upgrade", id="app.upgrade"),
        Binding("r", "rollback", "Rollback", id="app.rollback"),
        Binding("R", "runsync('stop')", "Sync off", id="app.runsync_stop"),
        Binding("R", "runsync('start')", "Sync on", id="app.runsync_start"),
        Binding("F", "finalize", "Finalize", id="app.finalize"),
        Binding("X", "abort", "Abort", id="app.abort"),
        # after finalize, while the reverse replication new -> old runs
        Binding("W", "close_way_back", "Close way back", id="app.close_way_back"),
        Binding("B", "revert", "Back to old", id="app.revert"),
        # u, r, F and X leave the footer while not allowed; these then say why instead of
        # nothing
        Binding("u", "not_now('upgrade')", "Upgrade (says why not now)", show=False,
                id="app.upgrade_not_now"),
        Binding("r", "not_now('rollback')", "Roll back (says why not now)", show=False,
                id="app.rollback_not_now"),
        Binding("F", "not_now('finalize')", "Finalize (says why not now)", show=False,
                id="app.finalize_not_now"),
        Binding("X", "not_now('abort')", "Abort (says why not now)", show=False,
                id="app.abort_not_now"),
        Binding("R", "not_now('runsync')", "Start / stop run-sync (says why not now)",
                show=False, id="app.runsync_not_now"),
        # in the footer while the newest preflight did not pass; c opens it any time
        Binding("c", "preflight_failed", "Checks", id="app.preflight_failed"),
        Binding("c", "preflight", "Preflight checks", show=False, id="app.preflight"),
        Binding("P", "toggle_executor", "Pause upgrade", show=False, id="app.pause_executor"),
        Binding("p", "pause_refresh", "Pause refresh", show=False, id="app.pause_refresh"),
        Binding("left_square_bracket", "cycle(-1)", "Prev screen", show=False,
                id="app.prev_screen"),
        Binding("right_square_bracket", "cycle(1)", "Next screen", show=False,
                id="app.next_screen"),
        *[Binding(str(i), f"show('{name}')", title, show=False, id=f"app.screen_{name}")
          for i, (name, title) in enumerate(SCREENS, start=1)],
        Binding("q", "quit", "Quit", id="app.quit"),
    ]

    def __init__(self, backend: ConsoleBackend, *, refresh_interval: float = 2.0,
                 analytics_interval: float = 10.0, controllers_interval: float = 30.0,
                 watch_terminal: bool = False,
                 executor: EmbeddedExecutor | None = None,
                 greeting: str | None = None) -> None:
        super().__init__()
        self.backend = backend
        self.greeting = greeting  # told once the dashboard is up (e.g. the demo's hint)
        self.refresh_interval = refresh_interval
        self.analytics_interval = analytics_interval
        self.controllers_interval = controllers_interval
        self.watch_terminal = watch_terminal
        self.executor = executor
        self.state = ConsoleState(read_only=backend.read_only,
                                  read_only_reason=backend.options.read_only_reason,
                                  clock=backend.options.clock)
        self.refreshes = 0           # applied snapshots (tests and benchmarks wait on it)
        self.analytics_polls = 0
        self.last_poll_error: str | None = None
        self._tty_fd: int | None = None
        self._shown_allowed: tuple[frozenset[str], str | None] | None = None
        self._preflight_seen: int | None = None  # the preflight intent already told of
        self.handover = False  # set when leaving with work in flight and no terminal
        self._poll_timer: Timer | None = None
        self.state.status = self._sub_title()

    # ------------------------------------------------------------------ lifecycle

    def on_mount(self) -> None:
        for name in SCREEN_NAMES:
            self.install_screen(SCREEN_CLASSES[name](self.state), name)
        self.push_screen("dashboard")
        if self.executor is not None and self.backend.options.owns_executor:
            self.executor.start()
        self._poll()
        if self.backend.analytics is not None:
            self._poll_analytics()
        if self.backend.has_controllers:
            self._poll_controllers()
        if self.watch_terminal:
            self._watch_terminal()
        if self.greeting:
            self.notify(self.greeting, timeout=30)

    def on_unmount(self) -> None:
        if self.executor is not None:
            self.executor.stop()
        gc.unfreeze()  # what was kept out of the collector's way is collectable again

    def _sub_title(self) -> str:
        parts = []
        if self.state.read_only:
            parts.append("READ-ONLY")
        if self.state.refresh_paused:
            parts.append("refresh paused (p)")
        if self.last_poll_error:
            parts.append(f"journal: {self.last_poll_error}")
        return " · ".join(parts)

    def _update_sub_title(self) -> None:
        status = self._sub_title()
        if status != self.state.status:
            self.state.status = status
            screen = self.console_screen
            if screen is not None:
                screen.show_status()

    @property
    def console_screen(self) -> ConsoleScreen | None:
        for screen in reversed(self.screen_stack):
            if isinstance(screen, ConsoleScreen):
                return screen
        return None

    # ------------------------------------------------------------------ polling

    def _modal_open(self) -> bool:
        stack = self.screen_stack
        return bool(stack) and isinstance(stack[-1], ModalScreen)

    def _schedule_poll(self) -> None:
        """The next poll, in refresh_interval; one pending at a time. A poll asked for now
        (`refresh_now`, after an action) reschedules it rather than starting a second chain
        of polls beside it (each action would add one, and their timers never die)."""
        if self._poll_timer is not None:
            self._poll_timer.stop()
        self._poll_timer = self.set_timer(self.refresh_interval, self._poll)

    def _poll(self) -> None:
        if self.state.refresh_paused or self._modal_open():
            self._schedule_poll()
            return
        self._fetch_snapshot()

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def _fetch_snapshot(self) -> None:
        try:
            snap = self.backend.snapshot(events_after=self.state.last_event_id,
                                         computes_since=self.state.compute_seq)
        except Exception as exc:  # the journal is on disk: show the error, keep polling
            self.call_from_thread(self._poll_failed, f"{type(exc).__name__}: {exc}")
            return
        if not get_current_worker().is_cancelled:  # a newer poll replaced this one
            self.call_from_thread(self._apply_snapshot, snap)

    def _poll_failed(self, error: str) -> None:
        self.last_poll_error = error
        self._update_sub_title()
        self._schedule_poll()

    def _apply_snapshot(self, snap: ConsoleSnapshot) -> None:
        try:
            self.last_poll_error = None
            self.state.snapshot = snap
            self.state.add_events(snap.events)
            self.state.add_computes(snap.computes, snap.compute_seq)
            self.state.generation += 1
            screen = self.console_screen
            if screen is not None and screen.is_mounted:
                screen.show_snapshot(snap.events)
            self.refreshes += 1
            if self.refreshes == 1:
                # What is alive once the first snapshot is shown (the widgets, every
                # compute's row) lives as long as the console: out of the cyclic
                # collector's full passes, which would otherwise walk it all and stall a
                # key now and then (about 0.1 s at 5,000 computes).
                gc.freeze()
            self._update_sub_title()
            preflight = snap.preflight.status if snap.preflight is not None else None
            if (snap.phase.allowed, preflight) != self._shown_allowed:
                self._shown_allowed = (snap.phase.allowed, preflight)
                self.refresh_bindings()  # u, r, R, F, X and c appear only when they act
            self._say_preflight(snap.preflight)
        finally:
            # the next poll is scheduled when this one is done, whatever happened
            self._schedule_poll()

    def _say_preflight(self, view: PreflightView | None) -> None:
        """A preflight that did not pass, newly finished: say so once, and where to look."""
        if view is None or view.intent == self._preflight_seen:
            return
        first = self._preflight_seen is None and self.refreshes == 1
        self._preflight_seen = view.intent
        if view.status != "passed" and not first:
            self.notify(f"preflight {view.status}: {view.summary}. Press c for every check, "
                        "what it found and the fix", title="preflight", severity="error",
                        timeout=20)

    def _poll_analytics(self) -> None:
        if self.state.refresh_paused or self._modal_open():
            self.set_timer(self.analytics_interval, self._poll_analytics)
            return
        self._fetch_analytics()

    @work(thread=True, exclusive=True, group="analytics", exit_on_error=False)
    def _fetch_analytics(self) -> None:
        try:
            snap = self.backend.poll_analytics()
            error = None
        except Exception as exc:
            snap, error = None, f"analytics: {type(exc).__name__}: {exc}"
        self.call_from_thread(self._apply_analytics, snap, error)

    def _apply_analytics(self, snap: AnalyticsSnapshot | None, error: str | None) -> None:
        try:
            # A failed poll keeps the last answer on screen, said to be stale (with its age);
            # agents' states no analytics-api confirmed this time are marked so in the grid.
            self.state.analytics = snap if snap is not None else self.state.analytics
            self.state.analytics_error = error
            if snap is None:
                failed = True
                agents: dict[str, str] = {}
            else:
                failed = not all(c.ok for c in snap.clusters.values())
                agents = {name: report.agent_state for name, report in snap.computes.items()}
                for name, cluster in snap.clusters.items():
                    if cluster.ok:
                        self.state.analytics_answered_at[name] = cluster.fetched_at
            screen = self.console_screen
            agents_moved = bool(self.state.computes.apply_agents(agents, failed=failed))
            if screen is not None and screen.is_mounted:
                screen.show_analytics()
                if agents_moved or failed:
                    screen.show_computes()
            self.analytics_polls += 1
        finally:
            self.set_timer(self.analytics_interval, self._poll_analytics)

    def _poll_controllers(self) -> None:
        if self.state.refresh_paused or self._modal_open():
            self.set_timer(self.controllers_interval, self._poll_controllers)
            return
        self._fetch_controllers()

    @work(thread=True, exclusive=True, group="controllers", exit_on_error=False)
    def _fetch_controllers(self) -> None:
        try:
            view, error = self.backend.poll_controllers(), None
        except Exception as exc:
            view, error = None, f"{type(exc).__name__}: {exc}"
        self.call_from_thread(self.apply_controllers, view, error)

    def apply_controllers(self, view: ControllersView | None, error: str | None) -> None:
        """A poll's answer; a failed one keeps the last on screen, said to be stale."""
        try:
            self.state.controllers = view if view is not None else self.state.controllers
            self.state.controllers_error = error
            screen = self.console_screen
            if screen is not None and screen.is_mounted:
                screen.show_controllers()
        finally:
            self.set_timer(self.controllers_interval, self._poll_controllers)

    def action_refresh_now(self) -> None:
        self._fetch_snapshot()

    def action_pause_refresh(self) -> None:
        self.state.refresh_paused = not self.state.refresh_paused
        self._update_sub_title()
        self.notify("refresh paused: press p to resume" if self.state.refresh_paused
                    else "refresh resumed")

    # ------------------------------------------------------------------ screens

    def action_show(self, name: str) -> None:
        if name not in SCREEN_NAMES:
            return
        if self._modal_open():
            return
        current = self.console_screen
        if current is not None and name == current.NAME:
            return
        self.switch_screen(name)

    def action_cycle(self, step: int) -> None:
        current = self.console_screen
        index = SCREEN_NAMES.index(current.NAME) if current else 0
        self.action_show(SCREEN_NAMES[(index + step) % len(SCREEN_NAMES)])

    def action_help(self) -> None:
        entries: list[HelpEntry] = []
        seen: set[str] = set()
        for key, active in self.screen.active_bindings.items():
            binding = active.binding
            ident = binding.id or binding.action
            if ident in seen:
                continue
            seen.add(ident)
            entries.append(HelpEntry(binding.key_display or key, binding.description
                                     or binding.action, binding.id or "", active.enabled))
        entries.sort(key=lambda e: e.binding_id or "~")
        self.push_screen(HelpScreen(entries))

    def on_compute_grid_detail_requested(self, message: ComputeGrid.DetailRequested) -> None:
        self._load_detail(message.name)

    @work(thread=True, group="detail", exit_on_error=False)
    def _load_detail(self, name: str) -> None:
        detail = self.backend.compute_detail(name)
        self.call_from_thread(self._show_detail, name, detail)

    def _show_detail(self, name: str, detail: ComputeDetail | None) -> None:
        if detail is None:
            self.notify(f"{name}: not in the journal", severity="error")
            return
        self.push_screen(ComputeDetailScreen(detail))

    # ------------------------------------------------------------------ actions

    def action_preflight(self) -> None:
        """`c`: the newest preflight run's checks, each with what it found and the fix."""
        self._load_preflight()

    def action_preflight_failed(self) -> None:
        self._load_preflight()

    @work(thread=True, group="detail", exit_on_error=False)
    def _load_preflight(self) -> None:
        view = self.backend.preflight_results()
        self.call_from_thread(self._show_preflight, view)

    def _show_preflight(self, view: PreflightView | None) -> None:
        if view is None:
            self.notify("no preflight has run yet: n runs it (from phase plan)",
                        title="preflight")
            return
        self.push_screen(PreflightScreen(view))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("upgrade", "rollback", "finalize", "abort", "close_way_back", "revert"):
            snap = self.state.snapshot
            return snap is not None and action.replace("_", "-") in snap.phase.allowed
        if action == "preflight_failed":
            snap = self.state.snapshot
            return (snap is not None and snap.preflight is not None
                    and snap.preflight.status != "passed")
        if action == "runsync":
            snap = self.state.snapshot
            wanted = "running" if parameters == ("stop",) else "held"
            return (snap is not None and "runsync" in snap.phase.allowed
                    and snap.sync.runsync == wanted)
        return True

    def action_not_now(self, action: str) -> None:
        """u, r, R, F or X while not allowed (else the action's own binding ran): say why."""
        if not self._refuse_read_only("run-sync" if action == "runsync" else action):
            self._allowed(action)

    def _refuse_read_only(self, action: str) -> bool:
        if self.backend.read_only:
            why = self.state.read_only_reason
            self.notify(f"{action}: refused, this console is read-only"
                        f"{' (' + why + ')' if why else ''}", title="read-only",
                        severity="error")
            return True
        return False

    def _allowed(self, action: str) -> bool:
        snap = self.state.snapshot
        if snap is None or action not in snap.phase.allowed:
            phase = snap.phase.phase if snap else "unknown"
            why = _RUNSYNC_WHY.get(snap.sync.runsync, "") if snap and action == "runsync" \
                else ""
            self.notify(f"{'start / stop run-sync' if action == 'runsync' else action} is not "
                        f"allowed now (phase {phase}{': ' + why if why else ''})",
                        severity="warning")
            return False
        return True

    def action_next_step(self) -> None:
        """`n`: the one next safe action the phase pane names, after a confirmation."""
        if not self._refuse_read_only("next step"):
            self._find_next_step()

    @work(thread=True, group="action", exit_on_error=False)
    def _find_next_step(self) -> None:
        step = self.backend.next_step()  # from the journal now, not the last snapshot
        self.call_from_thread(self._offer_next_step, step)

    def _offer_next_step(self, step: NextStep) -> None:
        if step.action == "phase":
            self.push_screen(StepConfirm(f"Run {step.target}?", step.detail,
                                         f"Yes, run {step.target}"),
                             callback=lambda yes: self._step_confirmed(yes, step))
        elif step.action == "upgrade":
            self._check_move("upgrade", list(step.computes))
        elif step.action == "finalize":
            self.action_finalize()
        elif step.action == "runsync":
            self.action_runsync("start")
        elif step.action == "ring":
            self.push_screen(StepConfirm(f"Run the ring steps of {step.target}?",
                                         f"{step.detail}\n\nThey run as a `ring` intent, one "
                                         "step after the other, each marked in the journal "
                                         "(a re-run continues); the event log follows them.",
                                         "Yes, run them"),
                             callback=lambda yes: self._ring_confirmed(yes, step))
        else:
            self.notify(f"next step: {step.says}", title="nothing to run now")

    def _step_confirmed(self, yes: bool | None, step: NextStep) -> None:
        if not yes:
            self.notify("cancelled: nothing was asked")
            return
        self._run_intent(f"run {step.target}", lambda: self.backend.run_phase(step.target))

    def _ring_confirmed(self, yes: bool | None, step: NextStep) -> None:
        if not yes:
            self.notify("cancelled: nothing was asked")
            return
        self._run_intent(f"the ring steps of {step.target}",
                         lambda: self.backend.run_ring(step.target))

    def action_verify(self) -> None:
        if self._refuse_read_only("verify") or not self._allowed("verify"):
            return
        text = ("Compare every ISSU keyspace of the new cluster with the old one, cell by "
                "cell (read-only on both). While run-sync runs, changes not replayed yet "
                "count as differences; finalize verifies again.")
        self.push_screen(StepConfirm("Verify new against old?", text, "Yes, verify"),
                         callback=self._verify_confirmed)

    def _verify_confirmed(self, yes: bool | None) -> None:
        if not yes:
            self.notify("cancelled: nothing was asked")
            return
        self._run_intent("verify", self.backend.verify)

    @work(thread=True, group="action", exit_on_error=False)
    def _run_intent(self, what: str, add: Callable[[], int]) -> None:
        try:
            intent = add()
        except ActionRefused as exc:
            self.call_from_thread(self.notify, str(exc), title="refused", severity="error")
            return
        self.call_from_thread(self.notify, f"intent #{intent}: {what}")
        self.call_from_thread(self.action_refresh_now)

    def action_upgrade(self) -> None:
        self._start_move("upgrade")

    def action_rollback(self) -> None:
        self._start_move("rollback")

    def _start_move(self, action: str) -> None:
        if self._refuse_read_only(action) or not self._allowed(action):
            return
        screen = self.console_screen
        names = screen.chosen_computes() if screen else natural_sorted(self.state.marks)
        if not names:
            self.notify("nothing chosen: mark computes with space, or put the cursor on one")
            return
        self._check_move(action, names)

    @work(thread=True, group="action", exit_on_error=False)
    def _check_move(self, action: str, names: list[str]) -> None:
        check = self.backend.eligibility(action, names)
        self.call_from_thread(self._confirm_move, check)

    def _confirm_move(self, check: Eligibility) -> None:
        batch = self.backend.config.batch
        self.push_screen(MoveConfirm(check.action, list(check.eligible), list(check.skipped),
                                     batch.size, batch.parallel), callback=self._move_confirmed)

    def _move_confirmed(self, request: MoveRequest | None) -> None:
        if request is None:
            self.notify("cancelled: nothing was asked")
            return
        self._run_move(request)

    @work(thread=True, group="action", exit_on_error=False)
    def _run_move(self, request: MoveRequest) -> None:
        call = self.backend.upgrade if request.action == "upgrade" else self.backend.rollback
        try:
            intent = call(list(request.computes), batch_size=request.batch_size,
                          parallel=request.parallel)
        except ActionRefused as exc:
            self.call_from_thread(self.notify, str(exc), title="refused", severity="error")
            return
        self.call_from_thread(self._moved, request, intent)

    def _moved(self, request: MoveRequest, intent: int) -> None:
        self.state.marks.difference_update(request.computes)
        self.notify(f"intent #{intent}: {request.action} {len(request.computes)} computes "
                    f"(batches of {request.batch_size}, {request.parallel} in parallel)")
        self.action_refresh_now()

    def action_finalize(self) -> None:
        if self._refuse_read_only("finalize") or not self._allowed("finalize"):
            return
        snap = self.state.snapshot
        differences = snap.sync.verify_differences if snap else None
        force = bool(differences)
        way_back = self.backend.way_back_after_finalize()
        text = ("Old's config services stop and northbound clients switch to the new "
                f"cluster. After its point of no return abort is refused. The {way_back} "
                "(then `issu revert` goes back, until W closes the way back).")
        if force:
            text += (f"\nThe last verify found {differences:.0f} differences: finalizing "
                     "anyway is a forced finalize and needs a reason.")
        self.push_screen(TypedConfirm("finalize", text, force_needed=force),
                         callback=self._typed_confirmed)

    def action_abort(self) -> None:
        if self._refuse_read_only("abort") or not self._allowed("abort"):
            return
        text = ("Every compute is rolled back to the old cluster and the upgrade stops. "
                "Data on the old cluster is untouched.")
        self.push_screen(TypedConfirm("abort", text, offer_drop=True),
                         callback=self._typed_confirmed)

    def action_close_way_back(self) -> None:
        if self._refuse_read_only("close the way back") or not self._allowed("close-way-back"):
            return
        text = ("The reverse replication new -> old is drained (what new took until now is "
                "written to old), stopped and its queues deleted. `issu revert` is refused "
                "from then on: the old cluster may be retired.")
        self.push_screen(TypedConfirm("close", text, title="Close the way back to the old "
                                      "cluster?"), callback=self._typed_confirmed)

    def action_revert(self) -> None:
        if self._refuse_read_only("revert") or not self._allowed("revert"):
            return
        text = ("New is fenced, the reverse replication new -> old drained, the northbound "
                "clients and collectors pointed back at old, old's services started and "
                "every compute rolled back in batches (`issu revert --drop-new-data`). What "
                "new took since finalize is on old, translated back; new's synced keyspaces "
                "and ZooKeeper subtrees are then dropped (after the commit new holds newer "
                "data than a later copy from old could overwrite: a later upgrade copies "
                "again from pre-sync).")
        self.push_screen(TypedConfirm("revert", text, title="Go back to the old cluster?"),
                         callback=self._typed_confirmed)

    def _typed_confirmed(self, result: TypedResult | None) -> None:
        if result is None:
            self.notify("cancelled: nothing was asked")
            return
        self._run_typed(result)

    @work(thread=True, group="action", exit_on_error=False)
    def _run_typed(self, result: TypedResult) -> None:
        try:
            if result.word == "finalize":
                intent = self.backend.finalize(force=result.force, reason=result.reason)
            elif result.word == "close":
                intent = self.backend.close_way_back()
            elif result.word == "revert":
                intent = self.backend.revert(drop_new_data=True)  # required after the commit
            else:
                intent = self.backend.abort(drop_new_data=result.drop_new_data)
        except ActionRefused as exc:
            self.call_from_thread(self.notify, str(exc), title="refused", severity="error")
            return
        self.call_from_thread(self.notify, f"intent #{intent}: {result.word}")
        self.call_from_thread(self.action_refresh_now)

    def action_runsync(self, action: str) -> None:
        """`R`: stop run-sync and hold it stopped, or start it again, after a confirmation."""
        if self._refuse_read_only("run-sync") or not self._allowed("runsync"):
            return
        if action == "stop":
            title, yes = "Stop run-sync?", "Yes, stop run-sync"
            text = ("run-sync stops and stays stopped until R starts it again: config changes "
                    "on old are not replayed into new meanwhile (they wait in run-sync's "
                    "durable queue on the old RabbitMQ). Finalize waits until it runs again.")
        else:
            title, yes = "Start run-sync again?", "Yes, start run-sync"
            text = ("run-sync starts again and replays into new what changed on old while it "
                    "was stopped, then every change as it comes.")
        self.push_screen(StepConfirm(title, text, yes),
                         callback=lambda ok: self._runsync_confirmed(ok, action))

    def _runsync_confirmed(self, yes: bool | None, action: str) -> None:
        if not yes:
            self.notify("cancelled: nothing was asked")
            return
        self._run_intent(f"{action} run-sync", lambda: self.backend.runsync(action))

    def action_toggle_executor(self) -> None:
        if self._refuse_read_only("pause / resume the executor"):
            return
        snap = self.state.snapshot
        action = "resume" if snap is not None and snap.phase.paused else "pause"
        if not self._allowed(action):
            return
        self._run_toggle(action)

    @work(thread=True, group="action", exit_on_error=False)
    def _run_toggle(self, action: str) -> None:
        try:
            intent = self.backend.pause() if action == "pause" else self.backend.resume()
        except ActionRefused as exc:
            self.call_from_thread(self.notify, str(exc), title="refused", severity="error")
            return
        self.call_from_thread(self.notify, f"intent #{intent}: {action} the executor")
        self.call_from_thread(self.action_refresh_now)

    # ------------------------------------------------------------------ leaving

    async def action_quit(self) -> None:
        self._check_quit()

    @work(thread=True, group="quit", exit_on_error=False)
    def _check_quit(self) -> None:
        work_left = self.backend.running_work()
        self.call_from_thread(self._quit_or_refuse, work_left)

    def _quit_or_refuse(self, work_left: list[str]) -> None:
        if not work_left:
            self.exit(0)
            return
        listed = "\n".join(f"  - {w}" for w in work_left[:10])
        more = f"\n  and {len(work_left) - 10} more" if len(work_left) > 10 else ""
        config = self.backend.options.config_path
        self.push_screen(NoticeScreen(
            "This console runs the upgrade: not quitting",
            f"This console holds the journal's writer lock and runs the executor; work is "
            f"in flight:\n{listed}{more}\n\nLeaving now would stop it. To hand it over:\n"
            f"  1. press P to pause the executor (nothing new starts),\n"
            f"  2. wait until nothing is in flight, then quit (q),\n"
            f"  3. run `issu daemon --config {config}`: it takes the lock, resumes from the "
            f"journal and runs headless;\n"
            f"  4. `issu tui --config {config}` then watches it (read-only)."))

    def _watch_terminal(self) -> None:
        """Leave cleanly when the SSH connection (the terminal) goes away."""
        try:
            self._tty_fd = sys.__stdin__.fileno() if sys.__stdin__ else None
        except (OSError, ValueError):
            self._tty_fd = None
        import asyncio

        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._terminal_gone)
        except (RuntimeError, NotImplementedError, ValueError) as exc:
            # not the main thread, or no loop signal support: the periodic terminal check
            # below notices a lost terminal instead (within 3 s)
            self.log.warning(f"SIGHUP not hooked ({exc}); the terminal is checked every 3 s")
        self.set_interval(3.0, self._check_terminal)

    def _check_terminal(self) -> None:
        fd = self._tty_fd
        if fd is None:
            return
        try:
            if not os.isatty(fd):
                raise OSError("not a terminal any more")
            termios.tcgetattr(fd)  # EIO once the pty is hung up
        except OSError:
            self._terminal_gone()

    def _terminal_gone(self) -> None:
        """The terminal is gone: leave now. Work this console was running is handed over
        to a headless `issu daemon` once the writer lock is released (see tui_cli)."""
        with contextlib.suppress(Exception):  # leaving is what matters now
            work_left = self.backend.running_work()
            self.handover = bool(work_left)
            self.backend.note("console lost its terminal and exits" + (
                f"; {len(work_left)} item(s) in flight go to a headless `issu daemon`"
                if work_left else ""))
        self.exit(129, return_code=129)


class RehearsalApp(App[int]):
    """`issu tui --rehearsal REPORT.json`: a rehearsal shown like an upgrade, read-only (no
    journal, no executor, no cluster)."""

    TITLE = "issu rehearsal"
    ENABLE_COMMAND_PALETTE = False

    def __init__(self, view: RehearsalView) -> None:
        super().__init__()
        self.view = view

    def on_mount(self) -> None:
        self.push_screen(RehearsalScreen(self.view))
