"""Object-level replication for run-sync, and range checksums for its reconciliation.

    repl = Replicator(old_conn, new_conn, registry, settings)
    out = repl.replace_partition("config_db_uuid", "obj_uuid_table", uuid)
    out = repl.replace_cells("config_db_uuid", "obj_fq_name_table", "virtual-network",
                             ["default-domain:p:vn1:" + uuid])
    for diff in repl.range_diff("config_db_uuid", "obj_uuid_table", lo, hi):
        repl.repair(diff)

Keys and column names are OLD-side names (as in the change messages); the translator maps
them. Replace, not merge: what old no longer has is deleted on new, each cell with its own
writetime (a newer write survives). Thread-safe; prepared statements are cached per table.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import cast

from cassandra.cluster import ResponseFuture
from cassandra.query import PreparedStatement

from backends.cassandra.batching import CELL_OVERHEAD, Batching, grouped
from backends.cassandra.connection import Connection
from backends.cassandra.futures import settle
from backends.cassandra.registry import Registry
from backends.cassandra.slice_copy import (
    Counts,
    check_path,
    delete_leftovers,
    fill,
    guarded,
    prune_renamed_partitions,
    quarantine_cell,
    replace_rows,
    translator_for,
)
from backends.cassandra.spill import SpillMap
from backends.cassandra.tables import (
    Quarantine,
    RawRow,
    Rejected,
    SyncSettings,
    TableContext,
    token_slices,
    translate_rows,
)
from backends.cassandra.translate import Cell
from backends.cassandra.writer import CellWriter, request_for

_MASK = (1 << 64) - 1
_CHUNK = 1000  # cells remembered or struck off per call of the spill map
# one write of write_changes: ((table, partition), statement, its values, size for batching)
_Write = tuple[tuple[int, str], PreparedStatement, tuple[object, ...], int]


@dataclass
class CellChanges:
    """The writes that make some cells of new the translation of old's, collected over
    several partitions and tables (run-sync gathers one change's) and sent together by
    `Replicator.write_changes`. Cells whose value and writetime new already has are not
    written again."""

    inserts: list[tuple[TableContext, str, Cell]] = field(default_factory=list)
    deletes: list[tuple[TableContext, str, str, int]] = field(default_factory=list)
    cells: int = 0               # translated cells of old (written or already equal on new)
    unchanged: int = 0           # of those, already on new with that value and writetime
    quarantined: int = 0
    newest_writetime: int = 0    # of the cells to write (new lacked them); 0 if none

    def split(self, first: Callable[[TableContext, str, str], bool]) -> tuple[CellChanges,
                                                                             CellChanges]:
        """(the writes of cells where `first(ctx, new key, new column)` holds, the others),
        to be written in that order; the counters stay on this object."""
        a, b = CellChanges(), CellChanges()
        for item in self.inserts:
            (a if first(item[0], item[1], item[2].column) else b).inserts.append(item)
        for d in self.deletes:
            (a if first(d[0], d[1], d[2]) else b).deletes.append(d)
        return a, b


@dataclass(frozen=True)
class ReplaceOutcome:
    keyspace: str
    table: str
    key: str                 # old-side key
    new_key: str             # key written on new
    cells_written: int
    cells_deleted: int
    quarantined: int
    newest_writetime: int    # microseconds since the epoch of the newest source cell; 0 if none
    present_on_old: bool     # False: the partition/cells are gone on old (deleted on new)


@dataclass(frozen=True)
class KeyDiff:
    """A partition whose content differs between old (translated) and new.
    `old_key` is None when only new has it (an extra partition to remove)."""

    keyspace: str
    table: str
    old_key: str | None
    new_key: str


def cell_digest(column: str, value: str | None, writetime: int | None) -> int:
    h = hashlib.blake2b(digest_size=8)
    h.update(column.encode("utf-8", "surrogateescape"))
    h.update(b"\x00")
    h.update((value or "").encode("utf-8", "surrogateescape"))
    h.update(b"\x00" + struct.pack(">q", writetime or 0))
    return int.from_bytes(h.digest(), "big")


class _Recording:
    """A CellWriter front that remembers every cell inserted: (key, column, writetime) in
    `inserted` (memory bounded), and the cells themselves in `cells` when given."""

    def __init__(self, writer: CellWriter, inserted: SpillMap,
                 cells: list[Cell] | None = None) -> None:
        self.writer, self.inserted, self.cells = writer, inserted, cells
        self._pending: list[tuple[str, str, int, int]] = []

    def insert(self, key: str, cell: Cell) -> None:
        if self.cells is not None:
            self.cells.append(cell)
        self._pending.append((key, cell.column, cell.writetime, 0))
        if len(self._pending) >= _CHUNK:
            self.flush()
        self.writer.insert(key, cell)

    def delete(self, key: str, column: str, writetime: int) -> None:
        self.writer.delete(key, column, writetime)

    def flush(self) -> None:
        self.inserted.put_many(self._pending)
        self._pending = []


class Replicator:
    def __init__(self, old: Connection, new: Connection, registry: Registry,
                 settings: SyncSettings | None = None, *, run_id: str | None = None) -> None:
        check_path(old, new, registry.keyspaces, reverse=registry.reverse)
        self.old, self.new, self.registry = old, new, registry
        self.settings = settings or SyncSettings()
        self.quarantine = Quarantine.of_sync(old, new, run_id or f"run-sync-{uuid.uuid4().hex[:8]}",
                                             reverse=registry.reverse)
        self._contexts: dict[tuple[str, str], TableContext] = {}
        self._many: dict[tuple[str, str], tuple[PreparedStatement, PreparedStatement]] = {}
        self._lock = threading.Lock()

    def context(self, keyspace: str, table: str) -> TableContext:
        with self._lock:
            ctx = self._contexts.get((keyspace, table))
            if ctx is None:
                spec = self.registry.table(keyspace, table)
                ctx = TableContext(spec, self.old, self.new,
                                   translator_for(self.registry, self.old, self.new, spec),
                                   self.settings, self.quarantine)
                if not ctx.present_on_old:
                    raise LookupError(f"{ctx.old_keyspace}.{table} does not exist on old")
                self._contexts[(keyspace, table)] = ctx
            return ctx

    def forget(self, keyspace: str, table: str) -> None:
        """Drop the cached statements (after a schema change or reconnect)."""
        with self._lock:
            self._contexts.pop((keyspace, table), None)
            self._many.pop((keyspace, table), None)

    # ------------------------------------------------------------------ replace
    def replace_partition(self, keyspace: str, table: str, key: str, *,
                          new_meta: Iterable[tuple[str, str, int]] | None = None,
                          written: list[Cell] | None = None) -> ReplaceOutcome:
        """Make new's partition the translation of old's partition `key`, exactly.
        Optional, to save a caller's requests (run-sync): `new_meta`, new's (key, column,
        writetime) of the partition as the caller has just read them (replaces this read);
        `written` receives the translated cells written (new's content afterwards, besides
        cells a translator rejected)."""
        ctx = self.context(keyspace, table)
        new_key = ctx.translator.key(key)
        with ctx.spill_map() as existing, ctx.spill_map() as inserted:
            fill(existing, new_meta if new_meta is not None else
                 ctx.read_new_meta(ctx.new_partition_meta, (ctx.enc_new_key(new_key),)))
            writer = ctx.writer()
            recording = _Recording(writer, inserted, written)

            def work() -> Counts:
                counts = replace_rows(ctx, ctx.read_old(ctx.old_partition,
                                                        (ctx.enc_old_key(key),)),
                                      existing, cast(CellWriter, recording))
                recording.flush()
                counts.deleted = delete_leftovers(existing, writer)
                return counts

            counts = guarded(writer, work)
            counts.deleted += self._confirm_on_old(ctx, key, inserted)
        return self._outcome(ctx, key, new_key, counts)

    def _confirm_on_old(self, ctx: TableContext, key: str, inserted: SpillMap) -> int:
        """Delete again, with the writetime they were copied with, the cells just copied
        from old partition `key` that old no longer has. Another writer of the same cells
        (the lane of the object a `children:`/`backref:`/index cell names) may have applied
        that object's delete between this copy's read of old and its write, and found
        nothing on new to delete: the copy, written last, would bring the cell back. A
        tombstone at the cell's own writetime wins over it and over nothing newer."""
        if not len(inserted):
            return 0
        seen: list[tuple[str, str]] = []
        for _, new_key, item in translate_rows(ctx.translator, ctx.read_old(
                ctx.old_partition, (ctx.enc_old_key(key),))):
            seen.append((new_key, item.column if isinstance(item, Cell) else item.new_column))
            if len(seen) >= _CHUNK:
                inserted.take_many(seen)
                seen = []
        inserted.take_many(seen)
        if not len(inserted):
            return 0
        writer = ctx.writer()
        return guarded(writer, lambda: Counts(deleted=delete_leftovers(inserted, writer))).deleted

    def replace_cells(self, keyspace: str, table: str, key: str,
                      columns: Sequence[str]) -> ReplaceOutcome:
        """Same for some columns of a partition (e.g. one object's entry in the fq-name index).
        Cells added at the end of a partition by a translator (defaults) are not produced
        here: use replace_partition for obj_uuid_table."""
        ctx = self.context(keyspace, table)
        new_key = ctx.translator.key(key)
        new_columns = [ctx.translator.column(key, c) for c in columns]
        with ctx.spill_map() as existing:
            if new_columns:
                fill(existing, ctx.read_new_meta(ctx.new_cells_meta,
                                                 (ctx.enc_new_key(new_key),
                                                  ctx.enc_new_columns(new_columns))))
            writer = ctx.writer()

            def work() -> Counts:
                if not columns:
                    return Counts()
                rows = ctx.read_old(ctx.old_cells, (ctx.enc_old_key(key),
                                                    ctx.enc_old_columns(columns)))
                counts = replace_rows(ctx, rows, existing, writer, finish=False)
                counts.deleted = delete_leftovers(existing, writer)
                return counts

            counts = guarded(writer, work)
        return self._outcome(ctx, key, new_key, counts)

    def remove_extra_partition(self, keyspace: str, table: str, new_key: str) -> int:
        """Delete a partition only new has: its cells are read on new first, then old is
        checked for a source, and only if it has none do exactly those cells go, each at its
        own writetime (see prune_renamed_partitions: why not a wall-clock cut-off)."""
        ctx = self.context(keyspace, table)
        with ctx.spill_map() as cells:
            fill(cells, ctx.read_new_meta(ctx.new_partition_meta,
                                          (ctx.enc_new_key(new_key),)))
            if not len(cells):
                return 0
            if ctx.translator.renames_keys:
                if new_key in ctx.key_map():
                    return 0
            else:
                probe = ctx.read_old(ctx.old_partition, (ctx.enc_old_key(new_key),))
                if next(iter(probe), None) is not None:
                    return 0
            writer = ctx.writer()
            return guarded(writer, lambda: Counts(deleted=delete_leftovers(cells, writer))
                           ).deleted

    def prune_extra_partitions(self, keyspace: str, table: str) -> int:
        """Table-wide removal of new-only partitions of a key-renaming table."""
        ctx = self.context(keyspace, table)
        if not ctx.translator.renames_keys:
            raise ValueError(f"{ctx.name} keeps its keys: range_diff finds extra partitions")
        return prune_renamed_partitions(ctx).deleted

    def repair(self, diff: KeyDiff) -> ReplaceOutcome | int:
        if diff.old_key is None:
            return self.remove_extra_partition(diff.keyspace, diff.table, diff.new_key)
        return self.replace_partition(diff.keyspace, diff.table, diff.old_key)

    def _outcome(self, ctx: TableContext, key: str, new_key: str,
                 counts: Counts) -> ReplaceOutcome:
        return ReplaceOutcome(ctx.spec.keyspace, ctx.spec.name, key, new_key, counts.cells,
                              counts.deleted, counts.quarantined, counts.newest_writetime,
                              counts.partitions > 0)

    # ------------------------------------------------------------------ gathered changes
    # run-sync's path: reads sent together (asynchronously, several partitions per request),
    # the differences computed in memory, every write of one change sent as few batches.
    # For small partitions: a caller reading a partition checks `complete` (no more pages)
    # and takes replace_partition (streaming, memory bounded) otherwise.

    def _many_statements(self, ctx: TableContext) -> tuple[PreparedStatement, PreparedStatement]:
        key = (ctx.spec.keyspace, ctx.spec.name)
        with self._lock:
            stmts = self._many.get(key)
        if stmts is None:
            cols = "key, column1, value, WRITETIME(value)"
            where = "WHERE key IN ? AND column1 IN ?"
            o = f'"{ctx.old_keyspace}"."{ctx.spec.name}"'
            n = f'"{ctx.new_keyspace}"."{ctx.spec.name}"'
            stmts = (ctx.old.session.prepare(f"SELECT {cols} FROM {o} {where}"),
                     ctx.new.session.prepare(f"SELECT {cols} FROM {n} {where}"))
            with self._lock:
                self._many[key] = stmts
        return stmts

    @staticmethod
    def _send(ctx: TableContext, new: bool, stmt: PreparedStatement, args: tuple[object, ...],
              fetch_size: int) -> ResponseFuture:
        bound = stmt.bind(args)
        bound.fetch_size = fetch_size
        return (ctx.new if new else ctx.old).session.execute_async(bound)

    def fetch_partition(self, ctx: TableContext, key: str, *, new: bool,
                        fetch_size: int) -> ResponseFuture:
        """Start reading one whole partition (`key` as that side names it); the first page
        holds up to `fetch_size` cells."""
        if new:
            return self._send(ctx, True, ctx.new_partition_full, (ctx.enc_new_key(key),),
                              fetch_size)
        return self._send(ctx, False, ctx.old_partition, (ctx.enc_old_key(key),), fetch_size)

    def fetch_cells(self, ctx: TableContext, keys: Sequence[str], columns: Sequence[str], *,
                    new: bool) -> ResponseFuture:
        """Start reading the cells `columns` of the partitions `keys` (names as that side
        spells them) in one request: every key x column pair that exists."""
        old_stmt, new_stmt = self._many_statements(ctx)
        if new:
            return self._send(ctx, True, new_stmt, (
                [ctx.enc_new_key(k) for k in keys], ctx.enc_new_columns(columns)),
                self.settings.page_size)
        return self._send(ctx, False, old_stmt, (
            [ctx.enc_old_key(k) for k in keys], ctx.enc_old_columns(columns)),
            self.settings.page_size)

    @staticmethod
    def rows(ctx: TableContext, future: ResponseFuture, *, new: bool,
             first_page_only: bool = False) -> list[RawRow] | None:
        """The decoded rows of a fetch. With `first_page_only`, None when there is more than
        the first page (the partition is wide: use the streaming replace)."""
        result = settle(future)
        if first_page_only and result.has_more_pages:
            return None
        layout = ctx.new_layout if new else ctx.old_layout
        assert layout is not None
        dk, dc, dv = layout.decode_key, layout.decode_column, layout.decode_value
        return [(dk(k), dc(c), None if v is None else dv(v), ts) for k, c, v, ts in result]

    def diff(self, ctx: TableContext, old_rows: Iterable[RawRow], new_rows: Iterable[RawRow],
             changes: CellChanges, *, finish: bool) -> list[Cell]:
        """Add to `changes` what makes the new cells `new_rows` (new-side names) the
        translation of `old_rows` (old-side names): cells to write (unless new has them
        with that value and writetime), new cells old has no source for to delete, each with
        the writetime it had (a newer write survives). `finish`: the old rows are whole
        partitions (the translator may add cells at the end). Returns the translated cells."""
        current = {(k, c): (v, ts or 0) for k, c, v, ts in new_rows}
        ordered = sorted(old_rows, key=lambda row: row[0])  # translate_rows groups by key
        translated: list[Cell] = []
        for old_key, new_key, item in translate_rows(ctx.translator, ordered, finish=finish):
            if isinstance(item, Rejected):
                quarantine_cell(ctx, old_key, item)
                changes.quarantined += 1
                current.pop((new_key, item.new_column), None)  # never deleted for that
                continue
            translated.append(item)
            changes.cells += 1
            if current.pop((new_key, item.column), None) == (item.value, item.writetime):
                changes.unchanged += 1
            else:
                changes.inserts.append((ctx, new_key, item))
                # only what new lacked measures how far behind it was: a cell it holds
                # already would make the lag the object's age
                if item.writetime > changes.newest_writetime:
                    changes.newest_writetime = item.writetime
        for (k, c), (_, ts) in current.items():
            changes.deletes.append((ctx, k, c, ts))
        return translated

    def write_changes(self, changes: CellChanges) -> None:
        """Send the writes of `changes` as UNLOGGED batches (several partitions and tables
        per batch, bounded in cells, bytes and partitions), all in flight together; returns
        when every one is written (raises the first error)."""
        writes: list[_Write] = []
        for ctx, key, cell in changes.inserts:
            layout = ctx.new_layout
            assert layout is not None
            writes.append(((id(ctx), key), ctx.insert,
                           (layout.encode_key(key), layout.encode_column(cell.column),
                            layout.encode_value(cell.value), cell.writetime),
                           len(cell.column) + len(cell.value) + CELL_OVERHEAD))
        for ctx, key, column, ts in changes.deletes:
            if ctx.kept and (key, column) in ctx.kept:
                continue  # forward quarantined it: old keeps it (TableContext.kept)
            layout = ctx.new_layout
            assert layout is not None
            writes.append(((id(ctx), key), ctx.delete,
                           (ts, layout.encode_key(key), layout.encode_column(column)),
                           len(column) + CELL_OVERHEAD))
        futures = []
        for group in grouped(writes, Batching(self.settings.write_batch_bounds()),
                             key=lambda w: w[0], size=lambda w: w[3]):
            request = request_for([(stmt, args) for _, stmt, args, _ in group])
            futures.append(self.new.session.execute_async(request))
        error: BaseException | None = None
        for future in futures:
            try:
                settle(future)
            except Exception as exc:
                error = error or exc
        if error is not None:
            raise error

    # ------------------------------------------------------------------ reconciliation
    def range_diff(self, keyspace: str, table: str, lo: int, hi: int) -> list[KeyDiff]:
        """Partitions of old token range (lo, hi] whose translation differs from new
        (content, values or writetimes), by order-independent per-partition digests.
        Memory: one digest per partition of the range. For a key-renaming table, partitions
        only new has are not found here: call prune_extra_partitions."""
        ctx = self.context(keyspace, table)
        old_digest: dict[str, int] = {}
        source: dict[str, str] = {}
        protected: set[tuple[str, str]] = set()
        for old_key, new_key, item in translate_rows(ctx.translator,
                                                     ctx.read_old(ctx.old_range, (lo, hi))):
            source[new_key] = old_key
            if isinstance(item, Cell):
                d = cell_digest(item.column, item.value, item.writetime)
                old_digest[new_key] = (old_digest.get(new_key, 0) + d) & _MASK
            else:
                old_digest.setdefault(new_key, 0)
                protected.add((new_key, item.new_column))
        new_digest: dict[str, int] = {}
        if ctx.translator.renames_keys:
            rows: Iterable[RawRow] = (r for k in source for r in ctx.read_new_full(
                ctx.new_partition_full, (ctx.enc_new_key(k),)))
        else:
            rows = ctx.read_new_full(ctx.new_range_full, (lo, hi))
        for k, c, v, ts in rows:
            if (k, c) in protected:
                continue
            new_digest[k] = (new_digest.get(k, 0) + cell_digest(c, v, ts)) & _MASK
        diffs = []
        for new_key in sorted(set(old_digest) | set(new_digest)):
            if old_digest.get(new_key) != new_digest.get(new_key):
                diffs.append(KeyDiff(keyspace, table, source.get(new_key), new_key))
        return diffs

    def token_ranges(self, count: int) -> list[tuple[str, int, int]]:
        """(id, lo, hi) ranges covering the ring, for a reconciliation loop."""
        return token_slices(count)
