"""The host-side command of a simulated compute, what the demo profile runs over SSH:

    python -m demo.compute.host [--world DIR] [--host NAME] <verb> ...

The host is `$ISSU_DEMO_HOST` (set by sshd per listening address), the world directory
`--world` or `$ISSU_DEMO_WORLD`. Verbs mimic a package reinstall of contrail-vrouter-agent:
`status`, `stop-agent`, `install --version V`, `configure --control-nodes ... --collectors
... --dns ...`, `start-agent`, `health`, `probe-gap`, `maintenance on|off`. Output and exit
codes follow the real tools where there is one (apt-get exits 100 on errors).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import random
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from backends.hostport import DEFAULT_PORTS, host_of, with_port
from demo.compute.layout import (
    AGENT_PACKAGE,
    PACKAGES,
    SOCKET_NAME,
    HostDir,
    WorldError,
    WorldSettings,
    load_world,
    set_ini,
    split_list,
)

APT_ERROR = 100


class HostdUnavailable(Exception):
    pass


def hostd(world_dir: Path, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """One request to the world's daemon."""
    path = world_dir / SOCKET_NAME
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise HostdUnavailable(f"the compute daemon at {path} does not answer: {exc}") from None
    finally:
        sock.close()
    try:
        reply = json.loads(data)
    except json.JSONDecodeError:
        raise HostdUnavailable(f"the compute daemon at {path} sent garbage") from None
    if not reply.get("ok"):
        raise HostdUnavailable(str(reply.get("error")))
    return dict(reply)


class Host:
    def __init__(self, world_dir: Path, name: str) -> None:
        self.world_dir = world_dir
        self.settings: WorldSettings = load_world(world_dir)
        if name not in self.settings.hosts:
            raise WorldError(f"{name!r} is not a host of the world {world_dir}")
        self.name = name
        self.address = self.settings.hosts[name]
        self.dir = HostDir(world_dir, name)
        if not self.dir.exists():
            raise WorldError(f"{self.dir.root}: host {name} is not installed")

    def daemon(self, op: str) -> dict[str, Any]:
        return hostd(self.world_dir, {"op": op, "host": self.name})

    def runtime(self) -> dict[str, Any] | None:
        try:
            return self.daemon("state")
        except HostdUnavailable:
            return None

    def agent_state(self, rt: dict[str, Any] | None) -> str:
        if rt is None:
            return "unknown"
        if not rt["running"]:
            return "stopped"
        return "connected" if rt["connected"] else "running"

    @contextlib.contextmanager
    def dpkg_lock(self, timeout_s: float = 0.0) -> Iterator[None]:
        """apt's lock: held by another install, fail at once, or wait up to `timeout_s`
        (apt's `-o DPkg::Lock::Timeout=N`; e.g. an install an executor started before it
        was killed is still running)."""
        self.dir.dpkg_lock.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout_s
        with open(self.dir.dpkg_lock, "w") as fh:
            waited = False
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise WorldError(f"E: Could not get lock {self.dir.dpkg_lock}. It is "
                                         "held by another process") from None
                    if not waited:
                        _say(f"Waiting for cache lock: Could not get lock "
                             f"{self.dir.dpkg_lock}. It is held by another process")
                        waited = True
                    time.sleep(0.2)
            yield


def _say(text: str) -> None:
    print(text, flush=True)


def cmd_status(host: Host, args: argparse.Namespace) -> int:
    rt = host.runtime()
    conf = host.dir.read_conf()
    status = {
        "name": host.name,
        "address": host.address,
        "version": host.dir.version(),
        "control_nodes": conf["control_nodes"],
        "collectors": conf["collectors"],
        "dns_servers": conf["dns_servers"],
        "agent_state": host.agent_state(rt),
        "cluster": (rt or {}).get("cluster", ""),
        "maintenance": host.dir.maintenance_flag.exists(),
        "datapath_up": (rt or {}).get("datapath_up"),
        "last_gap_ms": (rt or {}).get("gap_ms"),
        "agent_error": (rt or {}).get("last_error", "compute daemon not running"),
    }
    _say(json.dumps(status, sort_keys=True))
    return 0


def cmd_stop_agent(host: Host, args: argparse.Namespace) -> int:
    with contextlib.suppress(HostdUnavailable):
        host.daemon("watch")
    host.dir.enabled_flag.unlink(missing_ok=True)
    reply = host.daemon("stop")
    _say("Stopped contrail-vrouter-agent." if reply["was_running"]
         else "contrail-vrouter-agent was not running.")
    return 0


def cmd_start_agent(host: Host, args: argparse.Namespace) -> int:
    host.dir.enabled_flag.touch()
    reply = host.daemon("start")
    if reply["module_reload"]:
        _say(f"Reloading vrouter kernel module for {host.dir.version()} (data path interrupted)")
    _say(f"Started contrail-vrouter-agent (pid {reply['pid']}).")
    return 0


def cmd_install(host: Host, args: argparse.Namespace) -> int:
    version = args.version
    s = host.settings
    with host.dpkg_lock(args.lock_timeout):
        with contextlib.suppress(HostdUnavailable):
            host.daemon("watch")
        _say("Reading package lists... Done\nBuilding dependency tree... Done")
        if version not in s.repository:
            print(f"E: Version '{version}' for '{AGENT_PACKAGE}' was not found", file=sys.stderr)
            return APT_ERROR
        current = host.dir.version()
        if current == version:
            _say(f"{AGENT_PACKAGE} is already the newest version ({version}).\n"
                 "0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.")
            return 0
        verb = "upgraded" if _vkey(version) > _vkey(current) else "downgraded"
        _say(f"The following packages will be {verb.upper()}:\n  {' '.join(PACKAGES)}")
        duration = max(0.0, s.install_s + random.uniform(-s.install_jitter_s, s.install_jitter_s))
        rt = host.runtime()
        if rt and rt["running"]:
            _say("Stopping contrail-vrouter-agent (prerm)...")
            host.dir.enabled_flag.unlink(missing_ok=True)
            host.daemon("stop")
        began = time.time()
        for i, pkg in enumerate(PACKAGES):
            _say(f"Get:{i + 1} http://repo.issu-demo.invalid/contrail {pkg} {version} [amd64]")
        time.sleep(duration * 0.4)
        fails = random.random() < s.failure_for(host.name)
        for pkg in PACKAGES:
            _say(f"Preparing to unpack .../{pkg}_{version}_amd64.deb ...")
            _say(f"Unpacking {pkg} ({version}) over ({current}) ...")
            time.sleep(duration * 0.1)
            if fails and pkg == "contrail-vrouter-dkms":
                print(f"dpkg: error processing archive /var/cache/apt/archives/"
                      f"{pkg}_{version}_amd64.deb (--unpack):\n"
                      f" trying to overwrite '/lib/modules/vrouter.ko', which is also in "
                      f"package contrail-vrouter-kmod {current}\n"
                      "Errors were encountered while processing:\n"
                      f" /var/cache/apt/archives/{pkg}_{version}_amd64.deb\n"
                      "E: Sub-process /usr/bin/dpkg returned an error code (1)",
                      file=sys.stderr, flush=True)
                _log_apt(host, f"install {version} FAILED (kept {current})", began)
                return APT_ERROR
        _say(f"Setting up contrail-vrouter-dkms ({version}) ...\n"
             f"Building module vrouter.ko for {version}: done.")
        time.sleep(duration * 0.2)
        host.dir.set_version(version)
        for pkg in PACKAGES:
            _say(f"Setting up {pkg} ({version}) ...")
        _log_apt(host, f"{verb} {current} -> {version}", began)
    return 0


def _log_apt(host: Host, what: str, began: float) -> None:
    with open(host.dir.apt_log, "a") as fh:
        fh.write(f"Start-Date: {time.strftime('%Y-%m-%d  %H:%M:%S', time.localtime(began))}\n"
                 f"Commandline: apt-get install {AGENT_PACKAGE}\n{what}\n"
                 f"End-Date: {time.strftime('%Y-%m-%d  %H:%M:%S')}\n\n")


def _vkey(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))


def cmd_configure(host: Host, args: argparse.Namespace) -> int:
    changes = []
    for value, section, key, kind in (
        (args.control_nodes, "CONTROL-NODE", "servers", "control_nodes"),
        (args.collectors, "DEFAULT", "collectors", "collectors"),
        (args.dns, "DNS", "servers", "dns_servers"),
    ):
        if value is None:
            continue
        items = [with_port(v, DEFAULT_PORTS[kind]) for v in split_list(value)]
        if not items:
            print(f"configure: {kind} must not be empty", file=sys.stderr)
            return 2
        changes.append((section, key, " ".join(items)))
    if not changes:
        print("configure: nothing to change", file=sys.stderr)
        return 2
    for line in set_ini(host.dir.agent_conf, changes):
        _say(f"{host.dir.agent_conf.name}: {line}")
    return 0


def cmd_health(host: Host, args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.timeout
    expect_nodes = {host_of(c) for c in split_list(args.expect_control_nodes)}
    problem = ""
    rt: dict[str, Any] | None = None
    while True:
        rt = host.runtime()
        conf = host.dir.read_conf()
        version = host.dir.version()
        if rt is None:
            problem = "the compute daemon does not answer"
        elif args.expect_version and version != args.expect_version:
            problem = f"installed version is {version}, expected {args.expect_version}"
        elif expect_nodes and {host_of(c) for c in conf["control_nodes"]} != expect_nodes:
            problem = (f"agent config names control nodes {' '.join(conf['control_nodes'])}, "
                       f"expected {' '.join(sorted(expect_nodes))}")
        elif not rt["running"]:
            problem = "contrail-vrouter-agent is not running"
        elif rt["agent_version"] != version or (
                expect_nodes and {host_of(c) for c in rt["agent_control_nodes"]} != expect_nodes):
            problem = "contrail-vrouter-agent runs with an older version or config: restart it"
        elif not rt["connected"]:
            problem = f"agent not connected: {rt['last_error'] or 'no report accepted yet'}"
        elif args.expect_cluster and rt["cluster"] != args.expect_cluster:
            problem = f"agent reports to cluster {rt['cluster']}, expected {args.expect_cluster}"
        elif not rt["datapath_up"]:
            problem = "data path is still down"
        else:
            _say(json.dumps({"healthy": True, "version": version, "cluster": rt["cluster"],
                             "collector": rt["collector"],
                             "control_nodes": conf["control_nodes"]}, sort_keys=True))
            return 0
        if time.monotonic() >= deadline:
            print(f"unhealthy after {args.timeout:g} s: {problem}", file=sys.stderr)
            return 1
        time.sleep(0.3)


def cmd_probe_gap(host: Host, args: argparse.Namespace) -> int:
    rt = host.daemon("state")
    _say(json.dumps({"gap_ms": rt["gap_ms"], "ongoing": rt["gap_ongoing"],
                     "outages": rt["outages"], "probe_interval_ms": rt["probe_interval_ms"]}))
    return 0


def cmd_maintenance(host: Host, args: argparse.Namespace) -> int:
    if args.mode == "on":
        host.dir.maintenance_flag.touch()
        _say(f"{host.name}: maintenance mode on (no new workloads scheduled)")
    else:
        host.dir.maintenance_flag.unlink(missing_ok=True)
        _say(f"{host.name}: maintenance mode off")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m demo.compute.host", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", type=Path, default=os.environ.get("ISSU_DEMO_WORLD"))
    p.add_argument("--host", default=os.environ.get("ISSU_DEMO_HOST"))
    sub = p.add_subparsers(dest="verb", required=True)
    sub.add_parser("status").set_defaults(fn=cmd_status)
    sub.add_parser("stop-agent").set_defaults(fn=cmd_stop_agent)
    sub.add_parser("start-agent").set_defaults(fn=cmd_start_agent)
    inst = sub.add_parser("install")
    inst.add_argument("--version", required=True)
    inst.add_argument("--lock-timeout", type=float, default=0.0,
                      help="wait this long for another install's lock (apt's "
                           "DPkg::Lock::Timeout); 0 fails at once")
    inst.set_defaults(fn=cmd_install)
    conf = sub.add_parser("configure")
    conf.add_argument("--control-nodes")
    conf.add_argument("--collectors")
    conf.add_argument("--dns")
    conf.set_defaults(fn=cmd_configure)
    health = sub.add_parser("health")
    health.add_argument("--expect-version", default="")
    health.add_argument("--expect-control-nodes", default="")
    health.add_argument("--expect-cluster", default="")
    health.add_argument("--timeout", type=float, default=60.0)
    health.set_defaults(fn=cmd_health)
    sub.add_parser("probe-gap").set_defaults(fn=cmd_probe_gap)
    maint = sub.add_parser("maintenance")
    maint.add_argument("mode", choices=("on", "off"))
    maint.set_defaults(fn=cmd_maintenance)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.host:
        print("host: no host name (ISSU_DEMO_HOST is not set and no --host)", file=sys.stderr)
        return 2
    if not args.world:
        print("host: no world directory (ISSU_DEMO_WORLD is not set and no --world)",
              file=sys.stderr)
        return 2
    try:
        host = Host(Path(args.world), args.host)
        return int(args.fn(host, args))
    except (WorldError, HostdUnavailable) as exc:
        print(f"{args.host}: {exc}", file=sys.stderr)
        return APT_ERROR if args.verb == "install" else 1


if __name__ == "__main__":
    sys.exit(main())
