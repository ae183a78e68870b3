"""`issu ring run` end to end: the real CLI (a subprocess) against a real multi-node Cassandra
ring on loopback, nodetool and the controller profiles over real SSH on each node's address.

Each ring node is a controller host of the config (role database) whose profile drives its
Cassandra through `python -m demo.services start|stop|state` and names its directories
(`cassandra_dirs`). What is checked at the end is what the operator checks: `nodetool
status` from every node (exactly the expected nodes, all UN, each keyspace's ownership adding
up to its replicas), the rows all there, the journal's step markers.

grow runs in the smallest ring that has all its steps (2 -> 3 -> 2 instead of 3 -> 5 -> 3);
stay needs its five nodes. Both are `long` (2-4 minutes each here, with their rings):
`make test-long` runs them; make test's ring run-through is tests/test_approach_world.py's
rolling.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backends.cassandra.connection import CassandraSide, connect
from backends.cassandra.nodetool import Nodetool
from backends.cassandra.ringops import check_ring, wait_ring
from backends.ssh import SshExecutor, SshTarget
from demo.services import Endpoints, Launcher
from demo.services.plan import default_run_dir
from demo.services.ring import RingNodeService, nodetool_path, ring_address
from issu_tui.journal import Journal
from issu_tui.orchestrator.finalize import COMMIT_STEP
from tests.services_plugin import test_net
from tests.test_ring import _count, _create_rows

KEYSPACE = "v1_config_db_uuid"


@dataclass
class CliRing:
    launcher: Launcher
    nodes: list[str]         # the ring's first nodes, then the spares
    size: int
    nodetool: Nodetool
    config: Path
    state: Path


def _config(tmp: Path, launcher: Launcher, session: Endpoints, run_dir: Path, net: int,
            nodes: list[str], size: int, old: list[str], new: list[str]) -> Path:
    """issu.toml: old and new's database hosts, one controller entry per ring node with its
    own profile (its Cassandra service and directories)."""
    # the ring's own nodes and sshd; ZooKeeper and RabbitMQ are the session's (the test
    # profile's addresses on this net are theirs while `make test` runs)
    ssh, zk, rabbit = launcher.endpoints().ssh, session.zk_old, session.rabbit
    host = (f"{sys.executable} -m demo.services --net {net} --run-dir {run_dir} "
            f"--ring {size} --ring-spares {len(nodes) - size}")
    lines = [f'state_dir = "{tmp / "state"}"', "[ssh]",
             f'known_hosts = "{ssh.known_hosts_path}"']
    for side, hosts, prefix in (("old", old, "v1"), ("new", new, "v2")):
        lines += [f"[{side}]", f'name = "{side}"',
                  f'version = "{"4.1.0" if side == "old" else "5.0.0"}"',
                  f"cassandra = {{ hosts = {json.dumps(hosts)}, prefix = \"{prefix}\" }}",
                  f'zookeeper = {{ hosts = ["{zk.host}:{zk.port}"], prefix = "{prefix}" }}',
                  f'rabbit = {{ hosts = ["{rabbit.host}"], '
                  f'vhost = "{"/" if side == "old" else "/v2"}" }}']
    # A node of old is listed in [[old.controllers]] with its v1 profile, which cannot
    # install; a node of new also in [[new.controllers]] with its v2 profile, which
    # installs v2: the node's release, a file of its own (the demo ring's Cassandra is the
    # same for v1 and v2), read back by `version`. A conversion through the v1 profile fails.
    entry = ['roles = ["database"]', f'ssh_user = "{ssh.user}"',
             f'ssh_key = "{ssh.key_path}"', f"ssh_port = {ssh.port}"]
    for i, address in enumerate(nodes, 1):
        if address in old:
            lines += ["[[old.controllers]]", f'name = "db-{i}"', f'address = "{address}"',
                      *entry, f'profile = "ring{i}"']
        if address in new:
            lines += ["[[new.controllers]]", f'name = "db-{i}-v2"', f'address = "{address}"',
                      *entry, f'profile = "ring{i}-v2"']
    for i, svc in enumerate(launcher.names(["ring", "ring-spare"]), 1):
        node = launcher.service(svc)
        assert isinstance(node, RingNodeService)
        dirs = " ".join(str(d) for d in node.data_dirs())
        common = ['base = "demo"', f'host = "{host}"', f'cassandra_dirs = "{dirs}"',
                  'status = "{host} state {unit}"', f'services = {{ cassandra = "{svc}" }}']
        lines += [f"[controller_profiles.ring{i}]", *common,
                  f"[controller_profiles.ring{i}-v2]", *common,
                  f"install = \"sh -c 'echo $0 > {tmp}/release-{i}' {{version}}\"",
                  f'version = "cat {tmp}/release-{i}"']
    path = tmp / "issu.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture()
def cli_ring(request: pytest.FixtureRequest, tmp_path: Path,
             services: Endpoints) -> Iterator[CliRing]:
    size, spares, approach = request.param
    net = test_net()
    run_dir = Path(f"{default_run_dir('test', net)}-ringcli")
    nodes = [ring_address(net, i) for i in range(1, size + spares + 1)]
    hosts = {a: f"db-{i}" for i, a in enumerate(nodes, 1)}
    launcher = Launcher(net, "test", run_dir, ssh_hosts=hosts, ring=size, ring_spares=spares)
    launcher.down()
    shutil.rmtree(run_dir, ignore_errors=True)  # a decommissioned node cannot come back
    try:
        launcher.up(["ring", "ssh"])
        ssh = launcher.endpoints().ssh
        executor = SshExecutor(ssh.known_hosts_path, command_timeout_s=900)

        def target(address: str) -> SshTarget:
            return SshTarget(hosts[address], address, ssh.port, ssh.user, ssh.key_path)

        old = nodes[:size]
        new = nodes if approach == "grow" else old
        config = _config(tmp_path, launcher, services, run_dir.resolve(), net, nodes, size,
                         old, new)
        yield CliRing(launcher, nodes, size,
                      Nodetool(executor, target, (str(nodetool_path(run_dir)),)), config,
                      tmp_path / "state")
    finally:
        launcher.down()
        shutil.rmtree(run_dir, ignore_errors=True)


def _issu(ring: CliRing, *args: str) -> subprocess.CompletedProcess[str]:
    began = time.monotonic()
    done = subprocess.run(
        [str(Path(sys.executable).with_name("issu")), *args, "-c", str(ring.config), "--json"],
        capture_output=True, text=True, timeout=1800, check=False)
    print(f"issu {' '.join(args)}: exit {done.returncode} in "
          f"{time.monotonic() - began:.0f} s")
    return done


def _issu_ring_run(ring: CliRing, approach: str, when: str) -> dict[str, object]:
    done = _issu(ring, "ring", "run", "--approach", approach, "--when", when, "--timeout",
                 "900", "--nodetool", str(nodetool_path(ring.launcher.ctx.run_dir)))
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def _journal(ring: CliRing) -> tuple[list[str], list[str]]:
    journal = Journal.open(ring.state, read_only=True)
    try:
        markers = sorted(m for m in journal.steps_done() if m.startswith("ring."))
        events = [e.message for e in journal.last_events(500) if e.kind == "ring"]
    finally:
        journal.close()
    return markers, events


def _finalized(ring: CliRing, approach: str) -> None:
    """What finalize leaves in the journal (its commit marked, the phase done), for the
    steps of `done`."""
    journal = Journal.open(ring.state)
    try:
        journal.set_approach(approach)
        journal.mark_step(COMMIT_STEP)
        journal.set_phase("done", status="done")
    finally:
        journal.close()


def _releases(ring: CliRing) -> dict[int, str]:
    """node number -> the release its v2 profile's `install` wrote (none: not installed)"""
    return {int(p.name.rsplit("-", 1)[1]): p.read_text().strip()
            for p in ring.config.parent.glob("release-*")}


def _rss_mib(ring: CliRing) -> dict[str, int]:
    return {st.name: st.rss_kib // 1024
            for st in ring.launcher.status(ring.launcher.names(["ring", "ring-spare"]),
                                           probe=False) if st.rss_kib}


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("cli_ring", [(2, 1, "grow")], indirect=True)
def test_issu_ring_run_grow_expands_then_shrinks_a_real_ring(cli_ring: CliRing) -> None:
    ring = cli_ring
    first, second, spare = ring.nodes
    wait_ring(ring.nodetool, [first, second], [first, second], "ring up", timeout_s=300)
    side = CassandraSide("ring", (first,))
    _create_rows(side, "{'class': 'SimpleStrategy', 'replication_factor': 2}",
                 keyspace=KEYSPACE)

    _issu_ring_run(ring, "grow", "plan")
    print(f"RSS per node after the join: {_rss_mib(ring)}")
    for node in ring.nodes:
        assert check_ring(ring.nodetool, node, ring.nodes, KEYSPACE, 3) == []

    _finalized(ring, "grow")
    with connect(side, request_timeout=60) as conn:
        # two nodes at the end: Cassandra's own system_distributed (RF 3) must fit them
        # (3 -> 5 -> 3 ends with three nodes: it fits there)
        conn.session.execute("ALTER KEYSPACE system_distributed WITH replication = "
                             "{'class': 'SimpleStrategy', 'replication_factor': 2}")
    # the decommission retires old's database, which revert goes back to: refused, before
    # any step, until the operator closes the way back
    refused = _issu(ring, "ring", "run", "--approach", "grow", "--when", "done",
                    "--nodetool", str(nodetool_path(ring.launcher.ctx.run_dir)))
    assert refused.returncode != 0
    assert "issu close-way-back" in refused.stdout + refused.stderr, refused.stdout
    assert f"decommission {second}" in refused.stdout + refused.stderr, refused.stdout
    assert _journal(ring)[0] == sorted([f"ring.0.join.{spare}",
                                        f"ring.1.replication.{first}+{second}+{spare}"])
    closed = _issu(ring, "close-way-back")
    assert closed.returncode == 0, closed.stdout + closed.stderr
    _issu_ring_run(ring, "grow", "done")
    for node in (first, spare):
        assert check_ring(ring.nodetool, node, [first, spare], KEYSPACE, 2) == []
    with connect(side, request_timeout=60) as conn:
        assert _count(conn.session, KEYSPACE) == 200
    markers, events = _journal(ring)
    assert markers == sorted([f"ring.0.join.{spare}", f"ring.1.replication.{first}+{second}+"
                              f"{spare}", f"ring.2.stop.{first}+{second}",
                              f"ring.3.convert.{first}",
                              f"ring.4.replication.{first}+{second}+{spare}",
                              f"ring.5.decommission.{second}"])
    assert any(f"keyspace {KEYSPACE} (2 -> 3): reads at (LOCAL_)QUORUM stay complete" in e
               for e in events), events
    assert _releases(ring) == {1: "5.0.0"}  # the node kept, converted through ring1-v2


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("cli_ring", [(5, 0, "stay")], indirect=True)
def test_issu_ring_run_stay_converts_five_nodes_two_rejoining(cli_ring: CliRing) -> None:
    ring = cli_ring
    nodes = ring.nodes
    wait_ring(ring.nodetool, nodes, nodes, "ring up", timeout_s=600)
    print(f"RSS per node, 5 up: {_rss_mib(ring)}")
    side = CassandraSide("ring", (nodes[0],))
    _create_rows(side, "{'class': 'SimpleStrategy', 'replication_factor': 3}",
                 keyspace=KEYSPACE)

    journal = Journal.open(ring.state)  # what `issu plan --approach stay` records
    try:
        journal.set_approach("stay")
    finally:
        journal.close()
    _issu_ring_run(ring, "stay", "plan")
    for node in nodes:
        assert check_ring(ring.nodetool, node, nodes, KEYSPACE, 5) == []
    markers, events = _journal(ring)
    # the two nodes that left rejoin as v2: emptied, then v2 installed through their v2
    # profile and read back (before, they restarted through their v1 profile: no release)
    assert _releases(ring) == {4: "5.0.0", 5: "5.0.0"}
    for i, node in ((4, nodes[3]), (5, nodes[4])):
        emptied = next(n for n, e in enumerate(events)
                       if e.startswith(f"rejoin {node}: database directories emptied: cleared "))
        # the version read back through the v2 profile (the demo profile asks api-server)
        converted = next(n for n, e in enumerate(events)
                         if e.startswith(f"db-{i}-v2: converted to 5.0.0 (api-server reports "
                                         "5.0.0)"))
        assert emptied < converted, events
    _finalized(ring, "stay")
    _issu_ring_run(ring, "stay", "done")
    for node in nodes:
        assert check_ring(ring.nodetool, node, nodes, KEYSPACE, 5) == []
    with connect(side, request_timeout=60) as conn:
        assert _count(conn.session, KEYSPACE) == 200
    assert _releases(ring) == {i: "5.0.0" for i in range(1, 6)}
    recorded = json.loads((ring.state / "converted-nodes.json").read_text())
    assert {a: r["profile"] for a, r in recorded.items()} == {
        a: f"ring{i}-v2" for i, a in enumerate(nodes, 1)}
    markers, _ = _journal(ring)
    fourth, fifth = nodes[-2:]
    assert {f"ring.2.convert.{fourth}.cleared", f"ring.4.convert.{fifth}.cleared",
            *(f"ring.{i}.convert.{n}" for i, n in zip((7, 8, 9), nodes[:3], strict=True))
            } <= set(markers)
    print(f"RSS per node at the end: {_rss_mib(ring)}")
