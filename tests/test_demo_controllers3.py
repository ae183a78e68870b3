"""`issu demo up --controllers 3`: three controller hosts per cluster, each its own address
reached over real SSH, and the procedure's controller steps acting on every one of them.

Every host runs api-server, control (its own control node, a bgp-router each) and
analytics-api, and the writers, active-backup as Contrail's (a ZooKeeper election: only the
active one opens its queue on the broker). One world for the file (its setup is most of its
cost): the checks of the world, then stop/start of old's services, then a whole upgrade."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from demo.controller import hostctl
from demo.services import Endpoints
from issu_tui.config import load_config
from issu_tui.controller_poll import poll_controllers
from issu_tui.journal import Journal
from issu_tui.orchestrator import controllers as ctl
from issu_tui.orchestrator.context import Context
from issu_tui.orchestrator.preflight_writers import new_writer_findings
from issu_tui.orchestrator.settle import settle_old_writers
from tests.orch_world import REPO, eventually, fresh_world, issu, issu_json, stop_world

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def world(services: Endpoints) -> Iterator[Any]:
    w = fresh_world(services, computes=1, seed_projects=1, install_s=0.2, controllers=3)
    yield w
    stop_world(w)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5.0).status_code == 200
    except httpx.HTTPError:
        return False


def _xmpp(address: str) -> dict[str, str]:
    """peer -> state of the XMPP sessions the control node at `address` has."""
    got = httpx.get(f"http://{address}:8083/Snh_BgpNeighborReq?encoding=XMPP", timeout=10)
    return {n["peer"]: n["state"] for n in got.json()["BgpNeighborListResp"]["neighbors"]
            if n["encoding"] == "XMPP"}


def _bgp(address: str) -> dict[str, str]:
    got = httpx.get(f"http://{address}:8083/Snh_BgpNeighborReq", timeout=10)
    return {n["peer"]: n["state"] for n in got.json()["BgpNeighborListResp"]["neighbors"]
            if n["encoding"] == "BGP"}


def _bgp_routers(api: str) -> set[str]:
    got = httpx.get(f"{api}/bgp-routers", timeout=10).json()["bgp-routers"]
    return {r["fq_name"][-1] for r in got}


def _vrouters(address: str) -> set[str]:
    got = httpx.get(f"http://{address}:8081/analytics/uves/vrouters", timeout=10)
    return {v["name"] for v in got.json()}


def test_every_host_runs_a_control_node_and_an_analytics_api(world: Any) -> None:
    config = load_config(world.config_path)
    computes = [c.name for c in config.computes]
    for side, cid in ((config.old, "v1"), (config.new, "v2")):
        hosts = world.controller_hosts(cid)
        # the inventory: each host with its roles, its control node by its own address
        listed = {h.name: h for h in side.controllers}
        for host in hosts:
            assert listed[host.name].roles == ["config", "control", "analytics"], host.name
            assert listed[host.name].address == host.address
        assert [(cn.name, cn.address) for cn in side.control_nodes] == [
            (f"{cid}-control-{h.index}", h.address) for h in hosts]
        for host in hosts:  # a process each, answering on the host's own address
            for service in hostctl.ROLES:
                assert hostctl.running(host.directory, service), (host.name, service)
            for port in (8082, 8081, 8083):
                assert _answers(f"http://{host.address}:{port}/"), (host.name, port)
    v1 = world.controller_hosts("v1")
    # v1's control nodes are bgp-routers (as provisioning adds them), meshed in iBGP
    assert _bgp_routers(world.api_url("v1")) == {"v1-control-1", "v1-control-2",
                                                 "v1-control-3"}
    for host in v1:
        mesh = {f"v1-control-{h.index}" for h in v1 if h != host}
        eventually(lambda h=host, m=mesh: all(_bgp(h.address).get(p) == "Established"
                                              for p in m), 60, f"{host.name}'s iBGP mesh")
        # every compute has an XMPP session to every v1 control node and reports to every
        # analytics-api (its collectors)
        eventually(lambda h=host: all(_xmpp(h.address).get(c) == "Established"
                                      for c in computes), 60, f"{host.name}'s XMPP sessions")
        assert _vrouters(host.address) >= set(computes), host.name
    # `issu demo status` (and the startup screen): each further host ready
    states = {p.name: p.state for p in world.status()}
    assert all(states[h.name] == "ready" for c in ("v1", "v2")
               for h in world.controller_hosts(c)[1:]), states
    # what the console's controller hosts pane shows: each host's services over SSH
    view = poll_controllers(config)
    assert view is not None
    shown = {h.name: dict(h.services) for h in view.hosts}
    assert sorted(shown) == sorted(h.name for c in ("v1", "v2")
                                   for h in world.controller_hosts(c))
    for host in view.hosts:
        assert host.error is None, host
        writers = "running" if host.side == "old" else "stopped"
        assert shown[host.name] == {"api-server": "running", "control": "running",
                                    "analytics-api": "running",
                                    **{w: writers for w in hostctl.WRITERS}}, host


def test_three_controller_hosts_per_cluster_each_stopped_and_started(world: Any) -> None:
    config = load_config(world.config_path)
    old = [h for h in config.old.controllers if "config" in h.roles]
    new = [h for h in config.new.controllers if "config" in h.roles]
    assert [h.name for h in old] == ["controller-v1", "controller-v1-2", "controller-v1-3"]
    assert [h.name for h in new] == ["controller-v2", "controller-v2-2", "controller-v2-3"]
    addresses = {h.address for h in old + new}
    assert len(addresses) == 6 and all(a.startswith("127.") for a in addresses)
    hosts = world.controller_hosts("v1")
    for host in hosts:
        assert _answers(f"http://{host.address}:8082/"), host.name

    # the plan and preflight (what the console shows) name every host
    plan = issu(world, "plan", check=True).stdout
    for h in old:
        assert f"stop and disable on {h.name} over SSH" in plan, plan
    for h in new:
        assert f"enable and start on {h.name} over SSH" in plan, plan
    assert {f.name for f in new_writer_findings(config)} >= {
        f"new writers stopped on {h.name}" for h in new}

    ctx = Context(config=config, config_path=world.config_path,
                  journal=Journal.open(config.state_dir))
    try:
        # one active writer of each kind, its queue named after one of old's hosts
        settled = settle_old_writers(ctx)
        assert settled.startswith("old's writers settled"), settled
        stopped = ctl.stop_old_services(ctx)
        for h in old:
            assert f"{h.name}: schema-transformer, svc-monitor, device-manager, api-server" \
                in stopped, stopped
        for host in hosts:
            for service in ("api-server", *hostctl.WRITERS):
                assert not hostctl.running(host.directory, service), (host.name, service)
            assert not _answers(f"http://{host.address}:8082/"), host.name
        first = hosts[0]
        assert hostctl.running(first.directory, "control")
        assert hostctl.running(first.directory, "analytics-api")
        assert _answers(f"http://{first.address}:8081/")

        started = ctl.start_old_services(ctx)
        assert all(f"{h.name}: api-server, device-manager" in started for h in old), started
        for host in hosts:  # answering again; the writers stay up meanwhile (backups wait)
            eventually(lambda h=host: _answers(f"http://{h.address}:8082/"), 120,
                       f"{host.name}'s api-server")
        for host in hosts:
            assert all(hostctl.running(host.directory, s)
                       for s in ("api-server", *hostctl.WRITERS)), host.name
    finally:
        ctx.journal.close()


def _active_queues(world: Any, vhost: str) -> list[str]:
    """The writers' queues on `vhost` (one per active writer), asked of the broker."""
    done = subprocess.run([sys.executable, "-m", "demo.controller.hostctl", "--dir",
                           str(world.controller_dir("v2")), "queues", vhost],
                          capture_output=True, text=True, timeout=180, cwd=REPO, check=True)
    prefixes = tuple(f"{w.replace('-', '_')}." for w in hostctl.WRITERS)
    return sorted(line.split()[0] for line in done.stdout.splitlines()
                  if line.startswith(prefixes))


def test_whole_upgrade_of_three_controller_hosts(world: Any, services: Endpoints) -> None:
    """preflight, pair, pre-sync, run-sync, computes, finalize: 0 differences, and on every
    host the services where the procedure leaves them."""
    assert issu_json(world, "preflight")["ok"]
    assert issu_json(world, "pair")["ok"]
    assert issu_json(world, "phase", "pre-sync", timeout=600)["ok"]
    assert issu_json(world, "phase", "run-sync", timeout=600)["ok"]
    up = issu_json(world, "compute", "upgrade", "all", timeout=600)
    assert up["ok"] and not up["failed"], up
    done = issu_json(world, "finalize", timeout=600)
    assert done["ok"], done

    status = issu_json(world, "status")
    assert status["phase"]["name"] == "done"
    assert status["verify"]["differences"] == 0 and status["verify"]["checked"] > 0

    old, new = world.controller_hosts("v1"), world.controller_hosts("v2")
    for host in old:  # old's config services stopped on all three; control, analytics on
        for service in ("api-server", *hostctl.WRITERS):
            assert not hostctl.running(host.directory, service), (host.name, service)
        assert not _answers(f"http://{host.address}:8082/"), host.name
        for service in ("control", "analytics-api"):
            assert hostctl.running(host.directory, service), (host.name, service)
        assert _answers(f"http://{host.address}:8081/") and \
            _answers(f"http://{host.address}:8083/"), host.name
    for host in new:  # new's api-servers open, every writer running (active or backup)
        for service in hostctl.PROCESSES:
            assert hostctl.running(host.directory, service), (host.name, service)
        opened = httpx.get(f"http://{host.address}:8082/issu/status", timeout=10).json()
        assert opened["northbound_open"], host.name
    # exactly one active writer of each kind: one queue each, on one of new's hosts
    vhost = services.rabbit.vhost_new
    eventually(lambda: len(_active_queues(world, vhost)) == 3, 60, "new's active writers")
    queues = _active_queues(world, vhost)
    addresses = {h.address for h in new}
    assert sorted(q.split(".", 1)[0] for q in queues) == sorted(
        w.replace("-", "_") for w in hostctl.WRITERS), queues
    assert all(q.split(".", 1)[1] in addresses for q in queues), queues
    # new's control nodes are its bgp-routers (old's unpaired); the computes' XMPP sessions
    # go to each of them and they report to each analytics-api
    assert _bgp_routers(world.api_url("v2")) == {"v2-control-1", "v2-control-2",
                                                 "v2-control-3"}
    computes = [c.name for c in load_config(world.config_path).computes]
    for host in new:
        eventually(lambda h=host: all(_xmpp(h.address).get(c) == "Established"
                                      for c in computes), 60, f"{host.name}'s XMPP sessions")
        eventually(lambda h=host: _vrouters(h.address) >= set(computes), 60,
                   f"{host.name}'s analytics-api")
