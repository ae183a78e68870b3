"""The phase registry: every phase of an upgrade and every intent, declared once.

Read by the journal (which phase names exist), the plan (the order and titles of its steps),
the executor (which intents a phase accepts, which phases repeat, how each one runs), the
console (its phase timeline and the actions it offers) and docs/phases.md (generated from
here: `python -m issu_tui.orchestrator.phases_doc`).

This module is data only and imports nothing of the orchestrator: the journal imports it.
The code that runs a phase is the executor's (`executor.PHASE_RUNNERS`), the code of an
intent its handler (`executor.INTENT_HANDLERS`), what the plan says of a phase plan.py's;
tests/test_phases.py checks that each covers this registry. finalize's own steps are in
finalize.py, abort's in abort.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Runs(Enum):
    """How a phase runs; the value is how the docs say it."""

    RECORDED = "recorded in the journal, no work of its own"
    EXECUTOR = "in the executor: checks and API calls, nothing left running"
    CHILD = "a child process run to completion; a re-run resumes from its checkpoints"
    SUPERVISED = ("a long-lived child process, restarted by the executor if it dies, until "
                  "finalize stops it")
    INTENTS = "opens the way: the work comes as upgrade and rollback intents (SSH batches)"
    STEPS = "named steps, each done once (journal markers); a re-run continues"
    UNDO = "named steps, each undoing what is left to undo; run again after a failure"


class Line(Enum):
    FORWARD = "forward"   # plan -> done
    ABORT = "abort"       # back to the old cluster


@dataclass(frozen=True)
class Phase:
    name: str
    title: str
    touches: str          # what it reads and changes, in words (the plan names the hosts)
    runs: Runs
    line: Line = Line.FORWARD
    repeatable: bool = False       # run again when asked for by name, although done
    accepts: frozenset[str] = frozenset()  # intents the executor takes in this phase
    offers: frozenset[str] = frozenset()   # of those, the actions the console offers
    refusal: str = ""     # why the phase takes no work intent ('' when it takes some)
    ended: bool = False   # the upgrade's end although it still takes an intent (revert)

    @property
    def marker(self) -> str:
        """The step marker the executor sets when the phase is done."""
        return phase_marker(self.name)

    @property
    def terminal(self) -> bool:
        return self.ended or (not self.accepts and self.refusal != "")

    @property
    def keeps_runsync(self) -> bool:
        """Whether run-sync must keep running in this phase once it was started."""
        return self.line is Line.FORWARD and self.name != "done"


@dataclass(frozen=True)
class IntentKind:
    name: str
    does: str
    # Why the current phase does not take it; formatted with {phase}.
    refused: str
    control: bool = False     # handled at once by the serve loop, even while work runs
    interrupts: bool = False  # stops the running work intent, then runs after it


# Set while the operator holds run-sync stopped (a `runsync` intent, action stop): the
# supervisor leaves it stopped and finalize waits until it is started again.
RUNSYNC_HELD = "run-sync.held"
# Marked once finalize's reverse replication new -> old runs (the way back after the commit:
# issu revert), and once `issu close-way-back` drained and stopped it (revert refused after).
REVERSE_STARTED = "revert.reverse-sync-started"
WAY_BACK_CLOSED = "revert.way-back-closed"


def phase_marker(name: str) -> str:
    return f"phase.{name}"


INTENTS: tuple[IntentKind, ...] = (
    IntentKind("phase", "run every phase up to the target that has not run yet",
               "phases do not run in phase {phase}"),
    IntentKind("upgrade", "move computes to the new cluster in batches (canary first)",
               "computes move only once run-sync is running (phase is {phase}); run "
               "`issu pair`, then pre-sync and run-sync first (`issu daemon` or the phases)"),
    IntentKind("rollback", "move computes back to the old cluster in batches",
               "computes move only once run-sync is running (phase is {phase}); run "
               "`issu pair`, then pre-sync and run-sync first (`issu daemon` or the phases)"),
    IntentKind("finalize", "run finalize's steps: the new cluster takes over",
               "finalize needs run-sync to have run (phases pair, pre-sync, run-sync); "
               "nothing to finalize yet"),
    IntentKind("abort", "bring everything back to the old cluster (until finalize commits)",
               "abort does not run in phase {phase}", interrupts=True),
    IntentKind("ring", "run the approach's ring steps of one phase (grow, stay, rolling): "
               "the computed quorum guard before each, the step, `nodetool status` after, "
               "each marked in the journal (a re-run continues): args approach, when, "
               "nodetool, min_replicas, timeout_s",
               "ring steps do not run in phase {phase}"),
    IntentKind("revert", "after finalize's point of no return: back to the old cluster "
               "through the reverse replication new -> old (issu revert; before it, revert "
               "is abort)", "revert after the point of no return runs once finalize "
               "committed (phase is {phase}); before it, `issu revert` aborts"),
    IntentKind("close-way-back", "after finalize, once new is trusted: drain the reverse "
               "replication new -> old, stop it and delete its queues; `issu revert` is "
               "refused from then on (issu close-way-back)",
               "the way back closes once finalize is done (phase is {phase})"),
    IntentKind("verify", "compare new against old (any time once run-sync runs); the "
               "differences are counted in the journal and listed in an event",
               "verify needs run-sync to be running (phase is {phase})"),
    IntentKind("runsync", "stop run-sync and hold it stopped (changes on old wait in its "
               "durable queue), or start it again: args action=stop|start",
               "run-sync is started or stopped by hand only from its phase until finalize "
               "(phase is {phase})", control=True),
    IntentKind("unpair", "remove the cross-cluster bgp-routers from both clusters",
               "unpair does not run in phase {phase}"),
    IntentKind("pause", "start no new compute; running ones finish (kept across restarts)",
               "pause does not apply in phase {phase}", control=True),
    IntentKind("resume", "start computes again after a pause",
               "resume does not apply in phase {phase}", control=True),
)

_CONTROL = frozenset({"pause", "resume"})
_EARLY = _CONTROL | {"phase", "unpair", "abort"}
_MOVING = _EARLY | {"upgrade", "rollback", "finalize", "verify", "runsync"}
# Before run-sync the console's next step runs the next phase (a `phase` intent).
_EARLY_OFFERS = _CONTROL | {"abort", "phase"}
# The approaches on shared hardware: ring steps (issu ring run) before pre-sync, while the
# computes move, after finalize (ringplan.ring_run_refusal says which in which phase).
_RING = frozenset({"ring"})
_ENDED = "the upgrade is {phase}; nothing more to do (a new upgrade starts with a fresh " \
         "state_dir)"

PHASES: tuple[Phase, ...] = (
    Phase("plan", "record the versions and the approach (topology) of the upgrade",
          "nothing outside the journal", Runs.RECORDED,
          accepts=_EARLY | _RING, offers=_EARLY_OFFERS),
    Phase("preflight", "check version path, reachability with the credentials, keyspaces, "
          "fences, quorum, disk",
          "read-only: both clusters' Cassandra, ZooKeeper, RabbitMQ, api-servers, analytics; "
          "computes over SSH (host keys verified)", Runs.EXECUTOR, repeatable=True,
          accepts=_EARLY | _RING, offers=_EARLY_OFFERS),
    Phase("pair", "iBGP between old and new control nodes (bgp-router objects)",
          "old api-server: bgp-routers of both clusters' control nodes (the new cluster gets "
          "them with the data)", Runs.EXECUTOR, repeatable=True,
          accepts=_EARLY | _RING, offers=_EARLY_OFFERS),
    Phase("pre-sync", "copy every ISSU keyspace old -> new through translation",
          "reads old Cassandra, writes new Cassandra", Runs.CHILD,
          accepts=_EARLY | _RING, offers=_EARLY_OFFERS),
    Phase("run-sync", "replay every config change into new until finalize",
          "a durable queue on the old RabbitMQ; writes new Cassandra; publishes on the new "
          "RabbitMQ", Runs.SUPERVISED,
          accepts=_MOVING | _RING, offers=(_MOVING | _RING) - {"unpair"}),
    Phase("computes", "move the computes in batches, canary first",
          "each compute over SSH: install, point the agent at the new control nodes, "
          "restart, health gate on the new analytics", Runs.INTENTS,
          accepts=_MOVING | _RING, offers=(_MOVING | _RING) - {"phase", "unpair"}),
    # In finalize the console offers no abort and no compute move: whether they are still
    # possible depends on the point of no return, and the command line explains a refusal.
    Phase("finalize", "the new cluster takes over (finalize's steps)",
          "old api-server (fenced), new Cassandra and ZooKeeper, northbound clients' config "
          "files, new api-server fence", Runs.STEPS,
          accepts=(_MOVING - {"runsync"}) | {"revert"}, offers=_CONTROL | {"finalize"}),
    # done ends the upgrade (the executor leaves) but still takes `issu revert` while the
    # reverse replication runs, and `issu close-way-back` that ends it
    Phase("done", "the new cluster serves; retire the old one", "a shared-hardware "
          "approach's ring steps of done (n in the console, `issu ring run --when done`); "
          "the rest by hand (see the runbook)", Runs.RECORDED,
          accepts=frozenset({"revert", "close-way-back"}) | _RING,
          offers=frozenset({"revert", "close-way-back"}) | _RING, refusal=_ENDED, ended=True),
    Phase("aborting", "roll computes back, reopen and unpair old, stop run-sync (abort's "
          "steps)", "computes over SSH, old api-server, the old RabbitMQ; new data only when "
          "asked (--drop-new-data)", Runs.UNDO, line=Line.ABORT,
          accepts=_CONTROL | {"abort", "unpair", "revert"},
          refusal="the upgrade is aborting; run `issu abort` again to finish it (`issu "
          "revert` again after a revert)"),
    Phase("aborted", "everything is back on the old cluster", "nothing", Runs.RECORDED,
          line=Line.ABORT, refusal=_ENDED),
)

_BY_NAME = {p.name: p for p in PHASES}
INTENT_KINDS: dict[str, IntentKind] = {i.name: i for i in INTENTS}

PHASE_NAMES: tuple[str, ...] = tuple(p.name for p in PHASES)
FORWARD: tuple[str, ...] = tuple(p.name for p in PHASES if p.line is Line.FORWARD)
ABORT: tuple[str, ...] = tuple(p.name for p in PHASES if p.line is Line.ABORT)
# What `issu phase TARGET` may name: the phases the executor runs one after the other
# (finalize is its own intent; plan and done are recorded, not run).
RUNNABLE: tuple[str, ...] = tuple(
    p.name for p in PHASES if p.line is Line.FORWARD
    and p.runs in (Runs.EXECUTOR, Runs.CHILD, Runs.SUPERVISED, Runs.INTENTS))


def phase(name: str) -> Phase:
    """The phase called `name`; KeyError names the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown phase {name!r}; phases: {', '.join(PHASE_NAMES)}") from None


def intent(name: str) -> IntentKind | None:
    return INTENT_KINDS.get(name)


def refusal(phase_name: str, kind: str) -> str | None:
    """Why phase `phase_name` does not take intent `kind`, or None when it does."""
    spec = phase(phase_name)
    if kind in spec.accepts:
        return None
    if spec.refusal:
        return spec.refusal.format(phase=phase_name)
    known = intent(kind)
    if known is None:
        return f"unknown intent kind {kind!r}"
    return known.refused.format(phase=phase_name)
