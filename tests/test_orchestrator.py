"""The orchestrator against the real services and the demo world: pairing on the demo
api-servers, preflight refusals, batches over real SSH (canary, threshold), SIGKILL of the
executor mid-batch then a restart that reconciles by probing, and abort."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from backends.apiserver import ApiServerClient, ApiServerError, BgpRouterSpec
from demo.services import Endpoints
from issu_tui.config import load_config
from issu_tui.journal import Journal
from issu_tui.orchestrator import pairing
from issu_tui.orchestrator.context import Context
from issu_tui.orchestrator.executor import Executor
from issu_tui.orchestrator.phases import phase_marker
from issu_tui.orchestrator.preflight import check_computes, check_versions
from tests.orch_world import ISSU, REPO, eventually, fresh_world, issu_json, stop_world

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def world(services: Endpoints) -> Iterator[Any]:
    w = fresh_world(services, computes=4, install_s=0.3)
    yield w
    stop_world(w)


def _ctx(world: Any) -> Context:
    config = load_config(world.config_path)
    return Context(config=config, config_path=world.config_path,
                   journal=Journal.open(config.state_dir))


def _api(world: Any, cluster: str) -> ApiServerClient:
    token = world.admin_token(cluster)
    return ApiServerClient(f"http://{world.controller_address(cluster)}:8082", token=token)


def test_pair_and_unpair_are_idempotent_on_the_demo_api_servers(world: Any) -> None:
    ctx = _ctx(world)
    try:
        first = pairing.pair(ctx)
        second = pairing.pair(ctx)
        # old's own control node was provisioned with the cluster: only new's is created
        assert "created v2-control-1" in first and "already there v1-control-1" in first
        assert "created none" in second and "already there v1-control-1, v2-control-1" in second
        with _api(world, "v1") as old:
            routers = {r["fq_name"][-1]: r for r in old.list("bgp-router", detail=True)}
            assert set(routers) == {"v1-control-1", "v2-control-1"}
            params = routers["v2-control-1"]["bgp_router_parameters"]
            assert params["address"] == world.controller_address("v2")
            assert params["autonomous_system"] == ctx.config.old.asn
            # a direct second create of the same fq_name is also a no-op
            uuid, created = old.ensure_bgp_router(
                BgpRouterSpec("v2-control-1", world.controller_address("v2"), 64512))
            assert not created and uuid == old.fq_name_to_id(
                "bgp-router", ["default-domain", "default-project", "ip-fabric", "__default__",
                               "v2-control-1"])
        # nothing synced yet: the new cluster holds no pairing to remove
        message = pairing.unpair(ctx)
        assert "old cluster: removed bgp-routers of new control nodes v2-control-1" in message
        assert "new cluster: removed bgp-routers of old control nodes none" in message
        again = pairing.unpair(ctx)
        assert "none (already gone)" in again
        with _api(world, "v1") as old:
            assert old.bgp_router_names() == {"v1-control-1"}
        with _api(world, "v2") as new:
            assert new.fence_state() is True
            with pytest.raises(ApiServerError) as refused:
                new.ensure_bgp_router(BgpRouterSpec("x", "127.0.0.9", 64512))
            assert refused.value.fenced
    finally:
        ctx.journal.close()


def test_preflight_refuses_and_says_how_to_fix(world: Any) -> None:
    ctx = _ctx(world)
    try:
        bad_versions = ctx.config.model_copy(deep=True)
        bad_versions.old.version = "3.1.0"
        ctx_v = Context(config=bad_versions, config_path=ctx.config_path, journal=ctx.journal)
        [check] = check_versions(ctx_v)
        assert not check.ok and "3.1.0" in check.detail and "3.2.x" in check.fix

        other_keys = ctx.config.model_copy(deep=True)
        empty = ctx.config.state_dir / "empty_known_hosts"
        empty.write_text("")
        other_keys.ssh.known_hosts = empty
        ctx_k = Context(config=other_keys, config_path=ctx.config_path, journal=ctx.journal)
        checks = check_computes(ctx_k)
        assert checks and all(not c.ok for c in checks)
        assert all("known_hosts" in c.fix and "authorized_keys" not in c.fix for c in checks)

        # the advice follows the failure: nothing listening, a key the compute refuses
        import paramiko

        wrong_key = ctx.config.state_dir / "not_authorized_key"
        paramiko.ECDSAKey.generate().write_private_key_file(str(wrong_key))
        wrong_key.chmod(0o600)
        other = ctx.config.model_copy(deep=True)
        other.computes = other.computes[:2]
        other.computes[0].ssh_port = 1
        other.computes[1].ssh_key = wrong_key
        ctx_o = Context(config=other, config_path=ctx.config_path, journal=ctx.journal)
        closed, refused = check_computes(ctx_o)
        assert not closed.ok and f"listens on {other.computes[0].address} port 1" in closed.fix
        assert not refused.ok and f"public key of {wrong_key}" in refused.fix
    finally:
        ctx.journal.close()


def _computes_phase(ctx: Context) -> None:
    """Skip the sync phases (another test covers them): the computes phase is open."""
    for phase in ("preflight", "pair", "pre-sync", "run-sync"):
        ctx.mark_step(phase_marker(phase))
    ctx.journal.set_phase("run-sync", status="done", note="marked by the test")


def _states(journal: Journal) -> dict[str, str]:
    return {r.name: r.state for r in journal.computes()}


def _steps(journal: Journal, name: str) -> list[str]:
    return [row["step"] for row in journal.command_output(name, limit=1000)]


def test_batches_over_ssh_canary_and_threshold(world: Any) -> None:
    ctx = _ctx(world)
    executor = Executor(ctx)
    executor.start()
    try:
        _computes_phase(ctx)
        journal = ctx.journal
        world.fleet.update_settings(failures={"compute-1": 1.0})
        intent = journal.add_intent("upgrade", {"computes": ["all"], "batch_size": 2,
                                                "parallel": 2, "canary": 1,
                                                "max_failures": 1}, "test")
        executor.serve(until_idle=True)
        result = next(i for i in journal.intents(None) if i.id == intent)
        assert result.status == "failed"
        assert '"stopped_reason": "canary compute-1 failed"' in result.result
        assert _states(journal) == {"compute-1": "failed", "compute-2": "old",
                                    "compute-3": "old", "compute-4": "old"}
        outputs = journal.command_output("compute-1")
        assert any(o["step"] == "install" and o["exit_code"] != 0 for o in outputs)
        assert all(not journal.command_output(n) for n in ("compute-2", "compute-3",
                                                           "compute-4"))

        # threshold 0: the first failure after the canary stops new starts
        world.fleet.update_settings(failures={"compute-3": 1.0})
        intent = journal.add_intent("upgrade", {"computes": ["all"], "batch_size": 2,
                                                "parallel": 1, "canary": 1,
                                                "max_failures": 0}, "test")
        executor.serve(until_idle=True)
        assert _states(journal) == {"compute-1": "upgraded", "compute-2": "upgraded",
                                    "compute-3": "failed", "compute-4": "old"}
        assert not journal.command_output("compute-4")
        row = journal.compute("compute-1")
        assert row.version == "5.0.0" and row.cluster == "new" and row.gap_ms is not None
        # the phase pane's note says where the computes are once the run has ended
        assert journal.phase().note == "2 of 4 computes on new, 1 failed"

        # a rollback puts computes back on old, health-gated on old's analytics
        world.fleet.update_settings(failures={})
        journal.add_intent("rollback", {"computes": ["compute-1", "compute-3"]}, "test")
        executor.serve(until_idle=True)
        assert _states(journal)["compute-1"] == "old"
        assert _states(journal)["compute-3"] == "old"
        assert journal.compute("compute-3").cluster == "old"
        assert journal.phase().note == "1 of 4 computes on new"
    finally:
        executor.close()
        ctx.journal.close()


def _daemon(world: Any) -> subprocess.Popen[bytes]:
    log = open(world.config_path.parent / "daemon.log", "ab")  # noqa: SIM115
    return subprocess.Popen([*ISSU, "daemon", "-c", str(world.config_path)], cwd=REPO,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def test_sigkill_mid_batch_then_restart_reconciles_without_repeating(world: Any) -> None:
    config = load_config(world.config_path)
    reader = Journal.open(config.state_dir, read_only=True)
    installs_before = {n: _steps(reader, n).count("install") for n in _states(reader)}
    # slow installs so the kill lands in the middle of one
    world.fleet.update_settings(install_s=2.5, install_jitter_s=0.0, failures={})
    daemon = _daemon(world)
    try:
        result = issu_json(world, "compute", "upgrade", "all", "--batch-size", "4",
                           "--parallel", "1", "--canary", "0", "--no-wait")
        assert result["status"] == "pending"

        def one_done_one_busy() -> bool:
            states = _states(reader)
            fresh = [n for n, s in states.items() if s == "upgraded"
                     and _steps(reader, n).count("install") > installs_before[n]]
            busy = [n for n, s in states.items() if s == "upgrading"]
            # last recorded step "stop": its install (2.5 s) is running now. After "install"
            # the short remaining steps could finish before the kill lands (seen under load).
            return bool(fresh and busy and any(_steps(reader, n)[-1:] == ["stop"]
                                               for n in busy))

        eventually(one_done_one_busy, 120, "one compute upgraded and the next mid-install")
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait()
        states = _states(reader)
        interrupted = [n for n, s in states.items() if s == "upgrading"]
        assert len(interrupted) == 1, states
        done_before_kill = [n for n, s in states.items() if s == "upgraded"]
        installs_at_kill = {n: _steps(reader, n).count("install") for n in states}

        daemon = _daemon(world)
        try:
            eventually(lambda: all(s == "upgraded" for s in _states(reader).values()), 240,
                       "every compute upgraded after the restart")
        except AssertionError as exc:  # say why: states, intents, the last events
            events = [f"{e.kind}/{e.level}: {e.message}" for e in reader.events()[-25:]]
            raise AssertionError(f"{exc}\nstates {_states(reader)}\nintents "
                                 f"{[(i.id, i.kind, i.status) for i in reader.intents(None)]}"
                                 "\n" + "\n".join(events)) from None
        eventually(lambda: not [i for i in reader.intents(None)
                                if i.status in ("pending", "running")], 30, "intent finished")
        # reconciled by probing: the interrupted compute went through 'unknown'
        history = reader.compute_history(interrupted[0])
        assert any(h["to_state"] == "unknown" for h in history)
        assert any("reconciled by probe" in h["detail"] for h in history)
        assert any(e.kind == "reconcile" for e in reader.events(kind="reconcile"))
        # nothing done twice: computes upgraded before the kill were not reinstalled
        for name in done_before_kill:
            assert _steps(reader, name).count("install") == installs_at_kill[name]
        # the interrupted one was installed at most once more
        name = interrupted[0]
        assert _steps(reader, name).count("install") <= installs_at_kill[name] + 1
        for row in reader.computes():
            assert row.version == "5.0.0" and row.cluster == "new"
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=60)
        world.fleet.update_settings(install_s=0.3)
        reader.close()


def _new_keyspaces(world: Any) -> set[str]:
    from cassandra.cluster import Cluster

    new = Endpoints.load(world.run_dir).cassandra_new
    cluster = Cluster([new.host], port=new.port)
    try:
        session = cluster.connect()
        return {r[0] for r in session.execute("SELECT keyspace_name FROM "
                                               "system_schema.keyspaces")}
    finally:
        cluster.shutdown()


def test_abort_brings_everything_back_to_old(world: Any) -> None:
    ctx = _ctx(world)
    pairing.pair(ctx)
    ctx.journal.close()
    subprocess.run([*ISSU, "sync", "pre", "-c", str(world.config_path)], cwd=REPO,
                   check=True, capture_output=True, timeout=300)
    assert "config_db_uuid" in _new_keyspaces(world)
    # run-sync's durable queue on the old vhost, holding a change, as a stopped run-sync
    # leaves it: abort deletes it (else it collects old's changes forever)
    import kombu

    from backends.rabbit import connection, issu_queue, queue_exists
    from issu_tui.sides import rabbit_side

    config = load_config(world.config_path)
    side = rabbit_side(config.old)
    with connection(side) as conn:
        queue = issu_queue(side, config.sync.queue_name)(conn.default_channel)
        queue.declare()
        kombu.Producer(conn.default_channel).publish({}, exchange="", routing_key=queue.name,
                                                     serializer="json")
    result = issu_json(world, "abort", "--drop-new-data", timeout=600)
    assert result["ok"], result
    # (holding what a run-sync left of the module's earlier tests did not consume)
    assert any(f"{config.sync.queue_name} deleted (" in line
               for line in result["done"]), result["done"]
    with connection(side) as conn:
        assert not queue_exists(conn.channel(), config.sync.queue_name)
    status = issu_json(world, "status")
    assert status["phase"]["name"] == "aborted"
    assert status["abortable"] is False
    assert all(c["state"] == "old" and c["version"] == "4.1.0" and c["cluster"] == "old"
               for c in status["computes"]["items"])
    with _api(world, "v1") as old:
        assert old.bgp_router_names() == {"v1-control-1"}
    assert "config_db_uuid" not in _new_keyspaces(world)
    # nothing more is accepted once aborted
    refused = issu_json(world, "compute", "upgrade", "compute-1", expect=1)
    assert "aborted" in refused["error"]
