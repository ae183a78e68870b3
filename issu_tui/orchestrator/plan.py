"""The plan: the registry's forward phases for the chosen approach (approaches.py), with
what each step touches on this config and the command that runs it (`issu plan`).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from issu_tui.config import IssuConfig
from issu_tui.orchestrator import finalize as fin
from issu_tui.orchestrator import phases
from issu_tui.orchestrator.approaches import APPROACHES
from issu_tui.orchestrator.controllers import fence_planned, planned
from issu_tui.orchestrator.node_cleanup import planned_removal
from issu_tui.orchestrator.ringplan import (
    SHARED_APPROACHES,
    RingPlanError,
    RingStep,
    ring_steps,
)
from issu_tui.orchestrator.settle import settle_planned


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


def _hosts(hosts: list[str]) -> str:
    return ", ".join(hosts)


@dataclass(frozen=True)
class _Facts:
    """What the plan's steps say about this config."""

    config: IssuConfig
    approach: str
    option: str  # "-c issu.toml"

    @property
    def db_new(self) -> str:
        new = self.config.new.cassandra
        return f"Cassandra {_hosts(new.hosts)}" + (
            f" (keyspaces {new.prefix}_*)" if new.prefix else "")

    def control_nodes(self, cluster: str) -> list[str]:
        side = self.config.old if cluster == "old" else self.config.new
        return [n.address for n in side.control_nodes]


def build_plan(config: IssuConfig, approach: str, config_path: str = "issu.toml") -> list[PlanStep]:
    """The steps of the upgrade: the registry's forward phases in order, each with what it
    touches on this config and the command that runs it."""
    if approach not in APPROACHES:
        raise ValueError(f"unknown approach {approach!r}; choose one of {', '.join(APPROACHES)}")
    facts = _Facts(config, approach, f"-c {config_path}")
    steps: list[PlanStep] = []
    for spec in phases.PHASES:
        if spec.line is phases.Line.FORWARD:
            steps += _STEPS_OF[spec.name](spec, facts)
    return steps


def _ring_plan_steps(spec: phases.Phase, f: _Facts, when: str) -> list[PlanStep]:
    """The approach's database and controller steps of phase `when` (ringplan.py)."""
    if f.approach not in SHARED_APPROACHES:
        return []
    old, new = f.config.old.cassandra.hosts, f.config.new.cassandra.hosts
    try:
        steps = ring_steps(f.approach, list(old), list(new), f.config.old.cassandra.seeds)
    except RingPlanError as exc:
        return [PlanStep(spec.name, f"{f.approach}: {exc}",
                         [f"Cassandra {_hosts(list(old) + [h for h in new if h not in old])}"],
                         "fix old/new.cassandra.hosts or choose another --approach")]
    result = []
    for step in steps:
        if step.when != when:
            continue
        touches = [f"Cassandra {_hosts(list(step.nodes))}"]
        if step.action in ("convert", "stop"):
            touches.append("controller services over SSH (controller profiles)")
        if step.factor:
            touches.append(f"ISSU keyspaces: ALTER KEYSPACE replication_factor {step.factor}, "
                           "nodetool repair --full on every node")
        notes = [f"runs: {_ring_action(step, f)}"]
        notes += [f"undo: {step.inverse}" if step.inverse
                  else "no inverse: `issu revert` is no longer possible after this step"]
        notes += [f"risk: {risk}" for risk in step.risks]
        result.append(PlanStep(spec.name, step.does, touches, _ring_command(step, f),
                               notes=notes))
    return result


def _ring_command(step: RingStep, f: _Facts) -> str:
    """What the operator runs: `issu ring run` for the step's phase (it guards each step,
    runs it, checks it and marks it); the phases run the steps of `plan` themselves."""
    command = f"issu ring run {f.option} --approach {f.approach} --when {step.when}"
    if step.when == "plan":
        command += f"  (or: issu phase pre-sync {f.option}, which runs those not done first)"
    return command


def _ring_action(step: RingStep, f: _Facts) -> str:
    """What `issu ring run` does for the step, as the operator would by hand."""
    guard = ""
    if step.stops:
        stops = " ".join(f"--stop {shlex.quote(n)}" for n in step.stops)
        label = shlex.quote(f"{step.action} {' '.join(step.nodes)}")
        guard = f"issu ring guard {f.option} {stops} --step {label}; then "
    nodes = _hosts(list(step.nodes))
    action = {
        "join": "start the database service; nodetool status (all UN)",
        "replication": "ALTER KEYSPACE ...; nodetool repair --full -pr KEYSPACE on each node",
        "leave": f"nodetool decommission on {nodes}",
        "decommission": f"nodetool decommission on {nodes}",
        "convert": "controller profiles: stop v1, install v2, start v2 in order, version read "
                   "back, serving checked (api-server, control-node UVE, nodetool: UN owning "
                   "its share)",
        "stop": "controller profile: stop the v1 services (the database stays)",
    }[step.action]
    return guard + action


def _plan(spec: phases.Phase, f: _Facts) -> list[PlanStep]:
    return _ring_plan_steps(spec, f, "plan")


def _preflight(spec: phases.Phase, f: _Facts) -> list[PlanStep]:
    return [PlanStep(spec.name, spec.title, [
        "read-only: both Cassandra, ZooKeeper, RabbitMQ, api-servers, analytics",
        f"SSH to {len(f.config.computes)} computes (host keys verified)"],
        f"issu preflight {f.option}")]


def _pair(spec: phases.Phase, f: _Facts) -> list[PlanStep]:
    old_api = f.config.old.api_server
    return [PlanStep(spec.name, spec.title, [
        f"old api-server {old_api.url if old_api else '-'}: "
        f"bgp-routers for {_hosts(f.control_nodes('new')) or 'new control nodes'}",
        f"new api-server: bgp-routers for {_hosts(f.control_nodes('old')) or 'old control nodes'}"
        " (arrive with pre-sync; checked after it)"],
        f"issu pair {f.option}")]


def _pre_sync(spec: phases.Phase, f: _Facts) -> list[PlanStep]:
    old, new = f.config.old, f.config.new
    return [PlanStep(spec.name, f"{spec.title} ({old.version} -> {new.version})", [
        *planned(f.config, "prepare-new"),
        f"reads Cassandra {_hosts(old.cassandra.hosts)}", f"writes {f.db_new}"],
        f"issu daemon {f.option}  (or: issu sync pre {f.option})")]


def _run_sync(spec: phases.Phase, f: _Facts) -> list[PlanStep]:
    config = f.config
    return [PlanStep(spec.name, spec.title, [
        f"queue {config.sync.queue_name} on the old RabbitMQ {_hosts(config.old.rabbit.hosts)}",
        f"writes {f.db_new}", f"publishes on the new RabbitMQ {_hosts(config.new.rabbit.hosts)}"],
        f"issu daemon {f.option}")]


def _computes(spec: phases.Phase, f: _Facts) -> list[PlanStep]:
    batch = f.config.batch
    return [PlanStep(
        spec.name, f"{spec.title}: {len(f.config.computes)} computes, batches of {batch.size} "
        f"(parallel {batch.parallel}, canary {batch.canary}, stop after {batch.max_failures} "
        "failures)", [
            f"per compute over SSH: probe, drain, install {f.config.new.version}, point agent "
            f"at {_hosts(f.control_nodes('new')) or 'new control nodes'}, restart, health "
            "gate on the new analytics, undrain"],
        f"issu compute upgrade all {f.option}",
        notes=[f"roll one back: issu compute rollback NAME {f.option}"]),
        *_ring_plan_steps(spec, f, "computes")]


def _finalize(spec: phases.Phase, f: _Facts) -> list[PlanStep]:
    """Two steps: finalize's steps before the point of no return, then from it on."""
    config = f.config
    before = fin.before_commit()
    after = fin.STEPS[len(before):]
    return [
        PlanStep(spec.name, "; ".join(s.does for s in before), [
            fence_planned(config, "old", closed=True), settle_planned(config), f.db_new,
            *planned(config, "stop-old-services"),
            f"ZooKeeper {_hosts(config.new.zookeeper.hosts)} subtrees "
            f"{', '.join(config.sync.zk_subtrees)}",
            *planned(config, "start-new-writers"),
            "neutron plugin / k8s manager / vCenter plugin config files (abort points them "
            "back from their .issu-backup)"],
            f"issu finalize {f.option}"),
        PlanStep(spec.name, "; ".join(s.does for s in after), [
            fence_planned(config, "new", closed=False),
            planned_removal(config) if config.finalize.remove_old_records else
            "old's bgp-routers and node records kept on new: not asked ([finalize] "
            "remove_old_records = false; `issu finalize --remove-old-records` asks for it)",
            "collector config files"],
            f"issu finalize {f.option}", point_of_no_return=True,
            notes=[way_back(config)]),
    ]


def way_back(config: IssuConfig) -> str:
    """Whether the translation path could be replicated backwards after finalize: every
    translator step must declare an inverse (backends.cassandra.registry)."""
    from backends.cassandra.registry import RegistryError, load_registry
    from backends.versions import VersionPathError

    try:
        blockers = load_registry().revert_blockers(
            config.old.version, config.new.version, config.sync.keyspaces)
    except (RegistryError, VersionPathError, ValueError) as exc:
        return f"way back after finalize: cannot tell ({exc})"
    if blockers:
        return ("way back after finalize: closed, no inverse translation for "
                + "; ".join(blockers))
    return "way back after finalize: every translator on the path declares its inverse"


def _done(spec: phases.Phase, f: _Facts) -> list[PlanStep]:
    old = f.config.old
    if f.approach == "separate":
        return [PlanStep(spec.name, "retire the old controllers and their databases",
                         [f"old Cassandra {_hosts(old.cassandra.hosts)}",
                          f"old ZooKeeper {_hosts(old.zookeeper.hosts)}"],
                         "by hand (see runbook)")]
    return _ring_plan_steps(spec, f, "done")


# What the plan says for each forward phase of the registry (a test checks none is missing).
_STEPS_OF: dict[str, Callable[[phases.Phase, _Facts], list[PlanStep]]] = {
    "plan": _plan,
    "preflight": _preflight,
    "pair": _pair,
    "pre-sync": _pre_sync,
    "run-sync": _run_sync,
    "computes": _computes,
    "finalize": _finalize,
    "done": _done,
}
