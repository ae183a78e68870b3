"""The database and controller steps of the approaches on shared hardware, node by node.

- grow (expand then shrink, 3 -> 5 -> 3): the new controllers' database nodes join the old
  ring and every ISSU keyspace goes to replication factor 5 (repair); sync; computes;
  finalize; the old services stop but the database; one old node is converted to v2; the
  other old nodes are decommissioned one at a time (factor back to 3 first).
- stay (5 nodes throughout): the ISSU keyspaces to factor 4 (a node can leave only if the
  others hold every replica); two nodes leave the ring, are converted to v2 and rejoin, one
  after the other; the factor back to 5; sync; computes; finalize; the other three are
  converted one at a time.
- rolling (node by node on 3): the first node is converted; sync; computes; the second;
  finalize (the last old node stops: northbound fails over); the last node is converted.
  While a node is converted the database runs on two nodes: one failure from losing quorum.

Each step names the nodes it stops (the quorum guard checks them on the live ring before
the step runs) and its inverse, or None when there is none. `when` is the phase the step
belongs to: "plan" steps run before pre-sync, "done" steps after finalize.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass, field

SHARED_APPROACHES = ("grow", "stay", "rolling")


@dataclass(frozen=True)
class RingStep:
    when: str                # "plan" (before pre-sync) | "computes" | "done" (after finalize)
    action: str              # join | replication | leave | convert | decommission | stop
    nodes: tuple[str, ...]
    does: str
    stops: tuple[str, ...] = ()      # what the quorum guard checks before the step
    inverse: str | None = None       # how to undo it; None: no way back once done
    factor: int | None = None        # for `replication`: the new factor
    risks: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


# The steps that leave a node's database (and its broker, its ensemble member) running: a
# `stop` stops the v1 controller services only, a leave streams the node's ranges away
# before it goes (the guard then checks that the nodes left hold every replica).
_DATABASE_KEPT = ("stop", "leave", "decommission")


def takes_down(step: RingStep) -> tuple[str, ...]:
    """The nodes whose database, broker and ZooKeeper member `step` stops while it runs."""
    return () if step.action in _DATABASE_KEPT else step.stops


def most_down(steps: list[RingStep]) -> RingStep | None:
    """The first step that takes the most database nodes down at once (None: none does)."""
    widest = max(steps, key=lambda s: len(takes_down(s)), default=None)
    return widest if widest is not None and takes_down(widest) else None


class RingPlanError(ValueError):
    """The hosts do not fit the approach; the message says what it needs."""


# The upgrade phases in which each group of ring steps may run: "plan" steps change the old
# ring before anything is copied, "computes" steps convert nodes while the computes move,
# "done" steps stop and retire old nodes, which only a finalized upgrade allows.
_PHASES_FOR: dict[str, tuple[str | None, ...]] = {
    "plan": (None, "plan", "preflight", "pair"),
    "computes": ("run-sync", "computes"),
    "done": ("done",),
}


def ring_run_refusal(when: str, approach: str, phase: str | None,
                     recorded_approach: str | None) -> str | None:
    """Why the ring steps of `when` must not run now (None: they may), from the journal's
    phase and the approach recorded at plan."""
    if recorded_approach is not None and recorded_approach != approach:
        return (f"the journal records the approach {recorded_approach!r}, not {approach!r}; "
                f"the ring steps of one approach never run in another's upgrade")
    allowed = _PHASES_FOR[when]
    if phase not in allowed:
        names = ", ".join(p or "no upgrade yet" for p in allowed)
        return (f"the ring steps of {when!r} run only in phase {names}; the upgrade is in "
                f"phase {phase or 'none (no upgrade recorded)'}")
    return None


def step_marker(index: int, step: RingStep) -> str:
    """The journal marker of the plan's step `index` once done (ringrun.RingRunner)."""
    return f"ring.{index}.{step.action}.{'+'.join(step.nodes)}"


def pending_steps(steps: list[RingStep], when: str,
                  done: Collection[str]) -> list[tuple[int, RingStep]]:
    """The steps of `when` not marked done yet, with their index in the plan, in order."""
    return [(i, s) for i, s in enumerate(steps)
            if s.when == when and step_marker(i, s) not in done]


def when_in_phase(phase: str | None) -> str | None:
    """The group of ring steps that phase `phase` may run (None: none)."""
    return next((when for when, allowed in _PHASES_FOR.items() if phase in allowed), None)


def finalize_refusal(approach: str, steps: list[RingStep], done: Collection[str]) -> str | None:
    """Why finalize must wait (None: it need not): the ring steps of `computes` (rolling's
    second node) come before finalize, which stops the old services for good."""
    left = pending_steps(steps, "computes", done)
    if not left:
        return None
    return (f"{approach}: the ring steps of computes are not done ("
            + "; ".join(s.does for _, s in left) + "): run them first (n in the console, "
            f"or `issu ring run --approach {approach} --when computes`)")


def way_back_refusal(steps: list[RingStep], when: str, done: Collection[str],
                     way_back_closed: bool) -> str | None:
    """Why the steps of `when` must not run while the way back is open (None: they may):
    a step without an inverse (grow's decommissions of old's nodes) takes away the old
    cluster's database that `issu revert` goes back to."""
    one_way = [s.does for i, s in enumerate(steps) if s.when == when and s.inverse is None
               and step_marker(i, s) not in done]
    if not one_way or way_back_closed:
        return None
    return (f"the ring steps of {when!r} include steps without an inverse ("
            + "; ".join(one_way) + "): they retire the old cluster's database, which "
            "`issu revert` still goes back to; close the way back first with `issu "
            "close-way-back` (it drains the reverse replication; revert is refused after)")


def ring_steps(approach: str, old_nodes: list[str], new_nodes: list[str],
               seeds: Collection[str] = ()) -> list[RingStep]:
    """The steps of `approach` for a ring of `old_nodes` (v1) and `new_nodes` (the v2
    controllers' database nodes joining it; grow only); `seeds`: the ring's seed nodes
    (old.cassandra.seeds), which stay never picks to rejoin."""
    if approach == "grow":
        return _grow(old_nodes, new_nodes)
    if approach == "stay":
        return _stay(old_nodes, seeds)
    if approach == "rolling":
        return _rolling(old_nodes)
    return []


def _grow(old: list[str], new: list[str]) -> list[RingStep]:
    joining = [n for n in new if n not in old]
    if not old or not joining:
        raise RingPlanError(
            "grow needs the old cluster's database nodes (old.cassandra.hosts) and the new "
            f"controllers' nodes joining them (new.cassandra.hosts not in old); got old "
            f"{old}, new {new}")
    grown = len(old) + len(joining)
    final = len(old)
    steps = [RingStep("plan", "join", (node,), f"start the database on {node}; it bootstraps "
                      "into the ring (nodetool status: all UN)", inverse=f"decommission {node}")
             for node in joining]
    steps.append(RingStep(
        "plan", "replication", tuple(old + joining),
        f"ISSU keyspaces to replication factor {grown}: repair at the current factor, ALTER "
        "KEYSPACE, repair at the new one (full, -pr on every node), ownership checked; "
        "reads at ONE may miss rows until the second repair ends",
        inverse=f"replication factor back to {final}", factor=grown))
    keep, *leaving = old
    steps.append(RingStep("done", "stop", tuple(old),
                          "stop the v1 services on the old controllers except the database",
                          stops=tuple(old), inverse="start them again"))
    steps.append(RingStep("done", "convert", (keep,),
                          f"convert {keep} to v2: stop v1, install v2, start v2 services in "
                          "order, version read back, serving checked", stops=(keep,),
                          inverse=f"convert {keep} back to v1"))
    steps.append(RingStep(
        "done", "replication", tuple(n for n in old + joining),
        f"ISSU keyspaces back to replication factor {final} before the old nodes leave",
        inverse=f"replication factor {grown} and repair", factor=final))
    steps += [RingStep("done", "decommission", (node,),
                       f"decommission {node}: it streams its ranges away and leaves",
                       stops=(node,), inverse=None,
                       risks=("the old cluster's database is gone: no revert after this",))
              for node in leaving]
    return steps


def host_of(address: str) -> str:
    """`host` of a `host` or `host:port` entry."""
    return address.rsplit(":", 1)[0] if address.count(":") == 1 else address


def _stay(nodes: list[str], seeds: Collection[str]) -> list[RingStep]:
    if len(nodes) < 5:
        raise RingPlanError(f"stay keeps 5 database nodes; the ring has {len(nodes)} "
                            f"({', '.join(nodes) or 'none'})")
    # The two nodes that leave come back empty and must bootstrap, which a seed never
    # does (it would start with no data and own its ranges): the last two non-seeds.
    seed_hosts = {host_of(s) for s in seeds}
    movable = [n for n in nodes if host_of(n) not in seed_hosts]
    if len(movable) < 2:
        raise RingPlanError(
            "stay needs two nodes that are not seeds to leave and rejoin (a seed does not "
            "bootstrap); seeds (old.cassandra.seeds): "
            + ", ".join(n for n in nodes if n not in movable))
    first = movable[-2:]
    rest = [n for n in nodes if n not in first]
    # Cassandra refuses a decommission that leaves fewer nodes than a keyspace's factor (and
    # so does the runner's guard, guard_leave): at the approach's RF 5 on 5 nodes no node
    # can leave. So the factor goes down first, to the most the nodes that stay hold while
    # one is away (4 on 5 nodes: the fewest replicas dropped, and quorum, 3 of 4, still
    # survives a failure), and back up to 5 (repair) once both are back as v2, so that the
    # conversions after finalize, one at a time, keep 4 of 5 replicas. A ring of more nodes
    # keeps its factor: the others hold every replica while one is away.
    final = 5
    away = min(final, len(nodes) - 1)
    steps = []
    if away < final:
        steps.append(RingStep(
            "plan", "replication", tuple(nodes),
            f"ISSU keyspaces to replication factor {away} (ALTER KEYSPACE) before a node "
            f"leaves: {away} nodes stay to hold every replica, as a decommission needs",
            inverse=f"replication factor {final} and repair", factor=away))
    for node in first:
        steps += [
            RingStep("plan", "leave", (node,), f"decommission {node} (it leaves the v1 ring)",
                     stops=(node,), inverse=f"{node} rejoins as v1"),
            RingStep("plan", "convert", (node,),
                     f"convert {node} to v2 and let it rejoin the ring: checked out of the ring, "
                     "stopped, its database directories emptied (cassandra_dirs), v2 "
                     "installed and started through its v2 profile (its database "
                     "bootstraps), version read back, serving checked",
                     inverse=f"convert {node} back to v1")]
    if away < final:
        steps.append(RingStep(
            "plan", "replication", tuple(nodes),
            f"ISSU keyspaces back to replication factor {final}, full repair on every node, "
            "ownership checked", inverse=f"replication factor {away}", factor=final))
    steps.append(RingStep("done", "stop", tuple(rest),
                          "stop the v1 services on the v1 nodes except the database",
                          stops=tuple(rest), inverse="start them again"))
    steps += [RingStep("done", "convert", (node,),
                       f"convert {node} to v2 (one at a time: the guard refuses more)",
                       stops=(node,), inverse=f"convert {node} back to v1")
              for node in rest]
    return steps


def _rolling(nodes: list[str]) -> list[RingStep]:
    if len(nodes) < 3:
        raise RingPlanError(f"rolling converts 3 nodes one by one; the ring has {len(nodes)}")
    spof = ("while a node is converted the database runs on the other two: one more "
            "failure loses quorum (the single point of failure of this approach)",)
    first, second, *last = nodes
    steps = [RingStep("plan", "convert", (first,), f"convert {first} to v2 (database kept)",
                      stops=(first,), inverse=f"convert {first} back to v1", risks=spof),
             RingStep("computes", "convert", (second,), f"convert {second} to v2",
                      stops=(second,), inverse=f"convert {second} back to v1", risks=spof)]
    for node in last:
        steps.append(RingStep("done", "stop", (node,),
                              f"stop v1 on {node} but its database: northbound fails over "
                              "to the v2 nodes", stops=(node,), inverse=f"start v1 on {node}",
                              risks=spof))
        steps.append(RingStep("done", "convert", (node,), f"convert {node} to v2",
                              stops=(node,), inverse=f"convert {node} back to v1",
                              risks=spof))
    return steps
