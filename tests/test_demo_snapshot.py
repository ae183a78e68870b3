"""`issu demo up --snapshot FILE`: the operator's own data behind the simulated v1, and the
whole story on it: preflight, pairing, pre-sync, run-sync, every compute upgraded, finalize;
then the snapshot's objects are served by v2, verify finds no difference, every compute on v2.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from demo.cli import demo
from demo.services import Endpoints
from tests import contrail_data as cd
from tests.orch_world import fresh_world, issu_json, stop_world

BASE_TS = 1_700_000_000_000_000
CLUSTER_ID = "prod-1"


def _original_document(ds: cd.Dataset) -> dict[str, Any]:
    """The document as db_json_exim.py writes it: every cell `[value, timestamp]`, the
    ZooKeeper leaves below `<cluster_id>/` as one JSON string."""
    cassandra: dict[str, Any] = {}
    for (keyspace, table), rows in ds.tables.items():
        cassandra.setdefault(keyspace, {})[table] = {
            key: {column: [value, BASE_TS + i] for i, (column, value) in enumerate(cols.items())}
            for key, cols in rows.items()}
    nodes = []
    for uuid, type_name in ds.objects.items():
        fq_name = json.loads(ds.tables[cd.UUID_TABLE][uuid]["fq_name"])
        nodes.append([f"{CLUSTER_ID}/fq-name-to-uuid/{type_name}:{':'.join(fq_name)}/",
                      [uuid, [0] * 11]])
        props = ds.tables[cd.UUID_TABLE][uuid]
        if "prop:virtual_network_network_id" in props:
            number = int(props["prop:virtual_network_network_id"])
            nodes.append([f"{CLUSTER_ID}/id/virtual-networks/{number:010d}/",
                          [":".join(fq_name), [0] * 11]])
    nodes.append([f"{CLUSTER_ID}/api-server-election/lock-1/", ["host-1", [0] * 11]])
    return {"cassandra": cassandra, "zookeeper": json.dumps(nodes)}


def _networks(api: str) -> dict[str, str]:
    """fq_name -> uuid of the snapshot's networks served by one api-server."""
    data = httpx.get(f"{api}/virtual-networks", params={"detail": "true"}, timeout=30).json()
    found = {}
    for item in data["virtual-networks"]:
        vn = item.get("virtual-network", item)
        if vn["fq_name"][1].startswith("project-"):
            found[":".join(vn["fq_name"])] = vn["uuid"]
    return found


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, cd.Dataset]:
    ds = cd.generate(2, 3, 1)
    path = tmp_path_factory.mktemp("snapshot") / "prod.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps(_original_document(ds)))
    return path, ds


@pytest.fixture(scope="module")
def world(services: Endpoints, snapshot: tuple[Path, cd.Dataset]) -> Iterator[Any]:
    w = fresh_world(services, computes=2, install_s=0.3, snapshot=snapshot[0])
    yield w
    stop_world(w)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_story_runs_on_the_operators_snapshot(world: Any,
                                                  snapshot: tuple[Path, cd.Dataset]) -> None:
    _, ds = snapshot
    v1 = f"http://{world.controller_address('v1')}:8082"
    v2 = f"http://{world.controller_address('v2')}:8082"
    expected = {":".join(json.loads(ds.tables[cd.UUID_TABLE][uuid]["fq_name"])): uuid
                for uuid in ds.uuids_of("virtual-network")}
    assert len(expected) == 6
    assert _networks(v1) == expected  # v1 serves the operator's objects, no seeded tenants
    seed = next(p for p in world.status(probe=False) if p.name == "seed")
    assert seed.state == "off" and "snapshot" in seed.detail

    assert issu_json(world, "preflight")["ok"]
    assert issu_json(world, "pair")["ok"]
    assert issu_json(world, "phase", "pre-sync", timeout=600)["ok"]
    assert issu_json(world, "phase", "run-sync", timeout=600)["ok"]
    # a change made on the day, on top of the operator's data, travels too
    project = httpx.get(f"{v1}/project/{ds.uuids_of('project')[0]}", timeout=30).json()
    r = httpx.post(f"{v1}/virtual-networks", json={"virtual-network": {
        "fq_name": [*project["project"]["fq_name"], "vn-on-the-day"],
        "parent_type": "project"}}, timeout=30)
    assert r.status_code == 200, r.text
    expected["default-domain:project-0:vn-on-the-day"] = r.json()["virtual-network"]["uuid"]

    up = issu_json(world, "compute", "upgrade", "all", "--batch-size", "1", timeout=600)
    assert up["ok"] and not up["failed"], up
    assert issu_json(world, "finalize", timeout=600)["ok"]

    status = issu_json(world, "status")
    assert status["phase"]["name"] == "done"
    assert status["verify"]["differences"] == 0 and status["verify"]["checked"] > 0
    probed = issu_json(world, "compute", "status", "--probe")["computes"]
    assert [(c["state"], c["probe"]["version"]) for c in probed] == [("upgraded", "5.0.0")] * 2
    assert _networks(v2) == expected


def test_a_bad_snapshot_is_refused_before_anything_starts(tmp_path: Path) -> None:
    bad = tmp_path / "cut.json"
    text = '{"cassandra": {"config_db_uuid": {"obj_uuid_table": {"k": {"fq_name": ["x"'
    bad.write_text(text)
    config = tmp_path / "issu.toml"
    runner = CliRunner(env={"ISSU_RUN_ROOT": str(tmp_path / "run")})
    result = runner.invoke(demo, ["up", "--net", "253", "--config", str(config),
                                  "--snapshot", str(bad)])
    assert result.exit_code == 2, result.output
    assert f"{bad}, offset {len(text)}" in result.output and "nothing started" in result.output
    assert not config.exists() and not (tmp_path / "run").exists()
    result = runner.invoke(demo, ["up", "--net", "253", "--snapshot", str(bad),
                             "--objects", "10"])
    assert result.exit_code == 2 and "--objects" in result.output
