"""Table layouts (Thrift-style `key`, `column1`, `value`) and their creation on the new side.

Contrail's CQL driver creates `key blob, column1 blob, value text` (WITH COMPACT STORAGE, which
Cassandra 4+ no longer has); the engine reads whatever types a table has, and creates a
missing table on the new side with the old table's types, so Contrail's own driver keeps
working against it. Keys and column names are handled as text inside the engine; blobs are
decoded as UTF-8 with surrogate escapes so any byte string survives the round trip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cassandra.cluster import Session

from backends.cassandra.registry import TableSpec

# A blob column's bytes <-> text, or text as it is.
Decoder = Callable[[bytes], str] | Callable[[str], str]
Encoder = Callable[[str], bytes] | Callable[[str], str]

_TEXT_TYPES = {"text", "varchar", "ascii"}
_SUPPORTED = _TEXT_TYPES | {"blob"}


class SchemaError(RuntimeError):
    pass


def _decode_blob(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def _encode_blob(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def _same(value: str) -> str:
    return value


@dataclass(frozen=True)
class Layout:
    key_type: str
    column_type: str
    value_type: str

    def decoder(self, cql_type: str) -> Decoder:
        return _decode_blob if cql_type == "blob" else _same

    def encoder(self, cql_type: str) -> Encoder:
        return _encode_blob if cql_type == "blob" else _same

    @property
    def decode_key(self) -> Decoder:
        return self.decoder(self.key_type)

    @property
    def decode_column(self) -> Decoder:
        return self.decoder(self.column_type)

    @property
    def decode_value(self) -> Decoder:
        return self.decoder(self.value_type)

    @property
    def encode_key(self) -> Encoder:
        return self.encoder(self.key_type)

    @property
    def encode_column(self) -> Encoder:
        return self.encoder(self.column_type)

    @property
    def encode_value(self) -> Encoder:
        return self.encoder(self.value_type)


def keyspace_exists(session: Session, keyspace: str) -> bool:
    rows = session.execute(
        "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = %s",
        (keyspace,))
    return rows.one() is not None


def table_layout(session: Session, keyspace: str, table: str) -> Layout | None:
    """The table's layout, None when it does not exist; SchemaError when it is not
    Thrift-style or uses types the engine cannot carry."""
    rows = session.execute(
        "SELECT column_name, type, kind FROM system_schema.columns "
        "WHERE keyspace_name = %s AND table_name = %s", (keyspace, table))
    columns = {r[0]: (r[1], r[2]) for r in rows}
    if not columns:
        return None
    expected = {"key": "partition_key", "column1": "clustering", "value": "regular"}
    for name, kind in expected.items():
        if name not in columns or columns[name][1] != kind:
            raise SchemaError(f"{keyspace}.{table} is not a Thrift-style table "
                              f"(key, column1, value): columns are {sorted(columns)}")
    extra = sorted(set(columns) - set(expected))
    if extra:
        raise SchemaError(f"{keyspace}.{table} has extra columns {extra} the engine would not copy")
    layout = Layout(columns["key"][0], columns["column1"][0], columns["value"][0])
    for name, cql_type in (("key", layout.key_type), ("column1", layout.column_type),
                           ("value", layout.value_type)):
        if cql_type not in _SUPPORTED:
            raise SchemaError(f"{keyspace}.{table}.{name} has type {cql_type}; "
                              f"supported: {', '.join(sorted(_SUPPORTED))}")
    return layout


def default_layout(spec: TableSpec) -> Layout:
    return Layout(spec.key_type, spec.column_type, spec.value_type)


def ensure_keyspace(session: Session, keyspace: str) -> None:
    if keyspace_exists(session, keyspace):
        return
    nodes = len(session.cluster.metadata.all_hosts()) or 1
    replication = min(3, nodes)
    session.execute(
        f'CREATE KEYSPACE IF NOT EXISTS "{keyspace}" WITH replication = '
        f"{{'class': 'SimpleStrategy', 'replication_factor': '{replication}'}}")


def ensure_table(session: Session, keyspace: str, table: str, layout: Layout) -> Layout:
    """Create the table with `layout` when absent; return the table's actual layout."""
    existing = table_layout(session, keyspace, table)
    if existing is not None:
        return existing
    ensure_keyspace(session, keyspace)
    session.execute(
        f'CREATE TABLE IF NOT EXISTS "{keyspace}"."{table}" ('
        f"key {layout.key_type}, column1 {layout.column_type}, value {layout.value_type}, "
        "PRIMARY KEY (key, column1)) WITH CLUSTERING ORDER BY (column1 ASC)")
    created = table_layout(session, keyspace, table)
    if created is None:
        raise SchemaError(f"{keyspace}.{table} still absent after CREATE TABLE")
    return created


def check_partitioner(session: Session, side: str) -> None:
    partitioner = session.cluster.metadata.partitioner or ""
    if not partitioner.endswith("Murmur3Partitioner"):
        raise SchemaError(f"the {side} cluster uses {partitioner or 'an unknown partitioner'}; "
                          "token-range slicing needs Murmur3Partitioner")
