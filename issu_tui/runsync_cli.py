"""`issu sync run` / `issu sync zk` and the original `contrail-issu-run-sync` /
`contrail-issu-zk-sync -c issu.conf` entry points.

Exit codes: 0 done (run: stopped by SIGTERM/SIGINT after finishing the message in hand),
1 the operation found a problem (zk differences), 2 bad configuration or usage,
3 (run) another run-sync already holds the state directory's lock (`run-sync.lock`).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from issu_tui.cli_common import Seconds, load_or_exit, open_journal_or_warn, setup_logging
from issu_tui.config import IssuConfig
from issu_tui.sides import cassandra_side, rabbit_side, run_sync_options, sync_settings

if TYPE_CHECKING:
    from backends.runsync.service import ReplayService
    from issu_tui.journal import Journal

EXIT_PROBLEM = 1
EXIT_CONFIG = 2
EXIT_LOCKED = 3
LOCK_NAME = "run-sync.lock"

log = logging.getLogger("issu.runsync")


def _open_journal(config: IssuConfig, state_dir: Path | None) -> Journal | None:
    """The journal as event/counter sink, or None (with a warning) when it cannot be opened."""
    return open_journal_or_warn(config, state_dir, "events are only logged")


def _setup_logging(verbose: bool) -> None:
    # kazoo warns a dozen times a second while ZooKeeper is down; zk-sync says it once
    setup_logging(verbose, {"kazoo": logging.ERROR, "cassandra": logging.WARNING})


# ---------------------------------------------------------------------------------- zk-sync


def zk_main(config_path: Path, verify_only: bool, subtrees: tuple[str, ...],
            state_dir: Path | None, allow_missing: tuple[str, ...] = ()) -> int:
    from backends.zookeeper.sync import ZkSyncError, zk_sync

    config = load_or_exit(config_path)
    journal = _open_journal(config, state_dir)
    try:
        report = zk_sync(
            ",".join(config.old.zookeeper.hosts),
            ",".join(config.new.zookeeper.hosts),
            config.old.zookeeper.prefix,
            config.new.zookeeper.prefix,
            list(subtrees) or config.sync.zk_subtrees,
            events=journal,
            verify_only=verify_only,
            allow_missing=allow_missing,
        )
    except ValueError as exc:  # an invalid subtree / --allow-missing name
        click.echo(f"zk-sync: {exc}", err=True)
        return EXIT_CONFIG
    except ZkSyncError as exc:
        click.echo(f"zk-sync failed: {exc}", err=True)
        return EXIT_PROBLEM
    except Exception as exc:  # connection refused, timeouts: name them, exit non-zero
        click.echo(f"zk-sync failed: {type(exc).__name__}: {exc}", err=True)
        return EXIT_PROBLEM
    finally:
        if journal is not None:
            journal.close()

    for sub in report.subtrees:
        old_path = f"{report.old_root.rstrip('/')}/{sub.subtree}"
        if sub.skipped_missing_on_old and sub.missing_allowed:
            click.echo(f"warning: {old_path} missing on old (allowed): skipped, the new side "
                       "was left as it is", err=True)
        elif sub.skipped_missing_on_old:
            click.echo(f"error: subtree {sub.subtree!r}: {old_path} missing on old (wrong "
                       f"odb_prefix?): nothing copied or verified; pass --allow-missing "
                       f"{sub.subtree} if that is expected", err=True)
        elif not verify_only:
            click.echo(f"{sub.subtree}: {sub.old_nodes} nodes, {sub.created} created, "
                       f"{sub.updated} updated, {sub.deleted} deleted, {sub.unchanged} unchanged, "
                       f"{sub.ephemerals_skipped} ephemeral skipped")
    for diff in report.differences[:200]:
        click.echo(diff.describe(report.old_root, report.new_root))
    if len(report.differences) > 200:
        click.echo(f"... and {len(report.differences) - 200} more differences")
    verdict = "verified" if report.ok else "MISMATCH"
    missing = (f", missing on old: {', '.join(report.missing_on_old)}"
               if report.missing_on_old else "")
    click.echo(f"zk {verdict}: {report.verified_nodes} nodes compared by content hash, "
               f"{len(report.differences)} differences{missing} "
               f"(copy {report.copy_seconds:.2f}s, verify {report.verify_seconds:.2f}s)")
    return 0 if report.ok else EXIT_PROBLEM


@click.command("zk")
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path),
              default=Path("issu.toml"), show_default=True, help="issu.toml or issu.conf")
@click.option("--verify-only", is_flag=True, help="Compare only; write nothing.")
@click.option("--subtree", "subtrees", multiple=True,
              help="Subtree to copy (repeatable; default: sync.zk_subtrees).")
@click.option("--allow-missing", "allow_missing", multiple=True, metavar="NAME",
              help="Subtree that may be absent on old (repeatable; default: none, a missing "
              "subtree fails with exit 1).")
@click.option("--state-dir", type=click.Path(path_type=Path), help="Journal directory override.")
@click.option("-v", "--verbose", is_flag=True)
def zk_command(config_path: Path, verify_only: bool, subtrees: tuple[str, ...],
               allow_missing: tuple[str, ...], state_dir: Path | None, verbose: bool) -> None:
    """Copy the ZooKeeper subtrees old -> new with prefix mapping, then verify every node."""
    _setup_logging(verbose)
    sys.exit(zk_main(config_path, verify_only, subtrees, state_dir, allow_missing))


zk = zk_command


# ---------------------------------------------------------------------------------- run-sync


def build_run_sync(config: IssuConfig, journal: Any, *, catch_up: bool = True,
                   force_catch_up: bool = False, metrics_listen: str | None = None,
                   reconcile_interval_s: float | None = None, zk_mirror: bool = False,
                   prefetch: int | None = None, reverse: bool = False) -> ReplayService:
    """run-sync's service for the configuration (the journal, when given, is the checkpoint
    store and the event and counter sink). `reverse`: the replication new -> old after
    finalize (issu revert), through the translators' inverses, on its own queue on new's
    broker and without a catch-up copy (the queue is declared before new takes a write)."""
    import functools

    from backends.cassandra.connection import connect_pair
    from backends.cassandra.registry import load_registry, load_reverse_registry
    from backends.runsync.processes import WorkerSpec
    from backends.runsync.service import ReplayService
    from issu_tui.sides import reversed_config

    if reverse:
        blockers = load_registry().revert_blockers(config.old.version, config.new.version)
        if blockers:
            from backends.cassandra.registry import RegistryError

            raise RegistryError("no reverse replication: " + "; ".join(blockers))
        config = reversed_config(config)
        catch_up, force_catch_up, zk_mirror = False, False, False
    load = load_reverse_registry if reverse else load_registry

    # named as the clusters; picklable: the apply processes connect with it too
    connect_both = functools.partial(
        connect_pair, cassandra_side(config, "old", {"name": config.old.name}),
        cassandra_side(config, "new", {"name": config.new.name}))
    settings = sync_settings(config)
    options = run_sync_options(config, catch_up=catch_up, force_catch_up=force_catch_up,
                               metrics_listen=metrics_listen,
                               reconcile_interval_s=reconcile_interval_s, prefetch=prefetch,
                               reverse=reverse)
    mirror = None
    if zk_mirror:
        from backends.zookeeper.sync import zk_sync

        def mirror() -> object:
            report = zk_sync(",".join(config.old.zookeeper.hosts),
                             ",".join(config.new.zookeeper.hosts),
                             config.old.zookeeper.prefix, config.new.zookeeper.prefix,
                             config.sync.zk_subtrees, events=journal)
            if not report.ok:
                raise RuntimeError(f"zk mirror: {len(report.differences)} differences, "
                                   f"missing on old: {report.missing_on_old or 'none'}")
            return report

    new_rabbit = rabbit_side(config.new)
    spec = WorkerSpec(connect=connect_both, new_rabbit=new_rabbit, settings=settings,
                      options=options, registry=load,
                      log_level=logging.getLogger().getEffectiveLevel())
    return ReplayService(
        old_rabbit=rabbit_side(config.old), new_rabbit=new_rabbit,
        connect_cassandra=connect_both, registry=load(), settings=settings,
        options=options, checkpoints=journal, events=journal, counters=journal,
        zk_mirror=mirror, worker_spec=spec,
    )


def reverse_refusal(journal: Journal) -> str | None:
    """Why the reverse replication new -> old must not run now, or None. It makes old equal
    to new: before finalize's commit new is the fenced, lagging copy (its reconciliation
    would delete on old every change since new's last sync); once the way back is closed or
    revert stopped it, old no longer follows new."""
    from issu_tui.orchestrator.finalize import COMMIT_STEP, REVERSE_STOPPING
    from issu_tui.orchestrator.phases import WAY_BACK_CLOSED

    done = journal.steps_done()
    if COMMIT_STEP not in done:
        return (f"the journal {journal.path} records no finalize commit ({COMMIT_STEP}): "
                "old is still the cluster serving, the replication runs old -> new "
                "(`issu sync run` without --reverse)")
    if WAY_BACK_CLOSED in done:
        return (f"the way back was closed (issu close-way-back, {WAY_BACK_CLOSED} in "
                f"{journal.path}): old no longer follows new")
    if REVERSE_STOPPING in done:
        return (f"issu revert drained and stopped the reverse replication "
                f"({REVERSE_STOPPING} in {journal.path})")
    return None


class RunSyncLocked(Exception):
    """Another run-sync holds the lock of this state directory."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path}: held by run-sync pid {holder or 'unknown'}")
        self.path, self.holder = path, holder


def take_run_lock(directory: Path) -> TextIO:
    """An exclusive flock on `<state_dir>/run-sync.lock`, holding our pid, kept while the
    returned file stays open (the kernel drops it when the process dies, even on SIGKILL).
    Two run-syncs on one state directory would share checkpoints and consume one queue twice.
    Raises RunSyncLocked naming the holder's pid."""
    import fcntl
    import os

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    handle = open(path, "a+")  # noqa: SIM115 - held open for the life of the process
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        raise RunSyncLocked(path, holder) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def run_main(config_path: Path, state_dir: Path | None, *, catch_up: bool, force_catch_up: bool,
             metrics_listen: str | None, reconcile_interval_s: float | None,
             zk_mirror: bool, reverse: bool = False) -> int:
    config = load_or_exit(config_path)
    try:
        lock = take_run_lock(state_dir or config.state_dir)
    except RunSyncLocked as exc:
        click.echo(f"run-sync already running on this state directory: {exc}; "
                   "stop it first (one run-sync per state directory)", err=True)
        return EXIT_LOCKED
    except OSError as exc:
        click.echo(f"run-sync: cannot lock {state_dir or config.state_dir}: {exc}", err=True)
        return EXIT_CONFIG
    try:
        return _run_locked(config, config_path, state_dir, catch_up=catch_up,
                           force_catch_up=force_catch_up, metrics_listen=metrics_listen,
                           reconcile_interval_s=reconcile_interval_s, zk_mirror=zk_mirror,
                           reverse=reverse)
    finally:
        lock.close()


def _run_locked(config: IssuConfig, config_path: Path, state_dir: Path | None, *,
                catch_up: bool, force_catch_up: bool, metrics_listen: str | None,
                reconcile_interval_s: float | None, zk_mirror: bool,
                reverse: bool = False) -> int:
    import signal

    from backends.cassandra.registry import RegistryError

    journal = _open_journal(config, state_dir)
    if journal is None:
        click.echo("run-sync needs the journal (catch-up checkpoints); fix the state directory",
                   err=True)
        return EXIT_CONFIG
    refusal = reverse_refusal(journal) if reverse else None
    if refusal is not None:
        click.echo(f"sync run --reverse refused: {refusal}", err=True)
        journal.event("run-sync", f"reverse replication refused: {refusal}", level="error")
        journal.close()
        return EXIT_CONFIG
    try:
        service = build_run_sync(config, journal, catch_up=catch_up,
                                 force_catch_up=force_catch_up, metrics_listen=metrics_listen,
                                 reconcile_interval_s=reconcile_interval_s, zk_mirror=zk_mirror,
                                 reverse=reverse)
    except ValueError as exc:
        click.echo(f"{config_path}: {exc}", err=True)
        journal.close()
        return EXIT_CONFIG

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: finishing the messages in hand, then stopping", signum)
        service.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGUSR1, lambda *_: service.request_reconcile())
    from backends.cassandra.identity import SameClusterError
    from backends.versions import VersionPathError

    try:
        return service.run()
    except (SameClusterError, VersionPathError, RegistryError) as exc:
        # A configuration that would corrupt data: exit 2, which the systemd unit does not
        # restart (RestartPreventExitStatus), instead of looping on it.
        click.echo(f"error: {exc}", err=True)
        journal.event("run-sync", f"refused: {exc}", level="error")
        return EXIT_CONFIG
    finally:
        journal.close()


@click.command("run")
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path),
              default=Path("issu.toml"), show_default=True, help="issu.toml or issu.conf")
@click.option("--state-dir", type=click.Path(path_type=Path), help="Journal directory override.")
@click.option("--catch-up/--no-catch-up", default=True, show_default=True,
              help="Copy config_db_uuid once after the queue is bound (skipped when done).")
@click.option("--force-catch-up", is_flag=True, help="Copy config_db_uuid again at start.")
@click.option("--metrics-listen", help="Prometheus endpoint host:port on loopback "
              "(default: sync.metrics_listen; '' disables).")
@click.option("--reconcile-interval", "reconcile_interval_s",
              type=Seconds(),
              help="Seconds between reconciliation passes (default: sync.reconcile_interval_s).")
@click.option("--zk-mirror", is_flag=True,
              help="Also copy the ZooKeeper subtrees at every reconciliation pass.")
@click.option("--reverse", is_flag=True,
              help="Replay new -> old through the translators' inverses (after finalize, "
              "for issu revert): queue <sync.queue_name>.reverse on new's broker, no "
              "catch-up copy.")
@click.option("-v", "--verbose", is_flag=True)
def run_command(config_path: Path, state_dir: Path | None, catch_up: bool, force_catch_up: bool,
                metrics_listen: str | None, reconcile_interval_s: float | None,
                zk_mirror: bool, reverse: bool, verbose: bool) -> None:
    """Replay config changes old -> new until SIGTERM (foreground; for systemd)."""
    _setup_logging(verbose)
    sys.exit(run_main(config_path, state_dir, catch_up=catch_up, force_catch_up=force_catch_up,
                      metrics_listen=metrics_listen, reconcile_interval_s=reconcile_interval_s,
                      zk_mirror=zk_mirror, reverse=reverse))


run = run_command


def cleanup_main(config_path: Path, queue_name: str | None, yes: bool = False) -> int:
    from backends.rabbit import QueueCleanup, QueueInUse, delete_issu_queues

    config = load_or_exit(config_path)
    side = rabbit_side(config.old)
    name = queue_name or config.sync.queue_name
    refused: list[int] = []

    def confirm(found: list[QueueCleanup]) -> bool:
        holding = [q for q in found if q.depth]
        if not holding or yes:
            return True
        what = ", ".join(f"{q.name} holds {q.depth} message(s)" for q in holding)
        lost = ("changes not yet replayed and quarantined ones are lost" if len(holding) > 1
                else "they are lost")
        if not sys.stdin.isatty():
            click.echo(f"cleanup-queues: {what}; {lost}. Run again with --yes to delete.",
                       err=True)
            refused.append(EXIT_CONFIG)
            return False
        if not click.confirm(f"{what}; {lost}. Delete?", default=False):
            click.echo("nothing deleted")
            refused.append(EXIT_PROBLEM)
            return False
        return True

    try:
        results = delete_issu_queues(side, name, confirm)
    except QueueInUse as exc:
        click.echo(f"cleanup-queues: {exc}", err=True)
        return EXIT_PROBLEM
    except Exception as exc:  # unreachable broker, refused credentials: name the side
        click.echo(f"cleanup-queues: {side.describe()}: {type(exc).__name__}: {exc}", err=True)
        return EXIT_PROBLEM
    if refused:
        return refused[0]
    for r in results:
        if r.depth is None:
            click.echo(f"{r.name}: absent (nothing to delete)")
        else:
            click.echo(f"{r.name}: deleted, held {r.depth} message(s)")
    return 0


@click.command("cleanup-queues")
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path),
              default=Path("issu.toml"), show_default=True, help="issu.toml or issu.conf")
@click.option("--queue", "queue_name", help="Queue name (default: sync.queue_name).")
@click.option("--yes", is_flag=True, help="delete queues that still hold messages without "
              "asking (without a terminal, required for them)")
@click.option("-v", "--verbose", is_flag=True)
def cleanup_command(config_path: Path, queue_name: str | None, yes: bool,
                    verbose: bool) -> None:
    """Delete run-sync's queue and its .quarantine on the old vhost (finalize/abort). Refused
    while run-sync consumes; asks before deleting messages. Prints each queue's message
    count before deleting it."""
    _setup_logging(verbose)
    sys.exit(cleanup_main(config_path, queue_name, yes))


cleanup_queues = cleanup_command


def legacy_run_sync(argv: list[str] | None = None) -> None:
    """`contrail-issu-run-sync -c issu.conf`."""
    run_command.main(args=_legacy_args(argv), prog_name="contrail-issu-run-sync")


def legacy_zk_sync(argv: list[str] | None = None) -> None:
    """`contrail-issu-zk-sync -c issu.conf [--verify-only]`."""
    zk_command.main(args=_legacy_args(argv), prog_name="contrail-issu-zk-sync")


def _legacy_args(argv: list[str] | None) -> list[str]:
    """The original tools took `-c FILE` / `--conf_file FILE`; map them to `--config`."""
    args = list(sys.argv[1:] if argv is None else argv)
    out: list[str] = []
    for arg in args:
        if arg == "--conf_file":
            out.append("--config")
        elif arg.startswith("--conf_file="):
            out.append("--config=" + arg.split("=", 1)[1])
        else:
            out.append(arg)
    return out


@click.group()
def _main_group() -> None:
    """run-sync and zk-sync (also reachable as `issu sync run|zk`)."""


_main_group.add_command(run_command)
_main_group.add_command(zk_command)
_main_group.add_command(cleanup_command)

if __name__ == "__main__":
    _main_group(prog_name="python -m issu_tui.runsync_cli")
