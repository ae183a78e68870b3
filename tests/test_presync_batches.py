"""pre-sync's write path against real Cassandra: protocol v4 negotiated, partitions written in
big single-partition batches (several per partition) arrive exactly, each cell with its
source WRITETIME, and a cell without value is quarantined, never written."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from backends.cassandra.connection import CassandraSide, Connection, connect
from backends.cassandra.copy import CopyEngine
from backends.cassandra.registry import load_registry
from backends.cassandra.tables import Quarantine, SyncSettings, TableContext, replica_lookup
from backends.progress import MemoryCheckpoints, MemoryEvents
from tests import contrail_data as cd

BASE_TS = 1_700_000_000_000_000


@pytest.fixture
def sides(launcher) -> Iterator[tuple[Connection, Connection, str]]:  # type: ignore[no-untyped-def]
    eps = launcher.up(only=["cassandra-old", "cassandra-new"])
    tag = uuid.uuid4().hex[:6]
    o, n = f"bo{tag}", f"bn{tag}"
    old = connect(CassandraSide("old", (eps.cassandra_old.host,), eps.cassandra_old.port,
                                prefix=o, version="5.0.0"))
    new = connect(CassandraSide("new", (eps.cassandra_new.host,), eps.cassandra_new.port,
                                prefix=n, version="5.0.0"))
    cd.create_schema(old.session, o, tables={"config_db_uuid": ["obj_uuid_table"]})
    try:
        yield old, new, n
    finally:
        cd.drop_schema(old.session, o)
        cd.drop_schema(new.session, n)
        old.close()
        new.close()


def _old_insert(old: Connection):  # type: ignore[no-untyped-def]
    table = f'"{old.side.keyspace("config_db_uuid")}".obj_uuid_table'
    return old.session.prepare(f"INSERT INTO {table} (key, column1, value) VALUES (?, ?, ?) "
                               "USING TIMESTAMP ?")


def _presync(old: Connection, new: Connection):  # type: ignore[no-untyped-def]
    """pre-sync of config_db_uuid in 4 slices; the obj_uuid_table's report and the run's."""
    settings = SyncSettings(keyspaces=("config_db_uuid",), slices_per_table=4,
                            small_table_cells=0)
    report = CopyEngine(old, new, load_registry(), settings, checkpoints=MemoryCheckpoints(),
                        events=MemoryEvents()).run("pre-sync", phase="pre", fresh=True)
    return next(t for t in report.tables if t.table == "obj_uuid_table"), report


def _new_cells(new: Connection) -> dict[bytes, dict[bytes, tuple[str, int]]]:
    got: dict[bytes, dict[bytes, tuple[str, int]]] = {}
    for k, c, v, ts in new.session.execute(
            f'SELECT key, column1, value, WRITETIME(value) FROM '
            f'"{new.side.keyspace("config_db_uuid")}".obj_uuid_table'):
        got.setdefault(k, {})[c] = (v, ts)
    return got


def test_protocol_v4_is_negotiated(sides) -> None:  # type: ignore[no-untyped-def]
    old, new, _ = sides
    assert old.cluster.protocol_version == 4
    assert new.cluster.protocol_version == 4


def test_wide_partitions_copy_exactly_in_big_batches(sides) -> None:  # type: ignore[no-untyped-def]
    old, new, new_prefix = sides
    insert = _old_insert(old)
    expected: dict[bytes, dict[bytes, tuple[str, int]]] = {}
    # 3 partitions of 700 cells of ~300 bytes: each goes in several 250-cell / 32 KB batches
    for p in range(3):
        key = f"wide-{p}".encode()
        for i in range(700):
            column, value, ts = f"prop:c{i:04d}".encode(), f"{p}-{i}-" + "x" * 300, BASE_TS + i
            old.session.execute(insert, (key, column, value, ts))
            expected.setdefault(key, {})[column] = (value, ts)
    null_key = b"with-null"
    old.session.execute(insert, (null_key, b"prop:ok", "fine", BASE_TS))
    old.session.execute(insert, (null_key, b"prop:null", None, BASE_TS))
    expected[null_key] = {b"prop:ok": ("fine", BASE_TS)}

    # batches bounded by bytes here: several per partition
    assert SyncSettings.partition_batch_cells * 300 > SyncSettings.partition_batch_bytes
    uuid_report, report = _presync(old, new)
    assert uuid_report.status == "ok" and uuid_report.quarantined == 1
    assert uuid_report.cells == 3 * 700 + 1

    assert _new_cells(new) == expected
    rows = Quarantine(new, "check").rows()
    assert [(r["key"], r["column"]) for r in rows] == [("with-null", "prop:null")]
    assert new_prefix in report.quarantine_table


def test_small_partitions_share_batches_and_arrive_exactly(sides, launcher) -> None:  # type: ignore[no-untyped-def]
    """400 objects of 12 small cells (6 properties, 6 `children:` cells of value `null`, as
    Contrail's): several objects per request, every cell on new with its WRITETIME, and
    Cassandra logs no batch warning (5 KiB, counted its way, or 10 partitions) for them."""
    old, new, _ = sides
    insert = _old_insert(old)
    expected: dict[bytes, dict[bytes, tuple[str, int]]] = {}
    for p in range(400):
        key = str(uuid.UUID(int=p + 1)).encode()
        cells = [(f"prop:p{i}", f'"{p}-{i}-' + "v" * 40 + '"') for i in range(6)]
        cells += [(f"children:virtual_machine_interface:{uuid.UUID(int=p * 100 + i)}", "null")
                  for i in range(6)]
        for i, (name, value) in enumerate(cells):
            column, ts = name.encode(), BASE_TS + i
            old.session.execute(insert, (key, column, value, ts))
            expected.setdefault(key, {})[column] = (value, ts)
    log = launcher.service("cassandra-new").log_dir / "system.log"
    log_size = log.stat().st_size if log.exists() else 0

    t, _ = _presync(old, new)
    assert t.status == "ok" and t.cells == 400 * 12
    # one request per object before; now at least 2 objects share one on average
    assert 0 < t.write_requests <= 400 / 2, t.write_requests
    assert _new_cells(new) == expected
    with log.open("rb") as fh:
        fh.seek(log_size)
        tail = fh.read().decode(errors="replace")
    assert "Batch for" not in tail and "Unlogged batch covering" not in tail, tail[-2000:]


def test_replicas_come_from_the_new_clusters_token_map(sides) -> None:  # type: ignore[no-untyped-def]
    """One node: nothing to tell partitions apart, so the writer groups freely (None); asked
    anyway, the driver's token map names that node for every key."""
    old, new, _ = sides
    cd.create_schema(new.session, new.side.prefix, tables={"config_db_uuid": ["obj_uuid_table"]})
    reg = load_registry()
    ctx = TableContext(reg.table("config_db_uuid", "obj_uuid_table"), old, new,
                       reg.translator("5.0.0", "5.0.0", "config_db_uuid", "obj_uuid_table"),
                       SyncSettings(), Quarantine(new, "t"))
    assert ctx.new_replicas() is None
    replicas = replica_lookup(new.cluster, ctx.insert, ctx.enc_new_key)
    node = {host.endpoint for host in new.cluster.metadata.all_hosts()}
    assert len(node) == 1
    assert {replicas(str(uuid.uuid4())) for _ in range(20)} == {frozenset(node)}

    def token_map_unavailable(*_: object) -> list[object]:
        raise RuntimeError("token map being rebuilt")

    new.cluster.metadata.get_replicas = token_map_unavailable  # the driver's, for this case
    one, two = replicas("a"), replicas("b")
    assert one != two and one != replicas("a")  # unknown: each partition goes alone
