"""Group commit for run-sync's requests: what many lanes ask at the same moment goes to
Cassandra as one request.

Each change takes a few rounds of small requests (read the object on new, on old, read its
linked cells, write). Under load the lanes (64 by default) send those rounds side by side,
and most of the CPU (driver, both Cassandra JVMs) is spent per request, not per cell. So requests of
the same kind wait while one of that kind is in flight; the lane that sends next takes all
that waited and sends them as one (`key IN ?` reads, one merged set of batched writes),
then hands each lane its share. A lone request goes as it would alone: nothing waits, no
statement changes, so at a low rate the latency and the requests are the same as without.

One group of a kind in flight at a time, unless it stalls: a group out for longer than
`STALL_S` lets the next one go (up to `GROUPS_IN_FLIGHT`), so a Cassandra request that
hangs a few hundred ms on a loaded box no longer holds every lane of the process.

Semantics do not change: each lane still waits for its own reads before its next round
(new before old, linked partitions before the object's own row), and a merged request
only reads more cells than one lane asked for (each lane keeps exactly its own) or writes
several lanes' cells, each with its own writetime.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from cassandra import RequestValidationException
from cassandra.protocol import RequestValidationException as RequestRejected
from cassandra.query import PreparedStatement

from backends.cassandra.futures import settle
from backends.cassandra.replicator import CellChanges, Replicator
from backends.cassandra.tables import RawRow, TableContext
from backends.group_commit import GroupCommit, Slot

Item = TypeVar("Item")
Result = TypeVar("Result")

# Bounds of one merged request: partitions of a partition read (each up to its `wide` + 1
# cells), key x column pairs of a cell read (it reads the union of the keys times the union
# of the columns), cells of a write.
MAX_PARTITIONS = 32
MAX_CELL_PAIRS = 4096
MAX_WRITE_CELLS = 2000
# A group out longer than this lets another of its kind go, up to that many in flight. Each
# lane still waits for its own request before its next one (an object is in one lane at a
# time), so each object's requests keep their order; what groups in flight together write
# are different objects' cells, each with its own writetime.
STALL_S = 0.1
GROUPS_IN_FLIGHT = 4


@dataclass(frozen=True)
class PartitionRead:
    ctx: TableContext
    key: str  # as that side spells it
    new: bool
    wide: int  # more cells than this: None (the caller streams the partition)


def _partitions_fit(items: list[PartitionRead]) -> bool:
    return len({i.key for i in items}) <= MAX_PARTITIONS


@dataclass(frozen=True)
class CellsRead:
    ctx: TableContext
    keys: tuple[str, ...]
    columns: tuple[str, ...]
    new: bool
    max_keys: int  # partitions per request


def _cells_fit(items: list[CellsRead]) -> bool:
    keys = {k for i in items for k in i.keys}
    columns = {c for i in items for c in i.columns}
    return len(keys) <= items[0].max_keys and len(keys) * len(columns) <= MAX_CELL_PAIRS


def _write_fits(items: list[CellChanges]) -> bool:
    return sum(len(c.inserts) + len(c.deletes) for c in items) <= MAX_WRITE_CELLS


class CombinedRequests:
    """run-sync's reads and writes, combined across lanes (see the module's docstring).
    `partition` answers like `Replicator.fetch_partition` + `rows(first_page_only=True)`:
    the rows, or None when the partition has more than `wide` cells."""

    def __init__(self, repl: Replicator) -> None:
        self.repl = repl
        self._lock = threading.Lock()
        # (name, table, side) -> its queue; the kinds carry different items and results, and
        # _kind gives each caller its own typed view of the one it asked for
        self._kinds: dict[tuple[str, int, bool], GroupCommit[Any, Any]] = {}
        self._in_stmts: dict[tuple[int, bool], PreparedStatement | None] = {}
        self.writes: GroupCommit[CellChanges, None] = GroupCommit(
            self._write, fits=_write_fits, leaders=GROUPS_IN_FLIGHT, stall_s=STALL_S)

    # ------------------------------------------------------------------ the calls
    def partition(self, ctx: TableContext, key: str, *, new: bool, wide: int
                  ) -> Slot[PartitionRead, list[RawRow] | None]:
        kind = self._kind("partition", ctx, new, self._read_partitions, _partitions_fit)
        return kind.submit(PartitionRead(ctx, key, new, wide))

    def cells(self, ctx: TableContext, keys: Sequence[str], columns: Sequence[str], *,
              new: bool, max_keys: int) -> Slot[CellsRead, list[RawRow]]:
        kind = self._kind("cells", ctx, new, self._read_cells, _cells_fit)
        return kind.submit(CellsRead(ctx, tuple(keys), tuple(columns), new, max_keys))

    def write(self, changes: CellChanges) -> None:
        if changes.inserts or changes.deletes:
            self.writes.call(changes)

    def stats(self) -> dict[str, tuple[int, int]]:
        """kind -> (requests, items): how much was combined."""
        out = {"write": (self.writes.requests, self.writes.items)}
        for (name, _, new), kind in list(self._kinds.items()):
            label = f"{name}-{'new' if new else 'old'}"
            requests, items = out.get(label, (0, 0))
            out[label] = (requests + kind.requests, items + kind.items)
        return out

    # ------------------------------------------------------------------ plumbing
    def _kind(self, name: str, ctx: TableContext, new: bool,
              run: Callable[[list[Item]], Sequence[Result]],
              fits: Callable[[list[Item]], bool]) -> GroupCommit[Item, Result]:
        key = (name, id(ctx), new)
        kind = self._kinds.get(key)
        if kind is None:
            with self._lock:
                kind = self._kinds.setdefault(key, GroupCommit(
                    run, fits=fits, leaders=GROUPS_IN_FLIGHT, stall_s=STALL_S))
        return kind

    def _partitions_in(self, ctx: TableContext, new: bool) -> PreparedStatement | None:
        """`WHERE key IN ? PER PARTITION LIMIT ?` on that side, None where the server does
        not take it (then a group is read partition by partition)."""
        key = (id(ctx), new)
        if key not in self._in_stmts:
            conn = ctx.new if new else ctx.old
            keyspace = ctx.new_keyspace if new else ctx.old_keyspace
            try:
                stmt: PreparedStatement | None = conn.session.prepare(
                    f'SELECT key, column1, value, WRITETIME(value) FROM "{keyspace}".'
                    f'"{ctx.spec.name}" WHERE key IN ? PER PARTITION LIMIT ?')
            except (RequestValidationException, RequestRejected):  # e.g. Cassandra < 3.6
                stmt = None
            with self._lock:
                self._in_stmts[key] = stmt
        return self._in_stmts[key]

    def _read_partitions(self, items: list[PartitionRead]) -> list[list[RawRow] | None]:
        ctx, new, wide = items[0].ctx, items[0].new, items[0].wide
        stmt = self._partitions_in(ctx, new) if len(items) > 1 else None
        if stmt is None:  # alone (or no IN form): exactly the single-partition request
            futures = [self.repl.fetch_partition(ctx, i.key, new=new, fetch_size=i.wide)
                       for i in items]
            return [self.repl.rows(ctx, f, new=new, first_page_only=True) for f in futures]
        keys = list(dict.fromkeys(i.key for i in items))
        encode = ctx.enc_new_key if new else ctx.enc_old_key
        bound = stmt.bind(([encode(k) for k in keys], wide + 1))
        bound.fetch_size = min(len(keys) * (wide + 1), 20_000)
        session = (ctx.new if new else ctx.old).session
        result = settle(session.execute_async(bound))
        layout = ctx.new_layout if new else ctx.old_layout
        assert layout is not None
        dk, dc, dv = layout.decode_key, layout.decode_column, layout.decode_value
        by_key: dict[str, list[RawRow]] = {k: [] for k in keys}
        for k, c, v, ts in result:  # further pages, if any, fetched here (bounded above)
            key = dk(k)
            by_key.setdefault(key, []).append((key, dc(c), None if v is None else dv(v), ts))
        return [None if len(by_key[i.key]) > i.wide else by_key[i.key] for i in items]

    def _read_cells(self, items: list[CellsRead]) -> list[list[RawRow]]:
        ctx, new = items[0].ctx, items[0].new
        keys = list(dict.fromkeys(k for i in items for k in i.keys))
        columns = list(dict.fromkeys(c for i in items for c in i.columns))
        future = self.repl.fetch_cells(ctx, keys, columns, new=new)
        rows = Replicator.rows(ctx, future, new=new) or []
        if len(items) == 1:
            return [rows]
        out = []
        for item in items:  # each lane gets exactly the key x column pairs it asked for
            wanted_keys, wanted_columns = set(item.keys), set(item.columns)
            out.append([r for r in rows if r[0] in wanted_keys and r[1] in wanted_columns])
        return out

    def _write(self, items: list[CellChanges]) -> list[None]:
        if len(items) == 1:
            self.repl.write_changes(items[0])
        else:
            merged = CellChanges()
            for changes in items:
                merged.inserts.extend(changes.inserts)
                merged.deletes.extend(changes.deletes)
            self.repl.write_changes(merged)
        return [None] * len(items)
