"""`issu revert` on the demo world: after some computes moved to v2, revert brings them back
and leaves old's config rows as they were; after finalize, the writes new took come back
to old through the reverse replication (the plan's refusals: tests/test_revert.py)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from backends.cassandra.connection import CassandraSide, connect
from demo.services import Endpoints
from issu_tui.config import load_config
from issu_tui.journal import Journal
from issu_tui.orchestrator.context import Context
from issu_tui.orchestrator.executor import Executor
from issu_tui.orchestrator.phases import phase_marker
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


@pytest.mark.timeout(1200)
def test_revert_after_finalize_carries_new_writes_back_to_old(services: Endpoints) -> None:
    """Finalize (the reverse replication starts at its commit), then a network created, one
    renamed and one deleted through the new api-server; `issu revert --drop-new-data` (refused
    without, as abort after new's writers ran): old against new in config_db_uuid shows 0
    differences once the reverse replication drained, old's api-server serves all three
    changes (the created network with new's uuid), and old's node records and control
    nodes' bgp-routers, which finalize removed from new, are back with their uuids (and
    only those: none of new's)."""
    world = fresh_world(services, computes=1, install_s=0.2, seed_projects=1)
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

        result = issu_json(world, "revert", "--drop-new-data", timeout=900)
        assert result["ok"], result
        assert result["plan"]["committed"] is True
        assert any(line.startswith("verify-back: config_db_uuid: 0 differences in ")
                   for line in result["done"]), result["done"]

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
    finally:
        stop_world(world)
