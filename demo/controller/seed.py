"""Seed a cluster through its api-server with a realistic tenant population.

`python -m demo.controller.seed --api http://127.20.0.101:8082 --projects 20 --vns 10 --vmis 5`
Per project: one network-ipam, one network-policy, two security-groups, `--vns` virtual-networks
(each with its own /24 on the ipam and the policy attached), and per VN `--vmis` ports, each with
an instance-ip. Idempotent: objects that already exist (by fq_name) are kept.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from .rest import RestError, VncRest

DOMAIN = "default-domain"


@dataclass
class SeedPlan:
    projects: int = 20
    vns_per_project: int = 10
    vmis_per_vn: int = 5
    prefix: str = "tenant"
    concurrency: int = 8

    def total(self) -> int:
        per_vn = 1 + 2 * self.vmis_per_vn
        return self.projects * (1 + 1 + 1 + 2 + self.vns_per_project * per_vn)


@dataclass
class SeedResult:
    created: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.created.values())


def _policy_rules() -> dict[str, object]:
    rule = {
        "direction": "<>", "protocol": "any", "action_list": {"simple_action": "pass"},
        "src_addresses": [{"virtual_network": "any"}],
        "dst_addresses": [{"virtual_network": "any"}],
        "src_ports": [{"start_port": -1, "end_port": -1}],
        "dst_ports": [{"start_port": -1, "end_port": -1}],
    }
    return {"policy_rule": [rule]}


async def _seed_project(rest: VncRest, plan: SeedPlan, p: int, result: SeedResult,
                        sem: asyncio.Semaphore) -> None:
    async def make(res_type: str, obj: dict[str, object]) -> str:
        async with sem:
            uuid = await rest.ensure(res_type, obj)
        result.created[res_type] += 1
        return uuid

    pname = f"{plan.prefix}-{p:03d}"
    pfq = [DOMAIN, pname]
    await make("project", {"fq_name": pfq, "parent_type": "domain"})
    ipam_fq = [*pfq, "ipam"]
    policy_fq = [*pfq, "allow-all"]
    await asyncio.gather(
        make("network-ipam", {"fq_name": ipam_fq, "parent_type": "project"}),
        make("network-policy", {"fq_name": policy_fq, "parent_type": "project",
                                "network_policy_entries": _policy_rules()}),
        *(make("security-group", {"fq_name": [*pfq, f"sg-{i}"], "parent_type": "project"})
          for i in range(2)))

    async def vn(v: int) -> None:
        vn_fq = [*pfq, f"vn-{v:03d}"]
        subnet = {"subnet": {"ip_prefix": f"10.{p % 250}.{v % 250}.0", "ip_prefix_len": 24}}
        await make("virtual-network", {
            "fq_name": vn_fq, "parent_type": "project",
            "network_ipam_refs": [{"to": ipam_fq, "attr": {"ipam_subnets": [subnet]}}],
            "network_policy_refs": [{"to": policy_fq,
                                     "attr": {"sequence": {"major": 0, "minor": 0}}}]})
        for i in range(plan.vmis_per_vn):
            vmi_fq = [*pfq, f"port-{v:03d}-{i:02d}"]
            await make("virtual-machine-interface", {
                "fq_name": vmi_fq, "parent_type": "project",
                "virtual_network_refs": [{"to": vn_fq}],
                "security_group_refs": [{"to": [*pfq, f"sg-{i % 2}"]}]})
            await make("instance-ip", {
                "fq_name": [f"{pname}-{v:03d}-{i:02d}"],
                "virtual_network_refs": [{"to": vn_fq}],
                "virtual_machine_interface_refs": [{"to": vmi_fq}]})

    await asyncio.gather(*(vn(v) for v in range(plan.vns_per_project)))


async def seed(api_url: str, plan: SeedPlan) -> SeedResult:
    rest = VncRest(api_url)
    result = SeedResult()
    start = time.monotonic()
    sem = asyncio.Semaphore(plan.concurrency)
    try:
        await asyncio.gather(*(_seed_project(rest, plan, p, result, sem)
                               for p in range(plan.projects)))
    finally:
        await rest.close()
    result.seconds = time.monotonic() - start
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m demo.controller.seed", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--api", required=True, help="api-server URL, e.g. http://127.20.0.101:8082")
    ap.add_argument("--projects", type=int, default=20)
    ap.add_argument("--vns", type=int, default=10, help="virtual-networks per project")
    ap.add_argument("--vmis", type=int, default=5, help="ports (VMI + instance-ip) per VN")
    ap.add_argument("--prefix", default="tenant", help="project name prefix")
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args(argv)
    plan = SeedPlan(args.projects, args.vns, args.vmis, args.prefix, args.concurrency)
    try:
        result = asyncio.run(seed(args.api, plan))
    except (RestError, httpx.HTTPError, OSError) as exc:
        print(f"seed: {exc}", file=sys.stderr)
        return 1
    detail = ", ".join(f"{k} {v}" for k, v in sorted(result.created.items()))
    print(f"seeded {result.total} objects in {result.seconds:.1f} s "
          f"({result.total / max(result.seconds, 1e-6):.0f}/s): {detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
