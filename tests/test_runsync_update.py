"""run-sync's UPDATE path: the fq-name index entry and the parent's cells are touched only
when the object's own cells for them changed; ref targets follow every UPDATE exactly as old
has them (a ref added, then dropped, by UPDATE messages).

Real Cassandra (old and new) and RabbitMQ, through the fixtures of tests/test_runsync.py;
requests counted at the driver.
"""

from __future__ import annotations

import json

from backends.cassandra.registry import load_registry
from backends.cassandra.replicator import Replicator
from backends.cassandra.tables import SyncSettings
from backends.cassandra.translate import Cell, ObjUuid4to5, translate_partition
from backends.runsync.apply import ObjectApplier
from backends.runsync.messages import parse
from tests import contrail_data as cd
from tests import test_runsync
from tests.test_runsync import World, applied, start_thread, stop_thread, wait_until

world = test_runsync.world  # the fixture, reused

META = "META:latest_col_ts"


def _cql(statement: object) -> str:
    prepared = getattr(statement, "prepared_statement", None)
    return str(getattr(prepared or statement, "query_string", statement))


def test_update_without_link_change_reads_and_writes_only_the_object(world: World) -> None:
    api = world.api
    fq = ["default-domain", "p1", "quiet"]
    vn = api.create("virtual-network", fq, parent=world.project, announce=False)
    old, new = world.connect_both()
    world.conns += [old, new]
    applier = ObjectApplier(Replicator(old, new, load_registry(), SyncSettings()))
    create = parse({"oper": "CREATE", "type": "virtual-network", "uuid": vn, "fq_name": fq})
    first = applier.apply(create)
    assert first.present_on_old and first.cells_written > 5
    update = parse({"oper": "UPDATE", "type": "virtual-network", "uuid": vn, "fq_name": fq})
    api.update(vn, announce=False, display_name="quiet-2")
    sent: dict[str, list[str]] = {"old": [], "new": []}
    for name, conn in (("old", old), ("new", new)):
        conn.session.add_request_init_listener(
            lambda rf, *_, name=name: sent[name].append(_cql(rf.query)))
    result = applier.apply(update)
    # one read of the object on each side, one write on new: no index, parent or share reads
    assert len(sent["old"]) == 1 and "WHERE key = ?" in sent["old"][0], sent
    assert len([q for q in sent["new"] if q.startswith("SELECT")]) == 1, sent
    assert len(sent["new"]) == 2, sent
    assert result.cells_written == 1  # prop:display_name, the one cell the update changed
    # run-sync's lag is measured from the cell new lacked, not from the object's older ones
    assert result.newest_writetime == api.uuid_io.read_partition(vn)["prop:display_name"][1]
    assert result.cells_unchanged > 5 and result.cells_deleted == 0
    new_uuid = world.new_table(cd.UUID_TABLE)
    assert json.loads(new_uuid.read_partition(vn)["prop:display_name"][0]) == "quiet-2"
    # the same UPDATE again: nothing differs, nothing written
    sent["new"].clear()
    again = applier.apply(update)
    assert again.cells_written == 0 and not [q for q in sent["new"]
                                             if not q.startswith("SELECT")]
    # new was not behind: no lag sample (it used to be the object's age, a p99 of minutes)
    assert again.newest_writetime == 0


def test_update_adding_then_dropping_a_ref_brings_the_target_cells(world: World) -> None:
    """The api-server writes `ref:` in the object, `backref:` and META:latest_col_ts in the
    target in one mutation, then announces an UPDATE of the object only."""
    api = world.api
    ipam = api.create("network-ipam", ["default-domain", "p1", "ipam"], parent=world.project,
                      announce=False)
    vn = api.create("virtual-network", ["default-domain", "p1", "vn-r"], parent=world.project,
                    announce=False)
    rs = world.run_sync()
    thread = start_thread(rs)
    new_uuid = world.new_table(cd.UUID_TABLE)
    old_uuid = api.uuid_io
    try:
        ts = cd.now_us()
        old_uuid.write(vn, {f"ref:network-ipam:{ipam}": json.dumps({"attr": None}),
                            META: "null"}, ts)
        old_uuid.write(ipam, {f"backref:virtual-network:{vn}": json.dumps({"attr": None}),
                              META: "null"}, ts)
        api.update(vn, display_name="with-ref")
        wait_until(lambda: applied(rs) >= 1, 60, "the ref update applied")
        target = new_uuid.read_partition(ipam)
        assert target[f"backref:virtual_network:{vn}"][1] == ts
        assert target[META][1] == ts

        ts2 = cd.now_us()
        old_uuid.delete(vn, [f"ref:network-ipam:{ipam}"], ts2)
        old_uuid.delete(ipam, [f"backref:virtual-network:{vn}"], ts2)
        old_uuid.write(ipam, {META: "null"}, ts2)
        api.update(vn, display_name="without-ref")
        wait_until(lambda: applied(rs) >= 2, 60, "the ref drop applied")
        target = new_uuid.read_partition(ipam)
        assert f"backref:virtual_network:{vn}" not in target
        assert target[META][1] == ts2
    finally:
        stop_thread(rs, thread)
    report = world.verify()
    assert report.ok, report.totals()


def test_wide_object_partition_is_replaced_by_streaming(world: World,
                                                        monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """An object partition wider than WIDE_CELLS (a project with many children) takes the
    streaming replace: every cell arrives, a cell old dropped is removed on new."""
    import backends.runsync.apply as apply_module

    monkeypatch.setattr(apply_module, "WIDE_CELLS", 50)
    streamed: list[str] = []
    streaming = ObjectApplier.apply_streaming

    def counted(self: ObjectApplier, change):  # type: ignore[no-untyped-def]
        streamed.append(change.uuid)
        return streaming(self, change)

    monkeypatch.setattr(ObjectApplier, "apply_streaming", counted)
    api = world.api
    project = world.project
    children = {f"children:virtual-network:{uuid_}": "null"
                for uuid_ in (f"00000000-0000-4000-8000-{i:012d}" for i in range(120))}
    api.uuid_io.write(project, children)
    old, new = world.connect_both()
    world.conns += [old, new]
    applier = ObjectApplier(Replicator(old, new, load_registry(), SyncSettings()))
    fq = ["default-domain", "p1"]
    applier.apply(parse({"oper": "CREATE", "type": "project", "uuid": project, "fq_name": fq}))
    new_uuid = world.new_table(cd.UUID_TABLE)
    assert len([c for c in new_uuid.read_partition(project) if c.startswith("children:")]) \
        == 120
    dropped = next(iter(children))
    api.uuid_io.delete(project, [dropped])
    api.update(project, announce=False, display_name="wide")
    result = applier.apply(parse({"oper": "UPDATE", "type": "project", "uuid": project,
                                  "fq_name": fq}))
    assert result.present_on_old and result.cells_deleted >= 1
    row = new_uuid.read_partition(project)
    assert dropped.replace("virtual-network", "virtual_network") not in row
    assert json.loads(row["prop:display_name"][0]) == "wide"
    old_row = api.uuid_io.read_partition(project)
    _, expected, rejected = translate_partition(
        ObjUuid4to5(), project, [Cell(c, v, ts) for c, (v, ts) in old_row.items()])
    assert not rejected
    assert streamed == [project, project]
    assert row == {cell.column: (cell.value, cell.writetime) for cell in expected}


def test_many_linked_partitions_are_read_in_chunks(world: World,
                                                   monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The linked cells of many partitions are read KEYS_PER_READ partitions per request;
    every ref target gets its backref cell and META:latest_col_ts."""
    import backends.runsync.apply as apply_module

    monkeypatch.setattr(apply_module, "KEYS_PER_READ", 2)
    api = world.api
    ipams = [api.create("network-ipam", ["default-domain", "p1", f"ipam{i}"],
                        parent=world.project, announce=False) for i in range(5)]
    fq = ["default-domain", "p1", "many-refs"]
    vn = api.create("virtual-network", fq, parent=world.project, refs=ipams, announce=False)
    old, new = world.connect_both()
    world.conns += [old, new]
    applier = ObjectApplier(Replicator(old, new, load_registry(), SyncSettings()))
    sent: list[str] = []
    old.session.add_request_init_listener(lambda rf, *_: sent.append(_cql(rf.query)))
    applier.apply(parse({"oper": "CREATE", "type": "virtual-network", "uuid": vn,
                         "fq_name": fq}))
    assert len([q for q in sent if "key IN ?" in q and "obj_uuid_table" in q]) == 3, sent
    new_uuid = world.new_table(cd.UUID_TABLE)
    for ipam in ipams:
        old_row = api.uuid_io.read_partition(ipam)
        row = new_uuid.read_partition(ipam)
        assert row[f"backref:virtual_network:{vn}"] == \
            old_row[f"backref:virtual-network:{vn}"], ipam
        assert row[META] == old_row[META]


def test_a_link_copied_by_another_lane_between_the_reads_is_never_deleted(
        world: World) -> None:
    """Review finding: new must be read before old. Here a child is created under the
    project (on old, and copied to new by its own lane) just as the project's UPDATE reads
    new. Had old been read first (without the child) and new after (with it), the child's
    `children:` cell would be deleted on new at its own writetime, and that tombstone would
    hide every later copy of it."""
    api = world.api
    old, new = world.connect_both()
    world.conns += [old, new]
    applier = ObjectApplier(Replicator(old, new, load_registry(), SyncSettings()))
    project = world.project
    applier.apply(parse({"oper": "UPDATE", "type": "project", "uuid": project,
                         "fq_name": ["default-domain", "p1"]}))  # project on new
    child = "0f0f0f0f-0000-4000-8000-00000000c0de"
    ts = cd.now_us()
    new_uuid = world.new_table(cd.UUID_TABLE)
    injected: list[bool] = []

    def other_lane(rf: object, *_: object) -> None:
        # the first read of the project's partition on new: the other lane writes first
        if injected or "WHERE key = ?" not in _cql(getattr(rf, "query", "")):
            return
        injected.append(True)
        api.uuid_io.write(project, {f"children:virtual-machine-interface:{child}": "null"}, ts)
        new_uuid.write(project, {f"children:virtual_machine_interface:{child}": "null"}, ts)

    new.session.add_request_init_listener(other_lane)
    try:
        api.update(project, announce=False, display_name="during-a-create")
        applier.apply(parse({"oper": "UPDATE", "type": "project", "uuid": project,
                             "fq_name": ["default-domain", "p1"]}))
    finally:
        new.session.remove_request_init_listener(other_lane)
    assert injected
    cell = new_uuid.read_partition(project).get(f"children:virtual_machine_interface:{child}")
    assert cell is not None and cell[1] == ts, "the child's link was deleted on new"
    assert json.loads(new_uuid.read_partition(project)["prop:display_name"][0]) == \
        "during-a-create"


def test_the_object_row_is_written_only_after_its_linked_partitions(
        world: World, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Review finding R2: a retry finds the links to repair in the object's row on new, so
    that row must not lose a link before the linked partitions are written (a
    multi-partition UNLOGGED batch can be applied in part). Only the name of a link new
    does not know yet may come first (tests/test_runsync_lost_links.py says why). Here the
    linked write fails once: the object's row holds the new ref's name and nothing else of
    the change, and the retry completes it."""
    api = world.api
    ipam = api.create("network-ipam", ["default-domain", "p1", "ipam-r2"],
                      parent=world.project, announce=False)
    fq = ["default-domain", "p1", "vn-r2"]
    vn = api.create("virtual-network", fq, parent=world.project, announce=False)
    old, new = world.connect_both()
    world.conns += [old, new]
    repl = Replicator(old, new, load_registry(), SyncSettings())
    applier = ObjectApplier(repl)
    applier.apply(parse({"oper": "CREATE", "type": "virtual-network", "uuid": vn,
                         "fq_name": fq}))
    new_uuid = world.new_table(cd.UUID_TABLE)
    meta_before = new_uuid.read_partition(vn)[META]
    ts = cd.now_us()
    api.uuid_io.write(vn, {f"ref:network-ipam:{ipam}": json.dumps({"attr": None}),
                           META: "null"}, ts)
    api.uuid_io.write(ipam, {f"backref:virtual-network:{vn}": json.dumps({"attr": None}),
                             META: "null"}, ts)
    update = parse({"oper": "UPDATE", "type": "virtual-network", "uuid": vn, "fq_name": fq})
    calls: list[set[str]] = []
    real = Replicator.write_changes

    def linked_fails_once(self, changes):  # type: ignore[no-untyped-def]
        keys = ({key for _, key, _ in changes.inserts} |
                {key for _, key, _, _ in changes.deletes})
        calls.append(keys)
        if ipam in keys and sum(ipam in c for c in calls) == 1:
            raise RuntimeError("write timeout (injected)")
        return real(self, changes)

    monkeypatch.setattr(Replicator, "write_changes", linked_fails_once)
    try:
        applier.apply(update)
        raise AssertionError("the injected failure did not surface")
    except RuntimeError:
        pass
    assert calls == [{vn}, {ipam}], calls  # the new link's name, then the linked partition
    row = new_uuid.read_partition(vn)
    assert "ref:network_ipam:" + ipam in row  # the name: a retry will find the target
    assert row[META] == meta_before  # and nothing else of the change yet
    applier.apply(update, thorough=True)  # the retry
    assert calls[2:] == [{ipam}, {vn}], calls
    row, target = new_uuid.read_partition(vn), new_uuid.read_partition(ipam)
    assert any(c.endswith(ipam) and c.startswith("ref:") for c in row)
    assert target[f"backref:virtual_network:{vn}"][1] == ts
