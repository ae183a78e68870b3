"""The whole story from the command line against the demo world.

Seed v1, preflight, pair, pre-sync and run-sync while a workload keeps writing to v1,
upgrade every compute in 3 batches (canary, then 2, then 1), roll one back and upgrade it
again, finalize; then: zero differences, every compute on v2, writes accepted only by v2,
and every network the workload left on v1 present on v2.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from demo.controller import hostctl
from demo.services import Endpoints
from issu_tui.journal import Journal
from tests.orch_world import eventually, fresh_world, issu_json, stop_world

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PROJECT = ["default-domain", "e2e"]


class Workload(threading.Thread):
    """Creates, renames and deletes virtual networks on v1 until stopped or fenced."""

    def __init__(self, api: str) -> None:
        super().__init__(name="workload", daemon=True)
        self.http = httpx.Client(base_url=api, timeout=10)
        self.stop = threading.Event()
        self.created = 0
        self.updated = 0
        self.deleted = 0
        self.refused = 0
        self.errors: list[str] = []

    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.http.post(path, json=body)

    def run(self) -> None:
        live: list[str] = []
        i = 0
        while not self.stop.is_set():
            i += 1
            try:
                r = self._post("/virtual-networks", {"virtual-network": {
                    "fq_name": [*PROJECT, f"vn-{i}"], "parent_type": "project"}})
                if r.status_code == 403:
                    self.refused += 1
                    time.sleep(0.2)
                    continue
                r.raise_for_status()
                uuid = r.json()["virtual-network"]["uuid"]
                live.append(uuid)
                self.created += 1
                if i % 3 == 0:
                    r = self.http.put(f"/virtual-network/{live[-1]}", json={
                        "virtual-network": {"display_name": f"renamed-{i}"}})
                    r.raise_for_status()
                    self.updated += 1
                if i % 4 == 0 and len(live) > 2:
                    r = self.http.delete(f"/virtual-network/{live.pop(0)}")
                    r.raise_for_status()
                    self.deleted += 1
            except (httpx.HTTPError, KeyError) as exc:
                self.errors.append(str(exc))
            time.sleep(0.15)


def _vns(api: str) -> dict[str, str]:
    """fq_name string -> display_name of the workload's networks on one api-server."""
    data = httpx.get(f"{api}/virtual-networks", params={"detail": "true"}, timeout=30).json()
    out = {}
    for item in data["virtual-networks"]:
        vn = item.get("virtual-network", item)
        if vn["fq_name"][:2] == PROJECT:
            out[":".join(vn["fq_name"])] = vn.get("display_name", "")
    return out


@pytest.fixture(scope="module")
def world(services: Endpoints) -> Iterator[Any]:
    w = fresh_world(services, computes=4, install_s=0.3, seed_projects=3)
    yield w
    stop_world(w)


def test_whole_upgrade_from_the_command_line(world: Any) -> None:
    v1 = f"http://{world.controller_address('v1')}:8082"
    v2 = f"http://{world.controller_address('v2')}:8082"
    r = httpx.post(f"{v1}/projects", json={"project": {"fq_name": PROJECT,
                                                        "parent_type": "domain"}})
    assert r.status_code == 200, r.text

    plan = issu_json(world, "plan")
    assert plan["approach"] == "separate" and plan["from"] == "4.1.0" and plan["to"] == "5.0.0"
    assert issu_json(world, "preflight")["ok"]
    assert issu_json(world, "pair")["ok"]

    workload = Workload(v1)
    workload.start()
    try:
        assert issu_json(world, "phase", "pre-sync", timeout=600)["ok"]
        assert issu_json(world, "phase", "run-sync", timeout=600)["ok"]
        status = issu_json(world, "status")
        assert status["run_sync"]["running"] and status["phase"]["name"] == "run-sync"

        up = issu_json(world, "compute", "upgrade", "all", "--batch-size", "2",
                       "--parallel", "2", timeout=600)
        assert up["ok"] and up["batches"] == 3 and not up["failed"], up
        batches = {c["name"]: c["batch"] for c in issu_json(world, "status")["computes"]["items"]}
        assert sorted(batches.values()) == [1, 2, 2, 3]

        back = issu_json(world, "compute", "rollback", "compute-3", timeout=300)
        assert back["ok"] and back["succeeded"] == ["compute-3"]
        one = issu_json(world, "compute", "status", "compute-3", "--probe")["computes"][0]
        assert one["state"] == "old" and one["probe"]["version"] == "4.1.0"
        assert one["probe"]["cluster"] == "old"
        again = issu_json(world, "compute", "upgrade", "compute-3", timeout=300)
        assert again["ok"] and again["succeeded"] == ["compute-3"]
        assert workload.created > 10 and not workload.errors, workload.errors

        done = issu_json(world, "finalize", timeout=600)
        assert done["ok"], done
        time.sleep(0.5)  # the workload notices the fence
    finally:
        workload.stop.set()
        workload.join(timeout=30)

    # run-sync alone made new equal old: finalize's verify found nothing to repair (its
    # final copy would hide what run-sync lost)
    journal = Journal(world.dir / "state" / "journal.db", read_only=True)
    try:
        repairs = journal.events(kind="finalize", text="repairing with a final copy")
    finally:
        journal.close()
    assert not repairs, [(e.message, e.fields.get("detail")) for e in repairs]

    status = issu_json(world, "status")
    assert status["phase"]["name"] == "done"
    assert status["verify"]["differences"] == 0 and status["verify"]["checked"] > 0
    assert not status["run_sync"]["running"]
    # the northbound client listed in northbound.toml (written by the demo) now uses v2
    plugin = (world.dir / "northbound" / "ContrailPlugin.ini").read_text()
    assert re.search(rf"^api_server_ip\s*=\s*{re.escape(world.controller_address('v2'))}$",
                     plugin, re.MULTILINE), plugin
    assert "contrail_extensions = ipam" in plugin
    probed = issu_json(world, "compute", "status", "--probe")["computes"]
    assert len(probed) == 4
    for compute in probed:
        assert compute["state"] == "upgraded" and compute["version"] == "5.0.0"
        assert compute["probe"]["version"] == "5.0.0" and compute["probe"]["cluster"] == "new"

    # the workload was refused by v1 once finalize fenced it; then finalize stopped old's
    # api-server (old's control node and analytics-api keep running)
    assert workload.refused > 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{v1}/virtual-networks", timeout=10)
    v1_dir = world.controller_dir("v1")
    assert hostctl.running(v1_dir, "control") and hostctl.running(v1_dir, "analytics-api")
    # started again to read old: nothing the workload wrote is lost, and it is still fenced
    hostctl.start(v1_dir, "api-server")
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(f"{v1}/", timeout=5).raise_for_status()
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "old's api-server did not start again"
            time.sleep(0.5)
    on_v1 = _vns(v1)
    on_v2 = _vns(v2)
    assert on_v1 and on_v1 == on_v2

    # writes are accepted only by v2
    body = {"virtual-network": {"fq_name": [*PROJECT, "after"], "parent_type": "project"}}
    assert httpx.post(f"{v1}/virtual-networks", json=body).status_code == 403
    r = httpx.post(f"{v2}/virtual-networks", json=body)
    assert r.status_code == 200, r.text

    # the way back stays open while the reverse replication carries new's writes to old...
    assert issu_json(world, "status")["way_back"].startswith(
        "open: the reverse replication new -> old is running")
    eventually(lambda: "after" in {k.split(":")[-1] for k in _vns(v1)}, 120,
               "the network new took reaches old through the reverse replication")
    # ...until the operator closes it: drained, stopped, its queue gone, revert refused
    closed = issu_json(world, "close-way-back", timeout=300)
    assert closed["ok"] and "reverse replication stopped" in closed["done"], closed
    assert any(".reverse deleted" in line for line in closed["done"]), closed
    status = issu_json(world, "status")
    assert status["way_back"].startswith("closed") and not status["reverse_sync"]["running"]
    refused = issu_json(world, "revert", "--check", "--drop-new-data", expect=1)
    assert any("the way back was closed" in b for b in refused["blockers"]), refused
