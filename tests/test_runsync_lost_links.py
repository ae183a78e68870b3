"""run-sync when neither side has an object's row any more, yet new still has cells that
name it in other partitions (its parent's `children:`, its index entry): a change cut short
after its linked writes, or a copy that took the parent before the delete and the object
after. Real clusters, the ObjectApplier alone (no broker)."""

from __future__ import annotations

from backends.cassandra.registry import load_registry
from backends.cassandra.replicator import CellChanges, KeyDiff, Replicator
from backends.cassandra.tables import SyncSettings
from backends.runsync.apply import ObjectApplier
from backends.runsync.messages import Change, parse
from backends.runsync.reconcile import Reconciler
from tests import contrail_data as cd
from tests import test_runsync
from tests.test_runsync import World

world = test_runsync.world  # the fixture, reused


class Cut(Exception):
    pass


def _applier(world: World) -> ObjectApplier:
    old, new = world.connect_both()
    world.conns += [old, new]
    applier = ObjectApplier(Replicator(old, new, load_registry(), SyncSettings()))
    domain = next(iter(world.api.fq_io.read_partition("domain"))).rsplit(":", 1)[1]
    applier.apply(parse({"oper": "CREATE", "type": "domain", "uuid": domain,
                         "fq_name": ["default-domain"]}))
    applier.apply(parse({"oper": "CREATE", "type": "project", "uuid": world.project,
                         "fq_name": ["default-domain", "p1"]}))
    return applier


def _network_on_an_ipam(world: World, name: str) -> tuple[ObjectApplier, str, str, list[str]]:
    """A network `name` referring to the ipam `ipam-<name>`, both on old, the ipam copied to
    new: (applier, ipam's uuid, network's uuid, network's fq_name)."""
    ipam_fq = ["default-domain", "p1", f"ipam-{name}"]
    ipam = world.api.create("network-ipam", ipam_fq, parent=world.project, announce=False)
    fq = ["default-domain", "p1", name]
    vn = world.api.create("virtual-network", fq, parent=world.project, refs=[ipam],
                          announce=False)
    applier = _applier(world)
    applier.apply(parse({"oper": "CREATE", "type": "network-ipam", "uuid": ipam,
                         "fq_name": ipam_fq}))
    return applier, ipam, vn, fq


def _apply_cut_short(applier: ObjectApplier, change: Change, column: str) -> None:
    """Apply `change` as a process killed just before the write that carries the object's
    `column` cell: the writes before it land, that one and the rest do not."""
    real_write = applier.io.write

    def write_until(changes: CellChanges) -> None:
        if any(cell.column == column for _, _, cell in changes.inserts):
            raise Cut()
        real_write(changes)

    applier.io.write = write_until  # type: ignore[method-assign]
    try:
        applier.apply(change)
        raise AssertionError("the cut did not happen")
    except Cut:
        pass
    finally:
        applier.io.write = real_write  # type: ignore[method-assign]


def test_a_create_cut_short_then_deleted_leaves_nothing_behind(world: World) -> None:
    api = world.api
    fq = ["default-domain", "p1", "cut"]
    vn = api.create("virtual-network", fq, parent=world.project, announce=False)
    applier = _applier(world)
    # the process dies before the object's own row (its `type` cell) is written
    _apply_cut_short(applier, parse({"oper": "CREATE", "type": "virtual-network", "uuid": vn,
                                     "fq_name": fq}), "type")
    new_uuid = world.new_table(cd.UUID_TABLE)
    assert f"children:virtual_network:{vn}" in new_uuid.read_partition(world.project)

    api.delete(vn, announce=False)  # gone from old before the retry
    applier.apply(parse({"oper": "DELETE", "type": "virtual-network", "uuid": vn,
                         "fq_name": fq}), thorough=True)
    assert f"children:virtual_network:{vn}" not in new_uuid.read_partition(world.project)
    assert not new_uuid.read_partition(vn)
    report = world.verify()
    assert report.ok, [(t.table, t.samples) for t in report.tables if t.samples]


def test_the_message_names_the_parent_when_no_side_has_the_object(world: World) -> None:
    api = world.api
    fq = ["default-domain", "p1", "late"]
    vn = api.create("virtual-network", fq, parent=world.project, announce=False)
    applier = _applier(world)
    new_uuid = world.new_table(cd.UUID_TABLE)
    new_fq = world.new_table(cd.FQ_TABLE)
    # a copy took the parent's partition (and the index) while the object existed ...
    column = f"children:virtual_network:{vn}"
    value, ts = api.uuid_io.read_partition(world.project)[f"children:virtual-network:{vn}"]
    new_uuid.write(world.project, {column: value}, ts)
    entry = ":".join(fq) + ":" + vn
    value, ts = api.fq_io.read_partition("virtual-network")[entry]
    new_fq.write("virtual_network", {entry: value}, ts)
    api.delete(vn, announce=False)  # ... and the object's own partition after its delete
    assert not new_uuid.read_partition(vn)

    applier.apply(parse({"oper": "DELETE", "type": "virtual-network", "uuid": vn,
                         "fq_name": fq,
                         "obj_dict": {"uuid": vn, "fq_name": fq, "parent_type": "project",
                                      "parent_uuid": world.project}}))
    assert column not in new_uuid.read_partition(world.project)
    assert ":".join(fq) + ":" + vn not in new_fq.read_partition("virtual_network")
    report = world.verify()
    assert report.ok, [(t.table, t.samples) for t in report.tables if t.samples]


def test_an_update_adding_a_ref_cut_short_then_deleted_leaves_no_backref(world: World) -> None:
    api = world.api
    fq = ["default-domain", "p1", "refs"]
    target = api.create("network-ipam", ["default-domain", "p1", "ipam"], parent=world.project,
                        announce=False)
    vn = api.create("virtual-network", fq, parent=world.project, announce=False)
    applier = _applier(world)
    for uid, type_name, name in ((target, "network-ipam", [*fq[:2], "ipam"]),
                                 (vn, "virtual-network", fq)):
        applier.apply(parse({"oper": "CREATE", "type": type_name, "uuid": uid,
                             "fq_name": name}))
    # on old, as the api-server does: the ref on the object, the backref on the target
    ts = cd.now_us()
    api.uuid_io.write(vn, {f"ref:network-ipam:{target}": '{"attr": null}',
                           "prop:display_name": '"with a ref"'}, ts)
    api.uuid_io.write(target, {f"backref:virtual-network:{vn}": '{"attr": null}'}, ts)
    _apply_cut_short(applier, parse({"oper": "UPDATE", "type": "virtual-network", "uuid": vn,
                                     "fq_name": fq}), "prop:display_name")
    new_uuid = world.new_table(cd.UUID_TABLE)
    assert f"backref:virtual_network:{vn}" in new_uuid.read_partition(target)

    api.uuid_io.delete(target, [f"backref:virtual-network:{vn}"])
    api.delete(vn, announce=False)
    applier.apply(parse({"oper": "DELETE", "type": "virtual-network", "uuid": vn,
                         "fq_name": fq}), thorough=True)
    assert f"backref:virtual_network:{vn}" not in new_uuid.read_partition(target)
    report = world.verify()
    assert report.ok, [(t.table, t.samples) for t in report.tables if t.samples]


def test_an_update_after_a_create_that_never_completed_writes_the_parent_links(
        world: World) -> None:
    """Review finding R3: a CREATE whose linked write kept failing (its message quarantined
    after its attempts) left new with the object's link names (they go first) but not its
    parent's `children:` cell, its index entry nor its own row. A later UPDATE, not a retry,
    must still write them: its shortcut (an UPDATE cannot move an object) holds only for an
    object whose CREATE was applied completely."""
    api = world.api
    applier = _applier(world)  # (the project first: its copy would bring the child's cell)
    fq = ["default-domain", "p1", "never-created"]
    vn = api.create("virtual-network", fq, parent=world.project, announce=False)
    create = parse({"oper": "CREATE", "type": "virtual-network", "uuid": vn, "fq_name": fq})
    child = f"children:virtual_network:{vn}"
    for _ in range(3):  # every attempt cut at the parent's write
        _apply_cut_short(applier, create, child)
    new_uuid = world.new_table(cd.UUID_TABLE)
    assert f"parent:project:{world.project}" in new_uuid.read_partition(vn)
    assert child not in new_uuid.read_partition(world.project)

    api.update(vn, announce=False, display_name="after the quarantine")
    applier.apply(parse({"oper": "UPDATE", "type": "virtual-network", "uuid": vn,
                         "fq_name": fq}))
    assert child in new_uuid.read_partition(world.project)
    entry = ":".join(fq) + ":" + vn
    assert entry in world.new_table(cd.FQ_TABLE).read_partition("virtual_network")
    report = world.verify()
    assert report.ok, [(t.table, t.samples) for t in report.tables if t.samples]


def test_a_create_applied_once_its_object_is_gone_removes_the_copied_links(
        world: World) -> None:
    """A CREATE reads the cells its message names on old alone (they are normally there and
    not yet on new); those old no longer has must still be read on new and deleted there."""
    api = world.api
    fq = ["default-domain", "p1", "gone-before-its-create"]
    vn = api.create("virtual-network", fq, parent=world.project, announce=False)
    applier = _applier(world)
    new_uuid = world.new_table(cd.UUID_TABLE)
    new_fq = world.new_table(cd.FQ_TABLE)
    column = f"children:virtual_network:{vn}"
    value, ts = api.uuid_io.read_partition(world.project)[f"children:virtual-network:{vn}"]
    new_uuid.write(world.project, {column: value}, ts)  # a copy took them meanwhile
    entry = ":".join(fq) + ":" + vn
    value, ts = api.fq_io.read_partition("virtual-network")[entry]
    new_fq.write("virtual_network", {entry: value}, ts)
    api.delete(vn, announce=False)

    applier.apply(parse({"oper": "CREATE", "type": "virtual-network", "uuid": vn,
                         "fq_name": fq,
                         "obj_dict": {"uuid": vn, "fq_name": fq, "parent_type": "project",
                                      "parent_uuid": world.project}}))
    assert column not in new_uuid.read_partition(world.project)
    assert entry not in new_fq.read_partition("virtual_network")
    report = world.verify()
    assert report.ok, [(t.table, t.samples) for t in report.tables if t.samples]


def test_a_pass_removing_a_deleted_objects_row_takes_its_links_along(world: World) -> None:
    """The pass compared the parent's and the ref target's partitions while old still had
    the object, and reaches the object's row after its delete: the row goes, and with it the
    cells naming it elsewhere. The DELETE lane comes after, and its message names no link."""
    api = world.api
    applier, ipam, vn, fq = _network_on_an_ipam(world, "gone")
    applier.apply(parse({"oper": "CREATE", "type": "virtual-network", "uuid": vn,
                         "fq_name": fq}))
    new_uuid = world.new_table(cd.UUID_TABLE)
    assert f"children:virtual_network:{vn}" in new_uuid.read_partition(world.project)
    assert f"backref:virtual_network:{vn}" in new_uuid.read_partition(ipam)

    api.uuid_io.delete(ipam, [f"backref:virtual-network:{vn}"])  # as the api-server does
    api.delete(vn, announce=False)
    Reconciler(applier.repl).repair(KeyDiff("config_db_uuid", "obj_uuid_table", None, vn))
    applier.apply(parse({"oper": "DELETE", "type": "virtual-network", "uuid": vn,
                         "fq_name": fq}))
    assert not new_uuid.read_partition(vn)
    assert f"children:virtual_network:{vn}" not in new_uuid.read_partition(world.project)
    assert f"backref:virtual_network:{vn}" not in new_uuid.read_partition(ipam)
    report = world.verify()
    assert report.ok, [(t.table, t.samples) for t in report.tables if t.samples]


def test_a_pass_replacing_a_row_whose_update_dropped_a_ref_drops_the_backref(
        world: World) -> None:
    """The pass compared the ref target's partition before an UPDATE dropped the ref, and
    replaces the object's row after it: the UPDATE lane then finds the ref in neither row,
    so the pass itself takes the target's `backref:` cell along (review29 D1)."""
    api = world.api
    applier, ipam, vn, fq = _network_on_an_ipam(world, "vn-dropped")
    applier.apply(parse({"oper": "CREATE", "type": "virtual-network", "uuid": vn,
                         "fq_name": fq}))
    new_uuid = world.new_table(cd.UUID_TABLE)
    assert f"backref:virtual_network:{vn}" in new_uuid.read_partition(ipam)

    # the UPDATE drops the ref on old (both cells, as the api-server does)
    api.uuid_io.delete(vn, [f"ref:network-ipam:{ipam}"])
    api.uuid_io.delete(ipam, [f"backref:virtual-network:{vn}"])
    Reconciler(applier.repl).repair(KeyDiff("config_db_uuid", "obj_uuid_table", vn, vn))
    applier.apply(parse({"oper": "UPDATE", "type": "virtual-network", "uuid": vn,
                         "fq_name": fq}))
    assert f"ref:network_ipam:{ipam}" not in new_uuid.read_partition(vn)
    assert f"backref:virtual_network:{vn}" not in new_uuid.read_partition(ipam)
    report = world.verify()
    assert report.ok, [(t.table, t.samples) for t in report.tables if t.samples]


def test_a_create_does_not_write_back_a_ref_its_object_dropped_meanwhile(world: World) -> None:
    """A CREATE reads the cells its message names on old ahead of the object's own row
    (another lane may lead that read early); a ref an UPDATE drops in between must not come
    back on new as the target's stale backref: no later change of the object names it."""
    api = world.api
    applier, ipam, vn, fq = _network_on_an_ipam(world, "dropped-ref")
    io = applier.io
    real_cells, real_partition = io.cells, io.partition
    early: list = []  # type: ignore[type-arg]

    def cells(ctx, keys, columns, *, new, max_keys):  # type: ignore[no-untyped-def]
        slot = real_cells(ctx, keys, columns, new=new, max_keys=max_keys)
        if not new:
            early.append(slot)
        return slot

    def partition(ctx, key, *, new, wide):  # type: ignore[no-untyped-def]
        if not new and key == vn:
            for slot in early:  # led by another lane before this one reads the row
                slot.wait()
            api.uuid_io.delete(vn, [f"ref:network-ipam:{ipam}"])  # an UPDATE drops the ref
            api.uuid_io.delete(ipam, [f"backref:virtual-network:{vn}"])
        return real_partition(ctx, key, new=new, wide=wide)

    io.cells, io.partition = cells, partition  # type: ignore[method-assign]
    try:
        applier.apply(parse({"oper": "CREATE", "type": "virtual-network", "uuid": vn,
                             "fq_name": fq,
                             "obj_dict": {"uuid": vn, "fq_name": fq, "parent_type": "project",
                                          "parent_uuid": world.project,
                                          "network_ipam_refs": [{"uuid": ipam,
                                                                 "to": ["default-domain", "p1",
                                                                        "ipam-dropped-ref"]}]}}))
    finally:
        io.cells, io.partition = real_cells, real_partition  # type: ignore[method-assign]
    assert early, "the CREATE read no named cell ahead"
    new_uuid = world.new_table(cd.UUID_TABLE)
    assert f"children:virtual_network:{vn}" in new_uuid.read_partition(world.project)
    assert f"backref:virtual_network:{vn}" not in new_uuid.read_partition(ipam)
    report = world.verify()
    assert report.ok, [(t.table, t.samples) for t in report.tables if t.samples]


def test_a_pass_says_what_it_repaired_table_by_table(world: World) -> None:
    """An object written on old with no message (a writer beside the api-server): the pass
    copies it and its event names the tables and the first partitions, not only a count."""
    applier = _applier(world)
    fq = ["default-domain", "p1", "unannounced"]
    vn = world.api.create("virtual-network", fq, parent=world.project, announce=False)
    report = Reconciler(applier.repl, slices=4).run_pass()
    assert report.complete and report.repaired >= 2
    assert report.by_table.get("obj_uuid_table", 0) >= 1
    assert report.by_table.get("obj_fq_name_table", 0) >= 1
    assert sum(report.by_table.values()) == report.repaired
    text = report.repaired_text()
    assert text.startswith(f"{report.repaired} partitions repaired (obj_fq_name_table ")
    assert len(report.samples) <= 3 and all(" " in s for s in report.samples)
    assert f"obj_uuid_table {vn}" in report.samples or \
        any(s.startswith("obj_fq_name_table virtual_network") for s in report.samples), text
    verified = world.verify()
    assert verified.ok, [(t.table, t.samples) for t in verified.tables if t.samples]
