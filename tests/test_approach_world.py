"""An approach on shared hardware run through on the demo world (`issu demo up --approach`):
old and new on one real Cassandra ring (new's keyspaces v2_*), every ring node a database
host reached over SSH, the operator's commands in order: `issu plan --approach`, the ring
steps at their intents (`issu ring run --when plan|computes|done`), pre-sync and run-sync,
the computes upgraded over SSH, a real finalize. At the end what the operator checks: the
ring (`nodetool status` from every node: all UN, ownership adding up to the factor), every
node's release v2, the data (verify old against new: 0 differences; the tenants' objects new
serves as old served them, and still after the ring's last steps), the computes on v2.

rolling on 3 nodes (3 ring JVMs beside the session's two) and grow 3 -> 5 -> 3 (5 at the
peak). rolling takes 5-6.5 minutes here (308-378 s on 2 cores: world up 52-120 s, ring plan
35-41 s, to run-sync 29-44 s, ring computes 30 s, finalize 46-48 s, ring done 30-52 s; each
conversion is a Cassandra restart and about 10 nodetool JVM starts); grow 639-845 s (ring
plan 178-276 s, ring done 276-316 s), so it is `long`: `make test-long` runs it. stay (5
nodes, two leaving the ring and rejoining converted, factor 3 -> 4 -> 5) is `long` too: 733 s.
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
from demo.world import V1_VERSION, V2_VERSION, World, WorldOptions
from issu_tui.config import load_config
from issu_tui.journal import Journal
from issu_tui.orchestrator.plan import build_plan
from issu_tui.orchestrator.ringplan import ring_steps, step_marker
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


def _ring_run(world: World, times: dict[str, float], approach: str,
              when: str) -> dict[str, Any]:
    result = _timed(world, times, f"ring {when}", "ring", "run", "--approach", approach,
                    "--when", when, "--timeout", "900",
                    "--nodetool", str(nodetool_path(world.run_dir)),
                    timeout=2400)  # the whole phase (stay: 4 factor changes, 2 rejoins)
    assert result["ok"], result
    return result


def _ring_journal(world: World) -> tuple[dict[str, float], list[str]]:
    """The ring step markers (-> when each was done) and the ring events, in order."""
    journal = Journal.open(world.dir / "state", read_only=True)
    try:
        markers = {m: at for m, at in journal.steps_done().items() if m.startswith("ring.")}
        events = [e.message for e in journal.events(kind="ring", limit=5000)]
    finally:
        journal.close()
    return markers, events


def _step_times(world: World) -> str:
    """Each ring step after the first: seconds from the marker before it to its own
    (across phases the gap holds what ran between them)."""
    if not (world.dir / "state" / "journal.db").exists():
        return "(no journal)"
    markers, _ = _ring_journal(world)
    done = sorted(markers.items(), key=lambda kv: kv[1])
    return ", ".join(f"{m} {at - before:.0f} s" for (m, at), (_, before)
                     in zip(done[1:], done[:-1], strict=True))


def _rss(world: World) -> str:
    launcher = world.launcher()
    return ", ".join(f"{st.name} {st.rss_kib // 1024} MiB" for st in launcher.status(
        launcher.names(["ring", "ring-spare"]), probe=False) if st.rss_kib)


def _verify_zero_differences(world: World, times: dict[str, float]) -> None:
    began = time.monotonic()
    answer = issu(world, "sync", "verify", "--json", timeout=600)
    times["verify"] = round(time.monotonic() - began, 1)
    verified = json.loads(answer.stdout)  # one document over several lines
    assert answer.returncode == 0 and verified["ok"], answer.stdout[-3000:]
    totals = verified["totals"]
    assert totals["cells_compared"] > 0
    assert totals["missing"] + totals["extra"] + totals["different"] == 0, totals


@pytest.mark.slow
@pytest.mark.timeout(5400)
@pytest.mark.parametrize("approach", [
    "rolling",
    # 639-845 s here (two joins, factor 3 -> 5 -> 3 with their repairs, two decommissions)
    pytest.param("grow", marks=pytest.mark.long),
    # 733 s here (factor 3 -> 4, two leaves and rejoins, factor 4 -> 5: ring plan 426 s;
    # three conversions after finalize: ring done 79 s)
    pytest.param("stay", marks=pytest.mark.long)])
def test_an_approach_on_a_shared_ring_runs_through_with_sync_computes_and_finalize(
        services: Endpoints, approach: str) -> None:
    """rolling on 3 nodes (about 5 min here); grow 3 -> 5 -> 3 (5 ring JVMs at the peak
    beside the session's two; longer: two joins, factor 3 -> 5 -> 3 with their repairs, two
    decommissions); stay on 5 nodes: the two that leave the ring come back converted
    (emptied, v2 installed, bootstrapped), the other three are converted after finalize."""
    began = time.monotonic()
    times: dict[str, float] = {}
    world = fresh_world(services, computes=2, install_s=0.2, seed_projects=1,
                        approach=approach)
    times["world up"] = round(time.monotonic() - began, 1)
    try:
        layout = world.ring()
        assert layout is not None
        steps = ring_steps(approach, layout.old, layout.new, [layout.nodes[0]])
        gone = {n for s in steps if s.action == "decommission" for n in s.nodes}
        final = [n for n in layout.nodes if n not in gone]
        nodetool = _nodetool(world)
        v1, v2 = world.api_url("v1"), world.api_url("v2")
        # old's keyspaces on the ring at RF 3 (a node may stop while its ranges keep quorum)
        for node in layout.old:
            assert check_ring(nodetool, node, layout.old, "config_db_uuid", 3) == []

        plan = _timed(world, times, "plan", "plan", "--approach", approach)
        listed = [s for s in plan["steps"]
                  if any(n in " ".join(s["touches"]) for n in layout.nodes)]
        assert len(listed) >= len(steps), plan["steps"]

        _ring_run(world, times, approach, "plan")
        print(f"RSS after the ring steps of plan: {_rss(world)}")
        if approach in ("grow", "stay"):  # all 5 UN, every ISSU keyspace at factor 5
            for node in layout.nodes:
                assert check_ring(nodetool, node, layout.nodes, "config_db_uuid", 5) == []
        if approach == "stay":  # the two that left came back emptied and converted
            _, events = _ring_journal(world)
            rejoined = {s.nodes[0] for s in steps if s.action == "leave"}
            assert {n for n in rejoined if any(
                e.startswith(f"rejoin {n}: database directories emptied: ")
                for e in events)} == rejoined, events
            assert {n: release_path(world.dir, i).read_text().strip()
                    for i, n in enumerate(layout.nodes, 1)} == {
                n: V2_VERSION if n in rejoined else V1_VERSION for n in layout.nodes}
        assert _timed(world, times, "to run-sync", "phase", "run-sync")["ok"]
        if any(s.when == "computes" for s in steps):
            _ring_run(world, times, approach, "computes")
        upgraded = _timed(world, times, "computes", "compute", "upgrade", "all")
        assert upgraded["ok"], upgraded
        _verify_zero_differences(world, times)
        on_old = _tenant_objects(v1)
        assert any(k.startswith("virtual-network:") for k in on_old), on_old.keys()

        done = _timed(world, times, "finalize", "finalize")
        assert done["ok"], done
        assert _object_differences(on_old, _tenant_objects(v2)) == []
        if gone:  # the decommissions retire old's database: the way back closed first
            assert _timed(world, times, "close-way-back", "close-way-back")["ok"]
        _ring_run(world, times, approach, "done")

        markers = sorted(m for m in _ring_journal(world)[0] if not m.endswith(".cleared"))
        assert markers == sorted(step_marker(i, s) for i, s in enumerate(steps))
        # new's keyspace at the factor the approach leaves: stay's 5 (raised before sync)
        factor = 5 if approach == "stay" else 3
        for node in final:
            assert check_ring(nodetool, node, final, CONFIG_KEYSPACE, factor) == []
        releases = {n: release_path(world.dir, i).read_text().strip()
                    for i, n in enumerate(layout.nodes, 1) if n in final}
        assert releases == dict.fromkeys(final, "5.0.0")
        # new serves what old served, after its database nodes were converted (and grow's
        # old ones decommissioned)
        assert _object_differences(on_old, _tenant_objects(v2)) == []
        probed = issu_json(world, "compute", "status", "--probe")["computes"]
        assert [(c["name"], c["state"], c["probe"].get("version"), c["probe"].get("cluster"))
                for c in probed] == [("compute-1", "upgraded", "5.0.0", "new"),
                                     ("compute-2", "upgraded", "5.0.0", "new")], probed
    finally:
        print(f"{approach} times: {times}; RSS at the end: {_rss(world)}")
        print(f"{approach} ring steps: {_step_times(world)}")
        stop_world(world)
        print(f"{approach} whole test: {time.monotonic() - began:.0f} s")
