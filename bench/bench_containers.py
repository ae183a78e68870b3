"""Start-up time and memory of N demo computes: agents in containers (podman, runc) beside
the loopback mode (one compute daemon for every host). Not part of `make test`.

    flock /tmp/issu-heavy.lock .venv/bin/python bench/bench_containers.py --net 47 --computes 12

Each mode lays out N computes on 127.<net>.1.x (pointed at an address where no controller
listens: the agents start and keep trying, as before the controllers are up), starts them,
and waits until every agent answers: the container running and its introspect on
<address>:8085 answering (containers), the daemon answering with N hosts (loopback). Memory
is the resident set of what runs the agents: each container's process tree plus its conmon,
or the compute daemon. Everything started is removed at the end.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--net", type=int, default=47)
    parser.add_argument("--computes", type=int, default=12)
    args = parser.parse_args()
    ensure_images()
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


if __name__ == "__main__":
    main()
