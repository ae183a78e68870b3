"""The quorum guard: computed from the live ring's replicas and the ensemble's modes.

The unit tests build ring views by hand (several nodes, nodes already down, a stricter
threshold); the service-backed ones read the test network's real single-node Cassandra and
standalone ZooKeeper and stop nothing (the multi-node ring is tests/test_ring.py's).
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from backends.cassandra.connection import CassandraSide, connect
from backends.cassandra.ring import KeyspaceReplicas, RingNode, RingView, TokenRange, read_ring
from backends.cassandra.ringops import RingOpError
from backends.rabbit_cluster import RabbitStatusError, parse_cluster_status
from backends.zookeeper.ensemble import EnsembleView, Member, read_ensemble
from demo.services import Endpoints, Launcher
from demo.services.rabbitmq import RabbitService
from issu_tui.cli import cli
from issu_tui.orchestrator.quorum import (
    guard_ensemble,
    guard_leave,
    guard_rabbit,
    guard_ring,
    live_guard,
    unknown_nodes,
)
from issu_tui.orchestrator.ringplan import RingStep
from issu_tui.orchestrator.ringrun import RingHooks, RingRunner, RingStepRefused
from tests.test_controller import ssh  # noqa: F401

A, B, C, D, E = (f"10.0.0.{i}" for i in range(1, 6))


def _ring(nodes: list[str], down: tuple[str, ...] = (), factor: int = 3,
          name: str = "config_db_uuid") -> RingView:
    """SimpleStrategy placement: each range's replicas are its owner and the next nodes."""
    ranges = tuple(
        TokenRange(str(i - 1), str(i),
                   tuple(nodes[(i + k) % len(nodes)] for k in range(min(factor, len(nodes)))))
        for i in range(len(nodes)))
    return RingView("ring", tuple(RingNode(n, n not in down, "dc1", 1) for n in nodes),
                    (KeyspaceReplicas(name, "SimpleStrategy", factor, ranges),))


def test_one_node_of_three_keeps_quorum_two_do_not() -> None:
    ring = _ring([A, B, C])
    assert guard_ring(ring, "decommission", [A]).ok
    refused = guard_ring(ring, "convert node", [A, B])
    assert not refused.ok
    text = str(refused.refusals[0])
    assert "'convert node'" in text and "keyspace config_db_uuid" in text
    assert f"{A} (stopped by the step)" in text and f"{B} (stopped by the step)" in text


def test_a_node_already_down_counts() -> None:
    ring = _ring([A, B, C], down=(C,))
    refused = guard_ring(ring, "decommission 10.0.0.1", [A])
    assert not refused.ok
    assert f"{C} (down)" in str(refused.refusals[0])


def test_five_nodes_rf5_take_two_not_three() -> None:
    ring = _ring([A, B, C, D, E], factor=5)
    assert guard_ring(ring, "convert two", [A, B]).ok
    assert not guard_ring(ring, "convert three", [A, B, C]).ok


def test_rf3_on_five_nodes_refuses_any_two() -> None:
    """At RF 3 on five nodes any two nodes share some range's replicas: one at a time only."""
    ring = _ring([A, B, C, D, E], factor=3)
    assert guard_ring(ring, "one", [C]).ok
    for pair in ([A, B], [A, C], [A, D]):
        refused = guard_ring(ring, "two", pair)
        assert not refused.ok, pair
        assert "would keep 1" in str(refused.refusals[0])


def test_operator_threshold_is_stricter_than_quorum() -> None:
    ring = _ring([A, B, C, D, E], factor=5)
    assert guard_ring(ring, "convert two", [A, B]).ok
    strict = guard_ring(ring, "convert two", [A, B], min_replicas=4)
    assert not strict.ok
    assert "threshold of 4" in str(strict.refusals[0])


def test_a_ring_whose_ranges_cannot_be_read_is_refused() -> None:
    ring = _ring(["10.0.0.1", "10.0.0.2", "10.0.0.3"])
    blind = RingView(ring.cluster_name, ring.nodes,
                     (KeyspaceReplicas("config_db_uuid", "SimpleStrategy", 3, ()),))
    result = guard_ring(blind, "convert", ["10.0.0.1"])
    assert not result.ok
    assert "config_db_uuid" in str(result.refusals[0])
    assert "token ranges could not be read" in str(result.refusals[0])


def test_unknown_node_is_refused_by_name() -> None:
    ring = _ring([A, B, C])
    ensemble = EnsembleView((Member(D, 2181, "standalone"),))
    refused = unknown_nodes("decommission", ["10.9.9.9", D], ring, ensemble)
    assert not refused.ok
    assert "10.9.9.9 neither a Cassandra node nor a ZooKeeper member" in str(
        refused.refusals[0])
    assert unknown_nodes("stop", [A, D], ring, ensemble).ok


def test_ensemble_majority() -> None:
    three = EnsembleView(tuple(Member(h, 2181, "follower") for h in (A, B, C)))
    assert guard_ensemble(three, "stop one", [A]).ok
    refused = guard_ensemble(three, "stop two", [A, B])
    assert not refused.ok and "ZooKeeper ensemble" in str(refused.refusals[0])
    one_down = EnsembleView((Member(A, 2181, "leader"), Member(B, 2181, "unreachable"),
                             Member(C, 2181, "follower")))
    assert not guard_ensemble(one_down, "stop one", [A]).ok
    assert guard_ensemble(one_down, "stop nothing of it", ["10.9.9.9"]).ok


def test_a_host_named_by_name_is_the_host_stopped_by_address() -> None:
    """Members listed by host name and a step naming addresses (or the other way round)
    are the same hosts: `localhost` is 127.0.0.1."""
    ensemble = EnsembleView((Member("localhost", 2181, "leader"),
                             Member(B, 2181, "follower"), Member(C, 2181, "unreachable")))
    refused = guard_ensemble(ensemble, "stop the leader", ["127.0.0.1"])
    assert not refused.ok and "localhost (stopped by the step)" in str(refused.refusals[0])
    rabbit = parse_cluster_status('{"disk_nodes": ["rabbit@localhost", "rabbit@c2", '
                                  '"rabbit@c3"], "running_nodes": ["rabbit@localhost", '
                                  '"rabbit@c2"]}')
    refused = guard_rabbit(rabbit, "stop the broker", ["127.0.0.1"])
    assert not refused.ok and "rabbit@localhost (stopped by the step)" in str(
        refused.refusals[0])
    ring = _ring(["127.0.0.1", B, C], factor=3)
    assert unknown_nodes("stop", ["localhost"], ring, None).ok
    assert not guard_ring(ring, "stop two", ["localhost", B]).ok


def test_shared_ring_and_resolved_names_are_compared_by_address(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """preflight's "shared ring": old naming `localhost` and new `127.0.0.1` share a host;
    a resolved name is asked again once its answer is older than RESOLVE_TTL_S."""
    import socket

    from backends import hostport
    from issu_tui.orchestrator.preflight import shares_a_host

    assert shares_a_host(["localhost", B], ["127.0.0.1", D])
    assert not shares_a_host([A, B], [D, E])
    answers = iter(["10.9.0.1", "10.9.0.2"])

    def resolve(host: str, *_args: object, **_kw: object) -> list[tuple[object, ...]]:
        return [(0, 0, 0, "", (next(answers), 0))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    name = f"moved-{uuid.uuid4().hex}.example"
    assert "10.9.0.1" in hostport.addresses_of(name, now=0.0)
    assert "10.9.0.1" in hostport.addresses_of(name, now=hostport.RESOLVE_TTL_S - 1)
    assert "10.9.0.2" in hostport.addresses_of(name, now=hostport.RESOLVE_TTL_S + 1)


def _two_datacenters(down: tuple[str, ...] = ()) -> RingView:
    """NetworkTopologyStrategy {dc1: 3, dc2: 3} on three nodes in each datacenter."""
    dc1, dc2 = [A, B, C], [D, E, "10.0.0.6"]
    ranges = tuple(TokenRange(str(i - 1), str(i), (*dc1, *dc2)) for i in range(6))
    nodes = tuple(RingNode(n, n not in down, "dc1" if n in dc1 else "dc2", 1)
                  for n in dc1 + dc2)
    return RingView("ring", nodes, (KeyspaceReplicas(
        "config_db_uuid", "NetworkTopologyStrategy", 3, ranges,
        (("dc1", 3), ("dc2", 3))),))


def test_quorum_is_counted_in_each_datacenter() -> None:
    """Two nodes of dc1 down leave 4 of the 6 replicas (a global quorum) but lose dc1's
    LOCAL_QUORUM: refused, naming the datacenter."""
    ring = _two_datacenters()
    assert guard_ring(ring, "one in each", [A, D]).ok
    refused = guard_ring(ring, "two in dc1", [A, B])
    assert not refused.ok
    assert "in datacenter dc1, replication factor 3 needs 2" in str(refused.refusals[0])
    assert len(refused.refusals) == 1  # dc2 keeps its quorum
    assert not guard_ring(_two_datacenters(down=(E,)), "one in dc2", [D]).ok


def test_preflight_quorum_refuses_when_no_keyspace_is_found() -> None:
    """A prefix or keyspace filter matching nothing must not pass the check by default."""
    from issu_tui.orchestrator.preflight import quorum_check

    ring = _ring([A, B, C], name="v1_config_db_uuid")
    assert quorum_check("old", ring, ["v1_config_db_uuid"], 1, "rolling").ok
    missed = quorum_check("old", ring, ["config_db_uuid"], 1, "rolling")
    assert not missed.ok and missed.severity == "error"
    assert "none of the keyspaces config_db_uuid is in the ring" in missed.detail
    assert quorum_check("new", ring, ["v2_config_db_uuid"], 1, "rolling").severity == "warning"
    assert quorum_check("old", ring, ["config_db_uuid"], 0, "separate").ok  # stops nothing
    assert not quorum_check("old", ring, ["v1_config_db_uuid"], 2, "stay").ok


# ------------------------------------------------------------- against the real services


@pytest.fixture()
def rf1_keyspace(services: Endpoints) -> Iterator[str]:
    name = f"guard_{uuid.uuid4().hex[:8]}"
    side = CassandraSide("old", (services.cassandra_old.host,))
    with connect(side) as conn:
        conn.session.execute(
            f"CREATE KEYSPACE {name} WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}")
    yield name
    with connect(side) as conn:
        conn.session.execute(f"DROP KEYSPACE IF EXISTS {name}")


def test_live_ring_refuses_stopping_the_only_replica(services: Endpoints,
                                                     rf1_keyspace: str) -> None:
    side = CassandraSide("old", (services.cassandra_old.host,))
    node = services.cassandra_old.host
    with connect(side) as conn:
        view = read_ring(conn.cluster, conn.session, [rf1_keyspace])
    assert [n.address for n in view.nodes] == [node] and view.nodes[0].up
    assert view.keyspaces[0].factor == 1
    result = live_guard(side, [services.zk_old.hosts], "replace database node", [node],
                        keyspaces=[rf1_keyspace])
    messages = [str(r) for r in result.refusals]
    assert any(rf1_keyspace in m and node in m and "replace database node" in m
               for m in messages), messages
    # ZooKeeper on another address is untouched by stopping the Cassandra node.
    assert not any("ZooKeeper" in m for m in messages)


def test_cli_guard_names_keyspace_node_and_step(services: Endpoints, rf1_keyspace: str) -> None:
    node = services.cassandra_old.host
    zk = services.zk_old
    runner = CliRunner()
    refused = runner.invoke(cli, [
        "ring", "guard", "--cassandra", node, "--zookeeper", zk.hosts, "--keyspace",
        rf1_keyspace, "--stop", node, "--stop", zk.host, "--step", "convert node 1"])
    assert refused.exit_code == 1, refused.output
    assert f"keyspace {rf1_keyspace}" in refused.output
    assert "ZooKeeper ensemble" in refused.output and "'convert node 1'" in refused.output
    ensemble = read_ensemble([zk.hosts])
    assert ensemble.members[0].mode == "standalone"
    passed = runner.invoke(cli, [
        "ring", "guard", "--cassandra", node, "--zookeeper", zk.hosts, "--keyspace",
        rf1_keyspace, "--stop", node, "--min-replicas", "1", "--no-zookeeper"])
    assert passed.exit_code == 1  # RF 1: no threshold makes losing the only replica fine
    status = runner.invoke(cli, ["ring", "status", "--cassandra", node, "--keyspace",
                                 rf1_keyspace])
    assert status.exit_code == 0 and f"keyspace {rf1_keyspace}: SimpleStrategy RF 1" in \
        status.output


def test_a_node_leaving_for_good_needs_room_for_every_replica() -> None:
    """decommission streams away first: what counts is the live nodes that remain."""
    ring = _ring([A, B, C, D], factor=3)
    assert not guard_ring(ring, "stop B and C", [B, C]).ok
    assert guard_leave(ring, "decommission B", [B]).ok  # A, C, D hold RF 3 afterwards
    down = _ring([A, B, C, D], down=(D,), factor=3)
    refused = guard_leave(down, "decommission B", [B])
    assert not refused.ok
    assert "keeps 2 (10.0.0.1, 10.0.0.3; down: 10.0.0.4)" in str(refused.refusals[0])


def test_rabbit_cluster_majority() -> None:
    status = ('{"disk_nodes": ["rabbit@c1", "rabbit@c2"], "ram_nodes": ["rabbit@c3"], '
              '"running_nodes": ["rabbit@c1", "rabbit@c3"]}')
    view = parse_cluster_status(status)
    assert view.members == ("rabbit@c1", "rabbit@c2", "rabbit@c3")
    assert guard_rabbit(view, "restart c2", ["c2"]).ok  # c2 is not running anyway
    refused = guard_rabbit(view, "convert c1", ["c1"])
    assert not refused.ok
    assert "rabbit@c1 (stopped by the step), rabbit@c2 (not running)" in str(
        refused.refusals[0])
    with pytest.raises(RabbitStatusError, match="running_nodes"):
        parse_cluster_status('{"alarms": []}')


def test_rabbit_guard_on_the_real_broker(services: Endpoints, launcher: Launcher) -> None:
    """rabbitmqctl of the test network's broker (a cluster of one): stopping it is refused."""
    broker = launcher.service("rabbitmq")
    assert isinstance(broker, RabbitService)
    result = subprocess.run(
        ["/usr/lib/rabbitmq/bin/rabbitmqctl", "cluster_status", "--formatter", "json"],
        env=broker.env(), capture_output=True, text=True, timeout=120, check=True)
    view = parse_cluster_status(result.stdout)
    assert [view.host(m) for m in view.members] == [services.rabbit.host]
    refused = guard_rabbit(view, "stop the broker", [services.rabbit.host])
    assert not refused.ok and "RabbitMQ cluster" in str(refused.refusals[0])


def test_replication_keeps_the_keyspace_strategy_and_datacenters() -> None:
    from backends.cassandra.ringops import replicas_of, replication_for

    simple = {"class": "org.apache.cassandra.locator.SimpleStrategy", "replication_factor": "3"}
    assert replication_for(simple, 5, {"dc1": 5}) == {**simple, "replication_factor": "5"}
    two = {"class": "org.apache.cassandra.locator.NetworkTopologyStrategy", "dc1": "3",
           "dc2": "2"}
    # the grown ring's nodes are in dc1: dc1 to 5, dc2 keeps its 2
    assert replication_for(two, 5, {"dc1": 5}) == {**two, "dc1": "5"}
    assert replication_for(two, 5, {"dc1": 4, "dc2": 3}) == {**two, "dc1": "4", "dc2": "3"}
    assert replicas_of({**two, "dc1": "5"}, 8) == 7 and replicas_of(simple, 2) == 2


def _runner(side: CassandraSide, keyspaces: list[str]) -> RingRunner:
    """The runner's guard needs no nodetool (the steps do): one that reaches nowhere."""
    from backends.cassandra.nodetool import Nodetool
    from backends.ssh import SshExecutor, SshTarget

    nowhere = SshExecutor(Path("/nonexistent/known_hosts"))
    nodetool = Nodetool(nowhere, lambda a: SshTarget(a, a, 22, "nobody", Path("/nonexistent/key")))
    hooks = RingHooks(start_database=print, convert=print, stop_v1=print)
    return RingRunner(side, nodetool, hooks, keyspaces)


def test_after_finalize_the_runner_guards_new_keyspaces_and_names_its_errors(
        services: Endpoints, rf1_keyspace: str) -> None:
    """Old's keyspaces retired (absent here), new's serving: the guard checks new's; no
    keyspace at all, or no ring answering, is a clear error naming them (no traceback)."""
    node = services.cassandra_old.host
    side = CassandraSide("old", (node,))
    step = RingStep("done", "convert", (node,), f"convert {node} to v2", stops=(node,))
    with pytest.raises(RingStepRefused, match=f"keyspace {rf1_keyspace}"):
        _runner(side, ["v1_retired_config_db_uuid", rf1_keyspace]).guard(step)
    with pytest.raises(RingOpError, match="none of the keyspaces v1_nope, v2_nope is in the"):
        _runner(side, ["v1_nope", "v2_nope"]).guard(step)
    dead = CassandraSide("old", (node,), port=1)
    with pytest.raises(RingOpError, match=rf"convert {node} to v2: the ring \({node}\)"):
        _runner(dead, [rf1_keyspace]).guard(step)


def _shared_config(tmp_path: Path, services: Endpoints, prefix: str,
                   sync: str = "") -> Path:
    """old and new sharing the test network's Cassandra under prefixes `<prefix>1` /
    `<prefix>2`, its node a controller host; sync.keyspaces unset unless `sync` says."""
    node = services.cassandra_old
    path = tmp_path / "issu.toml"
    path.write_text(f"""state_dir = "{tmp_path / 'state'}"
[ssh]
known_hosts = "{tmp_path / 'known_hosts'}"
{sync}
[old]
name = "old"
version = "4.1.0"
cassandra = {{ hosts = ["{node.host}"], port = {node.port}, prefix = "{prefix}1" }}
zookeeper = {{ hosts = ["{services.zk_old.hosts}"] }}
rabbit = {{ hosts = ["{services.rabbit.host}"] }}
[[old.controllers]]
name = "db-1"
address = "{node.host}"
roles = ["database", "config"]
profile = "supervisord"  # its services leave the broker out: no RabbitMQ to read here
ssh_key = "{tmp_path / 'key'}"
[new]
name = "new"
version = "5.0.0"
cassandra = {{ hosts = ["{node.host}"], port = {node.port}, prefix = "{prefix}2" }}
zookeeper = {{ hosts = ["{services.zk_old.hosts}"], prefix = "v2" }}
rabbit = {{ hosts = ["{services.rabbit.host}"], vhost = "/v2" }}
""")
    return path


def test_the_runner_guards_every_issu_keyspace_by_default(
        tmp_path: Path, services: Endpoints) -> None:
    """sync.keyspaces unset means every registered keyspace, for the ring runner too: a
    step that would take to_bgp_keyspace below quorum is refused naming it, although
    config_db_uuid is not in the ring at all (the runner looked only at config_db_uuid)."""
    from issu_tui.config import load_config
    from issu_tui.journal import Journal
    from issu_tui.ringhooks import controller_runner
    from issu_tui.sides import issu_keyspaces

    prefix = f"g{uuid.uuid4().hex[:6]}"
    config = load_config(_shared_config(tmp_path, services, prefix))
    assert issu_keyspaces(config) == ["config_db_uuid", "dm_keyspace", "svc_monitor_keyspace",
                                      "to_bgp_keyspace", "useragent"]
    node = services.cassandra_old.host
    keyspace = f"{prefix}1_to_bgp_keyspace"
    side = CassandraSide("old", (node,), port=services.cassandra_old.port)
    with connect(side) as conn:
        conn.session.execute(f"CREATE KEYSPACE {keyspace} WITH replication = "
                             "{'class': 'SimpleStrategy', 'replication_factor': 1}")
    journal = Journal.open(config.state_dir)
    try:
        runner = controller_runner(config, ["nodetool"], None, journal)
        assert f"{prefix}2_useragent" in runner.keyspaces
        step = RingStep("done", "convert", (node,), f"convert {node} to v2", stops=(node,))
        with pytest.raises(RingStepRefused, match=f"keyspace {keyspace}"):
            runner.guard(step)
    finally:
        journal.close()
        with connect(side) as conn:
            conn.session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")


def test_preflight_counts_what_the_plan_takes_down_and_names_the_step() -> None:
    """stay converts its v1 nodes one at a time after finalize: with a node already down at
    RF 3, preflight refuses, naming the keyspace, the nodes and the step (the table said
    stay stops 0 nodes, so preflight checked nothing)."""
    from issu_tui.orchestrator.preflight import planned_down, quorum_check

    five = [A, B, C, D, E]
    planned, step = planned_down("stay", five, five, None, shared=True)
    assert planned == 1 and step == f"convert {A} to v2 (one at a time: the guard refuses more)"
    check = quorum_check("old", _ring(five, down=(B,)), ["config_db_uuid"], planned, "stay",
                         step)
    assert not check.ok
    assert "keyspace config_db_uuid" in check.detail and f"{B} (down)" in check.detail
    assert f"stay: convert {A} to v2" in check.detail
    assert planned_down("rolling", [A, B, C], [A, B, C], None, shared=True)[0] == 1
    assert planned_down("grow", [A, B, C], five, None, shared=True)[0] == 1
    assert planned_down("grow", [A], [D], None, shared=False) == (0, "")
    assert planned_down("stay", [A, B, C], [A, B, C], 2, shared=True)[0] == 2


def test_stopping_v1_controllers_is_guarded() -> None:
    """A stop step keeps the database but its services fail over to those using it: the
    runner guards it (refused while a keyspace is already below quorum, naming the step)."""
    from issu_tui.orchestrator.ringplan import ring_steps
    from issu_tui.orchestrator.ringrun import guard_step

    stop = next(s for s in ring_steps("rolling", [A, B, C], [A, B, C]) if s.action == "stop")
    assert stop.stops == (C,)
    assert guard_step(stop, _ring([A, B, C])).ok  # the database keeps running on C
    refused = guard_step(stop, _ring([A, B, C], down=(A, B)))
    assert not refused.ok and stop.does in str(refused.refusals[0])
    assert "already only 1 live before the step" in str(refused.refusals[0])


def test_the_runner_guards_the_broker_a_conversion_stops(services: Endpoints,
                                                         launcher: Launcher) -> None:
    """A conversion stops the host's rabbitmq: the runner's guard reads the real broker's
    cluster status and refuses to stop its only member, naming the cluster and the step."""
    from issu_tui.orchestrator.ringrun import guard_step

    broker = launcher.service("rabbitmq")
    assert isinstance(broker, RabbitService)
    result = subprocess.run(
        ["/usr/lib/rabbitmq/bin/rabbitmqctl", "cluster_status", "--formatter", "json"],
        env=broker.env(), capture_output=True, text=True, timeout=120, check=True)
    view = parse_cluster_status(result.stdout)
    host = services.rabbit.host
    step = RingStep("done", "convert", (host,), f"convert {host} to v2", stops=(host,))
    ring = _ring([A, B, host])  # RF 3: the database keeps its quorum without the host
    assert guard_step(step, ring).ok
    refused = guard_step(step, ring, rabbit=view)
    assert not refused.ok
    assert [str(r).split(":")[1].strip() for r in refused.refusals] == ["RabbitMQ cluster"]
    assert f"'convert {host} to v2'" in str(refused.refusals[0])


class _SchemaWriterBeside:
    """A real session whose schema read comes just after another client (a writer's first
    start on another connection) created a keyspace: the race preflight met in CI."""

    def __init__(self, session: object, host: str, create: str) -> None:
        self._session, self._host, self._create = session, host, create

    def execute(self, query: str, *args: object) -> object:
        if "system_schema.keyspaces" in query and self._create:
            with connect(CassandraSide("old", (self._host,))) as other:
                other.session.execute(self._create)
            self._create = ""
        return self._session.execute(query, *args)  # type: ignore[attr-defined]


def test_a_keyspace_created_while_the_ring_is_read_has_its_replicas(
        services: Endpoints) -> None:
    name = f"born_{uuid.uuid4().hex[:8]}"
    node = services.cassandra_old.host
    side = CassandraSide("old", (node,))
    try:
        with connect(side) as conn:
            conn.session.execute("SELECT now() FROM system.local")
            conn.cluster.refresh_schema_metadata()  # the driver's view before the writer
            beside = _SchemaWriterBeside(conn.session, node, (
                f"CREATE KEYSPACE {name} WITH replication = "
                "{'class': 'SimpleStrategy', 'replication_factor': 1}"))
            view = read_ring(conn.cluster, beside)
        [born] = [k for k in view.keyspaces if k.name == name]
        assert born.ranges and all(r.replicas == (node,) for r in born.ranges), born
        # nothing down, nothing stopped: the new keyspace keeps its quorum
        assert guard_ring(view, "separate: stop (nothing down)", ()).ok
    finally:
        with connect(side) as conn:
            conn.session.execute(f"DROP KEYSPACE IF EXISTS {name}")


class _Srvr:
    """A ZooKeeper member as the guard asks it: `srvr` answered with a mode (real sockets,
    on an address of the test network), or no listener at all (unreachable)."""

    def __init__(self, address: str, mode: str | None) -> None:
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind((address, 0))
        self.host = f"{address}:{self.sock.getsockname()[1]}"
        self.mode = mode
        if mode is None:
            return  # bound, never listening: refused
        self.sock.listen(8)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(16)
                conn.sendall((f"Zookeeper version: 3.8.4\nMode: {self.mode}\n"
                              if self.mode != "not serving" else
                              "This ZooKeeper instance is not currently serving requests\n"
                              ).encode())

    def close(self) -> None:
        self.sock.close()


def test_a_step_is_guarded_against_news_own_ensemble_once_it_serves() -> None:
    """Shared hardware: the converted nodes run new's ZooKeeper, an ensemble of its own
    (new.zookeeper.hosts, not old's). Converting a node whose member of new's ensemble is
    one of the two serving of three is refused, naming 'ZooKeeper ensemble (new)'; while
    new's ensemble is still below quorum (its members come up as the nodes are converted)
    the step goes on. Before, the runner read old's ensemble only and passed the step."""
    from tests.services_plugin import test_net

    net = test_net()
    nodes = [f"127.{net}.9.{i}" for i in (1, 2, 3)]
    old_zk = _Srvr(f"127.{net}.9.10", "standalone")
    step = RingStep("computes", "convert", (nodes[1],), f"convert {nodes[1]} to v2",
                    stops=(nodes[1],))

    def runner(new: list[_Srvr]) -> RingRunner:
        run = RingRunner(CassandraSide("ring", (nodes[0],)), None,  # type: ignore[arg-type]
                         RingHooks(start_database=print, convert=print, stop_v1=print),
                         ["config_db_uuid"], zk_hosts=[old_zk.host],
                         new_zk_hosts=[m.host for m in new])
        run._connect = lambda _what: contextlib.nullcontext(  # type: ignore[method-assign]
            SimpleNamespace(session=None))
        run._read_ring = lambda _c, _w, everything=False: _ring(nodes)  # type: ignore
        return run

    serving = [_Srvr(nodes[0], "leader"), _Srvr(nodes[1], "follower"),
               _Srvr(nodes[2], "not serving")]
    growing = [_Srvr(nodes[0], "not serving"), _Srvr(nodes[1], None), _Srvr(nodes[2], None)]
    try:
        with pytest.raises(RingStepRefused) as refused:
            runner(serving).guard(step)
        message = str(refused.value)
        assert "ZooKeeper ensemble (new)" in message and step.does in message, message
        assert f"{nodes[1]} (stopped by the step)" in message, message
        runner(growing).guard(step)  # new's ensemble does not serve yet: nothing to lose
    finally:
        for member in (old_zk, *serving, *growing):
            member.close()


@pytest.mark.services
def test_a_stopped_broker_no_member_name_resolves_to_is_refused_not_passed(
        ssh: Endpoints, tmp_path: Path) -> None:  # noqa: F811
    """A database host running a broker (its profile maps rabbitmq, over the real sshd),
    the cluster's members named `rabbit@<short name>` as RabbitMQ names them, a name the
    issu host cannot resolve: the step stopping that host is refused, naming it and the
    members. Before, no member matched the stopped address, the guard counted the broker
    as untouched and passed the step. Members named by their addresses are matched."""
    import json as jsonlib

    from backends.compute import script_item
    from backends.controller import ControllerError
    from issu_tui.config import IssuConfig
    from issu_tui.journal import Journal
    from issu_tui.ringhooks import controller_runner

    s = ssh.ssh
    address = s.addresses[1]

    def config(members: list[str]) -> IssuConfig:
        status = jsonlib.dumps({"disk_nodes": members, "running_nodes": members})
        host = {"name": "db-1", "address": address, "roles": ["database"],
                "ssh_user": s.user, "ssh_key": str(s.key_path), "ssh_port": s.port,
                "profile": "site"}

        def side(name: str) -> dict[str, object]:
            return {"name": name, "version": "4.1.0" if name == "old" else "5.0.0",
                    "cassandra": {"hosts": [address], "prefix": name},
                    "zookeeper": {"hosts": [f"{address}:1"], "prefix": name},
                    "rabbit": {"hosts": [f"{address}:1"],
                               "vhost": "/" if name == "old" else "/v2"},
                    "controllers": [host] if name == "old" else []}

        return IssuConfig.model_validate({
            "state_dir": str(tmp_path / "state"), "old": side("old"), "new": side("new"),
            "ssh": {"known_hosts": str(s.known_hosts_path)},
            "controller_profiles": {"site": {"base": "systemd",
                                             "rabbit_status": f"echo {script_item(status)}"}}})

    journal = Journal.open(tmp_path / "journal")
    try:
        named = controller_runner(config(["rabbit@nowhere-h18t-1", "rabbit@nowhere-h18t-2",
                                          "rabbit@nowhere-h18t-3"]), ["nodetool"], None,
                                  journal)
        with pytest.raises(ControllerError, match=(
                f"the broker on {address} \\(stopped by the step\\) is none of the RabbitMQ "
                "cluster's members as this host resolves their names \\(rabbit@nowhere-")):
            named.hooks.rabbit_status((address,))
        members = [f"rabbit@{address}", "rabbit@10.9.9.2", "rabbit@10.9.9.3"]
        by_address = controller_runner(config(members), ["nodetool"], None, journal)
        view = by_address.hooks.rabbit_status((address,))
        assert view is not None
        assert guard_rabbit(view, "convert db-1", [address]).ok  # one of three running
    finally:
        journal.close()
