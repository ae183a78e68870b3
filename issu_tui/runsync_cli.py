"""`issu sync run` / `issu sync zk` and the original `contrail-issu-run-sync` /
`contrail-issu-zk-sync -c issu.conf` entry points.

Exit codes: 0 done (run: stopped by SIGTERM/SIGINT after finishing the message in hand),
1 the operation found a problem (zk differences), 2 bad configuration or usage.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from issu_tui.config import ConfigError, IssuConfig, load_config

EXIT_PROBLEM = 1
EXIT_CONFIG = 2

log = logging.getLogger("issu.runsync")


def _load(path: Path) -> IssuConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"{exc.path}: {problem}", err=True)
        sys.exit(EXIT_CONFIG)


def _open_journal(config: IssuConfig, state_dir: Path | None) -> Any:
    """The journal as event/counter sink, or None (with a warning) when it cannot be opened."""
    from issu_tui.journal import Journal

    directory = state_dir or config.state_dir
    try:
        journal = Journal.open(directory)
    except Exception as exc:
        click.echo(f"warning: journal in {directory} not available ({exc}); "
                   "events are only logged", err=True)
        return None
    journal.scrub(_secrets(config))
    return journal


def _secrets(config: IssuConfig) -> list[str]:
    out = []
    for side in (config.old, config.new):
        for secret in (side.rabbit.password, side.cassandra.password):
            if secret is not None and secret.get_secret_value():
                out.append(secret.get_secret_value())
    return out


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("kazoo").setLevel(logging.WARNING)
    logging.getLogger("cassandra").setLevel(logging.WARNING)


# ---------------------------------------------------------------------------------- zk-sync


def zk_main(config_path: Path, verify_only: bool, subtrees: tuple[str, ...],
            state_dir: Path | None) -> int:
    from backends.zookeeper.sync import ZkSyncError, zk_sync

    config = _load(config_path)
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
        )
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
        if sub.skipped_missing_on_old:
            click.echo(f"warning: {report.old_root.rstrip('/')}/{sub.subtree} missing on old: "
                       "skipped (the new side was left as it is)", err=True)
        elif not verify_only:
            click.echo(f"{sub.subtree}: {sub.old_nodes} nodes, {sub.created} created, "
                       f"{sub.updated} updated, {sub.deleted} deleted, {sub.unchanged} unchanged, "
                       f"{sub.ephemerals_skipped} ephemeral skipped")
    for diff in report.differences[:200]:
        click.echo(diff.describe(report.old_root, report.new_root))
    if len(report.differences) > 200:
        click.echo(f"... and {len(report.differences) - 200} more differences")
    verdict = "verified" if report.ok else "MISMATCH"
    click.echo(f"zk {verdict}: {report.verified_nodes} nodes compared by content hash, "
               f"{len(report.differences)} differences "
               f"(copy {report.copy_seconds:.2f}s, verify {report.verify_seconds:.2f}s)")
    return 0 if report.ok else EXIT_PROBLEM


@click.command("zk")
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path),
              default=Path("issu.toml"), show_default=True, help="issu.toml or issu.conf")
@click.option("--verify-only", is_flag=True, help="Compare only; write nothing.")
@click.option("--subtree", "subtrees", multiple=True,
              help="Subtree to copy (repeatable; default: sync.zk_subtrees).")
@click.option("--state-dir", type=click.Path(path_type=Path), help="Journal directory override.")
@click.option("-v", "--verbose", is_flag=True)
def zk_command(config_path: Path, verify_only: bool, subtrees: tuple[str, ...],
               state_dir: Path | None, verbose: bool) -> None:
    """Copy the ZooKeeper subtrees old -> new with prefix mapping, then verify every node."""
    _setup_logging(verbose)
    sys.exit(zk_main(config_path, verify_only, subtrees, state_dir))


zk = zk_command


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
