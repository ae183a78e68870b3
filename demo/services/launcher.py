"""Start, check, stop and reuse the real services of one network (``127.<net>.x.y``)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from demo.services.base import Context, NotReady, Service, ServiceError, port_bindable, tail
from demo.services.cassandra import CassandraService
from demo.services.endpoints import Endpoints, HostPort, RabbitEndpoint, SshEndpoint, ZkEndpoint
from demo.services.plan import (
    AMQP_PORT,
    CASSANDRA_CQL_PORT,
    PROFILES,
    SSH_PORT,
    SSHD_MAX_ADDRESSES,
    ZK_PORT,
    AddressPlan,
    default_run_dir,
)
from demo.services.procs import Group, read_pidfile, rss_kib, spawn_group, terminate_group
from demo.services.rabbitmq import RabbitService
from demo.services.ring import RingNodeService
from demo.services.sshd import SshdService, SshKeys
from demo.services.zookeeper import ZooKeeperService

GROUPS = ("cassandra", "zk", "rabbit", "ssh", "ring", "ring-spare")
SshHosts = int | Sequence[str] | Mapping[str, str]


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    group: str
    state: str  # "ready" | "running" (not answering) | "stopped" | "broken" (part of it died)
    pids: tuple[int, ...]
    rss_kib: int
    where: str
    detail: str = ""


class Launcher:
    """The services of one profile/network, each a process group with a pid file in its dir.

    ``ssh_hosts``: a count (hosts ``compute-1..N``), a sequence of host names (addresses
    127.<net>.1.1 upwards), or an explicit mapping loopback address -> host name; None
    (default) keeps the hosts recorded in the run dir's endpoints.json (none if absent).

    ``ring``: the nodes of a multi-node Cassandra ring (group "ring", demo/services/ring.py);
    ``ring_spares`` more nodes (group "ring-spare") that join it when started.
    """

    def __init__(
        self,
        net: int,
        profile: str = "test",
        run_dir: Path | None = None,
        ssh_hosts: SshHosts | None = None,
        ring: int = 0,
        ring_spares: int = 0,
    ) -> None:
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
        plan = AddressPlan(net)
        self.ctx = Context(net, profile, (run_dir or default_run_dir(profile, net)).resolve(), plan)
        if ssh_hosts is None:
            ssh_hosts = _recorded_ssh_hosts(self.ctx.run_dir)
        self.ssh_hosts = _ssh_pairs(plan, ssh_hosts)
        self.services: dict[str, Service] = {}
        ctx = self.ctx
        for svc in (
            ZooKeeperService(ctx, "zk-old", plan.zk_old),
            ZooKeeperService(ctx, "zk-new", plan.zk_new),
            RabbitService(ctx, "rabbitmq", plan.rabbitmq),
            *self._sshd_services(),
            CassandraService(ctx, "cassandra-old", plan.cassandra_old, f"issu-old-{net}"),
            CassandraService(ctx, "cassandra-new", plan.cassandra_new, f"issu-new-{net}"),
        ):
            self.services[svc.name] = svc
        for index in range(1, ring + ring_spares + 1):
            node = RingNodeService(ctx, index, ring, ring_spares)
            if node.joining:
                node.group = "ring-spare"
            self.services[node.name] = node
        self._popens: dict[str, list[subprocess.Popen[bytes]]] = {}
        self._lock_depth = 0
        self._lock_fd: int | None = None
        self.touched: set[str] = set()  # started or reused by this Launcher object
        self.ready_after: dict[str, float] = {}  # seconds from spawn to ready (this object)
        self._spawned_at: dict[str, float] = {}

    def _sshd_services(self) -> list[SshdService]:
        pairs = self.ssh_hosts
        addresses = [a for a, _ in pairs]
        chunks = [
            pairs[i : i + SSHD_MAX_ADDRESSES] for i in range(0, len(pairs), SSHD_MAX_ADDRESSES)
        ]
        return [
            SshdService(self.ctx, f"sshd-{i + 1}", chunk, addresses)
            for i, chunk in enumerate(chunks)
        ]

    # ----------------------------------------------------------------- information
    @property
    def run_dir(self) -> Path:
        return self.ctx.run_dir

    @property
    def net(self) -> int:
        return self.ctx.net

    def names(self, only: Iterable[str] | None = None) -> list[str]:
        """Service names in start order, filtered by group ("cassandra", ...) or by name."""
        if only is None:
            return list(self.services)
        wanted = {w.strip() for w in only if w.strip()}
        unknown = wanted - set(GROUPS) - set(self.services)
        if unknown:
            raise ServiceError(
                f"unknown service(s) {sorted(unknown)}; groups {list(GROUPS)}, "
                f"names {list(self.services)}"
            )
        return [n for n, s in self.services.items() if n in wanted or s.group in wanted]

    def service(self, name: str) -> Service:
        try:
            return self.services[name]
        except KeyError:
            raise ServiceError(f"unknown service {name!r}; known: {list(self.services)}") from None

    def endpoints(self) -> Endpoints:
        plan = self.ctx.plan
        rabbit = self.services["rabbitmq"]
        assert isinstance(rabbit, RabbitService)
        rabbit.dir.mkdir(parents=True, exist_ok=True)
        keys = SshKeys(self.run_dir)
        return Endpoints(
            cassandra_old=HostPort(plan.cassandra_old, CASSANDRA_CQL_PORT),
            cassandra_new=HostPort(plan.cassandra_new, CASSANDRA_CQL_PORT),
            zk_old=ZkEndpoint(plan.zk_old, ZK_PORT),
            zk_new=ZkEndpoint(plan.zk_new, ZK_PORT),
            rabbit=RabbitEndpoint(plan.rabbitmq, AMQP_PORT, rabbit.user, rabbit.password()),
            ssh=SshEndpoint(
                addresses=tuple(a for a, _ in self.ssh_hosts),
                names=tuple(n for _, n in self.ssh_hosts),
                port=SSH_PORT,
                user=_current_user(),
                key_path=keys.client_key,
                known_hosts_path=keys.known_hosts,
            ),
            run_dir=self.run_dir,
        )

    def status(self, names: Iterable[str] | None = None, probe: bool = True) -> list[ServiceStatus]:
        result = []
        for name in names if names is not None else self.services:
            svc = self.service(name)
            group = read_pidfile(svc.pidfile)
            if group is None or not group.any_alive():
                result.append(ServiceStatus(name, svc.group, "stopped", (), 0, svc.describe()))
                continue
            pids = tuple(p.pid for p in group.procs if p.alive())
            rss = sum(rss_kib(pid) for pid in group.members())
            if not group.all_alive():
                state, detail = "broken", "part of the process group died"
            elif not probe:
                state, detail = "running", ""
            else:
                try:
                    svc.check_ready()
                    state, detail = "ready", ""
                except (NotReady, ServiceError) as exc:
                    state, detail = "running", str(exc)
            result.append(ServiceStatus(name, svc.group, state, pids, rss, svc.describe(), detail))
        return result

    # ----------------------------------------------------------------- lifecycle
    def up(self, only: Iterable[str] | None = None) -> Endpoints:
        """Start (or reuse) the selected services and wait until each answers its client.

        Light services start together; heavy ones (Cassandra) one after the other, the
        first overlapping with the light ones.
        """
        names = self.names(only)
        with self._locked():
            light = [n for n in names if not self.services[n].heavy]
            heavy = [n for n in names if self.services[n].heavy]
            try:
                first = [heavy[0]] if heavy else []
                self._wait_all({name: self._launch(name) for name in first + light})
                for name in heavy[1:]:
                    self._wait_ready(name, self._launch(name))
            finally:
                self.endpoints().save()
        return self.endpoints()

    def ensure_up(self, only: Iterable[str] | None = None) -> list[str]:
        """Cheaply revive services whose processes died (no client probes for live ones).

        For tests that kill or stop services: returns the names it had to start again."""
        dead = []
        for name in self.names(only):
            group = read_pidfile(self.services[name].pidfile)
            if group is None or not group.all_alive():
                dead.append(name)
        if dead:
            self.up(dead)
        return dead

    def start(self, name: str) -> None:
        """Start one service (or reuse it if already healthy) and wait until it is ready."""
        with self._locked():
            self._wait_ready(name, self._launch(name))
            self.endpoints().save()

    def stop(self, name: str) -> None:
        """Stop one service's whole process group (no-op if it is not running)."""
        with self._locked():
            self._stop_dir(self.service(name).dir, self.service(name).stop_timeout, name)

    def restart(self, name: str) -> None:
        with self._locked():
            self.stop(name)
            self.start(name)

    def down(self, only: Iterable[str] | None = None) -> list[str]:
        """Stop the selected services and return the names stopped.

        Without ``only``: every process group recorded in the run dir (also sshd instances
        from an earlier ``up`` with more hosts)."""
        with self._locked():
            if only is None:
                dirs = {p.parent.name: p.parent for p in sorted(self.run_dir.glob("*/pid"))}
                order = [n for n in reversed(self.services) if n in dirs]
                order += [n for n in dirs if n not in self.services]
            else:
                order = list(reversed(self.names(only)))
                dirs = {n: self.services[n].dir for n in order}

            def stop_one(name: str) -> bool:
                svc = self.services.get(name)
                timeout = svc.stop_timeout if svc else 30.0
                return self._stop_dir(dirs[name], timeout, name)

            # In parallel: each Cassandra drains for several seconds on SIGTERM.
            with ThreadPoolExecutor(max_workers=max(1, len(order))) as pool:
                results = list(pool.map(stop_one, order))
            stopped = [name for name, done in zip(order, results, strict=True) if done]
        return stopped

    # ----------------------------------------------------------------- internals
    def _launch(self, name: str) -> float:
        """Make sure ``name`` is running (spawn or reuse); return its readiness deadline."""
        svc = self.service(name)
        self.touched.add(name)
        deadline = time.monotonic() + svc.start_timeout
        group = read_pidfile(svc.pidfile)
        sig_file = svc.dir / "signature"
        same = sig_file.exists() and sig_file.read_text() == svc.signature()
        if group is not None and group.all_alive() and same:
            return deadline  # ours already (maybe still booting): _wait_ready decides
        if group is not None:
            self._stop_dir(svc.dir, svc.stop_timeout, name)
        busy = self._busy_ports(svc, wait=5.0 if group is not None else 0.0)
        if busy and _end_strays(svc):
            busy = self._busy_ports(svc, wait=5.0)
        if busy:
            raise ServiceError(
                f"{name}: {', '.join(busy)} already in use by a process this launcher did not "
                f"start (no live pid file {svc.pidfile}); stop it or use another --net"
            )
        svc.prepare()
        group, popens = spawn_group(svc.commands(), svc.console_log)
        self._spawned_at[name] = time.monotonic()
        svc.pidfile.write_text(group.to_json() + "\n")
        sig_file.write_text(svc.signature())
        self._popens[name] = popens
        return deadline

    @staticmethod
    def _busy_ports(svc: Service, wait: float) -> list[str]:
        """Addresses still bound; ``wait`` lets a just-stopped process release its sockets."""
        end = time.monotonic() + wait
        while True:
            busy = [f"{h}:{p}" for h, p in svc.listens() if not port_bindable(h, p)]
            if not busy or time.monotonic() >= end:
                return busy
            time.sleep(0.2)

    def _wait_ready(self, name: str, deadline: float) -> None:
        self._wait_all({name: deadline})

    def _wait_all(self, pending: dict[str, float]) -> None:
        """Probe every pending service each round until all answer (or one fails)."""
        last: dict[str, str] = {}
        pending = dict(pending)
        while pending:
            for name, deadline in list(pending.items()):
                svc = self.service(name)
                for popen in self._popens.get(name, []):
                    popen.poll()
                group = read_pidfile(svc.pidfile)
                if group is None or not group.all_alive():
                    self._fail(svc, "exited while starting")
                try:
                    svc.check_ready()
                except NotReady as exc:
                    last[name] = str(exc)
                except ServiceError as exc:
                    self._fail(svc, f"answered wrongly: {exc}")
                else:
                    del pending[name]
                    if name in self._spawned_at:
                        self.ready_after[name] = time.monotonic() - self._spawned_at.pop(name)
                    continue
                if time.monotonic() > deadline:
                    why = last.get(name, "no answer")
                    self._fail(svc, f"not ready after {svc.start_timeout:.0f} s (last: {why})")
            if pending:
                time.sleep(0.25)

    def _fail(self, svc: Service, why: str) -> None:
        logs = "\n".join(f"--- tail of {p}:\n{tail(p)}" for p in svc.log_files())
        self._stop_dir(svc.dir, svc.stop_timeout, svc.name)
        raise ServiceError(f"{svc.name} ({svc.describe()}) {why}\n{logs}")

    def _stop_dir(self, directory: Path, timeout: float, name: str) -> bool:
        pidfile = directory / "pid"
        group: Group | None = read_pidfile(pidfile)
        if group is None:
            with contextlib.suppress(FileNotFoundError):
                pidfile.unlink()
            return False
        terminate_group(group, timeout, self._popens.pop(name, []))
        with contextlib.suppress(FileNotFoundError):
            pidfile.unlink()
        return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise launchers of the same run dir across processes (re-entrant here)."""
        if self._lock_depth == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(self.run_dir, 0o700)
            fd = os.open(self.run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._lock_fd = fd
        self._lock_depth += 1
        try:
            yield
        finally:
            self._lock_depth -= 1
            if self._lock_depth == 0 and self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None


def _current_user() -> str:
    import getpass

    return getpass.getuser()


def _recorded_ssh_hosts(run_dir: Path) -> dict[str, str]:
    try:
        ssh = Endpoints.load(run_dir).ssh
    except (FileNotFoundError, ValueError):
        return {}
    return dict(zip(ssh.addresses, ssh.names, strict=True))


def _ssh_pairs(plan: AddressPlan, hosts: SshHosts) -> list[tuple[str, str]]:
    if isinstance(hosts, int):
        return [(plan.ssh_host(i), f"compute-{i + 1}") for i in range(hosts)]
    if isinstance(hosts, Mapping):
        pairs = [(str(a), str(n)) for a, n in hosts.items()]
        bad = [a for a, _ in pairs if not a.startswith("127.")]
        if bad:
            raise ValueError(f"ssh host addresses must be loopback 127.x.y.z: {bad}")
        return pairs
    return [(plan.ssh_host(i), str(n)) for i, n in enumerate(hosts)]


def _end_strays(svc: Service) -> bool:
    """End processes of this service that its pid file no longer lists: one running exactly
    one of its own command lines (its argv names this net's ports and addresses), or one
    whose environment points into its run directory (an `epmd -daemon` that one of the
    broker's helper `erl`s spawned when a start under load was cut short). True when one
    was found."""
    own = {"\0".join(c.argv).encode() for c in svc.commands()}
    inside = f"={svc.dir}".encode()
    found = [int(p.name) for p in Path("/proc").iterdir()
             if p.name.isdigit() and p.name != str(os.getpid())
             and (_cmdline(p) in own or _environ_points_into(p, inside))]
    for pid in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    alive = found
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [pid for pid in alive if _running(pid)]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return bool(found)


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes().rstrip(b"\0")
    except OSError:
        return b""


def _environ_points_into(proc: Path, inside: bytes) -> bool:
    try:
        environ = (proc / "environ").read_bytes()
    except OSError:
        return False
    return any(v.startswith(inside) and v[len(inside):len(inside) + 1] in (b"", b"/")
               for v in (b"=" + e.partition(b"=")[2] for e in environ.split(b"\0")))


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's parent may never reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
