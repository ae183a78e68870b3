"""The operator console's core API: what the screens read and the only way they act.

The screens never touch the journal, the orchestrator or a backend: the App is given a
`ConsoleBackend` (injected, harlequin style) and calls it from worker threads. Reads are
snapshots of the journal (phase, computes, sync counters, events) plus the live analytics
feed; actions only add intents to the journal, which the executor (the orchestrator, in this
process or headless in `issu daemon`) consumes. A read-only backend refuses every action.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from backends.analytics import (
    Alarm,
    AnalyticsPoller,
    AnalyticsSnapshot,
    ClusterAnalytics,
    ComputeReport,
)
from issu_tui.config import IssuConfig
from issu_tui.controller_view import ControllersView, controller_hosts
from issu_tui.journal import (
    ComputeChanges,
    ComputeRow,
    Event,
    Intent,
    Journal,
    JournalError,
    JournalLocked,
)
from issu_tui.names import natural_sorted
from issu_tui.orchestrator import phases
from issu_tui.rehearsal_view import RehearsalView
from issu_tui.ring_view import RingView, ring_view

# The actions the console offers in some phase, in the registry's order of intents.
ACTIONS = tuple(i.name for i in phases.INTENTS if any(i.name in p.offers for p in phases.PHASES))
UPGRADABLE = ("old", "failed", "unknown")
ROLLBACKABLE = ("upgraded", "failed", "unknown")
BUSY_STATES = ("queued", "upgrading", "rolling-back")
LAG_HISTORY = 120

# The screens see the analytics model and a rehearsal's report through this module, never
# the backend itself.
__all__ = ["Alarm", "AnalyticsSnapshot", "ClusterAnalytics", "ComputeReport", "ConsoleBackend",
           "RehearsalView"]


class ActionRefused(Exception):
    """The console asked for something not allowed now; the message says why."""


@dataclass(frozen=True)
class PhaseStep:
    name: str
    status: str  # done, current, pending, skipped (after an abort)
    title: str = ""  # what the phase does, from the phase registry


@dataclass(frozen=True)
class NextStep:
    """The one next safe action, and its key. `action` is what `n` does: `phase` (run the
    phase `target` through a phase intent), `upgrade` (the computes left, through the
    upgrade dialog), `finalize`, `ring` (the approach's ring steps of `target`: computes or
    done), or `wait` / `resume` / `none` (n only says `says`)."""

    action: str
    says: str
    target: str = ""
    computes: tuple[str, ...] = ()
    detail: str = ""  # for the confirmation: what the step does and touches


@dataclass(frozen=True)
class PhaseView:
    phase: str | None            # None: nothing planned yet
    started_at: float | None
    in_phase_s: float
    from_version: str | None
    to_version: str | None
    note: str
    steps: tuple[PhaseStep, ...]
    running: str                 # what is in flight, in words
    next_action: str             # the next safe action, in words
    allowed: frozenset[str]
    paused: bool
    executor: str                # who drives the upgrade
    next_step: NextStep = NextStep("none", "")
    ring: RingView | None = None  # a shared-hardware approach's ring steps (grow, stay, rolling)


@dataclass(frozen=True)
class TableCount:
    scope: str                   # presync / postsync
    keyspace: str
    table: str
    copied: float
    deleted: float
    quarantined: float
    slices_done: float
    slices_total: float
    verify_old: float | None = None  # cells on old / on new at the last verify
    verify_new: float | None = None


@dataclass(frozen=True)
class CopyRate:
    """How fast the copy that runs goes (pre-sync or post-sync), from its checkpoints over
    the last minute. The copy goes table by table and a table's slice count is known once
    its first slice is done, so the ETA is the current table's."""

    job: str                      # pre-sync, post-sync
    cells_per_s: float | None     # None: fewer than two slices in the window
    table: str                    # keyspace.table of the newest slice
    slices_done: int
    slices_total: int
    table_eta_s: float | None     # the current table's slices left at its slice rate
    idle_s: float                 # since the newest slice (a stopped copy grows this)


# run-sync writes its counters every 2 s while it consumes: silent this long, the numbers shown
# are old (run-sync stopped or stalled, or cut from RabbitMQ)
RUNSYNC_SILENT_S = 15.0


@dataclass(frozen=True)
class SyncView:
    lag_s: float | None
    lag_p50_s: float | None
    lag_p99_s: float | None
    applied: float
    applied_per_s: float
    failed: float
    quarantined: float
    queue_depth: float
    reconciled: float
    lag_history: tuple[float, ...]
    updated_at: float | None
    tables: tuple[TableCount, ...]
    verify_differences: float | None
    verify_checked: float | None
    verify_at: float | None
    runsync: str = "not started"  # not started, running, held (R), stopped (by finalize)
    copy_rate: CopyRate | None = None
    report_age_s: float | None = None  # since run-sync last wrote its counters (every 2 s)


@dataclass(frozen=True)
class PreflightCheck:
    name: str
    ok: bool
    severity: str   # error (refuses), warning (reported only)
    evidence: str   # what the check found
    fix: str        # what the operator should do about it ('' when it passed)

    @property
    def result(self) -> str:
        if self.ok:
            return "ok"
        return "warn" if self.severity == "warning" else "FAIL"


@dataclass(frozen=True)
class PreflightView:
    """The checks of the newest preflight run (a phase intent that ran preflight)."""

    intent: int
    at: float
    by: str
    status: str     # passed, refused (a check failed), failed (it could not run: `error`)
    checks: tuple[PreflightCheck, ...]
    error: str = ""

    @property
    def summary(self) -> str:
        if not self.checks:
            return f"preflight failed: {self.error.splitlines()[0] if self.error else '?'}"
        counts = {r: sum(1 for c in self.checks if c.result == r) for r in ("ok", "FAIL",
                                                                             "warn")}
        said = f"{counts['ok']} passed"
        if counts["FAIL"]:
            said += f", {counts['FAIL']} failed"
        if counts["warn"]:
            said += f", {counts['warn']} warning{'s' if counts['warn'] != 1 else ''}"
        return said


def preflight_view(intents: Sequence[Intent]) -> PreflightView | None:
    """From the newest finished phase intent that has preflight's checks in its result, or
    that failed running preflight without any."""
    for intent in reversed(intents):
        if intent.kind != "phase" or intent.status not in ("done", "failed"):
            continue
        try:
            result = json.loads(intent.result) if intent.result else {}
        except ValueError:
            result = {}
        if not isinstance(result, dict):
            continue
        raw = result.get("checks")
        if isinstance(raw, list):
            checks = tuple(
                PreflightCheck(str(c.get("name", "?")), bool(c.get("ok")),
                               str(c.get("severity", "error")), str(c.get("detail", "")),
                               str(c.get("fix", "")))
                for c in raw if isinstance(c, dict))
            refused = any(c.result == "FAIL" for c in checks)
            status = "refused" if refused else ("passed" if intent.status == "done"
                                                else "failed")
            return PreflightView(intent.id, intent.at, intent.by, status, checks,
                                 str(result.get("error", "")))
        if intent.status == "failed" and intent.args.get("target") == "preflight":
            return PreflightView(intent.id, intent.at, intent.by, "failed", (),
                                 str(result.get("error", intent.result)))
    return None


@dataclass(frozen=True)
class ConsoleSnapshot:
    taken_at: float
    phase: PhaseView
    sync: SyncView
    computes: tuple[ComputeRow, ...]  # changed after the caller's compute_seq (0: every one)
    events: tuple[Event, ...]     # new events after the id the caller gave
    pending_intents: tuple[Intent, ...]
    phase_history: tuple[dict[str, Any], ...] = ()
    preflight: PreflightView | None = None  # the newest preflight run's checks (`c`)
    compute_seq: int = 0          # pass back as `computes_since` in the next snapshot


@dataclass(frozen=True)
class ComputeDetail:
    row: ComputeRow
    history: tuple[dict[str, Any], ...]
    commands: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Eligibility:
    action: str
    eligible: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]  # (name, why)


class EmbeddedExecutor(Protocol):
    """The orchestrator when it runs inside this console (the console then owns the work)."""

    def start(self) -> None: ...
    def stop(self) -> None: ...


@dataclass
class ConsoleOptions:
    read_only: bool = False
    read_only_reason: str = ""
    owns_executor: bool = False   # this process holds the journal's writer lock
    config_path: str = "issu.toml"
    clock: Callable[[], float] = time.time
    actor: str = field(default_factory=lambda: _default_actor())


def _default_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"tui:{user}@{socket.gethostname()}:{os.getpid()}"


class ConsoleBackend:
    """Snapshot reads and intent-only actions over one journal; thread-safe (the journal is)."""

    def __init__(self, config: IssuConfig, journal: Journal,
                 options: ConsoleOptions | None = None,
                 analytics: AnalyticsPoller | None = None) -> None:
        self.config = config
        self.journal = journal
        self.options = options or ConsoleOptions()
        self.analytics = analytics
        self._lag_history: deque[float] = deque(maxlen=LAG_HISTORY)
        self._lag_seen_at: float | None = None
        self._fleet = FleetCounts()
        # the journal's step markers, read once per look (a snapshot, a check before an
        # action) and kept for that look in its own thread only: see _one_look
        self._look = threading.local()

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, config: IssuConfig, *, read_only: bool = False, attach: bool = False,
             config_path: str = "issu.toml", with_analytics: bool = True) -> ConsoleBackend:
        """Open the journal; become its writer unless asked not to or someone else is.

        A second console finds the writer lock held and attaches read-only, saying by whom.
        `attach` queues intents for the executor running elsewhere (`issu daemon`) without
        ever becoming the executor.
        """
        reason = "started with --read-only" if read_only else ""
        journal_path = config.state_dir / "journal.db"
        owns = False
        if read_only:
            journal = Journal(journal_path, read_only=True)
        elif attach:
            if not journal_path.exists():
                raise JournalError(f"{journal_path}: no journal here yet (plan the upgrade)")
            journal = Journal(journal_path)
        else:
            journal = Journal(journal_path)
            try:
                journal.acquire_writer()
                owns = True
            except JournalLocked as exc:
                journal.close()
                journal = Journal(journal_path, read_only=True)
                read_only, reason = True, str(exc)
        options = ConsoleOptions(read_only=read_only, read_only_reason=reason,
                                 owns_executor=owns, config_path=config_path)
        poller = analytics_poller(config) if with_analytics else None
        return cls(config, journal, options, poller)

    def close(self) -> None:
        if self.analytics is not None:
            self.analytics.close()
        self.journal.close()

    @property
    def read_only(self) -> bool:
        return self.options.read_only

    # ------------------------------------------------------------------ reads

    def snapshot(self, *, events_after: int = 0, event_limit: int = 500,
                 computes_since: int = 0) -> ConsoleSnapshot:
        """The journal now. Computes and events come as what changed since the caller's last
        snapshot (`computes_since`: its `compute_seq`; `events_after`: the last event id), so
        the cost of a poll follows the changes, not the size of the fleet."""
        now = self.options.clock()
        changes = self.journal.computes_since(computes_since)
        counts = self._fleet.update(self.journal, changes, computes_since)
        pending = tuple(self._open_intents())
        if events_after:
            events = tuple(self.journal.events(after_id=events_after, limit=event_limit))
        else:
            events = tuple(self.journal.last_events(event_limit))
        with self._one_look():
            phase, sync = self._phase_view(now, counts, pending), self.sync_view()
        return ConsoleSnapshot(taken_at=now, phase=phase, sync=sync, computes=changes.rows,
                               events=events, pending_intents=pending,
                               phase_history=tuple(self.journal.phase_history()[-100:]),
                               preflight=self.preflight_results(),
                               compute_seq=changes.seq)

    def preflight_results(self) -> PreflightView | None:
        """Every check of the newest preflight run, with its evidence and fix."""
        return preflight_view(self.journal.last_intents("phase"))

    def _open_intents(self) -> list[Intent]:
        """Intents not finished yet: pending, or running in the executor."""
        return self.journal.intents("pending") + self.journal.intents("running")

    def _paused(self) -> bool:
        toggles = [i for i in self.journal.intents(None)
                   if i.kind in ("pause", "resume") and i.status not in ("failed", "refused")]
        return bool(toggles) and toggles[-1].kind == "pause"

    def _running_intent(self, intent: Intent) -> str:
        """`pre-sync #3`, `finalize post-sync #12`: what the executor runs now; for
        finalize the step it is at (the step's own `<step>: running` event)."""
        what = str(intent.args.get("target") or intent.kind) if intent.kind == "phase" \
            else intent.kind
        if intent.kind == "finalize":
            step = self.journal.last_event("finalize", since=intent.at)
            name = step.fields.get("step") if step is not None else None
            if name:
                what += f" {name}"
        return f"{what} #{intent.id}"

    def _phase_view(self, now: float, counts: Mapping[str, int],
                    pending: Sequence[Intent]) -> PhaseView:
        info = self.journal.phase()
        holder = self.journal.executor()
        if self.options.owns_executor:
            executor = "this console"
        elif holder:
            executor = f"pid {holder['pid']} on {holder['host']}"
        else:
            executor = "nobody (start `issu daemon`)"
        paused = self._paused()
        busy = [f"{counts[s]} {s}" for s in BUSY_STATES if counts.get(s)]
        busy += [self._running_intent(i) for i in pending if i.status == "running"]
        queued = sum(1 for i in pending if i.status != "running")
        if queued:
            busy.append(f"{queued} intent{'s' if queued != 1 else ''} queued")
        running = ", ".join(busy) or "nothing"
        forward = [p for p in phases.PHASES if p.line is phases.Line.FORWARD]
        if info is None:
            says = ("wait: the executor records the plan when it starts"
                    if self.options.owns_executor or holder else
                    f"plan the upgrade: issu plan --config {self.options.config_path}")
            return PhaseView(None, None, 0.0, None, None, "",
                             tuple(PhaseStep(p.name, "pending", p.title) for p in forward),
                             running, says, frozenset(), paused, executor,
                             NextStep("wait", says))
        phase = info.phase
        steps = []
        if phases.phase(phase).line is phases.Line.ABORT:
            steps = [PhaseStep(p.name, "skipped", p.title) for p in forward]
        else:
            index = [p.name for p in forward].index(phase)
            for i, spec in enumerate(forward):
                status = "done" if i < index else "current" if i == index else "pending"
                if i == index and spec.terminal:
                    status = "done"
                steps.append(PhaseStep(spec.name, status, spec.title))
        next_phase = self._next_phase(phase)
        ring = self._ring(phase)
        allowed = self._allowed(phase, counts, pending, paused, next_phase, ring)
        step = self._next_step(phase, counts, allowed, pending, paused, next_phase, ring)
        return PhaseView(phase, info.phase_started_at, max(0.0, now - info.phase_started_at),
                         info.from_version, info.to_version, info.note, tuple(steps), running,
                         step.says, allowed, paused, executor, step, ring)

    @contextmanager
    def _one_look(self) -> Iterator[None]:
        """Inside: the step markers are read from the journal once (the phase view asked
        for them four or five times per poll)."""
        self._look.done = self.journal.steps_done()
        try:
            yield
        finally:
            self._look.done = None

    def _steps_done(self) -> Mapping[str, float]:
        done: Mapping[str, float] | None = getattr(self._look, "done", None)
        return done if done is not None else self.journal.steps_done()

    def _ring(self, phase: str | None) -> RingView | None:
        """The approach's ring steps as `phase` sees them (None: the approach has none)."""
        approach = self.journal.orchestrator_state().approach
        done = self._steps_done()
        return ring_view(self.config, approach, phase, done, phases.WAY_BACK_CLOSED in done)

    def _next_phase(self, phase: str) -> str | None:
        """The phase `n` runs next: the first one run-sync included not done yet, while the
        current phase offers running phases (before run-sync); None from run-sync on."""
        if "phase" not in phases.phase(phase).offers:
            return None
        done = self._steps_done()
        for name in phases.RUNNABLE[:phases.RUNNABLE.index("run-sync") + 1]:
            if phases.phase_marker(name) not in done:
                return name
        return None

    def _allowed(self, phase: str, counts: Mapping[str, int], pending: Sequence[Intent],
                 paused: bool, next_phase: str | None = None,
                 ring: RingView | None = None) -> frozenset[str]:
        offers = phases.phase(phase).offers
        if self.read_only or not offers:
            return frozenset()
        allowed = set()
        toggle = "resume" if paused else "pause"
        if toggle in offers:
            allowed.add(toggle)
        working = [i for i in pending if not _control(i)]
        if "phase" in offers and next_phase is not None and not working and not paused:
            allowed.add("phase")
        if "verify" in offers and not any(i.kind == "verify" for i in pending):
            allowed.add("verify")
        if ("runsync" in offers and not any(i.kind == "runsync" for i in pending)
                and self._runsync_state() in ("running", "held")):
            allowed.add("runsync")
        if "upgrade" in offers and _count(counts, UPGRADABLE):
            allowed.add("upgrade")
        if "rollback" in offers and _count(counts, ROLLBACKABLE):
            allowed.add("rollback")
        if "abort" in offers:
            allowed.add("abort")
        for kind in ("close-way-back", "revert"):
            if (kind in offers and self._way_back_open()
                    and not any(i.kind in ("close-way-back", "revert") for i in pending)):
                allowed.add(kind)
        moving = any(i.kind in ("upgrade", "rollback") for i in pending)
        ring_when = ring.when if ring is not None else None
        if ("ring" in offers and ring_when is not None and ring is not None and not ring.waits
                and not paused and not working
                and (ring_when != "computes" or _all_moved(counts, moving))):
            allowed.add("ring")
        if ("finalize" in offers and self._runsync_state() != "held"
                and _all_moved(counts, moving) and ring_when != "computes"):
            allowed.add("finalize")
        return frozenset(allowed)

    def _next_step(self, phase: str, counts: Mapping[str, int], allowed: frozenset[str],
                   pending: Sequence[Intent], paused: bool,
                   next_phase: str | None, ring: RingView | None = None) -> NextStep:
        spec = phases.phase(phase)
        if spec.line is phases.Line.ABORT:
            return NextStep("none", "nothing: the upgrade was aborted") if spec.terminal \
                else NextStep("wait", "wait: the abort is rolling back")
        working = [i for i in pending if not _control(i)]
        if ring is not None and ring.when is not None:
            ring_step = _ring_next(ring, allowed, working, terminal=spec.terminal)
            if ring_step is not None:
                return ring_step
        if spec.terminal and "close-way-back" in allowed:
            return NextStep("none", "nothing: the upgrade is finished; the way back is open "
                            "(the reverse replication new -> old runs): W closes it once "
                            "new is trusted, B goes back to old")
        if spec.terminal:
            return NextStep("none", "nothing: the upgrade is finished")
        if paused:
            return NextStep("resume", "resume the executor (P) when ready")
        if working:
            return NextStep("wait", f"wait: {_doing(working[0])}"
                            + (f" (and {len(working) - 1} more intents)"
                               if len(working) > 1 else ""))
        if next_phase is not None:
            again = " again" if phase == next_phase else ""
            says = f"n: run {next_phase}{again} ({phases.phase(next_phase).title})"
            return NextStep("phase", says, target=next_phase)
        if "runsync" in allowed and self._runsync_state() == "held":
            return NextStep("runsync", "n: start run-sync again (R: held stopped)")
        if "finalize" in allowed:
            return NextStep("finalize", "n: finalize (every compute is on the new cluster)")
        if "upgrade" in spec.offers:
            left = _count(counts, UPGRADABLE)
            busy = _count(counts, BUSY_STATES)
            if busy:
                return NextStep("wait", f"wait: {busy} compute{'s' if busy != 1 else ''} "
                                "moving")
            if left:
                return NextStep("upgrade", f"n: upgrade the {left} left on old")
            return NextStep("wait", "finalize when every compute is upgraded")
        return NextStep("wait", f"wait: {phase} runs on its own")

    def _way_back_open(self) -> bool:
        """After finalize: the reverse replication was started and close-way-back not run."""
        done = self._steps_done()
        return phases.REVERSE_STARTED in done and phases.WAY_BACK_CLOSED not in done

    def _runsync_state(self) -> str:
        """not started, running, held (stopped by the operator), stopped (by finalize)."""
        done = self._steps_done()
        if phases.phase_marker("run-sync") not in done:
            return "not started"
        if any(m in done for m in ("finalize.run-sync-stopping", "finalize.stop-run-sync")):
            return "stopped"
        if phases.RUNSYNC_HELD in done:
            return "held"
        return "running"

    def sync_view(self) -> SyncView:
        runsync = self.journal.counters("runsync")
        updated = self.journal.counters_updated_at("runsync")
        if "lag_s" in runsync and updated is not None and updated != self._lag_seen_at:
            self._lag_seen_at = updated
            self._lag_history.append(runsync["lag_s"])
        verified: dict[str, dict[str, float]] = {}
        for key, value in self.journal.counters("verify.tables").items():
            name, _, side = key.rpartition(".")
            verified.setdefault(name, {})[side] = value
        per: dict[tuple[str, str, str], dict[str, float]] = {}
        # what the copy jobs checkpoint as they go (cells per finished slice)...
        for job, name, done, total, cells in self.journal.checkpoint_progress():
            scope = _COPY_SCOPES.get(job)
            if scope is not None:
                keyspace, _, table = name.partition(".")
                per[(scope, keyspace, table)] = {"copied": float(cells),
                                                 "slices_done": float(done),
                                                 "slices_total": float(total)}
        # ...and per-table counters where a job publishes them
        for scope in ("presync", "postsync"):
            for key, value in self.journal.counters(scope).items():
                name, _, metric = key.rpartition(".")
                keyspace, _, table = name.partition(".")
                per.setdefault((scope, keyspace, table), {})[metric] = value
        tables = []
        for (scope, keyspace, table), m in sorted(per.items()):
            seen = verified.get(f"{keyspace}.{table}", {})
            tables.append(TableCount(scope, keyspace, table, m.get("copied", 0.0),
                                     m.get("deleted", 0.0), m.get("quarantined", 0.0),
                                     m.get("slices_done", 0.0), m.get("slices_total", 0.0),
                                     seen.get("old"), seen.get("new")))
        verify = self.journal.counters("verify")
        progress = {(job, name): (done, total) for job, name, done, total, _ in
                    self.journal.checkpoint_progress()}
        return SyncView(
            lag_s=runsync.get("lag_s"), lag_p50_s=runsync.get("lag_p50_s"),
            lag_p99_s=runsync.get("lag_p99_s"), applied=runsync.get("applied", 0.0),
            applied_per_s=runsync.get("applied_per_s", 0.0), failed=runsync.get("failed", 0.0),
            quarantined=runsync.get("quarantined", 0.0) + sum(t.quarantined for t in tables),
            queue_depth=runsync.get("queue_depth", 0.0),
            reconciled=runsync.get("reconciled", 0.0),
            lag_history=tuple(self._lag_history), updated_at=updated, tables=tuple(tables),
            verify_differences=verify.get("differences"), verify_checked=verify.get("checked"),
            verify_at=verify.get("at"), runsync=self._runsync_state(),
            copy_rate=copy_rate(self.journal.recent_slices(RATE_WINDOW_S), progress,
                                self.options.clock()),
            report_age_s=None if updated is None else max(0.0, self.options.clock() - updated))

    def seed_lag_history(self, values: Iterable[float]) -> None:
        """Prime the sparkline (the journal keeps only the newest lag)."""
        self._lag_history.extend(values)

    def events(self, *, kind: str | None = None, text: str | None = None,
               level: str | None = None, limit: int = 1000) -> list[Event]:
        found = self.journal.events(kind=kind, text=text, limit=100_000)
        if level:
            found = [e for e in found if e.level == level]
        return found[-limit:]

    def compute_detail(self, name: str) -> ComputeDetail | None:
        row = self.journal.compute(name)
        if row is None:
            return None
        return ComputeDetail(row, tuple(self.journal.compute_history(name)),
                             tuple(self.journal.command_output(name)))

    def poll_analytics(self) -> AnalyticsSnapshot | None:
        return self.analytics.poll() if self.analytics is not None else None

    @property
    def has_controllers(self) -> bool:
        """Controller hosts in the inventory, and SSH to ask them."""
        return self.config.ssh is not None and bool(controller_hosts(self.config))

    def poll_controllers(self) -> ControllersView | None:
        from issu_tui.controller_poll import poll_controllers  # SSH: only when polled

        return poll_controllers(self.config)

    def running_work(self) -> list[str]:
        """What would stop if the executor inside this process went away now."""
        if not self.options.owns_executor:
            return []
        work = [f"{c.name} is {c.state}" for c in self.journal.computes()
                if c.state in ("upgrading", "rolling-back", "queued")]
        # phases (pre-sync, finalize, abort...) run as intents: an open one is work in flight
        work += [f"intent #{i.id} {i.kind} is {i.status}" for i in self._open_intents()]
        return work

    # ------------------------------------------------------------------ actions

    def _refuse_if_read_only(self) -> None:
        if self.read_only:
            why = f" ({self.options.read_only_reason})" if self.options.read_only_reason else ""
            raise ActionRefused(f"this console is read-only{why}")

    def _require(self, action: str) -> None:
        self._refuse_if_read_only()
        info = self.journal.phase()
        counts = state_counts(self.journal.computes())
        pending = self._open_intents()
        with self._one_look():
            allowed = self._allowed(info.phase, counts, pending, self._paused(),
                                    self._next_phase(info.phase),
                                    self._ring(info.phase)) if info else set()
        if action not in allowed:
            phase = info.phase if info else "not planned"
            raise ActionRefused(f"{action} is not allowed now (phase: {phase})")

    def eligibility(self, action: str, names: Iterable[str]) -> Eligibility:
        """Which of the chosen computes the action applies to, and why the others do not."""
        states = UPGRADABLE if action == "upgrade" else ROLLBACKABLE
        busy_intents = {n for i in self._open_intents()
                        if i.kind in ("upgrade", "rollback")
                        for n in i.args.get("computes", [])}
        eligible, skipped = [], []
        for name in names:
            row = self.journal.compute(name)
            if row is None:
                skipped.append((name, "not in the journal"))
            elif name in busy_intents:
                skipped.append((name, "already has a pending action"))
            elif row.state not in states:
                skipped.append((name, f"is {row.state}"))
            else:
                eligible.append(name)
        return Eligibility(action, tuple(eligible), tuple(skipped))

    def _move(self, action: str, names: Sequence[str], batch_size: int, parallel: int) -> int:
        self._require(action)
        if batch_size < 1 or parallel < 1:
            raise ActionRefused("batch size and parallelism must be at least 1")
        check = self.eligibility(action, names)
        if check.skipped:
            listed = ", ".join(f"{n} {why}" for n, why in check.skipped[:5])
            more = f" and {len(check.skipped) - 5} more" if len(check.skipped) > 5 else ""
            raise ActionRefused(f"cannot {action}: {listed}{more}")
        if not check.eligible:
            raise ActionRefused(f"{action}: no compute chosen")
        return self.journal.add_intent(action, {"computes": list(check.eligible),
                                                "batch_size": batch_size,
                                                "parallel": parallel}, self.options.actor)

    def upgrade(self, names: Sequence[str], *, batch_size: int, parallel: int) -> int:
        return self._move("upgrade", names, batch_size, parallel)

    def rollback(self, names: Sequence[str], *, batch_size: int, parallel: int) -> int:
        return self._move("rollback", names, batch_size, parallel)

    def finalize(self, *, force: bool = False, reason: str = "") -> int:
        self._require("finalize")
        if force and not reason.strip():
            raise ActionRefused("a forced finalize needs a reason")
        return self.journal.add_intent("finalize", {"force": force, "reason": reason},
                                       self.options.actor)

    def abort(self, *, drop_new_data: bool = False) -> int:
        self._require("abort")
        return self.journal.add_intent("abort", {"drop_new_data": drop_new_data},
                                       self.options.actor)

    def way_back_after_finalize(self) -> str:
        """Whether `issu revert` will be possible after finalize's point of no return (every
        translator on the path declares its inverse), in a sentence."""
        from issu_tui.orchestrator.plan import way_back

        return way_back(self.config)

    def revert(self, *, drop_new_data: bool = False) -> int:
        """After finalize, while the way back is open: back to the old cluster through the
        reverse replication (new fenced, drained back, northbound and computes back)."""
        self._require("revert")
        return self.journal.add_intent("revert", {"drop_new_data": drop_new_data},
                                       self.options.actor)

    def close_way_back(self) -> int:
        """After finalize: drain and stop the reverse replication; revert refused after."""
        self._require("close-way-back")
        return self.journal.add_intent("close-way-back", {}, self.options.actor)

    def next_step(self) -> NextStep:
        """The next safe action now, read from the journal (not from the last snapshot)."""
        info = self.journal.phase()
        if info is None:
            return NextStep("wait", "wait: the executor records the plan when it starts")
        counts = state_counts(self.journal.computes())
        pending = self._open_intents()
        paused = self._paused()
        with self._one_look():
            next_phase = self._next_phase(info.phase)
            ring = self._ring(info.phase)
            allowed = self._allowed(info.phase, counts, pending, paused, next_phase, ring)
            step = self._next_step(info.phase, counts, allowed, pending, paused, next_phase,
                                   ring)
        if step.action == "upgrade":
            left = tuple(natural_sorted(c.name for c in self.journal.computes()
                                        if c.state in UPGRADABLE))
            step = NextStep(step.action, step.says, computes=left)
        elif step.action == "phase":
            spec = phases.phase(step.target)
            detail = (f"{spec.title}.\n\nTouches: {spec.touches}.\nRuns: {spec.runs.value}."
                      "\n\nIt runs as an intent in the journal; the event log follows it.")
            if step.target == "pre-sync" and ring is not None and ring.when == "plan":
                # pre-sync runs them first (executor.ring_steps_before_sync): they stop nodes
                detail = (f"First the ring steps of plan ({ring.approach}), before anything "
                          f"is copied:\n{ring.detail()}\n\nThen pre-sync: {detail}")
            step = NextStep(step.action, step.says, target=step.target, detail=detail)
        return step

    def run_phase(self, target: str) -> int:
        """Run the next phase (only that one: `target` must be what `n` offers now)."""
        self._require("phase")
        info = self.journal.phase()
        expected = self._next_phase(info.phase) if info else None
        if target != expected:
            raise ActionRefused(f"{target} is not the next phase (next: {expected or 'none'})")
        return self.journal.add_intent("phase", {"target": target}, self.options.actor)

    def run_ring(self, when: str) -> int:
        """Run the approach's ring steps of `when` (only the group `n` offers now)."""
        self._require("ring")
        info = self.journal.phase()
        ring = self._ring(info.phase if info else None)
        if ring is None or ring.when != when:
            raise ActionRefused(f"the ring steps of {when} are not the next ones (next: "
                                f"{ring.when if ring and ring.when else 'none'})")
        return self.journal.add_intent("ring", {"approach": ring.approach, "when": when},
                                       self.options.actor)

    def verify(self) -> int:
        self._require("verify")
        return self.journal.add_intent("verify", {}, self.options.actor)

    def runsync(self, action: str) -> int:
        """Stop run-sync and hold it stopped, or start it again (`R`)."""
        self._require("runsync")
        state = self._runsync_state()
        if action not in ("stop", "start"):
            raise ActionRefused(f"run-sync: {action!r} is neither stop nor start")
        if action == "stop" and state != "running":
            raise ActionRefused(f"run-sync is {state}: nothing to stop")
        if action == "start" and state != "held":
            raise ActionRefused(f"run-sync is {state}: it was not stopped by hand")
        return self.journal.add_intent("runsync", {"action": action}, self.options.actor)

    def pause(self) -> int:
        self._require("pause")
        return self.journal.add_intent("pause", {}, self.options.actor)

    def resume(self) -> int:
        self._require("resume")
        return self.journal.add_intent("resume", {}, self.options.actor)

    def note(self, message: str) -> None:
        """An event from the console itself (e.g. it lost its terminal); silent when read-only."""
        if not self.read_only:
            self.journal.event("console", message, actor=self.options.actor)


_COPY_SCOPES = {"pre-sync": "presync", "post-sync": "postsync"}  # copy job -> table scope
RATE_WINDOW_S = 60.0
_COMPLETE_TABLE = "*"  # the copy marks a finished job with a slice of this table


def copy_rate(recent: Sequence[tuple[str, str, str, int, float]],
              progress: Mapping[tuple[str, str], tuple[int, int]],
              now: float) -> CopyRate | None:
    """The copy running now (the job with the newest checkpoint, unless that job finished),
    from `recent` (Journal.recent_slices) and the slices done / in all per (job, table)."""
    slices = [s for s in recent if s[0] in _COPY_SCOPES]
    if not slices:
        return None
    job = slices[-1][0]
    mine = [s for s in slices if s[0] == job]
    if any(table == _COMPLETE_TABLE for _, table, _, _, _ in mine):
        return None
    cells_per_s = None
    span = mine[-1][4] - mine[0][4]
    if len(mine) > 1 and span > 0:  # the first slice's cells were copied before the window
        cells_per_s = sum(cells for *_, cells, _ in mine[1:]) / span
    table = mine[-1][1]
    done, total = progress.get((job, table), (0, 0))
    eta = None
    in_table = [at for _, name, _, _, at in mine if name == table]
    if len(in_table) > 1 and in_table[-1] > in_table[0] and total >= done:
        per_s = (len(in_table) - 1) / (in_table[-1] - in_table[0])
        eta = (total - done) / per_s
    return CopyRate(job, cells_per_s, table, done, total, eta, max(0.0, now - mine[-1][4]))


def _all_moved(counts: Mapping[str, int], moving: bool) -> bool:
    """Every compute upgraded and none with a move in flight."""
    return not moving and _count(counts, ("upgraded",)) == sum(counts.values())


def _ring_next(ring: RingView, allowed: frozenset[str], working: Sequence[Intent], *,
               terminal: bool) -> NextStep | None:
    """The next step a ring group pending in this phase makes (None: the phase's own): run
    it when allowed; after finalize, while it cannot run, what it waits for."""
    if "ring" in allowed:
        more = f" (+{len(ring.pending) - 1} more)" if len(ring.pending) > 1 else ""
        return NextStep("ring", f"n: run the ring steps of {ring.when}: {ring.pending[0].does}"
                        f"{more}", target=ring.when or "", detail=ring.detail())
    if not terminal:
        return None
    if working:
        return NextStep("wait", f"wait: {_doing(working[0])}")
    return NextStep("none", f"the ring steps of done wait: {ring.waits}" if ring.waits
                    else f"the ring steps of done are left: {ring.summary}")


def _control(intent: Intent) -> bool:
    kind = phases.intent(intent.kind)
    return kind is not None and kind.control


def _doing(intent: Intent) -> str:
    """An open intent, in words."""
    state = "runs" if intent.status == "running" else "is queued"
    if intent.kind == "phase":
        return f"{intent.args.get('target', 'a phase')} {state} (intent #{intent.id})"
    return f"{intent.kind} {state} (intent #{intent.id})"


def state_counts(rows: Iterable[ComputeRow]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.state] = counts.get(row.state, 0) + 1
    return counts


def _count(counts: Mapping[str, int], states: Iterable[str]) -> int:
    return sum(counts.get(state, 0) for state in states)


class FleetCounts:
    """How many computes are in each state, kept up to date from the journal's changes only
    (the phase view needs them at every poll; recounting the fleet would cost its size)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, str] = {}
        self._counts: dict[str, int] = {}
        self._seq = 0

    def update(self, journal: Journal, changes: ComputeChanges, since: int) -> dict[str, int]:
        """Apply `changes` (the journal's computes changed after `since`) and return the
        counts; when `since` is not where these counts are, read their own changes."""
        with self._lock:
            if since != self._seq:
                changes = journal.computes_since(self._seq)
            if changes.seq == 0:  # every compute (a first read, or a journal without seq)
                self._states.clear()
                self._counts.clear()
            for row in changes.rows:
                old = self._states.get(row.name)
                if old is not None:
                    self._counts[old] -= 1
                self._counts[row.state] = self._counts.get(row.state, 0) + 1
                self._states[row.name] = row.state
            self._seq = changes.seq
            return {state: n for state, n in self._counts.items() if n}


def analytics_poller(config: IssuConfig) -> AnalyticsPoller | None:
    endpoints = {c.name: c.analytics.url for c in (config.old, config.new) if c.analytics}
    if not endpoints:
        return None
    control = {c.name: {n.address for n in c.control_nodes} for c in (config.old, config.new)}
    return AnalyticsPoller(endpoints, control)
