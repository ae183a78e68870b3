"""revert: the way back to the old cluster, and what closes it, from the journal.

Before finalize's point of no return (its `commit` step) the old cluster is still the one
northbound writes to: revert is abort (abort.STEPS: computes rolled back in batches, the
finalize steps done undone, unpaired, run-sync stopped). The ring steps an approach on shared
hardware ran (`issu ring run`) are not undone by abort: revert names each with its inverse
(ringplan.RingStep.inverse), for the operator to run before the old cluster serves alone.

After the commit new takes writes that old lacks. At the commit finalize starts the reverse
replication new -> old (`issu sync run --reverse`: its own durable queue on new's broker,
bound before new's writers start, each change re-read on new and written to old's intact
database through the translators' inverses, registry.add_inverse). Revert after the commit
(`REVERSE_STEPS`, then abort's): new fenced and its writers stopped, the reverse replication
drained and stopped, its queues deleted, the ZooKeeper subtrees copied back new -> old,
then abort's steps (northbound back, old's services started and old reopened, computes
rolled back in batches, unpaired). What closes the way back, each named: a translator step
without an inverse (then finalize starts no reverse replication), an old database node
decommissioned (its data gone), a reverse replication never started.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from issu_tui.config import IssuConfig
from issu_tui.orchestrator import phases
from issu_tui.orchestrator.abort import STEPS as ABORT_STEPS
from issu_tui.orchestrator.abort import AbortRun, AbortStep
from issu_tui.orchestrator.approaches import config_ring_steps
from issu_tui.orchestrator.computes import ComputeRunner
from issu_tui.orchestrator.context import Context, OrchestratorError
from issu_tui.orchestrator.finalize import REVERSE_STARTED
from issu_tui.orchestrator.northbound import skip_refusal
from issu_tui.orchestrator.preflight import keyspaces_absent_on_old
from issu_tui.orchestrator.ringplan import RingPlanError, RingStep, step_marker
from issu_tui.sides import issu_keyspaces

REVERSE_REPLICATION_MISSING = (
    "the reverse replication new -> old was not started at the commit (finalize's "
    "start-reverse-sync): the changes new took since cannot be carried back to old")
# Marked by `issu close-way-back` once the reverse replication is drained: from then on old
# no longer follows new and revert is refused for good.
WAY_BACK_CLOSED = phases.WAY_BACK_CLOSED
WAY_BACK_CLOSED_BLOCKER = (
    "the way back was closed (issu close-way-back): the reverse replication new -> old was "
    "drained and stopped, old no longer follows new")
NEW_DATA_AFTER_COMMIT = (
    "revert after the commit needs --drop-new-data: new took northbound writes and its "
    "writers ran (start-new-writers); revert carries config_db_uuid and new's writers' "
    "keyspaces back, but what stays on new is newer than anything a later copy from old "
    "brings (a retry's pre-sync could not overwrite it). "
    "`issu revert --drop-new-data` drops new's synced keyspaces and ZooKeeper subtrees once "
    "old serves again; a later upgrade copies again from pre-sync")


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
        steps = config_ring_steps(config, approach)
    except RingPlanError:
        return []
    return [s for i, s in enumerate(steps) if step_marker(i, s) in done]


def revert_plan(config: IssuConfig, phase: str | None, markers: Iterable[str],
                approach: str | None, translator_blockers: Iterable[str], *,
                drop_new_data: bool = False) -> RevertPlan:
    """What revert would undo now and what refuses it. `markers`: the journal's step
    markers; `translator_blockers`: Registry.revert_blockers for the versions' path."""
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
        if WAY_BACK_CLOSED in done:
            blockers.append(WAY_BACK_CLOSED_BLOCKER)
        elif not translator_blockers and REVERSE_STARTED not in done:
            blockers.append(REVERSE_REPLICATION_MISSING)
        if not drop_new_data and phase not in (None, "aborted"):
            # abort's refusal once new's writers ran (abort.refusal), consistent after it
            blockers.append(NEW_DATA_AFTER_COMMIT)
    elif not drop_new_data and {(w := step("start-new-writers")).marker,
                                w.begun_marker} & done:
        # abort's own refusal (abort.refusal), said before anything is submitted
        blockers.append("new's writers ran (finalize start-new-writers): their cells on new "
                        "would outlive a retry's copy; revert --drop-new-data")
    steps: list[RevertStep | AbortStep] = (
        [*REVERSE_STEPS, *AFTER_COMMIT_ABORT] if committed else list(ABORT_STEPS))
    undo = tuple(f"{s.name}: {s.does}" for s in steps)
    return RevertPlan(phase, committed, undo, by_hand, tuple(blockers))


def plan_from_journal(config: IssuConfig, *, drop_new_data: bool = False) -> RevertPlan:
    """revert_plan for the upgrade the journal of `config` records (read only). The
    translators are asked only once the commit is recorded (before it the way back is
    abort, whatever they declare); an unsupported version path is a named blocker."""
    from backends.cassandra.registry import RegistryError, load_registry
    from backends.versions import VersionPathError
    from issu_tui.journal import Journal
    from issu_tui.orchestrator.finalize import COMMIT_STEP

    journal = Journal.open(config.state_dir, read_only=True)
    try:
        info = journal.phase()
        markers = list(journal.steps_done())
        approach = journal.orchestrator_state().approach
    finally:
        journal.close()
    blockers: list[str] = []
    if COMMIT_STEP in markers:
        try:
            registry = load_registry()
            keyspaces = issu_keyspaces(config, registry)
            blockers = registry.revert_blockers(config.old.version, config.new.version,
                                                keyspaces)
        except (RegistryError, VersionPathError) as exc:
            blockers = [str(exc)]
    return revert_plan(config, info.phase if info else None, markers, approach, blockers,
                       drop_new_data=drop_new_data)


# ----------------------------------------------------------------------------- after the commit


@dataclass(frozen=True)
class RevertStep:
    name: str
    does: str
    run: Callable[[Context], str]


def fence_new(ctx: Context) -> str:
    from backends.apiserver import ApiServerError
    from issu_tui.orchestrator.controllers import fence_by_profile

    by_profile = fence_by_profile(ctx, "new", closed=True)
    if by_profile:
        return f"new api-server refuses northbound writes: {by_profile}"
    try:
        with ctx.api("new") as new:
            new.set_fence(True)
    except ApiServerError as exc:
        raise OrchestratorError(
            f"cannot fence the new api-server ({exc}): stop new's contrail-api on new's "
            "config hosts (northbound writes must stop before the reverse replication "
            "drains), then run revert again") from None
    return "new api-server refuses northbound writes"


def stop_new_writers(ctx: Context) -> str:
    from issu_tui.orchestrator.controllers import stop_new_writers_again

    return stop_new_writers_again(ctx)


def drain_reverse_sync(ctx: Context) -> str:
    from issu_tui.orchestrator.finalize import REVERSE_STOPPING
    from issu_tui.orchestrator.syncproc import ReverseSyncSupervisor

    reverse = ReverseSyncSupervisor(ctx)
    if ctx.step_done(REVERSE_STOPPING) and not reverse.running():
        return "stopped earlier"
    counters = reverse.wait_drained()
    with ctx.runsync_lock:
        ctx.mark_step(REVERSE_STOPPING)
        reverse.stop()
    return (f"drained (applied {counters.get('applied', 0):.0f}, failed "
            f"{counters.get('failed', 0):.0f}) and stopped")


def reconcile_back(ctx: Context) -> str:
    """One reconciliation pass new -> old over config_db_uuid (new translated back against
    old, every differing partition replaced) once the reverse replication is drained and
    both sides are quiet, before old reopens: what no message carried (a change whose message
    was lost, a finalize begun before bind-reverse-queue existed) reaches old too. An
    incomplete pass is an error: revert is run again."""
    from backends.cassandra.connection import connect
    from backends.cassandra.registry import load_reverse_registry
    from backends.cassandra.replicator import Replicator
    from backends.runsync.reconcile import Reconciler
    from issu_tui.sides import cassandra_side, reversed_config, sync_settings

    config = reversed_config(ctx.config)  # new is the source ("old"), old the target
    source = connect(cassandra_side(config, "old", {"name": config.old.name}))
    try:
        target = connect(cassandra_side(config, "new", {"name": config.new.name}))
        try:
            repl = Replicator(source, target, load_reverse_registry(), sync_settings(config),
                              run_id="revert-reconcile-back")
            report = Reconciler(repl).run_pass(ctx.stop)
        finally:
            target.close()
    finally:
        source.close()
    if not report.complete:
        raise OrchestratorError("reconciliation new -> old incomplete: "
                                + "; ".join(report.errors[:5]) + "; run revert again")
    return (f"{report.repaired} partition(s) replaced on old, {report.pruned} pruned, "
            f"{report.ranges} ranges compared")


def delete_reverse_queues(ctx: Context) -> str:
    from issu_tui.orchestrator.finalize import delete_reverse_queues as delete

    return delete(ctx)


def post_sync_back(ctx: Context) -> str:
    """The keyspaces new's writers keep (to_bgp_keyspace's route targets, svc-monitor's,
    device-manager's, useragent) copied new -> old through the inverse translators, once
    those writers are stopped: the reverse replication carries config_db_uuid only, and
    old's schema-transformer started on a route_target_table without the route targets
    new's allocated since the commit would not know them as its own."""
    from issu_tui.orchestrator.syncproc import run_step

    result = run_step(ctx, "post-sync", ["--reverse"])
    if result.exit_code != 0:
        raise OrchestratorError(f"post-sync new -> old failed (exit {result.exit_code}); "
                                "see `issu events --kind sync`, then run revert again")
    return "new's writers' keyspaces copied back to old"


def zk_back(ctx: Context) -> str:
    """The ZooKeeper subtrees (ids, fq-name locks) new allocated from since the commit,
    copied back to old and verified."""
    from backends.zookeeper.sync import zk_sync

    config = ctx.config
    report = zk_sync(",".join(config.new.zookeeper.hosts), ",".join(config.old.zookeeper.hosts),
                     config.new.zookeeper.prefix, config.old.zookeeper.prefix,
                     config.sync.zk_subtrees, events=ctx.journal)
    if not report.ok:
        raise OrchestratorError(f"ZooKeeper new -> old: {len(report.differences)} "
                                "difference(s) after the copy; run revert again")
    return f"{report.verified_nodes} node(s) copied back and verified"


def verify_back(ctx: Context) -> str:
    """old against new in every ISSU keyspace once the reverse replication drained and
    post-sync-back copied new's writers' keyspaces, before anything else changes old (both
    clusters' writers and api-servers are stopped or fenced; old's writers own those
    keyspaces again once it reopens): what the way back carried is measured, per keyspace,
    each difference said. A keyspace old never had (preflight warned) is left out by name,
    config_db_uuid never. A difference is reported (event, journal counters
    `revert.verify`), not fatal: the revert goes on, northbound is down until it ends."""
    import json

    from issu_tui.orchestrator.finalize import CONFIG_DB_UUID, difference_samples
    from issu_tui.orchestrator.syncproc import run_step

    absent = [k for k in keyspaces_absent_on_old(ctx) if k != CONFIG_DB_UUID]
    allow = [arg for k in absent for arg in ("--allow-missing", k)]
    result = run_step(ctx, "verify", ["--json", *allow])
    try:
        report = json.loads(result.stdout)
        per_keyspace: dict[str, list[float]] = {}
        for table in report["tables"]:
            if table["status"] == "skipped" and table.get("absent_allowed"):
                continue
            tally = per_keyspace.setdefault(table["keyspace"], [0.0, 0.0])
            tally[0] += float(table["missing"] + table["extra"] + table["different"])
            tally[1] += float(table["cells_compared"])
    except (ValueError, KeyError, TypeError):
        ctx.event("revert", f"verify-back: no report (exit {result.exit_code})",
                  level="warning", output=result.output)
        return f"no verify report (exit {result.exit_code}); see the events"
    differences = sum(d for d, _ in per_keyspace.values())
    ctx.journal.set_counters("revert.verify", {
        "differences": differences, "checked": sum(c for _, c in per_keyspace.values())})
    # config_db_uuid first, then the others in order
    order = sorted(per_keyspace, key=lambda k: (k != CONFIG_DB_UUID, k))
    said = "; ".join(f"{k}: {per_keyspace[k][0]:.0f} differences in {per_keyspace[k][1]:.0f} "
                     "cells" for k in order)
    if absent:
        said += f"; not verified, absent on old: {', '.join(absent)}"
    if differences or not report.get("ok", False):
        ctx.event("revert", f"verify-back: {said}; first ones:\n{difference_samples(report)}",
                  level="warning")
    return said


REVERSE_STEPS: tuple[RevertStep, ...] = (
    RevertStep("fence-new", "fence the new api-server (northbound writes refused)", fence_new),
    RevertStep("stop-new-writers", "stop and disable new's schema-transformer, svc-monitor, "
               "device-manager", stop_new_writers),
    RevertStep("drain-reverse-sync", "drain the reverse replication new -> old, then stop it",
               drain_reverse_sync),
    RevertStep("reconcile-back", "one reconciliation pass new -> old over config_db_uuid "
               "(what no message carried), before old reopens", reconcile_back),
    RevertStep("delete-reverse-queues", "delete its queues on new's broker",
               delete_reverse_queues),
    RevertStep("post-sync-back", "copy the keyspaces new's writers keep (to_bgp_keyspace, "
               "svc_monitor_keyspace, dm_keyspace, useragent) new -> old", post_sync_back),
    RevertStep("zk-back", "copy the ZooKeeper subtrees new -> old and verify them", zk_back),
    RevertStep("verify-back", "verify old against new in every ISSU keyspace (differences "
               "counted per keyspace and named, not fatal)", verify_back),
)


def restore_old_records(run: AbortRun) -> list[str]:
    from issu_tui.orchestrator.node_cleanup import restore_old_node_records

    return [restore_old_node_records(run.ctx)]


RESTORE = AbortStep("restore-old-records", "create again on old, with their uuids, its "
                    "control nodes' bgp-routers and node records that finalize removed from "
                    "new (the reverse replication carried those deletions back); remove "
                    "from old new's node records (carried there when new opened)",
                    restore_old_records)
# abort's steps that follow, in the order the way back needs (northbound back and old's
# services started first, then the computes): named from abort.STEPS
AFTER_COMMIT_ABORT_NAMES = ("undo-finalize", RESTORE.name, "rollback-computes", "unpair",
                            "new-data")


def _after_commit_abort() -> list[AbortStep]:
    by_name = {s.name: s for s in (*ABORT_STEPS, RESTORE)}
    return [by_name[n] for n in AFTER_COMMIT_ABORT_NAMES]


AFTER_COMMIT_ABORT: tuple[AbortStep, ...] = tuple(_after_commit_abort())


def reverse_step_marker(name: str) -> str:
    """The journal marker of a REVERSE_STEP done (cleared with the others when revert ends)."""
    return f"revert.step.{name}"


def check_revert_open(ctx: Context, *, drop_new_data: bool = False,
                      skip: tuple[str, ...] = ()) -> None:
    """Raise OrchestratorError naming what closes the way back after the commit, or a
    `--skip-client` name that is no switched client."""
    plan = revert_plan(ctx.config, "done", ctx.journal.steps_done(),
                       ctx.journal.orchestrator_state().approach, [],
                       drop_new_data=drop_new_data)
    if not ctx.step_done(REVERSE_STARTED) or not plan.ok:
        raise OrchestratorError("revert refused: " + "; ".join(
            plan.blockers or [REVERSE_REPLICATION_MISSING]))
    refused = skip_refusal(ctx, list(skip)) if skip else None
    if refused:
        raise OrchestratorError(f"revert refused: {refused}")


def revert_after_commit(ctx: Context, runner: ComputeRunner, *,
                        drop_new_data: bool = False, skip: tuple[str, ...] = ()) -> list[str]:
    """Back to old after finalize's commit: REVERSE_STEPS, then abort's (AFTER_COMMIT_ABORT).
    Refused, naming each blocker, when the way back is closed. `skip`: northbound clients
    left as they are (`--skip-client`), as abort's."""
    check_revert_open(ctx, drop_new_data=drop_new_data, skip=skip)
    done: list[str] = []
    for step in REVERSE_STEPS:
        # each done once: a retry (a compute's rollback failed, the executor was killed)
        # comes after old reopened, and zk-back again would delete the ids old allocated since
        marker = reverse_step_marker(step.name)
        if ctx.step_done(marker):
            done.append(f"{step.name}: done earlier")
            continue
        ctx.check_stop(marker)
        detail = step.run(ctx)
        ctx.mark_step(marker)
        ctx.event("revert", f"{step.name}: {detail}", step=step.name)
        done.append(f"{step.name}: {detail}")
    run = AbortRun(ctx, runner, drop_new_data, skip)
    for each in AFTER_COMMIT_ABORT:
        ctx.check_stop(f"revert.{each.name}")
        lines = each.run(run)
        for line in lines:
            ctx.event("revert", f"{each.name}: {line}", step=each.name)
        done += lines
    ctx.clear_steps("finalize.")
    ctx.clear_steps("revert.")
    return done


# ----------------------------------------------------------------------------- closing it


def close_way_back(ctx: Context, drain_timeout_s: float = 600.0) -> list[str]:
    """issu close-way-back: once the operator trusts new, the reverse replication finalize
    started is drained (every change new took until now written to old), stopped and its
    queues deleted on new's broker; revert is refused from then on. A re-run finishes what
    an interrupted one left (the stop, the queues)."""
    from issu_tui.orchestrator.finalize import COMMIT_STEP, REVERSE_STOPPING
    from issu_tui.orchestrator.syncproc import ReverseSyncSupervisor

    if not ctx.step_done(COMMIT_STEP):
        raise OrchestratorError("the way back closes only after finalize's commit; before "
                                "it the old cluster still serves (`issu abort` / `issu "
                                "revert`)")
    reverse = ReverseSyncSupervisor(ctx)
    done: list[str] = []
    if ctx.step_done(WAY_BACK_CLOSED):
        done.append("closed earlier")
    elif ctx.step_done(REVERSE_STARTED) and not ctx.step_done(REVERSE_STOPPING):
        if not reverse.running():
            reverse.start()  # it catches up with its durable queue first
            reverse.wait_reporting()
        counters = reverse.wait_drained(drain_timeout_s, steady=False)
        with ctx.runsync_lock:
            ctx.mark_step(REVERSE_STOPPING)
            ctx.mark_step(WAY_BACK_CLOSED)
        done.append(f"reverse replication drained (applied {counters.get('applied', 0):.0f}, "
                    f"failed {counters.get('failed', 0):.0f})")
    else:
        ctx.mark_step(WAY_BACK_CLOSED)
        done.append("no reverse replication was running"
                    + ("" if ctx.step_done(REVERSE_STARTED) else " (finalize started none)"))
    if reverse.stop():
        done.append("reverse replication stopped")
    done.append(delete_reverse_queues(ctx))
    for line in done:
        ctx.event("revert", f"close-way-back: {line}", step="close-way-back")
    ctx.event("revert", "the way back is closed: `issu revert` is refused from now on; old "
              "may be retired", step="close-way-back")
    return done


def way_back(steps_done: Iterable[str], reverse_running: bool) -> str:
    """One line on the way back after finalize, for status and the console: open while the
    reverse replication runs, closed after close-way-back, '' before the commit."""
    from issu_tui.orchestrator.finalize import COMMIT_STEP

    done = set(steps_done)
    if COMMIT_STEP not in done:
        return ""
    if WAY_BACK_CLOSED in done:
        return "closed (issu close-way-back): revert refused, old may be retired"
    if REVERSE_STARTED not in done:
        return "closed: finalize started no reverse replication (revert refused)"
    state = "running" if reverse_running else (
        "NOT running (`issu daemon` starts it again: it catches up from its durable queue "
        "on new's broker)")
    return (f"open: the reverse replication new -> old is {state}; `issu revert` can bring "
            "old back; `issu close-way-back` drains and stops it once new is trusted")
