"""Compute upgrade and rollback through the demo profile over real SSH, with the simulated
v1 / v2 controllers (real Cassandra, ZooKeeper, RabbitMQ) receiving the agents' reports."""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from backends.analytics import health_evidence, parse_vrouter
from backends.compute import (
    ClusterTarget,
    ComputeExecutor,
    ComputeTarget,
    StepResult,
    cluster_target,
)
from backends.ssh import SshExecutor, SshTarget
from demo.compute.fleet import Fleet
from demo.compute.layout import WorldSettings
from demo.controller.process import ControllerProcess, write_spec
from demo.services import Endpoints
from issu_tui.config import IssuConfig
from issu_tui.journal import Journal
from issu_tui.orchestrator.computes import ComputeRunner
from issu_tui.orchestrator.context import Context

V1, V2 = "4.1.0", "5.0.0"


@dataclass
class Rig:
    endpoints: Endpoints
    fleet: Fleet
    executor: ComputeExecutor
    v1: ClusterTarget
    v2: ClusterTarget
    analytics: dict[str, str]  # "v1"/"v2" -> analytics-api URL

    def target(self, index: int) -> ComputeTarget:
        s = self.endpoints.ssh
        return ComputeTarget(s.names[index], s.addresses[index], s.port, s.user, s.key_path)


def _spec(ep: Endpoints, cluster: str, address: str) -> dict[str, object]:
    v1 = cluster == "v1"
    cass = ep.cassandra_old if v1 else ep.cassandra_new
    zk = ep.zk_old if v1 else ep.zk_new
    return {
        "cluster": cluster, "version": V1 if v1 else V2, "listen": address,
        "cassandra": {"hosts": [cass.host], "port": cass.port, "prefix": f"cmp{cluster}"},
        "zookeeper": {"hosts": [zk.hosts], "prefix": f"cmp{cluster}"},
        "rabbit": {"host": ep.rabbit.host, "port": ep.rabbit.port,
                   "vhost": ep.rabbit.vhost_old if v1 else ep.rabbit.vhost_new},
        "control_nodes": [{"name": f"{cluster}-control-1", "address": address}],
        "agent_timeout_s": 15.0,
    }


@pytest.fixture(scope="module")
def rig(services: Endpoints, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    root = tmp_path_factory.mktemp("computes")
    net = services.ssh.addresses[0].split(".")[1]
    # Not the demo world's .101/.102: other tests run a World on the same network.
    addresses = {"v1": f"127.{net}.0.111", "v2": f"127.{net}.0.112"}
    controllers = []
    try:
        for cluster, address in addresses.items():
            spec = write_spec(root / cluster, _spec(services, cluster, address), {
                "rabbit_user": services.rabbit.user, "rabbit_password": services.rabbit.password})
            proc = ControllerProcess(spec)
            proc.start()
            controllers.append(proc)
        for proc in controllers:
            proc.wait_ready(120)
        fleet = Fleet(root / "world")
        hosts = dict(zip(services.ssh.names, services.ssh.addresses, strict=True))
        fleet.create(WorldSettings(net=int(net), hosts=hosts, install_s=0.6,
                                   install_jitter_s=0.1, datapath_down_s=0.4,
                                   datapath_jitter_s=0.1, heartbeat_s=1.0),
                     V1, [addresses["v1"]])
        fleet.start()
        executor = ComputeExecutor(services.ssh.known_hosts_path, 10, 120,
                                   {"demo": {"host": fleet.host_command()}},
                                   health_timeout_s=30)
        yield Rig(services, fleet, executor,
                  cluster_target("old", V1, [addresses["v1"]]),
                  cluster_target("new", V2, [addresses["v2"]]),
                  {c: f"http://{a}:8081" for c, a in addresses.items()})
    finally:
        Fleet(root / "world").stop()
        for proc in controllers:
            proc.stop()


def _vrouter(rig: Rig, cluster: str, name: str, timeout: float = 30.0) -> dict[str, object]:
    """The vrouter UVE as the cluster's analytics reports it, once it names `name`."""
    deadline = time.monotonic() + timeout
    while True:
        resp = httpx.get(f"{rig.analytics[cluster]}/analytics/uves/vrouter/{name}", timeout=5)
        if resp.status_code == 200 and resp.json().get("VrouterAgent"):
            return dict(resp.json())
        assert time.monotonic() < deadline, f"{cluster} analytics never listed {name}"
        time.sleep(0.5)


def test_probe_over_ssh_reports_installed_version_and_v1(rig: Rig) -> None:
    probe = rig.executor.probe(rig.target(0), "demo")
    assert probe.version == V1
    assert probe.points_at(rig.v1)
    assert probe.collectors == [f"{rig.v1.control_nodes[0]}:8086"]


def test_upgrade_moves_compute_to_v2_and_rollback_returns_it(rig: Rig) -> None:
    target = rig.target(0)
    seen: list[StepResult] = []
    result = rig.executor.upgrade(target, "demo", rig.v2, on_step=seen.append)
    assert result.ok, result.error
    assert [s.step for s in seen] == ["probe", "drain", "stop", "install", "point", "restart",
                                      "health", "gap", "undrain", "probe"]
    assert result.steps == seen
    # the data path was interrupted while vrouter.ko reloaded, and that was measured
    assert result.gap_ms is not None and result.gap_ms > 0
    # over SSH, the compute says it runs 5.0.0 pointed at v2
    probe = rig.executor.probe(target, "demo")
    assert probe.version == V2 and probe.points_at(rig.v2)
    assert probe.agent_state == "connected"
    # and v2's analytics sees the agent at 5.0.0 with its XMPP session to v2's control node
    vr = parse_vrouter("new", target.name, _vrouter(rig, "v2", target.name))
    assert vr.version == V2
    assert [p.ip for p in vr.xmpp_peers if p.up] == rig.v2.control_nodes

    back = rig.executor.rollback(target, "demo", rig.v1)
    assert back.ok, back.error
    assert back.gap_ms is not None and back.gap_ms > 0
    probe = rig.executor.probe(target, "demo")
    assert probe.version == V1 and probe.points_at(rig.v1)
    vr = parse_vrouter("old", target.name, _vrouter(rig, "v1", target.name))
    assert vr.version == V1


def test_upgrade_of_an_upgraded_compute_redoes_nothing(rig: Rig) -> None:
    target = rig.target(2)
    assert rig.executor.upgrade(target, "demo", rig.v2).ok
    again = rig.executor.upgrade(target, "demo", rig.v2)
    assert again.ok, again.error
    assert [s.step for s in again.steps] == ["probe", "health"]


def test_an_upgrade_uses_a_connection_opened_ahead_or_reconnects_if_dropped(
        rig: Rig) -> None:
    """The orchestrator opens the SSH connections of the computes next in line: the upgrade
    runs on one opened ahead, and one dropped meanwhile (sshd restarted, a firewall's idle
    timeout) is replaced, not a failed upgrade."""
    target = rig.target(3)
    rig.executor.preconnect(target)
    assert rig.executor.upgrade(target, "demo", rig.v2).ok
    rig.executor.preconnect(target)
    rig.executor._warm[target.name][1].result().close()  # dropped before its turn
    result = rig.executor.rollback(target, "demo", rig.v1)
    assert result.ok, result.error
    assert rig.executor.probe(target, "demo").version == V1
    rig.executor.preconnect(rig.target(2))
    rig.executor.close_warm()  # a run that ends leaves no connection open
    assert not rig.executor._warm


def test_failing_install_is_reported_with_its_output(rig: Rig) -> None:
    target = rig.target(1)
    rig.fleet.update_settings(failures={target.name: 1.0})
    try:
        result = rig.executor.upgrade(target, "demo", rig.v2)
    finally:
        rig.fleet.update_settings(failures={})
    assert not result.ok
    assert result.error is not None and "install" in result.error and target.name in result.error
    install = next(s for s in result.steps if s.step == "install")
    assert install.exit_code == 100
    assert "dpkg: error processing archive" in install.stderr
    assert "Unpacking contrail-vrouter-agent" in install.stdout
    # the old release is still installed; the executor reports what it found afterwards
    assert result.probe is not None and result.probe.version == V1
    # and the operator can bring it back: a rollback restarts the agent on v1
    back = rig.executor.rollback(target, "demo", rig.v1)
    assert back.ok, back.error


def test_unknown_version_is_refused_by_the_package_manager(rig: Rig) -> None:
    target = rig.target(3)
    bogus = cluster_target("new", "9.9.9", rig.v2.control_nodes)
    result = rig.executor.upgrade(target, "demo", bogus)
    assert not result.ok
    install = next(s for s in result.steps if s.step == "install")
    assert "Version '9.9.9' for 'contrail-vrouter-agent' was not found" in install.stderr
    assert rig.executor.rollback(target, "demo", rig.v1).ok


def test_unreachable_compute_is_a_failed_action_not_an_exception(rig: Rig) -> None:
    good = rig.target(0)
    ghost = ComputeTarget("ghost", good.address, 1, good.user, good.key_path)
    result = rig.executor.upgrade(ghost, "demo", rig.v2)
    assert not result.ok and result.error is not None and "ghost" in result.error
    assert result.steps == []


def test_health_step_fails_when_the_target_cluster_is_unreachable(rig: Rig, tmp_path: Path
                                                                  ) -> None:
    # control node / collector addresses where nothing listens: the agent cannot connect.
    net = rig.endpoints.ssh.addresses[0].split(".")[1]
    nowhere = cluster_target("new", V2, [f"127.{net}.0.199"])
    executor = ComputeExecutor(rig.endpoints.ssh.known_hosts_path, 10, 60,
                               {"demo": {"host": rig.fleet.host_command()}}, health_timeout_s=2)
    target = rig.target(3)
    result = executor.upgrade(target, "demo", nowhere)
    assert not result.ok
    health = next(s for s in result.steps if s.step == "health")
    assert health.exit_code == 1 and "not connected" in health.stderr
    assert rig.executor.rollback(target, "demo", rig.v1).ok


def test_install_left_running_by_a_killed_executor_is_waited_for(rig: Rig) -> None:
    """An executor killed mid-install leaves the package manager running on the compute; the
    restarted executor's install must wait for its lock (apt's DPkg::Lock::Timeout, in the
    demo profile too), not fail the compute."""
    target = rig.target(3)
    s = rig.endpoints.ssh
    orphan: list[object] = []
    rig.fleet.update_settings(install_s=3.0, install_jitter_s=0.0)
    try:
        ssh = SshExecutor(s.known_hosts_path, 10, 120)
        argv = [*shlex.split(rig.fleet.host_command()), "install", "--version", V2]
        left = threading.Thread(target=lambda: orphan.append(ssh.run(
            SshTarget(target.name, target.address, s.port, s.user, s.key_path), argv)))
        left.start()
        time.sleep(1.0)  # the orphan holds the dpkg lock now
        result = rig.executor.upgrade(target, "demo", rig.v2)
        left.join()
    finally:
        rig.fleet.update_settings(install_s=0.6, install_jitter_s=0.1)
    assert result.ok, result.error
    install = next(st for st in result.steps if st.step == "install")
    assert "Waiting for cache lock" in install.stdout
    assert getattr(orphan[0], "exit_code", None) == 0
    assert rig.executor.probe(target, "demo").version == V2
    assert rig.executor.rollback(target, "demo", rig.v1).ok


def _runner(rig: Rig, tmp_path: Path, *, analytics: bool = True,
            health_timeout_s: float = 20.0) -> ComputeRunner:
    """The orchestrator's compute runner on a config naming the rig's two demo clusters."""
    def side(name: str, cluster: str, target: ClusterTarget) -> dict[str, object]:
        host = target.control_nodes[0]
        return {"name": name, "version": target.version,
                "cassandra": {"hosts": [host]}, "zookeeper": {"hosts": [host]},
                "rabbit": {"hosts": [host]}, "api_server": {"url": f"http://{host}:8082"},
                "control_nodes": [{"name": f"{cluster}-control-1", "address": host}],
                **({"analytics": {"url": rig.analytics[cluster]}} if analytics else {})}

    config = IssuConfig.model_validate({
        "state_dir": str(tmp_path), "old": side("old", "v1", rig.v1),
        "new": side("new", "v2", rig.v2), "batch": {"health_timeout_s": health_timeout_s}})
    journal = Journal.open(tmp_path)
    ctx = Context(config=config, config_path=tmp_path / "issu.toml", journal=journal)
    return ComputeRunner(ctx, rig.executor, health_poll_s=0.5)


def test_health_gate_passes_only_on_version_and_xmpp_to_a_new_control_node(
        rig: Rig, tmp_path: Path) -> None:
    target = rig.target(2)
    assert rig.executor.upgrade(target, "demo", rig.v2).ok
    runner = _runner(rig, tmp_path)
    ok, detail = runner.health_gate(target.name, "new")
    assert ok, detail
    assert V2 in detail and rig.v2.control_nodes[0] in detail

    uve = _vrouter(rig, "v2", target.name)
    nodes = set(rig.v2.control_nodes)
    assert health_evidence(target.name, uve, V2, nodes).ok
    # the same real UVE, judged against what it does not show, fails and says why
    wrong = health_evidence(target.name, uve, "5.0.1", nodes)
    assert not wrong.ok and f"reports version {V2}, expected 5.0.1" in wrong.reason
    elsewhere = health_evidence(target.name, uve, V2, set(rig.v1.control_nodes))
    assert not elsewhere.ok and rig.v1.control_nodes[0] in elsewhere.reason
    agent = dict(uve["VrouterAgent"])  # type: ignore[arg-type]
    no_peers = health_evidence(target.name, {**uve, "VrouterAgent": {
        **agent, "xmpp_peer_list": []}}, V2, nodes)
    assert not no_peers.ok and "lists no XMPP peers" in no_peers.reason
    no_build = health_evidence(target.name, {"VrouterAgent": {
        k: v for k, v in agent.items() if k != "build_info"}}, V2, nodes)
    assert not no_build.ok and "no build version" in no_build.reason
    absent = health_evidence(target.name, None, V2, nodes)
    assert not absent.ok and "no vrouter UVE" in absent.reason
    runner.ctx.journal.close()
    assert rig.executor.rollback(target, "demo", rig.v1).ok


def test_health_gate_fails_without_analytics_or_with_the_agent_stopped(
        rig: Rig, tmp_path: Path) -> None:
    target = rig.target(1)
    blind = _runner(rig, tmp_path / "blind", analytics=False)
    ok, detail = blind.health_gate(target.name, "old")
    blind.ctx.journal.close()
    assert not ok and "no analytics configured for old" in detail

    # the compute is on old, healthy: then its agent stops, and the gate must not pass on
    # the UVE alone (the XMPP session is down)
    runner = _runner(rig, tmp_path / "seen", health_timeout_s=3.0)
    assert runner.health_gate(target.name, "old")[0]
    s = rig.endpoints.ssh
    ssh = SshExecutor(s.known_hosts_path, 10, 60)
    host = SshTarget(target.name, target.address, s.port, s.user, s.key_path)
    assert ssh.run(host, [*shlex.split(rig.fleet.host_command()), "stop-agent"]).exit_code == 0
    try:
        ok, detail = runner.health_gate(target.name, "old")
        assert not ok
        assert detail.startswith("old analytics: ") and "expected one of" in detail
        # and the compute is not on new at all: new's analytics has no evidence for it
        ok, detail = runner.health_gate(target.name, "new")
        assert not ok and "new analytics: " in detail
    finally:
        runner.ctx.journal.close()
        assert rig.executor.rollback(target, "demo", rig.v1).ok
