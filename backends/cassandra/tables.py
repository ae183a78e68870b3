"""Per-table context shared by copy, replicator and verify: layouts on both sides, prepared
statements, the translator, paged reads, and the quarantine table."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from cassandra import ReadFailure, ReadTimeout, Unavailable
from cassandra.cluster import NoHostAvailable, OperationTimedOut, Session
from cassandra.query import PreparedStatement

from backends.cassandra.batching import BatchBounds
from backends.cassandra.connection import Connection
from backends.cassandra.registry import TableSpec
from backends.cassandra.schema import (
    Layout,
    default_layout,
    ensure_keyspace,
    ensure_table,
    table_layout,
)
from backends.cassandra.spill import SpillMap
from backends.cassandra.translate import Cell, RejectCell, TableTranslator
from backends.cassandra.writer import CellWriter

if TYPE_CHECKING:
    from cassandra.cluster import Cluster
    from cassandra.metadata import Metadata

MIN_TOKEN = -(2**63)
MAX_TOKEN = 2**63 - 1

RawRow = tuple[str, str, str | None, int | None]  # decoded key, column, value, writetime


@dataclass(frozen=True)
class SyncSettings:
    """Engine knobs (the CLI maps issu's SyncConfig onto these)."""

    concurrency: int = 8            # token slices in flight
    page_size: int = 2000           # rows per page of every read
    slices_per_table: int = 64
    small_table_cells: int = 5000   # a table with fewer cells on old is copied as one slice
    # UNLOGGED batches over several partitions (the replicator's, and the copy's of small
    # partitions with the same replicas): below Cassandra's 5 KiB batch size warning and its
    # warning for unlogged batches over more than 10 partitions
    batch_cells: int = 100
    batch_bytes: int = 4500
    batch_partitions: int = 10
    # the copy's UNLOGGED batches of one partition: Cassandra (3.6+, CASSANDRA-10876) applies
    # its batch size warn/fail thresholds (5/50 KiB) only to batches over several partitions;
    # a single-partition batch is one mutation, so bigger batches cost no warning, only fewer
    # requests. Bounded well below 50 KiB anyway.
    partition_batch_cells: int = 250
    partition_batch_bytes: int = 32_000
    max_in_flight: int = 16         # outstanding write requests per slice
    spill_threshold: int = 100_000  # (key, column) entries kept in memory before spilling
    spill_dir: str | None = None
    keyspaces: tuple[str, ...] | None = None

    def write_batch_bounds(self) -> BatchBounds:
        """The replicator's batches (run-sync, reconciliation): one partition or several,
        all within the multi-partition bounds."""
        return BatchBounds(cells=self.batch_cells, nbytes=self.batch_bytes,
                           group_cells=self.batch_cells, group_bytes=self.batch_bytes,
                           group_partitions=self.batch_partitions)

    def copy_batch_bounds(self) -> BatchBounds:
        return BatchBounds(cells=self.partition_batch_cells, nbytes=self.partition_batch_bytes,
                           group_cells=self.batch_cells, group_bytes=self.batch_bytes,
                           group_partitions=self.batch_partitions)


def replica_lookup(cluster: Cluster, insert: PreparedStatement,
                   encode: Callable[[str], object]) -> Callable[[str], Hashable]:
    """key -> the replicas of that partition of `insert`'s table, from the driver's token
    map (a lookup that fails, the map being rebuilt, answers a set of its own)."""
    metadata, protocol = cluster.metadata, cluster.protocol_version
    key_column = insert.column_metadata[0]  # the statement binds `key` first
    keyspace, key_type = key_column.keyspace_name, key_column.type

    def replicas(key: str) -> Hashable:
        try:
            hosts = metadata.get_replicas(keyspace, key_type.serialize(encode(key), protocol))
        except Exception:  # this partition goes alone
            return object()
        return frozenset(host.endpoint for host in hosts)

    return replicas


def _everywhere(metadata: Metadata, keyspace: str) -> bool:
    """Whether every node holds every partition of `keyspace`."""
    hosts = metadata.all_hosts()
    if len(hosts) <= 1:
        return True
    ks = metadata.keyspaces.get(keyspace)
    strategy = getattr(ks, "replication_strategy", None)
    per_dc = getattr(strategy, "dc_replication_factors", None)
    if per_dc:  # NetworkTopologyStrategy: each data centre's nodes, against its factor
        return all(int(per_dc.get(dc, 0)) >= sum(1 for h in hosts if h.datacenter == dc)
                   for dc in {h.datacenter for h in hosts})
    factor = getattr(strategy, "replication_factor", None)
    return isinstance(factor, int) and factor >= len(hosts)


class SyncError(RuntimeError):
    pass


class Rejected(NamedTuple):
    column: str        # as on the old side
    new_column: str    # its name on the new side (kept untouched there)
    value: str | None
    writetime: int | None
    reason: str


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Quarantine:
    """`<ndb_prefix>_issu_quarantine.rows` on the new cluster: every cell a translator
    rejected or could not decode, with the reason; re-quarantining the same cell overwrites.

    The reverse replication after finalize (new -> old, `reverse`) keeps its own in
    `reverse_rows` of the same keyspace, on the new cluster too (its source there): old's
    ring holds nothing of issu's. It also reads the forward rows (`forward_cells`): cells
    old holds that could not be translated, which new therefore lacks."""

    TABLE = "rows"
    REVERSE_TABLE = "reverse_rows"

    def __init__(self, new: Connection, run_id: str, *, reverse: bool = False) -> None:
        self._session = new.session
        self.keyspace = new.side.keyspace("issu_quarantine")
        self.run_id = run_id
        self.reverse = reverse
        self.TABLE = self.REVERSE_TABLE if reverse else Quarantine.TABLE
        self._lock = threading.Lock()
        self._insert: PreparedStatement | None = None
        self.count = 0

    @classmethod
    def of_sync(cls, old: Connection, new: Connection, run_id: str, *,
                reverse: bool) -> Quarantine:
        """The quarantine of a copy or replication from `old` to `new`: on `new` (the new
        cluster) forward, on `old` (the new cluster, its source) in reverse."""
        return cls(old, run_id, reverse=True) if reverse else cls(new, run_id)

    def forward_cells(self, keyspace: str, table: str) -> frozenset[tuple[str, str]]:
        """(key, column) of the forward quarantine's cells of one table, as old names them:
        what the reverse direction must never delete on old. Empty forward."""
        from backends.cassandra.schema import keyspace_exists

        if not self.reverse or not keyspace_exists(self._session, self.keyspace):
            return frozenset()
        if self._session.execute(
                "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s AND "
                "table_name = %s", (self.keyspace, Quarantine.TABLE)).one() is None:
            return frozenset()
        rows = self._session.execute(
            f"SELECT key, column_name FROM {_q(self.keyspace)}.{Quarantine.TABLE} "
            "WHERE keyspace_name = %s AND table_name = %s", (keyspace, table))
        return frozenset((str(k), str(c)) for k, c in rows)

    def _prepare(self) -> PreparedStatement:
        with self._lock:
            if self._insert is None:
                ensure_keyspace(self._session, self.keyspace)
                self._session.execute(
                    f"CREATE TABLE IF NOT EXISTS {_q(self.keyspace)}.{self.TABLE} ("
                    "keyspace_name text, table_name text, key text, column_name text, "
                    "value text, source_writetime bigint, reason text, run_id text, "
                    "quarantined_at timestamp, "
                    "PRIMARY KEY ((keyspace_name, table_name), key, column_name))")
                self._insert = self._session.prepare(
                    f"INSERT INTO {_q(self.keyspace)}.{self.TABLE} (keyspace_name, table_name, "
                    "key, column_name, value, source_writetime, reason, run_id, quarantined_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
            return self._insert

    def put(self, keyspace: str, table: str, key: str, rejected: Rejected) -> None:
        stmt = self._prepare()
        self._session.execute(stmt, (keyspace, table, key, rejected.column, rejected.value,
                                     rejected.writetime, rejected.reason, self.run_id,
                                     int(time.time() * 1000)))
        with self._lock:
            self.count += 1

    def rows(self, limit: int = 1000) -> list[dict[str, object]]:
        from backends.cassandra.schema import keyspace_exists
        if not keyspace_exists(self._session, self.keyspace):
            return []
        result = self._session.execute(
            f"SELECT keyspace_name, table_name, key, column_name, reason, source_writetime, "
            f"run_id FROM {_q(self.keyspace)}.{self.TABLE} LIMIT {int(limit)}")
        names = ("keyspace", "table", "key", "column", "reason", "source_writetime", "run_id")
        return [dict(zip(names, r, strict=True)) for r in result]


class TableContext:
    """Everything needed to move one registered table between the two sides."""

    def __init__(self, spec: TableSpec, old: Connection, new: Connection,
                 translator: TableTranslator, settings: SyncSettings,
                 quarantine: Quarantine, *, create: bool = True) -> None:
        self.spec, self.old, self.new = spec, old, new
        self.translator, self.settings, self.quarantine = translator, settings, quarantine
        # Reverse (new -> old): the cells forward quarantined stay on old whatever new has
        # (new never got them); every delete this context writes skips them (writer(),
        # Replicator.write_changes).
        self.kept = quarantine.forward_cells(spec.keyspace, spec.name)
        self.old_keyspace = old.side.keyspace(spec.keyspace)
        self.new_keyspace = new.side.keyspace(spec.keyspace)
        self.name = spec.qualified
        old_layout = table_layout(old.session, self.old_keyspace, spec.name)
        self.old_layout: Layout | None = old_layout
        if old_layout is None:
            self.new_layout = table_layout(new.session, self.new_keyspace, spec.name)
            return
        if create:
            self.new_layout = ensure_table(new.session, self.new_keyspace, spec.name,
                                           old_layout or default_layout(spec))
        else:
            self.new_layout = table_layout(new.session, self.new_keyspace, spec.name)
        self._prepare()

    @property
    def present_on_old(self) -> bool:
        return self.old_layout is not None

    def _prepare(self) -> None:
        o = f"{_q(self.old_keyspace)}.{_q(self.spec.name)}"
        n = f"{_q(self.new_keyspace)}.{_q(self.spec.name)}"
        op, np_ = self.old.session.prepare, self.new.session.prepare
        full = "key, column1, value, WRITETIME(value)"
        meta = "key, column1, WRITETIME(value)"
        rng = "WHERE token(key) > ? AND token(key) <= ?"
        self.old_range = op(f"SELECT {full} FROM {o} {rng}")
        self.old_keys_range = op(f"SELECT DISTINCT key FROM {o} {rng}")
        self.old_keys_all = op(f"SELECT DISTINCT key FROM {o}")
        self.old_partition = op(f"SELECT {full} FROM {o} WHERE key = ?")
        self.old_cells = op(f"SELECT {full} FROM {o} WHERE key = ? AND column1 IN ?")
        if self.new_layout is None:
            return
        self.new_range_meta = np_(f"SELECT {meta} FROM {n} {rng}")
        self.new_range_full = np_(f"SELECT {full} FROM {n} {rng}")
        self.new_keys_all = np_(f"SELECT DISTINCT key FROM {n}")
        self.new_partition_meta = np_(f"SELECT {meta} FROM {n} WHERE key = ?")
        self.new_partition_full = np_(f"SELECT {full} FROM {n} WHERE key = ?")
        self.new_cells_meta = np_(f"SELECT {meta} FROM {n} WHERE key = ? AND column1 IN ?")
        self.new_cells_full = np_(f"SELECT {full} FROM {n} WHERE key = ? AND column1 IN ?")
        self.insert = np_(f"INSERT INTO {n} (key, column1, value) VALUES (?, ?, ?) "
                          "USING TIMESTAMP ?")
        self.delete = np_(f"DELETE FROM {n} USING TIMESTAMP ? WHERE key = ? AND column1 = ?")

    # ------------------------------------------------------------------ reads
    def _paged(self, session: Session, stmt: PreparedStatement,
               args: tuple[object, ...]) -> Iterator[tuple[Any, ...]]:
        # the driver's rows are untyped: blob columns come as bytes, text as str
        bound = stmt.bind(args)
        bound.fetch_size = self.settings.page_size
        yield from session.execute(bound)

    def read_old(self, stmt: PreparedStatement, args: tuple[object, ...]) -> Iterator[RawRow]:
        assert self.old_layout is not None
        dk, dc, dv = (self.old_layout.decode_key, self.old_layout.decode_column,
                      self.old_layout.decode_value)
        for k, c, v, ts in self._paged(self.old.session, stmt, args):
            yield dk(k), dc(c), (None if v is None else dv(v)), ts

    def read_new_full(self, stmt: PreparedStatement,
                      args: tuple[object, ...]) -> Iterator[RawRow]:
        assert self.new_layout is not None
        dk, dc, dv = (self.new_layout.decode_key, self.new_layout.decode_column,
                      self.new_layout.decode_value)
        for k, c, v, ts in self._paged(self.new.session, stmt, args):
            yield dk(k), dc(c), (None if v is None else dv(v)), ts

    def read_new_meta(self, stmt: PreparedStatement,
                      args: tuple[object, ...]) -> Iterator[tuple[str, str, int]]:
        assert self.new_layout is not None
        dk, dc = self.new_layout.decode_key, self.new_layout.decode_column
        for k, c, ts in self._paged(self.new.session, stmt, args):
            yield dk(k), dc(c), ts or 0

    def old_keys(self, lo: int | None = None, hi: int | None = None) -> Iterator[str]:
        assert self.old_layout is not None
        dk = self.old_layout.decode_key
        if lo is None:
            rows = self._paged(self.old.session, self.old_keys_all, ())
        else:
            rows = self._paged(self.old.session, self.old_keys_range, (lo, hi))
        for (k,) in rows:
            yield dk(k)

    def slice_count(self) -> int:
        """`slices_per_table`, or 1 for a small table (one probe read of a few cells):
        slicing a nearly empty table only multiplies round trips."""
        limit = self.settings.small_table_cells
        if limit <= 0 or self.settings.slices_per_table <= 1:
            return max(1, self.settings.slices_per_table)
        stmt = f"SELECT key FROM {_q(self.old_keyspace)}.{_q(self.spec.name)} LIMIT {limit}"
        rows = self.old.session.execute(stmt)
        return 1 if sum(1 for _ in rows) < limit else self.settings.slices_per_table

    def new_is_empty(self) -> bool:
        """Whether new holds no row of this table (one probe read). False when it cannot
        tell (the probe failed, e.g. on a table full of tombstones): then it is read."""
        if self.new_layout is None:
            return False
        try:
            rows = self.new.session.execute(
                f"SELECT key FROM {_q(self.new_keyspace)}.{_q(self.spec.name)} LIMIT 1")
        except (ReadFailure, ReadTimeout, OperationTimedOut, Unavailable, NoHostAvailable):
            return False  # the copy reads new then, and reports there what fails
        return rows.one() is None

    def new_keys(self) -> Iterator[str]:
        assert self.new_layout is not None
        dk = self.new_layout.decode_key
        for (k,) in self._paged(self.new.session, self.new_keys_all, ()):
            yield dk(k)

    def enc_old_key(self, key: str) -> object:
        assert self.old_layout is not None
        return self.old_layout.encode_key(key)

    def enc_old_columns(self, columns: Iterable[str]) -> list[object]:
        assert self.old_layout is not None
        enc = self.old_layout.encode_column
        return [enc(c) for c in columns]

    def enc_new_key(self, key: str) -> object:
        assert self.new_layout is not None
        return self.new_layout.encode_key(key)

    def enc_new_columns(self, columns: Iterable[str]) -> list[object]:
        assert self.new_layout is not None
        enc = self.new_layout.encode_column
        return [enc(c) for c in columns]

    # ------------------------------------------------------------------ writes
    def writer(self) -> CellWriter:
        assert self.new_layout is not None
        s = self.settings
        return CellWriter(self.new.session, self.insert, self.delete, self.new_layout,
                          bounds=s.copy_batch_bounds(), max_in_flight=s.max_in_flight,
                          replicas=self.new_replicas(), kept=self.kept)

    def new_replicas(self) -> Callable[[str], Hashable] | None:
        """key -> the new cluster's replicas of that partition (replica_lookup); None when
        every partition has the same replicas (one node, or as many replicas as nodes, as in
        Contrail's usual 3 nodes with RF 3) or the driver has no token map: then batches
        group freely."""
        metadata = self.new.session.cluster.metadata
        keyspace = self.insert.column_metadata[0].keyspace_name
        if metadata.token_map is None or _everywhere(metadata, keyspace):
            return None
        return replica_lookup(self.new.session.cluster, self.insert, self.enc_new_key)

    def spill_map(self) -> SpillMap:
        return SpillMap(self.settings.spill_threshold, self.settings.spill_dir)

    def key_map(self) -> dict[str, str]:
        """new key -> old key for a key-renaming table (its partitions are few: one per
        object type for obj_fq_name_table). Two old keys mapping to one new key is an error."""
        mapping: dict[str, str] = {}
        for old_key in self.old_keys():
            new_key = self.translator.key(old_key)
            other = mapping.setdefault(new_key, old_key)
            if other != old_key:
                raise SyncError(f"{self.name}: old partitions {other!r} and {old_key!r} both "
                                f"translate to {new_key!r}; merge them on the old side first")
        return mapping


def translate_rows(translator: TableTranslator, rows: Iterable[RawRow], *,
                   finish: bool = True) -> Iterator[tuple[str, str, Cell | Rejected]]:
    """(old key, new key, translated cell or Rejected) for a stream of rows grouped by key,
    as a range or partition read returns them."""
    if translator.is_identity:
        # the common case (same release on both sides, or a table no step changes): no
        # per-partition translation object, no per-cell list
        for key, column, value, ts in rows:
            if value is None or ts is None:
                yield key, key, Rejected(column, column, value, ts, "cell has no value (null)")
            else:
                yield key, key, Cell(column, value, ts)
        return
    current: str | None = None
    new_key = ""
    part = None
    for key, column, value, ts in rows:
        if key != current:
            if part is not None and finish and current is not None:  # set with part
                for cell in part.finish():
                    yield current, new_key, cell
            current, new_key = key, translator.key(key)
            part = translator.partition(key)
        assert part is not None
        if value is None or ts is None:
            yield key, new_key, Rejected(column, translator.column(key, column), value, ts,
                                         "cell has no value (null)")
            continue
        try:
            cells = part.cell(Cell(column, value, ts))
        except RejectCell as exc:
            yield key, new_key, Rejected(column, translator.column(key, column), value, ts,
                                         str(exc) or type(exc).__name__)
            continue
        for cell in cells:
            yield key, new_key, cell
    if part is not None and finish and current is not None:
        for cell in part.finish():
            yield current, new_key, cell


def token_slices(count: int) -> list[tuple[str, int, int]]:
    """`count` contiguous (lo, hi] ranges covering Murmur3's whole ring, with stable ids."""
    count = max(1, count)
    span = (MAX_TOKEN - MIN_TOKEN) // count
    bounds = [MIN_TOKEN + i * span for i in range(count)] + [MAX_TOKEN]
    return [(f"{count}:{i}", bounds[i], bounds[i + 1]) for i in range(count)]
