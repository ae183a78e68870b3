"""Ring operations on a real multi-node Cassandra ring, with nodetool over real SSH.

The ring is this file's own (its own launcher, run directory and addresses 127.<net>.0.41..),
never the shared `services` fixture's processes. One test runs the grow approach's ring
steps through the runner (guard, step, `nodetool status` check) and then removes a dead
node; the rows stay readable throughout. It takes a few minutes (three JVMs started one
after the other, a bootstrap, a restart, a decommission). The tests on a real ring are
`long` (about 6 minutes together here): `make test-long` runs them.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cassandra import ConsistencyLevel, InvalidRequest
from cassandra.query import SimpleStatement

from backends.cassandra.connection import CassandraSide, connect
from backends.cassandra.nodetool import (
    NodeStatus,
    Nodetool,
    NodetoolError,
    parse_seeds,
    parse_status,
)
from backends.cassandra.ring import ownership, read_ring
from backends.cassandra.ringops import (
    RingOpError,
    check_ring,
    decommission,
    reads_during_repair,
    remove_dead_node,
    set_replication,
    wait_ring,
)
from backends.controller import ControllerExecutor
from backends.ssh import SshExecutor, SshTarget
from demo.services import Launcher
from demo.services.plan import default_run_dir
from demo.services.ring import RingNodeService, nodetool_path, ring_address
from issu_tui.config import ControllerHostConfig
from issu_tui.orchestrator.convert import Conversion, convert_node, converted
from issu_tui.orchestrator.quorum import guard_ring
from issu_tui.orchestrator.ringplan import RingStep, ring_steps
from issu_tui.orchestrator.ringrun import RingHooks, RingRunner, RingStepRefused
from tests.services_plugin import test_net

STATUS = """Datacenter: datacenter1
=======================
Status=Up/Down
|/ State=Normal/Leaving/Joining/Moving
--  Address      Load        Tokens  Owns (effective)  Host ID                               Rack
UN  127.45.0.41  114.35 KiB  1       66.7%             6449bbbc-3642-4fa8-a379-fa25dbfbf9d9  rack1
DN  127.45.0.42  ?           1       66.7%             83da27e1-3ea1-4c6a-a484-cd63b2fe70b2  rack1
UJ  127.45.0.44  98 bytes    1       ?                 c765483a-a030-49c5-9c43-778c9d86a73c  rack1
"""


# What 5.0 prints when every node has a single token (a ring shrunk to one node here).
ONE_TOKEN = """--  Address  Load  Owns (effective)  Host ID  Token  Rack
UN  127.35.0.41  220.88 KiB  100.0%  63bd8ac4-7447-4029-9a5e-72a0a77df0bb  -9223372036854775808 r1
"""


def test_parse_status() -> None:
    nodes = parse_status(STATUS)
    assert [(n.address, n.state, n.owns) for n in nodes] == [
        ("127.45.0.41", "UN", 66.7), ("127.45.0.42", "DN", 66.7), ("127.45.0.44", "UJ", None)]
    assert nodes[1].host_id.startswith("83da27e1") and not nodes[2].normal
    (one,) = parse_status(ONE_TOKEN)
    assert (one.address, one.state, one.owns, one.tokens) == ("127.35.0.41", "UN", 100.0, 1)
    assert one.host_id == "63bd8ac4-7447-4029-9a5e-72a0a77df0bb"
    assert {n.datacenter for n in nodes} == {"datacenter1"} and one.datacenter == ""


def test_parse_seeds() -> None:
    # Cassandra 5.0.8's own lines (a ring's second node; its seed, which lists no other)
    assert parse_seeds("Current list of seed node IPs, excluding the current node's IP: "
                       "/127.31.0.41:7000 /127.31.0.43:7000\n") == ["127.31.0.41", "127.31.0.43"]
    assert parse_seeds("Seed node list does not contain any remote node IPs\n") == []


class _GossipLag:
    """nodetool status as each node sees a joining node: UN at once on the first node,
    only after `lag` more polls on the second (gossip reaches nodes one after another)."""

    def __init__(self, nodes: list[str], joining: str, lag: int) -> None:
        self.nodes, self.joining, self.lag = nodes, joining, lag
        self.polls: dict[str, int] = {}

    def status(self, address: str, keyspace: str | None = None) -> list[NodeStatus]:
        seen = self.polls[address] = self.polls.get(address, 0) + 1
        late = address == self.nodes[1] and seen <= self.lag
        return [NodeStatus(n, "UJ" if n == self.joining and late else "UN", 1, None,
                           f"00000000-0000-0000-0000-00000000000{i}", "dc1")
                for i, n in enumerate([*self.nodes, self.joining])]


def test_a_join_is_done_only_once_every_node_sees_the_new_one_normal() -> None:
    """CI failed on the factor change after a join: the join's check had asked one node,
    another still saw the new node joining and refused ALTER KEYSPACE."""
    first, second, spare = "127.9.0.1", "127.9.0.2", "127.9.0.3"
    nodetool = _GossipLag([first, second], spare, lag=2)
    started: list[str] = []
    runner = RingRunner(CassandraSide("ring", (first,)), nodetool,  # type: ignore[arg-type]
                        RingHooks(start_database=started.append, convert=started.append,
                                  stop_v1=started.append), ["ks"], poll_s=0.01)
    runner.run([RingStep("plan", "join", (spare,), f"join {spare}")])
    assert started == [spare]
    assert nodetool.polls.get(second) == 3  # asked until it, too, saw the new node UN


def test_a_seed_is_refused_before_it_leaves_to_rejoin() -> None:
    """Without old.cassandra.seeds the plan may pick a seed for stay's leave and rejoin; a
    seed does not bootstrap. The runner asks a node that stays (nodetool getseeds) and
    refuses the leave, naming the seed, before anything is guarded or decommissioned."""
    nodes = [f"127.9.0.{i}" for i in range(1, 6)]
    leave = next(s for s in ring_steps("stay", nodes, nodes) if s.action == "leave")
    assert leave.nodes == (nodes[3],)
    asked: list[str] = []

    class Seeds(_GossipLag):
        def seeds(self, address: str) -> list[str]:
            asked.append(address)
            if address == nodes[0]:
                raise NodetoolError(f"nodetool getseeds on {address}: Connection refused")
            return [nodes[3]]

        def decommission(self, address: str, timeout_s: float | None = None) -> None:
            raise AssertionError(f"decommissioned {address}")

    runner = RingRunner(CassandraSide("ring", (nodes[0],)),
                        Seeds(nodes[:4], nodes[4], lag=0),  # type: ignore[arg-type]
                        RingHooks(start_database=print, convert=print, stop_v1=print),
                        ["ks"], poll_s=0.01)
    with pytest.raises(RingStepRefused, match=r"127\.9\.0\.4 is a seed of the ring "
                       r"\(nodetool getseeds on 127\.9\.0\.2\): a seed does not bootstrap"):
        runner.run([leave], first_index=1)
    assert asked == [nodes[0], nodes[1]]


def test_a_node_down_leaves_by_removenode_through_a_live_node() -> None:
    """A node to decommission that is down cannot stream its ranges away: after the guard,
    the step removes it with `nodetool removenode <its host id>` through a node that stays,
    says so, and is done once every remaining node sees the others UN; a node up is
    decommissioned as before."""
    nodes = ["127.9.0.1", "127.9.0.2", "127.9.0.3"]
    ids = {n: f"00000000-0000-0000-0000-00000000000{i}" for i, n in enumerate(nodes)}

    class DeadThird:
        def __init__(self) -> None:
            self.ran: list[tuple[str, ...]] = []
            self.gone: set[str] = set()

        def status(self, address: str, keyspace: str | None = None) -> list[NodeStatus]:
            return [NodeStatus(n, "DN" if n == nodes[2] else "UN", 1, None, ids[n], "dc1")
                    for n in nodes if n not in self.gone]

        def removenode(self, via: str, host_id: str) -> None:
            self.ran.append(("removenode", via, host_id))
            self.gone.add(nodes[2])

        def decommission(self, address: str, timeout_s: float | None = None) -> None:
            self.ran.append(("decommission", address))
            self.gone.add(address)

    nodetool = DeadThird()
    events: list[str] = []
    guarded: list[str] = []
    runner = RingRunner(CassandraSide("ring", (nodes[0],)), nodetool,  # type: ignore[arg-type]
                        RingHooks(start_database=print, convert=print, stop_v1=print), ["ks"],
                        on_event=events.append, poll_s=0.01)
    runner.guard = lambda step: guarded.append(step.does)  # type: ignore[method-assign]
    runner.run([RingStep("done", "decommission", (nodes[2],), f"decommission {nodes[2]}",
                         stops=(nodes[2],)),
                RingStep("done", "decommission", (nodes[1],), f"decommission {nodes[1]}",
                         stops=(nodes[1],))])
    assert guarded == [f"decommission {nodes[2]}", f"decommission {nodes[1]}"]
    assert nodetool.ran == [("removenode", nodes[0], ids[nodes[2]]),
                            ("decommission", nodes[1])]
    assert any(f"{nodes[2]} is down (DN as {nodes[0]} sees it)" in e
               and f"nodetool removenode {ids[nodes[2]]}" in e for e in events), events


@dataclass
class Ring:
    launcher: Launcher
    old: list[str]
    spares: list[str]
    nodetool: Nodetool
    target: Callable[[str], SshTarget]
    known_hosts: Path

    def service(self, address: str) -> str:
        return f"cassandra-ring-{[*self.old, *self.spares].index(address) + 1}"


@pytest.fixture()
def ring(request: pytest.FixtureRequest) -> Iterator[Ring]:
    """A ring of `size` nodes and `spares` that can join (the test's parameter)."""
    size, spares = getattr(request, "param", (2, 1))
    net = test_net()
    run_dir = Path(f"{default_run_dir('test', net)}-ring")
    addresses = [ring_address(net, i) for i in range(1, size + spares + 1)]
    hosts = {a: f"db-{i}" for i, a in enumerate(addresses, 1)}
    launcher = Launcher(net, "test", run_dir, ssh_hosts=hosts, ring=size, ring_spares=spares)
    launcher.down()
    shutil.rmtree(run_dir, ignore_errors=True)  # a decommissioned node cannot come back
    try:
        launcher.up(["ring", "ssh"])
        ssh = launcher.endpoints().ssh
        executor = SshExecutor(ssh.known_hosts_path, command_timeout_s=900)

        def target(address: str) -> SshTarget:
            return SshTarget(hosts[address], address, ssh.port, ssh.user, ssh.key_path)

        yield Ring(launcher, addresses[:size], addresses[size:],
                   Nodetool(executor, target, (str(nodetool_path(run_dir)),)), target,
                   ssh.known_hosts_path)
    finally:
        launcher.down()
        shutil.rmtree(run_dir, ignore_errors=True)


def _converter(ring: Ring, state_dir: Path, calls: list[tuple[str, str]]
               ) -> Callable[[str], None]:
    """The runner's convert through the real convert_node: each node's v1 profile (the
    demo ring's Cassandra driven over SSH) stops it, its v2 profile installs the release (a
    file of the node's own: the demo's Cassandra is the same for v1 and v2), starts the
    database and reads the version back."""
    nodes = [*ring.old, *ring.spares]
    run_dir = ring.launcher.ctx.run_dir.resolve()
    host = (f"{sys.executable} -m demo.services --net {test_net()} --run-dir {run_dir} "
            f"--ring {len(ring.old)} --ring-spares {len(ring.spares)}")
    profiles: dict[str, dict[str, object]] = {}
    for i, address in enumerate(nodes, 1):
        common = {"base": "demo", "host": host, "status": "{host} state {unit}",
                  "services": {"cassandra": ring.service(address)}}
        profiles[f"node{i}"] = common
        profiles[f"node{i}-v2"] = {
            **common, "install": f"sh -c 'echo $0 > {state_dir}/release-{i}' {{version}}",
            "version": f"cat {state_dir}/release-{i}"}
    controllers = ControllerExecutor(ring.known_hosts, profiles=profiles)

    def entry(address: str, suffix: str) -> ControllerHostConfig:
        i = nodes.index(address) + 1
        return ControllerHostConfig(name=f"db-{i}{suffix}", address=address,
                                    ssh_key=ring.target(address).key_path, roles=["database"],
                                    profile=f"node{i}{suffix}")

    def convert(node: str) -> None:
        calls.append(("convert", node))
        convert_node(controllers, Conversion(entry(node, ""), entry(node, "-v2"), "5.0.0"),
                     ring.target(node), state_dir, print)

    return convert


def _releases(state_dir: Path) -> dict[str, str]:
    """address -> the release each converted node reports, from the conversion's record"""
    return {address: record["version"] for address, record in converted(state_dir).items()}


def _count(session: object, keyspace: str) -> int:
    statement = SimpleStatement(f"SELECT count(*) FROM {keyspace}.t",
                                consistency_level=ConsistencyLevel.ONE)
    row = session.execute(statement).one()  # type: ignore[attr-defined]
    return int(row[0])


def _create_rows(side: CassandraSide, replication: str, keyspace: str = "ks") -> None:
    with connect(side, request_timeout=60) as conn:
        session = conn.session
        session.execute(f"CREATE KEYSPACE IF NOT EXISTS {keyspace} "
                        f"WITH replication = {replication}")
        # on a ring, the next statement's coordinator may not know the keyspace yet when the
        # driver's own wait for schema agreement gave up (a loaded box): wait for it
        deadline = time.monotonic() + 120
        while not conn.cluster.control_connection.wait_for_schema_agreement(wait_time=10):
            assert time.monotonic() < deadline, "the ring never agreed on the new keyspace"
        while True:
            try:
                session.execute(f"CREATE TABLE IF NOT EXISTS {keyspace}.t "
                                "(k int PRIMARY KEY, v text)")
                break
            except InvalidRequest as exc:
                if "doesn't exist" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(1)
        while not conn.cluster.control_connection.wait_for_schema_agreement(wait_time=10):
            assert time.monotonic() < deadline, "the ring never agreed on the new table"
        for k in range(200):
            session.execute(f"INSERT INTO {keyspace}.t (k, v) VALUES (%s, %s)", (k, f"v{k}"))


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.timeout(900)  # three JVMs, a bootstrap, two repairs, a decommission, a removenode
@pytest.mark.parametrize("ring", [(2, 1)], indirect=True)
def test_grow_on_a_real_ring(ring: Ring, tmp_path: Path) -> None:
    """grow through the runner, in the smallest ring that has all its steps (2 -> 3 -> 2
    instead of 3 -> 5 -> 3: three JVMs instead of five): join, factor up (repair), stop v1,
    convert one old node, factor down, decommission the other, which died first (so the
    step removes it: guarded, then removenode through a node that stays); then a node dies
    and is removed."""
    first, second = ring.old
    (spare,) = ring.spares
    nodetool = ring.nodetool
    wait_ring(nodetool, first, ring.old, "ring up", timeout_s=300)
    side = CassandraSide("ring", (first,))
    # NetworkTopologyStrategy: the steps keep it (and its datacenter), changing the factor
    _create_rows(side, "{'class': 'NetworkTopologyStrategy', 'datacenter1': 2}")
    calls: list[tuple[str, str]] = []
    markers: set[str] = set()
    hooks = RingHooks(start_database=lambda n: ring.launcher.start(ring.service(n)),
                      convert=_converter(ring, tmp_path, calls),
                      stop_v1=lambda n: calls.append(("stop", n)))
    events: list[str] = []
    runner = RingRunner(side, nodetool, hooks, ["ks"], step_done=markers.__contains__,
                        mark_step=markers.add, on_event=events.append)
    steps = ring_steps("grow", ring.old, [*ring.old, spare])
    grown = [*ring.old, spare]

    runner.run([s for s in steps if s.when == "plan"])
    assert check_ring(nodetool, second, grown, "ks", 3) == []
    with connect(side, request_timeout=60) as conn:
        view = read_ring(conn.cluster, conn.session, ["ks"])
        ks = view.keyspace("ks")
        assert ks is not None and ks.dc_factors == (("datacenter1", 3),)
        assert ks.strategy == "NetworkTopologyStrategy"
        refused = guard_ring(view, "convert two", [first, second])
        assert not refused.ok and "keyspace ks" in str(refused.refusals[0])

    done = [s for s in steps if s.when == "done"]
    # Shrinking to two nodes: Cassandra's own system_distributed (RF 3) would not fit, and
    # the guard says so before the decommission (the steps before it are done and marked).
    with pytest.raises(RingStepRefused, match="keyspace system_distributed") as refused:
        runner.run(done, first_index=len(steps) - len(done))
    assert f"decommission {second}" in str(refused.value)
    with connect(side, request_timeout=60) as conn:
        conn.session.execute("ALTER KEYSPACE system_distributed WITH replication = "
                             "{'class': 'SimpleStrategy', 'replication_factor': 2}")
        # the node to decommission dies first: it cannot stream its ranges away; the step,
        # guarded (two live nodes hold RF 2), removes it through a node that stays
        ring.launcher.stop(ring.service(second))
        deadline = time.monotonic() + 120
        while second not in read_ring(conn.cluster, conn.session, ["ks"]).down:
            assert time.monotonic() < deadline, "the driver never saw the node go down"
            time.sleep(1)
    runner.run(done, first_index=len(steps) - len(done))
    assert any(f"{second} is down (DN as {first} sees it)" in e and "removenode" in e
               for e in events), events
    assert calls == [("stop", first), ("stop", second), ("convert", first)]
    # the node kept runs v2 (installed through its v2 profile, read back) and serves
    assert _releases(tmp_path) == {first: "5.0.0"}
    assert (tmp_path / "release-1").read_text().strip() == "5.0.0"
    assert any(e == f"{steps[3].does}: {first} serves: UN, owns ks 100.0%" for e in events), \
        events
    assert check_ring(nodetool, first, [first, spare], "ks", 2) == []
    runner.run(steps)  # every step is marked: a re-run does nothing
    assert calls == [("stop", first), ("stop", second), ("convert", first)]
    # a decommission run again (its marker lost after a timeout) passes the node gone
    decommission(nodetool, second, [first, spare], timeout_s=120)
    assert check_ring(nodetool, first, [first, spare], "ks", 2) == []

    with connect(side, request_timeout=60) as conn:
        assert _count(conn.session, "ks") == 200
        # a node dies: the guard counts it, then removenode takes it out of the ring
        ring.launcher.stop(ring.service(spare))
        deadline = time.monotonic() + 120
        while spare not in read_ring(conn.cluster, conn.session, ["ks"]).down:
            assert time.monotonic() < deadline, "the driver never saw the node go down"
            time.sleep(1)
        refused = guard_ring(read_ring(conn.cluster, conn.session, ["ks"]),
                             f"convert {first}", [first])
        assert not refused.ok and f"{spare} (down)" in str(refused.refusals[0])
        with pytest.raises(RingOpError, match="it is up"):
            remove_dead_node(nodetool, first, first, [first])
        remove_dead_node(nodetool, first, spare, [first])
        assert _count(conn.session, "ks") == 200


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.timeout(900)  # three JVMs, each stopped and started by its conversion, one down
@pytest.mark.parametrize("ring", [(3, 0)], indirect=True)
def test_rolling_on_a_real_ring(ring: Ring, tmp_path: Path) -> None:
    """rolling on three nodes: each node converted in turn (its database restarted), the
    guard refusing a conversion while another node is down, the rows intact at the end."""
    first, second, third = ring.old
    nodetool = ring.nodetool
    wait_ring(nodetool, first, ring.old, "ring up", timeout_s=300)
    side = CassandraSide("ring", (first,))
    _create_rows(side, "{'class': 'SimpleStrategy', 'replication_factor': 3}")
    # the converted nodes' serving check reads ownership from the driver's token map: the
    # same share `nodetool status <keyspace>` prints, on a keyspace where it is not 100%
    _create_rows(side, "{'class': 'SimpleStrategy', 'replication_factor': 1}", "ks1")
    with connect(side, request_timeout=60) as conn:
        view = read_ring(conn.cluster, conn.session, ["ks1"])
    ks1 = view.keyspace("ks1")
    assert ks1 is not None
    printed = {n.address: n.owns for n in nodetool.status(first, "ks1")}
    shares = {n: ownership(ks1, n, view.partitioner) for n in ring.old}
    assert all(abs((shares[n] or 0) - (printed[n] or 0)) < 0.06 for n in ring.old), \
        (shares, printed)
    assert 99.9 < sum(s or 0 for s in shares.values()) < 100.1
    calls: list[tuple[str, str]] = []
    hooks = RingHooks(start_database=lambda n: ring.launcher.start(ring.service(n)),
                      convert=_converter(ring, tmp_path, calls), stop_v1=lambda n: None)
    markers: set[str] = set()
    runner = RingRunner(side, nodetool, hooks, ["ks"], step_done=markers.__contains__,
                        mark_step=markers.add)
    steps = ring_steps("rolling", ring.old, ring.old)
    runner.run([s for s in steps if s.when in ("plan", "computes")])
    assert calls == [("convert", first), ("convert", second)]
    assert _releases(tmp_path) == {first: "5.0.0", second: "5.0.0"}

    # the single point of failure: with the third node down, converting another is refused
    ring.launcher.stop(ring.service(third))
    try:
        with connect(side, request_timeout=60) as conn:
            deadline = time.monotonic() + 120
            while third not in read_ring(conn.cluster, conn.session, ["ks"]).down:
                assert time.monotonic() < deadline, "the driver never saw the node go down"
                time.sleep(1)
        with pytest.raises(RingStepRefused) as refused:
            runner.guard(steps[0])
        message = str(refused.value)
        assert "keyspace ks" in message and f"{third} (down)" in message
        assert f"{first} (stopped by the step)" in message and steps[0].does in message
    finally:
        ring.launcher.start(ring.service(third))
    wait_ring(nodetool, first, ring.old, "third node back", timeout_s=300)

    done = [s for s in steps if s.when == "done"]
    runner.run(done, first_index=len(steps) - len(done))
    assert calls == [("convert", first), ("convert", second), ("convert", third)]
    assert _releases(tmp_path) == {node: "5.0.0" for node in ring.old}
    assert check_ring(nodetool, second, ring.old, "ks", 3) == []
    with connect(side, request_timeout=60) as conn:
        assert _count(conn.session, "ks") == 200


class _Schema:
    """A session that answers the replication read and records the statements run."""

    def __init__(self, replication: dict[str, str]) -> None:
        self.replication = replication
        self.ran: list[str] = []

    def execute(self, query: str, params: object = None) -> object:
        self.ran.append(query)
        row = (self.replication,)
        return type("Result", (), {"one": lambda _self: row})()


def test_a_factor_change_waits_for_a_node_without_a_known_datacenter() -> None:
    """Counted in no datacenter, a node just joined would have lowered the factor asked for
    (3 nodes, one unplaced: 'datacenter1': 2); the step refuses, naming it, and runs again."""
    session = _Schema({"class": "org.apache.cassandra.locator.NetworkTopologyStrategy",
                       "datacenter1": "2"})
    nodes = ["127.9.0.1", "127.9.0.2", "127.9.0.3"]
    with pytest.raises(RingOpError, match=r"datacenter of 127\.9\.0\.3 is not known"):
        set_replication(session, None, "ks", 3, nodes,  # type: ignore[arg-type]
                        {"127.9.0.1": "datacenter1", "127.9.0.2": "datacenter1"})
    assert not any(q.startswith("ALTER") for q in session.ran)


def test_a_rerun_reads_the_ring_through_a_node_that_answers() -> None:
    """A convert stops the ring's first contact point: killed then, the re-run must still
    read the ring (through another node) and skip the steps already done."""
    first, second, spare = "127.9.0.1", "127.9.0.2", "127.9.0.3"

    class FirstDown(_GossipLag):
        def status(self, address: str, keyspace: str | None = None) -> list[NodeStatus]:
            if address == first:
                raise NodetoolError(f"nodetool status on {first}: Connection refused")
            return super().status(address, keyspace)

    nodetool = FirstDown([first, second], spare, lag=0)
    started: list[str] = []
    runner = RingRunner(CassandraSide("ring", (first,)), nodetool,  # type: ignore[arg-type]
                        RingHooks(start_database=started.append, convert=started.append,
                                  stop_v1=started.append), ["ks"],
                        step_done=lambda _key: True, poll_s=0.01)
    runner.run([RingStep("plan", "join", (spare,), f"join {spare}"),
                RingStep("plan", "convert", (first,), f"convert {first}")])
    assert started == [] and nodetool.polls == {spare: 1}


def _repairs(session: object, keyspace: str) -> dict[tuple[str, str], list[int]]:
    """Cassandra's repair history of `keyspace`.t: per token range, the replica count of
    each repair session that covered it (its coordinator and participants)."""
    rows = session.execute(  # type: ignore[attr-defined]
        "SELECT range_begin, range_end, participants FROM system_distributed.repair_history "
        "WHERE keyspace_name = %s AND columnfamily_name = 't'", (keyspace,))
    seen: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        seen.setdefault((row[0], row[1]), []).append(1 + len(row[2] or ()))
    return seen


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.timeout(1200)  # four repair passes, a decommission and a bootstrap: ~5 min at load 35
@pytest.mark.parametrize("ring", [(3, 0)], indirect=True)
def test_factor_changes_and_a_node_rejoining_on_a_real_ring(ring: Ring) -> None:
    """Each factor change repairs every range once at the old factor and once at the new one
    (-pr on every node; without it each node repaired every range it holds), telling the
    operator how reads fare meanwhile. Then stay's leave and rejoin of a node: refused while
    the node is still in the ring (nothing stopped or cleared), else stopped, its
    directories emptied over SSH through its profile (journaled), and it bootstraps back.
    Then the same node, down: removed (removenode through a node that stays), rejoining."""
    first, second, third = ring.old
    nodetool = ring.nodetool
    wait_ring(nodetool, ring.old, ring.old, "ring up", timeout_s=300)
    side = CassandraSide("ring", (first,))
    _create_rows(side, "{'class': 'SimpleStrategy', 'replication_factor': 2}")
    events: list[str] = []
    calls: list[tuple[str, str]] = []
    markers: set[str] = set()
    profiles = {f"node{i}": {"base": "demo", "cassandra_dirs": " ".join(
        str(d) for d in svc.data_dirs())}
        for i, svc in enumerate((ring.launcher.service(ring.service(a)) for a in ring.old), 1)
        if isinstance(svc, RingNodeService)}
    controllers = ControllerExecutor(ring.known_hosts, profiles=profiles)

    def clear(node: str) -> list[str]:
        calls.append(("clear", node))
        return controllers.clear_cassandra_dirs(ring.target(node),
                                                f"node{ring.old.index(node) + 1}")

    def stop(node: str) -> None:
        calls.append(("stop", node))
        ring.launcher.stop(ring.service(node))

    def convert(node: str) -> None:  # v2 started on the emptied node: it bootstraps
        calls.append(("convert", node))
        ring.launcher.start(ring.service(node))

    hooks = RingHooks(start_database=lambda n: ring.launcher.start(ring.service(n)),
                      convert=convert, stop_v1=lambda n: None, stop_node=stop,
                      clear_data=clear)
    runner = RingRunner(side, nodetool, hooks, ["ks"], step_done=markers.__contains__,
                        mark_step=markers.add, on_event=events.append)

    runner.run([RingStep("plan", "replication", tuple(ring.old), "ks to 3", factor=3)])
    assert check_ring(nodetool, second, ring.old, "ks", 3) == []
    with connect(side, request_timeout=60) as conn:
        repairs = _repairs(conn.session, "ks")
    # one token per node: three ranges, each repaired at factor 2 (2 replicas) then 3
    assert len(repairs) == 3 and all(sorted(n) == [2, 3] for n in repairs.values()), repairs
    assert any("reads at (LOCAL_)QUORUM stay complete" in e and "2 -> 3" in e
               for e in events), events

    runner.run([RingStep("plan", "replication", tuple(ring.old), "ks to 2", factor=2)],
               first_index=1)
    assert check_ring(nodetool, second, ring.old, "ks", 2) == []
    with connect(side, request_timeout=60) as conn:
        repairs = _repairs(conn.session, "ks")
        assert all(sorted(n) == [2, 2, 3, 3] for n in repairs.values()), repairs
        # two nodes must hold Cassandra's own keyspaces once the third has left
        conn.session.execute("ALTER KEYSPACE system_distributed WITH replication = "
                             "{'class': 'SimpleStrategy', 'replication_factor': 2}")

    stay = [RingStep("plan", "leave", (third,), f"decommission {third}", stops=(third,)),
            RingStep("plan", "convert", (third,), f"convert {third}, it rejoins")]
    leave_key = f"ring.2.leave.{third}"
    markers.add(leave_key)  # the journal says it left; the ring says otherwise
    with pytest.raises(RingOpError, match=f"rejoin {third}: it is still in the ring \\(UN\\)"):
        runner.run(stay, first_index=2)
    assert calls == [] and check_ring(nodetool, first, ring.old) == []

    markers.discard(leave_key)
    runner.run(stay, first_index=2)
    assert calls == [("stop", third), ("clear", third), ("convert", third)]
    assert f"ring.3.convert.{third}.cleared" in markers
    (cleared,) = [e for e in events if e.startswith(f"rejoin {third}: database directories")]
    assert all(f"cleared {d}" in cleared for d in profiles["node3"]["cassandra_dirs"].split())
    for node in ring.old:
        assert check_ring(nodetool, node, ring.old, "ks", 2) == []
    with connect(side, request_timeout=60) as conn:
        assert _count(conn.session, "ks") == 200

    # the node to take out is down this time: it cannot be decommissioned; after the guard
    # it is removed (removenode through a node that stays), then it rejoins as above
    ring.launcher.stop(ring.service(third))
    deadline = time.monotonic() + 120
    while not any(n.address == third and n.state.startswith("D")
                  for n in nodetool.status(first)):
        assert time.monotonic() < deadline, f"{first} never saw {third} down"
        time.sleep(2)
    calls.clear()
    runner.run([RingStep("plan", "leave", (third,), f"decommission {third}", stops=(third,)),
                RingStep("plan", "convert", (third,), f"convert {third}, it rejoins")],
               first_index=4)
    # through whichever node that stays the runner asked first
    staying = [n for n in ring.old if n != third]
    assert any(f"{third} is down (DN as {node} sees it)" in e and "removenode" in e
               and f"through {node}" in e for e in events for node in staying), \
        "\n".join(events)
    assert calls == [("stop", third), ("clear", third), ("convert", third)]
    for node in ring.old:
        assert check_ring(nodetool, node, ring.old, "ks", 2) == []
    with connect(side, request_timeout=60) as conn:
        assert _count(conn.session, "ks") == 200


def test_what_reads_lose_while_a_factor_changes() -> None:
    """With every old replica repaired first, QUORUM at the new factor reaches one holding
    the row from 3 -> 5 (3 of 5) and 2 -> 3, not from 1 -> 3 (2 of 3 may both be new)."""
    simple = {"class": "SimpleStrategy"}
    assert "stay complete" in reads_during_repair(
        "ks", {**simple, "replication_factor": "3"}, {**simple, "replication_factor": "5"}, 5)
    degraded = reads_during_repair(
        "ks", {**simple, "replication_factor": "1"}, {**simple, "replication_factor": "3"}, 3)
    assert "degraded" in degraded and "replicas 1 -> 3" in degraded
    nts = "NetworkTopologyStrategy"
    assert "dc2 2 -> 5" in reads_during_repair(
        "ks", {"class": nts, "dc1": "3", "dc2": "2"}, {"class": nts, "dc1": "5", "dc2": "5"}, 5)
