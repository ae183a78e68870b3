"""The demo world: real services, a v1 and a v2 simulated controller, N computes over SSH,
v1 seeded and kept busy by a workload, and `demo/issu.toml` for the tool.

Everything lives in the run directory (`.run/demo-<net>/`; this module's pieces under its
`world/`): pid files, logs, secrets, the computes' directories, the journal's state dir.
`up` is idempotent (what runs is reused), `down` stops every process group it started and
removes no file.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from demo import ring_world
from demo import snapshot as demo_snapshot
from demo.compute.fleet import Fleet, child_env
from demo.compute.layout import WorldSettings
from demo.controller import hostctl
from demo.controller.process import write_spec
from demo.services.base import ServiceError
from demo.services.endpoints import Endpoints, write_private
from demo.services.launcher import Launcher
from demo.services.plan import DEMO_NET, REPO_ROOT, AddressPlan, default_run_dir
from demo.services.procs import (
    Command,
    Group,
    ProcRef,
    read_pidfile,
    spawn_group,
    start_ticks,
    terminate_group,
)
from demo.services.rabbitmq import RabbitService
from demo.services.ring import nodetool_path
from issu_tui.config import to_toml

V1_VERSION = "4.1.0"
V2_VERSION = "5.0.0"
DEFAULT_COMPUTES = 12
MAX_COMPUTES = 1000
DEFAULT_CONFIG = REPO_ROOT / "demo" / "issu.toml"
CONTROLLER_ADDRESS = {"v1": 101, "v2": 102}
# --controllers 2..3: each cluster's further controller hosts (as the first: api-server, the
# writers, a control node and an analytics-api of their own)
MORE_CONTROLLER_ADDRESSES = {"v1": (141, 142), "v2": (151, 152)}
MAX_CONTROLLERS = 3
NORTHBOUND_ADDRESS = 103  # the neutron-server host: its plugin file is switched over SSH
NORTHBOUND_PROFILE = "demo-northbound"  # hostctl on the northbound host's directory
SEED_PROJECT_OBJECTS = 115

Progress = Callable[[str], None]


def start_api_server(directory: Path, address: str, name: str, timeout: float = 120.0) -> None:
    """Start a loopback controller host's api-server process and wait until it answers;
    WorldError naming the host and its log when it exits or stays silent."""
    hostctl.start(directory, "api-server")
    deadline = time.monotonic() + timeout
    url = f"http://{address}:8082/"
    while True:
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if not hostctl.running(directory, "api-server") or time.monotonic() > deadline:
            raise WorldError(f"{name}: api-server not ready at {url}; see "
                             f"{hostctl.log_path(directory, 'api-server')}")
        time.sleep(0.3)


class WorldError(Exception):
    pass


@dataclass(frozen=True)
class PieceStatus:
    name: str
    state: str  # "ready", "running", "done", "off" (not wanted); "stopped", "broken", "missing"
    detail: str = ""


@dataclass
class WorldOptions:
    net: int = DEMO_NET
    computes: int | None = None  # None: as the last `up`, else DEFAULT_COMPUTES
    run_dir: Path | None = None
    config_path: Path = DEFAULT_CONFIG
    seed_objects: int = 3000
    workload_rate: float = 5.0  # changes per second on v1
    install_s: float = 4.0
    failure_rate: float = 0.0
    datapath_down_s: float = 0.6
    services_profile: str = "demo"
    wait_seed: bool = False
    snapshot: Path | None = None  # v1 starts from this snapshot instead of the seed
    # controller services and compute agents in containers (demo/containers/); None: as
    # the last `up` (loopback hosts for a new world)
    containers: bool | None = None
    # hosts the services' sshd keeps serving beside the world's own (address -> name): the
    # test session's, when a world is started on the session's services
    extra_ssh_hosts: Mapping[str, str] = field(default_factory=dict)
    # controller hosts per cluster (1..3); None: as the last `up`, else 1
    controllers: int | None = None
    # the approach the world is built for: "separate" (a Cassandra per side) or one on a
    # shared ring (demo/ring_world.py); None: as the last `up`, else separate
    approach: str | None = None


@dataclass(frozen=True)
class ControllerHost:
    """One controller host of a cluster: api-server, control (its own control node
    `<cluster>-control-<index>`), analytics-api and the writers, each a process; with
    several hosts the writers are active-backup (a ZooKeeper election)."""

    cluster: str
    index: int  # 1-based
    name: str
    address: str
    directory: Path

    @property
    def profile(self) -> str:
        """Its `demo` controller profile (hostctl on its directory): demo-v1, demo-v1-2..."""
        return f"demo-{self.name.removeprefix('controller-')}"


class World:
    def __init__(self, options: WorldOptions | None = None) -> None:
        self.opts = options or WorldOptions()
        self.plan = AddressPlan(self.opts.net)
        self.run_dir = (self.opts.run_dir
                        or default_run_dir(self.opts.services_profile, self.opts.net)).resolve()
        self.dir = self.run_dir / "world"
        self.fleet = Fleet(self.dir / "computes")
        self.config_path = Path(self.opts.config_path).resolve()

    # ------------------------------------------------------------------ naming
    def controller_address(self, cluster: str) -> str:
        return f"127.{self.opts.net}.0.{CONTROLLER_ADDRESS[cluster]}"

    def api_url(self, cluster: str) -> str:
        return f"http://{self.controller_address(cluster)}:8082"

    def controller_dir(self, cluster: str) -> Path:
        return self.dir / f"controller-{cluster}"

    def controller_count(self) -> int:
        count = self.opts.controllers
        if count is None:
            count = int(self._recorded().get("controllers", 1))
        if not 1 <= count <= MAX_CONTROLLERS:
            raise WorldError(f"--controllers must be 1..{MAX_CONTROLLERS}, got {count}")
        return count

    def controller_hosts(self, cluster: str, count: int | None = None) -> list[ControllerHost]:
        """The cluster's controller hosts (`controller-v1`, `controller-v1-2`, ...)."""
        hosts = [ControllerHost(cluster, 1, f"controller-{cluster}",
                                self.controller_address(cluster), self.controller_dir(cluster))]
        for i, octet in enumerate(MORE_CONTROLLER_ADDRESSES[cluster][:(count or
                                                                      self.controller_count()) - 1],
                                  start=2):
            hosts.append(ControllerHost(cluster, i, f"controller-{cluster}-{i}",
                                        f"127.{self.opts.net}.0.{octet}",
                                        self.dir / f"controller-{cluster}-{i}"))
        return hosts

    def ring(self) -> ring_world.RingLayout | None:
        """The shared Cassandra ring of the world's approach (None: a Cassandra per side)."""
        approach = self.opts.approach
        if approach is None:
            approach = self._recorded().get("approach")
        try:
            return ring_world.ring_layout(approach, self.opts.net)
        except ValueError as exc:
            raise WorldError(str(exc)) from None

    def _controller_dirs(self) -> list[Path]:
        """Every controller host directory there is (whatever the count of the last up)."""
        return sorted(p for c in ("v1", "v2") for p in self.dir.glob(f"controller-{c}*")
                      if p.is_dir())

    @property
    def containers(self) -> bool:
        if self.opts.containers is not None:
            return self.opts.containers
        return bool(self._recorded().get("containers"))

    def hosts(self) -> dict[str, str]:
        """The computes' names and addresses as the last `up` made them (KeyError: none)."""
        if self.containers:
            return dict(self._recorded()["compute_hosts"])
        return dict(self.fleet.settings().hosts)

    def compute_count(self) -> int:
        if self.opts.computes is not None:
            count = self.opts.computes
        else:
            try:
                count = len(self.hosts())
            except Exception:  # no world yet
                count = DEFAULT_COMPUTES
        if not 1 <= count <= MAX_COMPUTES:
            raise WorldError(f"--computes must be 1..{MAX_COMPUTES}, got {count}")
        return count

    def ssh_hosts(self, computes: int) -> dict[str, str]:
        """Address -> name of every host sshd serves: the computes first, then the two
        controllers (their services run by the `demo` controller profile over SSH), then
        the options' extra hosts (a world of fewer computes must not take addresses away
        from the sshd it shares)."""
        hosts = {self.plan.ssh_host(i): f"compute-{i + 1}" for i in range(computes)}
        hosts.update({h.address: h.name for c in ("v1", "v2") for h in self.controller_hosts(c)})
        hosts[self.northbound_address()] = "northbound"
        # the database hosts the inventory lists: issu asks the broker's for its queues
        for address, name in self.database_hosts().items():
            hosts.setdefault(address, name)
        for address, name in self.opts.extra_ssh_hosts.items():
            hosts.setdefault(address, name)
        return hosts

    def database_hosts(self) -> dict[str, str]:
        """Address -> inventory name of both clusters' database hosts (Cassandra,
        ZooKeeper, the broker), as the generated config lists them."""
        p = self.plan
        layout = self.ring()
        if layout is not None:  # the ring's nodes are the database hosts
            return {**layout.host_names(), p.zk_old: "zookeeper-v1",
                    p.zk_new: "zookeeper-v2", p.rabbitmq: "rabbitmq"}
        return {p.cassandra_old: "cassandra-v1", p.zk_old: "zookeeper-v1",
                p.cassandra_new: "cassandra-v2", p.zk_new: "zookeeper-v2",
                p.rabbitmq: "rabbitmq"}

    def northbound_address(self) -> str:
        return f"127.{self.opts.net}.0.{NORTHBOUND_ADDRESS}"

    def launcher(self, computes: int | None = None) -> Launcher:
        count = computes if computes is not None else self.compute_count()
        layout = self.ring()
        return Launcher(self.opts.net, self.opts.services_profile, self.run_dir,
                        ssh_hosts=self.ssh_hosts(count),
                        ring=layout.size if layout else 0,
                        ring_spares=layout.spares if layout else 0)

    # ------------------------------------------------------------------ up
    def up(self, progress: Progress = print) -> dict[str, float]:
        """Start (or reuse) every piece; returns seconds spent per piece."""
        timings: dict[str, float] = {}
        began = time.monotonic()
        count = self.compute_count()
        self._check_compute_count(count)
        self._check_controller_count()
        layout = self._check_approach()
        snapshot = None
        if self.opts.snapshot is not None:
            progress(f"checking the snapshot {self.opts.snapshot} ...")
            snapshot = demo_snapshot.check(self.opts.snapshot)  # before anything starts
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        self._set_aside_another_worlds_upgrade(layout, progress)
        self._record(controllers=self.controller_count(),
                     approach=layout.approach if layout else "separate")
        step = time.monotonic()
        self._prepare_containers(progress)
        timings["images"] = time.monotonic() - step

        step = time.monotonic()
        # a ring world: the ring's first nodes instead of a Cassandra per side (grow's spares
        # start when they join)
        groups = None if layout is None else ["zk", "rabbit", "ssh", "ring"]
        cassandra = ("Cassandra x2" if layout is None else
                     f"a Cassandra ring of {layout.size} for {layout.approach}")
        progress(f"services ({cassandra}, ZooKeeper x2, RabbitMQ, sshd for {count} hosts) ...")
        try:
            endpoints = self.launcher(count).up(groups)
        except ServiceError as exc:
            # On a busy machine a service may need longer than its start timeout: the
            # launcher reuses whatever became ready and gives the rest another round.
            progress(f"services: {str(exc).splitlines()[0]}; trying once more")
            endpoints = self.launcher(count).up(groups)
        if layout is not None:
            ring_world.write_releases(self.dir, layout, V1_VERSION, V2_VERSION)
        timings["services"] = time.monotonic() - step

        if self.opts.snapshot is not None and snapshot is not None:
            step = time.monotonic()
            self._load_snapshot(self.opts.snapshot, snapshot, endpoints, progress)
            timings["snapshot"] = time.monotonic() - step

        step = time.monotonic()
        progress("controllers v1 (4.1.0) and v2 (5.0.0, fenced) ...")
        for cluster in ("v1", "v2"):
            self._start_controller(cluster, endpoints, count)
        for cluster in ("v1", "v2"):
            self._wait_controller(cluster, endpoints, count)
        more = [h for c in ("v1", "v2") for h in self.controller_hosts(c)[1:]]
        for host in more:  # after the first: v1's defaults are made once
            self._start_more_controller(host, endpoints, count)
        for host in more:
            self._wait_host(host)
        # v1's own writers (schema-transformer, svc-monitor, device-manager) run as on a live
        # cluster; v2's only when started (finalize, or by hand through the demo profile)
        self._start_writers("v1")
        if self.containers:  # created, started by finalize through the docker profile
            self._containers().create_writers("v2")
        timings["controllers"] = time.monotonic() - step

        step = time.monotonic()
        progress(f"{count} computes on {self.plan.ssh_host(0)}.. (agents report to v1) ...")
        self._start_computes(endpoints, count)
        timings["computes"] = time.monotonic() - step

        step = time.monotonic()
        self._seed(progress)
        timings["seed"] = time.monotonic() - step
        self._start_workload(progress)

        self.write_config(endpoints)
        self._start_neutron()
        timings["total"] = time.monotonic() - began
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items() if k != "total")
        progress(f"demo world up in {timings['total']:.1f} s ({parts})")
        return timings

    def _check_controller_count(self) -> None:
        count = self.controller_count()
        recorded = int(self._recorded().get("controllers", 1))
        if count != recorded and self.running_mode() is not None:
            raise WorldError(f"the running world has {recorded} controller host(s) per "
                             f"cluster, not {count}: run `issu demo down` first to change it")
        if count > 1 and self.containers:
            raise WorldError("--controllers 2..3 runs on loopback hosts only (--loopback)")

    def _check_approach(self) -> ring_world.RingLayout | None:
        layout = self.ring()
        recorded = self._recorded().get("approach") or "separate"
        wanted = layout.approach if layout else "separate"
        if wanted != recorded and self.running_mode() is not None:
            raise WorldError(f"the running world is built for the approach {recorded}, not "
                             f"{wanted}: run `issu demo down` first to change it")
        if layout is not None and (self.containers or self.opts.snapshot is not None):
            raise WorldError(f"--approach {wanted} runs on loopback hosts (--loopback) "
                             "with seeded tenants (no --snapshot)")
        return layout

    def _set_aside_another_worlds_upgrade(self, layout: ring_world.RingLayout | None,
                                          progress: Progress) -> None:
        """A world built here before for another approach had other databases: its journal
        (state/) and its seed marker do not describe this one (the console opened on the
        last world's finished upgrade, and v1 went unseeded). Moved aside, not deleted."""
        before = self._recorded().get("approach")
        now = layout.approach if layout else "separate"
        if before is None or before == now:
            return
        stamp = time.strftime("%Y%m%dT%H%M%S")
        moved = []
        for name in ("state", "seed"):
            directory = self.dir / name
            if directory.exists():
                aside = self.dir / f"{name}.{before}-{stamp}"
                directory.rename(aside)
                moved.append(str(aside))
        if moved:
            progress(f"the last world here was built for {before}, not {now}: its journal and "
                     f"seed set aside ({', '.join(moved)})")

    def _check_compute_count(self, count: int) -> None:
        try:
            existing = self.hosts()
        except Exception:
            return
        if len(existing) != count and self._computes_running():
            raise WorldError(
                f"the running world has {len(existing)} computes, not {count}: "
                "run `issu demo down` first to change the number")

    def _computes_running(self) -> bool:
        return self._containers().computes_running() if self.containers \
            else self.fleet.running()

    def running_mode(self) -> bool | None:
        """True / False when a world with / without containers runs (its v1 controller),
        None when none does."""
        recorded = self._recorded().get("containers")
        if recorded is None:
            return None
        if not recorded:
            alive = hostctl.running(self.controller_dir("v1"), hostctl.CONTROLLER)
        else:
            from demo.containers.engine import EngineUnavailable

            try:
                alive = self._containers().running("v1", hostctl.CONTROLLER)
            except (EngineUnavailable, OSError):  # no engine here: no container world runs
                alive = False
        return bool(recorded) if alive else None

    def _containers(self) -> Any:
        from demo.containers.world import ContainerHosts

        return ContainerHosts(self)

    def _prepare_containers(self, progress: Progress) -> None:
        """Check the mode against what runs, build missing images, and remove the net's
        containers a killed world left (all of them for a loopback world)."""
        running = self.running_mode()
        if self.opts.containers is not None and running is not None and \
                running != self.opts.containers:
            raise WorldError(
                f"the running world uses {'containers' if running else 'loopback hosts'}: "
                f"run `issu demo down --net {self.opts.net}` first to change the mode")
        if shutil.which("podman") is not None:
            from demo.containers.world import remove_leftovers

            removed = remove_leftovers(self.opts.net, keep_running=self.containers)
            if removed:
                progress(f"removed {len(removed)} container(s) a killed world left on net "
                         f"{self.opts.net}")
        if self.containers:
            self._containers().prepare(progress)
        self._record(containers=self.containers)

    def _load_snapshot(self, path: Path, summary: Any, endpoints: Endpoints,
                       progress: Progress) -> None:
        down = (f"start a fresh world: issu demo down --net {self.opts.net}, then remove "
                f"{self.run_dir}")
        cass = endpoints.cassandra_old
        try:
            demo_snapshot.load_into_v1(self.dir, path, summary, (cass.host, cass.port),
                                       endpoints.zk_old.hosts, progress, down)
        except demo_snapshot.SnapshotWorldError as exc:
            raise WorldError(str(exc)) from None

    # ------------------------------------------------------------------ controllers
    def _secret(self, name: str, make: Callable[[], str]) -> Path:
        path = self.dir / "secrets" / name
        if not path.exists():
            write_private(path, make() + "\n")
        os.chmod(path.parent, 0o700)
        return path

    def _token_path(self, cluster: str) -> Path:
        return self._secret(f"admin-token-{cluster}", lambda: secrets.token_urlsafe(24))

    def admin_token(self, cluster: str) -> str:
        return self._token_path(cluster).read_text().strip()

    def _rabbit_ctl(self) -> dict[str, object] | None:
        """rabbitmqctl's way to the world's broker (the demo profile's `queues` step)."""
        rabbit = self.launcher().services.get("rabbitmq")
        return rabbit.ctl() if isinstance(rabbit, RabbitService) else None

    def _controller_spec(self, cluster: str, endpoints: Endpoints, computes: int
                         ) -> dict[str, Any]:
        other = "v2" if cluster == "v1" else "v1"
        address = self.controller_address(cluster)
        cass = endpoints.cassandra_old if cluster == "v1" else endpoints.cassandra_new
        zk = endpoints.zk_old if cluster == "v1" else endpoints.zk_new
        vhost = endpoints.rabbit.vhost_old if cluster == "v1" else endpoints.rabbit.vhost_new
        database: dict[str, Any] = {"hosts": [cass.host], "port": cass.port, "prefix": ""}
        layout = self.ring()
        if layout is not None:
            side = ring_world.cassandra_config(layout, "old" if cluster == "v1" else "new",
                                               cass.port)
            database = {"hosts": side["hosts"], "port": cass.port, "prefix": side["prefix"],
                        "replication_factor": layout.factor}
        return {
            "cluster": cluster,
            "version": V1_VERSION if cluster == "v1" else V2_VERSION,
            "listen": address,
            "cassandra": database,
            "zookeeper": {"hosts": [zk.hosts], "prefix": ""},
            "rabbit": {"host": endpoints.rabbit.host, "port": endpoints.rabbit.port,
                       "vhost": vhost, "ctl": self._rabbit_ctl()},
            "fenced": cluster == "v2",
            # the cluster's control nodes, one per controller host (each serves its own)
            "control_nodes": self._control_nodes(cluster),
            "serves_control": [_control_name(cluster, 1)],
            "config_nodes": len(self.controller_hosts(cluster)),
            "peer": {"name": other,
                     "introspect_url": f"http://{self.controller_address(other)}:8083",
                     "control_nodes": self._control_nodes(other)},
            "agent_timeout_s": max(15.0, 4 * _heartbeat_s(computes)),
            "state_dir": str(self.controller_dir(cluster) / "state"),
            "writers_elect": self.controller_count() > 1,
        }

    def _start_more_controller(self, host: ControllerHost, endpoints: Endpoints,
                               computes: int) -> None:
        """A further controller host: its api-server, control node and analytics-api (the
        writers are started with the first host's); `_wait_host` waits for them."""
        if hostctl.running(host.directory, hostctl.CONTROLLER):
            return
        spec = {**self._controller_spec(host.cluster, endpoints, computes),
                "listen": host.address, "node_index": host.index,
                "serves_control": [_control_name(host.cluster, host.index)],
                "state_dir": str(host.directory / "state")}
        write_spec(host.directory, spec, {
            "rabbit_user": endpoints.rabbit.user, "rabbit_password": endpoints.rabbit.password,
            "admin_token": self.admin_token(host.cluster)})
        hostctl.start(host.directory, hostctl.CONTROLLER)

    def _wait_host(self, host: ControllerHost, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while why := _host_ready(host.address):
            if not hostctl.running(host.directory, hostctl.CONTROLLER) or \
                    time.monotonic() > deadline:
                logs = ", ".join(str(hostctl.log_path(host.directory, s))
                                 for s in hostctl.ROLES)
                raise WorldError(f"{host.name} not ready ({why}); see {logs}")
            time.sleep(0.3)

    def refuse_if_ended(self, disabled: str) -> None:
        """A service found disabled in a world whose upgrade has ended was disabled by its
        finalize: the world cannot come up as it was (a second `make demo` after a finished
        one); say so and how to start a new demo, rather than how to re-enable the service."""
        from demo.ended import ended_phase, new_demo

        phase = ended_phase(self.dir / "state")
        if phase is not None:
            raise WorldError(f"this demo's upgrade has ended (phase {phase}) and its end "
                             f"disabled {disabled}, so this world cannot come up again as it "
                             f"was. For a new demo: {new_demo(self.opts.net)}")

    def _control_nodes(self, cluster: str) -> list[dict[str, str]]:
        return [{"name": _control_name(cluster, h.index), "address": h.address}
                for h in self.controller_hosts(cluster)]

    def _start_controller(self, cluster: str, endpoints: Endpoints, computes: int) -> None:
        if self.containers:
            self._containers().start_controller(
                cluster, lambda: self._write_controller_spec(cluster, endpoints, computes))
            return
        directory = self.controller_dir(cluster)
        if hostctl.running(directory, hostctl.CONTROLLER):
            return
        _stop_legacy_controller(directory)
        disabled = [s for s in hostctl.ROLES if hostctl.disabled_marker(directory, s).exists()]
        if disabled:
            # disabled by the `demo` controller profile: a restart must not bring it back
            self.refuse_if_ended(f"{', '.join(disabled)} of {cluster}")
            raise WorldError(f"controller {cluster}: {', '.join(disabled)} disabled; enable: "
                             f"python -m demo.controller.hostctl --dir {directory} enable "
                             f"{disabled[0]}")
        self._write_controller_spec(cluster, endpoints, computes)
        if cluster == "v2":
            # v2's first host also has a kube-manager (a writer of new's where present:
            # prepare-new stops it, finalize starts it); the other hosts have none
            address = self.controller_address(cluster)
            (directory / hostctl.KUBE_CONF).write_text(
                f"[VNC]\nvnc_endpoint_ip = {address}\nvnc_endpoint_port = 8082\n")
        # api-server, control and analytics-api: a process each, as on a controller host
        hostctl.start(directory, hostctl.CONTROLLER)

    def _write_controller_spec(self, cluster: str, endpoints: Endpoints, computes: int
                               ) -> Path:
        return write_spec(self.controller_dir(cluster),
                          self._controller_spec(cluster, endpoints, computes), {
                              "rabbit_user": endpoints.rabbit.user,
                              "rabbit_password": endpoints.rabbit.password,
                              "admin_token": self.admin_token(cluster)})

    def _service_running(self, cluster: str, service: str) -> bool:
        if self.containers:
            return bool(self._containers().running(cluster, service))
        return hostctl.running(self.controller_dir(cluster), service)

    def _controller_alive(self, cluster: str) -> bool:
        return self._service_running(cluster, hostctl.CONTROLLER)

    def _start_writers(self, cluster: str) -> None:
        if self.containers:
            self._containers().start_writers(cluster)
            return
        for host in self.controller_hosts(cluster):
            for service in hostctl.WRITERS:
                if not hostctl.disabled_marker(host.directory, service).exists():
                    hostctl.start(host.directory, service)

    def _writers_state(self, cluster: str) -> PieceStatus:
        up = [s for s in hostctl.WRITERS if self._service_running(cluster, s)]
        name, listing = f"writers-{cluster}", ", ".join(up)
        if not up and not self._controller_alive(cluster):
            return PieceStatus(name, "stopped", "")
        if cluster == "v2":  # started by finalize; running before it is what issu refuses
            return PieceStatus(name, "running", listing) if up else PieceStatus(
                name, "off", "stopped until finalize")
        if len(up) == len(hostctl.WRITERS):
            return PieceStatus(name, "ready", listing)
        return PieceStatus(name, "broken" if up else "stopped",
                           f"running: {listing or 'none'}")

    def writer_pidfiles(self) -> list[Path]:
        return [hostctl.pidfile(d, s) for d in self._controller_dirs() for s in hostctl.WRITERS]

    def controller_pidfiles(self) -> list[Path]:
        """The pid files of both controllers' processes (api-server, control, analytics-api,
        the writers and v2's kube-manager)."""
        return [hostctl.pidfile(d, s) for d in self._controller_dirs()
                for s in (*hostctl.PROCESSES, hostctl.KUBE_MANAGER)]

    def _controller_ready(self, cluster: str) -> str:
        """'' when api-server, analytics-api and the control node's introspect answer, else
        why not."""
        return _host_ready(self.controller_address(cluster))

    def _controller_logs(self, cluster: str) -> str:
        if self.containers:
            return str(self._containers().controller_logs(cluster))
        return ", ".join(str(hostctl.log_path(self.controller_dir(cluster), s))
                         for s in hostctl.ROLES)

    def _wait_controller(self, cluster: str, endpoints: Endpoints, computes: int,
                         timeout: float = 120.0, attempts: int = 3) -> None:
        deadline = time.monotonic() + timeout
        while True:
            why = self._controller_ready(cluster)
            if not why:
                return
            if not self._controller_alive(cluster):
                # A freshly started Cassandra may still time out the first connections.
                attempts -= 1
                if attempts <= 0:
                    raise WorldError(f"controller {cluster} exited; "
                                     f"see {self._controller_logs(cluster)}")
                time.sleep(2.0)
                self._start_controller(cluster, endpoints, computes)
            if time.monotonic() > deadline:
                raise WorldError(f"controller {cluster} not ready after {timeout:g} s ({why}); "
                                 f"see {self._controller_logs(cluster)}")
            time.sleep(0.3)

    # ------------------------------------------------------------------ computes
    def _start_computes(self, endpoints: Endpoints, count: int) -> None:
        ssh = endpoints.ssh
        hosts = dict(zip(ssh.names[:count], ssh.addresses[:count], strict=True))
        if self.containers:
            self._containers().start_computes(hosts, V1_VERSION, [self.controller_address("v1")],
                                              _heartbeat_s(count))
            self._record(compute_hosts=hosts)
            return
        settings = WorldSettings(
            net=self.opts.net, hosts=hosts, install_s=self.opts.install_s,
            install_jitter_s=self.opts.install_s / 4, failure_rate=self.opts.failure_rate,
            datapath_down_s=self.opts.datapath_down_s, heartbeat_s=_heartbeat_s(count),
        )
        # every v1 control node (an XMPP session each) and analytics-api (collector)
        v1 = [h.address for h in self.controller_hosts("v1")]
        if not self.fleet.running():
            self.fleet.create(settings, V1_VERSION, v1)
        self.fleet.start()

    # ------------------------------------------------------------------ seed, workload
    def _recorded(self) -> dict[str, Any]:
        """What `up` chose for the seed and the workload (so `status` can tell "off")."""
        try:
            data = json.loads((self.dir / "options.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _record(self, **choices: Any) -> None:
        (self.dir / "options.json").write_text(json.dumps({**self._recorded(), **choices}) + "\n")

    def _seed(self, progress: Progress) -> None:
        """Seed v1 once, in the background (the seeder is idempotent: a seed cut short by
        `down` is finished by the next `up`); `wait_seed` waits for it."""
        directory = self.dir / "seed"
        marker = directory / "done"
        if marker.exists():
            return
        if demo_snapshot.recorded(self.dir):
            return  # v1 holds the operator's snapshot: no made-up tenants beside it
        if self.opts.seed_objects <= 0:
            if read_pidfile(directory / "pid") is None:
                self._record(seed_objects=0)
            return
        if importlib.util.find_spec("demo.controller.seed") is None:
            progress("seed: demo.controller.seed is not available; v1 starts empty")
            return
        group = read_pidfile(directory / "pid")
        if group is None or not group.any_alive():
            # The seeder's unit is a project of 115 objects (10 VNs with 5 ports each).
            projects = max(1, -(-self.opts.seed_objects // SEED_PROJECT_OBJECTS))
            seed = shlex.join([sys.executable, "-m", "demo.controller.seed", "--api",
                               self.api_url("v1"), "--projects", str(projects), "--vns", "10",
                               "--vmis", "5", "--concurrency", "16"])
            script = f"{seed} && date +%s > {shlex.quote(str(marker))}"
            directory.mkdir(parents=True, exist_ok=True)
            group, _ = spawn_group([Command(("sh", "-c", script), child_env(), REPO_ROOT)],
                                   directory / "seed.log")
            (directory / "pid").write_text(group.to_json() + "\n")
            self._record(seed_objects=self.opts.seed_objects)
        progress(f"seeding v1 with about {self.opts.seed_objects} objects in the background "
                 f"(log {directory / 'seed.log'})")
        if self.opts.wait_seed:
            while group.any_alive():
                time.sleep(0.5)
            if not marker.exists():
                raise WorldError(f"seeding v1 failed; see {directory / 'seed.log'}")

    def seed_state(self) -> PieceStatus:
        directory = self.dir / "seed"
        objects = self._recorded().get("seed_objects", self.opts.seed_objects)
        if (directory / "done").exists():
            return PieceStatus("seed", "done", f"{objects} objects in v1")
        snapshot = demo_snapshot.recorded(self.dir)
        if snapshot:
            return PieceStatus("seed", "off", f"v1 holds the snapshot {snapshot.get('path')}")
        group = read_pidfile(directory / "pid")
        if group is not None and group.any_alive():
            return PieceStatus("seed", "running", f"log {directory / 'seed.log'}")
        if objects == 0:
            return PieceStatus("seed", "off", "v1 was not seeded (--objects 0)")
        if (directory / "seed.log").exists():
            return PieceStatus("seed", "broken", f"see {directory / 'seed.log'}")
        return PieceStatus("seed", "missing", "")

    def _start_workload(self, progress: Progress) -> None:
        directory = self.dir / "workload"
        group = read_pidfile(directory / "pid")
        if group is not None and group.all_alive():
            return
        if self.opts.workload_rate <= 0:
            self._record(workload_rate=0.0)
            return
        if importlib.util.find_spec("demo.controller.workload") is None:
            progress("workload: demo.controller.workload is not available; v1 stays idle")
            return
        directory.mkdir(parents=True, exist_ok=True)
        argv = (sys.executable, "-m", "demo.controller.workload", "--api", self.api_url("v1"),
                "--rate", f"{self.opts.workload_rate:g}")
        group, _ = spawn_group([Command(argv, child_env(), REPO_ROOT)],
                               directory / "workload.log")
        (directory / "pid").write_text(group.to_json() + "\n")
        self._record(workload_rate=self.opts.workload_rate)

    # ------------------------------------------------------------------ config
    def config_dict(self, endpoints: Endpoints) -> dict[str, Any]:
        rabbit_password = self._secret("rabbit-password", lambda: endpoints.rabbit.password)
        ssh = endpoints.ssh
        hosts = self.hosts()
        controller_profile = "docker" if self.containers else "demo"
        layout = self.ring()

        def cluster(name: str, cid: str) -> dict[str, Any]:
            address = self.controller_address(cid)
            old = name == "old"
            cass = endpoints.cassandra_old if old else endpoints.cassandra_new
            zk = endpoints.zk_old if old else endpoints.zk_new
            return {
                "name": name,
                "version": V1_VERSION if old else V2_VERSION,
                "cluster_id": cid,
                "cassandra": ({"hosts": [cass.host], "port": cass.port} if layout is None
                              else ring_world.cassandra_config(layout, name, cass.port)),
                "zookeeper": {"hosts": [zk.hosts]},
                "rabbit": {"hosts": [endpoints.rabbit.host], "port": endpoints.rabbit.port,
                           "user": endpoints.rabbit.user,
                           "password": f"file:{rabbit_password}",
                           "vhost": endpoints.rabbit.vhost_old if old
                           else endpoints.rabbit.vhost_new},
                "api_server": {"url": f"http://{address}:8082",
                               "password": f"file:{self._token_path(cid)}"},
                "analytics": {"url": f"http://{address}:8081"},
                "control_nodes": self._control_nodes(cid),
                "controllers": [
                    {"name": f"controller-{cid}", "address": address,
                     "roles": ["config", "control", "analytics"], "ssh_user": ssh.user,
                     "ssh_key": str(ssh.key_path), "ssh_port": ssh.port,
                     "profile": f"{controller_profile}-{cid}"},
                    # --controllers 3: further controller hosts, roles as the first's
                    *({"name": h.name, "address": h.address,
                       "roles": ["config", "control", "analytics"],
                       "ssh_user": ssh.user, "ssh_key": str(ssh.key_path),
                       "ssh_port": ssh.port, "profile": h.profile}
                      for h in self.controller_hosts(cid)[1:]),
                    # the database role; the broker's host lists old's writers' queues (settle)
                    *({"name": f"{kind}-{cid}", "address": host, "roles": ["database"],
                       "ssh_user": ssh.user, "ssh_key": str(ssh.key_path),
                       "ssh_port": ssh.port, "profile": f"demo-{cid}"}
                      for kind, host in ((("cassandra", cass.host),) if layout is None
                                         else ()) + (("zookeeper", zk.host),
                                                     ("rabbitmq", endpoints.rabbit.host))),
                    # a ring world: its nodes, each driven through a profile of its own
                    *(ring_world.database_hosts(layout, name, ssh) if layout else []),
                    # the neutron-server host (northbound.toml names it)
                    *([{"name": "northbound", "address": self.northbound_address(),
                        "roles": ["northbound"], "ssh_user": ssh.user,
                        "ssh_key": str(ssh.key_path), "ssh_port": ssh.port,
                        "profile": NORTHBOUND_PROFILE}] if old else [])],
            }

        config: dict[str, Any] = {
            "state_dir": str(self.dir / "state"),
            "old": cluster("old", "v1"),
            "new": cluster("new", "v2"),
            "sync": {"metrics_listen": f"127.{self.opts.net}.0.1:9109"},
            # the demo shows every finalize step, the old records' removal included
            "finalize": {"remove_old_records": True},
            "batch": {"size": 4, "parallel": 4, "canary": 1, "max_failures": 1,
                      "health_timeout_s": 60},
            "ssh": {"known_hosts": str(ssh.known_hosts_path), "connect_timeout_s": 10,
                    "command_timeout_s": 600},
            "profiles": {"demo": {"host": self.fleet.host_command()}},
            "controller_profiles": {
                **{h.profile: {"base": "demo", "host": shlex.join([
                    sys.executable, "-m", "demo.controller.hostctl", "--dir",
                    str(h.directory)])} for c in ("v1", "v2") for h in self.controller_hosts(c)},
                NORTHBOUND_PROFILE: {"base": "demo", "host": shlex.join([
                    sys.executable, "-m", "demo.controller.hostctl", "--dir",
                    str(self.northbound_dir())])}},
            "computes": [
                {"name": name, "address": address, "ssh_user": ssh.user,
                 "ssh_key": str(ssh.key_path), "ssh_port": ssh.port,
                 "profile": "container" if self.containers else "demo"}
                for name, address in hosts.items()
            ],
        }
        if self.containers:
            self._containers().add_profiles(config)
        if layout is not None:
            config["controller_profiles"].update(
                ring_world.profiles(layout, self.launcher(), self.dir))
            # the ring's own nodetool: every ring step (issu ring run, the phases' own)
            # runs it over SSH without a --nodetool
            config["ring"] = {"nodetool": str(nodetool_path(self.run_dir))}
            # the approach the world is built for: what the console's executor records at plan
            config["approach"] = layout.approach
        return config

    def write_config(self, endpoints: Endpoints | None = None) -> Path:
        endpoints = endpoints or Endpoints.load(self.run_dir)
        text = ("# Generated by `issu demo up`; rewritten on every up. Do not edit.\n"
                + to_toml(self.config_dict(endpoints)))
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.config_path.with_name(f".{self.config_path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)
        (self.dir / "config-path").write_text(f"{self.config_path}\n")
        self.write_northbound()
        return self.config_path

    NORTHBOUND_HEADER = "# Generated by `issu demo up`: the demo's northbound client.\n"

    def northbound_dir(self) -> Path:
        return self.dir / "northbound"

    def write_northbound(self) -> Path:
        """northbound.toml beside the config (finalize requires one): a neutron plugin file
        in the world dir pointing at v1, on the `northbound` host (reached over SSH, as a
        neutron-server host would be), re-pointed at v2 by finalize, which then restarts the
        host's neutron-server (its profile's default). A northbound.toml not written by the
        demo is left alone."""
        plugin = self.northbound_dir() / hostctl.PLUGIN_INI
        plugin.parent.mkdir(parents=True, exist_ok=True)
        plugin.write_text(f"[APISERVER]\napi_server_ip = {self.controller_address('v1')}\n"
                          "api_server_port = 8082\ncontrail_extensions = ipam\n")
        path = self.config_path.with_name("northbound.toml")
        if not path.exists() or path.read_text().startswith(self.NORTHBOUND_HEADER):
            path.write_text(f'{self.NORTHBOUND_HEADER}[[client]]\nkind = "neutron"\n'
                            f'host = "northbound"\npath = {json.dumps(str(plugin))}\n'
                            f'service = "{hostctl.NEUTRON}"\n')
        return plugin

    def _start_neutron(self) -> None:
        """The northbound host's neutron-server (demo/controller/neutron.py): it talks to the
        api-server its plugin file names, read when it starts."""
        hostctl.start(self.northbound_dir(), hostctl.NEUTRON)

    def neutron_state(self) -> dict[str, Any]:
        """What the neutron-server last reached ({} before its first request)."""
        try:
            return dict(json.loads(
                (self.northbound_dir() / f"{hostctl.NEUTRON}.state").read_text()))
        except (OSError, ValueError):
            return {}

    # ------------------------------------------------------------------ down, status
    def down(self, progress: Progress = print) -> list[str]:
        """Stop every process this world started (nothing is deleted)."""
        stopped = []
        for piece in ("workload", "seed"):
            group = read_pidfile(self.dir / piece / "pid")
            if group is not None and group.any_alive():
                terminate_group(group, 10.0)
                stopped.append(piece)
        if self.fleet.stop():
            stopped.append("computes")
        stopped += self._stop_runsync()
        if hostctl.running(self.northbound_dir(), hostctl.NEUTRON):
            hostctl.stop(self.northbound_dir(), hostctl.NEUTRON)
            stopped.append(hostctl.NEUTRON)
        stopped += self._remove_containers(progress)
        for directory in self._controller_dirs():
            host, roles = directory.name.removeprefix("controller-"), False
            for service in (*hostctl.WRITERS, hostctl.KUBE_MANAGER, *hostctl.ROLES):
                group = read_pidfile(hostctl.pidfile(directory, service))
                if group is not None and group.any_alive():
                    terminate_group(group, 20.0)
                    if service in hostctl.ROLES:
                        roles = True  # api-server, control, analytics-api: "controller-v1"
                    else:
                        stopped.append(f"{service}-{host}")
            if _stop_legacy_controller(directory) or roles:
                stopped.append(f"controller-{host}")
        if self.run_dir.is_dir():
            stopped += self.launcher().down()
        progress(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
        return stopped

    def written_config(self) -> Path | None:
        """The config the last `up` wrote (recorded: `--config` may have put it anywhere)."""
        remembered = self.dir / "config-path"
        try:
            return Path(remembered.read_text().strip()).resolve()
        except OSError:
            return None

    def _stop_runsync(self) -> list[str]:
        """run-sync outlives the console or daemon that started it (the upgrade goes on
        without them); the world going away takes it too. Its pid is the journal's."""
        from issu_tui.journal import Journal, JournalError

        path = self.dir / "state" / "journal.db"
        if not path.is_file():
            return []
        try:
            journal = Journal(path, read_only=True)
        except JournalError:
            return []
        try:
            pid = journal.orchestrator_state().runsync_pid
        except JournalError:
            pid = None
        finally:
            journal.close()
        stopped = []
        # finalize's reverse replication (new -> old, for `issu revert`) is one too: its pid
        # is kept beside the journal
        # this world's config, or the one `up` wrote (`issu demo down` is not told where
        # `up --config` put it: its run-sync was spared as another world's)
        written = self.written_config()
        configs = [self.config_path, *([written] if written is not None else [])]
        for name, found in (("run-sync", pid), ("reverse-sync", _reverse_pid(path.parent))):
            group = None
            if found:
                group = next((g for c in configs if (g := _runsync_group(found, c))), None)
            if group is not None and group.any_alive():
                terminate_group(group, 20.0)
                stopped.append(name)
        return stopped

    def _remove_containers(self, progress: Progress) -> list[str]:
        """Remove every container labelled with this world's network (those its computes and
        controllers ran, a killed `up`'s included) and nothing else."""
        if shutil.which("podman") is None:
            return []
        from demo.containers.compute import remove_net_containers
        from demo.containers.engine import EngineUnavailable

        try:
            names = remove_net_containers(self.opts.net)
        except (EngineUnavailable, OSError, subprocess.SubprocessError) as exc:
            progress(f"containers of net {self.opts.net} not removed: {exc}")
            return []
        return [f"{len(names)} container(s)"] if names else []

    def status(self, probe: bool = True) -> list[PieceStatus]:
        pieces: list[PieceStatus] = []
        if self.run_dir.is_dir():
            layout = self.ring()
            for s in self.launcher().status(probe=probe):
                off = ring_world.not_wanted(layout, s.group) if s.state == "stopped" else ""
                pieces.append(PieceStatus(s.name, "off", off) if off else PieceStatus(
                    s.name, s.state, s.where + (f" {s.detail}" if s.detail else "")))
        for cluster in ("v1", "v2"):
            name = f"controller-{cluster}"
            where = f"{self.controller_address(cluster)}:8082/:8081/:8083"
            down = [s for s in hostctl.ROLES if not self._service_running(cluster, s)]
            if len(down) == len(hostctl.ROLES):
                pieces.append(PieceStatus(name, "stopped", where))
            elif down:  # e.g. old's api-server after finalize: control and analytics run on
                pieces.append(PieceStatus(name, "running", f"{where} stopped: "
                                          f"{', '.join(down)}"))
            else:
                why = self._controller_ready(cluster) if probe else ""
                pieces.append(PieceStatus(name, "running" if why else "ready",
                                          f"{where} {why}".strip()))
        for cluster in ("v1", "v2"):
            for host in self.controller_hosts(cluster)[1:]:
                up = [s for s in hostctl.PROCESSES if hostctl.running(host.directory, s)]
                where = f"{host.address}:8082/:8081/:8083"
                roles = all(s in up for s in hostctl.ROLES)
                why = _host_ready(host.address) if roles and probe else ""
                state = "ready" if roles and not why else "running" if up else "stopped"
                pieces.append(PieceStatus(host.name, state, f"{where} running: "
                                          f"{', '.join(up) or 'none'} {why}".strip()))
        pieces += [self._writers_state(c) for c in ("v1", "v2")]
        pieces.append(self._neutron_piece())
        fleet = self.fleet.status()
        if self.containers:
            pieces.append(self._containers().computes_state())
        elif fleet.state == "ready":
            hosts = fleet.hosts.values()
            connected = sum(1 for h in hosts if h.get("connected"))
            versions: dict[str, int] = {}
            for h in hosts:
                key = str(h.get("agent_version") or "stopped")
                versions[key] = versions.get(key, 0) + 1
            spread = ", ".join(f"{v}: {n}" for v, n in sorted(versions.items()))
            pieces.append(PieceStatus("computes", "ready",
                                      f"{len(fleet.hosts)} hosts, {connected} agents connected "
                                      f"({spread})"))
        else:
            pieces.append(PieceStatus("computes", fleet.state, fleet.detail))
        group = read_pidfile(self.dir / "workload" / "pid")
        rate = float(self._recorded().get("workload_rate", self.opts.workload_rate))
        if group is not None and group.all_alive():
            pieces.append(PieceStatus("workload", "running", f"{rate:g} changes/s"))
        elif rate <= 0:
            pieces.append(PieceStatus("workload", "off", "no workload (--rate 0)"))
        else:
            pieces.append(PieceStatus("workload", "stopped", f"{rate:g} changes/s"))
        pieces.append(self.seed_state())
        written = self.written_config()
        pieces.append(PieceStatus("config", "ready" if written and written.is_file()
                                  else "missing", str(written or self.config_path)))
        return pieces

    def _neutron_piece(self) -> PieceStatus:
        if not hostctl.running(self.northbound_dir(), hostctl.NEUTRON):
            return PieceStatus(hostctl.NEUTRON, "stopped",
                               f"see {hostctl.log_path(self.northbound_dir(), hostctl.NEUTRON)}")
        state = self.neutron_state()
        api = state.get("api_server", "?")
        if state.get("last_error"):
            return PieceStatus(hostctl.NEUTRON, "running", f"api-server {api}: "
                               f"{state['last_error']}")
        return PieceStatus(hostctl.NEUTRON, "ready", f"talks to the api-server at {api}")

    def processes(self) -> list[int]:
        """Every live pid this world recorded (for tests and `status`)."""
        pids: set[int] = set()
        files = [self.dir / "workload" / "pid", self.dir / "seed" / "pid", self.fleet.pidfile,
                 *self.controller_pidfiles(),
                 hostctl.pidfile(self.northbound_dir(), hostctl.NEUTRON),
                 *self.run_dir.glob("*/pid")]
        for path in files:
            group = read_pidfile(path)
            if group is not None:
                pids |= group.members()
        return sorted(pids)

    def how_to_connect(self) -> str:
        ep = Endpoints.load(self.run_dir)
        first = ep.ssh.addresses[0]
        if self.containers:
            compute = (f"a compute:  {self._containers().compose_command(ep.ssh.names[0])} ps "
                       f"(every container: podman ps --filter label=issu.demo.net="
                       f"{self.opts.net})")
        else:
            compute = (f"a compute:  ssh -i {ep.ssh.key_path} -o UserKnownHostsFile="
                       f"{ep.ssh.known_hosts_path} -o StrictHostKeyChecking=yes "
                       f"{ep.ssh.user}@{first} {self.fleet.host_command()} status")
        return "\n".join([
            f"config:     {self.config_path}",
            f"console:    issu tui --config {self.config_path}",
            f"v1:         api http://{self.controller_address('v1')}:8082  analytics "
            f"http://{self.controller_address('v1')}:8081",
            f"v2:         api http://{self.controller_address('v2')}:8082  analytics "
            f"http://{self.controller_address('v2')}:8081  (fenced until finalize)",
            compute,
            *([ring_world.how_to_run(layout, self.config_path)]
              if (layout := self.ring()) else []),
            f"stop:       issu demo down --net {self.opts.net}",
        ])


def _control_name(cluster: str, index: int) -> str:
    """The control node (its bgp-router) of a cluster's controller host `index`."""
    return f"{cluster}-control-{index}"


def _host_ready(address: str) -> str:
    """'' when a controller host's api-server, analytics-api and control node introspect
    answer, else why not."""
    for port, what in ((8082, "api-server"), (8081, "analytics-api"),
                       (8083, "control introspect")):
        try:
            status = httpx.get(f"http://{address}:{port}/", timeout=2.0).status_code
        except httpx.HTTPError as exc:
            return f"{what} :{port}: {type(exc).__name__}"
        if status != 200:
            return f"{what} :{port}: HTTP {status}"
    return ""


def _heartbeat_s(computes: int) -> float:
    """Agents report every few seconds; slower with many, to keep the controllers light."""
    return max(3.0, computes / 100.0)


def _runsync_group(pid: int, config_path: Path) -> Group | None:
    """The process group of the run-sync `pid` runs, if it is this world's (started with its
    own session: the group is its pid); None for a pid reused by something else."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return None
    # [python, -c, code, sync, run, -c, CONFIG] or [issu, sync, run, -c, CONFIG, --reverse]
    argv = [a for a in raw.split("\0") if a]
    try:
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None
    ticks = start_ticks(pid)
    ours = config_path.resolve()
    runs = [i for i in range(len(argv) - 3) if argv[i:i + 3] == ["sync", "run", "-c"]]
    if ticks is None or not runs or (cwd / argv[runs[-1] + 3]).resolve() != ours:
        return None
    return Group(pid, (ProcRef(pid, ticks),))


def _reverse_pid(state_dir: Path) -> int | None:
    """The reverse replication's pid, from the state directory's file (`pid started_at`)."""
    from issu_tui.journal import REVERSE_PID

    try:
        return int((state_dir / REVERSE_PID).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _stop_legacy_controller(directory: Path) -> bool:
    """A controller started before its roles were processes of their own ran all three in
    one, recorded in `pid`: stopped (True when it ran)."""
    legacy = directory / "pid"
    group = read_pidfile(legacy)
    if group is None:
        return False
    alive = group.any_alive()
    if alive:
        terminate_group(group, 20.0)
    legacy.unlink(missing_ok=True)
    return alive
