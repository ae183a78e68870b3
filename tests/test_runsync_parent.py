"""run-sync brings over the parent's cells the api-server rewrites when a child comes or goes.

The 4.x api-server (demo/controller/configdb.py `_create_mutation`, `_delete`) writes, in one
batch with the child's own cells, `children:<type>:<uuid>` and `META:latest_col_ts` in the
PARENT's row; the change message names only the child. The parent has no `prop:perms2` (4.x
does not default it), so new gets the 5.0 default, whose writetime must not move with those
parent cells. Real RabbitMQ and Cassandra, through the fixtures of tests/test_runsync.py.
"""

from __future__ import annotations

import json
import uuid

from backends.cassandra.translate import Cell, ObjUuid4to5, translate_partition
from tests import contrail_data as cd
from tests import test_runsync
from tests.test_runsync import World, applied, start_thread, stop_thread, wait_until

world = test_runsync.world  # the fixture, reused

META = "META:latest_col_ts"
CHECKED = (META, "prop:perms2")


def _demo_create_vn(w: World, parent: str, fq_name: list[str]) -> str:
    """What the 4.x demo api-server writes for a virtual-network under a project (one batch,
    one timestamp), then its CREATE message."""
    api, uid = w.api, str(uuid.uuid4())
    ts = cd.now_us()
    api.uuid_io.write(uid, {
        "fq_name": json.dumps(fq_name), "type": json.dumps("virtual-network"), META: "null",
        "parent_type": json.dumps("project"), f"parent:project:{parent}": "null",
        "prop:display_name": json.dumps(fq_name[-1]), "prop:virtual_network_network_id": "5",
    }, ts)
    api.uuid_io.write(parent, {f"children:virtual-network:{uid}": "null", META: "null"}, ts)
    api.fq_io.write("virtual-network", {":".join(fq_name) + ":" + uid: "null"}, ts)
    api._publish({"request-id": f"req-{uuid.uuid4()}", "oper": "CREATE",
                  "type": "virtual-network", "uuid": uid, "fq_name": fq_name,
                  "obj_dict": {"uuid": uid, "fq_name": fq_name}})
    return uid


def _demo_delete_vn(w: World, parent: str, uid: str, fq_name: list[str]) -> None:
    api = w.api
    ts = cd.now_us()
    api.uuid_io.delete(parent, [f"children:virtual-network:{uid}"], ts)
    api.uuid_io.write(parent, {META: "null"}, ts)
    api.uuid_io.delete_partition(uid, ts)
    api.fq_io.delete("virtual-network", [":".join(fq_name) + ":" + uid], ts)
    api._publish({"request-id": f"req-{uuid.uuid4()}", "oper": "DELETE",
                  "type": "virtual-network", "uuid": uid, "fq_name": fq_name})


def _parent_cells(old_io: cd.TableIO, new_io: cd.TableIO,
                  parent: str) -> tuple[dict, dict]:
    """(old translated to 5.0, new): column -> (value, writetime) of the checked cells."""
    old_row = old_io.read_partition(parent)
    _, cells, rejected = translate_partition(
        ObjUuid4to5(), parent, [Cell(c, v, ts) for c, (v, ts) in old_row.items()])
    assert not rejected
    translated = {c.column: (c.value, c.writetime) for c in cells if c.column in CHECKED}
    new_row = new_io.read_partition(parent)
    return translated, {c: new_row[c] for c in CHECKED if c in new_row}


def test_child_create_and_delete_bring_parent_cells(world: World) -> None:
    api = world.api
    # a 4.x project without perms2, as the demo api-server stores it, copied by the catch-up
    ds = cd.Dataset()
    fq = ["default-domain", "p-bare"]
    project = cd.add_object(ds, "project", fq, perms2=False)
    api.uuid_io.write(project, ds.tables[cd.UUID_TABLE][project], cd.now_us())
    api.fq_io.write("project", ds.tables[cd.FQ_TABLE]["project"])
    old_io = api.uuid_io
    rs = world.run_sync()
    thread = start_thread(rs)
    try:
        new_io = world.new_table(cd.UUID_TABLE)
        before_old, before_new = _parent_cells(old_io, new_io, project)
        assert before_new == before_old and set(before_new) == set(CHECKED)

        vn_fq = [*fq, "vn-a"]
        vn = _demo_create_vn(world, project, vn_fq)
        wait_until(lambda: applied(rs) >= api.published, 60, "create applied")
        old_cells, new_cells = _parent_cells(old_io, new_io, project)
        assert old_cells[META][1] > before_old[META][1]      # the api-server moved it on old
        assert new_cells == old_cells                        # and run-sync brought it over
        assert old_cells["prop:perms2"] == before_old["prop:perms2"]  # default: stable
        assert f"children:virtual_network:{vn}" in new_io.read_partition(project)

        _demo_delete_vn(world, project, vn, vn_fq)
        wait_until(lambda: applied(rs) >= api.published, 60, "delete applied")
        old_cells, new_cells = _parent_cells(old_io, new_io, project)
        assert new_cells == old_cells
        assert old_cells["prop:perms2"] == before_old["prop:perms2"]
        assert f"children:virtual_network:{vn}" not in new_io.read_partition(project)

        report = world.verify()
        assert report.totals()["missing"] + report.totals()["extra"] + \
            report.totals()["different"] == 0, report.as_dict()
        assert report.ok
    finally:
        stop_thread(rs, thread)
