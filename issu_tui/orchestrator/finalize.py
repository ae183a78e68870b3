"""Pairing, finalize and abort: each a list of named steps, each done once (journal markers).

The point of no return is `finalize.commit`: before it, `abort` brings everything back to
the old cluster; after it, northbound clients write to the new cluster and abort is refused.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from backends.apiserver import ApiServerError
from backends.versions import release_matches
from issu_tui.orchestrator.computes import ComputeRunner
from issu_tui.orchestrator.context import Context, OrchestratorError
from issu_tui.orchestrator.northbound import load_clients, switch_client
from issu_tui.orchestrator.preflight import keyspaces_absent_on_old
from issu_tui.orchestrator.syncproc import RunSync, run_step

COMMIT_STEP = "finalize.commit"
# Marked (under ctx.runsync_lock) just before finalize stops run-sync for good: from then on
# the supervisor leaves it stopped, even if the stop-run-sync step itself is interrupted.
RUNSYNC_STOPPING = "finalize.run-sync-stopping"
CONFIG_DB_UUID = "config_db_uuid"


def _difference_samples(report: dict[str, object], limit: int = 10) -> str:
    """The first differences of a verify --json report, one line each."""
    lines = []
    for table in report.get("tables", []):  # type: ignore[union-attr]
        for sample in table.get("samples", []):
            lines.append(f"{table['keyspace']}.{table['table']}: {sample.get('kind')} "
                         f"key={sample.get('key')!r} column={sample.get('column')!r} "
                         f"{sample.get('detail') or ''}".rstrip())
            if len(lines) >= limit:
                return "\n".join(lines)
    return "\n".join(lines)


def quarantined_tables(report: dict[str, object]) -> dict[str, int]:
    """`keyspace.table` -> cells verify found quarantined (old cells with no translation to
    new: on new they are absent, not equal), from a verify --json report."""
    out: dict[str, int] = {}
    for table in report.get("tables", []):  # type: ignore[union-attr]
        count = int(table.get("quarantined") or 0)
        if count:
            out[f"{table['keyspace']}.{table['table']}"] = count
    return out


def quarantine_gate(ctx: Context, report: dict[str, object], *, force: bool,
                    reason: str) -> str:
    """Quarantined cells block finalize (new would silently lack them) unless --force, whose
    reason is recorded with the list. Returns what is accepted ('' when nothing)."""
    tables = quarantined_tables(report)
    if not tables:
        return ""
    total = sum(tables.values())
    listing = ", ".join(f"{name} ({count})" for name, count in sorted(tables.items()))
    if not force:
        raise OrchestratorError(
            f"verify: {total} quarantined cell(s), in {listing}: new lacks them. See "
            "`issu sync verify` and the quarantine table, fix the translation or the data, "
            "then finalize again; or finalize --force --reason '...' to go on without them")
    ctx.event("finalize", f"verify: {total} quarantined cell(s) accepted by --force: {reason}",
              level="warning", quarantined=tables, reason=reason)
    return f"; {total} quarantined cell(s) in {listing}, forced: {reason}"


# ----------------------------------------------------------------------------- pairing


def pair(ctx: Context) -> str:
    """In the old cluster, a bgp-router for every control node of both clusters (the old
    ones normally exist already): old and new control nodes then peer over iBGP. The new
    cluster's database gets the same objects with the data (pre-sync, then run-sync), which
    `check_pairing` confirms; the fenced new api-server takes no write before finalize."""
    if not ctx.bgp_specs("new"):
        raise OrchestratorError(f"{ctx.config_path}: new.control_nodes: list the new control "
                                "nodes (name, address) to pair them with the old ones")
    specs = ctx.bgp_specs("old") + ctx.bgp_specs("new")
    with ctx.api("old") as old:
        result = old.pair(specs)
    message = (f"old cluster: bgp-routers created {', '.join(result.created) or 'none'}, "
               f"already there {', '.join(result.existing) or 'none'} (AS {ctx.config.old.asn})")
    ctx.event("pair", message, created=result.created, existing=result.existing)
    return message


def check_pairing(ctx: Context) -> str:
    """After pre-sync: the new cluster knows every control node of both clusters."""
    with ctx.api("new") as new:
        present = new.bgp_router_names()
    wanted = [s.name for s in ctx.bgp_specs("old") + ctx.bgp_specs("new")]
    missing = [n for n in wanted if n not in present]
    if missing:
        raise OrchestratorError(
            f"the new cluster lacks bgp-routers for {', '.join(missing)} after pre-sync; "
            "check the pair step and the pre-sync output (`issu events`)")
    return f"new cluster holds bgp-routers for {', '.join(wanted)}"


def unpair(ctx: Context, *, old_side: bool = True, new_side: bool = True) -> str:
    """Remove the cross-cluster bgp-routers: new control nodes from old, old ones from new.

    A fenced api-server refuses every write: its side is reported, not forced open (finalize
    unpairs the new side once the new api-server is open; the old side stays as it is in a
    cluster being retired)."""
    parts = []
    sides = [("old", "new", old_side), ("new", "old", new_side)]
    for where, whose, wanted in sides:
        if not wanted:
            continue
        try:
            with ctx.api(where) as api:
                result = api.unpair([s.name for s in ctx.bgp_specs(whose)])
        except ApiServerError as exc:
            if not exc.fenced:
                raise
            parts.append(f"{where} cluster is fenced (writes refused): its bgp-routers for "
                         f"the {whose} control nodes stay")
            continue
        parts.append(f"{where} cluster: removed bgp-routers of {whose} control nodes "
                     f"{', '.join(result.deleted) or 'none (already gone)'}")
    message = "; ".join(parts)
    ctx.event("pair", f"unpair: {message}")
    return message


# ----------------------------------------------------------------------------- finalize


def computes_not_on_new(ctx: Context) -> list[str]:
    new_version = ctx.config.new.version
    inventory = {c.name for c in ctx.config.computes}
    return [r.name for r in ctx.journal.computes()
            if r.name in inventory
            and not (r.state == "upgraded" and release_matches(new_version, r.version))]


def _step(ctx: Context, name: str, action: object) -> None:
    """Run `action()` once: a done step is skipped on a re-run."""
    step = f"finalize.{name}"
    if ctx.step_done(step):
        return
    ctx.check_stop(step)
    ctx.event("finalize", f"{name}: running", step=name)
    detail = action()  # type: ignore[operator]
    if detail:
        ctx.event("finalize", f"{name}: {detail}", step=name)
    ctx.mark_step(step)


def finalize(ctx: Context, *, force: bool = False, reason: str = "",
             old_stopped: bool = False, northbound_file: Path | None = None,
             no_northbound: bool = False, drain_timeout_s: float = 120.0) -> list[str]:
    laggards = computes_not_on_new(ctx)
    if laggards and not ctx.step_done(COMMIT_STEP):
        if not force:
            raise OrchestratorError(
                f"{len(laggards)} compute(s) not on the new cluster: "
                f"{', '.join(laggards[:20])}{' ...' if len(laggards) > 20 else ''}; upgrade "
                "them (`issu compute upgrade ...`) or finalize --force --reason '...'")
        if not reason.strip():
            raise OrchestratorError("--force needs --reason: it is recorded in the journal")
        ctx.event("finalize", f"forced with {len(laggards)} compute(s) not on new: {reason}",
                  level="warning", computes=laggards, reason=reason)
    if no_northbound:
        clients = []
        if not ctx.step_done("finalize.switch-northbound"):
            ctx.event("finalize", "--no-northbound: issu re-points no northbound client; the "
                      "operator switches neutron/k8s/vCenter/collectors to the new cluster",
                      level="warning", no_northbound=True)
    elif ctx.step_done("finalize.switch-northbound") and ctx.step_done("finalize.analytics"):
        clients = []  # both switched already: a re-run needs the file no more
    else:
        clients = load_clients(northbound_file)  # refused before anything changes
    runsync = RunSync(ctx)
    report: list[str] = []

    def fence_old() -> str:
        if old_stopped:
            return "old config services stopped by the operator (--old-stopped)"
        try:
            with ctx.api("old") as old:
                old.set_fence(True)
        except ApiServerError as exc:
            raise OrchestratorError(
                f"cannot fence the old api-server ({exc}); stop the old config services "
                "(contrail-api, schema, svc-monitor, device-manager) on the old config nodes, "
                "then run finalize again with --old-stopped") from None
        return "old api-server refuses northbound writes"

    def stop_runsync() -> str:
        if runsync.running():
            counters = runsync.wait_drained(timeout_s=drain_timeout_s)
            with ctx.runsync_lock:
                ctx.mark_step(RUNSYNC_STOPPING)
                runsync.stop()
            return (f"drained (applied {counters.get('applied', 0):.0f}, failed "
                    f"{counters.get('failed', 0):.0f}) and stopped")
        with ctx.runsync_lock:
            ctx.mark_step(RUNSYNC_STOPPING)
            runsync.stop()  # a supervisor may have restarted it while we looked
        return "was not running"

    def sync(step: str) -> str:
        run = run_step(ctx, step)
        if run.exit_code != 0:
            raise OrchestratorError(f"{step} failed (exit {run.exit_code}):\n{run.output}")
        return f"done in {run.duration_s:.1f}s"

    last_report: dict[str, object] = {}

    def run_verify() -> tuple[int, float | None, str]:
        # Keyspaces old never had (preflight warned) are excluded by name; config_db_uuid
        # never is, so a wrong prefix still fails here.
        absent = [k for k in keyspaces_absent_on_old(ctx) if k != "config_db_uuid"]
        if absent:
            ctx.event("finalize", f"verify: not verified, absent on old: {', '.join(absent)}",
                      level="warning")
        allow = [arg for k in absent for arg in ("--allow-missing", k)]
        run = run_step(ctx, "verify", ["--json", *allow])
        last_report.clear()
        try:
            report = json.loads(run.stdout)
            totals = report["totals"]
        except (ValueError, KeyError, TypeError):
            return run.exit_code, None, run.output  # no report (a crash): the exit code decides
        last_report.update(report)
        differences = float(totals["missing"] + totals["extra"] + totals["different"])
        ctx.journal.set_counters("verify", {"differences": differences,
                                            "checked": float(totals["cells_compared"]),
                                            "quarantined": float(totals.get("quarantined", 0)),
                                            "at": time.time()})
        return run.exit_code, differences, _difference_samples(report)

    def verify() -> str:
        code, differences, detail = run_verify()
        repaired = ""
        if code != 0 or differences:
            # Old is fenced and run-sync drained: one more copy of config_db_uuid (replace,
            # by writetime) makes new equal old whatever run-sync missed. Reported, not hidden.
            ctx.event("finalize", f"verify: {differences if differences is not None else '?'} "
                      "difference(s) after run-sync; repairing with a final copy of "
                      "config_db_uuid", level="warning", detail=detail)
            run = run_step(ctx, "pre-sync", ["--fresh", "-k", CONFIG_DB_UUID])
            if run.exit_code != 0:
                raise OrchestratorError(f"final copy of {CONFIG_DB_UUID} failed "
                                        f"(exit {run.exit_code}):\n{run.output}")
            repaired = f" (after repairing {differences or 0:.0f} left by run-sync)"
            code, differences, detail = run_verify()
        if code == 0 and (differences or 0) == 0:
            checked = ctx.journal.counters("verify").get("checked", 0)
            accepted = quarantine_gate(ctx, last_report, force=force, reason=reason)
            return f"zero differences in {checked:.0f} cells{repaired}{accepted}"
        what = (f"{differences:.0f} differences" if differences is not None
                else f"verify failed (exit {code})")
        if force:
            ctx.event("finalize", f"verify: {what}, accepted by --force: {reason}",
                      level="warning", reason=reason)
            accepted = quarantine_gate(ctx, last_report, force=force, reason=reason)
            return f"{what}, forced: {reason}{accepted}"
        raise OrchestratorError(
            f"verify: {what}; fix and re-run finalize, or finalize --force --reason '...'.\n"
            + detail)

    def commit() -> str:
        ctx.event("finalize", "point of no return: switching northbound to the new cluster",
                  level="warning")
        return "committed"

    def switch_northbound() -> str:
        if no_northbound:
            return "skipped (--no-northbound): the operator switches the clients"
        done = [switch_client(ctx, c) for c in clients if c.kind != "collector"]
        return "; ".join(done) or "no northbound api clients listed (collectors only)"

    def open_new() -> str:
        try:
            with ctx.api("new") as new:
                new.set_fence(False)
        except ApiServerError as exc:
            if exc.status_code != 404:
                raise
            ctx.event("finalize", "the new api-server has no fence call: put it behind the "
                      "northbound VIP / haproxy now", level="warning")
            return "no fence call on the new api-server: opened by the operator (runbook 7.8)"
        return "new api-server accepts writes"

    def repoint_analytics() -> str:
        if no_northbound:
            return "skipped (--no-northbound): the operator re-points the collectors"
        done = [switch_client(ctx, c) for c in clients if c.kind == "collector"]
        return "; ".join(done) or "no collector clients listed"

    steps = [
        ("fence-old", fence_old),
        ("stop-run-sync", stop_runsync),
        ("post-sync", lambda: sync("post-sync")),
        ("zk-sync", lambda: sync("zk-sync")),
        ("verify", verify),
        # after verify (a quarantine's messages help explain differences), before the point
        # of no return: run-sync is stopped for good and old is fenced
        ("delete-queues", lambda: delete_runsync_queues(ctx)),
        ("commit", commit),
        ("switch-northbound", switch_northbound),
        ("open-new", open_new),
        # The new api-server refuses every write until it is open: unpair after. The old
        # cluster is fenced and being retired: its copy of the pairing is left alone.
        ("unpair", lambda: unpair(ctx, old_side=False)),
        ("analytics", repoint_analytics),
    ]
    for name, action in steps:
        _step(ctx, name, action)
        report.append(name)
    return report


def delete_runsync_queues(ctx: Context) -> str:
    """Delete run-sync's durable queue and its quarantine on the old broker (run-sync is
    stopped): left there, they would collect every config change of the old cluster forever.
    Each queue's depth is reported; a quarantine holding messages is a warning."""
    from backends.rabbit import QUARANTINE_SUFFIX, delete_issu_queues
    from issu_tui.sides import rabbit_side

    side = rabbit_side(ctx.config.old)
    try:
        results = delete_issu_queues(side, ctx.config.sync.queue_name)
    except Exception as exc:  # unreachable broker, refused credentials
        raise OrchestratorError(
            f"cannot delete run-sync's queues on {side.describe()}: {type(exc).__name__}: "
            f"{exc}; fix the broker access and run again, or delete them later with "
            f"`issu sync cleanup-queues -c {ctx.config_path}`") from None
    parts = [f"{r.name} {'absent' if r.depth is None else f'deleted ({r.depth} message(s))'}"
             for r in results]
    lost = sum(r.depth or 0 for r in results if r.name.endswith(QUARANTINE_SUFFIX))
    message = f"run-sync queues on {side.describe()}: {', '.join(parts)}"
    ctx.event("sync", message, level="warning" if lost else "info",
              queues={r.name: r.depth for r in results})
    return message


# ----------------------------------------------------------------------------- abort


def abort(ctx: Context, runner: ComputeRunner, *, drop_new_data: bool = False) -> list[str]:
    """Everything back to the old cluster; refused once finalize committed."""
    if ctx.step_done(COMMIT_STEP):
        raise OrchestratorError(
            "finalize passed its point of no return (northbound switched to the new cluster); "
            "abort is no longer possible. Roll forward: finish `issu finalize`.")
    done: list[str] = []
    back = [r.name for r in ctx.journal.computes()
            if r.state != "old" or not release_matches(ctx.config.old.version, r.version)]
    if back:
        outcome = runner.run("rollback", back, canary=0, max_failures=len(back))
        if outcome.failed or outcome.not_started:
            raise OrchestratorError(
                f"abort: rollback failed on {', '.join(outcome.failed + outcome.not_started)}; "
                "fix them (`issu events`, `issu status`) and run abort again")
        done.append(f"rolled back {len(back)} compute(s)")
    if ctx.step_done("finalize.fence-old"):
        with ctx.api("old") as old:
            old.set_fence(False)
        done.append("old api-server open for writes again")
    done.append(unpair(ctx, new_side=False))
    with ctx.runsync_lock:  # the phase is "aborting": the supervisor leaves it stopped
        if RunSync(ctx).stop():
            done.append("run-sync stopped")
    try:
        done.append(delete_runsync_queues(ctx))
    except OrchestratorError as exc:
        # everything is back on old already; a leftover queue is cleanup, not a reason to
        # leave the abort unfinished
        ctx.event("sync", str(exc), level="error")
        done.append(f"run-sync queues NOT deleted: {exc}")
    if drop_new_data:
        done.append(drop_new(ctx))
    else:
        done.append("new cluster's synced data left in place, unused")
    ctx.clear_steps("finalize.")
    return done


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
    wanted = config.sync.keyspaces or sorted(registry.keyspaces)
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
