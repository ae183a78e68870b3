"""A controller node converted from v1 to v2 in place (issu_tui/orchestrator/convert.py, the
ring approaches' `convert`): stop v1, install v2, record it, start v2 role after role
(database first), health: running and the version read back a build of v2.

The first tests run the steps against a stand-in executor (what ran, in which order); the
last over the real sshd of the test network, with the systemd profile's own install and
version steps run on a simulated host (tests/fakebin/fakectl.py: systemctl, dpkg-query,
apt-get)."""

from __future__ import annotations

import contextlib
import re
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from backends.cassandra.connection import CassandraSide
from backends.cassandra.nodetool import NodeStatus
from backends.cassandra.ring import KeyspaceReplicas, RingNode, RingView, TokenRange
from backends.cassandra.ringops import RingOpError
from backends.controller import (
    BUILTIN_CONTROLLER_PROFILES,
    ROLE_SERVICES,
    ControllerError,
    ControllerExecutor,
    ServiceState,
    build_controller_profiles,
)
from backends.ssh import SshTarget
from demo.services import Endpoints
from issu_tui.config import ControllerHostConfig
from issu_tui.orchestrator.convert import Conversion, convert_node, converted, serving
from issu_tui.orchestrator.ringplan import RingStep
from issu_tui.orchestrator.ringrun import RingHooks, RingRunner
from tests.test_controller import Host, host, ssh  # noqa: F401

TARGET = SshTarget("db-1", "10.0.0.1", 22, "root", Path("/k"))


class Executor:
    """The executor's steps on one host: services' states and every call, in order."""

    def __init__(self, profiles: dict[str, dict[str, Any]] | None = None,
                 fail_start: str = "", version: str = "5.0.0-0.40",
                 absent: tuple[str, ...] = ()) -> None:
        self.profiles = build_controller_profiles(profiles)
        self.running: dict[str, bool] = {}
        self.calls: list[tuple[str, ...]] = []
        self.fail_start, self.reported = fail_start, version
        self.absent = absent  # services the host has not got

    def act_present(self, target: SshTarget, profile: str, steps: list[str],
                    services: list[str]) -> list[str]:
        for step in steps:
            self.act(target, profile, step, [s for s in services if s not in self.absent])
        return [s for s in services if s in self.absent]

    def profile(self, name: str) -> Any:
        return self.profiles[name]

    def act(self, target: SshTarget, profile: str, step: str, services: list[str],
            signal: str = "") -> None:
        for s in services:
            self.calls.append((step, profile, s))
            self.running[s] = step == "start" and s != self.fail_start

    def status(self, target: SshTarget, profile: str, services: list[str]
               ) -> list[ServiceState]:
        return [ServiceState(s, target.name, "absent" if s in self.absent
                             else "active" if self.running.get(s) else "failed")
                for s in services]

    def install(self, target: SshTarget, profile: str, version: str) -> str:
        self.calls.append(("install", profile, version))
        return ""

    def version(self, target: SshTarget, profile: str) -> tuple[str, str]:
        return "api-server", self.reported


def _host(profile: str = "systemd") -> ControllerHostConfig:
    return ControllerHostConfig(name="db-1", address="10.0.0.1", ssh_key=Path("/k"),
                                roles=["config", "control", "analytics", "database"],
                                profile=profile)


def _convert(ex: Executor, tmp_path: Path, v2_profile: str = "systemd") -> str:
    conv = Conversion(_host("systemd"), _host(v2_profile), "5.0.0")
    said: list[str] = []
    return convert_node(ex, conv, TARGET, tmp_path, said.append)  # type: ignore[arg-type]


def test_stops_v1_installs_then_starts_the_database_first_and_checks_the_version(
        tmp_path: Path) -> None:
    """Before, convert stopped and started the same v1 services, config first: nothing was
    installed, the node stayed v1, and only `running` was asked."""
    ex = Executor()
    said = _convert(ex, tmp_path)
    steps = [c[0] for c in ex.calls]
    install = steps.index("install")
    stops, starts = ex.calls[:install], ex.calls[install + 1:]
    assert {c[0] for c in stops} == {"stop"} and {c[0] for c in starts} == {"start"}
    stopped = [c[2] for c in stops]
    # v1 stopped the other way round: analytics first, the database last
    assert stopped.index("collector") < stopped.index("control") < \
        stopped.index("api-server") < stopped.index("cassandra")
    started = [c[2] for c in starts]
    assert started[:3] == ["cassandra", "zookeeper", "rabbitmq"]  # database first
    assert started.index("rabbitmq") < started.index("api-server") < \
        started.index("control") < started.index("collector")
    assert converted(tmp_path) == {"10.0.0.1": {"name": "db-1", "profile": "systemd",
                                                "version": "5.0.0"}}
    assert said.startswith("db-1: converted to 5.0.0 (api-server reports 5.0.0-0.40)")

    # a re-run (the runner killed after the install): v1 is not stopped nor installed again
    again = Executor()
    _convert(again, tmp_path)
    assert {c[0] for c in again.calls} == {"start"}


def test_a_service_that_does_not_come_up_stops_the_conversion_naming_host_and_service(
        tmp_path: Path) -> None:
    ex = Executor(fail_start="api-server")
    with pytest.raises(ControllerError, match=r"db-1: after the start of 5.0.0 not running: "
                       r"api-server \(failed\); not started: .*control.*collector"):
        _convert(ex, tmp_path)
    started = [c[2] for c in ex.calls if c[0] == "start"]
    assert "control" not in started and "collector" not in started  # later roles wait


def test_a_node_reporting_another_version_is_refused(tmp_path: Path) -> None:
    ex = Executor(version="4.1.0-0.12")
    with pytest.raises(ControllerError, match=re.escape(
            "db-1: api-server reports version '4.1.0-0.12' after the conversion, not a build "
            "of 5.0.0")):
        _convert(ex, tmp_path)


def test_a_v2_profile_without_install_is_refused_before_anything_stops(
        tmp_path: Path) -> None:
    ex = Executor({"v2-compose": {"base": "docker-compose"}})
    with pytest.raises(ControllerError, match=re.escape(
            "db-1: conversion to 5.0.0 refused, nothing stopped: controller profile "
            "v2-compose has no 'install' step")):
        _convert(ex, tmp_path, "v2-compose")
    assert ex.calls == []


def test_a_required_service_the_host_has_not_got_refuses_before_anything_stops(
        tmp_path: Path) -> None:
    """A database host without its Cassandra (the inventory's roles are wrong): refused
    before any service stops, naming it; an optional one (a northbound client) is not."""
    ex = Executor(absent=("cassandra",))
    with pytest.raises(ControllerError, match=re.escape(
            "db-1: cassandra absent (not on this host) though its roles (config, control, "
            "analytics, database) map it: conversion to 5.0.0 refused, nothing stopped")):
        _convert(ex, tmp_path)
    assert ex.calls == []


@pytest.mark.services
def test_a_neutron_only_northbound_host_converts_skipping_the_clients_it_has_not_got(
        ssh: Endpoints, host: Host, tmp_path: Path) -> None:  # noqa: F811
    """A database + northbound ring node whose only northbound client is neutron-server
    (no kube-manager, no vCenter units), over SSH with the systemd profile: converted, its
    neutron-server and database stopped and started again, the absent clients skipped and
    said in both events. Before, the stop of contrail-vcenter-manager failed ("Unit ... not
    loaded") and the conversion stopped there."""
    systemd = BUILTIN_CONTROLLER_PROFILES["systemd"]
    units: dict[str, str] = systemd["services"]  # type: ignore[assignment]
    there = [*ROLE_SERVICES["database"], "neutron-server"]
    host.seed({**{f"systemd:{units[x]}": {"running": True, "enabled": True} for x in there},
               "dpkg:contrail-lib": {"version": "4.1.0-0.12"}})
    site = {"base": "systemd", "systemctl": f"{host.tools} systemctl",
            "install": f"{host.tools} {systemd['install']}",
            "version": f"{host.tools} {systemd['version']}",
            "services": {**units, "api-server": units["neutron-server"]}}  # version asked
    ex = ControllerExecutor(ssh.ssh.known_hosts_path, 10, 60, {"site": site})
    node = ControllerHostConfig(name="nb-1", address=host.target.address, ssh_key=Path("/k"),
                                profile="site", roles=["database", "northbound"])
    events: list[str] = []
    said = convert_node(ex, Conversion(node, node, "5.0.0-0.40"), host.target, tmp_path,
                        events.append)
    skipped = "kube-manager, vcenter-plugin, vcenter-manager absent (not on this host), skipped"
    assert events[0] == ("nb-1: v1 services stopped: neutron-server, rabbitmq, zookeeper, "
                         "cassandra; vcenter-manager, vcenter-plugin, kube-manager absent (not "
                         "on this host), skipped"), events  # stopped the other way round
    assert said == ("nb-1: converted to 5.0.0-0.40 (api-server reports 5.0.0-0.40); started "
                    f"in order: cassandra, zookeeper, rabbitmq, neutron-server; {skipped}")
    state = host.state()
    assert all(state[f"systemd:{units[x]}"]["running"] for x in there)
    assert state["dpkg:contrail-lib"]["version"] == "5.0.0-0.40"


@pytest.mark.services
def test_convert_over_ssh_with_the_systemd_profiles_install_and_version_steps(
        ssh: Endpoints, host: Host, tmp_path: Path) -> None:  # noqa: F811
    """The systemd profile's own steps over SSH: units stopped, every installed contrail-*
    package upgraded with apt-get to the release, units started database first, the
    version read back from dpkg."""
    roles = ["config", "control", "analytics", "database"]
    units = [str(BUILTIN_CONTROLLER_PROFILES["systemd"]["services"][s])  # type: ignore[index]
             for role in ("database", "config", "control", "analytics")
             for s in ROLE_SERVICES[role]]
    host.seed({**{f"systemd:{u}": {"running": True, "enabled": True} for u in units},
               "dpkg:contrail-lib": {"version": "4.1.0-0.12"},
               "dpkg:contrail-config": {"version": "4.1.0-0.12"}})
    systemd = BUILTIN_CONTROLLER_PROFILES["systemd"]
    site = {"base": "systemd", "systemctl": f"{host.tools} systemctl",
            "install": f"{host.tools} {systemd['install']}",
            "version": f"{host.tools} {systemd['version']}"}
    ex = ControllerExecutor(ssh.ssh.known_hosts_path, 10, 60, {"site": site})
    node = ControllerHostConfig(name="db-1", address=host.target.address,
                                ssh_key=Path("/k"), profile="site", roles=roles)
    said = convert_node(ex, Conversion(node, node, "5.0.0-0.40"), host.target, tmp_path,
                        lambda _: None)
    assert said.startswith("db-1: converted to 5.0.0-0.40 (api-server reports 5.0.0-0.40)")
    state = host.state()
    assert state["dpkg:contrail-lib"]["version"] == "5.0.0-0.40"
    assert state["dpkg:contrail-config"]["version"] == "5.0.0-0.40"
    assert all(state[f"systemd:{u}"]["running"] for u in units)
    calls = [c[1:] for c in host.calls() if c[0] == "systemctl" and c[1] in ("stop", "start")]
    assert calls[len(units):] == [["start", u] for u in units]  # the database's first
    assert calls[:len(units)] == [["stop", u] for u in reversed(units)]  # and last


@pytest.mark.services
def test_the_ring_runners_convert_installs_v2_through_the_new_inventory_entrys_profile(
        ssh: Endpoints, host: Host, tmp_path: Path) -> None:  # noqa: F811
    """`issu ring run`'s convert (issu_tui/ringhooks.py) on a node listed as v1 in
    [[old.controllers]] (profile site-v1) and as v2 in [[new.controllers]] (site-v2): v1's
    units stopped through site-v1, v2 installed and started through site-v2, the node then
    recorded as v2 (a runner made afterwards drives it through site-v2). Before, convert
    stopped and started the v1 units through site-v1: nothing installed, still v1."""
    from issu_tui.config import IssuConfig
    from issu_tui.journal import Journal
    from issu_tui.ringhooks import controller_runner

    s = ssh.ssh
    units = [str(BUILTIN_CONTROLLER_PROFILES["systemd"]["services"][x])  # type: ignore[index]
             for x in ROLE_SERVICES["database"]]
    v2_units = {x: f"v2-{x}" for x in ROLE_SERVICES["database"]}  # v2's own units
    host.seed({**{f"systemd:{u}": {"running": True, "enabled": True} for u in units},
               **{f"systemd:{u}": {"running": False, "enabled": True}
                  for u in v2_units.values()},
               "dpkg:contrail-lib": {"version": "4.1.0-0.12"}})
    systemd = BUILTIN_CONTROLLER_PROFILES["systemd"]
    tools = {"systemctl": f"{host.tools} systemctl",
             "install": f"{host.tools} {systemd['install']}",
             "version": f"{host.tools} {systemd['version']}"}
    entry = {"address": host.target.address, "roles": ["database"],
             "ssh_user": s.user, "ssh_key": str(s.key_path), "ssh_port": s.port}

    def side(name: str, version: str, profile: str) -> dict[str, object]:
        node = {**entry, "profile": profile, "name": "db-1" if name == "old" else "db-1-v2"}
        return {"name": name, "version": version,
                "cassandra": {"hosts": [host.target.address],
                              "prefix": "v1" if name == "old" else "v2"},
                "zookeeper": {"hosts": [f"{host.target.address}:1"],
                              "prefix": "v1" if name == "old" else "v2"},
                "rabbit": {"hosts": [f"{host.target.address}:1"],
                           "vhost": "/" if name == "old" else "/v2"},
                "controllers": [node]}

    config = IssuConfig.model_validate({
        "state_dir": str(tmp_path / "issu-state"),
        "old": side("old", "4.1.0", "site-v1"), "new": side("new", "5.0.0-0.40", "site-v2"),
        "ssh": {"known_hosts": str(s.known_hosts_path)},
        "controller_profiles": {"site-v1": {"base": "systemd", **tools},
                                "site-v2": {"base": "systemd", **tools,
                                            "services": v2_units}}})
    # a database-only node: its serving evidence is the ring runner's (nodetool)
    assert serving(config.new, config.new.controllers[0]) == []
    config.state_dir.mkdir(parents=True)
    journal = Journal.open(config.state_dir)
    try:
        runner = controller_runner(config, ["nodetool"], None, journal)
        runner.hooks.convert(host.target.address)
        assert host.state()["dpkg:contrail-lib"]["version"] == "5.0.0-0.40"
        assert all(host.state()[f"systemd:{u}"]["running"] for u in v2_units.values())
        assert not any(host.state()[f"systemd:{u}"]["running"] for u in units)
        calls = [c[1:] for c in host.calls()
                 if c[0] == "systemctl" and not {"is-active", "show"} & set(c)]
        assert calls == [*(["stop", u] for u in reversed(units)),
                         *(["start", v2_units[x]] for x in ROLE_SERVICES["database"])]
        assert converted(config.state_dir)[host.target.address]["profile"] == "site-v2"
        said = [e.message for e in journal.events(kind="ring")]
        assert any("db-1: v1 services stopped" in m for m in said), said
        assert any("db-1-v2: converted to 5.0.0-0.40" in m for m in said), said
    finally:
        journal.close()


def _closed_port() -> int:
    with socket.socket() as sock:  # bound, never listening: a connection is refused
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Ring:
    """nodetool as the ring runner asks it: the one node, UN."""

    def __init__(self, address: str) -> None:
        self.address = address

    def status(self, address: str, keyspace: str | None = None) -> list[NodeStatus]:
        return [NodeStatus(self.address, "UN", 1, 100.0 if keyspace else None,
                           "00000000-0000-0000-0000-000000000001", "dc1")]


@pytest.mark.services
def test_a_converted_node_that_does_not_serve_stops_the_plan_naming_what_did_not_answer(
        ssh: Endpoints, host: Host, tmp_path: Path) -> None:  # noqa: F811
    """A config+control node converted (v2 installed, its services running, its version a
    v2 build) whose api-server and control-node UVE do not answer: the conversion is
    refused after the deadline, naming the node, its api-server URL and its UVE; the plan's
    next step (stop v1) does not run and the convert step is not marked done. Before, a
    node running v2 was taken as converted and the plan went on."""
    from issu_tui.config import IssuConfig
    from issu_tui.journal import Journal
    from issu_tui.ringhooks import controller_runner

    s = ssh.ssh
    address = host.target.address
    systemd = BUILTIN_CONTROLLER_PROFILES["systemd"]
    roles = ["database", "config", "control"]
    units = [str(systemd["services"][x])  # type: ignore[index]
             for role in roles for x in ROLE_SERVICES[role]]
    host.seed({**{f"systemd:{u}": {"running": True, "enabled": True} for u in units},
               "dpkg:contrail-lib": {"version": "4.1.0-0.12"}})
    tools = {"base": "systemd", "systemctl": f"{host.tools} systemctl",
             "install": f"{host.tools} {systemd['install']}",
             "version": f"{host.tools} {systemd['version']}"}
    api_port, analytics_port = _closed_port(), _closed_port()

    def side(name: str, version: str) -> dict[str, object]:
        prefix = "v1" if name == "old" else "v2"
        return {"name": name, "version": version,
                "cassandra": {"hosts": [address], "prefix": prefix},
                "zookeeper": {"hosts": [f"{address}:1"], "prefix": prefix},
                "rabbit": {"hosts": [f"{address}:1"], "vhost": "/" if name == "old" else "/v2"},
                "api_server": {"url": f"http://127.0.0.1:{api_port}"},
                "analytics": {"url": f"http://127.0.0.1:{analytics_port}"},
                "control_nodes": [{"name": "ctl-1", "address": address}],
                "controllers": [{"name": "ctl-1" if name == "old" else "ctl-1-v2",
                                 "address": address, "roles": roles, "ssh_user": s.user,
                                 "ssh_key": str(s.key_path), "ssh_port": s.port,
                                 "profile": "site"}]}

    config = IssuConfig.model_validate({
        "state_dir": str(tmp_path / "issu-state"), "old": side("old", "4.1.0"),
        "new": side("new", "5.0.0-0.40"), "ssh": {"known_hosts": str(s.known_hosts_path)},
        "controller_profiles": {"site": tools}})
    config.state_dir.mkdir(parents=True)
    journal = Journal.open(config.state_dir)
    try:
        runner = controller_runner(config, ["nodetool"], None, journal, timeout_s=4)
        runner.nodetool = _Ring(address)  # type: ignore[assignment]
        steps = [RingStep("done", "convert", (address,), f"convert {address} to v2"),
                 RingStep("done", "stop", (address,), "stop v1 (the next step)")]
        with pytest.raises(ControllerError) as refused:
            runner.run(steps)
        message = str(refused.value)
        assert message.startswith("ctl-1-v2: running v2 but not serving after 4 s: "), message
        # an address given as 127.0.0.1 is asked on the node's own address instead
        assert f"config: its api-server http://{address}:{api_port} did not answer" in message
        assert (f"control: the analytics-api did not answer http://127.0.0.1:{analytics_port}"
                "/analytics/uves/control-node/ctl-1?flat") in message
        assert host.state()["dpkg:contrail-lib"]["version"] == "5.0.0-0.40"  # it did convert
        stops = [c for c in host.calls() if c[:2] == ["systemctl", "stop"]]
        assert len(stops) == len(units)  # v1's stop only: the next step never ran
        assert not journal.step_done(f"ring.0.convert.{address}")
    finally:
        journal.close()


def _view(keyspaces: dict[str, list[tuple[str, ...]]]) -> RingView:
    """A ring of Murmur3 tokens -2**62, 0, 2**62: ranges (2**62, -2**62] (it wraps around:
    50% of the token space), (-2**62, 0] and (0, 2**62] (25% each), each keyspace's with
    the replicas given."""
    tokens = [str(-2 ** 62), "0", str(2 ** 62)]
    return RingView("ring", (RingNode("127.9.0.1", True, "dc1", 1),),
                    tuple(KeyspaceReplicas(name, "SimpleStrategy", 1, tuple(
                        TokenRange(tokens[i - 1], tokens[i], replicas[i])
                        for i in range(len(tokens))))
                          for name, replicas in keyspaces.items()),
                    "org.apache.cassandra.dht.Murmur3Partitioner")


def test_a_converted_database_node_owning_nothing_stops_the_plan() -> None:
    """The converted node is UN in its own `nodetool status` but the ring's token map
    places no replica of a keyspace on it (it joined without its tokens' ranges): the step
    is refused naming the node and the keyspace, before the next step; a node owning its
    share passes, said with its effective ownership (as `nodetool status <keyspace>`
    prints it). One nodetool JVM for the node, whatever the number of
    keyspaces: before, one `nodetool status <keyspace>` per keyspace (ten on the demo's
    ring: old's and new's), 2-3 s each."""
    node, other = "127.9.0.1", "127.9.0.2"
    stopped: list[str] = []
    asked: list[tuple[str, str | None]] = []

    class Own(_Ring):
        def status(self, address: str, keyspace: str | None = None) -> list[NodeStatus]:
            asked.append((address, keyspace))
            return [NodeStatus(node, "UN", 1, None,
                               "00000000-0000-0000-0000-000000000001", "dc1")]

    nodetool = Own(node)
    events: list[str] = []
    runner = RingRunner(CassandraSide("ring", (node,)), nodetool,  # type: ignore[arg-type]
                        RingHooks(start_database=print, convert=lambda _n: None,
                                  stop_v1=stopped.append), ["ks"], on_event=events.append,
                        poll_s=0.01)
    runner._connect = lambda _what: contextlib.nullcontext(  # type: ignore[method-assign]
        SimpleNamespace(session=None))
    names = [f"ks{i}" for i in range(10)]
    view = _view({**{k: [(node,)] * 3 for k in names}, "ks": [(other,)] * 3})
    runner._read_ring = lambda _conn, _what: view  # type: ignore[method-assign,assignment]
    runner._present = lambda _s, _w: [k.name for k in view.keyspaces]  # type: ignore
    steps = [RingStep("done", "convert", (node,), f"convert {node}"),
             RingStep("done", "stop", (node,), f"stop v1 on {node}")]
    with pytest.raises(RingOpError, match=re.escape(
            f"convert {node}: {node} runs but does not serve as a database node: ks: owns "
            "nothing (a replica of none of its 3 token ranges)")):
        runner.run(steps)
    assert stopped == []
    # the convert step's own check: one nodetool for eleven keyspaces
    assert [a for a in asked if a[0] == node][-1:] == [(node, None)]
    asked.clear()
    view = _view({**{k: [(node,)] * 3 for k in names}, "ks": [(node,), (other,), (other,)]})
    runner.run(steps)
    serving = [a for a in asked if a == (node, None)]
    assert stopped == [node] and len(serving) >= 1 and all(k is None for _, k in asked)
    said = next(e for e in events if "serves" in e)
    assert said.startswith(f"convert {node}: {node} serves: UN, owns ks0 100.0%, ")
    assert said.endswith(", ks 50.0%"), said  # the range that wraps: half the token space
