"""`issu demo up --controllers 3`: three controller hosts per cluster, each its own address
reached over real SSH, and the procedure's controller steps acting on every one of them.

The first host of each cluster runs api-server, control and analytics-api, the others
api-server; every host runs the writers, active-backup as Contrail's (a ZooKeeper election:
only the active one opens its queue on the broker)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from demo.controller import hostctl
from demo.services import Endpoints
from issu_tui.config import load_config
from issu_tui.journal import Journal
from issu_tui.orchestrator import controllers as ctl
from issu_tui.orchestrator.context import Context
from issu_tui.orchestrator.preflight_writers import new_writer_findings
from issu_tui.orchestrator.settle import settle_old_writers
from tests.orch_world import eventually, fresh_world, issu, stop_world

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
        assert f"stop on {h.name} over SSH" in plan, plan
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
