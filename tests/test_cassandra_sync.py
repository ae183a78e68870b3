"""pre-sync, post-sync, replicator and verify against real Cassandra (old and new clusters
of the launcher; the shared topology puts both on one cluster with odb/ndb prefixes)."""

from __future__ import annotations

import functools
import json
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cassandra import ReadTimeout
from click.testing import CliRunner

from backends.cassandra.connection import CassandraSide, connect, connect_pair
from backends.cassandra.copy import CopyEngine, CopyReport
from backends.cassandra.registry import load_registry
from backends.cassandra.replicator import Replicator
from backends.cassandra.slice_copy import (
    delete_leftovers,
    fill,
    prune_renamed_partitions,
    replace_rows,
)
from backends.cassandra.slice_processes import CopyWorkerSpec
from backends.cassandra.tables import Quarantine, SyncSettings, TableContext
from backends.cassandra.translate import DEFAULT_PERMS2
from backends.cassandra.verify import Verifier, VerifyReport
from backends.progress import MemoryCheckpoints, MemoryEvents
from tests import contrail_data as cd

CONFIG_DB = ("config_db_uuid",)
BASE_TS = 1_700_000_000_000_000


@pytest.fixture(scope="module")
def cassandra(launcher):  # type: ignore[no-untyped-def]
    return launcher.up(only=["cassandra-old", "cassandra-new"])


class Pair:
    """Old and new connections of one topology with unique prefixes (dropped afterwards)."""

    def __init__(self, eps, topology: str, old_version: str = "4.1.0",  # type: ignore[no-untyped-def]
                 new_version: str = "5.0.0", *, unprefixed: bool = False) -> None:
        tag = uuid.uuid4().hex[:6]
        shared = topology == "shared"
        old_hp = eps.cassandra_old
        new_hp = eps.cassandra_old if shared else eps.cassandra_new
        if unprefixed and not shared:
            self.old_prefix, self.new_prefix = "", ""
        else:
            self.old_prefix, self.new_prefix = f"o{tag}", f"n{tag}"
        self.old_side = CassandraSide("old", (old_hp.host,), old_hp.port,
                                      prefix=self.old_prefix, version=old_version)
        self.new_side = CassandraSide("new", (new_hp.host,), new_hp.port,
                                      prefix=self.new_prefix, version=new_version)
        self.old = connect(self.old_side)
        self.new = connect(self.new_side)
        for conn, prefix in ((self.old, self.old_prefix), (self.new, self.new_prefix)):
            if not prefix:
                cd.drop_schema(conn.session, "")

    def close(self) -> None:
        cd.drop_schema(self.old.session, self.old_prefix)
        cd.drop_schema(self.new.session, self.new_prefix)
        self.old.close()
        self.new.close()

    def io(self, side: str, table: cd.Table) -> cd.TableIO:
        conn, prefix = ((self.old, self.old_prefix) if side == "old"
                        else (self.new, self.new_prefix))
        return cd.TableIO(conn.session, prefix, table)

    def schema(self, keyspaces: tuple[str, ...] = CONFIG_DB) -> None:
        self.keyspaces = keyspaces
        cd.create_schema(self.old.session, self.old_prefix,
                         tables={k: cd.CONTRAIL_TABLES[k] for k in keyspaces})

    def write(self, ds: cd.Dataset, writetime: int = BASE_TS) -> None:
        cd.write(self.old.session, self.old_prefix, ds, writetime, keyspaces=self.keyspaces)


def engine(pair: Pair, *, keyspaces: tuple[str, ...] | None = CONFIG_DB, slices: int = 8,
           checkpoints: object | None = None, processes: int = 1,
           **settings: object) -> CopyEngine:
    """`processes` > 1: the slices are copied by that many copy processes (spawned)."""
    settings.setdefault("small_table_cells", 0)  # slice even the small test tables
    s = SyncSettings(slices_per_table=slices, concurrency=4, keyspaces=keyspaces,
                     **settings)  # type: ignore[arg-type]
    spec = CopyWorkerSpec(functools.partial(connect_pair, pair.old_side, pair.new_side),
                          processes=processes) if processes > 1 else None
    return CopyEngine(pair.old, pair.new, load_registry(), s,
                      checkpoints=checkpoints or MemoryCheckpoints(),  # type: ignore[arg-type]
                      events=MemoryEvents(), processes=spec)


def presync(pair: Pair, **kw: object) -> CopyReport:
    fresh = bool(kw.pop("fresh", True))
    return engine(pair, **kw).run("pre-sync", phase="pre", fresh=fresh)  # type: ignore[arg-type]



def verify(pair: Pair, keyspaces: tuple[str, ...] | None = CONFIG_DB,
           **kw: object) -> VerifyReport:
    s = SyncSettings(slices_per_table=8, concurrency=4, keyspaces=keyspaces,
                     small_table_cells=0)
    return Verifier(pair.old, pair.new, load_registry(), s, recheck_delay_s=0.2,
                    **kw).run()  # type: ignore[arg-type]


@pytest.fixture(params=["separate", "shared"])
def pair(request, cassandra) -> Iterator[Pair]:  # type: ignore[no-untyped-def]
    p = Pair(cassandra, request.param)
    yield p
    p.close()


@pytest.fixture
def separate(cassandra) -> Iterator[Pair]:  # type: ignore[no-untyped-def]
    p = Pair(cassandra, "separate")
    yield p
    p.close()


def _table_report(report: CopyReport, table: str):  # type: ignore[no-untyped-def]
    return next(t for t in report.tables if t.table == table)


# --------------------------------------------------------------------------- copy + verify

def test_presync_under_concurrent_changes_then_verify_is_clean(pair: Pair) -> None:
    """Every Contrail keyspace, 4.1 -> 5.0, while a writer creates, updates and deletes
    objects on old; a catch-up pass (run-sync's job) then leaves zero differences."""
    pair.schema(tuple(cd.CONTRAIL_TABLES))
    ds = cd.generate(3, 6, 2)
    pair.write(ds)
    uuid_old = pair.io("old", cd.UUID_TABLE)
    fq_old = pair.io("old", cd.FQ_TABLE)
    rng = random.Random(3)
    stop = threading.Event()
    changed: dict[str, list[str]] = {"updated": [], "deleted": [], "created": []}
    vmis = ds.uuids_of("virtual-machine-interface")

    def mutate() -> None:
        n = 0
        while not stop.is_set() or n < 20:
            n += 1
            action = n % 3
            if action == 0 and vmis:
                victim = vmis.pop(rng.randrange(len(vmis)))
                uuid_old.delete_partition(victim)
                fqn = json.loads(ds.tables[cd.UUID_TABLE][victim]["fq_name"])
                fq_old.delete("virtual-machine-interface", [":".join(fqn) + ":" + victim])
                changed["deleted"].append(victim)
            elif action == 1:
                target = rng.choice(ds.uuids_of("virtual-network"))
                uuid_old.write(target, {"prop:display_name": json.dumps(f"renamed-{n}")})
                changed["updated"].append(target)
            else:
                extra = cd.Dataset()
                new_uuid = cd.add_object(extra, "virtual-network",
                                         ["default-domain", "project-0", f"late-{n}"])
                cd.write(pair.old.session, pair.old_prefix, extra, keyspaces=CONFIG_DB)
                changed["created"].append(new_uuid)
            time.sleep(0.01)

    writer = threading.Thread(target=mutate)
    writer.start()
    try:  # in two copy processes, as `issu sync pre` by default
        first_engine = engine(pair, keyspaces=None, slices=16, processes=2)
        first = first_engine.run("pre-sync", phase="pre", fresh=True)
    finally:
        stop.set()
        writer.join()
    assert first.ok, first.as_dict()
    started = [m for _, m, _ in first_engine.events.events  # type: ignore[union-attr]
               if "copy processes" in m]
    assert started and started[0].startswith("pre-sync: 2 copy processes"), started
    assert {t.status for t in first.tables} == {"ok"}
    assert _table_report(first, "obj_uuid_table").new_was_empty
    second = presync(pair, keyspaces=None, slices=16)
    assert second.ok
    report = verify(pair, keyspaces=None)
    assert report.ok, report.as_dict()
    assert report.totals()["missing"] == report.totals()["extra"] == 0
    # the writer deleted VMIs (their partition and fq-name entry) for as long as the copy ran
    gone = sum(len(ds.tables[cd.UUID_TABLE][v]) + 1 for v in changed["deleted"])
    assert report.totals()["cells_compared"] >= ds.cell_count() - gone

    new_uuid_rows = pair.io("new", cd.UUID_TABLE).read()
    for gone in changed["deleted"]:
        assert gone not in new_uuid_rows
    for created in changed["created"]:
        assert json.loads(new_uuid_rows[created]["type"][0]) == "virtual_network"
    for updated in changed["updated"]:
        old_value, old_ts = uuid_old.read_partition(updated)["prop:display_name"]
        assert new_uuid_rows[updated]["prop:display_name"] == (old_value, old_ts)
    # every other keyspace arrived unchanged, writetimes included
    rt = ("to_bgp_keyspace", "route_target_table")
    assert pair.io("new", rt).read() == pair.io("old", rt).read()


def test_replace_not_merge_deletes_propagate(pair: Pair) -> None:
    pair.schema()
    ds = cd.generate(1, 4, 2)
    pair.write(ds)
    first = presync(pair)
    # a first copy onto an empty new side does not read new; the second one must
    assert first.ok and _table_report(first, "obj_uuid_table").new_was_empty
    uuid_old, uuid_new = pair.io("old", cd.UUID_TABLE), pair.io("new", cd.UUID_TABLE)
    fq_old, fq_new = pair.io("old", cd.FQ_TABLE), pair.io("new", cd.FQ_TABLE)
    vn = ds.uuids_of("virtual-network")[0]
    vmi = ds.uuids_of("virtual-machine-interface")[0]
    vmi_fq = ":".join(json.loads(ds.tables[cd.UUID_TABLE][vmi]["fq_name"])) + ":" + vmi
    uuid_old.delete(vn, ["prop:is_shared"])                 # a property deleted on old
    uuid_old.delete_partition(vmi)                          # an object deleted on old
    fq_old.delete("virtual-machine-interface", [vmi_fq])
    uuid_new.write(vn, {"prop:stale": '"x"'}, BASE_TS + 5)  # cells old never had
    stray = str(uuid.uuid4())
    uuid_new.write(stray, {"type": '"project"'}, BASE_TS + 5)
    fq_new.write("stray_type", {"a:b": "null"}, BASE_TS + 5)

    report = presync(pair)
    assert report.ok and not _table_report(report, "obj_uuid_table").new_was_empty
    assert _table_report(report, "obj_uuid_table").deleted >= 3
    new_vn = uuid_new.read_partition(vn)
    assert "prop:is_shared" not in new_vn and "prop:stale" not in new_vn
    assert "prop:display_name" in new_vn
    assert uuid_new.read_partition(vmi) == {} and uuid_new.read_partition(stray) == {}
    assert vmi_fq not in fq_new.read_partition("virtual_machine_interface")
    assert fq_new.read_partition("stray_type") == {}
    assert verify(pair).ok


def test_delete_never_beats_a_newer_write(separate: Pair) -> None:
    """A cell seen on new before the copy, then rewritten (run-sync) before the delete:
    the delete carries the writetime first seen, so the newer value survives."""
    pair = separate
    pair.schema()
    pair.write(cd.generate(1, 1, 1))
    assert presync(pair).ok
    uuid_new = pair.io("new", cd.UUID_TABLE)
    key = str(uuid.uuid4())
    uuid_new.write(key, {"prop:a": '"old"'}, BASE_TS + 1)
    reg = load_registry()
    spec = reg.table("config_db_uuid", "obj_uuid_table")
    ctx = TableContext(spec, pair.old, pair.new, reg.translator("4.1.0", "5.0.0", *CONFIG_DB,
                                                                 "obj_uuid_table"),
                       SyncSettings(), Quarantine(pair.new, "t"))
    with ctx.spill_map() as existing:
        fill(existing, ctx.read_new_meta(ctx.new_partition_meta, (ctx.enc_new_key(key),)))
        uuid_new.write(key, {"prop:a": '"newer"'}, BASE_TS + 2)  # lands meanwhile
        writer = ctx.writer()
        replace_rows(ctx, iter(()), existing, writer)
        assert delete_leftovers(existing, writer) == 1
        writer.close()
    assert uuid_new.read_partition(key) == {"prop:a": ('"newer"', BASE_TS + 2)}


def test_read_failure_aborts_slice_and_deletes_nothing(separate: Pair,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    pair = separate
    pair.schema()
    ds = cd.generate(1, 3, 1)
    pair.write(ds)
    first = presync(pair)
    # a first copy onto an empty new side does not read new; the second one must
    assert first.ok and _table_report(first, "obj_uuid_table").new_was_empty
    uuid_old, uuid_new = pair.io("old", cd.UUID_TABLE), pair.io("new", cd.UUID_TABLE)
    vn = ds.uuids_of("virtual-network")[0]
    uuid_old.delete(vn, ["prop:display_name"])
    extra = str(uuid.uuid4())
    uuid_new.write(extra, {"type": '"project"'}, BASE_TS)
    real_read_old = TableContext.read_old

    def failing_read_old(self, stmt, args):  # type: ignore[no-untyped-def]
        for n, row in enumerate(real_read_old(self, stmt, args)):
            if n == 5 and self.spec.name == "obj_uuid_table":
                raise ReadTimeout("injected: old replica did not answer in time")
            yield row

    monkeypatch.setattr(TableContext, "read_old", failing_read_old)
    report = presync(pair, slices=1)
    t = _table_report(report, "obj_uuid_table")
    assert not report.ok and t.status == "failed" and t.slices_failed == 1
    assert "nothing deleted" in t.errors[0] and "obj_uuid_table" in t.errors[0]
    assert t.deleted == 0
    assert uuid_new.read_partition(extra) != {}
    assert "prop:display_name" in uuid_new.read_partition(vn)
    monkeypatch.setattr(TableContext, "read_old", real_read_old)
    assert presync(pair, slices=1).ok
    assert uuid_new.read_partition(extra) == {}
    assert "prop:display_name" not in uuid_new.read_partition(vn)


def test_missing_keyspace_on_old_is_skipped_with_warning_not_emptied(separate: Pair) -> None:
    pair = separate
    pair.schema(("config_db_uuid",))  # no dm_keyspace on old
    cd.create_schema(pair.new.session, pair.new_prefix,
                     tables={"dm_keyspace": ["dm_pr_asn_table"]})
    pair.io("new", ("dm_keyspace", "dm_pr_asn_table")).write("pr-9", {"asn": "1"})
    report = presync(pair, keyspaces=("config_db_uuid", "dm_keyspace"))
    dm = [t for t in report.tables if t.keyspace == "dm_keyspace"]
    assert dm and all(t.status == "skipped" and "absent on old" in t.note for t in dm)
    assert report.ok
    assert pair.io("new", ("dm_keyspace", "dm_pr_asn_table")).read_partition("pr-9") != {}


def test_same_cluster_same_prefix_is_refused_before_anything(  # type: ignore[no-untyped-def]
        cassandra, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A1: new pointing at old's own cluster and keyspaces (another host spelling, same
    prefix) is refused by every command before it reads or writes; different prefixes on one
    cluster still work."""
    from backends.cassandra.identity import SameClusterError
    from issu_tui.sync_cli import legacy_post_sync, legacy_pre_sync

    pair = Pair(cassandra, "shared")
    try:
        pair.schema()
        pair.write(cd.generate(1, 2, 1))
        before = {(k, t): pair.io("old", (k, t)).read() for k in CONFIG_DB
                  for t in cd.CONTRAIL_TABLES[k]}
        hp = cassandra.cassandra_old
        twin_side = CassandraSide("new", (hp.host,), hp.port, prefix=pair.old_prefix,
                                  version="5.0.0")
        with connect(twin_side) as twin:
            twin_pair = Pair.__new__(Pair)
            twin_pair.old, twin_pair.new = pair.old, twin
            with pytest.raises(SameClusterError, match=f"{pair.old_prefix}_config_db_uuid"):
                presync(twin_pair)
            with pytest.raises(SameClusterError, match=f"{pair.old_prefix}_config_db_uuid"):
                engine(twin_pair).run("post-sync", phase="post")
            with pytest.raises(SameClusterError, match=f"{pair.old_prefix}_config_db_uuid"):
                verify(twin_pair)
            with pytest.raises(SameClusterError, match=f"{pair.old_prefix}_config_db_uuid"):
                Replicator(pair.old, twin, load_registry())
        # issu.toml with equal host strings and prefixes is refused by the config loader;
        # the original options override the file after that check
        conf = tmp_path / "issu.toml"
        conf.write_text(_toml(pair, tmp_path / "state"))
        for entry in (legacy_pre_sync, legacy_post_sync):
            with pytest.raises(SystemExit) as exit_info:
                entry(["-c", str(conf), "--ndb_prefix", pair.old_prefix])
            assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "same cluster" in err and f"{pair.old_prefix}_config_db_uuid" in err
        after = {(k, t): pair.io("old", (k, t)).read() for k in CONFIG_DB
                 for t in cd.CONTRAIL_TABLES[k]}
        assert after == before  # values and writetimes untouched
        keyspaces = {r[0] for r in pair.old.session.execute(
            "SELECT keyspace_name FROM system_schema.keyspaces")}
        assert f"{pair.old_prefix}_issu_quarantine" not in keyspaces
        # same cluster, different prefixes: allowed
        assert presync(pair).ok
        assert verify(pair).ok
    finally:
        pair.close()


def test_verify_fails_on_keyspace_absent_on_old_unless_excluded(separate: Pair,
                                                                tmp_path: Path) -> None:
    """A3b: a keyspace (or table) absent on old is not "equal": verify lists it and fails,
    unless the operator leaves it out (-k) or allows its absence (--allow-missing)."""
    from issu_tui.sync_cli import sync

    pair = separate
    pair.schema(("config_db_uuid",))  # no dm_keyspace on old
    pair.write(cd.generate(1, 2, 1))
    assert presync(pair).ok
    both = ("config_db_uuid", "dm_keyspace")
    report = verify(pair, keyspaces=both)
    assert not report.ok
    dm_tables = [f"dm_keyspace.{t}" for t in cd.CONTRAIL_TABLES["dm_keyspace"]]
    assert sorted(report.unverified) == sorted(dm_tables)
    assert report.as_dict()["unverified"] == report.unverified
    assert verify(pair, keyspaces=both, allow_missing=("dm_keyspace",)).ok
    assert verify(pair, keyspaces=CONFIG_DB).ok
    conf = tmp_path / "issu.toml"
    conf.write_text(_toml(pair, tmp_path / "state"))
    runner = CliRunner()
    args = ["verify", "-c", str(conf), "-k", "config_db_uuid", "-k", "dm_keyspace",
            "--recheck-delay", "0"]
    result = runner.invoke(sync, args)
    assert result.exit_code == 1, result.output
    assert "absent on old, not verified: dm_keyspace." in result.output
    result = runner.invoke(sync, [*args, "--allow-missing", "dm_keyspace"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(sync, [*args, "--allow-missing", "no_such_keyspace"])
    assert result.exit_code == 2 and "no_such_keyspace" in result.output
    # a missing config_db_uuid (e.g. a wrong old prefix) fails verify
    conf.write_text(_toml(pair, tmp_path / "state").replace(
        f'prefix = "{pair.old_prefix}"', 'prefix = "wrongprefix"'))
    result = runner.invoke(sync, ["verify", "-c", str(conf), "-k", "config_db_uuid", "--json"])
    assert result.exit_code == 1, result.output
    data = json.loads(result.output[result.output.index("{"):])
    assert not data["ok"] and "config_db_uuid.obj_uuid_table" in data["unverified"]


# --------------------------------------------------------------------------- translation

def test_translation_4_1_to_5_0_rows_and_writetimes_on_new(separate: Pair) -> None:
    pair = separate
    pair.schema()
    ds = cd.generate(1, 3, 1, without_perms2_every=3)
    per_cell_ts = {}

    def ts(table: cd.Table, key: str, column: str) -> int:
        value = BASE_TS + random.Random(f"{key}{column}").randrange(1_000_000)
        per_cell_ts[(table, key, column)] = value
        return value

    cd.write(pair.old.session, pair.old_prefix, ds, ts, keyspaces=CONFIG_DB)
    assert presync(pair).ok
    new_rows = pair.io("new", cd.UUID_TABLE).read()
    no_perms = next(u for u in ds.uuids_of("virtual-network")
                    if "prop:perms2" not in ds.tables[cd.UUID_TABLE][u])
    vn = new_rows[no_perms]
    src = ds.tables[cd.UUID_TABLE][no_perms]
    assert json.loads(vn["type"][0]) == "virtual_network"
    assert vn["type"][1] == per_cell_ts[(cd.UUID_TABLE, no_perms, "type")]
    assert "prop:virtual_network_network_id" not in vn
    assert vn["prop:virtual_network_id"] == (
        src["prop:virtual_network_network_id"],
        per_cell_ts[(cd.UUID_TABLE, no_perms, "prop:virtual_network_network_id")])
    assert json.loads(vn["prop:perms2"][0]) == DEFAULT_PERMS2
    # A5: the defaulted perms2 takes the type cell's writetime (stable for the object's life)
    assert vn["prop:perms2"][1] == per_cell_ts[(cd.UUID_TABLE, no_perms, "type")]
    links = [c for c in vn if c.split(":")[0] in ("ref", "backref", "parent", "children")]
    assert links and all("-" not in c.split(":")[1] for c in links)
    assert any(c.startswith("backref:virtual_machine_interface:") for c in vn)
    fq_new = pair.io("new", cd.FQ_TABLE).read()
    assert "virtual-network" not in fq_new and "virtual_network" in fq_new
    assert fq_new["virtual_network"] == {
        c: (v, per_cell_ts[(cd.FQ_TABLE, "virtual-network", c)])
        for c, v in ds.tables[cd.FQ_TABLE]["virtual-network"].items()}
    # untranslated tables keep every cell and writetime exactly
    assert pair.io("new", cd.SHARED_TABLE).read() == pair.io("old", cd.SHARED_TABLE).read()


def test_poisoned_row_is_quarantined_and_reported(separate: Pair) -> None:
    pair = separate
    pair.schema()
    ds = cd.generate(1, 2, 1)
    vn = ds.uuids_of("virtual-network")[0]
    ds.tables[cd.UUID_TABLE][vn]["prop:broken"] = "{not json"
    pair.write(ds)
    report = presync(pair)
    t = _table_report(report, "obj_uuid_table")
    assert t.quarantined == 1 and report.totals()["quarantined"] == 1
    assert report.ok  # the run goes on
    rows = Quarantine(pair.new, "x").rows()
    assert [(r["key"], r["column"]) for r in rows] == [(vn, "prop:broken")]
    assert "not JSON" in str(rows[0]["reason"])
    copied = pair.io("new", cd.UUID_TABLE).read_partition(vn)
    assert "prop:broken" not in copied and "fq_name" in copied
    v = verify(pair)
    assert v.ok and v.totals()["quarantined"] == 1


# --------------------------------------------------------------------------- wide partition

def test_wide_partition_copies_completely_with_spilling(separate: Pair) -> None:
    pair = separate
    pair.schema()
    ds = cd.Dataset()
    width = 200_000
    cd.wide_fq_partition(ds, "virtual-machine-interface", width)
    pair.write(ds)
    settings = {"page_size": 2000, "spill_threshold": 20_000, "batch_cells": 100}
    report = presync(pair, **settings)
    assert report.ok
    fq_new = pair.io("new", cd.FQ_TABLE)
    assert fq_new.count("virtual_machine_interface") == width
    # second pass: new already holds 200k cells (the map spills to disk); 10 deleted on old
    cols = sorted(ds.tables[cd.FQ_TABLE]["virtual-machine-interface"])
    pair.io("old", cd.FQ_TABLE).delete("virtual-machine-interface", cols[:10])
    report = presync(pair, **settings)
    assert report.ok and _table_report(report, "obj_fq_name_table").deleted == 10
    assert fq_new.count("virtual_machine_interface") == width - 10


# --------------------------------------------------------------------------- resume

def _toml(pair: Pair, state_dir: Path) -> str:
    o, n = pair.old_side, pair.new_side
    return f"""
state_dir = "{state_dir}"
[old]
name = "old"
version = "{o.version}"
[old.cassandra]
hosts = ["{o.hosts[0]}"]
port = {o.port}
prefix = "{o.prefix}"
[old.zookeeper]
hosts = ["127.0.0.1:2181"]
[old.rabbit]
hosts = ["127.0.0.1"]
password = "guest"
[new]
name = "new"
version = "{n.version}"
[new.cassandra]
hosts = ["{n.hosts[0]}"]
port = {n.port}
prefix = "{n.prefix}"
[new.zookeeper]
hosts = ["127.0.0.2:2181"]  # not contacted by these commands
[new.rabbit]
hosts = ["127.0.0.1"]
password = "guest"
vhost = "/v2"
"""


def _alive(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()  # not a zombie
    except OSError:
        return False


def test_killed_presync_resumes_from_checkpoints(separate: Pair, tmp_path: Path) -> None:
    from issu_tui.journal import Journal

    pair = separate
    pair.schema()
    pair.write(cd.generate(6, 25, 3))  # more than small_table_cells: really sliced
    state = tmp_path / "state"
    conf = tmp_path / "issu.toml"
    conf.write_text(_toml(pair, state))
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("issu")), "sync", "pre", "-c", str(conf), "-k",
         "config_db_uuid", "--slices", "400", "--concurrency", "1"],
        cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    done = 0
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (state / "journal.db").exists():
                with Journal.open(state, read_only=True) as j:
                    done = len(j.done_slices("pre-sync", "config_db_uuid.obj_uuid_table"))
                if done >= 5:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, "pre-sync finished before it could be killed"
        workers = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
                   .read_text().split()]
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    # its copy processes stop writing at once too (the resume below must be alone)
    assert workers, "the CLI copied in this process: copy_processes is 2 by default"
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in workers):
        assert time.monotonic() < deadline, f"copy processes {workers} outlived the kill"
        time.sleep(0.1)
    with Journal.open(state) as journal:
        killed_at = len(journal.done_slices("pre-sync", "config_db_uuid.obj_uuid_table"))
        assert 5 <= killed_at < 400
        report = engine(pair, slices=400, checkpoints=journal).run("pre-sync", phase="pre")
        t = _table_report(report, "obj_uuid_table")
        assert report.ok and t.slices_resumed == killed_at
        assert t.slices_done == 400 - killed_at
        # a finished job starts over next time
        again = engine(pair, slices=400, checkpoints=journal).run("pre-sync", phase="pre")
        assert _table_report(again, "obj_uuid_table").slices_resumed == 0
    assert verify(pair).ok


# --------------------------------------------------------------------------- replicator

def test_replicator_replaces_objects_cells_and_reconciles(separate: Pair) -> None:
    pair = separate
    pair.schema()
    ds = cd.generate(1, 3, 1)
    pair.write(ds)
    assert presync(pair).ok
    repl = Replicator(pair.old, pair.new, load_registry(), SyncSettings(page_size=100))
    uuid_old, uuid_new = pair.io("old", cd.UUID_TABLE), pair.io("new", cd.UUID_TABLE)
    vn = ds.uuids_of("virtual-network")[0]
    # UPDATE: a property changed, another deleted on old
    uuid_old.write(vn, {"prop:display_name": '"changed"'}, BASE_TS + 100)
    uuid_old.delete(vn, ["prop:is_shared"], BASE_TS + 100)
    out = repl.replace_partition("config_db_uuid", "obj_uuid_table", vn)
    assert out.present_on_old and out.cells_deleted == 1
    assert out.newest_writetime == BASE_TS + 100
    got = uuid_new.read_partition(vn)
    assert got["prop:display_name"] == ('"changed"', BASE_TS + 100)
    assert "prop:is_shared" not in got
    # CREATE via fq-name cells, then DELETE of the whole object
    extra = cd.Dataset()
    new_vn = cd.add_object(extra, "virtual-network", ["default-domain", "project-0", "vn-x"])
    cd.write(pair.old.session, pair.old_prefix, extra, BASE_TS + 200, keyspaces=CONFIG_DB)
    fq_col = f"default-domain:project-0:vn-x:{new_vn}"
    out = repl.replace_cells("config_db_uuid", "obj_fq_name_table", "virtual-network", [fq_col])
    assert out.new_key == "virtual_network" and out.cells_written == 1
    assert repl.replace_partition("config_db_uuid", "obj_uuid_table", new_vn).cells_written > 5
    uuid_old.delete_partition(new_vn, BASE_TS + 300)
    pair.io("old", cd.FQ_TABLE).delete("virtual-network", [fq_col], BASE_TS + 300)
    out = repl.replace_partition("config_db_uuid", "obj_uuid_table", new_vn)
    assert not out.present_on_old and out.cells_deleted > 5
    assert repl.replace_cells("config_db_uuid", "obj_fq_name_table", "virtual-network",
                              [fq_col]).cells_deleted == 1
    assert uuid_new.read_partition(new_vn) == {}
    # reconciliation: changes no message announced are found by range checksums
    silent = ds.uuids_of("project")[0]
    uuid_old.write(silent, {"prop:display_name": '"silent"'}, BASE_TS + 400)
    stray = str(uuid.uuid4())
    uuid_new.write(stray, {"type": '"project"'}, BASE_TS)
    diffs = [d for _, lo, hi in repl.token_ranges(4)
             for d in repl.range_diff("config_db_uuid", "obj_uuid_table", lo, hi)]
    assert {(d.old_key, d.new_key) for d in diffs} == {(silent, silent), (None, stray)}
    for d in diffs:
        repl.repair(d)
    assert not [d for _, lo, hi in repl.token_ranges(4)
                for d in repl.range_diff("config_db_uuid", "obj_uuid_table", lo, hi)]
    assert verify(pair).ok


def test_reconciliation_deletes_spare_changes_applied_between_the_reads(separate: Pair
                                                                       ) -> None:
    """A6: prune_renamed_partitions and remove_extra_partition read new, then confirm on
    old, then delete exactly the cells read. A cell run-sync writes on new after the read
    survives, and so does a partition old gains meanwhile, whatever its writetime (a writer
    stamps with its own clock: a write stamped before the pass can reach old during it);
    cells old has no source for go."""
    pair = separate
    pair.schema()
    ds = cd.generate(1, 2, 1)
    pair.write(ds)
    assert presync(pair).ok
    reg = load_registry()
    fq_new, uuid_new = pair.io("new", cd.FQ_TABLE), pair.io("new", cd.UUID_TABLE)
    # stale partitions only new has (their old source was deleted before the pass)
    fq_new.write("stale_type", {"default-domain:stale:x": "null"}, BASE_TS)
    fq_new.write("fresh_type", {"default-domain:old-col:y": "null"}, BASE_TS)

    def after(read, action):  # type: ignore[no-untyped-def]
        """`read`, then `action` (run-sync applying a change meanwhile)."""
        def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
            result = read(*args, **kwargs)
            if not isinstance(result, dict):
                result = list(result)  # the whole read of old happens before the change
            action()
            return result
        return wrapped

    fresh_col = "default-domain:p:fresh:" + str(uuid.uuid4())
    spec = reg.table(*cd.FQ_TABLE)
    ctx = TableContext(spec, pair.old, pair.new, reg.translator("4.1.0", "5.0.0", *cd.FQ_TABLE),
                       SyncSettings(), Quarantine(pair.new, "t"))
    real_meta, fresh_key = ctx.read_new_meta, (ctx.enc_new_key("fresh_type"),)

    def meta_then_change(stmt, args):  # type: ignore[no-untyped-def]
        rows = list(real_meta(stmt, args))
        if args == fresh_key:  # run-sync writes a cell there once this read is done
            fq_new.write("fresh_type", {fresh_col: "null"}, cd.now_us())
        return rows

    ctx.read_new_meta = meta_then_change  # type: ignore[method-assign]
    counts = prune_renamed_partitions(ctx)
    assert fq_new.read_partition("stale_type") == {}
    assert list(fq_new.read_partition("fresh_type")) == [fresh_col]  # the old cell went
    assert counts.deleted == 2

    repl = Replicator(pair.old, pair.new, reg, SyncSettings())
    stray = str(uuid.uuid4())
    uuid_new.write(stray, {"type": '"project"', "fq_name": '["x"]'}, BASE_TS)
    uctx = repl.context(*cd.UUID_TABLE)
    uctx.read_old = after(uctx.read_old, lambda: uuid_new.write(  # type: ignore[method-assign]
        stray, {"prop:display_name": '"created meanwhile"'}, cd.now_us()))
    assert repl.remove_extra_partition(*cd.UUID_TABLE, stray) == 2
    assert list(uuid_new.read_partition(stray)) == ["prop:display_name"]

    # The first object of a type created while the pass runs, stamped (by its writer's
    # clock) before the pass started: it reaches old after the pass listed old's keys, and
    # run-sync copies it to new. It must stay: its tombstone at its own writetime would
    # hide every later copy of it.
    fq_old = pair.io("old", cd.FQ_TABLE)
    late_col = "default-domain:p:late:" + str(uuid.uuid4())
    stamped = cd.now_us() - 5_000_000
    ctx2 = TableContext(spec, pair.old, pair.new,
                        reg.translator("4.1.0", "5.0.0", *cd.FQ_TABLE), SyncSettings(),
                        Quarantine(pair.new, "t"))

    def created_meanwhile() -> None:
        fq_old.write("logical-router", {late_col: "null"}, stamped)
        fq_new.write("logical_router", {late_col: "null"}, stamped)

    ctx2.key_map = after(ctx2.key_map, created_meanwhile)  # type: ignore[method-assign]
    prune_renamed_partitions(ctx2)
    assert list(fq_new.read_partition("logical_router")) == [late_col]


# --------------------------------------------------------------------------- verify + CLI

def test_verify_reports_every_difference_and_cli_exit_codes(separate: Pair,
                                                            tmp_path: Path) -> None:
    from issu_tui.sync_cli import sync

    pair = separate
    pair.schema()
    ds = cd.generate(1, 3, 1)
    pair.write(ds)
    conf = tmp_path / "issu.toml"
    conf.write_text(_toml(pair, tmp_path / "state"))
    runner = CliRunner()
    result = runner.invoke(sync, ["pre", "-c", str(conf), "-k", "config_db_uuid", "--json",
                                  "--slices", "4"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(sync, ["verify", "-c", str(conf), "-k", "config_db_uuid",
                                  "--json", "--slices", "4"])
    assert result.exit_code == 0, result.output
    uuid_new = pair.io("new", cd.UUID_TABLE)
    vn = ds.uuids_of("virtual-network")[0]
    uuid_new.delete(vn, ["fq_name"], BASE_TS + 1)                        # missing
    uuid_new.write(vn, {"prop:display_name": '"tampered"'}, BASE_TS + 1)  # different
    uuid_new.write(vn, {"prop:bogus": "1"}, BASE_TS)                      # extra
    for n in range(60):
        uuid_new.write(f"extra-{n}", {"x": "1"}, BASE_TS)                 # 60 extra
    result = runner.invoke(sync, ["verify", "-c", str(conf), "-k", "config_db_uuid", "--json",
                                  "--slices", "4", "--max-print", "5",
                                  "--recheck-delay", "0"])
    assert result.exit_code == 1, result.output
    data = json.loads(result.output[result.output.index("{"):])
    assert data["totals"] == {"cells_compared": data["totals"]["cells_compared"], "missing": 1,
                              "extra": 61, "different": 1, "quarantined": 0}
    uuid_table = next(t for t in data["tables"] if t["table"] == "obj_uuid_table")
    assert len(uuid_table["samples"]) == 5 and uuid_table["differences"] == 63
    text = runner.invoke(sync, ["verify", "-c", str(conf), "-k", "config_db_uuid",
                                "--max-print", "3", "--recheck-delay", "0"])
    assert text.exit_code == 1 and "DIFFERENCES: 63" in text.output
    # a bad version path is a configuration error
    conf.write_text(_toml(pair, tmp_path / "state").replace('version = "5.0.0"',
                                                            'version = "7.0.0"'))
    assert runner.invoke(sync, ["pre", "-c", str(conf)]).exit_code == 2


def test_legacy_pre_and_post_sync_accept_issu_conf(separate: Pair, tmp_path: Path) -> None:
    from issu_tui.sync_cli import legacy_post_sync, legacy_pre_sync

    pair = separate
    pair.schema(("config_db_uuid", "useragent"))
    pair.write(cd.generate(1, 2, 1))
    o, n = pair.old_side, pair.new_side
    conf = tmp_path / "issu.conf"
    conf.write_text(f"""[DEFAULTS]
old_version = 4.1.0
new_version = 5.0.0
old_cassandra_address_list = {o.hosts[0]}:{o.port}
new_cassandra_address_list = 127.0.0.1:{n.port}
old_rabbit_address_list = 127.0.0.1
new_rabbit_address_list = 127.0.0.1
new_rabbit_vhost = /v2
old_zookeeper_address_list = 127.0.0.1:2181
new_zookeeper_address_list = 127.0.0.1:2181
odb_prefix = {o.prefix}
ndb_prefix = {n.prefix}
state_dir = {tmp_path / 'state'}
""")
    with pytest.raises(SystemExit) as exc:
        # the original option overrides the file (here: the real new address)
        legacy_pre_sync(["-c", str(conf), "--new_cassandra_address_list", n.hosts[0]])
    assert exc.value.code == 0
    ua = ("useragent", "useragent_keyval_table")
    assert pair.io("new", ua).read() == pair.io("old", ua).read()
    pair.io("old", ua).write("neutron:port:2", {"value": "y"}, BASE_TS)
    with pytest.raises(SystemExit) as exc:
        legacy_post_sync(["-c", str(conf), "--new_cassandra_address_list", n.hosts[0]])
    assert exc.value.code == 0
    assert pair.io("new", ua).read_partition("neutron:port:2") == {"value": ("y", BASE_TS)}

