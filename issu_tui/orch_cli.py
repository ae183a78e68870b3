"""The orchestrator's commands: plan, preflight, pair, unpair, phase, compute, finalize, abort,
revert, status, events, daemon.

Commands that change something add an intent to the journal. If no executor is running,
the command becomes the executor until its intent (and any queued before it) is done; if
`issu daemon` (or the TUI) is the executor, the command waits for it to finish the intent.
Either way the output and exit code are the same, so scripts (Ansible...) need not care.

Exit codes: 0 done; 1 the operation found a problem (preflight refused, computes failed,
differences, refused because of the phase); 2 bad configuration or usage; 3 the journal is
locked by another executor (`issu daemon` only); 4 gave up waiting (--timeout) while the
intent is still pending or running; 130 interrupted (the intent resumes with the next
executor).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from issu_tui.cli_common import Seconds
from issu_tui.intent_submit import (
    EXIT_CONFIG,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_PROBLEM,
    _context,
    _finish,
    _load,
    _print_event,
    _who,
    submit,
)
from issu_tui.journal import JournalError, JournalLocked
from issu_tui.orchestrator.approaches import APPROACHES
from issu_tui.orchestrator.phases import RUNNABLE

F = TypeVar("F", bound=Callable[..., Any])  # a click command function, kept as it is typed


config_option = click.option(
    "-c", "--config", "config_path", type=click.Path(path_type=Path), default=Path("issu.toml"),
    show_default=True, envvar="ISSU_CONFIG", help="issu.toml, or the original issu.conf")
json_option = click.option("--json", "as_json", is_flag=True, help="machine-readable output")
wait_options = [
    click.option("--no-wait", is_flag=True, help="queue the intent and return at once"),
    click.option("--timeout", type=Seconds(), default=None,
                 help="give up waiting after this many seconds (exit 4)"),
]


def _wait_opts(func: F) -> F:
    for option in reversed(wait_options):
        func = option(func)
    return func


# ----------------------------------------------------------------------------- commands


@click.command("plan")
@config_option
@click.option("--approach", type=click.Choice(APPROACHES),
              default=None, help="topology (default: the config's `approach`; unset: "
                                 "separate if old and new share no Cassandra host, grow if "
                                 "new's add nodes to old's ring, else stay on 5 nodes or more "
                                 "and rolling on fewer)")
@json_option
def plan_cmd(config_path: Path, approach: str | None, as_json: bool) -> None:
    """Print the steps of the upgrade for the chosen approach, with what each touches."""
    from issu_tui.orchestrator.approaches import default_approach
    from issu_tui.orchestrator.plan import build_plan

    config = _load(config_path)
    chosen = approach or default_approach(config)
    steps = build_plan(config, chosen, str(config_path))
    if approach:
        _record_approach(config_path, chosen)
    if as_json:
        click.echo(json.dumps({"approach": chosen, "from": config.old.version,
                               "to": config.new.version,
                               "steps": [s.as_dict() for s in steps]}))
        return
    click.echo(f"ISSU {config.old.version} -> {config.new.version}, approach: {chosen}")
    for i, step in enumerate(steps, 1):
        flag = "  (POINT OF NO RETURN)" if step.point_of_no_return else ""
        click.echo(f"\n{i:2}. [{step.phase}] {step.title}{flag}")
        for touch in step.touches:
            click.echo(f"      touches: {touch}")
        click.echo(f"      run:     {step.command}")
        for note in step.notes:
            click.echo(f"      note:    {note}")


def _record_approach(config_path: Path, approach: str) -> None:
    from issu_tui.orchestrator.executor import Executor

    ctx = _context(config_path)
    try:
        ctx.journal.acquire_writer()
    except JournalLocked:
        return  # the running executor keeps the approach it has
    try:
        Executor(ctx).ensure_plan(approach)
    finally:
        ctx.journal.close()


@click.command("preflight")
@config_option
@click.option("--approach", type=click.Choice(APPROACHES),
              default=None)
@click.option("--db-nodes-down", type=int, default=None,
              help="check a maintenance step taking this many DB nodes down at once")
@json_option
@_wait_opts
def preflight_cmd(config_path: Path, approach: str | None, db_nodes_down: int | None,
                  as_json: bool, no_wait: bool, timeout: float | None) -> None:
    """Check everything before changing anything; each failure says how to fix it."""
    args: dict[str, Any] = {"target": "preflight"}
    if approach:
        args["approach"] = approach
    if db_nodes_down is not None:
        args["db_nodes_down"] = db_nodes_down
    submit(config_path, "phase", args, as_json=as_json, no_wait=no_wait, timeout=timeout)


@click.command("pair")
@config_option
@json_option
@_wait_opts
def pair_cmd(config_path: Path, as_json: bool, no_wait: bool, timeout: float | None) -> None:
    """iBGP pairing: bgp-routers of the new control nodes in the old cluster (idempotent);
    runs preflight first if it has not passed."""
    submit(config_path, "phase", {"target": "pair"}, as_json=as_json, no_wait=no_wait,
           timeout=timeout)


@click.command("unpair")
@config_option
@json_option
@_wait_opts
def unpair_cmd(config_path: Path, as_json: bool, no_wait: bool, timeout: float | None) -> None:
    """Remove the cross-cluster bgp-routers from both clusters (finalize does it too)."""
    submit(config_path, "unpair", {}, as_json=as_json, no_wait=no_wait, timeout=timeout)


@click.command("phase")
@click.argument("target", type=click.Choice(RUNNABLE))
@config_option
@json_option
@_wait_opts
def phase_cmd(target: str, config_path: Path, as_json: bool, no_wait: bool,
              timeout: float | None) -> None:
    """Run every phase up to TARGET that has not run yet (e.g. `issu phase run-sync`)."""
    submit(config_path, "phase", {"target": target}, as_json=as_json, no_wait=no_wait,
           timeout=timeout)


@click.group("compute")
def compute_group() -> None:
    """Upgrade, roll back or inspect computes."""


def _compute_action(action: str) -> Callable[..., None]:
    @click.argument("names", nargs=-1, required=True)
    @config_option
    @click.option("--batch-size", type=click.IntRange(min=1), default=None)
    @click.option("--parallel", type=click.IntRange(min=1), default=None)
    @click.option("--canary", type=click.IntRange(min=0), default=None)
    @click.option("--max-failures", type=click.IntRange(min=0), default=None)
    @json_option
    @_wait_opts
    def command(names: tuple[str, ...], config_path: Path, batch_size: int | None,
                parallel: int | None, canary: int | None, max_failures: int | None,
                as_json: bool, no_wait: bool, timeout: float | None) -> None:
        args: dict[str, Any] = {"computes": list(names)}
        for key, value in (("batch_size", batch_size), ("parallel", parallel),
                           ("canary", canary), ("max_failures", max_failures)):
            if value is not None:
                args[key] = value
        submit(config_path, action, args, as_json=as_json, no_wait=no_wait, timeout=timeout)

    command.__doc__ = (f"{action.capitalize()} NAMES (or `all`) in batches: canary first, "
                       "parallelism limit, stop past the failure threshold.")
    return command


compute_group.command("upgrade")(_compute_action("upgrade"))
compute_group.command("rollback")(_compute_action("rollback"))


@compute_group.command("status")
@click.argument("names", nargs=-1)
@config_option
@click.option("--probe", is_flag=True, help="also ask each compute over SSH (read-only)")
@json_option
def compute_status(names: tuple[str, ...], config_path: Path, probe: bool,
                   as_json: bool) -> None:
    """State of computes as recorded in the journal (and, with --probe, as they are)."""
    from issu_tui.orchestrator.computes import ComputeRunner
    from issu_tui.orchestrator.context import OrchestratorError

    ctx = _context(config_path, read_only=True)
    try:  # a name not in the inventory is a typo to say, not a compute to report on
        wanted = ComputeRunner(ctx).resolve(names)
    except OrchestratorError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    rows = {r.name: r for r in ctx.journal.computes()}
    items = []
    for name in wanted:
        row = rows.get(name)
        item: dict[str, Any] = {"name": name}
        if row is not None:
            item.update({"state": row.state, "version": row.version, "cluster": row.cluster,
                         "agent_state": row.agent_state, "batch": row.batch,
                         "last_action": row.last_action, "gap_ms": row.gap_ms})
        else:
            item["state"] = "not in the journal"
        if probe:
            try:
                p = ComputeRunner(ctx).probe(name)
                item["probe"] = {"version": p.version, "control_nodes": p.control_nodes,
                                 "agent_state": p.agent_state,
                                 "cluster": ctx.cluster_of(list(p.control_nodes))}
            except Exception as exc:
                item["probe"] = {"error": str(exc)}
        items.append(item)
    if as_json:
        click.echo(json.dumps({"computes": items}, default=str))
    else:
        for item in items:
            gap = f" gap {item['gap_ms']:.0f}ms" if item.get("gap_ms") is not None else ""
            line = (f"{item['name']:<20} {item['state']:<13} {item.get('version', ''):<10} "
                    f"{item.get('cluster', ''):<4}{gap}")
            if "probe" in item:
                line += f"  probe: {item['probe']}"
            click.echo(line)
    sys.exit(EXIT_PROBLEM if any(i.get("state") == "failed" for i in items) else EXIT_OK)


def _control_command(kind: str, doc: str) -> click.Command:
    @click.command(kind, help=doc)
    @config_option
    @json_option
    def command(config_path: Path, as_json: bool) -> None:
        ctx = _context(config_path)
        intent_id = ctx.journal.add_intent(kind, {}, _who())
        running = ctx.journal.executor() is not None
        _finish(as_json, {"intent": intent_id, "kind": kind, "ok": True,
                          "detail": "the executor applies it now" if running else
                          "queued: applied when an executor starts"}, EXIT_OK)

    return command


pause_cmd = _control_command(
    "pause", "Let running computes finish and start no new one (kept across restarts).")
resume_cmd = _control_command("resume", "Start computes again after a pause.")


@click.command("finalize")
@config_option
@click.option("--force", is_flag=True, help="finalize although computes are not all on new, "
                                            "verify found differences or quarantined cells")
@click.option("--reason", default="", help="why (required with --force; recorded)")
@click.option("--old-stopped", is_flag=True,
              help="the old config services are already stopped (no fence call on old)")
@click.option("--no-northbound", is_flag=True,
              help="switch no northbound client (no northbound.toml): you re-point neutron, "
                   "k8s, vCenter and collectors yourself; recorded in the journal")
@click.option("--commit-early", is_flag=True,
              help="new's fence cannot be shown (no fence call, no fence_status step): take "
                   "the point of no return at check-new-fenced, before new's writers start "
                   "(abort refused from there; issu revert is the way back)")
@click.option("--remove-old-records", is_flag=True,
              help="also remove the old hosts' records from new (old control nodes' "
                   "bgp-routers, config/analytics/database node objects); off unless asked "
                   "here or by [finalize] remove_old_records in the config")
@json_option
@_wait_opts
def finalize_cmd(config_path: Path, force: bool, reason: str, old_stopped: bool,
                 no_northbound: bool, commit_early: bool, remove_old_records: bool,
                 as_json: bool, no_wait: bool, timeout: float | None) -> None:
    """Stop run-sync, post-sync, zk-sync, verify, unpair, switch northbound, open new."""
    if force and not reason.strip():
        click.echo("--force needs --reason '...': it is recorded in the journal", err=True)
        sys.exit(EXIT_CONFIG)
    submit(config_path, "finalize", {"force": force, "reason": reason,
                                     "old_stopped": old_stopped,
                                     "no_northbound": no_northbound,
                                     "commit_early": commit_early,
                                     "remove_old_records": remove_old_records},
           as_json=as_json, no_wait=no_wait, timeout=timeout)


@click.command("abort")
@config_option
@click.option("--drop-new-data", is_flag=True,
              help="also drop the new cluster's synced keyspaces and ZooKeeper subtrees")
@click.option("--skip-client", "skip_clients", multiple=True, metavar="HOST|HOST:PATH|PATH",
              help="a northbound client whose host will not come back: abort leaves it "
                   "switched (journaled, named in the summary) and finishes the rest; point "
                   "it back by hand (repeatable)")
@json_option
@_wait_opts
def abort_cmd(config_path: Path, drop_new_data: bool, skip_clients: tuple[str, ...],
              as_json: bool, no_wait: bool, timeout: float | None) -> None:
    """Return everything to the old cluster (refused after finalize's point of no return)."""
    submit(config_path, "abort", {"drop_new_data": drop_new_data,
                                  "skip_clients": list(skip_clients)},
           as_json=as_json, no_wait=no_wait, timeout=timeout)


@click.command("revert")
@config_option
@click.option("--check", is_flag=True,
              help="only say what revert would undo and what refuses it")
@click.option("--drop-new-data", is_flag=True,
              help="also drop the new cluster's synced keyspaces and ZooKeeper subtrees")
@click.option("--skip-client", "skip_clients", multiple=True, metavar="HOST|HOST:PATH|PATH",
              help="a northbound client whose host will not come back: left as it is "
                   "(journaled, named in the summary) while the rest goes back; repeatable")
@json_option
@_wait_opts
def revert_cmd(config_path: Path, check: bool, drop_new_data: bool,
               skip_clients: tuple[str, ...], as_json: bool, no_wait: bool,
               timeout: float | None) -> None:
    """Back to the old cluster: before finalize's point of no return, abort's steps
    (computes rolled back in batches, finalize undone, unpaired, run-sync stopped) and the
    ring steps to undo by hand; after it, through the reverse replication new -> old (new
    fenced, drained back, northbound back, old's services started, computes rolled back),
    or refused naming each blocker."""
    from issu_tui.cli_common import load_or_exit
    from issu_tui.orchestrator.revert import plan_from_journal

    config = load_or_exit(config_path)
    try:
        plan = plan_from_journal(config, drop_new_data=drop_new_data)
    except JournalError as exc:
        click.echo(f"issu revert: {exc}", err=True)
        sys.exit(2)
    if as_json and (check or not plan.ok):
        click.echo(json.dumps(plan.as_dict()))
    elif not as_json:
        click.echo(f"phase: {plan.phase or 'none'}; point of no return "
                   f"{'passed' if plan.committed else 'not reached'}")
        for line in plan.undo if not plan.committed else ():
            click.echo(f"  undo  {line}")
        for line in plan.by_hand:
            click.echo(f"  by hand (`issu ring`/nodetool)  {line}")
        for line in plan.blockers:
            click.echo(f"refused: {line}", err=True)
    if not plan.ok:
        sys.exit(1)
    if check:
        sys.exit(0)
    # the plan beside the result: the by-hand inverses are the operator's to run
    submit(config_path, "revert" if plan.committed else "abort",
           {"drop_new_data": drop_new_data, "skip_clients": list(skip_clients)},
           as_json=as_json, no_wait=no_wait,
           timeout=timeout, extra={"plan": plan.as_dict()})


@click.command("close-way-back")
@config_option
@click.option("--drain-timeout", type=float, default=600.0, show_default=True,
              help="seconds to wait for the reverse replication to apply what new took")
@json_option
@_wait_opts
def close_way_back_cmd(config_path: Path, drain_timeout: float, as_json: bool, no_wait: bool,
                       timeout: float | None) -> None:
    """After finalize, once the new cluster is trusted: drain the reverse replication
    new -> old, stop it and delete its queues on new's broker. `issu revert` is refused
    from then on; the old cluster may be retired."""
    submit(config_path, "close-way-back", {"timeout_s": drain_timeout}, as_json=as_json,
           no_wait=no_wait, timeout=timeout)


def status_data(ctx: Any) -> dict[str, Any]:
    from issu_tui.orchestrator.finalize import COMMIT_STEP
    from issu_tui.orchestrator.phases import WAY_BACK_CLOSED
    from issu_tui.orchestrator.revert import way_back
    from issu_tui.orchestrator.syncproc import (
        ReverseSyncSupervisor,
        RunSyncSupervisor,
        runsync_counters,
    )
    from issu_tui.ring_view import ring_view

    journal = ctx.journal
    runsync = runsync_counters(journal)
    phase = journal.phase()
    computes = journal.computes()
    by_state: dict[str, int] = {}
    for row in computes:
        by_state[row.state] = by_state.get(row.state, 0) + 1
    orch = journal.orchestrator_state()
    steps = journal.steps_done()
    ring = ring_view(ctx.config, orch.approach, phase.phase if phase else None, steps,
                     WAY_BACK_CLOSED in steps)
    supervisor = RunSyncSupervisor(ctx)
    reverse = ReverseSyncSupervisor(ctx)
    reverse_running = reverse.running()
    return {
        "phase": None if phase is None else {
            "name": phase.phase, "since": phase.phase_started_at, "note": phase.note,
            "from_version": phase.from_version, "to_version": phase.to_version},
        "approach": orch.approach or APPROACHES[0],
        "paused": orch.paused,
        "executor": journal.executor(),
        "computes": {"total": len(computes), "by_state": by_state,
                     "items": [{"name": r.name, "state": r.state, "version": r.version,
                                "cluster": r.cluster, "batch": r.batch,
                                "gap_ms": r.gap_ms} for r in computes]},
        "run_sync": {"running": supervisor.running(), "pid": supervisor.pid(),
                     "counters": runsync[0], "updated_at": runsync[1] or None},
        "reverse_sync": {"running": reverse_running, "pid": reverse.pid()},
        "way_back": way_back(steps, reverse_running),
        "verify": journal.counters("verify"),
        # a shared-hardware approach's ring steps: done, the group this phase may run, why
        # it waits (None: the approach has none)
        "ring": None if ring is None else {
            "summary": ring.summary, "done": ring.done, "total": ring.total,
            "when": ring.when, "pending": [s.does for s in ring.pending],
            "waits": ring.waits},
        "steps_done": sorted(steps),
        "abortable": COMMIT_STEP not in steps and (phase is None or phase.phase not in
                                                   ("done", "aborted")),
        "intents": [{"id": i.id, "kind": i.kind, "status": i.status, "by": i.by,
                     "args": i.args} for i in journal.intents(None)
                    if i.status in ("pending", "running")],
    }


@click.command("status")
@config_option
@json_option
def status_cmd(config_path: Path, as_json: bool) -> None:
    """Where the upgrade stands (read-only; any number of watchers)."""
    ctx = _context(config_path, read_only=True)
    data = status_data(ctx)
    if as_json:
        click.echo(json.dumps(data, default=str))
        return
    phase = data["phase"]
    click.echo(f"phase:     {phase['name'] if phase else 'not planned'}"
               + (f" ({phase['note']})" if phase and phase["note"] else ""))
    click.echo(f"approach:  {data['approach']}" + ("   PAUSED" if data["paused"] else ""))
    executor = data["executor"]
    click.echo("executor:  " + (f"pid {executor['pid']} on {executor['host']}" if executor
                                else "none running"))
    counts = ", ".join(f"{k} {v}" for k, v in sorted(data["computes"]["by_state"].items()))
    click.echo(f"computes:  {data['computes']['total']} ({counts or '-'})")
    rs = data["run_sync"]
    c = rs["counters"]
    from issu_tui.console_api import RUNSYNC_SILENT_S

    silent_s = time.time() - rs["updated_at"] if rs["running"] and rs["updated_at"] else 0.0
    click.echo(f"run-sync:  {'running' if rs['running'] else 'not running'}"
               + (f", lag {c.get('lag_s', 0):.1f}s, applied {c.get('applied', 0):.0f}, "
                  f"failed {c.get('failed', 0):.0f}, queue {c.get('queue_depth', 0):.0f}"
                  if c else "")
               # it reports every 2 s while it consumes: the numbers above are that old
               + (f"; no report for {silent_s:.0f}s (stalled, or cut from RabbitMQ?)"
                  if silent_s >= RUNSYNC_SILENT_S else ""))
    if data["verify"]:
        click.echo(f"verify:    {data['verify'].get('differences', 0):.0f} differences")
    if data["ring"]:
        ring = data["ring"]
        click.echo(f"ring:      {ring['summary']}"
                   + (f"; waits: {ring['waits']}" if ring["waits"] else ""))
    click.echo(f"abortable: {'yes' if data['abortable'] else 'no'}")
    if data["way_back"]:
        click.echo(f"way back:  {data['way_back']}")
    for intent in data["intents"]:
        click.echo(f"intent #{intent['id']} {intent['kind']} {intent['status']} by {intent['by']}")


@click.command("events")
@config_option
@click.option("--follow", "-f", is_flag=True, help="keep printing new events")
@click.option("--kind", default=None, help="only events of this kind (compute, sync, ...)")
@click.option("--last", type=click.IntRange(0, 1_000_000), default=50, show_default=True,
              help="how many of the latest events")
@json_option
def events_cmd(config_path: Path, follow: bool, kind: str | None, last: int,
               as_json: bool) -> None:
    """The journal's event log (JSON lines with --json)."""
    ctx = _context(config_path, read_only=True)
    journal = ctx.journal
    events = [e for e in journal.last_events(max(last * 4, last)) if not kind or e.kind == kind]
    events = events[-last:]
    after = events[-1].id if events else (journal.last_events(1)[0].id
                                          if journal.last_events(1) else 0)
    for event in events:
        _print_event(event, as_json)
    try:
        while follow:
            for event in journal.events(after_id=after, kind=kind):
                after = event.id
                _print_event(event, as_json)
            sys.stdout.flush()
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass


@click.command("daemon")
@config_option
@click.option("--northbound", type=click.Path(path_type=Path), default=None,
              help="northbound clients file (default: northbound.toml beside the config)")
def daemon_cmd(config_path: Path, northbound: Path | None) -> None:
    """Run the executor headless until the upgrade is done or aborted, or SIGTERM/SIGINT
    (one per journal; exit 3 if taken)."""
    from issu_tui.orchestrator.executor import Executor

    ctx = _context(config_path)
    executor = Executor(ctx, northbound_file=northbound)
    try:
        summary = executor.start()
    except JournalLocked as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_LOCKED)
    click.echo(f"issu executor pid {os.getpid()}: reconciled {json.dumps(summary)}", err=True)

    def stop(signum: int, frame: object) -> None:
        executor.shutdown.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        executor.serve(until_finished=True)
    finally:
        executor.close()


COMMANDS = (plan_cmd, preflight_cmd, pair_cmd, unpair_cmd, phase_cmd, compute_group,
            pause_cmd, resume_cmd, finalize_cmd, abort_cmd, revert_cmd, close_way_back_cmd,
            status_cmd, events_cmd, daemon_cmd)


def register(cli_group: click.Group) -> None:
    """Attach the orchestrator's commands to the `issu` group."""
    for command in COMMANDS:
        cli_group.add_command(command)
