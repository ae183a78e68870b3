"""`issu revert` on the demo world: after some computes moved to v2, revert brings them back
and leaves old's config rows as they were; after finalize, the writes new took come back
to old through the reverse replication (the plan's refusals: tests/test_revert.py)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from kazoo.client import KazooClient

from backends.cassandra.connection import CassandraSide, connect
from backends.cassandra.registry import load_registry
from demo.services import Endpoints
from issu_tui.config import load_config
from issu_tui.journal import Journal
from issu_tui.orchestrator.context import Context
from issu_tui.orchestrator.executor import Executor
from issu_tui.orchestrator.phases import phase_marker
from issu_tui.sides import issu_keyspaces
from tests.orch_world import eventually, fresh_world, issu_json, stop_world


def _old_side(endpoints: Endpoints) -> CassandraSide:
    return CassandraSide("old", (endpoints.cassandra_old.host,),
                         port=endpoints.cassandra_old.port)


def _old_rows(endpoints: Endpoints) -> int:
    with connect(_old_side(endpoints), request_timeout=60) as conn:
        rows = conn.session.execute("SELECT key, column1, value FROM "
                                    "config_db_uuid.obj_uuid_table")
        return sum(1 for _ in rows)


def _networks_without_instance(endpoints: Endpoints) -> list[str]:
    """Old's virtual networks whose own routing instance old's schema-transformer has not
    made yet (their fq-name entries, either spelling of the type)."""
    names: dict[str, set[str]] = {"network": set(), "instance": set()}
    with connect(_old_side(endpoints), request_timeout=60) as conn:
        for kind, types in (("network", ("virtual_network", "virtual-network")),
                            ("instance", ("routing_instance", "routing-instance"))):
            for obj_type in types:
                rows = conn.session.execute("SELECT column1 FROM config_db_uuid."
                                            "obj_fq_name_table WHERE key = %s",
                                            (obj_type,))
                names[kind] |= {str(r[0]).rsplit(":", 1)[0] for r in rows}
    # the default project's networks (ip-fabric: __default__) have the api-server's own
    return sorted(n for n in names["network"]
                  if not n.startswith("default-domain:default-project:")
                  and f"{n}:{n.rsplit(':', 1)[-1]}" not in names["instance"])


def _settled_old_rows(services: Endpoints) -> int:
    """Old's row count once old's writers have derived what the world's seed asks of them:
    every network's routing instance made (the schema-transformer's first pass may come
    well after the world is up on a loaded box), then the same count 5 s apart."""
    eventually(lambda: not _networks_without_instance(services) or None, 300,
               "old's schema-transformer made every network's routing instance")
    counts = [_old_rows(services)]

    def unchanged() -> int | None:
        time.sleep(5)
        counts.append(_old_rows(services))
        return counts[-1] if counts[-1] == counts[-2] else None

    settled: int = eventually(unchanged, 300, "old's writers settled")
    return settled


@pytest.mark.timeout(900)
def test_revert_after_some_computes_moved_brings_them_back_and_keeps_old(
        services: Endpoints) -> None:
    """One compute of two upgraded to v2, then `issu revert`: both on v1 again (their agents
    probed over SSH), old's config rows as they were, nothing more to revert."""
    world = fresh_world(services, computes=2, install_s=0.2)
    try:
        before = _settled_old_rows(services)
        assert before > 0
        config = load_config(world.config_path)
        ctx = Context(config=config, config_path=world.config_path,
                      journal=Journal.open(config.state_dir))
        executor = Executor(ctx)
        executor.start()
        try:
            for phase in ("preflight", "pair", "pre-sync", "run-sync"):
                ctx.mark_step(phase_marker(phase))
            ctx.journal.set_phase("run-sync", status="done", note="marked by the test")
            ctx.journal.add_intent("upgrade", {"computes": ["compute-1"], "canary": 0},
                                   "test")
            executor.serve(until_idle=True)
            moved = ctx.journal.compute("compute-1")
            assert moved.state == "upgraded" and moved.version == "5.0.0"
        finally:
            executor.close()
            ctx.journal.close()
        check = issu_json(world, "revert", "--check")
        assert check["ok"] and not check["committed"] and check["by_hand"] == []
        result = issu_json(world, "revert", timeout=600)
        assert result["ok"], result
        status = issu_json(world, "status")
        assert status["phase"]["name"] == "aborted"
        assert {(c["name"], c["state"], c["version"], c["cluster"])
                for c in status["computes"]["items"]} == {
            ("compute-1", "old", "4.1.0", "old"), ("compute-2", "old", "4.1.0", "old")}
        assert _old_rows(services) == before
        again = issu_json(world, "revert", "--check", expect=1)
        assert any("aborted" in b for b in again["blockers"])
    finally:
        stop_world(world)


def _vns(api: str) -> dict[str, str]:
    """fq_name string -> display_name of the tenants' virtual networks on one api-server
    (the default ones an api-server creates at its start are left out)."""
    data = httpx.get(f"{api}/virtual-networks", params={"detail": "true"}, timeout=30).json()
    out = {}
    for item in data["virtual-networks"]:
        vn = item.get("virtual-network", item)
        if vn["fq_name"][1].startswith("tenant"):
            out[":".join(vn["fq_name"])] = vn.get("display_name", "")
    return out


def _uuid(api: str, obj_type: str, fq_name: list[str]) -> str | None:
    answer = httpx.post(f"{api}/fqname-to-id", timeout=30,
                        json={"type": obj_type, "fq_name": fq_name})
    return str(answer.json()["uuid"]) if answer.status_code == 200 else None


def _routing_instance(api: str, fq_name: list[str]) -> dict[str, Any]:
    """The routing instance once the schema-transformer gave it its route target."""
    def ready() -> dict[str, Any] | None:
        uuid = _uuid(api, "routing-instance", fq_name)
        if uuid is None:
            return None
        ri = httpx.get(f"{api}/routing-instance/{uuid}", timeout=30).json()["routing-instance"]
        return ri if ri.get("route_target_refs") else None

    found: dict[str, Any] = eventually(ready, 120, f"routing instance {fq_name}")
    return found


def _old_records(api: str) -> dict[str, str]:
    """type:fq_name -> uuid of old's node records and control nodes' bgp-routers."""
    out = {}
    for obj_type in ("config-node", "analytics-node", "database-node", "bgp-router"):
        data = httpx.get(f"{api}/{obj_type}s", timeout=30).json()
        for item in data[f"{obj_type}s"]:
            out[f"{obj_type}:{':'.join(item['fq_name'])}"] = str(item["uuid"])
    return out


# ------------------------------------------------------------- after finalize: checkers

# what each api-server stamps itself (times, links), not replicated data
VOLATILE = {"last_modified", "created", "href"}
# tenants' objects and the route targets their routing instances refer to
TENANT_TYPES = ("project", "virtual-network", "network-ipam", "routing-instance",
                "route-target", "security-group", "virtual-machine-interface", "instance-ip")


def _vnc(api: str) -> Any:
    from vnc_api.vnc_api import VncApi

    host, port = api.removeprefix("http://").rsplit(":", 1)
    return VncApi(api_server_host=host, api_server_port=int(port), auth_type="noauth")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in sorted(value.items())
                if k not in VOLATILE and v is not None}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _tenant_objects(api: str) -> dict[str, dict[str, Any]]:
    """type:uuid -> the object as the public vnc_api client reads it from `api`, for the
    tenants' objects (fq_name under a `tenant*` project) and the route targets their
    routing instances refer to: what the world's seed and the test made, not the records
    and defaults each api-server makes of its own."""
    vnc = _vnc(api)
    out: dict[str, dict[str, Any]] = {}
    targets: set[str] = set()
    for res_type in TENANT_TYPES:
        if res_type == "route-target":
            continue
        listed = httpx.get(f"{api}/{res_type}s", timeout=30).json()[f"{res_type}s"]
        for item in listed:
            fq = item["fq_name"]
            if not any(part.startswith("tenant") for part in fq[1:2]):
                continue
            obj = getattr(vnc, f"{res_type.replace('-', '_')}_read")(id=item["uuid"])
            plain = _plain(vnc.obj_to_dict(obj))
            out[f"{res_type}:{item['uuid']}"] = plain
            targets |= {ref["uuid"] for ref in plain.get("route_target_refs", [])}
    for uuid in sorted(targets):
        out[f"route-target:{uuid}"] = _plain(vnc.obj_to_dict(vnc.route_target_read(id=uuid)))
    return out


def _object_differences(on_old: dict[str, dict[str, Any]],
                        on_new: dict[str, dict[str, Any]]) -> list[str]:
    out = [f"{key}: on {'old' if key in on_old else 'new'} only"
           for key in sorted(set(on_old) ^ set(on_new))]
    for key in sorted(set(on_old) & set(on_new)):
        old, new = on_old[key], on_new[key]
        if "perms2" not in old:  # 5.0's RBAC field, dropped by the way back to 4.1
            new = {k: v for k, v in new.items() if k != "perms2"}
        fields = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        out += [f"{key} {k}: old {old.get(k)!r:.100} new {new.get(k)!r:.100}"
                for k in fields]
    return out


def _children(zk: KazooClient, path: str) -> dict[str, str]:
    if not zk.exists(path):
        return {}
    return {child: zk.get(f"{path}/{child}")[0].decode() for child in zk.get_children(path)}


def _old_ids_inconsistent(services: Endpoints, api: str) -> list[str]:
    """What disagrees on old between its ZooKeeper, its api-server and its Cassandra: each
    virtual network's id allocated in ZooKeeper to that network and its fq-name lock
    holding its uuid, no id or lock of a network that is gone; each route target number
    in to_bgp_keyspace allocated in ZooKeeper to that routing instance, and no other."""
    listed = httpx.get(f"{api}/virtual-networks", params={"detail": "true"},
                       timeout=30).json()["virtual-networks"]
    networks = {":".join(vn["fq_name"]): vn
                for vn in (item.get("virtual-network", item) for item in listed)}
    zk = KazooClient(hosts=services.zk_old.hosts, timeout=30)
    zk.start(timeout=60)
    try:
        ids = _children(zk, "/id/virtual-networks")
        locks = _children(zk, "/fq-name-to-uuid")
        targets = _children(zk, "/id/bgp/route-targets")
    finally:
        zk.stop()
        zk.close()
    problems = []
    for fq, vn in sorted(networks.items()):
        vn_id = vn.get("virtual_network_network_id")
        owner = None if vn_id is None else ids.get(f"{int(vn_id):010d}")
        if owner != fq:
            problems.append(f"network {fq}: id {vn['virtual_network_network_id']} held by "
                            f"{owner!r} in ZooKeeper")
        lock = locks.get(f"virtual_network:{fq}", locks.get(f"virtual-network:{fq}"))
        if lock != vn["uuid"]:
            problems.append(f"network {fq}: fq-name lock {lock!r}, uuid {vn['uuid']}")
    problems += [f"id {i} held by {owner!r}: no such network" for i, owner in ids.items()
                 if owner not in networks]
    problems += [f"fq-name lock {name} -> {held}: no such network"
                 for name, held in locks.items()
                 if name.split(":", 1)[0] in ("virtual_network", "virtual-network")
                 and name.split(":", 1)[1] not in networks]
    with connect(_old_side(services), request_timeout=60) as conn:
        rows = conn.session.execute("SELECT key, column1, value FROM "
                                    "to_bgp_keyspace.route_target_table")
        numbers = {str(r[0]): int(str(r[2])) for r in rows if str(r[1]) == "rtgt_num"}
    allocated = {owner: int(n) for n, owner in targets.items()}
    if numbers != allocated:
        problems += [f"route target of {ri}: to_bgp_keyspace {numbers.get(ri)}, ZooKeeper "
                     f"{allocated.get(ri)}" for ri in sorted(set(numbers) | set(allocated))
                     if numbers.get(ri) != allocated.get(ri)]
    return problems


@pytest.mark.timeout(1200)
def test_revert_after_finalize_carries_new_writes_back_to_old(services: Endpoints) -> None:
    """Finalize (the reverse replication starts at its commit), then a network created, one
    renamed and one deleted through the new api-server; `issu revert --drop-new-data` (refused
    without, as abort after new's writers ran): old against new in config_db_uuid shows 0
    differences once the reverse replication drained, old's api-server serves all three
    changes (the created network with new's uuid), and old's node records and control
    nodes' bgp-routers, which finalize removed from new, are back with their uuids (and
    only those: none of new's). verify-back found 0 differences in every ISSU keyspace;
    the tenants' objects read with vnc_api through old's api-server are those new served;
    old's ZooKeeper ids agree with its networks and route targets; the two computes are
    rolled back in two batches, both probed over SSH on v1 and old's control nodes."""
    # batches of one compute: revert rolls them back one batch after the other
    world = fresh_world(services, computes=2, install_s=0.2, seed_projects=1,
                        batch={"size": 1, "parallel": 1, "canary": 0})
    v1, v2 = world.api_url("v1"), world.api_url("v2")
    try:
        records = _old_records(v1)
        assert any(k.startswith("config-node:") for k in records), records
        assert issu_json(world, "phase", "run-sync", timeout=600)["ok"]
        assert issu_json(world, "compute", "upgrade", "all", timeout=600)["ok"]
        done = issu_json(world, "finalize", timeout=600)
        assert done["ok"], done
        refused = issu_json(world, "revert", "--check", expect=1)
        assert any("--drop-new-data" in b for b in refused["blockers"]), refused
        assert issu_json(world, "revert", "--check", "--drop-new-data")["ok"]
        assert issu_json(world, "status")["way_back"].startswith("open: the reverse")

        before = _vns(v2)
        project = next(iter(before)).split(":")[:2]
        renamed = sorted(before)[0]
        for name in ("after-finalize", "to-delete"):
            created = httpx.post(f"{v2}/virtual-networks", timeout=30, json={
                "virtual-network": {"fq_name": [*project, name], "parent_type": "project"}})
            assert created.status_code == 200, created.text
        # new's schema-transformer gives each its routing instance and route target (over
        # new's REST API, so through the reverse replication too) before revert stops it
        instances = {name: _routing_instance(v2, [*project, name, name])
                     for name in ("after-finalize", "to-delete")}
        target = instances["to-delete"]["route_target_refs"][0]["to"]
        uuid = _uuid(v2, "virtual-network", renamed.split(":"))
        r = httpx.put(f"{v2}/virtual-network/{uuid}", timeout=30,
                      json={"virtual-network": {"display_name": "renamed-on-new"}})
        assert r.status_code == 200, r.text
        gone = _uuid(v2, "virtual-network", [*project, "to-delete"])
        r = httpx.delete(f"{v2}/virtual-network/{gone}", timeout=30)
        assert r.status_code in (200, 204), r.text
        eventually(lambda: _uuid(v2, "route-target", target) is None, 120,
                   "new's schema-transformer deletes the deleted network's route target")
        deleted = f"{':'.join(project)}:to-delete"
        # new's data is dropped at the end of the revert: what it served, taken now
        on_new = _vns(v2)
        created_uuid = _uuid(v2, "virtual-network", [*project, "after-finalize"])
        assert created_uuid is not None
        objects_on_new = _tenant_objects(v2)
        assert f"virtual-network:{created_uuid}" in objects_on_new

        result = issu_json(world, "revert", "--drop-new-data", timeout=900)
        assert result["ok"], result
        assert result["plan"]["committed"] is True
        # every ISSU keyspace (old's writers own them again once old reopens): measured by
        # verify-back before it did, each with 0 differences
        (verified,) = [line for line in result["done"] if line.startswith("verify-back: ")]
        said = dict(part.split(": ", 1) for part in
                    verified.removeprefix("verify-back: ").split("; "))
        keyspaces = issu_keyspaces(load_config(world.config_path), load_registry())
        assert set(said) == set(keyspaces), verified
        assert all(v.startswith("0 differences in ") for v in said.values()), verified
        assert not said["to_bgp_keyspace"].endswith(" 0 cells"), verified

        on_old = _vns(v1)
        assert f"{':'.join(project)}:after-finalize" in on_old
        assert on_old[renamed] == "renamed-on-new"
        assert deleted not in on_old
        assert on_old == on_new
        # the network new took is carried back itself (new's uuid), not re-created on old
        assert _uuid(v1, "virtual-network", [*project, "after-finalize"]) == created_uuid
        # ...with the routing instance new's schema-transformer gave it (old's, started
        # again, finds it and creates none of its own)
        ri = [*project, "after-finalize", "after-finalize"]
        assert _uuid(v1, "routing-instance", ri) == instances["after-finalize"]["uuid"]
        # ...and none of new's (its node records reached old when new opened)
        assert _old_records(v1) == records
        # the tenants' objects as the public client reads them through old's api-server:
        # what new served, field by field
        assert _object_differences(_tenant_objects(v1), objects_on_new) == []
        # old's ZooKeeper ids agree with what old serves and holds: the network new made has
        # its id and lock, the one deleted on new none, route targets as to_bgp_keyspace says
        assert _old_ids_inconsistent(services, v1) == []
        # the computes rolled back in batches (one each), each agent asked over SSH: v1,
        # reporting to old's control nodes
        probed = issu_json(world, "compute", "status", "--probe")["computes"]
        assert [(c["name"], c["state"], c["probe"].get("version"), c["probe"].get("cluster"))
                for c in probed] == [("compute-1", "old", "4.1.0", "old"),
                                     ("compute-2", "old", "4.1.0", "old")], probed
        assert len({c["batch"] for c in probed}) == 2, probed
    finally:
        stop_world(world)
