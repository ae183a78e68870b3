"""`issu db export|import`: config database snapshots in the original `db_json_exim.py` format.

The cluster is one side of the config (`-c issu.toml --cluster old|new`) or given directly
(`--cassandra HOST[:PORT] --zookeeper HOST:PORT`, with optional prefixes). Exit codes: 0 done,
1 refused or failed (a non-empty target, a service unreachable, an import that failed and was
removed again), 2 bad usage, configuration or file (the message names the position in it).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from issu_tui.cli_common import load_or_exit

EXIT_PROBLEM = 1
EXIT_USAGE = 2
F = TypeVar("F", bound=Callable[..., Any])  # a click command function, kept as it is typed


@dataclass(frozen=True)
class Target:
    side: Any            # backends.cassandra.connection.CassandraSide
    zk_hosts: str
    zk_prefix: str


def resolve_target(config_path: Path | None, cluster: str, cassandra: str | None,
                   cassandra_prefix: str | None, zookeeper: str | None,
                   zk_prefix: str | None) -> Target:
    """The cluster from the command line, or one side of the config."""
    from backends.cassandra.connection import CassandraSide

    if cassandra or zookeeper:
        if not (cassandra and zookeeper):
            raise click.UsageError("--cassandra and --zookeeper go together")
        return Target(CassandraSide(cluster, (cassandra,), prefix=cassandra_prefix or ""),
                      zookeeper, zk_prefix if zk_prefix is not None else "")
    from issu_tui.sides import cassandra_side

    config = load_or_exit(config_path or Path("issu.toml"))
    side = cassandra_side(config, "old" if cluster == "old" else "new")
    if cassandra_prefix is not None:
        side = dataclasses.replace(side, prefix=cassandra_prefix)
    zk = (config.old if cluster == "old" else config.new).zookeeper
    return Target(side, ",".join(zk.hosts), zk.prefix if zk_prefix is None else zk_prefix)


def _options(fn: F) -> F:
    for option in reversed([
        click.option("-c", "--config", "config_path", type=click.Path(path_type=Path),
                     help="issu.toml (or the original issu.conf); default ./issu.toml"),
        click.option("--cassandra", metavar="HOST[:PORT]",
                     help="a Cassandra node, instead of the config's"),
        click.option("--cassandra-prefix", metavar="PREFIX",
                     help="keyspaces are <PREFIX>_<keyspace> (default: the config's)"),
        click.option("--zookeeper", metavar="HOST:PORT",
                     help="a ZooKeeper server, instead of the config's"),
        click.option("--zk-prefix", metavar="PREFIX",
                     help="znodes below /<PREFIX> (default: the config's)"),
        click.option("--json", "as_json", is_flag=True, help="print the report as JSON"),
    ]):
        fn = option(fn)
    return fn


def _progress(verb: str) -> Callable[[str, dict[str, Any]], None]:
    started = time.monotonic()

    def report(stage: str, figures: dict[str, Any]) -> None:
        elapsed = max(time.monotonic() - started, 1e-6)
        parts = [f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in figures.items()]
        rate = ""
        if "cells" in figures:
            rate = f" ({figures['cells'] / elapsed:,.0f} cells/s)"
        click.echo(f"{verb}: {stage}: {', '.join(parts)}{rate}", err=True)
    return report


def _connect(target: Target) -> tuple[Any, Any]:
    from backends.cassandra.connection import connect
    from backends.zookeeper.sync import connect as zk_connect

    conn = connect(target.side)
    try:
        zk = zk_connect(target.zk_hosts)
    except Exception:
        conn.close()
        raise
    return conn, zk


def _close(conn: Any, zk: Any) -> None:
    zk.stop()
    zk.close()
    conn.close()


@click.group()
def db() -> None:
    """Snapshots of the config database (Cassandra + ZooKeeper), db_json_exim.py format."""


@db.command("export")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--cluster", type=click.Choice(["old", "new"]), default="old", show_default=True,
              help="which side of the config to export")
@click.option("--omit-keyspaces", multiple=True, metavar="KEYSPACE",
              help="leave this keyspace out (repeatable), as the original's option")
@click.option("--page-size", type=click.IntRange(10, 100_000), default=2000, show_default=True)
@_options
def export_command(file: Path, cluster: str, omit_keyspaces: tuple[str, ...], page_size: int,
                   config_path: Path | None, cassandra: str | None,
                   cassandra_prefix: str | None, zookeeper: str | None, zk_prefix: str | None,
                   as_json: bool) -> None:
    """Write the cluster's config database to FILE (gzip when it ends in .gz), streaming.

    FILE must not exist; it appears only once complete."""
    from backends.snapshot.exim import export_snapshot

    if file.exists():
        click.echo(f"{file}: exists; not overwritten", err=True)
        sys.exit(EXIT_USAGE)
    target = resolve_target(config_path, cluster, cassandra, cassandra_prefix, zookeeper,
                            zk_prefix)
    try:
        conn, zk = _connect(target)
    except Exception as exc:
        click.echo(f"issu db export: {exc}", err=True)
        sys.exit(EXIT_PROBLEM)
    try:
        report = export_snapshot(file, conn, zk, zk_prefix=target.zk_prefix,
                                 omit=omit_keyspaces, page_size=page_size,
                                 progress=_progress("export"))
    except OSError as exc:
        click.echo(f"issu db export: {file}: {exc.strerror or exc}", err=True)
        sys.exit(EXIT_USAGE if isinstance(exc, FileExistsError) else EXIT_PROBLEM)
    except Exception as exc:
        click.echo(f"issu db export: failed, nothing written to {file}: "
                   f"{type(exc).__name__}: {exc}", err=True)
        sys.exit(EXIT_PROBLEM)
    finally:
        _close(conn, zk)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    rate = report.cells / report.seconds if report.seconds else 0.0
    click.echo(f"wrote {file}: {report.cells:,} cells in {report.rows:,} rows of "
               f"{len(report.tables)} tables, {report.znodes:,} znodes, {report.bytes:,} bytes "
               f"in {report.seconds:.1f}s ({rate:,.0f} cells/s)")
    for keyspace in report.keyspaces_absent:
        click.echo(f"  keyspace {keyspace} absent on the cluster: not in the snapshot")
    if report.null_cells:
        click.echo(f"  {report.null_cells} cells without a value skipped")
    if report.ephemerals_skipped:
        click.echo(f"  {report.ephemerals_skipped} ephemeral znodes (live sessions) skipped")


@db.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--cluster", type=click.Choice(["old", "new"]), required=False,
              help="which side of the config to import into (required with -c)")
@click.option("--force", is_flag=True,
              help="import even when the target already holds some of the snapshot's "
                   "tables or ZooKeeper subtrees (cells merge by timestamp)")
@click.option("--check", "check_only", is_flag=True,
              help="only read the file through and say what it holds")
@_options
def import_command(file: Path, cluster: str | None, force: bool, check_only: bool,
                   config_path: Path | None, cassandra: str | None,
                   cassandra_prefix: str | None, zookeeper: str | None,
                   zk_prefix: str | None, as_json: bool) -> None:
    """Load FILE (a db_json_exim.py snapshot, .gz or not) into an empty cluster.

    The whole file is checked before anything is written; every cell keeps its timestamp;
    if writing fails, what the import created is removed again."""
    from backends.cassandra.registry import load_registry
    from backends.snapshot.exim import ImportFailed, ImportRefused, import_snapshot, scan_snapshot
    from backends.snapshot.format import SnapshotError

    try:
        summary = scan_snapshot(file, progress=_progress("check"))
    except SnapshotError as exc:
        click.echo(f"issu db import: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    if check_only:
        _print_summary(summary, as_json)
        return
    if not (cassandra or zookeeper) and cluster is None:
        raise click.UsageError("--cluster old|new is required with the config")
    target = resolve_target(config_path, cluster or "new", cassandra, cassandra_prefix,
                            zookeeper, zk_prefix)
    try:
        conn, zk = _connect(target)
    except Exception as exc:
        click.echo(f"issu db import: {exc}", err=True)
        sys.exit(EXIT_PROBLEM)
    try:
        report = import_snapshot(file, conn, zk, zk_prefix=target.zk_prefix, force=force,
                                 registry=load_registry(), summary=summary,
                                 progress=_progress("import"))
    except ImportRefused as exc:
        click.echo(f"issu db import: refused, the target is not empty or cannot hold the "
                   f"snapshot (nothing written; --force to import anyway): {exc}", err=True)
        sys.exit(EXIT_PROBLEM)
    except SnapshotError as exc:
        click.echo(f"issu db import: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except ImportFailed as exc:
        click.echo(f"issu db import: failed: {exc}", err=True)
        sys.exit(EXIT_PROBLEM)
    except Exception as exc:  # the emptiness check could not read the target
        click.echo(f"issu db import: failed before writing anything: "
                   f"{type(exc).__name__}: {exc}", err=True)
        sys.exit(EXIT_PROBLEM)
    finally:
        _close(conn, zk)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    seconds = report.write_seconds
    rate = report.cells / seconds if seconds else 0.0
    click.echo(f"imported {file}: {report.cells:,} cells into {len(report.tables)} tables, "
               f"{report.znodes:,} znodes, in {seconds:.1f}s ({rate:,.0f} cells/s; the file "
               f"was checked first in {report.check_seconds:.1f}s)")
    if report.znodes_ignored:
        click.echo(f"  {report.znodes_ignored} znodes under the ignore list skipped")
    if report.ephemerals_skipped:
        click.echo(f"  {report.ephemerals_skipped} ephemeral znodes skipped")


def _print_summary(summary: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary.as_dict(), indent=2))
        return
    click.echo(f"{summary.path}: a snapshot of {summary.cells:,} cells in {summary.rows:,} rows, "
               f"{summary.znodes:,} znodes")
    for (keyspace, table), cells in summary.tables.items():
        click.echo(f"  {keyspace}.{table}: {cells:,} cells")
