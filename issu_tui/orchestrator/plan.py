"""The plan: the steps of an upgrade for the chosen topology, with what each step touches.

Approaches (see docs/runbook.md):
- separate: the new controllers have their own Cassandra and ZooKeeper (nothing shared).
- grow:     one Cassandra/ZooKeeper shared through prefixes; grow 3 -> 5 nodes for the
            duration (both keyspace sets), shrink back to 3 after finalize.
- stay:     shared, grown 3 -> 5 and kept at 5.
- rolling:  shared, stays at 3 nodes; DB nodes are replaced one at a time (quorum kept).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from issu_tui.config import IssuConfig

APPROACHES = ("separate", "grow", "stay", "rolling")

# The most DB nodes an approach takes down at the same time (decommission/replace one by one).
DB_NODES_DOWN = {"separate": 0, "grow": 1, "stay": 0, "rolling": 1}


@dataclass(frozen=True)
class PlanStep:
    phase: str
    title: str
    touches: list[str]
    command: str
    point_of_no_return: bool = False
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def default_approach(config: IssuConfig) -> str:
    shared = set(config.old.cassandra.hosts) & set(config.new.cassandra.hosts)
    return "grow" if shared else "separate"


def _hosts(hosts: list[str]) -> str:
    return ", ".join(hosts)


def build_plan(config: IssuConfig, approach: str, config_path: str = "issu.toml") -> list[PlanStep]:
    if approach not in APPROACHES:
        raise ValueError(f"unknown approach {approach!r}; choose one of {', '.join(APPROACHES)}")
    old, new = config.old, config.new
    c = f"-c {config_path}"
    computes = [x.name for x in config.computes]
    cn_old = [n.address for n in old.control_nodes]
    cn_new = [n.address for n in new.control_nodes]
    db_new = f"Cassandra {_hosts(new.cassandra.hosts)}" + (
        f" (keyspaces {new.cassandra.prefix}_*)" if new.cassandra.prefix else "")
    steps: list[PlanStep] = []
    if approach in ("grow", "stay"):
        steps.append(PlanStep(
            "plan", "grow the shared Cassandra and ZooKeeper from 3 to 5 nodes (one at a time, "
            "`nodetool status` all UN before the next)",
            [f"Cassandra {_hosts(old.cassandra.hosts)}", "ZooKeeper ensemble"],
            "by hand / deployment tool (see runbook)",
            notes=["old and new keyspaces live side by side under their prefixes"]))
    if approach == "rolling":
        steps.append(PlanStep(
            "plan", "stay at 3 DB nodes: disk must hold both keyspace sets; replace nodes one "
            "at a time only", [f"Cassandra {_hosts(old.cassandra.hosts)}"],
            "by hand (see runbook)",
            notes=["preflight refuses a step that would take more nodes down than quorum allows"]))
    steps += [
        PlanStep("preflight", "check version path, reachability with the credentials, "
                 "keyspaces, fences, quorum, disk", [
                     "read-only: both Cassandra, ZooKeeper, RabbitMQ, api-servers, analytics",
                     f"SSH to {len(computes)} computes (host keys verified)"],
                 f"issu preflight {c}"),
        PlanStep("pair", "iBGP between old and new control nodes (bgp-router objects)", [
            f"old api-server {old.api_server.url if old.api_server else '-'}: "
            f"bgp-routers for {_hosts(cn_new) or 'new control nodes'}",
            f"new api-server: bgp-routers for {_hosts(cn_old) or 'old control nodes'} "
            "(arrive with pre-sync; checked after it)"],
                 f"issu pair {c}"),
        PlanStep("pre-sync", "copy every ISSU keyspace old -> new through translation "
                 f"({old.version} -> {new.version})", [
                     f"reads Cassandra {_hosts(old.cassandra.hosts)}", f"writes {db_new}"],
                 f"issu daemon {c}  (or: issu sync pre {c})"),
        PlanStep("run-sync", "replay every config change into new until finalize", [
            f"queue {config.sync.queue_name} on the old RabbitMQ {_hosts(old.rabbit.hosts)}",
            f"writes {db_new}", f"publishes on the new RabbitMQ {_hosts(new.rabbit.hosts)}"],
                 f"issu daemon {c}"),
        PlanStep("computes", f"move {len(computes)} computes in batches of "
                 f"{config.batch.size} (parallel {config.batch.parallel}, canary "
                 f"{config.batch.canary}, stop after {config.batch.max_failures} failures)", [
                     "per compute over SSH: probe, drain, install "
                     f"{new.version}, point agent at {_hosts(cn_new) or 'new control nodes'}, "
                     "restart, health gate on the new analytics, undrain"],
                 f"issu compute upgrade all {c}",
                 notes=[f"roll one back: issu compute rollback NAME {c}"]),
        PlanStep("finalize", "fence old api-server, drain and stop run-sync, post-sync, "
                 "zk-sync, verify (zero differences), unpair", [
                     f"old api-server (fenced), {db_new}",
                     f"ZooKeeper {_hosts(new.zookeeper.hosts)} subtrees "
                     f"{', '.join(config.sync.zk_subtrees)}"],
                 f"issu finalize {c}"),
        PlanStep("finalize", "switch northbound clients to the new api-server, open it for "
                 "writes, re-point analytics clients (SIGHUP)", [
                     "neutron plugin / k8s manager / vCenter plugin config files",
                     "new api-server fence"],
                 f"issu finalize {c}", point_of_no_return=True),
    ]
    if approach == "grow":
        steps.append(PlanStep(
            "done", "shrink the shared Cassandra back to 3 nodes: `nodetool decommission` "
            "one node at a time after dropping the old keyspaces",
            [f"Cassandra {_hosts(old.cassandra.hosts)}"], "by hand (see runbook)"))
    if approach == "separate":
        steps.append(PlanStep("done", "retire the old controllers and their databases",
                              [f"old Cassandra {_hosts(old.cassandra.hosts)}",
                               f"old ZooKeeper {_hosts(old.zookeeper.hosts)}"],
                              "by hand (see runbook)"))
    return steps
