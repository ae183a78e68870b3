"""The demo controllers' own writers (schema-transformer, svc-monitor, device-manager) against
the real services, and why issu stops new's before copying into it; and the demo's v1, writers'
keyspaces included, carried through `issu db export` / `issu db import` unchanged.

v1's writers fill to_bgp_keyspace (route targets allocated under ZooKeeper), useragent,
svc_monitor_keyspace and dm_keyspace as a live cluster's do: pre-sync copies them and verify
finds new equal to old. New's schema-transformer left running allocates its own route targets
for the networks the sync copied: verify finds the conflict.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import RoundRobinPolicy
from click.testing import CliRunner
from kazoo.client import KazooClient

from backends.cassandra.connection import CassandraSide, connect
from backends.cassandra.registry import load_registry
from backends.cassandra.tables import SyncSettings
from backends.cassandra.verify import Verifier
from backends.snapshot.format import zk_ignore_list
from backends.zookeeper.tree import persistent_digests, read_subtree
from demo.controller import hostctl
from demo.services import Endpoints
from issu_tui.cli import cli
from tests.orch_world import eventually, fresh_world, issu, stop_world

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

RT_TABLE = ("to_bgp_keyspace", "route_target_table")
WRITER_TABLES = [RT_TABLE, ("useragent", "useragent_keyval_table"),
                 ("svc_monitor_keyspace", "service_instance_table"),
                 ("dm_keyspace", "dm_ni_ipv6_ll_table")]


@pytest.fixture(scope="module")
def world(services: Endpoints) -> Iterator[Any]:
    w = fresh_world(services, computes=1, seed_projects=1)
    yield w
    stop_world(w)


def _rows(hp: Any, table: tuple[str, str]) -> dict[str, str]:
    profiles = {EXEC_PROFILE_DEFAULT: ExecutionProfile(load_balancing_policy=RoundRobinPolicy(),
                                                       request_timeout=60)}
    cluster = Cluster([hp.host], port=hp.port, execution_profiles=profiles)
    try:
        session = cluster.connect()
        return {r.key: r.value for r in session.execute(
            f'SELECT key, value FROM "{table[0]}"."{table[1]}"')}
    finally:
        cluster.shutdown()


def _zk_route_targets(hosts: str) -> dict[str, int]:
    zk = KazooClient(hosts=hosts)
    zk.start(timeout=15)
    try:
        path = "/id/bgp/route-targets"
        return {zk.get(f"{path}/{c}")[0].decode(): int(c) for c in zk.get_children(path)}
    finally:
        zk.stop()
        zk.close()


def _routing_instance(api: str, fq_name: str) -> dict[str, Any] | None:
    found = httpx.post(f"{api}/fqname-to-id", json={"type": "routing-instance",
                                                  "fq_name": fq_name.split(":")}, timeout=30)
    if found.status_code == 404:
        return None
    obj_uuid = found.json()["uuid"]
    obj: dict[str, Any] = httpx.get(f"{api}/routing-instance/{obj_uuid}",
                                    timeout=30).json()["routing-instance"]
    return obj


def _verify(world: Any) -> tuple[int, dict[str, Any]]:
    result = issu(world, "sync", "verify", "--json", timeout=300)
    return result.returncode, json.loads(result.stdout)


def test_v1_writers_are_copied_and_new_ones_left_running_conflict(
        world: Any, services: Endpoints) -> None:
    api = f"http://{world.controller_address('v1')}:8082"
    project = ["default-domain", "fence"]
    assert httpx.post(f"{api}/projects", json={"project": {
        "fq_name": project, "parent_type": "domain"}}, timeout=30).status_code == 200
    # created in reverse order, each after v1's schema-transformer allocated the previous
    # one's route target: v1's ids descend with the names, and a fresh allocator that
    # walks the networks in order (new's, on the copy) cannot give all three the same ids
    for name in ("net-c", "net-b", "net-a"):
        fq = [*project, name]
        r = httpx.post(f"{api}/virtual-networks", json={"virtual-network": {
            "fq_name": fq, "parent_type": "project"}}, timeout=30)
        assert r.status_code == 200, r.text
        ri = ":".join([*fq, name])
        eventually(lambda ri=ri: ri in _rows(services.cassandra_old, RT_TABLE), 120,
                   f"v1's route target of {ri}")

    networks = httpx.get(f"{api}/virtual-networks", timeout=30).json()["virtual-networks"]
    routing_instances = {":".join([*n["fq_name"], n["fq_name"][-1]]) for n in networks}
    eventually(lambda: set(_rows(services.cassandra_old, RT_TABLE)) == routing_instances,
               120, "a route target for every network on v1")
    for table in WRITER_TABLES[1:]:
        eventually(lambda table=table: _rows(services.cassandra_old, table), 120,
                   f"rows in {table[0]}.{table[1]} on v1")
    # the ids in Cassandra are those ZooKeeper allocated
    old_rts = _rows(services.cassandra_old, RT_TABLE)
    assert {ri: int(v) for ri, v in old_rts.items()} == _zk_route_targets(services.zk_old.hosts)
    # and over REST, as Contrail's: each network's routing instance, referring to its
    # route-target object target:<asn>:<id>
    for name in ("net-a", "net-b", "net-c"):
        ri = ":".join([*project, name, name])
        found = _routing_instance(api, ri)
        assert found is not None, ri
        assert [r["to"] for r in found.get("route_target_refs", [])] == [
            [f"target:64512:{old_rts[ri]}"]], found
    # a network deleted: its instance goes with it (api-server), then its route target
    gone = [*project, "net-gone"]
    made = httpx.post(f"{api}/virtual-networks", json={"virtual-network": {
        "fq_name": gone, "parent_type": "project"}}, timeout=30).json()["virtual-network"]
    gone_ri = ":".join([*gone, "net-gone"])
    eventually(lambda: _routing_instance(api, gone_ri) is not None, 120,
               f"v1's routing instance of {gone_ri}")
    target = f"target:64512:{_rows(services.cassandra_old, RT_TABLE)[gone_ri]}"
    deleted = httpx.delete(f"{api}/virtual-network/{made['uuid']}", timeout=30)
    assert deleted.status_code == 200, deleted.text
    assert _routing_instance(api, gone_ri) is None
    eventually(lambda: httpx.post(f"{api}/fqname-to-id", json={
        "type": "route-target", "fq_name": [target]}, timeout=30).status_code == 404, 120,
        f"{target} deleted by v1's schema-transformer")
    eventually(lambda: gone_ri not in _rows(services.cassandra_old, RT_TABLE), 120,
               f"the route target row of {gone_ri} removed")
    old_rts = _rows(services.cassandra_old, RT_TABLE)

    copy = issu(world, "sync", "pre", timeout=600)
    assert copy.returncode == 0, copy.stdout + copy.stderr
    code, report = _verify(world)
    assert code == 0 and report["ok"], report
    compared = {(t["keyspace"], t["table"]): t["cells_compared"] for t in report["tables"]}
    assert all(compared[t] > 0 for t in WRITER_TABLES), compared
    assert _rows(services.cassandra_new, RT_TABLE) == old_rts

    # new's schema-transformer, not stopped (what issu's preparation prevents)
    v2 = world.controller_dir("v2")
    hostctl.start(v2, "schema-transformer")
    try:
        eventually(lambda: _rows(services.cassandra_new, RT_TABLE) != old_rts, 120,
                   "new's schema-transformer rewriting route targets")
        code, report = _verify(world)
        assert code == 1 and not report["ok"]
        (rt,) = [t for t in report["tables"] if (t["keyspace"], t["table"]) == RT_TABLE]
        assert rt["different"] > 0
        assert {s["key"] for s in rt["samples"]} & {
            ":".join([*project, n, n]) for n in ("net-a", "net-c")}
        # and new's ZooKeeper holds allocations of its own for the copied networks
        assert _zk_route_targets(services.zk_new.hosts) != _zk_route_targets(
            services.zk_old.hosts)
    finally:
        assert hostctl.stop(v2, "schema-transformer")


def _zk_digests(hosts: str, root: str) -> dict[str, str]:
    """Content hash of every persistent znode below `root`, the snapshot's ignore list out."""
    zk = KazooClient(hosts=hosts)
    zk.start(timeout=15)
    try:
        ignored = zk_ignore_list("")
        return {rel: digest for rel, digest in
                persistent_digests(read_subtree(zk, root) or {}).items()
                if rel and rel.split("/")[0] not in ignored}
    finally:
        zk.stop()
        zk.close()


def test_the_demos_v1_round_trips_through_export_and_import(
        world: Any, services: Endpoints, tmp_path: Path) -> None:
    """v1 as the demo runs it (its tables in the text layout, the writers' keyspaces, the
    route-target ids in ZooKeeper), exported by the operator's command and imported into an
    empty cluster: verify finds every cell equal, ZooKeeper equal by content hash."""
    for table in WRITER_TABLES:
        eventually(lambda table=table: _rows(services.cassandra_old, table), 120,
                   f"rows in {table[0]}.{table[1]} on v1")
    v1 = world.controller_dir("v1")
    for writer in hostctl.WRITERS:  # quiet, so the copy can be compared with the original
        assert hostctl.stop(v1, writer)
    prefix = f"rt{uuid.uuid4().hex[:6]}"
    snapshot = tmp_path / "v1.json.gz"
    runner = CliRunner()
    try:
        result = runner.invoke(cli, ["db", "export", str(snapshot), "-c",
                                     str(world.config_path), "--cluster", "old", "--json"],
                               catch_exceptions=False)
        assert result.exit_code == 0, result.output
        exported = json.loads(result.output)
        result = runner.invoke(cli, [
            "db", "import", str(snapshot), "--cassandra", services.cassandra_new.address,
            "--cassandra-prefix", prefix, "--zookeeper", services.zk_new.hosts,
            "--zk-prefix", prefix, "--json"], catch_exceptions=False)
        assert result.exit_code == 0, result.output

        source = connect(CassandraSide("old", (services.cassandra_old.host,),
                                       services.cassandra_old.port))
        target = connect(CassandraSide("new", (services.cassandra_new.host,),
                                       services.cassandra_new.port, prefix=prefix))
        try:
            settings = SyncSettings(slices_per_table=4, concurrency=2, small_table_cells=0)
            report = Verifier(source, target, load_registry(), settings,
                              recheck_delay_s=0.2).run()
        finally:
            source.close()
            target.close()
        assert report.ok, report.as_dict()
        compared = {(t.keyspace, t.table): t.cells_compared for t in report.tables}
        assert all(compared[t] > 0 for t in [("config_db_uuid", "obj_uuid_table"),
                                             *WRITER_TABLES]), compared
        assert sum(t.differences for t in report.tables) == 0
        assert report.totals()["cells_compared"] == exported["cells"], exported

        old_zk = _zk_digests(services.zk_old.hosts, "/")
        assert any(rel.startswith("id/bgp/route-targets/") for rel in old_zk)
        assert _zk_digests(services.zk_new.hosts, f"/{prefix}") == old_zk
    finally:
        for writer in hostctl.WRITERS:
            hostctl.start(v1, writer)
