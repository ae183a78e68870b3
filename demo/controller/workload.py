"""Keep a cluster busy: create, update and delete objects through its api-server at a set rate.

`python -m demo.controller.workload --api http://127.20.0.101:8082 --rate 5 [--duration 60]`
Works in its own project (`--project`, default `workload`): a shared network-ipam and a base
virtual-network are created once; the churn then creates security-groups, network-policies,
virtual-networks (with a subnet on the ipam) and ports on the base network, updates them
(display_name, description) and deletes them, keeping the live population near `--pool`.
Errors are counted and logged with the object they concern; the run goes on (the api-server may
restart). Prints a line of counters every `--report-every` seconds; stops on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from .rest import RestError, VncRest

log = logging.getLogger("demo.controller.workload")
DOMAIN = "default-domain"
KINDS = ("security-group", "network-policy", "virtual-network", "virtual-machine-interface")


@dataclass
class Live:
    res_type: str
    uuid: str
    name: str


@dataclass
class WorkloadStats:
    done: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)

    @property
    def total(self) -> int:
        return sum(self.done.values())

    def line(self) -> str:
        secs = max(time.monotonic() - self.started, 1e-6)
        ops = " ".join(f"{k}={v}" for k, v in sorted(self.done.items()))
        errs = sum(self.errors.values())
        return f"{self.total} ops in {secs:.0f}s ({self.total / secs:.1f}/s) {ops} errors={errs}"


class Workload:
    def __init__(self, api_url: str, rate: float, project: str = "workload", pool: int = 200,
                 seed: int | None = None):
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rest = VncRest(api_url)
        self.rate = rate
        self.pfq = [DOMAIN, project]
        self.pool = pool
        self.rng = random.Random(seed)
        self.live: list[Live] = []
        self.stats = WorkloadStats()
        self._n = 0
        self._subnet = 0
        self._tag = f"{int(time.time()) % 100000:05d}"

    async def setup(self) -> None:
        await self.rest.ensure("project", {"fq_name": self.pfq, "parent_type": "domain"})
        await self.rest.ensure("network-ipam", {"fq_name": [*self.pfq, "wl-ipam"],
                                                "parent_type": "project"})
        subnet = {"subnet": {"ip_prefix": "172.16.0.0", "ip_prefix_len": 16}}
        await self.rest.ensure("virtual-network", {
            "fq_name": [*self.pfq, "wl-base"], "parent_type": "project",
            "network_ipam_refs": [{"to": [*self.pfq, "wl-ipam"],
                                   "attr": {"ipam_subnets": [subnet]}}]})

    def _choose(self) -> str:
        n = len(self.live)
        if n == 0:
            return "create"
        if n >= self.pool:
            return self.rng.choice(("update", "delete", "delete"))
        return self.rng.choices(("create", "update", "delete"), weights=(4, 4, 2))[0]

    async def _create(self) -> None:
        kind = self.rng.choice(KINDS)
        self._n += 1
        name = f"wl-{self._tag}-{self._n:07d}"
        body: dict[str, object] = {"fq_name": [*self.pfq, name], "parent_type": "project"}
        if kind == "virtual-network":
            self._subnet = (self._subnet + 1) % 65000
            third, second = self._subnet % 256, 16 + (self._subnet // 256) % 200
            body["network_ipam_refs"] = [{"to": [*self.pfq, "wl-ipam"], "attr": {
                "ipam_subnets": [{"subnet": {"ip_prefix": f"10.{second}.{third}.0",
                                             "ip_prefix_len": 24}}]}}]
        elif kind == "virtual-machine-interface":
            body["virtual_network_refs"] = [{"to": [*self.pfq, "wl-base"]}]
        uuid = await self.rest.create(kind, body)
        self.live.append(Live(kind, uuid, name))
        self.stats.done["create"] += 1

    async def _update(self) -> None:
        obj = self.rng.choice(self.live)
        body = {"display_name": f"{obj.name} v{self.rng.randrange(1_000_000)}",
                "id_perms": {"description": f"workload update at {time.time():.3f}"}}
        await self.rest.update(obj.res_type, obj.uuid, body)
        self.stats.done["update"] += 1

    async def _delete(self) -> None:
        obj = self.live.pop(self.rng.randrange(len(self.live)))
        try:
            await self.rest.delete(obj.res_type, obj.uuid)
        except RestError as exc:
            if exc.status != 404:  # gone already is fine; anything else keeps it for later
                self.live.append(obj)
                raise
        self.stats.done["delete"] += 1

    async def step(self) -> None:
        op = self._choose()
        try:
            await {"create": self._create, "update": self._update, "delete": self._delete}[op]()
        except (RestError, httpx.HTTPError) as exc:
            self.stats.errors[op] += 1
            log.warning("%s failed: %s", op, exc)

    async def run(self, stop: asyncio.Event, duration_s: float | None = None,
                  report_every_s: float = 10.0) -> WorkloadStats:
        await self.setup()
        self.stats = WorkloadStats()
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        last_report = time.monotonic()
        end = None if duration_s is None else time.monotonic() + duration_s
        while not stop.is_set() and (end is None or time.monotonic() < end):
            await self.step()
            next_at += interval
            now = time.monotonic()
            if next_at < now - 1.0:  # fell behind (slow server): do not burst to catch up
                next_at = now
            if report_every_s and now - last_report >= report_every_s:
                print(self.stats.line(), flush=True)
                last_report = now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, next_at - now))
        return self.stats

    async def close(self) -> None:
        await self.rest.close()


async def _main(args: argparse.Namespace) -> int:
    wl = Workload(args.api, args.rate, args.project, args.pool, args.seed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        stats = await wl.run(stop, args.duration, args.report_every)
    finally:
        await wl.close()
    print(stats.line(), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m demo.controller.workload", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--api", required=True, help="api-server URL, e.g. http://127.20.0.101:8082")
    ap.add_argument("--rate", type=float, default=5.0, help="operations per second")
    ap.add_argument("--duration", type=float, default=None, help="seconds (default: forever)")
    ap.add_argument("--project", default="workload")
    ap.add_argument("--pool", type=int, default=200, help="live objects to hover around")
    ap.add_argument("--seed", type=int, default=None, help="random seed (reproducible runs)")
    ap.add_argument("--report-every", type=float, default=10.0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return asyncio.run(_main(args))
    except (RestError, httpx.HTTPError, OSError) as exc:
        print(f"workload: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
