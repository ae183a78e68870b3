"""revert: the way back to the old cluster, and what closes it, from the journal.

Before finalize's point of no return (its `commit` step) the old cluster is still the one
northbound writes to: revert is abort (abort.STEPS: computes rolled back in batches, the
finalize steps done undone, unpaired, run-sync stopped). The ring steps an approach on shared
hardware ran (`issu ring run`) are not undone by abort: revert names each with its inverse
(ringplan.RingStep.inverse), for the operator to run before the old cluster serves alone.

After the commit new has taken writes that old lacks: the way back needs a reverse
replication new -> old through each translator's inverse (registry.add_inverse). What
closes it, each named: a translator step without an inverse, an old database node
decommissioned (its data gone), and the reverse replication itself, which this version does
not have yet; revert after the commit is therefore refused, naming them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from issu_tui.config import IssuConfig
from issu_tui.orchestrator.ringplan import RingPlanError, RingStep, ring_steps

REVERSE_REPLICATION_MISSING = (
    "reverse replication new -> old is not built in this version: the changes new took "
    "after the commit cannot be carried back to old")


@dataclass(frozen=True)
class RevertPlan:
    phase: str | None
    committed: bool
    undo: tuple[str, ...]            # what revert does, in order
    by_hand: tuple[str, ...]         # ring steps done whose inverse the operator runs
    blockers: tuple[str, ...]        # why revert is refused (empty: it may run)

    @property
    def ok(self) -> bool:
        return not self.blockers

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok}


def ring_steps_done(config: IssuConfig, approach: str | None,
                    markers: Iterable[str]) -> list[RingStep]:
    """The approach's ring steps whose journal markers (`ring.<n>.<action>.<nodes>`, as
    ringrun.RingRunner marks them) say they ran, in order."""
    done = set(markers)
    if approach is None or not any(m.startswith("ring.") for m in done):
        return []
    try:
        steps = ring_steps(approach, list(config.old.cassandra.hosts),
                           list(config.new.cassandra.hosts))
    except RingPlanError:
        return []
    return [s for i, s in enumerate(steps)
            if f"ring.{i}.{s.action}.{'+'.join(s.nodes)}" in done]


def revert_plan(config: IssuConfig, phase: str | None, markers: Iterable[str],
                approach: str | None, translator_blockers: Iterable[str], *,
                drop_new_data: bool = False) -> RevertPlan:
    """What revert would undo now and what refuses it. `markers`: the journal's step
    markers; `translator_blockers`: Registry.revert_blockers for the versions' path."""
    from issu_tui.orchestrator.abort import STEPS as ABORT_STEPS
    from issu_tui.orchestrator.finalize import COMMIT_STEP, step

    done = set(markers)
    committed = COMMIT_STEP in done
    ring_done = ring_steps_done(config, approach, done)
    by_hand = tuple(f"{s.does}: undo with {s.inverse}" for s in reversed(ring_done)
                    if s.inverse is not None)
    blockers: list[str] = []
    if phase is None:
        blockers.append("no upgrade is recorded in the journal: nothing to revert")
    elif phase == "aborted":
        blockers.append("the upgrade was aborted: everything is on the old cluster already")
    blockers += [f"ring step done without an inverse: {s.does}" for s in ring_done
                 if s.inverse is None]
    if committed:
        blockers += [f"no inverse translation: {b}" for b in translator_blockers]
        blockers.append(REVERSE_REPLICATION_MISSING)
    elif not drop_new_data and {(w := step("start-new-writers")).marker,
                                w.begun_marker} & done:
        # abort's own refusal (abort.refusal), said before anything is submitted
        blockers.append("new's writers ran (finalize start-new-writers): their cells on new "
                        "would outlive a retry's copy; revert --drop-new-data")
    undo = tuple(f"{s.name}: {s.does}" for s in ABORT_STEPS)
    return RevertPlan(phase, committed, undo, by_hand, tuple(blockers))


def plan_from_journal(config: IssuConfig, *, drop_new_data: bool = False) -> RevertPlan:
    """revert_plan for the upgrade the journal of `config` records (read only)."""
    from backends.cassandra.registry import load_registry
    from issu_tui.journal import Journal

    journal = Journal.open(config.state_dir, read_only=True)
    try:
        info = journal.phase()
        markers = list(journal.steps_done())
        approach = journal.orchestrator_state().approach
    finally:
        journal.close()
    registry = load_registry()
    keyspaces = config.sync.keyspaces or sorted(registry.keyspaces)
    blockers = registry.revert_blockers(config.old.version, config.new.version, keyspaces)
    return revert_plan(config, info.phase if info else None, markers, approach, blockers,
                       drop_new_data=drop_new_data)
