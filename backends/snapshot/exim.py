"""Export a running cluster's config database to a snapshot, and import one into a cluster.

Export streams: each table is read page by page (`SELECT key, column1, value,
WRITETIME(value)`) and written as it comes, the ZooKeeper tree level by level; the memory used
does not grow with the database. Import reads the file twice: a first pass checks the whole
document (a file that is not in the format, truncated or corrupt is refused before anything is
written) and counts what it holds; the second writes every cell with its timestamp (`USING
TIMESTAMP`) and every znode. A target that already holds data is refused unless `force`; if
writing fails midway, what the import created is removed again (the tables and keyspaces it
created are dropped, tables that were empty are truncated, the ZooKeeper subtrees it created
are deleted), so the target is left as it was found.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cassandra.query import SimpleStatement
from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError

from backends.cassandra.connection import Connection
from backends.cassandra.registry import Registry, RegistryError
from backends.cassandra.schema import (
    Layout,
    SchemaError,
    ensure_table,
    keyspace_exists,
    table_layout,
)
from backends.cassandra.tables import SyncSettings
from backends.cassandra.translate import Cell
from backends.cassandra.writer import CellWriter
from backends.snapshot.format import (
    KEYSPACES,
    STAT_EPHEMERAL_OWNER,
    file_path,
    relative_path,
    zk_ignore_list,
)
from backends.snapshot.reader import Cells, KeyspaceStart, SnapshotReader, TableStart, Znode
from backends.snapshot.writer import open_snapshot
from backends.zookeeper.sync import prefix_root
from backends.zookeeper.tree import join, pipelined

log = logging.getLogger(__name__)

# Contrail's CQL driver lays a column family out as `key blob, column1 blob, value text`.
CONTRAIL_LAYOUT = Layout("blob", "blob", "text")
PROGRESS_EVERY_S = 2.0

Progress = Callable[[str, dict[str, Any]], None]  # (stage, figures)


class ImportRefused(RuntimeError):
    """The target is not empty (and `force` was not given); names what it holds."""


class ImportFailed(RuntimeError):
    """Writing failed midway; the message says what was removed again."""


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Ticker:
    def __init__(self, progress: Progress | None) -> None:
        self.progress, self.last = progress, time.monotonic()

    def maybe(self, stage: str, figures: Callable[[], dict[str, Any]]) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            self.progress(stage, figures())


# --------------------------------------------------------------------------- export

@dataclass
class ExportReport:
    path: str
    cells: int = 0
    rows: int = 0
    tables: dict[str, int] = field(default_factory=dict)     # "ks.table" -> cells
    keyspaces_absent: list[str] = field(default_factory=list)
    null_cells: int = 0                                       # cells without a value: skipped
    znodes: int = 0
    znodes_ignored: int = 0                                   # subtrees of the ignore list
    ephemerals_skipped: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def export_snapshot(path: Path, cassandra: Connection, zk: KazooClient, *, zk_prefix: str = "",
                    keyspaces: Iterable[str] = KEYSPACES, omit: Iterable[str] = (),
                    page_size: int = 2000, progress: Progress | None = None) -> ExportReport:
    """Write the cluster's keyspaces (named without `cassandra.side.prefix` in the file, as
    the original does) and its ZooKeeper tree under `/<zk_prefix>` to `path`."""
    report = ExportReport(str(path))
    ticker = _Ticker(progress)
    started = time.monotonic()
    omitted = set(omit)
    with open_snapshot(path) as writer:
        for keyspace in keyspaces:
            if keyspace in omitted:
                continue
            full = cassandra.side.keyspace(keyspace)
            if not keyspace_exists(cassandra.session, full):
                report.keyspaces_absent.append(full)
                continue
            writer.keyspace(keyspace)
            tables = sorted(r[0] for r in cassandra.session.execute(
                "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s",
                (full,)))
            for table in tables:
                writer.table(table)
                _export_table(cassandra, full, keyspace, table, writer, report, page_size,
                              ticker)
        for entry_path, data, stat in _zk_entries(zk, zk_prefix, report):
            writer.znode(entry_path, data, stat)
            report.znodes += 1
            ticker.maybe("zookeeper", lambda: {"znodes": report.znodes})
    report.bytes = path.stat().st_size
    report.seconds = time.monotonic() - started
    return report


def _export_table(conn: Connection, full: str, keyspace: str, table: str, writer: Any,
                  report: ExportReport, page_size: int, ticker: _Ticker) -> None:
    layout = table_layout(conn.session, full, table)
    if layout is None:
        raise SchemaError(f"{full}.{table} vanished during the export")
    dk, dc, dv = layout.decode_key, layout.decode_column, layout.decode_value
    statement = SimpleStatement(f"SELECT key, column1, value, WRITETIME(value) "
                                f"FROM {_q(full)}.{_q(table)}", fetch_size=page_size)
    name = f"{keyspace}.{table}"
    cells = 0
    current: object = None
    for k, c, v, ts in conn.session.execute(statement):
        if v is None or ts is None:
            report.null_cells += 1
            continue
        if k != current:
            current = k
            writer.row(dk(k))
            report.rows += 1
        writer.cell(dc(c), dv(v), ts)
        cells += 1
        if not cells & 0x3FF:
            report.cells += 1024
            ticker.maybe("cassandra", lambda: {"table": name, "cells": report.cells})
    report.cells += cells & 0x3FF
    report.tables[name] = cells


def _zk_entries(zk: KazooClient, prefix: str, report: ExportReport
                ) -> Iterable[tuple[str, bytes, tuple[int, ...]]]:
    """The znodes under `/<prefix>` as the original lists them (leaves, plus interior nodes
    holding data, each before its children), level by level; names of the ignore list are
    skipped with their subtrees, ephemeral nodes (live sessions' locks) too."""
    root = prefix_root(prefix)
    ignored = zk_ignore_list(prefix)
    if zk.exists(root) is None:
        return
    level = [""]
    while level:
        children_of = pipelined(level, lambda rel: zk.get_children_async(join(root, rel)))
        candidates: list[str] = []
        leaves_here: list[str] = []
        for rel, children in children_of:
            if isinstance(children, NoNodeError):
                continue
            if isinstance(children, Exception):
                raise children
            if not children and rel == "":
                leaves_here.append(rel)  # an empty root: the original lists the root itself
            for child in sorted(children):
                if child in ignored:
                    report.znodes_ignored += 1
                    continue
                candidates.append(f"{rel}/{child}" if rel else child)
        next_level: list[str] = []
        for rel, got in pipelined(leaves_here + candidates,
                                  lambda rel: zk.get_async(join(root, rel))):
            if isinstance(got, NoNodeError):
                continue  # deleted meanwhile
            if isinstance(got, Exception):
                raise got
            data, stat = got
            if stat.ephemeralOwner:
                report.ephemerals_skipped += 1
                continue
            if stat.numChildren and rel:
                next_level.append(rel)
                if not data:
                    continue
            yield file_path(prefix, rel), data or b"", tuple(stat)
        level = next_level


# --------------------------------------------------------------------------- scan

@dataclass
class SnapshotSummary:
    """What a snapshot holds (the import's first pass)."""

    path: str
    tables: dict[tuple[str, str], int] = field(default_factory=dict)  # (ks, table) -> cells
    keyspaces: list[str] = field(default_factory=list)
    rows: int = 0
    znodes: int = 0
    zk_cluster_ids: set[str] = field(default_factory=set)
    zk_first_level: set[str] = field(default_factory=set)

    @property
    def cells(self) -> int:
        return sum(self.tables.values())

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "cells": self.cells, "rows": self.rows,
                "znodes": self.znodes, "keyspaces": self.keyspaces,
                "zk_cluster_ids": sorted(self.zk_cluster_ids),
                "tables": {f"{k}.{t}": n for (k, t), n in self.tables.items()}}


def scan_snapshot(path: Path, progress: Progress | None = None) -> SnapshotSummary:
    """Read the whole file, checking its format (SnapshotError on the first problem)."""
    summary = SnapshotSummary(str(path))
    ticker = _Ticker(progress)
    last_key: tuple[str, str, str] | None = None
    for event in SnapshotReader(path):
        if isinstance(event, Cells):
            table = (event.keyspace, event.table)
            summary.tables[table] += len(event.cells)
            if (event.keyspace, event.table, event.key) != last_key:
                last_key = (event.keyspace, event.table, event.key)
                summary.rows += 1
            ticker.maybe("checking", lambda: {"cells": summary.cells})
        elif isinstance(event, TableStart):
            summary.tables.setdefault((event.keyspace, event.table), 0)
        elif isinstance(event, KeyspaceStart):
            summary.keyspaces.append(event.keyspace)
        else:
            cluster_id, rel = _znode_rel(path, event)
            summary.zk_cluster_ids.add(cluster_id)
            if rel:
                summary.zk_first_level.add(rel.split("/", 1)[0])
            summary.znodes += 1
    return summary


def _znode_rel(path: Path, znode: Znode) -> tuple[str, str]:
    from backends.snapshot.format import SnapshotError

    try:
        return relative_path(znode.path)
    except ValueError as exc:
        raise SnapshotError(str(path), str(exc), where="zookeeper") from None


# --------------------------------------------------------------------------- import

@dataclass
class ImportReport:
    path: str
    cells: int = 0
    tables: dict[str, int] = field(default_factory=dict)
    znodes: int = 0
    znodes_ignored: int = 0
    ephemerals_skipped: int = 0
    check_seconds: float = 0.0
    write_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def non_empty_targets(summary: SnapshotSummary, cassandra: Connection, zk: KazooClient,
                      zk_prefix: str) -> list[str]:
    """What the target already holds of what the snapshot would write (the original's check:
    every column family of the file, and the first-level ZooKeeper names outside its ignore
    list)."""
    found = []
    for keyspace, table in summary.tables:
        full = cassandra.side.keyspace(keyspace)
        try:
            if table_layout(cassandra.session, full, table) is None:
                continue
        except SchemaError as exc:
            found.append(f"Cassandra {full}.{table} cannot hold the snapshot: {exc}")
            continue
        row = cassandra.session.execute(f"SELECT key FROM {_q(full)}.{_q(table)} LIMIT 1").one()
        if row is not None:
            found.append(f"Cassandra {full}.{table} already has rows")
    root = prefix_root(zk_prefix)
    try:
        existing = set(zk.get_children(root))
    except NoNodeError:
        existing = set()
    for name in sorted((existing & summary.zk_first_level) - zk_ignore_list(zk_prefix)):
        found.append(f"ZooKeeper already has {join(root, name)}")
    return found


class _Undo:
    """What an import created, to remove it again if the import fails."""

    def __init__(self, cassandra: Connection, zk: KazooClient, zk_root: str) -> None:
        self.cassandra, self.zk, self.zk_root = cassandra, zk, zk_root
        self.keyspaces: list[str] = []
        self.tables: list[str] = []
        self.emptied: list[str] = []      # tables that existed, empty: truncated back
        self.not_undoable: list[str] = []  # tables that held rows (force): left as they are
        self.zk_subtrees: list[str] = []
        self.zk_root_created = False

    def run(self) -> list[str]:
        done: list[str] = []
        session = self.cassandra.session
        for table in self.emptied:
            with contextlib.suppress(Exception):
                session.execute(f"TRUNCATE {table}", timeout=120)
                done.append(f"truncated {table}")
        for table in reversed(self.tables):
            with contextlib.suppress(Exception):
                session.execute(f"DROP TABLE IF EXISTS {table}", timeout=120)
                done.append(f"dropped {table}")
        for keyspace in reversed(self.keyspaces):
            with contextlib.suppress(Exception):
                session.execute(f"DROP KEYSPACE IF EXISTS {_q(keyspace)}", timeout=120)
                done.append(f"dropped keyspace {keyspace}")
        subtrees = [join(self.zk_root, n) for n in self.zk_subtrees]
        if self.zk_root_created:
            subtrees = [self.zk_root]
        for path in subtrees:
            with contextlib.suppress(Exception):
                self.zk.delete(path, recursive=True)
                done.append(f"deleted ZooKeeper {path}")
        return done


class _TableSink:
    def __init__(self, conn: Connection, keyspace: str, table: str, registry: Registry | None,
                 settings: SyncSettings, undo: _Undo) -> None:
        session = conn.session
        full = conn.side.keyspace(keyspace)
        self.name = f"{_q(full)}.{_q(table)}"
        if not keyspace_exists(session, full):
            undo.keyspaces.append(full)
        layout = table_layout(session, full, table)
        if layout is None:
            layout = ensure_table(session, full, table, _layout_for(registry, keyspace, table))
            if full not in undo.keyspaces:
                undo.tables.append(self.name)
        elif session.execute(f"SELECT key FROM {self.name} LIMIT 1").one() is None:
            undo.emptied.append(self.name)
        else:
            undo.not_undoable.append(f"{full}.{table}")
        insert = session.prepare(f"INSERT INTO {self.name} (key, column1, value) "
                                 "VALUES (?, ?, ?) USING TIMESTAMP ?")
        delete = session.prepare(f"DELETE FROM {self.name} USING TIMESTAMP ? "
                                 "WHERE key = ? AND column1 = ?")
        self.writer = CellWriter(session, insert, delete, layout,
                                 bounds=settings.copy_batch_bounds(),
                                 max_in_flight=settings.max_in_flight)


def _layout_for(registry: Registry | None, keyspace: str, table: str) -> Layout:
    if registry is not None:
        with contextlib.suppress(RegistryError):
            spec = registry.table(keyspace, table)
            return Layout(spec.key_type, spec.column_type, spec.value_type)
    return CONTRAIL_LAYOUT


class _ZkSink:
    """Creates the snapshot's znodes below the target root, in batches: missing ancestors
    first (empty), then the entries, several requests in flight."""

    BATCH = 2000

    def __init__(self, zk: KazooClient, root: str, ignored: frozenset[str], undo: _Undo,
                 report: ImportReport) -> None:
        self.zk, self.root, self.ignored, self.undo, self.report = zk, root, ignored, undo, report
        self.known: set[str] = {""}
        self.pending: list[tuple[str, bytes]] = []
        if zk.exists(root) is None:
            zk.ensure_path(root)
            undo.zk_root_created = True
        self.existing_first = set(zk.get_children(root))

    def add(self, rel: str, znode: Znode) -> None:
        first = rel.split("/", 1)[0] if rel else ""
        if first in self.ignored:
            self.report.znodes_ignored += 1
            return
        if len(znode.stat) > STAT_EPHEMERAL_OWNER and znode.stat[STAT_EPHEMERAL_OWNER]:
            self.report.ephemerals_skipped += 1
            return
        if first and first not in self.existing_first:
            self.existing_first.add(first)
            self.undo.zk_subtrees.append(first)
        self.pending.append((rel, znode.data))
        if len(self.pending) >= self.BATCH:
            self.flush()

    def flush(self) -> None:
        batch, self.pending = self.pending, []
        if not batch:
            return
        ancestors: set[str] = set()
        for rel, _ in batch:
            parts = rel.split("/")
            for depth in range(1, len(parts)):
                ancestors.add("/".join(parts[:depth]))
        missing = sorted(ancestors - self.known, key=lambda r: (r.count("/"), r))
        by_depth: dict[int, list[str]] = {}
        for rel in missing:
            by_depth.setdefault(rel.count("/"), []).append(rel)
        for depth in sorted(by_depth):
            for rel, result in pipelined(by_depth[depth],
                                         lambda r: self.zk.create_async(join(self.root, r))):
                if isinstance(result, Exception) and not isinstance(result, NodeExistsError):
                    raise result
                self.known.add(rel)
        root_data = [data for rel, data in batch if rel == ""]
        if root_data and root_data[-1]:
            self.zk.set(self.root, root_data[-1])
        entries = [(rel, data) for rel, data in batch if rel]
        exists: list[tuple[str, bytes]] = []
        for (rel, data), result in pipelined(
                entries, lambda e: self.zk.create_async(join(self.root, e[0]), e[1])):
            if isinstance(result, NodeExistsError):
                exists.append((rel, data))
            elif isinstance(result, Exception):
                raise result
        for _entry, result in pipelined(
                exists, lambda e: self.zk.set_async(join(self.root, e[0]), e[1])):
            if isinstance(result, Exception):
                raise result
        self.report.znodes += len(batch)


def import_snapshot(path: Path, cassandra: Connection, zk: KazooClient, *,
                    zk_prefix: str = "", force: bool = False, registry: Registry | None = None,
                    settings: SyncSettings | None = None, progress: Progress | None = None,
                    summary: SnapshotSummary | None = None) -> ImportReport:
    """Import `path` into the cluster (keyspaces `<cassandra.side.prefix>_<ks>`, znodes
    below `/<zk_prefix>`). Raises SnapshotError (bad file: nothing written), ImportRefused
    (target not empty, without `force`: nothing written) or ImportFailed (writing failed;
    what was created is removed again, the message says what)."""
    report = ImportReport(str(path))
    started = time.monotonic()
    if summary is None:
        summary = scan_snapshot(path, progress)
    report.check_seconds = time.monotonic() - started
    if not force:
        found = non_empty_targets(summary, cassandra, zk, zk_prefix)
        if found:
            raise ImportRefused("; ".join(found))
    settings = settings or SyncSettings()
    root = prefix_root(zk_prefix)
    undo = _Undo(cassandra, zk, root)
    ticker = _Ticker(progress)
    total = summary.cells
    started = time.monotonic()
    sink: _TableSink | None = None
    try:
        zk_sink: _ZkSink | None = None
        for event in SnapshotReader(path):
            if isinstance(event, Cells):
                assert sink is not None
                writer = sink.writer
                for column, value, writetime in event.cells:
                    writer.insert(event.key, Cell(column, value, writetime))
                name = f"{event.keyspace}.{event.table}"
                report.tables[name] = report.tables.get(name, 0) + len(event.cells)
                report.cells += len(event.cells)
                ticker.maybe("cassandra", lambda: {"cells": report.cells, "of": total})
            elif isinstance(event, TableStart):
                if sink is not None:
                    sink.writer.close()
                sink = _TableSink(cassandra, event.keyspace, event.table, registry, settings,
                                  undo)
                report.tables.setdefault(f"{event.keyspace}.{event.table}", 0)
            elif isinstance(event, Znode):
                if sink is not None:
                    sink.writer.close()
                    sink = None
                if zk_sink is None:
                    zk_sink = _ZkSink(zk, root, zk_ignore_list(zk_prefix), undo, report)
                zk_sink.add(_znode_rel(path, event)[1], event)
                ticker.maybe("zookeeper", lambda: {"znodes": report.znodes,
                                                   "of": summary.znodes})
        if sink is not None:
            sink.writer.close()
            sink = None
        if zk_sink is not None:
            zk_sink.flush()
    except BaseException as exc:
        if sink is not None:
            sink.writer.abandon()
        removed = undo.run()
        left = (f"; tables that held rows before (--force) keep what was written: "
                f"{', '.join(undo.not_undoable)}" if undo.not_undoable else "")
        log.error("import of %s failed: %s; removed again: %s%s", path, exc,
                  ", ".join(removed) or "nothing", left)
        if not isinstance(exc, Exception):
            raise
        raise ImportFailed(f"{type(exc).__name__}: {exc}; removed again: "
                           f"{', '.join(removed) or 'nothing'}{left}") from exc
    report.write_seconds = time.monotonic() - started
    return report
