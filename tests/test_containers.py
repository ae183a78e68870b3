"""The `container` compute profile against a real engine: podman (runc), the demo's images
built from Debian's packages, real sshd, and the simulated v1 / v2 controllers (real
Cassandra, ZooKeeper, RabbitMQ), each cluster's api-server, control node and analytics-api a
container of its own (config_api, control_control, analytics_api), receiving the
containerised agents' reports and XMPP sessions.

Skipped, with the reason, when the engine cannot run here (no podman, no images and no way
to build them)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from backends.analytics import parse_vrouter
from backends.compute import ClusterTarget, ComputeExecutor, ComputeTarget, cluster_target
from demo.containers import controllers
from demo.containers.compute import (
    compose_up,
    container_name,
    host_dir,
    profile_spec,
    remove_net_containers,
    write_compute,
)
from demo.containers.engine import Engine, EngineUnavailable, engine_problem
from demo.containers.images import ensure_images
from demo.controller.process import write_spec
from demo.services import Endpoints
from tests.test_compute import _spec

V1, V2 = "4.1.0", "5.0.0"
RELEASE = {"v1": V1, "v2": V2}


@dataclass
class Rig:
    endpoints: Endpoints
    net: int
    root: Path
    executor: ComputeExecutor
    v1: ClusterTarget
    v2: ClusterTarget
    analytics: dict[str, str]

    def target(self, index: int) -> ComputeTarget:
        s = self.endpoints.ssh
        return ComputeTarget(s.names[index], s.addresses[index], s.port, s.user, s.key_path)

    def running(self, index: int) -> dict[str, str]:
        """The compute's agent container as the engine reports it."""
        out = Engine().run("container", "inspect", container_name(self.net,
                           self.endpoints.ssh.names[index])).stdout
        info = json.loads(out)[0]
        return {"image": info["ImageName"], "status": info["State"]["Status"]}

    def env(self, index: int) -> dict[str, str]:
        text = (host_dir(self.root, self.endpoints.ssh.names[index]) /
                "common_vrouter.env").read_text()
        return dict(line.split("=", 1) for line in text.splitlines()
                    if "=" in line and not line.startswith("#"))


@pytest.fixture(scope="module")
def images() -> None:
    problem = engine_problem()
    if problem:
        pytest.skip(f"no container engine: {problem}")
    try:
        ensure_images()
    except EngineUnavailable as exc:
        pytest.skip(f"the demo's images cannot be built: {exc}")


@pytest.fixture(scope="module")
def rig(images: None, services: Endpoints, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Rig]:
    root = tmp_path_factory.mktemp("containers")
    net = int(services.ssh.addresses[0].split(".")[1])
    remove_net_containers(net)  # left by a killed run
    addresses = {"v1": f"127.{net}.0.121", "v2": f"127.{net}.0.122"}
    try:
        for cluster, address in addresses.items():
            write_spec(root / cluster, _spec(services, cluster, address), {
                "rabbit_user": services.rabbit.user, "rabbit_password": services.rabbit.password})
            for service in controllers.CONTROLLER_ROLES:
                controllers.ensure(net, cluster, service, root / cluster, RELEASE[cluster])
        for cluster, address in addresses.items():
            _wait_controller(net, cluster, address, root / cluster)
        hosts = root / "hosts"
        for name, address in list(zip(services.ssh.names, services.ssh.addresses,
                                      strict=True))[:2]:
            compose_up(write_compute(hosts, net, name, address, V1, [addresses["v1"]],
                                     heartbeat_s=1.0))
        executor = ComputeExecutor(services.ssh.known_hosts_path, 10, 120,
                                   {"container": profile_spec(hosts)}, health_timeout_s=60)
        yield Rig(services, net, hosts, executor,
                  cluster_target("old", V1, [addresses["v1"]]),
                  cluster_target("new", V2, [addresses["v2"]]),
                  {c: f"http://{a}:8081" for c, a in addresses.items()})
    finally:
        remove_net_containers(net)


def _wait_controller(net: int, cluster: str, address: str, directory: Path) -> None:
    """Each role answers on its own port, from its own container."""
    deadline = time.monotonic() + 180
    for service, port, path in (("api-server", 8082, "/issu/status"),
                                ("analytics-api", 8081, "/"), ("control", 8083, "/")):
        while True:
            try:
                if httpx.get(f"http://{address}:{port}{path}", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            state = controllers.state(net, cluster, service)
            log = controllers.log_path(directory, service)
            assert state == "running", f"{service} of {cluster} is {state}; see {log}"
            assert time.monotonic() < deadline, f"{service} of {cluster} silent; see {log}"
            time.sleep(0.5)


def _vrouter(rig: Rig, cluster: str, name: str, version: str) -> dict[str, object]:
    """The vrouter UVE of `cluster`'s analytics once it reports `name` at `version`."""
    deadline = time.monotonic() + 60
    while True:
        resp = httpx.get(f"{rig.analytics[cluster]}/analytics/uves/vrouter/{name}", timeout=5)
        if resp.status_code == 200 and resp.json().get("VrouterAgent"):
            uve = dict(resp.json())
            if parse_vrouter(cluster, name, uve).version == version:
                return uve
        assert time.monotonic() < deadline, f"{cluster} analytics never saw {name} at {version}"
        time.sleep(0.5)


def test_upgrade_runs_the_new_image_and_rollback_the_old(rig: Rig) -> None:
    target = rig.target(0)
    assert rig.running(0) == {"image": f"localhost/contrail-vrouter-agent:{V1}",
                              "status": "running"}
    result = rig.executor.upgrade(target, "container", rig.v2)
    assert result.ok, result.error
    assert [s.step for s in result.steps] == ["probe", "stop", "install", "point", "restart",
                                              "health", "probe"]
    # the engine runs the new release's image, configured for v2
    assert rig.running(0) == {"image": f"localhost/contrail-vrouter-agent:{V2}",
                              "status": "running"}
    env = rig.env(0)
    assert env["CONTRAIL_VERSION"] == V2
    assert env["CONTROL_NODES"] == env["ANALYTICS_NODES"] == rig.v2.control_nodes[0]
    probe = rig.executor.probe(target, "container")
    assert probe.version == V2 and probe.points_at(rig.v2) and probe.agent_state == "connected"
    # and v2's analytics hears the agent at 5.0.0, its XMPP session on v2's control node
    vr = parse_vrouter("new", target.name, _vrouter(rig, "v2", target.name, V2))
    assert [p.ip for p in vr.xmpp_peers if p.up] == rig.v2.control_nodes

    back = rig.executor.rollback(target, "container", rig.v1)
    assert back.ok, back.error
    assert rig.running(0)["image"] == f"localhost/contrail-vrouter-agent:{V1}"
    assert rig.env(0)["CONTROL_NODES"] == rig.v1.control_nodes[0]
    _vrouter(rig, "v1", target.name, V1)


def test_upgrade_of_an_upgraded_compute_redoes_nothing(rig: Rig) -> None:
    target = rig.target(1)
    assert rig.executor.upgrade(target, "container", rig.v2).ok
    started = Engine().run("container", "inspect", "--format", "{{.State.StartedAt}}",
                           container_name(rig.net, target.name)).stdout
    again = rig.executor.upgrade(target, "container", rig.v2)
    assert again.ok, again.error
    assert [s.step for s in again.steps] == ["probe", "health"]
    assert Engine().run("container", "inspect", "--format", "{{.State.StartedAt}}",
                        container_name(rig.net, target.name)).stdout == started
    assert rig.executor.rollback(target, "container", rig.v1).ok


def test_a_demo_up_after_a_down_keeps_an_upgraded_compute_upgraded(rig: Rig) -> None:
    """`issu demo down` removes the agent containers; the next `up` starts each compute as
    its files say (the journal still records it upgraded), not at v1 again."""
    from types import SimpleNamespace

    from demo.containers.world import ContainerHosts

    target = rig.target(1)
    assert rig.executor.upgrade(target, "container", rig.v2).ok
    Engine().run("container", "rm", "-f", container_name(rig.net, target.name))
    world = SimpleNamespace(opts=SimpleNamespace(net=rig.net), dir=rig.root.parent)
    ContainerHosts(world).start_computes(  # type: ignore[arg-type]
        {target.name: target.address}, V1, rig.v1.control_nodes, 1.0)
    assert rig.running(1) == {"image": f"localhost/contrail-vrouter-agent:{V2}",
                              "status": "running"}
    assert rig.env(1)["CONTROL_NODES"] == rig.v2.control_nodes[0]
    probe = rig.executor.probe(target, "container")
    assert probe.version == V2 and probe.points_at(rig.v2)
    assert rig.executor.rollback(target, "container", rig.v1).ok


def test_a_release_without_an_image_fails_at_install_and_changes_nothing(rig: Rig) -> None:
    target = rig.target(0)
    before = rig.env(0)
    bogus = cluster_target("new", "9.9.9", rig.v2.control_nodes)
    result = rig.executor.upgrade(target, "container", bogus)
    assert not result.ok
    assert result.error is not None and "step install failed" in result.error
    assert "contrail-vrouter-agent:9.9.9" in next(s for s in result.steps
                                                   if s.step == "install").stderr
    # stop ran before install (the profile's order): the old container is gone, its
    # configuration untouched; a rollback brings the old release back
    assert rig.env(0) == before
    assert rig.executor.rollback(target, "container", rig.v1).ok
    assert rig.running(0) == {"image": f"localhost/contrail-vrouter-agent:{V1}",
                              "status": "running"}


def test_a_stopped_agent_container_is_probed_stopped_and_started_again(rig: Rig) -> None:
    target = rig.target(1)
    Engine().run("stop", "-t", "5", container_name(rig.net, target.name))
    probe = rig.executor.probe(target, "container")
    assert probe.version == V1 and probe.agent_state == "stopped"
    # on the release and cluster already, but not connected: every step runs again
    result = rig.executor.upgrade(target, "container", rig.v1)
    assert result.ok, result.error
    assert "restart" in [s.step for s in result.steps]
    assert rig.running(1) == {"image": f"localhost/contrail-vrouter-agent:{V1}",
                              "status": "running"}
    assert rig.executor.probe(target, "container").agent_state == "connected"


def _keys(endpoints: Endpoints, keyspace: str, table: str) -> set[str]:
    """The row keys of one of v1's writer tables (the rig's prefix `cmpv1`)."""
    from cassandra.cluster import Cluster

    cass = endpoints.cassandra_old
    cluster = Cluster([cass.host], port=cass.port)
    try:
        rows = cluster.connect().execute(f'SELECT key FROM "cmpv1_{keyspace}"."{table}"')
        return {r.key for r in rows}
    except Exception:  # the table not created yet
        return set()
    finally:
        cluster.shutdown()


def _route_targets(endpoints: Endpoints) -> set[str]:
    """What v1's schema-transformer wrote."""
    return _keys(endpoints, "to_bgp_keyspace", "route_target_table")


def _link_locals(endpoints: Endpoints) -> set[str]:
    """What v1's device-manager wrote (keyed, as the route targets, by routing instance)."""
    return _keys(endpoints, "dm_keyspace", "dm_ni_ipv6_ll_table")


def test_docker_controller_profile_stops_and_starts_a_writer_container(rig: Rig) -> None:
    """The built-in `docker` controller profile over SSH, against the engine: v1's
    schema-transformer in its container (config_schema) stopped, disabled, enabled and
    started again; while stopped it writes nothing that device-manager (config_devicemgr,
    running) writes, and it writes again once started."""
    from backends.controller import ControllerExecutor
    from backends.ssh import SshTarget
    from demo.containers.compute import docker_command
    from demo.containers.docker import restart_policy

    directory = rig.root.parent / "v1"
    service = "schema-transformer"
    name = controllers.container_name(rig.net, "v1", service)
    assert controllers.ensure(rig.net, "v1", service, directory, V1) == "running"
    assert controllers.ensure(rig.net, "v1", "device-manager", directory, V1) == "running"
    s = rig.endpoints.ssh
    host = SshTarget("controller-v1", s.addresses[0], s.port, s.user, s.key_path)
    executor = ControllerExecutor(s.known_hosts_path, 10, 120, {"docker-v1": {
        "base": "docker", "docker": docker_command(),
        "services": {service: controllers.service_map(rig.net, "v1")[service]}}})
    api = f"http://127.{rig.net}.0.121:8082"

    def network(vn: str) -> str:
        fq = ["default-domain", "default-project", vn]
        r = httpx.post(f"{api}/virtual-networks", json={"virtual-network": {
            "fq_name": fq, "parent_type": "project"}}, timeout=30)
        assert r.status_code == 200, r.text
        return ":".join([*fq, vn])

    def state() -> str:
        return executor.status(host, "docker-v1", [service])[0].state

    def wait(what: str, check: object) -> None:
        deadline = time.monotonic() + 120
        while not check():  # type: ignore[operator]
            assert time.monotonic() < deadline, what
            time.sleep(0.5)

    assert state() == "running"
    first = network("docker-profile-1")
    wait(f"the route target of {first}", lambda: first in _route_targets(rig.endpoints))

    executor.act(host, "docker-v1", "stop", [service])
    assert state() == "exited"
    # podman 4.3 has no `update --restart`: the stand-in records the policy, which
    # `issu demo up` reads (a disabled writer is not started again)
    executor.act(host, "docker-v1", "disable", [service])
    assert restart_policy(directory, name) == "no"
    assert controllers.disabled(rig.net, "v1", service, directory)
    second = network("docker-profile-2")
    # the running device-manager has seen the network: a writer that ran would have too
    wait(f"device-manager's row of {second}", lambda: second in _link_locals(rig.endpoints))
    assert second not in _route_targets(rig.endpoints)

    executor.act(host, "docker-v1", "enable", [service])
    assert restart_policy(directory, name) == "always"
    executor.act(host, "docker-v1", "start", [service])
    assert state() == "running"
    wait(f"the route target of {second} once started",
         lambda: second in _route_targets(rig.endpoints))


def test_demo_down_removes_its_world_containers_and_nothing_else(images: None,
                                                                  tmp_path: Path) -> None:
    from demo.world import World, WorldOptions
    from tests.test_demo_world import _world_net

    net, other = _world_net(), int(os.environ.get("ISSU_TEST_NET", "30"))
    mine = write_compute(tmp_path / "mine", net, "compute-1", f"127.{net}.1.1", V1,
                         [f"127.{net}.0.101"])
    theirs = write_compute(tmp_path / "theirs", other, "down-check", f"127.{other}.1.99", V1,
                           [f"127.{other}.0.101"])
    try:
        compose_up(mine)
        compose_up(theirs)
        # a world that is not running (a killed `up`): down still removes its containers
        World(WorldOptions(net=net, run_dir=tmp_path / "run")).down(lambda msg: None)
        engine = Engine()
        assert not engine.containers(f"label=issu.demo.net={net}")
        assert [c["Names"] for c in engine.containers(f"name={container_name(other, 'down-check')}")
                ] == [[container_name(other, "down-check")]]
    finally:
        Engine().remove([container_name(net, "compute-1"), container_name(other, "down-check")])


def test_the_control_node_is_a_container_of_its_own(rig: Rig) -> None:
    """v1's control_control stopped: the api-server and the analytics-api (their own
    containers) still answer, the compute's XMPP session goes down (the agent's introspect,
    read by the `container` profile's probe) and analytics raises the control node's
    process alarm; started again, both come back."""
    target = rig.target(0)
    v1 = rig.v1.control_nodes[0]
    name = controllers.container_name(rig.net, "v1", "control")

    def control_alarms() -> list[str]:
        alarms = httpx.get(f"{rig.analytics['v1']}/analytics/alarms", timeout=5).json()
        return [a["type"] for item in alarms.get("control-node", [])
                for a in item["value"]["UVEAlarms"]["alarms"]]

    def wait(what: str, check: object) -> None:
        deadline = time.monotonic() + 120
        while not check():  # type: ignore[operator]
            assert time.monotonic() < deadline, what
            time.sleep(0.5)

    assert rig.executor.probe(target, "container").points_at(rig.v1)
    wait("the agent's XMPP session to v1",
         lambda: rig.executor.probe(target, "container").agent_state == "connected")
    Engine().run("stop", "-t", "5", name)
    try:
        assert controllers.state(rig.net, "v1", "control") == "exited"
        wait("the agent's XMPP session down",
             lambda: rig.executor.probe(target, "container").agent_state == "running")
        wait("the control node's process alarm", lambda: any(
            t.endswith("system-defined-process-status") for t in control_alarms()))
        assert httpx.get(f"http://{v1}:8082/issu/status", timeout=5).status_code == 200
        # the collector still hears the agent: its vrouter UVE stays Functional
        assert parse_vrouter("old", target.name,
                             _vrouter(rig, "v1", target.name, V1)).version == V1
    finally:
        Engine().run("start", name)
    wait("the agent's XMPP session back",
         lambda: rig.executor.probe(target, "container").agent_state == "connected")
    wait("the process alarm cleared", lambda: control_alarms() == [])
