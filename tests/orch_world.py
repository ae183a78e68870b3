"""A fresh demo world for orchestrator tests, on the test network's services.

The services (Cassandra x2, ZooKeeper x2, RabbitMQ, sshd) are the session's (fixture
`services`); the controllers, computes, seed and workload are `demo.world`'s. A fresh world
has v1 seeded, every compute on v1 and v2 empty and fenced: the state before an ISSU.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import RoundRobinPolicy
from kazoo.client import KazooClient
from kombu import Connection

from demo.services import Endpoints, Launcher
from demo.services.procs import read_pidfile, terminate_group
from demo.world import World, WorldOptions

REPO = Path(__file__).resolve().parents[1]
ISSU = [str(Path(sys.executable).parent / "issu")]


def _stop_pieces(world: World) -> None:
    """Stop what the world runs on top of the services (the services stay up)."""
    for pidfile in (world.dir / "workload" / "pid", *world.controller_pidfiles(),
                    *(world.controller_dir(c) / "pid" for c in ("v1", "v2")),  # + legacy
                    world.northbound_dir() / "neutron-server.pid"):
        group = read_pidfile(pidfile)
        if group is not None and group.any_alive():
            terminate_group(group, 20.0)
    world.fleet.stop()
    runsync = world.dir / "state" / "journal.db"
    if runsync.exists():
        # a run-sync left by a previous test: stop it through the journal's recorded pid
        from issu_tui.journal import Journal

        journal = Journal(runsync, read_only=True)
        pid = journal.orchestrator_state().runsync_pid
        journal.close()
        if pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, 15)
    # any `issu sync run` on this world's config left by a test (the reverse replication
    # every finalize starts runs until a revert): on the session's shared broker it would
    # republish the next tests' changes back and forth
    _stop_sync_runs(world.config_path)


def _stop_sync_runs(config_path: Path) -> None:
    wanted = str(config_path).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if b"sync" in argv and b"run" in argv and wanted in argv:
                pids.append(int(entry.name))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(os.getpgid(pid), 15)
    deadline = time.monotonic() + 30
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if _running(p)]
        time.sleep(0.2)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != b"Z"


def _wipe_data(endpoints: Endpoints, queue: str) -> None:
    profiles = {EXEC_PROFILE_DEFAULT: ExecutionProfile(load_balancing_policy=RoundRobinPolicy(),
                                                       request_timeout=120)}
    for hp in (endpoints.cassandra_old, endpoints.cassandra_new):
        cluster = Cluster([hp.host], port=hp.port, execution_profiles=profiles)
        try:
            session = cluster.connect()
            names = [r.keyspace_name for r in session.execute(
                "SELECT keyspace_name FROM system_schema.keyspaces")]
            for name in names:
                if not name.startswith("system"):
                    session.execute(f'DROP KEYSPACE IF EXISTS "{name}"', timeout=120)
        finally:
            cluster.shutdown()
    for zk_ep in (endpoints.zk_old, endpoints.zk_new):
        zk = KazooClient(hosts=zk_ep.hosts)
        zk.start(timeout=15)
        try:
            for child in zk.get_children("/"):
                if child != "zookeeper":
                    zk.delete(f"/{child}", recursive=True)
        finally:
            zk.stop()
            zk.close()
    rabbit = endpoints.rabbit
    for vhost in (rabbit.vhost_old, rabbit.vhost_new):
        with Connection(hostname=rabbit.host, port=rabbit.port, userid=rabbit.user,
                        password=rabbit.password, virtual_host=vhost) as conn:
            # run-sync's, the reverse replication's (a finalize leaves it bound) and theirs
            # quarantines: a miss closes the channel, so one channel each
            for name in (queue, f"{queue}.reverse", f"{queue}.quarantine",
                         f"{queue}.reverse.quarantine"):
                with contextlib.suppress(Exception):
                    conn.channel().queue_delete(name)


def seed(world: World, *, projects: int = 2, prefix: str = "tenant") -> None:
    """Tenants on v1 through its api-server (networks, ports, policies, security groups)."""
    api = f"http://{world.controller_address('v1')}:8082"
    subprocess.run([sys.executable, "-m", "demo.controller.seed", "--api", api,
                    "--projects", str(projects), "--vns", "3", "--vmis", "2",
                    "--prefix", prefix], check=True, capture_output=True, timeout=300, cwd=REPO)


def fresh_world(endpoints: Endpoints, *, computes: int = 4, seed_projects: int = 2,
                seed_objects: int = 0,
                workload_rate: float = 0.0, install_s: float = 0.4,
                batch: dict[str, Any] | None = None, snapshot: Path | None = None,
                controllers: int = 1, approach: str | None = None) -> World:
    """Stop the previous world's pieces, wipe both clusters' data, start a new world (v1
    seeded through its api-server, or from `snapshot` as `issu demo up --snapshot`).
    `approach` (rolling, grow, stay): old and new on a fresh shared ring instead of the
    session's two Cassandras (demo/ring_world.py); `stop_world` stops and removes it."""
    net = int(endpoints.cassandra_old.host.split(".")[1])
    run_dir = endpoints.run_dir
    opts = WorldOptions(net=net, computes=computes, run_dir=run_dir,
                        config_path=run_dir / "orch" / "issu.toml",
                        seed_objects=seed_objects, workload_rate=workload_rate,
                        install_s=install_s, datapath_down_s=0.2, services_profile="test",
                        snapshot=snapshot, controllers=controllers, approach=approach,
                        # the session's sshd keeps every address the session's tests use
                        extra_ssh_hosts=dict(zip(endpoints.ssh.addresses, endpoints.ssh.names,
                                                 strict=True)))
    world = World(opts)
    _stop_pieces(world)
    _remove_ring(world)  # a decommissioned node cannot come back: a ring starts empty
    _wipe_data(endpoints, "vnc-config.issu-queue")
    shutil.rmtree(world.dir, ignore_errors=True)
    # The world's own seeding step is skipped (marker); the test seeds through the API.
    world.dir.mkdir(parents=True, exist_ok=True)
    (world.dir / "seeded").write_text("by the test\n")
    world.up(progress=lambda _msg: None)
    if snapshot is None:
        seed(world, projects=seed_projects)
    if batch:
        _patch_config(world, {"batch": batch})
    return world


def _patch_config(world: World, changes: dict[str, Any]) -> None:
    """Rewrite the world's issu.toml with some tables replaced (e.g. batch settings)."""
    from issu_tui.config import to_toml

    data = world.config_dict(Endpoints.load(world.run_dir))
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    world.config_path.write_text(to_toml(data))


def stop_world(world: World) -> None:
    _stop_pieces(world)
    _remove_ring(world)
    # A ring world's database hosts were served by the session's sshd: give it back its own
    # addresses, or a later test's own ring on this net (tests/test_ring*.py) finds them in
    # use, as `make test-long` did after the grow run-through. (fresh_world needs no such
    # step: its world's up restarts that sshd with the hosts it needs.)
    if world.ring() is not None and world.opts.extra_ssh_hosts:
        Launcher(world.opts.net, world.opts.services_profile, world.run_dir,
                 ssh_hosts=world.opts.extra_ssh_hosts).up(["ssh"])


def _remove_ring(world: World) -> None:
    """Stop the world's ring nodes (if it has a ring) and remove their directories."""
    if world.ring() is None:
        return
    launcher = world.launcher()
    names = launcher.names(["ring", "ring-spare"])
    launcher.down(names)
    for name in names:
        shutil.rmtree(launcher.service(name).dir, ignore_errors=True)


def issu(world: World, *args: str, timeout: float = 300, check: bool = False
         ) -> subprocess.CompletedProcess[str]:
    """Run `issu ARGS -c <world config>` (JSON output parsed by the caller)."""
    argv = [*ISSU, *args, "-c", str(world.config_path)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                            cwd=REPO, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def issu_json(world: World, *args: str, timeout: float = 300,
              expect: int | None = 0) -> dict[str, Any]:
    result = issu(world, *args, "--json", timeout=timeout)
    if expect is not None and result.returncode != expect:
        raise AssertionError(f"issu {' '.join(args)} exited {result.returncode}, expected "
                             f"{expect}:\n{result.stdout}\n{result.stderr}")
    lines = [ln for ln in result.stdout.splitlines() if ln.strip()]
    return json.loads(lines[-1]) if lines else {}


def eventually(check: Callable[[], Any], timeout_s: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"not reached within {timeout_s}s: {what} (last: {last!r})")
