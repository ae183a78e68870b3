"""abort: everything back to the old cluster, in named steps; refused once finalize committed.

`STEPS` is the ordered list. Unlike finalize's, abort's steps carry no markers: each one
finds out what is left to undo (a compute not on old, a finalize step done, run-sync
running), so an abort that failed half-way is simply run again. `drop_new` (asked for with
--drop-new-data) proves that the new cluster's database is not old's before dropping it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backends.apiserver import ApiServerError
from backends.versions import release_matches
from issu_tui.orchestrator.computes import ComputeRunner
from issu_tui.orchestrator.context import Context, OrchestratorError, StepInterrupted
from issu_tui.orchestrator.finalize import (
    COMMIT_STEP,
    before_commit,
    delete_runsync_queues,
    step,
)
from issu_tui.orchestrator.northbound import skip_clients, skip_refusal
from issu_tui.orchestrator.pairing import unpair
from issu_tui.orchestrator.syncproc import RunSyncSupervisor
from issu_tui.sides import issu_keyspaces


@dataclass(frozen=True)
class AbortRun:
    ctx: Context
    runner: ComputeRunner
    drop_new_data: bool = False
    skip_clients: tuple[str, ...] = ()  # --skip-client: northbound clients left as they are


def roll_back_computes(run: AbortRun) -> list[str]:
    ctx = run.ctx
    back = [r.name for r in ctx.journal.computes()
            if r.state != "old" or not release_matches(ctx.config.old.version, r.version)]
    if not back:
        return []
    outcome = run.runner.run("rollback", back, canary=0, max_failures=len(back))
    if outcome.failed or outcome.not_started:
        raise OrchestratorError(
            f"abort: rollback failed on {', '.join(outcome.failed + outcome.not_started)}; "
            "fix them (`issu events`, `issu status`) and run abort again")
    return [f"rolled back {len(back)} compute(s)"]


def undo_finalize(run: AbortRun) -> list[str]:
    """The inverse of every finalize step done before the point of no return, last first,
    each one whatever the others did: a northbound host that does not answer must not leave
    old's services stopped and old fenced. What failed is raised at the end, after the
    others ran; every inverse is idempotent, so abort run again redoes only what is left."""
    ctx = run.ctx
    done: list[str] = skip_clients(ctx, list(run.skip_clients)) if run.skip_clients else []
    failed: list[str] = []
    for each in reversed(before_commit()):
        if each.undo is None or not each.to_undo(ctx):
            continue
        try:
            done.append(each.undo(ctx))
        except StepInterrupted:
            raise
        except (OrchestratorError, ApiServerError) as exc:
            failed.append(f"{each.name} not undone: {exc}")
            ctx.event("abort", f"undo {each.name} failed, going on with the other steps: "
                      f"{exc}", level="error", step=each.name)
    if failed:
        raise OrchestratorError("abort: " + " | ".join(failed) + " | undone: "
                                + (" | ".join(done) or "nothing") + " | fix what is named "
                                "and run abort again")
    return done


def unpair_old_side(run: AbortRun) -> list[str]:
    return [unpair(run.ctx, new_side=False)]


def stop_runsync(run: AbortRun) -> list[str]:
    with run.ctx.runsync_lock:  # the phase is "aborting": the supervisor leaves it stopped
        stopped = RunSyncSupervisor(run.ctx).stop()
    return ["run-sync stopped"] if stopped else []


def delete_queues(run: AbortRun) -> list[str]:
    try:
        return [delete_runsync_queues(run.ctx)]
    except OrchestratorError as exc:
        # everything is back on old already; a leftover queue is cleanup, not a reason to
        # leave the abort unfinished
        run.ctx.event("sync", str(exc), level="error")
        return [f"run-sync queues NOT deleted: {exc}"]


def drop_or_keep_new(run: AbortRun) -> list[str]:
    if run.drop_new_data:
        return [drop_new(run.ctx)]
    return ["new cluster's synced data left in place, unused"]


@dataclass(frozen=True)
class AbortStep:
    name: str
    does: str
    run: Callable[[AbortRun], list[str]]  # what it did, one line each (none: nothing to do)


STEPS: tuple[AbortStep, ...] = (
    AbortStep("rollback-computes", "roll back every compute not on the old cluster",
              roll_back_computes),
    AbortStep("undo-finalize", "undo the finalize steps done before the point of no return "
              "(their inverses)", undo_finalize),
    AbortStep("unpair", "remove the new control nodes' bgp-routers from the old cluster",
              unpair_old_side),
    AbortStep("stop-run-sync", "stop run-sync", stop_runsync),
    AbortStep("delete-queues", "delete run-sync's queues on the old broker (a failure is "
              "reported, not fatal)", delete_queues),
    AbortStep("new-data", "drop the new cluster's synced keyspaces and ZooKeeper subtrees "
              "(--drop-new-data), else leave them unused", drop_or_keep_new),
)


def refusal(ctx: Context, *, drop_new_data: bool = False,
            skip: tuple[str, ...] = ()) -> str | None:
    """Why abort cannot run now (None: it can), asked before anything changes."""
    if ctx.step_done(COMMIT_STEP):
        return ("finalize passed its point of no return (the new api-server opens to "
                "northbound writes); abort is no longer possible. Roll forward: finish "
                "`issu finalize`.")
    if step("start-new-writers").to_undo(ctx) and not drop_new_data:
        return ("abort refused without --drop-new-data: finalize started new's writers "
                "(start-new-writers), and they wrote route targets, useragent keys and their "
                "other cells into new's keyspaces with current writetimes, newer than "
                "anything a later copy from old brings: a retry's pre-sync/post-sync could "
                "not overwrite them and new would keep state old never had. Run `issu abort "
                "--drop-new-data` (new's synced keyspaces and ZooKeeper subtrees are "
                "dropped; a retry copies again from pre-sync), or finish `issu finalize`.")
    return skip_refusal(ctx, list(skip)) if skip else None


def abort(ctx: Context, runner: ComputeRunner, *, drop_new_data: bool = False,
          skip: tuple[str, ...] = ()) -> list[str]:
    """Run every step of `STEPS`; what each did. Refused once finalize committed, and after
    new's writers ran unless new's data is dropped too. `skip`: northbound clients (host,
    HOST:PATH or path) not pointed back, named in the summary for the operator's hands."""
    refused = refusal(ctx, drop_new_data=drop_new_data, skip=skip)
    if refused:
        raise OrchestratorError(refused)
    run = AbortRun(ctx, runner, drop_new_data, skip)
    done: list[str] = []
    for each in STEPS:
        done += each.run(run)
    ctx.clear_steps("finalize.")
    return done


# ----------------------------------------------------------------------------- drop new data


def cassandra_identity(session: Any) -> tuple[str, frozenset[str]]:
    """(cluster_name, host ids of the node answering and its peers) of one Cassandra session."""
    local = session.execute("SELECT cluster_name, host_id FROM system.local").one()
    ids = {str(local[1])}
    ids.update(str(row[0]) for row in session.execute("SELECT host_id FROM system.peers")
               if row[0] is not None)
    return str(local[0]), frozenset(ids)


def same_zookeeper(old: Any, new: Any) -> bool:
    """Whether two started kazoo clients talk to the same ensemble: an ephemeral marker made
    through `new` is looked up through `old` (host spellings, aliases and VIPs cannot fool
    it). The marker lives under /, outside every synced subtree, and goes with its session."""
    marker = f"/issu-identity-{uuid.uuid4().hex}"
    new.create(marker, b"", ephemeral=True)
    try:
        return old.exists(marker) is not None
    finally:
        new.delete(marker)


def drop_new(ctx: Context) -> str:
    """Drop the synced keyspaces and ZooKeeper subtrees of the NEW cluster only.

    Host strings prove nothing (aliases, VIPs, another spelling of an address): before
    anything is dropped, both Cassandra sessions and both ZooKeeper sessions are asked who
    they are, and a keyspace or subtree that may be old's is refused."""
    from backends.cassandra.connection import connect
    from backends.cassandra.registry import load_registry
    from backends.zookeeper.sync import connect as zk_connect
    from issu_tui.sides import cassandra_side

    config = ctx.config
    registry = load_registry()
    wanted = issu_keyspaces(config, registry)
    old_ks = {config.old.cassandra.keyspace(k) for k in registry.keyspaces}
    new_ks = [config.new.cassandra.keyspace(k) for k in wanted]
    new_root = config.new.zookeeper.root.rstrip("/")
    old_root = config.old.zookeeper.root
    paths = [f"{new_root}/{subtree}" for subtree in config.sync.zk_subtrees]
    try:
        with connect(cassandra_side(config, "old"), request_timeout=30) as old_conn:
            old_id = cassandra_identity(old_conn.session)
    except Exception as exc:
        raise OrchestratorError(
            f"refusing to drop new data: cannot ask old Cassandra "
            f"{', '.join(config.old.cassandra.hosts)} who it is ({type(exc).__name__}: {exc}); "
            "without that, new cannot be proven to be another cluster") from None
    with connect(cassandra_side(config, "new"), request_timeout=120) as conn:
        new_id = cassandra_identity(conn.session)
        same_cluster = old_id[0] == new_id[0] and bool(old_id[1] & new_id[1])
        shared = [k for k in new_ks if k in old_ks] if same_cluster else []
        if shared:
            raise OrchestratorError(
                f"refusing to drop {', '.join(shared)}: new Cassandra "
                f"{', '.join(config.new.cassandra.hosts)} is old's cluster {old_id[0]!r} "
                "(same host ids) and these keyspaces are old's; check new.cassandra "
                "hosts/prefix")
        old_zk = zk_connect(config.old.zookeeper.connect_string)
        try:
            new_zk = zk_connect(config.new.zookeeper.connect_string)
            try:
                if same_zookeeper(old_zk, new_zk):
                    # same root, or old's root inside a subtree to delete: old's data goes
                    doomed = [p for p in paths if old_root == p or old_root.startswith(p + "/")]
                    if new_root == old_root.rstrip("/") or doomed:
                        raise OrchestratorError(
                            f"refusing to drop new data: new ZooKeeper "
                            f"{config.new.zookeeper.connect_string} is old's ensemble and the "
                            f"root {config.new.zookeeper.root} holds old's subtrees "
                            f"({', '.join(doomed or paths)}); check new.zookeeper hosts/prefix")
                dropped = []
                for keyspace in new_ks:
                    conn.session.execute(f'DROP KEYSPACE IF EXISTS "{keyspace}"')
                    dropped.append(keyspace)
                removed = []
                for path in paths:
                    if new_zk.exists(path):
                        new_zk.delete(path, recursive=True)
                        removed.append(path)
            finally:
                new_zk.stop()
                new_zk.close()
        finally:
            old_zk.stop()
            old_zk.close()
    return (f"dropped new keyspaces {', '.join(dropped)}; ZooKeeper "
            f"{', '.join(removed) or 'nothing to remove'}")
