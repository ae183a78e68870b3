"""finalize: the new cluster takes over, in named steps, each done once (journal markers).

`STEPS` is the ordered list: each step's name (its marker is `finalize.<name>`), what it
does, the function that does it and, where one exists, its inverse, which abort runs when
the step was done. The point of no return is the `commit` step, just before the new
api-server opens: before it, nothing northbound has reached new and abort brings everything
back to the old cluster (new's writers stopped again, the northbound clients pointed back);
after it, northbound clients write to the new cluster and abort is refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backends.apiserver import ApiServerError
from backends.versions import release_matches
from issu_tui.orchestrator import phases
from issu_tui.orchestrator.context import Context, OrchestratorError
from issu_tui.orchestrator.controllers import (
    fence_applied_by_profile,
    fence_by_profile,
    fence_status_by_profile,
    start_new_writers,
    start_old_services,
    stop_new_writers_again,
    stop_old_services,
)
from issu_tui.orchestrator.node_cleanup import keep_old_bgp_routers, remove_old_node_records
from issu_tui.orchestrator.northbound import (
    NorthboundClient,
    client_key,
    client_marker,
    client_name,
    load_clients,
    record_switched,
    revert_clients,
    switch_client,
    switched_clients,
)
from issu_tui.orchestrator.pairing import unpair
from issu_tui.orchestrator.preflight import keyspaces_absent_on_old
from issu_tui.orchestrator.settle import settle_old_writers
from issu_tui.orchestrator.syncproc import ReverseSyncSupervisor, RunSyncSupervisor, run_step
from issu_tui.sides import issu_keyspaces

if TYPE_CHECKING:
    from backends.rabbit import RabbitSide

# Marked (under ctx.runsync_lock) just before finalize stops run-sync for good: from then on
# the supervisor leaves it stopped, even if the stop-run-sync step itself is interrupted.
RUNSYNC_STOPPING = "finalize.run-sync-stopping"
# Marked once the reverse replication new -> old runs (the way back after the commit,
# issu revert); the revert marks REVERSE_STOPPING (under runsync_lock) before stopping it.
REVERSE_STARTED = phases.REVERSE_STARTED
REVERSE_STOPPING = "revert.reverse-sync-stopping"
CONFIG_DB_UUID = "config_db_uuid"


def _tables(report: dict[str, object]) -> list[dict[str, Any]]:
    """The per-table entries of a verify --json report (none when it has no such list)."""
    tables = report.get("tables")
    return [t for t in tables if isinstance(t, dict)] if isinstance(tables, list) else []


def difference_samples(report: dict[str, object], limit: int = 10) -> str:
    """The first differences of a verify --json report, one line each."""
    lines: list[str] = []
    for table in _tables(report):
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
    for table in _tables(report):
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


# ----------------------------------------------------------------------------- the steps


@dataclass
class FinalizeRun:
    """One run of finalize: what it was asked for, and what a step hands to a later one."""

    ctx: Context
    force: bool = False
    reason: str = ""
    old_stopped: bool = False
    no_northbound: bool = False
    clients: list[NorthboundClient] = field(default_factory=list)
    drain_timeout_s: float = 120.0
    commit_early: bool = False  # take the point of no return when new's fence is not shown
    remove_old_records: bool = False  # --remove-old-records (or [finalize] in the config)
    fence_tries: int = 5        # check-new-fenced: asked this often before "not shown"
    fence_retry_s: float = 3.0
    verify_report: dict[str, object] = field(default_factory=dict)


def fence_old(run: FinalizeRun) -> str:
    if run.old_stopped:
        return "old config services stopped by the operator (--old-stopped)"
    by_profile = fence_by_profile(run.ctx, "old", closed=True)
    if by_profile:
        return f"old api-server refuses northbound writes: {by_profile}"
    try:
        with run.ctx.api("old") as old:
            old.set_fence(True)
    except ApiServerError as exc:
        raise OrchestratorError(
            f"cannot fence the old api-server ({exc}); stop the old config services "
            "(contrail-api, schema, svc-monitor, device-manager) on the old config nodes, "
            "then run finalize again with --old-stopped") from None
    return "old api-server refuses northbound writes"


# How long abort waits for old's api-server, just started again, to answer its fence call.
API_START_WAIT_S = 120.0
API_START_POLL_S = 2.0


def unfence_old(ctx: Context) -> str:
    """fence-old's inverse (abort; also after a fence-old that failed half-way): the hosts
    its profile step fenced, or began to, are unfenced; else the api-server's fence call."""
    by_profile = fence_by_profile(ctx, "old", closed=False, only_fenced=True)
    if by_profile:
        return f"old api-server open for writes again: {by_profile}"
    deadline, said = time.monotonic() + API_START_WAIT_S, False
    while True:
        try:
            with ctx.api("old") as old:
                old.set_fence(False)
            break
        except ApiServerError as exc:
            if exc.status_code == 404:
                return "old api-server has no fence call: nothing to reopen"
            # not answering: abort started it again a moment ago (start-old-services runs
            # just before), and an api-server takes a while to listen
            if exc.status_code is not None or time.monotonic() > deadline:
                raise
            if not said:
                ctx.event("abort", f"old api-server not answering yet ({exc}); waiting up to "
                          f"{API_START_WAIT_S:g}s for it to start", step="fence-old")
                said = True
            ctx.check_stop("unfence old")
            time.sleep(API_START_POLL_S)
    return "old api-server open for writes again"


def settle_old(run: FinalizeRun) -> str:
    if run.old_stopped:
        return "old config services stopped by the operator (--old-stopped)"
    return settle_old_writers(run.ctx, force=run.force, reason=run.reason)


def stop_old(run: FinalizeRun) -> str:
    return stop_old_services(run.ctx)


# What the operator can do when new's fence cannot be shown (check-new-fenced refuses).
FENCE_HELP = (
    "Either give new's config hosts' profile a `fence_status` step that prints `fenced` or "
    "`open` (with `fence`/`unfence`, e.g. a firewall rule on the api-server's port; runbook "
    "7.1) and run finalize again; or run `issu finalize --commit-early` to take the point of "
    "no return here: the reverse replication starts first, then new's writers and the "
    "northbound switch, and abort is refused from then on (issu revert is the way back)")


def new_fence(run: FinalizeRun) -> tuple[bool | None, str]:
    """Whether new refuses northbound writes: True (shown), False (new says it is open) or
    None (it cannot be shown), and why. Asked of the `fence_status` step where new's config
    hosts' profile defines one, else of the api-server's fence call. An error (a timeout,
    an api-server restarting) is asked again, `fence_tries` times in all."""
    ctx = run.ctx
    tries = max(1, run.fence_tries)
    last = ""
    for attempt in range(1, tries + 1):
        try:
            by_profile = fence_status_by_profile(ctx, "new")
            if by_profile is not None:
                return by_profile
            with ctx.api("new") as new:
                if new.fence_state():
                    return True, "the new api-server reports itself fenced"
                return False, "the new api-server reports itself open"
        except ApiServerError as exc:
            if exc.status_code in (404, 405):  # a real Contrail api-server: no fence call
                return _fence_without_call(ctx, exc)
            last = str(exc)
        except OrchestratorError as exc:
            last = str(exc)
        ctx.event("finalize", f"check-new-fenced: try {attempt} of {tries}: {last}",
                  level="warning")
        if attempt < tries:
            time.sleep(run.fence_retry_s)
    return None, f"new's fence cannot be confirmed after {tries} tries ({last})"


def _fence_without_call(ctx: Context, exc: ApiServerError) -> tuple[bool | None, str]:
    """An api-server without a fence call: the profile's fence is relied upon when this
    upgrade applied it on every new config host (prepare-new); it is not proven."""
    applied = fence_applied_by_profile(ctx, "new")
    if applied is None:
        return None, (f"the new api-server has no fence call ({exc}) and no profile step "
                      "fenced new in this upgrade")
    why = (f"the new api-server has no fence call; relied upon: the profile's fence step "
           f"fenced {applied} in this upgrade (not proven: a `fence_status` step would)")
    ctx.event("finalize", f"check-new-fenced: {why}", level="warning")
    return True, why


def check_new_fenced(run: FinalizeRun) -> str:
    """start-new-writers and switch-northbound come before the point of no return only when
    new refuses northbound writes: otherwise a client switched to it could write there, and
    an abort (back to old) would silently lose those writes. New open: the point of no
    return is taken here. New's fence not shown (an error, an api-server without a fence
    call and no profile proof): refused, nothing committed, unless --commit-early."""
    fenced, why = new_fence(run)
    if fenced:
        return why
    if fenced is None and not run.commit_early:
        raise OrchestratorError(f"check-new-fenced: {why}. Nothing was committed: abort is "
                                f"still possible. {FENCE_HELP}")
    return commit_early(run, why)


def commit_early(run: FinalizeRun, why: str) -> str:
    """The point of no return before new's writers and the northbound switch. Writes can
    reach new from here, so the reverse replication's queue is declared first (its step run
    now, skipped later): issu revert can carry every one of them back to old."""
    ctx = run.ctx
    _run_once(run, step("start-reverse-sync"))
    asked = " (--commit-early)" if run.commit_early else ""
    ctx.event("finalize", f"point of no return, early{asked}: {why}; new's writers start and "
              "northbound switches with abort refused from here", level="warning")
    ctx.mark_step(COMMIT_STEP)
    return f"{why}: the point of no return is taken here{asked}, abort is refused from now on"


def start_new(run: FinalizeRun) -> str:
    return start_new_writers(run.ctx)


def stop_runsync(run: FinalizeRun) -> str:
    ctx = run.ctx
    runsync = RunSyncSupervisor(ctx)
    if runsync.running():
        counters = runsync.wait_drained(timeout_s=run.drain_timeout_s)
        with ctx.runsync_lock:
            ctx.mark_step(RUNSYNC_STOPPING)
            runsync.stop()
        return (f"drained (applied {counters.get('applied', 0):.0f}, failed "
                f"{counters.get('failed', 0):.0f}) and stopped")
    with ctx.runsync_lock:
        ctx.mark_step(RUNSYNC_STOPPING)
        runsync.stop()  # a supervisor may have restarted it while we looked
    return "was not running"


def _sync(run: FinalizeRun, step: str) -> str:
    result = run_step(run.ctx, step)
    if result.exit_code != 0:
        raise OrchestratorError(f"{step} failed (exit {result.exit_code}):\n{result.output}")
    return f"done in {result.duration_s:.1f}s"


def post_sync(run: FinalizeRun) -> str:
    return _sync(run, "post-sync")


def zk_sync(run: FinalizeRun) -> str:
    return _sync(run, "zk-sync")


def _run_verify(run: FinalizeRun) -> tuple[int, float | None, str]:
    return run_verify(run.ctx, run.verify_report)


def run_verify(ctx: Context, kept: dict[str, object]) -> tuple[int, float | None, str]:
    """One `issu sync verify --json`: (exit code, differences or None without a report,
    what to show). The report is kept in `kept`, its totals in the journal."""
    # Keyspaces old never had (preflight warned) are excluded by name; config_db_uuid
    # never is, so a wrong prefix still fails here.
    absent = [k for k in keyspaces_absent_on_old(ctx) if k != CONFIG_DB_UUID]
    if absent:
        ctx.event("finalize", f"verify: not verified, absent on old: {', '.join(absent)}",
                  level="warning")
    allow = [arg for k in absent for arg in ("--allow-missing", k)]
    result = run_step(ctx, "verify", ["--json", *allow])
    kept.clear()
    try:
        report = json.loads(result.stdout)
        totals = report["totals"]
    except (ValueError, KeyError, TypeError):
        return result.exit_code, None, result.output  # no report (a crash): the exit code
    kept.update(report)
    # per table, cells on old (each one compared) and on new (the console's Sync screen)
    per_table: dict[str, float] = {}
    for table in _tables(report):
        name = f"{table['keyspace']}.{table['table']}"
        compared = float(table.get("cells_compared") or 0)
        per_table[f"{name}.old"] = compared
        per_table[f"{name}.new"] = compared - float(table.get("missing") or 0) + float(
            table.get("extra") or 0)
    if per_table:
        ctx.journal.set_counters("verify.tables", per_table)
    differences = float(totals["missing"] + totals["extra"] + totals["different"])
    ctx.journal.set_counters("verify", {"differences": differences,
                                        "checked": float(totals["cells_compared"]),
                                        "quarantined": float(totals.get("quarantined", 0)),
                                        "at": time.time()})
    return result.exit_code, differences, difference_samples(report)


def verify(run: FinalizeRun) -> str:
    ctx = run.ctx
    code, differences, detail = _run_verify(run)
    repaired = ""
    if code != 0 or differences:
        # Old is fenced and run-sync drained: one more copy of config_db_uuid (replace,
        # by writetime) makes new equal old whatever run-sync missed. Reported, not hidden.
        ctx.event("finalize", f"verify: {differences if differences is not None else '?'} "
                  "difference(s) after run-sync; repairing with a final copy of "
                  "config_db_uuid", level="warning", detail=detail)
        copy = run_step(ctx, "pre-sync", ["--fresh", "-k", CONFIG_DB_UUID])
        if copy.exit_code != 0:
            raise OrchestratorError(f"final copy of {CONFIG_DB_UUID} failed "
                                    f"(exit {copy.exit_code}):\n{copy.output}")
        repaired = f" (after repairing {differences or 0:.0f} left by run-sync)"
        code, differences, detail = _run_verify(run)
    if code == 0 and (differences or 0) == 0:
        checked = ctx.journal.counters("verify").get("checked", 0)
        accepted = quarantine_gate(ctx, run.verify_report, force=run.force, reason=run.reason)
        return f"zero differences in {checked:.0f} cells{repaired}{accepted}"
    what = (f"{differences:.0f} differences" if differences is not None
            else f"verify failed (exit {code})")
    if run.force:
        ctx.event("finalize", f"verify: {what}, accepted by --force: {run.reason}",
                  level="warning", reason=run.reason)
        accepted = quarantine_gate(ctx, run.verify_report, force=run.force, reason=run.reason)
        return f"{what}, forced: {run.reason}{accepted}"
    raise OrchestratorError(
        f"verify: {what}; fix and re-run finalize, or finalize --force --reason '...'.\n"
        + detail)


def delete_queues(run: FinalizeRun) -> str:
    return delete_runsync_queues(run.ctx)


def commit(run: FinalizeRun) -> str:
    run.ctx.event("finalize", "point of no return: the new api-server opens to northbound "
                  "writes", level="warning")
    return "committed"


def switch_northbound(run: FinalizeRun) -> str:
    if run.no_northbound:
        return "skipped (--no-northbound): the operator switches the clients"
    return switch_each(run.ctx, "switch-northbound",
                       [c for c in run.clients if c.kind != "collector"]) \
        or "no northbound api clients listed (collectors only)"


def switch_each(ctx: Context, step_name: str, clients: list[NorthboundClient]) -> str:
    """Switch `clients` one by one, each marked in the journal once switched (a retry skips
    it) and recorded just before its own edit (abort and revert read it back and point it
    back); on a failure the journal says which clients were switched and which not."""
    # a client not switched by an earlier run of this upgrade gets a fresh backup (one
    # left by an earlier upgrade would be restored by abort)
    earlier = {client_key(c) for c in switched_clients(ctx)}
    done: list[str] = []
    for i, client in enumerate(clients):
        marker = client_marker(step_name, client)
        if ctx.step_done(marker):
            done.append(f"{client_name(client)}: switched by an earlier run")
            continue
        # recorded just before its own edit, not all at once: a client a killed run never
        # reached is not "switched earlier" and keeps no leftover
        record_switched(ctx, [client])
        try:
            said = switch_client(ctx, client, fresh_backup=client_key(client) not in earlier)
        except OrchestratorError as exc:
            switched = [client_name(c) for c in clients[:i]]
            pending = [client_name(c) for c in clients[i + 1:]]
            ctx.event("finalize", f"{step_name}: {client_name(client)} failed: {exc}; "
                      f"switched: {', '.join(switched) or 'none'}; not switched: "
                      f"{', '.join([client_name(client), *pending])}", level="error",
                      step=step_name, failed=client_name(client), switched=switched,
                      pending=pending)
            raise
        ctx.mark_step(marker)
        ctx.event("finalize", f"{step_name}: {said}", step=step_name,
                  client=client_name(client))
        done.append(said)
    return "; ".join(done)


def translator_blockers(ctx: Context) -> list[str]:
    """Why the reverse replication cannot translate new's rows back to old's release: each
    translator step without an inverse, or the version path itself, named."""
    from backends.cassandra.registry import RegistryError, load_registry
    from backends.versions import VersionPathError

    try:
        registry = load_registry()
        keyspaces = issu_keyspaces(ctx.config, registry)
        return registry.revert_blockers(ctx.config.old.version, ctx.config.new.version,
                                        keyspaces)
    except (RegistryError, VersionPathError) as exc:
        return [str(exc)]


def start_reverse_sync(run: FinalizeRun) -> str:
    """The way back after the commit: before new opens, the reverse replication new -> old
    declares its durable queue on new's broker and runs, so every write new takes reaches
    old's (intact) database through the translators' inverses. Without an inverse for some
    translator step the way back is closed: said, and finalize goes on."""
    ctx = run.ctx
    blockers = translator_blockers(ctx)
    if blockers:
        ctx.event("finalize", "the way back after finalize is closed (issu revert refused): "
                  + "; ".join(blockers), level="warning", blockers=blockers)
        return "not started: " + "; ".join(blockers)
    reverse = ReverseSyncSupervisor(ctx)
    if ctx.step_done(REVERSE_STARTED) and reverse.running():
        return (f"reverse replication new -> old running since the point of no return (pid "
                f"{reverse.pid()})")
    with ctx.runsync_lock:
        reverse.start()
        ctx.mark_step(REVERSE_STARTED)
    counters = reverse.wait_reporting()
    time.sleep(1.0)  # a refusal at start (exit 2) reports its counters on the way out
    if not reverse.running():
        raise OrchestratorError(f"the reverse replication exited at start; last output:\n"
                                f"{reverse.last_output()}")
    return (f"reverse replication new -> old running (pid {reverse.pid()}, queue "
            f"{ctx.config.sync.queue_name}.reverse on new's broker, queue depth "
            f"{counters.get('queue_depth', 0):.0f}): `issu revert` can bring old back")


def reverse_queue(ctx: Context) -> tuple[RabbitSide, str]:
    """new's broker (its vhost) and the reverse replication's queue there."""
    from issu_tui.sides import REVERSE_QUEUE_SUFFIX, rabbit_side

    return rabbit_side(ctx.config.new), ctx.config.sync.queue_name + REVERSE_QUEUE_SUFFIX


def bind_reverse_queue(run: FinalizeRun) -> str:
    """The reverse replication's durable queue declared on new's broker and bound to its
    object-update exchange before new's writers start or any northbound client can reach
    new: from here every change new announces waits there until start-reverse-sync consumes
    it after the commit, so `issu revert` carries new's writers' first writes back to old
    by their messages. Nothing consumes it before the commit (old is still the cluster
    serving); abort deletes it. With a translator step without an inverse there is no way
    back and no queue."""
    from backends.rabbit import declare_issu_queues, purge_queue, queue_state

    ctx = run.ctx
    blockers = translator_blockers(ctx)
    if blockers:
        return "not bound (no way back after finalize): " + "; ".join(blockers)
    side, name = reverse_queue(ctx)
    try:
        state = queue_state(side, name)
        if state is not None and state[1]:
            # this finalize's own starts only after the commit, after this step
            raise OrchestratorError(
                f"the reverse replication's queue {name} on {side.describe()} has {state[1]} "
                "consumer(s): an earlier upgrade's reverse replication still runs on it; "
                "close that way back (`issu close-way-back` with that upgrade's config) or "
                "stop it, then run finalize again (nothing was committed)")
        created = declare_issu_queues(side, name)
        # one left by an earlier upgrade (the way back never closed): what it holds is
        # older than this finalize; nothing new's writers made is in it yet
        dropped = 0 if created else purge_queue(side, name)
    except OrchestratorError:
        raise
    except Exception as exc:  # unreachable broker, refused credentials
        raise OrchestratorError(
            f"cannot declare the reverse replication's queue {name} on {side.describe()}: "
            f"{type(exc).__name__}: {exc}; nothing was committed, fix the broker access and "
            "run finalize again") from None
    earlier = "" if created else f" (there already: {dropped} earlier message(s) dropped)"
    return (f"queue {name} declared and bound on {side.describe()}{earlier}: what new "
            "announces from now on waits there for the reverse replication")


def delete_reverse_queues(ctx: Context) -> str:
    """The reverse replication's queue and its quarantine deleted on new's broker (abort
    before the commit, revert once drained). An unreachable broker is said, not fatal: old
    holds the data already, the queue is cleanup."""
    from backends.rabbit import delete_issu_queues

    side, name = reverse_queue(ctx)
    try:
        results = delete_issu_queues(side, name)
    except Exception as exc:
        ctx.event("sync", f"reverse queues not deleted on {side.describe()}: {exc}",
                  level="error")
        return f"{name} NOT deleted on {side.describe()}: {type(exc).__name__}: {exc}"
    return "; ".join(f"{r.name} {'absent' if r.depth is None else 'deleted'}" for r in results)


def open_new(run: FinalizeRun) -> str:
    by_profile = fence_by_profile(run.ctx, "new", closed=False)
    if by_profile:
        return f"new api-server accepts writes: {by_profile}"
    try:
        with run.ctx.api("new") as new:
            new.set_fence(False)
    except ApiServerError as exc:
        if exc.status_code != 404:
            raise
        run.ctx.event("finalize", "the new api-server has no fence call: put it behind the "
                      "northbound VIP / haproxy now", level="warning")
        return "no fence call on the new api-server: opened by the operator (runbook 7.8)"
    return "new api-server accepts writes"


def records_asked(run: FinalizeRun) -> bool:
    return run.remove_old_records or run.ctx.config.finalize.remove_old_records


NOT_ASKED = ("skipped, not asked: old's records stay on new ([finalize] remove_old_records "
             "= true or `issu finalize --remove-old-records` asks for it; or by hand when "
             "you retire old: runbook 7, step 12)")


def unpair_new_side(run: FinalizeRun) -> str:
    if run.ctx.step_done(REVERSE_STARTED):
        keep_old_bgp_routers(run.ctx)  # for revert: created again on old with their uuids
    return unpair(run.ctx, old_side=False)


def remove_old_nodes(run: FinalizeRun) -> str:
    return remove_old_node_records(run.ctx)


def repoint_analytics(run: FinalizeRun) -> str:
    """The collectors' clients re-pointed at new's analytics, recorded with the northbound
    clients (issu revert points them back at old's) and backed up afresh (a backup left by
    an earlier upgrade would be restored by that revert)."""
    if run.no_northbound:
        return "skipped (--no-northbound): the operator re-points the collectors"
    return switch_each(run.ctx, "analytics",
                       [c for c in run.clients if c.kind == "collector"]) \
        or "no collector clients listed"


@dataclass(frozen=True)
class FinalizeStep:
    name: str
    does: str
    run: Callable[[FinalizeRun], str]
    undo: Callable[[Context], str] | None = None  # run by abort when this step was done
    undoes: str = ""                               # the inverse, in words
    begun: bool = False  # marked before it runs: abort undoes a step that failed half-way
    asked: Callable[[FinalizeRun], bool] | None = None  # None: always runs; else when True

    @property
    def marker(self) -> str:
        return f"finalize.{self.name}"

    @property
    def begun_marker(self) -> str:
        return f"{self.marker}.begun"

    @property
    def skipped_marker(self) -> str:
        return f"{self.marker}.skipped"

    def to_undo(self, ctx: Context) -> bool:
        """Whether abort runs this step's inverse: it was done, or begun and may have
        changed something before it failed."""
        return self.undo is not None and (
            ctx.step_done(self.marker) or (self.begun and ctx.step_done(self.begun_marker)))


STEPS: tuple[FinalizeStep, ...] = (
    # begun: a profile fence applied on some of old's config hosts before a failure is
    # undone by abort too
    FinalizeStep("fence-old", "fence the old api-server (northbound writes refused)",
                 fence_old, undo=unfence_old, undoes="open the old api-server again",
                 begun=True),
    # old's writers derive state from the api-server's last changes: they are stopped only
    # once they have caught up, or post-sync would copy it underived (issu_tui/.../settle.py)
    FinalizeStep("settle-old-writers", "wait until old's writers have caught up with the "
                 "fenced api-server (their queues on old's broker, one per writer, drained and "
                 "acknowledged; "
                 "without a `queues` profile step, their tables unchanged for "
                 "sync.writers_settle_s); refused on timeout unless --force",
                 settle_old),
    # nothing writes to old while run-sync drains and post-sync copies its last changes;
    # abort starts them again (also after a stop that failed half-way: `begun` marker)
    FinalizeStep("stop-old-services", "stop and disable old's config services "
                 "(schema-transformer, svc-monitor, device-manager, api-server) on old's "
                 "config hosts", stop_old, undo=start_old_services,
                 undoes="enable and start old's config services again", begun=True),
    FinalizeStep("stop-run-sync", "drain run-sync and stop it for good", stop_runsync),
    FinalizeStep("post-sync", "final copy of every keyspace but config_db_uuid", post_sync),
    FinalizeStep("zk-sync", "copy the ZooKeeper subtrees (ids, fq-names, subnets)", zk_sync),
    FinalizeStep("verify", "verify new against old: zero differences (else one more copy "
                 "of config_db_uuid, verified again), no quarantined cell unless --force",
                 verify),
    # after verify (a quarantine's messages help explain differences), before the point of
    # no return: run-sync is stopped for good and old is fenced
    FinalizeStep("delete-queues", "delete run-sync's queues on the old broker",
                 delete_queues),
    # before anything can write to new (its writers, a northbound client once new is open or
    # committed early): from here the reverse queue keeps every change new announces
    FinalizeStep("bind-reverse-queue", "declare the reverse replication's durable queue on "
                 "new's broker, bound to new's object-update exchange, before new's writers "
                 "or any northbound client can write to new (consumed from the commit on); "
                 "none when a translator step has no inverse", bind_reverse_queue,
                 undo=delete_reverse_queues, undoes="delete the reverse queue on new's broker"),
    # New's api-server is still fenced: nothing northbound has reached new, old holds every
    # write, so abort can still undo these two (the northbound clients pointed back too).
    # New open (or --commit-early): the point of no return is taken here, after the reverse
    # replication's queue exists; new's fence not shown: refused.
    FinalizeStep("check-new-fenced", "confirm new refuses northbound writes (its api-server's "
                 "fence call, or the profile's fence_status step; retried on an error). New "
                 "open, or --commit-early: the reverse replication starts and the point of no "
                 "return comes here, before new's writers and the northbound switch; not "
                 "shown: refused, nothing committed", check_new_fenced),
    FinalizeStep("start-new-writers", "enable and start new's schema-transformer, "
                 "svc-monitor, device-manager (kube-manager, vcenter-manager where present) on "
                 "new's hosts", start_new,
                 undo=stop_new_writers_again, undoes="stop and disable new's writers again",
                 begun=True),
    FinalizeStep("switch-northbound", "re-point neutron / k8s / vCenter clients at the new "
                 "api-server (SIGHUP)", switch_northbound, undo=revert_clients,
                 undoes="point the northbound clients back at old (their .issu-backup)",
                 begun=True),
    FinalizeStep("commit", "the point of no return: abort is refused from here", commit),
    # before new takes its first northbound write; its queue was bound at bind-reverse-queue,
    # before new's writers started, so revert can carry every write new took back to old
    FinalizeStep("start-reverse-sync", "start the reverse replication new -> old through "
                 "the translators' inverses (the way back: issu revert); none when a "
                 "translator step has no inverse", start_reverse_sync),
    FinalizeStep("open-new", "open the new api-server for writes", open_new),
    # The new api-server refuses every write until it is open: unpair after. The old
    # cluster is fenced and being retired: its copy of the pairing is left alone.
    # Only when asked: the operator may keep old's records until old is retired.
    FinalizeStep("unpair", "when asked: remove the old control nodes' bgp-routers from the "
                 "new cluster", unpair_new_side, asked=records_asked),
    FinalizeStep("remove-old-nodes", "when asked: remove the old hosts' config/analytics/"
                 "database node records (copied by the sync) from the new cluster",
                 remove_old_nodes, asked=records_asked),
    FinalizeStep("analytics", "re-point the collectors' clients at the new analytics "
                 "(SIGHUP)", repoint_analytics),
)



def step(name: str) -> FinalizeStep:
    """The step called `name` (KeyError when there is none)."""
    for candidate in STEPS:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no finalize step {name!r}")


COMMIT_STEP = step("commit").marker


def before_commit() -> tuple[FinalizeStep, ...]:
    """The steps before the point of no return: abort undoes those with an inverse."""
    return STEPS[:[s.name for s in STEPS].index("commit")]


# ----------------------------------------------------------------------------- finalize


def computes_not_on_new(ctx: Context) -> list[str]:
    new_version = ctx.config.new.version
    inventory = {c.name for c in ctx.config.computes}
    return [r.name for r in ctx.journal.computes()
            if r.name in inventory
            and not (r.state == "upgraded" and release_matches(new_version, r.version))]


def _northbound_clients(ctx: Context, northbound_file: Path | None,
                        no_northbound: bool) -> list[NorthboundClient]:
    """The clients the northbound steps switch; refused before anything changes."""
    switched = (ctx.step_done(step("switch-northbound").marker)
                and ctx.step_done(step("analytics").marker))
    if no_northbound:
        if not ctx.step_done(step("switch-northbound").marker):
            ctx.event("finalize", "--no-northbound: issu re-points no northbound client; the "
                      "operator switches neutron/k8s/vCenter/collectors to the new cluster",
                      level="warning", no_northbound=True)
        return []
    if switched:
        return []  # both switched already: a re-run needs the file no more
    return load_clients(northbound_file)


def finalize(ctx: Context, *, force: bool = False, reason: str = "",
             old_stopped: bool = False, northbound_file: Path | None = None,
             no_northbound: bool = False, drain_timeout_s: float = 120.0,
             commit_early: bool = False, remove_old_records: bool = False) -> list[str]:
    """Run every step of `STEPS` not done yet, in order; the names of all of them."""
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
    run = FinalizeRun(ctx, force=force, reason=reason, old_stopped=old_stopped,
                      no_northbound=no_northbound,
                      clients=_northbound_clients(ctx, northbound_file, no_northbound),
                      drain_timeout_s=drain_timeout_s, commit_early=commit_early,
                      remove_old_records=remove_old_records)
    for each in STEPS:
        _run_once(run, each)
    return [each.name for each in STEPS]


def _run_once(run: FinalizeRun, todo: FinalizeStep) -> None:
    """Run one step unless its marker says it is done."""
    ctx = run.ctx
    if ctx.step_done(todo.marker) or ctx.step_done(todo.skipped_marker):
        return
    ctx.check_stop(todo.marker)
    if todo.asked is not None and not todo.asked(run):
        ctx.event("finalize", f"{todo.name}: {NOT_ASKED}", level="warning", step=todo.name,
                  skipped=True)
        ctx.mark_step(todo.skipped_marker)
        return
    ctx.event("finalize", f"{todo.name}: running", step=todo.name)
    if todo.begun:
        ctx.mark_step(todo.begun_marker)
    detail = todo.run(run)
    if detail:
        ctx.event("finalize", f"{todo.name}: {detail}", step=todo.name)
    ctx.mark_step(todo.marker)


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
