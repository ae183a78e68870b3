"""One token slice of a table, copied old -> new by replacing (the per-slice work of
pre-sync / post-sync), and the replace primitives run-sync's replicator shares.

Below both the copy engine (backends/cassandra/copy.py, which runs the slices in its own
threads) and the copy processes (backends/cassandra/slice_processes.py, which run them in
other interpreters): neither imports the other.

Per token slice:
  1. read what the new side holds there ((key, column) -> writetime; spills to disk if big);
     skipped when the table was empty on new when its copy started (`new_empty`: a first
     pre-sync), as there is then nothing on new this copy could have to delete;
  2. stream the old slice page by page, translate, write with the source WRITETIME, and
     strike each written (key, column) off the map from step 1;
  3. only when step 2 read the old slice to its end without error: delete what is left in
     the map (present on new, absent on old), each cell with the writetime it had, so a value
     written meanwhile by run-sync survives. A read error aborts the slice: nothing deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from backends.cassandra.connection import Connection
from backends.cassandra.identity import refuse_same_keyspaces
from backends.cassandra.registry import Registry, TableSpec
from backends.cassandra.spill import SpillMap
from backends.cassandra.tables import RawRow, Rejected, TableContext, translate_rows
from backends.cassandra.translate import IDENTITY, Cell, TableTranslator
from backends.cassandra.writer import CellWriter
from backends.versions import version_path

log = logging.getLogger(__name__)

_CHUNK = 500


@dataclass
class Counts:
    partitions: int = 0
    cells: int = 0
    deleted: int = 0
    quarantined: int = 0
    newest_writetime: int = 0
    write_requests: int = 0  # batches sent (several small partitions share one)

    def add(self, other: Counts) -> None:
        self.partitions += other.partitions
        self.cells += other.cells
        self.deleted += other.deleted
        self.quarantined += other.quarantined
        self.newest_writetime = max(self.newest_writetime, other.newest_writetime)
        self.write_requests += other.write_requests


# --------------------------------------------------------------------------- replace core

def fill(existing: SpillMap, entries: Iterable[tuple[str, str, int]]) -> None:
    chunk: list[tuple[str, str, int, int]] = []
    for k, c, ts in entries:
        chunk.append((k, c, ts, 0))
        if len(chunk) >= _CHUNK:
            existing.put_many(chunk)
            chunk = []
    existing.put_many(chunk)


def replace_rows(ctx: TableContext, rows: Iterable[RawRow], existing: SpillMap,
                 writer: CellWriter, *, finish: bool = True) -> Counts:
    """Write the translated `rows` and strike them off `existing`. Rejected cells go to the
    quarantine and are struck off too: a cell is never deleted on new because old's copy
    could not be translated. An empty `existing` (nothing on new to delete) is not
    tracked."""
    counts = Counts()
    track = len(existing) > 0 or existing.spilled
    seen: list[tuple[str, str]] = []
    last_key: str | None = None
    for old_key, new_key, item in translate_rows(ctx.translator, rows, finish=finish):
        if old_key != last_key:
            counts.partitions += 1
            last_key = old_key
        if isinstance(item, Cell):
            writer.insert(new_key, item)
            counts.cells += 1
            if item.writetime > counts.newest_writetime:
                counts.newest_writetime = item.writetime
            if track:
                seen.append((new_key, item.column))
        else:
            quarantine_cell(ctx, old_key, item)
            counts.quarantined += 1
            if track:
                seen.append((new_key, item.new_column))
        if len(seen) >= _CHUNK:
            existing.take_many(seen)
            seen = []
    if seen:
        existing.take_many(seen)
    return counts


def quarantine_cell(ctx: TableContext, old_key: str, item: Rejected) -> None:
    log.warning("%s key %r column %r quarantined: %s", ctx.name, old_key, item.column,
                item.reason)
    ctx.quarantine.put(ctx.spec.keyspace, ctx.spec.name, old_key, item)


def delete_leftovers(existing: SpillMap, writer: CellWriter) -> int:
    deleted = 0
    for key, column, ts, _ in existing.items():
        writer.delete(key, column, ts)
        deleted += 1
    return deleted


def guarded(writer: CellWriter, work: Callable[[], Counts]) -> Counts:
    try:
        counts = work()
        writer.close()
    except BaseException:
        writer.abandon()
        raise
    counts.write_requests = writer.requests
    return counts


def copy_slice(ctx: TableContext, lo: int, hi: int, *, new_empty: bool = False) -> Counts:
    """`new_empty`: the table was empty on new when its copy started (before old was read):
    new's slice is not read. A cell written on new since (by run-sync) is one this copy
    would not delete anyway (only cells read in step 1 are deleted)."""
    with ctx.spill_map() as existing:
        if new_empty:
            pass
        elif ctx.translator.renames_keys:
            for old_key in list(ctx.old_keys(lo, hi)):
                new_key = ctx.translator.key(old_key)
                fill(existing, ctx.read_new_meta(ctx.new_partition_meta,
                                                 (ctx.enc_new_key(new_key),)))
        else:
            fill(existing, ctx.read_new_meta(ctx.new_range_meta, (lo, hi)))
        writer = ctx.writer()

        def work() -> Counts:
            counts = replace_rows(ctx, ctx.read_old(ctx.old_range, (lo, hi)), existing, writer)
            # The old slice was read to its end without error: now, and only now, delete.
            counts.deleted = delete_leftovers(existing, writer)
            return counts

        return guarded(writer, work)


def prune_renamed_partitions(ctx: TableContext) -> Counts:
    """For a key-renaming table: delete whole partitions on new that no old partition
    translates to (their old partition was deleted). New is read before old confirms: a
    candidate's cells are read on new, then old's keys are listed again, and only if old
    still has no source for it do exactly those cells go, each at its own writetime. A cell
    in that read was copied from old before it, so old lacking the partition afterwards
    means old deleted it; a cell copied after the read is not touched. (A cut-off on the
    wall clock would not do: a cell's writetime is its writer's clock, and a write stamped
    earlier can reach old later; its tombstone at that writetime would hide it for good.)"""
    counts = Counts()
    new_keys = list(ctx.new_keys())
    expected = ctx.key_map()
    candidates = [k for k in new_keys if k not in expected]
    if not candidates:
        return counts
    writer = ctx.writer()

    def work() -> Counts:
        for new_key in candidates:
            with ctx.spill_map() as cells:
                fill(cells, ctx.read_new_meta(ctx.new_partition_meta,
                                              (ctx.enc_new_key(new_key),)))
                if not len(cells) or new_key in ctx.key_map():
                    continue
                counts.deleted += delete_leftovers(cells, writer)
        return counts

    return guarded(writer, work)


def check_path(old: Connection, new: Connection, keyspaces: Iterable[str],
               registered: Iterable[str] = (), *, reverse: bool = False) -> None:
    """Raises VersionPathError (a ValueError) when old -> new is not a supported path (with
    `reverse`, the reverse replication's: new -> old back down it), and SameClusterError (a
    ValueError) when old and new are one cluster and one of `keyspaces` would be both old's
    and new's. Called before anything is read or written."""
    refuse_same_keyspaces(old, new, keyspaces, registered)
    if old.side.version and new.side.version:
        if reverse:
            version_path(new.side.version, old.side.version)
        else:
            version_path(old.side.version, new.side.version)


def translator_for(registry: Registry, old: Connection, new: Connection,
                   spec: TableSpec) -> TableTranslator:
    """The chained translator of the table for the two sides' versions (identity when a
    side has no version: e.g. a copy between two clusters of one release)."""
    if not (old.side.version and new.side.version):
        return IDENTITY
    return registry.translator(old.side.version, new.side.version, spec.keyspace, spec.name)
