"""The controllers' own services through a whole upgrade of a demo world, over real SSH (the
`demo` controller profile on the controller hosts):

- pre-sync stops and disables new's writers first, and refuses to copy while one still runs
  (named with its host);
- finalize stops old's writers before run-sync is drained and post-sync copies, starts new's
  after zk-sync and verify, and every keyspace (to_bgp_keyspace too) ends equal, with
  ZooKeeper's route-target ids the same on both;
- abort after finalize stopped old's config services starts them again and says so;
- finalize stops old's writers only once they have derived the api-server's last changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import RoundRobinPolicy
from kazoo.client import KazooClient

from backends.apiserver import ApiServerClient
from backends.cluster_version import cluster_release
from backends.node_records import node_records
from demo.controller import hostctl
from demo.controller.rest import VncRest
from demo.services import Endpoints
from demo.services.procs import read_pidfile
from issu_tui.config import load_config
from issu_tui.journal import Journal
from issu_tui.orchestrator import finalize as fin
from issu_tui.orchestrator.context import Context
from issu_tui.orchestrator.northbound import load_clients
from issu_tui.orchestrator.preflight_writers import version_findings
from tests.orch_world import (
    _patch_config,
    _stop_sync_runs,
    fresh_world,
    issu_json,
    stop_world,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

WRITERS = hostctl.WRITERS


@pytest.fixture(scope="module")
def world(services: Endpoints) -> Iterator[Any]:
    w = fresh_world(services, computes=1, seed_projects=1, install_s=0.2)
    yield w
    stop_world(w)


def _ctx(world: Any) -> Context:
    config = load_config(world.config_path)
    return Context(config=config, config_path=world.config_path,
                   journal=Journal.open(config.state_dir))


def _running(world: Any, cluster: str) -> list[str]:
    return [s for s in WRITERS if hostctl.running(world.controller_dir(cluster), s)]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5.0).status_code == 200
    except httpx.HTTPError:
        return False


def _fq_names_on_new(services: Endpoints) -> int:
    profiles = {EXEC_PROFILE_DEFAULT: ExecutionProfile(load_balancing_policy=RoundRobinPolicy(),
                                                       request_timeout=60)}
    cluster = Cluster([services.cassandra_new.host], port=services.cassandra_new.port,
                      execution_profiles=profiles)
    try:
        rows = cluster.connect().execute(
            'SELECT count(*) FROM "config_db_uuid".obj_fq_name_table').one()
        return int(rows[0])
    finally:
        cluster.shutdown()


def _zk_route_targets(hosts: str) -> dict[str, bytes]:
    zk = KazooClient(hosts=hosts)
    zk.start(timeout=15)
    try:
        path = "/id/bgp/route-targets"
        return {c: zk.get(f"{path}/{c}")[0] for c in zk.get_children(path)}
    finally:
        zk.stop()
        zk.close()


def test_versions_running_are_read_from_the_controllers(world: Any) -> None:
    config = load_config(world.config_path)
    # the releases as each cluster's analytics reports them (config and control node UVEs'
    # build_info): what an original issu.conf with old/new_analytics_url is given
    assert config.old.analytics is not None and config.new.analytics is not None
    assert cluster_release(config.old.analytics.url) == "4.1.0"
    assert cluster_release(config.new.analytics.url) == "5.0.0"
    found = {f.name: f for f in version_findings(config)}
    assert found["old version running on controller-v1"].ok
    assert found["old version running on controller-v1"].detail == "api-server 4.1.0"
    assert found["new version running on controller-v2"].detail == "api-server 5.0.0"
    wrong = config.model_copy(deep=True)
    wrong.old.version = "4.0.0"
    (check,) = [f for f in version_findings(wrong) if f.name.startswith("old ")]
    assert not check.ok and check.severity == "error"
    assert check.detail == ("controller-v1 runs 4.1.0 (api-server), the config says "
                            "old.version = 4.0.0")


def _api_conf(path: Path, world: Any, cid: str, cluster: Any) -> Path:
    """The cluster's contrail-api.conf, as its api-server reads it."""
    path.write_text(
        "[DEFAULTS]\n"
        f"listen_ip_addr = {world.controller_address(cid)}\nlisten_port = 8082\n"
        f"cassandra_server_list = {cluster.cassandra.hosts[0]}:{cluster.cassandra.port}\n"
        f"zk_server_ip = {' '.join(cluster.zookeeper.hosts)}\n"
        f"rabbit_server = {cluster.rabbit.hosts[0]}\nrabbit_port = {cluster.rabbit.port}\n"
        f"rabbit_vhost = {cluster.rabbit.vhost}\n")
    return path


def test_config_generate_reads_both_api_servers_node_records(
        world: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before the upgrade (nothing paired or synced): old's api-server holds its provisioned
    node records, new's (fenced, empty until the sync) none."""
    from click.testing import CliRunner

    from issu_tui.cli import cli

    config = load_config(world.config_path)
    args = ["config", "generate", "--from-api-servers", "--controller-profile", "demo",
            "--ssh-key", str(config.old.controllers[0].ssh_key),
            "--known-hosts", str(config.ssh.known_hosts if config.ssh else "")]
    for side, cid in (("old", "v1"), ("new", "v2")):
        conf = _api_conf(tmp_path / f"{cid}-contrail-api.conf", world, cid,
                         getattr(config, side))
        token = tmp_path / f"{cid}-token"
        token.write_text(world.admin_token(cid))
        token.chmod(0o600)
        args += [f"--{side}-api-conf", str(conf), f"--{side}-api-token-file", str(token)]
    unsaid = CliRunner().invoke(cli, args)
    assert unsaid.exit_code == 2
    assert (f"--new-version: not given, and new's api-server (http://"
            f"{world.controller_address('v2')}:8082) holds no analytics-node") in unsaid.output

    out = tmp_path / "issu.toml"
    result = CliRunner().invoke(cli, [*args, "--new-version", "5.0.0", "-o", str(out)])
    assert result.exit_code == 0, result.output
    monkeypatch.setenv("ISSU_OLD_RABBIT_PASSWORD", "x")
    monkeypatch.setenv("ISSU_NEW_RABBIT_PASSWORD", "x")
    generated = load_config(out)
    old_address = world.controller_address("v1")
    assert generated.old.version == "4.1.0"  # read from old's analytics (build_info)
    assert [(c.name, c.address) for c in generated.old.control_nodes] == [
        ("v1-control-1", old_address)]
    assert generated.old.analytics is not None
    assert generated.old.analytics.url == f"http://{old_address}:8081"
    roles = {h.address: set(h.roles) for h in generated.old.controllers}
    assert roles[old_address] == {"config", "analytics", "control"}
    assert "database" in roles[config.old.cassandra.hosts[0]]
    # config check names what new's records could not give (new is empty until the sync)
    check = CliRunner().invoke(cli, ["config", "check", "-c", str(out)])
    assert check.exit_code == 2
    assert f"{out}: new.controllers: no host with role control" in check.output
    assert f"{out}: new.controllers: no host with role analytics" in check.output
    assert "old.controllers: no host" not in check.output


def test_pre_sync_stops_new_writers_and_refuses_while_one_runs(world: Any,
                                                               services: Endpoints) -> None:
    v2 = world.controller_dir("v2")
    assert _running(world, "v1") == list(WRITERS)
    hostctl.start(v2, "schema-transformer")
    hostctl.start(v2, hostctl.KUBE_MANAGER)  # v2's host has one: a writer where present
    try:
        # a profile whose stop does nothing: the writer still runs, pre-sync copies nothing
        _patch_config(world, {"controller_profiles": {"demo-v2": {
            "base": "demo", "host": world.config_dict(Endpoints.load(world.run_dir))[
                "controller_profiles"]["demo-v2"]["host"], "stop": "true"}}})
        refused = issu_json(world, "phase", "pre-sync", timeout=600, expect=1)
        assert "new's writers still run after stop and disable; pre-sync refused" in \
            refused["error"]
        assert f"controller-v2 ({world.controller_address('v2')}): schema-transformer " \
               "(running), kube-manager (running)" in refused["error"]
        assert _fq_names_on_new(services) == 0

        world.write_config()  # the demo profile again
        done = issu_json(world, "phase", "pre-sync", timeout=600)
        assert done["ok"], done
        assert _running(world, "v2") == []
        assert not hostctl.running(v2, hostctl.KUBE_MANAGER)
        assert all(hostctl.disabled_marker(v2, s).exists()
                   for s in (*WRITERS, hostctl.KUBE_MANAGER))
        assert _fq_names_on_new(services) > 0
        journal = Journal(world.dir / "state" / "journal.db", read_only=True)
        try:
            [event] = journal.events(kind="controllers", text="stopped and disabled on new")
            absent = journal.events(kind="controllers", text="absent")
        finally:
            journal.close()
        assert event.message == ("stopped and disabled on new: controller-v2: "
                                 "schema-transformer, svc-monitor, device-manager, "
                                 "kube-manager")
        # no demo host has a vcenter-manager: said, with its host, and skipped (by the
        # refused run and by this one)
        assert [e.message for e in absent] == ["prepare-new: controller-v2: vcenter-manager "
                                               "absent (not on this host), skipped"] * 2
    finally:
        world.write_config()  # the next tests' profile even when an assertion failed
        hostctl.stop(v2, "schema-transformer")
        hostctl.stop(v2, hostctl.KUBE_MANAGER)


def test_finalize_stops_old_writers_first_and_starts_new_ones_last(
        world: Any, services: Endpoints) -> None:
    assert issu_json(world, "phase", "run-sync", timeout=600)["ok"]
    up = issu_json(world, "compute", "upgrade", "all", timeout=600)
    assert up["ok"], up
    done = issu_json(world, "finalize", timeout=600)
    assert done["ok"], done

    assert _running(world, "v1") == []
    assert _running(world, "v2") == list(WRITERS)
    # v2's kube-manager, stopped since pre-sync, started again with the other writers
    v2 = world.controller_dir("v2")
    assert hostctl.running(v2, hostctl.KUBE_MANAGER)
    assert not hostctl.disabled_marker(v2, hostctl.KUBE_MANAGER).exists()
    # disabled too: a reboot of old's config host (`issu demo up`) does not bring them back
    v1 = world.controller_dir("v1")
    assert all(hostctl.disabled_marker(v1, s).exists() for s in (*WRITERS, "api-server"))
    journal = Journal(world.dir / "state" / "journal.db", read_only=True)
    try:
        order = [e.fields.get("step") for e in journal.events(kind="finalize")
                 if str(e.message).endswith(": running")]
        stopped = journal.events(kind="finalize", text="stop-old-services: stopped on old")
        events = journal.events(kind="finalize")
    finally:
        journal.close()
    assert order.index("stop-old-services") < order.index("stop-run-sync") < \
        order.index("post-sync") < order.index("zk-sync") < order.index("verify") < \
        order.index("start-new-writers")
    assert "controller-v1: schema-transformer, svc-monitor, device-manager" in \
        stopped[0].message
    # the demo profile's fence/unfence steps, over SSH on each controller host, did the fence
    messages = [e.message for e in events]
    assert ("fence-old: old api-server refuses northbound writes: old's api-server fenced by "
            "the profile's fence step on controller-v1 (fenced)") in messages
    assert ("open-new: new api-server accepts writes: new's api-server opened by the "
            "profile's unfence step on controller-v2 (open)") in messages
    # new's fence proven through the profile's fence_status step, as on a real deployment
    # (whose api-server has no /issu/status of its own), not by the demo's fence call
    assert ("check-new-fenced: new's api-server fenced on controller-v2, as the profile's "
            "fence_status step says") in messages
    # old's node records, copied into new by the sync, are gone from new; new's own stay
    with ApiServerClient(world.api_url("v2"), token=world.admin_token("v2")) as new_api:
        names = {r.name for r in node_records(new_api, control=False)}
    assert names == {"v2-config-1", "v2-analytics-1", "v2-database-1"}, names
    assert any(m.startswith("remove-old-nodes: old node records removed from new: "
                            f"config-node v1-config-1 ({world.controller_address('v1')})")
               for m in messages), messages
    status = issu_json(world, "status")
    assert status["verify"]["differences"] == 0 and status["verify"]["checked"] > 0
    # new's schema-transformer took over old's allocations: the same ids in ZooKeeper
    assert _zk_route_targets(services.zk_new.hosts) == _zk_route_targets(services.zk_old.hosts)


def test_abort_starts_the_old_config_services_again(world: Any) -> None:
    """After the whole upgrade (a finished journal), a new one in a fresh state_dir: old's
    writers running again, finalize's steps up to the point of no return run (new's writers
    started, the neutron plugin on the northbound host switched), then abort: everything
    back on old."""
    # the finished upgrade's reverse replication (its journal goes with the state dir)
    # still consumes the reverse queue: this finalize's bind-reverse-queue would refuse
    _stop_sync_runs(world.config_path)
    shutil.rmtree(world.dir / "state", ignore_errors=True)
    v1 = world.controller_dir("v1")
    for service in (*WRITERS, "api-server"):  # stopped by the finalize before
        hostctl.disabled_marker(v1, service).unlink(missing_ok=True)
        hostctl.start(v1, service)
    plugin = world.write_northbound()  # names v1 again
    Path(f"{plugin}.issu-backup").unlink(missing_ok=True)
    ctx = _ctx(world)
    try:
        run = fin.FinalizeRun(ctx, clients=load_clients(
            world.config_path.with_name("northbound.toml")))
        for name in ("fence-old", "stop-old-services", "bind-reverse-queue",
                     "start-new-writers", "switch-northbound"):
            fin._run_once(run, fin.step(name))
    finally:
        ctx.journal.close()
    assert _running(world, "v1") == []
    assert _running(world, "v2") == list(WRITERS)
    assert hostctl.running(world.controller_dir("v2"), hostctl.KUBE_MANAGER)
    assert f"api_server_ip={world.controller_address('v2')}" in plugin.read_text()
    # the northbound host's neutron-server, restarted, now talks to new's api-server
    _neutron_reaches(world, "v2")
    # new's writers ran: their cells on new would outlive a retry's copy, so abort needs
    # --drop-new-data (refused without it, before anything changes)
    refused = issu_json(world, "abort", timeout=600, expect=None)
    assert not refused["ok"] and "--drop-new-data" in refused["error"], refused
    assert _running(world, "v2") == list(WRITERS)
    result = issu_json(world, "abort", "--drop-new-data", timeout=600)
    assert result["ok"], result
    # new still fenced: nothing northbound reached it, so the way back is open
    assert (f"northbound pointed back at old: neutron northbound:{plugin}: restored, read "
            "back, neutron-server restarted, running") in result["done"]
    assert f"api_server_ip = {world.controller_address('v1')}" in plugin.read_text()
    assert _running(world, "v2") == []
    assert all(hostctl.disabled_marker(world.controller_dir("v2"), s).exists()
               for s in (*WRITERS, hostctl.KUBE_MANAGER))
    assert not hostctl.running(world.controller_dir("v2"), hostctl.KUBE_MANAGER)
    assert "old's config services enabled and started again: controller-v1: api-server, " \
           "device-manager, svc-monitor, schema-transformer" in result["done"]
    assert not any(hostctl.disabled_marker(v1, s).exists() for s in (*WRITERS, "api-server"))
    assert ("old api-server open for writes again: old's api-server opened by the profile's "
            "unfence step on controller-v1 (open)") in result["done"]
    assert _running(world, "v1") == list(WRITERS)
    assert hostctl.running(world.controller_dir("v1"), "api-server")
    # the reverse replication's queue, bound on new's broker before new's writers started,
    # goes with the rest (left there it would collect new's changes for nobody)
    queue = load_config(world.config_path).sync.queue_name
    assert f"{queue}.reverse deleted" in "; ".join(result["done"]), result["done"]
    _neutron_reaches(world, "v1")  # restarted again by abort: back on old's api-server


def _neutron_requests(world: Any, cluster: str) -> int:
    status = httpx.get(f"{world.api_url(cluster)}/issu/status", timeout=10).json()
    return sum(n for agent, n in status["useragents"].items()
               if agent.endswith(":neutron-server"))


def _neutron_reaches(world: Any, cluster: str) -> None:
    """The demo's neutron-server lists networks from `cluster`'s api-server (its requests
    counted there, a few seconds apart) and names it in its state."""
    other = "v1" if cluster == "v2" else "v2"
    address = f"{world.controller_address(cluster)}:8082"
    deadline = time.monotonic() + 60
    while world.neutron_state().get("api_server") != address or \
            world.neutron_state().get("last_error"):
        assert time.monotonic() < deadline, world.neutron_state()
        time.sleep(0.5)
    before = _neutron_requests(world, cluster)
    other_before = _neutron_requests(world, other) if _answers(world.api_url(other)) else None
    time.sleep(3)
    assert _neutron_requests(world, cluster) >= before + 2
    if other_before is not None:
        assert _neutron_requests(world, other) == other_before


def _route_target_and_useragent_on_old(world: Any, services: Endpoints, network: str,
                                       uuid: str) -> tuple[list[Any], list[Any]]:
    """old's rows the writers derive for a network: its route target, its useragent key."""
    old = load_config(world.config_path).old.cassandra
    profiles = {EXEC_PROFILE_DEFAULT: ExecutionProfile(load_balancing_policy=RoundRobinPolicy(),
                                                       request_timeout=60)}
    cluster = Cluster([services.cassandra_old.host], port=services.cassandra_old.port,
                      execution_profiles=profiles)
    try:
        session = cluster.connect()
        rt = list(session.execute(
            f'SELECT value FROM "{old.keyspace("to_bgp_keyspace")}".route_target_table '
            "WHERE key = %s", (f"{network}:{network.rsplit(':', 1)[1]}",)))
        ua = list(session.execute(
            f'SELECT value FROM "{old.keyspace("useragent")}".useragent_keyval_table '
            "WHERE key = %s", (f"neutron:network:{uuid}",)))
        return rt, ua
    finally:
        cluster.shutdown()


def test_finalize_stops_old_writers_only_once_they_derived_the_last_changes(
        world: Any, services: Endpoints) -> None:
    """Found by `make chaos` (seed 15): a network created just before the fence, and old's
    schema-transformer slower than finalize (here: paused). Stopped at once, old never got the
    network's route target; post-sync copied old without it and new's schema-transformer
    allocated one on new only (new ended with cells and ZooKeeper ids old never had).
    Waiting until old's writers' tables stayed unchanged for a while let a writer further
    behind than that pass (review M6): finalize now waits until their own queues on old's
    broker are drained and acknowledged (the demo profile's `queues` step, rabbitmqctl).
    Here the schema-transformer stays stopped for well past the quiet window."""
    shutil.rmtree(world.dir / "state", ignore_errors=True)
    v1 = world.controller_dir("v1")
    assert _running(world, "v1") == list(WRITERS)  # the abort test started them again
    _patch_config(world, {"sync": {"writers_settle_s": 2}})
    group = read_pidfile(hostctl.pidfile(v1, "schema-transformer"))
    assert group is not None
    name = f"settle-{int(time.time())}"

    async def create() -> str:
        rest = VncRest(world.api_url("v1"))
        try:
            await rest.ensure("project", {"fq_name": ["default-domain", "settle"],
                                          "parent_type": "domain"})
            return await rest.create("virtual-network", {
                "fq_name": ["default-domain", "settle", name], "parent_type": "project"})
        finally:
            await rest.close()

    ctx = _ctx(world)
    done = threading.Event()

    def term_pending() -> bool:
        status = Path(f"/proc/{group.pgid}/status").read_text()
        shared = next(line for line in status.splitlines() if line.startswith("ShdPnd:"))
        return bool(int(shared.split()[1], 16) & (1 << (signal.SIGTERM - 1)))

    def resume_once_finalize_waits() -> None:
        # The writer goes on once finalize has waited for it 5 times the quiet window, or
        # else once stop-old-services has sent it SIGTERM (it then stops without another
        # pass, as a writer slower than the stop does: what the table heuristic allowed).
        waiting_since = None
        while not done.is_set():
            journal = Journal(world.dir / "state" / "journal.db", read_only=True)
            try:
                waiting = journal.events(kind="finalize", text="settle-old-writers: running")
            finally:
                journal.close()
            if waiting and waiting_since is None:
                waiting_since = time.monotonic()
            slow_enough = waiting_since is not None and time.monotonic() - waiting_since > 10
            if slow_enough or term_pending():
                os.killpg(group.pgid, signal.SIGCONT)
                return
            done.wait(0.1)

    os.killpg(group.pgid, signal.SIGSTOP)
    resumer = threading.Thread(target=resume_once_finalize_waits, daemon=True)
    try:
        uuid = asyncio.run(create())
        resumer.start()
        run = fin.FinalizeRun(ctx, no_northbound=True)
        until = [s.name for s in fin.STEPS].index("stop-old-services")
        for todo in fin.STEPS[:until + 1]:
            fin._run_once(run, todo)
    finally:
        done.set()
        resumer.join(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group.pgid, signal.SIGCONT)
        ctx.journal.close()
    assert _running(world, "v1") == []
    rt, ua = _route_target_and_useragent_on_old(world, services,
                                               f"default-domain:settle:{name}", uuid)
    assert rt, f"old's schema-transformer was stopped before it derived {name}'s route target"
    assert ua == [(f"default-domain:settle:{name}",)]
    journal = Journal(world.dir / "state" / "journal.db", read_only=True)
    try:
        settled = journal.events(kind="finalize", text="old's writers settled")
    finally:
        journal.close()
    assert settled and "their queues on old's broker are empty and acknowledged" in \
        settled[0].message and "schema_transformer." in settled[0].message
    world.write_config()
    result = issu_json(world, "abort", timeout=600)
    assert result["ok"], result
    assert _running(world, "v1") == list(WRITERS)


def test_a_converted_config_and_control_node_serves_and_the_plan_goes_on(world: Any) -> None:
    """The ring runner's convert of a controller host (roles config, control, analytics;
    the demo profile over the real sshd): its services stopped, v2 installed, started again
    (new processes), and the serving check passes on real answers, its own api-server
    answering and its control-node UVE in new's analytics-api; the convert step is marked
    and the plan's next step runs. The refusal is tests/test_convert.py's; here nothing
    stubs what serves (only nodetool: this host runs no database). Last in the module: it
    starts v2's writers, which the tests before want stopped."""
    from dataclasses import replace

    from issu_tui.orchestrator.convert import serving
    from issu_tui.orchestrator.ringplan import RingStep
    from issu_tui.ringhooks import controller_runner
    from tests.test_convert import _Ring

    config = load_config(world.config_path)
    host = next(h for h in config.new.controllers if h.name == "controller-v2")
    v2 = world.controller_dir("v2")
    before = {s: read_pidfile(hostctl.pidfile(v2, s)) for s in ("api-server", "control")}
    journal = Journal.open(config.state_dir)
    try:
        runner = controller_runner(config, ["nodetool"], None, journal, timeout_s=120)
        runner.nodetool = _Ring(host.address)  # type: ignore[assignment]
        runner._serves_database = lambda _node, _what: None  # type: ignore[method-assign]
        went_on: list[str] = []
        runner.hooks = replace(runner.hooks, stop_v1=went_on.append)
        steps = [RingStep("done", "convert", (host.address,), f"convert {host.name}"),
                 RingStep("done", "stop", (host.address,), "the next step")]
        runner.run(steps)
        assert went_on == [host.address]
        assert journal.step_done(f"ring.0.convert.{host.address}")
        said = [e.message for e in journal.events(kind="ring")]
        assert any(m.startswith("controller-v2: converted to 5.0.0 (api-server reports 5.0.0")
                   and "api-server" in m and "control" in m for m in said), said
    finally:
        journal.close()
    after = {s: read_pidfile(hostctl.pidfile(v2, s)) for s in ("api-server", "control")}
    assert all(after[s] is not None and after[s] != before[s] for s in after)  # restarted
    assert serving(config.new, host) == []
