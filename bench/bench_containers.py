"""Start-up time and memory of N demo computes: agents in containers (podman, runc) beside
the loopback mode (one compute daemon for every host). Not part of `make test`.

    .venv/bin/python -m bench.bench_containers --net 47 --computes 12
    .venv/bin/python -m bench.bench_containers --net 47 --computes 12 --world

--world: the whole demo world instead (`issu demo up --containers` beside `--loopback`, each
from an empty run directory, no seed and no workload): the seconds `up` takes and until every
agent is connected to v1, the resident memory of the Contrail side (controllers, writers,
agents: the containers' process trees and conmons, or the processes) and of the services
(Cassandra x2, ZooKeeper x2, RabbitMQ, sshd: the same in both modes). Each world is taken down
at the end.

Each mode lays out N computes on 127.<net>.1.x (pointed at an address where no controller
listens: the agents start and keep trying, as before the controllers are up), starts them,
and waits until every agent answers: the container running and its introspect on
<address>:8085 answering (containers), the daemon answering with N hosts (loopback). Memory
is the resident set of what runs the agents: each container's process tree plus its conmon,
or the compute daemon. Everything started is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from demo.compute.fleet import Fleet
from demo.compute.layout import WorldSettings
from demo.containers.compute import compose_up, remove_net_containers, write_compute
from demo.containers.engine import Engine
from demo.containers.images import ensure_images


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return found


def answers(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}:8085/Snh_AgentXmppConnectionStatusReq",
                                    timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def containers(net: int, hosts: dict[str, str], root: Path) -> tuple[float, int]:
    nowhere = [f"127.{net}.0.199"]
    dirs = [write_compute(root, net, n, a, "4.1.0", nowhere) for n, a in hosts.items()]
    began = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(compose_up, dirs))
    while not all(answers(a) for a in hosts.values()):
        time.sleep(0.2)
    elapsed = time.monotonic() - began
    total = 0
    for c in Engine().containers(f"label=issu.demo.net={net}"):
        info = json.loads(Engine().run("container", "inspect", str(c["Id"])).stdout)[0]
        total += sum(rss_kib(p) for p in tree(info["State"]["Pid"]))
        total += rss_kib(info["State"]["ConmonPid"])
    return elapsed, total


def loopback(net: int, hosts: dict[str, str], root: Path) -> tuple[float, int]:
    fleet = Fleet(root / "world")
    fleet.create(WorldSettings(net=net, hosts=hosts), "4.1.0", [f"127.{net}.0.199"])
    began = time.monotonic()
    pid = fleet.start(timeout=120)
    elapsed = time.monotonic() - began
    return elapsed, sum(rss_kib(p) for p in tree(pid))


def net_containers_kib(net: int) -> int:
    total = 0
    for c in Engine().containers(f"label=issu.demo.net={net}", all_states=False):
        info = json.loads(Engine().run("container", "inspect", str(c["Id"])).stdout)[0]
        total += sum(rss_kib(p) for p in tree(info["State"]["Pid"]))
        total += rss_kib(info["State"]["ConmonPid"])
    return total


def group_kib(pidfiles: list[Path]) -> int:
    from demo.services.procs import read_pidfile

    pids: set[int] = set()
    for path in pidfiles:
        group = read_pidfile(path)
        if group is not None:
            pids |= group.members()  # its processes and their descendants
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += rss_kib(pid)
    return total


def agents_connected(analytics: str, count: int) -> bool:
    """v1's analytics lists `count` vrouters (each agent has reported to it)."""
    import httpx

    url = f"{analytics}/analytics/uves/vrouters"
    try:
        found = httpx.get(url, timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return False
    return isinstance(found, list) and len(found) >= count


def whole_world(net: int, count: int, containers: bool, tmp: Path) -> dict[str, float]:
    from demo.world import World, WorldOptions

    world = World(WorldOptions(net=net, computes=count, run_dir=tmp / "run",
                               config_path=tmp / "issu.toml", seed_objects=0,
                               workload_rate=0, containers=containers))
    try:
        began = time.monotonic()
        world.up(lambda msg: None)
        up_s = time.monotonic() - began
        deadline = time.monotonic() + 300
        analytics = f"http://{world.controller_address('v1')}:8081"
        while not agents_connected(analytics, count):
            if time.monotonic() > deadline:
                raise SystemExit(f"{count} agents not connected to v1 after 300 s")
            time.sleep(0.5)
        ready_s = time.monotonic() - began
        time.sleep(5)  # settled
        services = group_kib(sorted(world.run_dir.glob("*/pid")))
        if containers:
            contrail = net_containers_kib(net)
        else:
            contrail = group_kib([*world.controller_pidfiles(), world.fleet.pidfile])
        return {"up_s": up_s, "ready_s": ready_s, "contrail_mib": contrail / 1024,
                "services_mib": services / 1024}
    finally:
        world.down(lambda msg: None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--net", type=int, default=47)
    parser.add_argument("--computes", type=int, default=12)
    parser.add_argument("--world", action="store_true", help="the whole demo world")
    parser.add_argument("--write", type=Path, metavar="MD", nargs="?",
                        const=Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md",
                        help="put the run between the containers (or, --world, "
                             "containers-world) markers of this page (default "
                             "docs/benchmarks.md)")
    args = parser.parse_args()
    from bench.machine import Machine

    machine = Machine.now()
    ensure_images()
    if args.world:
        worlds = {}
        for mode, flag in (("containers", True), ("loopback", False)):
            with tempfile.TemporaryDirectory() as tmp:
                r = whole_world(args.net, args.computes, flag, Path(tmp))
            worlds[mode] = r
            print(f"world, {args.computes} computes, {mode}: up {r['up_s']:.1f} s, agents "
                  f"connected {r['ready_s']:.1f} s; Contrail side {r['contrail_mib']:.0f} MiB,"
                  f" services {r['services_mib']:.0f} MiB", flush=True)
        line = machine.finish().line()
        print(f"machine: {line}")
        if args.write:
            c, lo = worlds["containers"], worlds["loopback"]
            _write(args.write, "containers-world", line, [
                "| computes | containers: up / agents in | loopback: up / agents in | "
                "containers: Contrail RSS | loopback: Contrail RSS | services RSS (containers "
                "/ loopback) |", "|---:|---:|---:|---:|---:|---|",
                f"| {args.computes} | {c['up_s']:.1f} / {c['ready_s']:.1f} s | "
                f"{lo['up_s']:.1f} / {lo['ready_s']:.1f} s | {c['contrail_mib']:,.0f} MiB | "
                f"{lo['contrail_mib']:,.0f} MiB | {c['services_mib']:,.0f} / "
                f"{lo['services_mib']:,.0f} MiB |"])
        return
    hosts = {f"compute-{i}": f"127.{args.net}.1.{i}" for i in range(1, args.computes + 1)}
    with tempfile.TemporaryDirectory() as tmp:
        remove_net_containers(args.net)
        try:
            c_s, c_kib = containers(args.net, hosts, Path(tmp) / "c")
        finally:
            remove_net_containers(args.net)
        fleet = Fleet(Path(tmp) / "l" / "world")
        try:
            l_s, l_kib = loopback(args.net, hosts, Path(tmp) / "l")
        finally:
            fleet.stop()
    print(f"{args.computes} computes | containers: {c_s:.1f} s, {c_kib / 1024:.0f} MiB "
          f"| loopback: {l_s:.1f} s, {l_kib / 1024:.0f} MiB")
    line = machine.finish().line()
    print(f"machine: {line}")
    if args.write:
        _write(args.write, "containers", line, [
            "| computes | containers: start-up | containers: RSS | loopback: start-up | "
            "loopback: RSS |", "|---:|---:|---:|---:|---:|",
            f"| {args.computes} | {c_s:.1f} s | {c_kib / 1024:.0f} MiB | {l_s:.1f} s | "
            f"{l_kib / 1024:.0f} MiB |"])


def _write(page: Path, block: str, machine_line: str, table: list[str]) -> None:
    from bench.page import measured, write_block

    write_block(page, block, [*measured(machine_line, "bench.bench_containers"), *table])

if __name__ == "__main__":
    main()
