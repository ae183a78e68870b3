"""Cassandra access in Contrail's config layout (CQL view of the Thrift column families).

Each column family is a CQL table
`(key text, column1 text, value text, PRIMARY KEY (key, column1))`:
- `obj_uuid_table`: key = object uuid, one column per field (`fq_name`, `type`, `prop:...`, ...);
- `obj_fq_name_table`: key = object type, column `<fq_name joined by ':'>:<uuid>`;
- `obj_shared_table`: kept for layout fidelity (sharing is not simulated).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.concurrent import execute_concurrent_with_args
from cassandra.policies import ExponentialReconnectionPolicy, RoundRobinPolicy
from cassandra.query import BatchStatement, BatchType, PreparedStatement

from .spec import CassandraSpec

log = logging.getLogger(__name__)

CONFIG_KEYSPACE = "config_db_uuid"
UUID_TABLE = "obj_uuid_table"
FQ_NAME_TABLE = "obj_fq_name_table"
SHARED_TABLE = "obj_shared_table"
TABLES = (UUID_TABLE, FQ_NAME_TABLE, SHARED_TABLE)
JSON_NONE = "null"


class StoreError(Exception):
    """Cassandra refused or failed an operation; the message names keyspace and key."""


@dataclass
class Mutation:
    """Column writes and deletes applied as one batch.

    All statements of a batch share one write timestamp and a tombstone wins a tie, so a
    cell is either written or deleted here, never both: the last call for a cell decides.
    """

    cells: dict[tuple[str, str, str], str | None] = field(default_factory=dict)
    row_deletes: list[tuple[str, str]] = field(default_factory=list)  # table, key

    def put(self, key: str, column: str, value: str, table: str = UUID_TABLE) -> None:
        self.cells[(table, key, column)] = value

    def remove(self, key: str, column: str, table: str = UUID_TABLE) -> None:
        self.cells[(table, key, column)] = None

    def drop_row(self, key: str, table: str = UUID_TABLE) -> None:
        self.row_deletes.append((table, key))
        for cell in [c for c in self.cells if c[0] == table and c[1] == key]:
            del self.cells[cell]

    def __len__(self) -> int:
        return len(self.cells) + len(self.row_deletes)


def create_schema(session: Session, keyspace: str, factor: int = 1) -> None:
    """The keyspace and its tables in this store's layout, if absent (also used to lay out
    v1 before a snapshot is imported into it)."""
    session.execute(
        f'CREATE KEYSPACE IF NOT EXISTS "{keyspace}" WITH replication = '
        f"{{'class': 'SimpleStrategy', 'replication_factor': {int(factor)}}}"
    )
    for table in TABLES:
        session.execute(
            f'CREATE TABLE IF NOT EXISTS "{keyspace}"."{table}" '
            "(key text, column1 text, value text, PRIMARY KEY (key, column1))"
        )


class ConfigStore:
    def __init__(self, spec: CassandraSpec, user: str | None = None, password: str | None = None):
        self.spec = spec
        self.keyspace = spec.keyspace(CONFIG_KEYSPACE)
        self._auth = PlainTextAuthProvider(user, password) if user else None
        self._cluster: Cluster | None = None
        self._session: Session | None = None
        self._prepared: dict[str, PreparedStatement] = {}

    # -- lifecycle -------------------------------------------------------------------------
    def _new_cluster(self) -> Cluster:
        profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=30)
        return Cluster(contact_points=self.spec.hosts, port=self.spec.port,
                       auth_provider=self._auth,
                       execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                       protocol_version=5, connect_timeout=10,
                       reconnection_policy=ExponentialReconnectionPolicy(1.0, 10.0))

    def connect(self) -> None:
        """Connect and create the keyspace and tables if absent; safe to call again."""
        self.close()
        self._cluster = self._new_cluster()
        try:
            self._session = self._cluster.connect()
            self.ensure_schema()
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"cassandra {self.spec.hosts}:{self.spec.port}: {exc}") from exc

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.shutdown()
        self._cluster, self._session = None, None

    @property
    def session(self) -> Session:
        if self._session is None:
            raise StoreError("cassandra session used before connect()")
        return self._session

    def ensure_schema(self) -> None:
        create_schema(self.session, self.keyspace, self.spec.replication_factor)
        self._prepare()

    def _prepare(self) -> None:
        ks = self.keyspace
        for table in TABLES:
            t = f'"{ks}"."{table}"'
            self._prepared[f"ins:{table}"] = self.session.prepare(
                f"INSERT INTO {t} (key, column1, value) VALUES (?, ?, ?)")
            self._prepared[f"del:{table}"] = self.session.prepare(
                f"DELETE FROM {t} WHERE key = ? AND column1 = ?")
            self._prepared[f"delrow:{table}"] = self.session.prepare(
                f"DELETE FROM {t} WHERE key = ?")
            self._prepared[f"row:{table}"] = self.session.prepare(
                f"SELECT column1, value FROM {t} WHERE key = ?")
            self._prepared[f"range:{table}"] = self.session.prepare(
                f"SELECT column1, value FROM {t} WHERE key = ? AND column1 >= ? AND column1 < ?")
            self._prepared[f"col:{table}"] = self.session.prepare(
                f"SELECT value FROM {t} WHERE key = ? AND column1 = ?")

    # -- reads -----------------------------------------------------------------------------
    def row(self, key: str, table: str = UUID_TABLE) -> dict[str, str]:
        rs = self.session.execute(self._prepared[f"row:{table}"], (key,))
        return {r.column1: r.value for r in rs}

    def rows(self, keys: Sequence[str], table: str = UUID_TABLE) -> dict[str, dict[str, str]]:
        """Read many partitions concurrently; absent ones map to an empty dict."""
        out: dict[str, dict[str, str]] = {}
        results = execute_concurrent_with_args(
            self.session, self._prepared[f"row:{table}"], [(k,) for k in keys],
            concurrency=32, raise_on_first_error=True)
        for key, (ok, rs) in zip(keys, results, strict=True):
            if not ok:
                raise StoreError(f"{self.keyspace}.{table} key {key}: {rs}")
            out[key] = {r.column1: r.value for r in rs}
        return out

    def column(self, key: str, column: str, table: str = UUID_TABLE) -> str | None:
        r = self.session.execute(self._prepared[f"col:{table}"], (key, column)).one()
        return None if r is None else r.value

    def columns(self, keys: Sequence[str], column: str) -> dict[str, str | None]:
        results = execute_concurrent_with_args(
            self.session, self._prepared[f"col:{UUID_TABLE}"], [(k, column) for k in keys],
            concurrency=32, raise_on_first_error=True)
        out: dict[str, str | None] = {}
        for key, (ok, rs) in zip(keys, results, strict=True):
            if not ok:
                raise StoreError(f"{self.keyspace}.{UUID_TABLE} key {key}: {rs}")
            first = rs.one()
            out[key] = None if first is None else first.value
        return out

    def prefixed(self, key: str, prefix: str, table: str = UUID_TABLE) -> list[tuple[str, str]]:
        """Columns of one partition whose name starts with `prefix` (a clustering range)."""
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        rs = self.session.execute(self._prepared[f"range:{table}"], (key, prefix, upper))
        return [(r.column1, r.value) for r in rs]

    def fq_name_entries(self, db_type: str) -> Iterable[str]:
        """Every `<fq_name>:<uuid>` column of one type's obj_fq_name_table partition (paged)."""
        rs = self.session.execute(self._prepared[f"row:{FQ_NAME_TABLE}"], (db_type,))
        for r in rs:
            yield r.column1

    def fq_name_to_uuid(self, db_type: str, fq_name_str: str) -> str | None:
        for column, _ in self.prefixed(db_type, fq_name_str + ":", FQ_NAME_TABLE):
            name, _, uuid = column.rpartition(":")
            if name == fq_name_str:
                return uuid
        return None

    # -- writes ----------------------------------------------------------------------------
    def apply(self, mutation: Mutation) -> None:
        if not mutation:
            return
        batch = BatchStatement(batch_type=BatchType.LOGGED)
        for (table, key, column), value in mutation.cells.items():
            if value is None:
                batch.add(self._prepared[f"del:{table}"], (key, column))
            else:
                batch.add(self._prepared[f"ins:{table}"], (key, column, value))
        for table, key in mutation.row_deletes:
            batch.add(self._prepared[f"delrow:{table}"], (key,))
        try:
            self.session.execute(batch)
        except Exception as exc:
            raise StoreError(f"cassandra write to {self.keyspace} failed: {exc}") from exc
