"""A copy of a partition read from old before a delete, written to new after the delete
was applied, must not bring the deleted cells back.

Two writers of one partition race this way while run-sync runs: a reconciliation pass
replacing a parent's partition (or the fq-name index partition of a type) while the lane of
one of its children applies that child's delete, and the lane of a parent whose UPDATE
replaces the parent's partition while a child's lane applies the child's delete. When new
never had the child's cells (its CREATE was applied after the object was already gone from
old), the delete finds nothing to remove, and the stale copy, written last, would resurrect
them: two extra cells on new (the parent's `children:` cell and the index entry).

The interleaving is forced by holding the copy between its read of old and its write;
everything else is the real ObjectApplier and Replicator against real clusters."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from backends.cassandra.futures import settle
from backends.cassandra.registry import load_registry
from backends.cassandra.replicator import Replicator
from backends.cassandra.tables import RawRow, SyncSettings, TableContext
from backends.runsync.apply import ObjectApplier
from backends.runsync.messages import parse
from tests import contrail_data as cd
from tests import test_runsync
from tests.test_runsync import World
from tests.test_runsync_lost_links import _applier

world = test_runsync.world  # the fixture, reused


def _between_read_and_write(ctx: TableContext, key: str, meanwhile: Callable[[], None]) -> None:
    """The next read of old's whole partition `key` through `ctx` returns what old held;
    `meanwhile` runs after that read and before anything read is written."""
    real = ctx.read_old
    done = False

    def read_then_wait(stmt, args):  # type: ignore[no-untyped-def]
        nonlocal done
        rows: list[RawRow] = list(real(stmt, args))
        if not done and stmt is ctx.old_partition and any(r[0] == key for r in rows):
            done = True
            meanwhile()
        return iter(rows)

    ctx.read_old = read_then_wait  # type: ignore[method-assign]


def _network(world: World, name: str) -> tuple[str, list[str]]:
    """A network on old that new does not have yet (its CREATE not applied)."""
    fq = ["default-domain", "p1", name]
    vn = world.api.create("virtual-network", fq, parent=world.project, announce=False)
    return vn, fq


def _apply_create_and_delete_late(world: World, applier: ObjectApplier, vn: str,
                                  fq: list[str]) -> Callable[[], None]:
    """The network deleted on old, then its lane applies its CREATE and its DELETE: both
    find nothing on old, and nothing of it on new to delete (the parent's partition on new
    has no `children:` cell for it yet)."""

    def meanwhile() -> None:
        world.api.delete(vn, announce=False)
        for oper in ("CREATE", "DELETE"):
            # as the api-server announces them: with the object, which names its parent
            applier.apply(parse({"oper": oper, "type": "virtual-network", "uuid": vn,
                                 "fq_name": fq,
                                 "obj_dict": {"uuid": vn, "fq_name": fq,
                                              "parent_type": "project",
                                              "parent_uuid": world.project}}))
    return meanwhile


def _new_cells(world: World, vn: str, fq: list[str]) -> Iterator[str]:
    new_uuid = world.new_table(cd.UUID_TABLE)
    new_fq = world.new_table(cd.FQ_TABLE)
    if f"children:virtual_network:{vn}" in new_uuid.read_partition(world.project):
        yield "the parent's children: cell"
    if ":".join(fq) + ":" + vn in new_fq.read_partition("virtual_network"):
        yield "the fq-name index entry"
    if new_uuid.read_partition(vn):
        yield "the object's own row"


def test_a_reconciliation_repair_read_before_a_delete_does_not_resurrect_it(
        world: World) -> None:
    applier = _applier(world)  # new has the domain and the project
    vn, fq = _network(world, "stale")
    old, new = world.connect_both()
    world.conns += [old, new]
    reconcile = Replicator(old, new, load_registry(), SyncSettings())
    meanwhile = _apply_create_and_delete_late(world, applier, vn, fq)
    _between_read_and_write(reconcile.context(*cd.UUID_TABLE), world.project,
                            meanwhile)

    # the reconciliation pass found the project's partition different (the child is on old
    # only) and replaces it: read old (the child is there), [the child is deleted on old and
    # its lane applies the delete], write
    for diff in reconcile.range_diff(*cd.UUID_TABLE, -2**63, 2**63 - 1):
        if diff.old_key == world.project:
            reconcile.repair(diff)
    assert list(_new_cells(world, vn, fq)) == []
    report = world.verify()
    assert report.ok, [(t.table, t.samples) for t in report.tables if t.samples]


def test_a_reconciliation_of_the_index_read_before_a_delete_does_not_resurrect_it(
        world: World) -> None:
    applier = _applier(world)
    vn, fq = _network(world, "stale-index")
    old, new = world.connect_both()
    world.conns += [old, new]
    reconcile = Replicator(old, new, load_registry(), SyncSettings())
    meanwhile = _apply_create_and_delete_late(world, applier, vn, fq)
    _between_read_and_write(reconcile.context(*cd.FQ_TABLE), "virtual-network",
                            meanwhile)

    reconcile.replace_partition(*cd.FQ_TABLE, "virtual-network")
    assert list(_new_cells(world, vn, fq)) == []
    report = world.verify()
    assert report.ok, [(t.table, t.samples) for t in report.tables if t.samples]


def test_a_parent_update_read_before_a_child_delete_does_not_resurrect_the_child(
        world: World) -> None:
    applier = _applier(world)
    vn, fq = _network(world, "stale-parent")
    world.api.update(world.project, announce=False, display_name="renamed")
    # the parent's lane and the child's lane are two appliers (two lanes, or two processes)
    old, new = world.connect_both()
    world.conns += [old, new]
    parent_lane = ObjectApplier(Replicator(old, new, load_registry(), SyncSettings()))
    meanwhile = _apply_create_and_delete_late(world, applier, vn, fq)
    real_fetch = parent_lane.repl.fetch_partition

    def fetch_then_wait(ctx, key, *, new, fetch_size):  # type: ignore[no-untyped-def]
        future = real_fetch(ctx, key, new=new, fetch_size=fetch_size)
        if not new and key == world.project:
            settle(future)  # old's answer is in (the child still there) ...
            meanwhile()  # ... before the child's lane deletes it and the parent's writes
        return future

    parent_lane.repl.fetch_partition = fetch_then_wait  # type: ignore[method-assign]

    parent_lane.apply(parse({"oper": "UPDATE", "type": "project", "uuid": world.project,
                             "fq_name": ["default-domain", "p1"]}))
    assert list(_new_cells(world, vn, fq)) == []
    report = world.verify()
    assert report.ok, [(t.table, t.samples) for t in report.tables if t.samples]
