"""Snapshots in the original db_json_exim.py format: the streaming reader and writer, and
`issu db export|import` against the real Cassandra and ZooKeeper of the launcher."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from kazoo.client import KazooClient

from backends.cassandra.connection import CassandraSide, connect
from backends.cassandra.registry import load_registry
from backends.cassandra.tables import SyncSettings
from backends.cassandra.verify import Verifier
from backends.snapshot.format import SnapshotError
from backends.snapshot.reader import Cells, SnapshotReader, TableStart, Znode
from backends.snapshot.writer import open_snapshot
from backends.zookeeper.tree import persistent_digests, read_subtree
from issu_tui.cli import cli
from tests import contrail_data as cd
from tests.snapshot_original import original_export

BASE_TS = 1_700_000_000_000_000


# --------------------------------------------------------------------------- the format

def _write_sample(path: Path) -> None:
    with open_snapshot(path) as w:
        w.keyspace("config_db_uuid")
        w.table("obj_uuid_table")
        w.row("k1")
        w.cell("fq_name", '["default-domain", "p"]', 123)
        w.cell("prop:x\udcff", 'é\u2603 "quoted" \\ \U0001f600', 5)
        w.row("k2")
        w.cell("type", '"project"', 7)
        w.table("obj_shared_table")
        w.keyspace("useragent")
        w.znode("/id/virtual-networks/0000000001/", b'default-domain:p:vn\xff', tuple(range(11)))
        w.znode("/fq-name-to-uuid/", b"", ())


@pytest.mark.parametrize("name", ["snap.json", "snap.json.gz"])
def test_writer_output_is_the_original_document(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    _write_sample(path)
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:  # type: ignore[operator]
        document = json.loads(handle.read())
    assert document["cassandra"] == {
        "config_db_uuid": {
            "obj_uuid_table": {"k1": {"fq_name": ['["default-domain", "p"]', 123],
                                      "prop:x\udcff": ['é\u2603 "quoted" \\ \U0001f600', 5]},
                               "k2": {"type": ['"project"', 7]}},
            "obj_shared_table": {}},
        "useragent": {}}
    assert json.loads(document["zookeeper"]) == [
        ["/id/virtual-networks/0000000001/", ["default-domain:p:vn\udcff", list(range(11))]],
        ["/fq-name-to-uuid/", ["", []]]]
    events = list(SnapshotReader(path))
    cells = [(e.key, c) for e in events if isinstance(e, Cells) for c in e.cells]
    assert cells == [("k1", ("fq_name", '["default-domain", "p"]', 123)),
                     ("k1", ("prop:x\udcff", 'é\u2603 "quoted" \\ \U0001f600', 5)),
                     ("k2", ("type", '"project"', 7))]
    assert [(e.keyspace, e.table) for e in events if isinstance(e, TableStart)] == [
        ("config_db_uuid", "obj_uuid_table"), ("config_db_uuid", "obj_shared_table")]
    znodes = [e for e in events if isinstance(e, Znode)]
    assert znodes[0].data == b"default-domain:p:vn\xff" and znodes[0].stat == tuple(range(11))


def test_reader_streams_big_strings_across_chunks(tmp_path: Path) -> None:
    """Values and the ZooKeeper string far bigger than a read chunk, with escapes and
    surrogate pairs on every chunk boundary, as json.dumps writes them."""
    big = "v\U0001f600\"\\\n" * 40_000
    entries = [[f"/id/n{i}/", [big, [0] * 11]] for i in range(3)]
    document = {"cassandra": {"ks": {"cf": {"row": {"col": [big, 2**62]}}}},
                "zookeeper": json.dumps(entries)}
    path = tmp_path / "big.json"
    path.write_text(json.dumps(document))
    events = list(SnapshotReader(path))
    assert [c for e in events if isinstance(e, Cells) for c in e.cells] == [("col", big, 2**62)]
    assert [(z.path, z.data.decode()) for z in events if isinstance(z, Znode)] == [
        (f"/id/n{i}/", big) for i in range(3)]


@pytest.mark.parametrize("cut", [1, 40, 75, -20, -2])
def test_truncated_file_is_refused_with_its_position(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "snap.json"
    _write_sample(path)
    text = path.read_text()
    end = cut if cut > 0 else len(text) + cut
    path.write_text(text[:end])
    with pytest.raises(SnapshotError) as err:
        list(SnapshotReader(path))
    assert err.value.offset is not None and "truncated" in str(err.value)
    assert err.value.offset <= end


def test_corrupt_and_foreign_files_are_refused_naming_the_place(tmp_path: Path) -> None:
    cases = {
        "[1, 2]": ("offset 0", "expected an object"),
        '{"cassandra": {}}': ("", "no 'zookeeper'"),
        '{"cassandra": {"ks": {"cf": {"r": {"c": ["v", 1.5]}}}}, "zookeeper": "[]"}':
            ('cassandra["ks"]["cf"]["r"]["c"]', "fraction"),
        '{"cassandra": {"ks": {"cf": {"r": {"c": [3, 1]}}}}, "zookeeper": "[]"}':
            ('cassandra["ks"]["cf"]["r"]["c"]', "the column's value"),
        '{"cassandra": {}, "zookeeper": "[[\\"/a/\\", [\\"x\\", [1, 2}"}':
            ('zookeeper["/a/"]', "expected ',' or ']'"),
        '{"cassandra": {}, "zookeeper": "[]", "extra": 1}': ("extra", "unexpected key"),
        '{"cassandra": {}, "zookeeper": "[]"} trailing': ("offset 37", "after the end"),
    }
    for text, (where, what) in cases.items():
        path = tmp_path / "bad.json"
        path.write_text(text)
        with pytest.raises(SnapshotError) as err:
            list(SnapshotReader(path))
        assert where in str(err.value) and what in str(err.value), (text, str(err.value))
    gz = tmp_path / "cut.json.gz"
    raw = gzip.compress(json.dumps({"cassandra": {"k": {"t": {f"r{i}": {"c": ["v" * 50, i]}
                                                            for i in range(2000)}}},
                                    "zookeeper": "[]"}).encode())
    gz.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(SnapshotError, match="gzip stream ends before its end marker"):
        list(SnapshotReader(gz))
    gz.write_bytes(b"not gzip at all")
    with pytest.raises(SnapshotError, match="not a readable gzip stream"):
        list(SnapshotReader(gz))


def test_export_never_overwrites_and_leaves_no_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "snap.json"
    path.write_text("keep")
    with pytest.raises(FileExistsError), open_snapshot(path):
        pass
    assert path.read_text() == "keep"
    other = tmp_path / "failed.json.gz"
    with pytest.raises(RuntimeError), open_snapshot(other) as w:
        w.keyspace("ks")
        raise RuntimeError("the cluster went away")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap.json"]


# --------------------------------------------------------------------------- real services

ZK_TREE = {
    "fq-name-to-uuid/virtual_network:default-domain:p:vn-1": b"4a3b-uuid",
    "fq-name-to-uuid/project:default-domain:p": b"5c6d-uuid",
    "api-server/subnets/default-domain:p:vn-1:10.0.0.0/24/10.0.0.1": b"4a3b-uuid",
    "id/virtual-networks/0000000001": b"default-domain:p:vn-1",
    "id/security-groups/id/0000008000": b"default-domain:p:default",
    # an interior node holding data (the original would drop it; ours keeps it)
    "id/bgp/route-targets": b'{"start": 8000000}',
    "id/bgp/route-targets/0008000001": b"target:64512:8000001",
    # names of the original's ignore list: not in the snapshot, as with the original
    "api-server-election/lock-0001": b"host-1",
    "consumers/group-1": b"kafka",
}
IGNORED_FIRST = {"api-server-election", "consumers"}


def _seed_zk(zk: KazooClient, prefix: str) -> None:
    for rel, data in ZK_TREE.items():
        path = f"/{prefix}/{rel}"
        if zk.exists(path):
            zk.set(path, data)
        else:
            zk.create(path, data, makepath=True)


def _digests(zk: KazooClient, prefix: str) -> dict[str, str]:
    nodes = read_subtree(zk, f"/{prefix}") or {}
    return {rel: d for rel, d in persistent_digests(nodes).items()
            if rel and rel.split("/")[0] not in IGNORED_FIRST}


class Cluster:
    """One prefix on one of the launcher's Cassandra/ZooKeeper pairs (dropped afterwards)."""

    def __init__(self, eps, which: str, prefix: str) -> None:  # type: ignore[no-untyped-def]
        hp = eps.cassandra_old if which == "old" else eps.cassandra_new
        zk_ep = eps.zk_old if which == "old" else eps.zk_new
        self.prefix, self.cassandra_address, self.zk_address = prefix, hp.address, zk_ep.hosts
        self.conn = connect(CassandraSide(which, (hp.host,), hp.port, prefix=prefix))
        self.zk = KazooClient(hosts=zk_ep.hosts)
        self.zk.start(timeout=30)

    def args(self) -> list[str]:
        return ["--cassandra", self.cassandra_address, "--cassandra-prefix", self.prefix,
                "--zookeeper", self.zk_address, "--zk-prefix", self.prefix]

    def close(self) -> None:
        cd.drop_schema(self.conn.session, self.prefix)
        self.zk.delete(f"/{self.prefix}", recursive=True)
        self.zk.stop()
        self.zk.close()
        self.conn.close()


@pytest.fixture
def clusters(services) -> Iterator[tuple[Cluster, Cluster]]:  # type: ignore[no-untyped-def]
    tag = uuid.uuid4().hex[:6]
    source = Cluster(services, "old", f"s{tag}")
    target = Cluster(services, "new", f"t{tag}")
    try:
        yield source, target
    finally:
        source.close()
        target.close()


def _seed(source: Cluster) -> cd.Dataset:
    cd.create_schema(source.conn.session, source.prefix)
    ds = cd.generate(2, 4, 2)

    def writetime(table: cd.Table, key: str, column: str) -> int:  # distinct per cell
        return BASE_TS + (hash((table, key, column)) % 1_000_000)

    cd.write(source.conn.session, source.prefix, ds, writetime)
    _seed_zk(source.zk, source.prefix)
    return ds


def _verify(source: Cluster, target: Cluster):  # type: ignore[no-untyped-def]
    settings = SyncSettings(slices_per_table=4, concurrency=2, small_table_cells=0)
    return Verifier(source.conn, target.conn, load_registry(), settings,
                    recheck_delay_s=0.2).run()


def _run(args: list[str]):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_round_trip_through_export_and_import_is_exact(clusters, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source, target = clusters
    ds = _seed(source)
    snapshot = tmp_path / "prod.json.gz"
    result = _run(["db", "export", str(snapshot), *source.args()])
    assert result.exit_code == 0, result.output
    assert f"{ds.cell_count():,} cells" in result.output

    result = _run(["db", "import", str(snapshot), *target.args()])
    assert result.exit_code == 0, result.output
    report = _verify(source, target)
    assert report.ok, report.as_dict()
    assert report.totals()["cells_compared"] == ds.cell_count()
    assert sum(t.differences for t in report.tables) == 0
    assert _digests(target.zk, target.prefix) == _digests(source.zk, source.prefix)
    assert target.zk.exists(f"/{target.prefix}/api-server-election") is None

    # a second import into the now full target is refused, writing nothing
    result = _run(["db", "import", str(snapshot), *target.args()])
    assert result.exit_code == 1
    assert "refused, the target is not empty" in result.output
    assert f"{target.prefix}_config_db_uuid.obj_uuid_table already has rows" in result.output


def test_snapshot_of_the_original_tool_imports_with_writetimes(clusters, tmp_path: Path  # type: ignore[no-untyped-def]
                                                               ) -> None:
    source, target = clusters
    _seed(source)
    snapshot = tmp_path / "db.json.gz"
    document = original_export(snapshot, source.conn.session, source.prefix, source.zk,
                               source.prefix)
    paths = [p for p, _ in json.loads(document["zookeeper"])]
    assert f"{source.prefix}/id/virtual-networks/0000000001/" in paths
    assert not any("/api-server-election/" in p or "/consumers/" in p for p in paths)

    result = _run(["db", "import", str(snapshot), *target.args()])
    assert result.exit_code == 0, result.output
    assert _verify(source, target).ok
    # the original lists leaves only: the interior node's data does not travel, its children do
    expected = {rel: d for rel, d in _digests(source.zk, source.prefix).items()
                if rel != "id/bgp/route-targets"}
    got = _digests(target.zk, target.prefix)
    assert target.zk.get(f"/{target.prefix}/id/bgp/route-targets")[0] == b""
    assert {k: v for k, v in got.items() if k != "id/bgp/route-targets"} == expected


def test_truncated_snapshot_is_refused_with_its_position_nothing_written(  # type: ignore[no-untyped-def]
        clusters, tmp_path: Path) -> None:
    source, target = clusters
    _seed(source)
    snapshot = tmp_path / "prod.json"
    assert _run(["db", "export", str(snapshot), *source.args()]).exit_code == 0
    text = snapshot.read_bytes()
    cut = tmp_path / "cut.json"
    cut.write_bytes(text[: len(text) * 2 // 3])
    result = _run(["db", "import", str(cut), *target.args()])
    assert result.exit_code == 2
    assert f"{cut}, offset" in result.output and "truncated" in result.output
    assert not target.conn.session.execute(
        "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = %s",
        (f"{target.prefix}_config_db_uuid",)).one()
    assert target.zk.exists(f"/{target.prefix}") is None


def test_import_failing_midway_removes_what_it_created(clusters, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source, target = clusters
    _seed(source)
    snapshot = tmp_path / "prod.json"
    assert _run(["db", "export", str(snapshot), *source.args()]).exit_code == 0
    # a table the engine cannot write, met after several tables were imported
    session = target.conn.session
    ks = f"{target.prefix}_useragent"
    session.execute(f'CREATE KEYSPACE "{ks}" WITH replication = '
                    "{'class': 'SimpleStrategy', 'replication_factor': 1}")
    session.execute(f'CREATE TABLE "{ks}".useragent_keyval_table (key int PRIMARY KEY, v text)')
    result = _run(["db", "import", str(snapshot), *target.args()])
    assert result.exit_code == 1 and "cannot hold the snapshot" in result.output
    # forced past the check, the import fails there and takes back what it wrote
    result = _run(["db", "import", "--force", str(snapshot), *target.args()])
    assert result.exit_code == 1
    assert "removed again" in result.output and "dropped keyspace" in result.output
    keyspaces = {r[0] for r in session.execute("SELECT keyspace_name FROM system_schema.keyspaces")}
    assert sorted(k for k in keyspaces if k.startswith(target.prefix)) == [ks]
    assert target.zk.exists(f"/{target.prefix}") is None


def test_db_cli_checks_the_file_and_refuses_overwriting(tmp_path: Path) -> None:
    """Without services: `import --check` reads the file through; a bad file is exit 2 with
    its position; export never writes over an existing file."""
    path = tmp_path / "snap.json.gz"
    _write_sample(path)
    result = _run(["db", "import", "--check", str(path)])
    assert result.exit_code == 0, result.output
    assert "3 cells in 2 rows, 2 znodes" in result.output
    assert "config_db_uuid.obj_uuid_table: 3 cells" in result.output
    bad = tmp_path / "bad.json"
    text = '{"cassandra": {"ks": {"cf": {"r": {"c": ["v"'
    bad.write_text(text)
    result = _run(["db", "import", "--check", str(bad)])
    assert result.exit_code == 2
    assert f'{bad}, offset {len(text)}, at cassandra["ks"]["cf"]["r"]["c"]' in result.output
    assert "truncated" in result.output
    result = _run(["db", "export", str(path), "--cassandra", "127.0.0.1",
                   "--zookeeper", "127.0.0.1:2181"])
    assert result.exit_code == 2 and "exists; not overwritten" in result.output


def test_export_walks_the_tables_the_keyspaces_really_have(clusters, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """As db_json_exim.py: every column family the keyspace holds, whatever the registry
    says: a registered table the cluster lacks is no error, an unregistered one travels."""
    source, target = clusters
    tables = {ks: list(names) for ks, names in cd.CONTRAIL_TABLES.items()}
    tables["svc_monitor_keyspace"].remove("healthmonitor_table")
    tables["svc_monitor_keyspace"].append("site_local_table")  # not in the registry
    del tables["dm_keyspace"]
    cd.create_schema(source.conn.session, source.prefix, tables=tables)
    session = source.conn.session
    site = f'"{source.prefix}_svc_monitor_keyspace"."site_local_table"'
    session.execute(f"INSERT INTO {site} (key, column1, value) VALUES "
                    "(textAsBlob('lb-7'), textAsBlob('weight'), '3') USING TIMESTAMP 42")
    snapshot = tmp_path / "prod.json"
    result = _run(["db", "export", str(snapshot), *source.args()])
    assert result.exit_code == 0, result.output
    assert f"keyspace {source.prefix}_dm_keyspace absent" in result.output
    listed = {(e.keyspace, e.table) for e in SnapshotReader(snapshot) if isinstance(e, TableStart)}
    assert ("svc_monitor_keyspace", "site_local_table") in listed
    assert ("svc_monitor_keyspace", "healthmonitor_table") not in listed

    result = _run(["db", "import", str(snapshot), *target.args()])
    assert result.exit_code == 0, result.output
    got = target.conn.session.execute(
        f'SELECT blobAsText(key), blobAsText(column1), value, WRITETIME(value) '
        f'FROM "{target.prefix}_svc_monitor_keyspace"."site_local_table"').all()
    assert [tuple(r) for r in got] == [("lb-7", "weight", "3", 42)]
