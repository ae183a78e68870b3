"""An approach on shared hardware run through on the demo world (`issu demo up --approach`):
old and new on one real Cassandra ring (new's keyspaces v2_*), every ring node a database
host reached over SSH, the operator's commands in order: `issu plan --approach`, the ring
steps at their intents (`issu ring run --when plan|computes|done`), pre-sync and run-sync,
the computes upgraded over SSH, a real finalize. At the end what the operator checks: the
ring (`nodetool status` from every node: all UN, ownership adding up to the factor), every
node's release v2, the data (verify old against new: 0 differences; the tenants' objects new
serves as old served them, and still after the ring's last steps), the computes on v2.

rolling on 3 nodes: the approach that fits two cores (3 ring JVMs beside the session's).
About 5 minutes (308 s on 2 cores, load ~6: world up 52 s, ring plan 35 s, to run-sync 38 s,
ring computes 30 s, finalize 46 s, ring done 30 s).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from backends.cassandra.nodetool import Nodetool
from backends.cassandra.ringops import check_ring
from backends.ssh import SshExecutor, SshTarget
from demo.ring_world import NEW_PREFIX, release_path
from demo.services import Endpoints
from demo.services.ring import nodetool_path
from demo.world import World, WorldOptions
from issu_tui.config import load_config
from issu_tui.journal import Journal
from issu_tui.orchestrator.plan import build_plan
from issu_tui.orchestrator.ringplan import ring_steps
from issu_tui.ringhooks import controller_runner
from tests.orch_world import fresh_world, issu, issu_json, stop_world
from tests.test_revert_world import _object_differences, _tenant_objects

CONFIG_KEYSPACE = f"{NEW_PREFIX}_config_db_uuid"


@pytest.mark.parametrize(("approach", "old", "new"), [
    ("rolling", 3, 3), ("grow", 3, 5), ("stay", 5, 5)])
def test_the_worlds_config_for_an_approach_is_what_its_plan_and_runner_need(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, approach: str, old: int,
        new: int) -> None:
    """`issu demo up --approach X`'s config: old and new on the same ring nodes (new's
    keyspaces prefixed), the ring as big as X needs, every ring node a database host with
    its own profile: `issu plan --approach X` lists X's ring steps on those nodes, and the
    ring runner reaches each of them."""
    world = World(WorldOptions(net=204, computes=1, run_dir=tmp_path / "run",
                               config_path=tmp_path / "issu.toml", approach=approach))
    world.dir.mkdir(parents=True)
    monkeypatch.setattr(world, "hosts", lambda: {"127.204.1.1": "compute-1"})
    path = world.write_config(world.launcher(1).endpoints())
    config = load_config(path)
    nodes = [f"127.204.0.{41 + i}" for i in range(new)]
    assert list(config.old.cassandra.hosts) == nodes[:old]
    assert list(config.new.cassandra.hosts) == nodes
    assert (config.old.cassandra.prefix, config.new.cassandra.prefix) == ("", NEW_PREFIX)
    steps = [s for s in build_plan(config, approach, str(path)) if s.phase != "finalize"
             and any(n in " ".join(s.touches) for n in nodes)]
    expected = ring_steps(approach, nodes[:old], nodes, config.old.cassandra.seeds)
    assert len(steps) >= len(expected) > 0
    # `issu demo status`: the Cassandra per side and grow's spares not started is as wanted
    states = {p.name: p.state for p in world.status(probe=False)}
    assert states["cassandra-old"] == states["cassandra-new"] == "off"
    assert [states[f"cassandra-ring-{i}"] for i in range(1, new + 1)] == \
        ["stopped"] * old + ["off"] * (new - old)
    journal = Journal.open(tmp_path / "state")
    try:
        controller_runner(config, ["nodetool"], None, journal)  # ValueError: a node unreachable
    finally:
        journal.close()


def _nodetool(world: World) -> Nodetool:
    ep = Endpoints.load(world.run_dir)
    layout = world.ring()
    assert layout is not None
    names = layout.host_names()
    executor = SshExecutor(ep.ssh.known_hosts_path, command_timeout_s=300)

    def target(address: str) -> SshTarget:
        return SshTarget(names[address], address, ep.ssh.port, ep.ssh.user, ep.ssh.key_path)

    return Nodetool(executor, target, (str(nodetool_path(world.run_dir)),))


def _timed(world: World, times: dict[str, float], what: str, *args: str,
           timeout: float = 900) -> dict[str, Any]:
    began = time.monotonic()
    result = issu_json(world, *args, timeout=timeout)
    times[what] = round(time.monotonic() - began, 1)
    print(f"{what}: {times[what]} s")
    return result


def _ring_run(world: World, times: dict[str, float], when: str) -> dict[str, Any]:
    result = _timed(world, times, f"ring {when}", "ring", "run", "--approach", "rolling",
                    "--when", when, "--timeout", "600",
                    "--nodetool", str(nodetool_path(world.run_dir)))
    assert result["ok"], result
    return result


def _ring_markers(world: World) -> list[str]:
    journal = Journal.open(world.dir / "state", read_only=True)
    try:
        return sorted(m for m in journal.steps_done() if m.startswith("ring."))
    finally:
        journal.close()


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_rolling_on_a_shared_ring_runs_through_with_sync_computes_and_finalize(
        services: Endpoints) -> None:
    began = time.monotonic()
    times: dict[str, float] = {}
    world = fresh_world(services, computes=2, install_s=0.2, seed_projects=1,
                        approach="rolling")
    times["world up"] = round(time.monotonic() - began, 1)
    try:
        layout = world.ring()
        assert layout is not None
        first, second, third = nodes = layout.nodes
        nodetool = _nodetool(world)
        v1, v2 = world.api_url("v1"), world.api_url("v2")
        # old's keyspaces on the ring at RF 3 (a node may stop while its ranges keep quorum)
        for node in nodes:
            assert check_ring(nodetool, node, nodes, "config_db_uuid", 3) == []

        plan = _timed(world, times, "plan", "plan", "--approach", "rolling")
        ring_steps = [(s["phase"], s["title"]) for s in plan["steps"]
                      if any(n in " ".join(s["touches"]) for n in nodes)]
        assert len(ring_steps) >= 4, plan["steps"]

        _ring_run(world, times, "plan")  # the first node converted to v2
        assert _timed(world, times, "to run-sync", "phase", "run-sync")["ok"]
        _ring_run(world, times, "computes")  # the second
        upgraded = _timed(world, times, "computes", "compute", "upgrade", "all")
        assert upgraded["ok"], upgraded

        began_verify = time.monotonic()
        answer = issu(world, "sync", "verify", "--json", timeout=600)
        times["verify"] = round(time.monotonic() - began_verify, 1)
        verified = json.loads(answer.stdout)  # one document over several lines
        assert answer.returncode == 0 and verified["ok"], answer.stdout[-3000:]
        assert verified["totals"]["cells_compared"] > 0
        assert verified["totals"]["missing"] + verified["totals"]["extra"] + \
            verified["totals"]["different"] == 0
        on_old = _tenant_objects(v1)
        assert any(k.startswith("virtual-network:") for k in on_old), on_old.keys()

        done = _timed(world, times, "finalize", "finalize")
        assert done["ok"], done
        assert _object_differences(on_old, _tenant_objects(v2)) == []

        _ring_run(world, times, "done")  # v1 stopped on the last node, then converted
        assert _ring_markers(world) == sorted([
            f"ring.0.convert.{first}", f"ring.1.convert.{second}",
            f"ring.2.stop.{third}", f"ring.3.convert.{third}"])
        for node in nodes:
            assert check_ring(nodetool, node, nodes, CONFIG_KEYSPACE, 3) == []
        assert [release_path(world.dir, i).read_text().strip() for i in (1, 2, 3)] == \
            ["5.0.0"] * 3
        # new serves what old served, after every node of its database was restarted as v2
        assert _object_differences(on_old, _tenant_objects(v2)) == []
        probed = issu_json(world, "compute", "status", "--probe")["computes"]
        assert [(c["name"], c["state"], c["probe"].get("version"), c["probe"].get("cluster"))
                for c in probed] == [("compute-1", "upgraded", "5.0.0", "new"),
                                     ("compute-2", "upgraded", "5.0.0", "new")], probed
    finally:
        print(f"times: {times}; rss: " + ", ".join(
            f"{s.name} {s.rss_kib // 1024} MiB" for s in world.launcher().status(
                world.launcher().names(["ring"]), probe=False)))
        stop_world(world)
        print(f"whole test: {time.monotonic() - began:.0f} s")
