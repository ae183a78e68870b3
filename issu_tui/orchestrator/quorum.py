"""The quorum guard: before a step stops database nodes (or the controllers that carry them),
check on the live ring that every keyspace keeps a quorum of live replicas in every token
range, and on the ZooKeeper ensemble that a majority of its members keeps serving.

Computed from what the ring says now (backends.cassandra.ring, backends.zookeeper.ensemble),
not from a table: a node already down counts, a replication factor changed by an earlier
step counts. `min_replicas` is the operator's stricter threshold (never below quorum).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from backends.hostport import HostSet

if TYPE_CHECKING:
    from backends.cassandra.connection import CassandraSide
    from backends.cassandra.ring import KeyspaceReplicas, RingView
    from backends.rabbit_cluster import RabbitClusterView
    from backends.zookeeper.ensemble import EnsembleView


@dataclass(frozen=True)
class Refusal:
    what: str           # "keyspace config_db_uuid" / "ZooKeeper ensemble"
    step: str
    stopping: tuple[str, ...]
    detail: str

    def __str__(self) -> str:
        return f"step {self.step!r} refused: {self.what}: {self.detail}"


@dataclass(frozen=True)
class GuardResult:
    step: str
    stopping: tuple[str, ...]
    refusals: tuple[Refusal, ...]
    checked: tuple[str, ...]     # what was looked at, for the operator

    @property
    def ok(self) -> bool:
        return not self.refusals

    def as_dict(self) -> dict[str, object]:
        return {"step": self.step, "stopping": list(self.stopping), "ok": self.ok,
                "refusals": [str(r) for r in self.refusals], "checked": list(self.checked)}


def _needed(factor: int, min_replicas: int | None) -> int:
    quorum = factor // 2 + 1
    return max(quorum, min(min_replicas, factor)) if min_replicas else quorum


def guard_ring(ring: RingView, step: str, stopping: Iterable[str],
               min_replicas: int | None = None) -> GuardResult:
    """Refuse `step` if stopping `stopping` (addresses or host names) would leave any
    keyspace's token range with fewer live replicas than its quorum (or `min_replicas`); name
    the keyspace, the range's replicas and what is down already. A NetworkTopologyStrategy
    keyspace keeps a quorum in each of its datacenters (LOCAL_QUORUM), counted apart."""
    stops = tuple(dict.fromkeys(stopping))
    stopped = HostSet(stops)
    refusals: list[Refusal] = []
    down = set(ring.down)
    dc_of = {n.address: n.datacenter for n in ring.nodes}
    checked = []
    for ks in ring.keyspaces:
        if not ks.ranges:
            # No token map (the driver could not read the ring): nothing shows the step safe.
            checked.append(f"{ks.name}: RF {ks.factor}, token ranges unknown")
            refusals.append(Refusal(
                f"keyspace {ks.name}", step, stops,
                "its token ranges could not be read from the ring, so the replicas the step "
                "would leave are unknown; check `nodetool status` and try again"))
            continue
        for dc, factor in ks.dc_factors or (("", ks.factor),):
            if factor <= 0:
                continue
            refusal = _guard_group(ks, dc, factor, dc_of, down, stopped, step, stops,
                                   min_replicas)
            where = f" in datacenter {dc}" if dc else ""
            checked.append(f"{ks.name}{where}: RF {factor}, needs "
                           f"{_needed(factor, min_replicas)} live replicas per range")
            if refusal is not None:
                refusals.append(refusal)
    return GuardResult(step, stops, tuple(refusals), tuple(checked))


def _guard_group(ks: KeyspaceReplicas, dc: str, factor: int, dc_of: dict[str, str],
                 down: set[str], stopped: HostSet, step: str, stops: tuple[str, ...],
                 min_replicas: int | None) -> Refusal | None:
    """The worst range of `ks`'s replicas in datacenter `dc` ("": all of them)."""
    needed = _needed(factor, min_replicas)
    worst: tuple[int, int, tuple[str, ...]] | None = None  # live after, live now, replicas
    for rng in ks.ranges:
        replicas = tuple(r for r in rng.replicas if not dc or dc_of.get(r) == dc)
        # RF above the node count: the ring places fewer replicas than the factor says.
        live_now = sum(1 for r in replicas if r not in down)
        live_after = sum(1 for r in replicas if r not in down and r not in stopped)
        if worst is None or live_after < worst[0]:
            worst = (live_after, live_now, replicas)
    if worst is None or worst[0] >= needed:
        return None
    live_after, live_now, replicas = worst
    marks = ", ".join(
        r + (" (down)" if r in down else " (stopped by the step)" if r in stopped else "")
        for r in replicas) or "no node"
    already = (f"; already only {live_now} live before the step"
               if live_now < needed else "")
    threshold = ("quorum" if needed == factor // 2 + 1 else f"the threshold of {needed}")
    where = f"in datacenter {dc}, " if dc else ""
    return Refusal(
        f"keyspace {ks.name}", step, stops,
        f"{where}replication factor {factor} needs {needed} live replicas ({threshold}); a "
        f"range on {marks} would keep {live_after}{already}")


def guard_leave(ring: RingView, step: str, leaving: Iterable[str]) -> GuardResult:
    """Guard a node leaving the ring for good (decommission). It streams its ranges to the
    others before it goes, so no range is short meanwhile; what must hold afterwards is that
    the live nodes that remain can hold every replica of every keyspace (Cassandra refuses a
    decommission otherwise: give `ring` every replicated keyspace, system ones included)."""
    leaves = tuple(dict.fromkeys(leaving))
    leaving_hosts = HostSet(leaves)
    remaining = [n.address for n in ring.nodes if n.up and n.address not in leaving_hosts]
    refusals = []
    checked = []
    for ks in ring.keyspaces:
        checked.append(f"{ks.name}: RF {ks.factor}, needs {ks.factor} live nodes after the "
                       "step")
        if len(remaining) < ks.factor:
            refusals.append(Refusal(
                f"keyspace {ks.name}", step, leaves,
                f"replication factor {ks.factor} needs {ks.factor} live nodes to hold its "
                f"replicas; after {', '.join(leaves)} leave(s) the ring keeps "
                f"{len(remaining)} ({', '.join(remaining) or 'none'}; down: "
                f"{', '.join(ring.down) or 'none'}): lower its factor first"))
    return GuardResult(step, leaves, tuple(refusals), tuple(checked))


def guard_ensemble(ensemble: EnsembleView, step: str, stopping: Iterable[str],
                   name: str = "", *, only_if_serving: bool = False) -> GuardResult:
    """Refuse `step` if stopping `stopping` would leave the ZooKeeper ensemble without a
    majority of its voting members serving. `name` tells two ensembles apart (old, new);
    `only_if_serving`: refuse only a step that takes an ensemble at quorum below it (new's
    on shared hardware grows member by member as the nodes are converted: below quorum
    until enough are, which no step can make worse)."""
    stops = tuple(dict.fromkeys(stopping))
    stopped = HostSet(stops)
    members = ensemble.voters
    touched = [m for m in members if m.host in stopped]
    serving_after = [m.host for m in members if m.serving and m.host not in stopped]
    needed = len(members) // 2 + 1
    label = f" ({name})" if name else ""
    checked = (f"ZooKeeper{label}: {len(members)} voting members, needs {needed} serving",)
    serving_now = sum(m.serving for m in members)
    if not touched or len(serving_after) >= needed or (only_if_serving
                                                       and serving_now < needed):
        return GuardResult(step, stops, (), checked)
    marks = ", ".join(
        m.host + (" (stopped by the step)" if m.host in stopped
                  else f" ({m.mode})" if not m.serving else "")
        for m in members)
    return GuardResult(step, stops, (Refusal(
        f"ZooKeeper ensemble{label}", step, stops,
        f"{len(members)} voting members need {needed} serving; of {marks} "
        f"{len(serving_after)} would serve"),), checked)


def guard_rabbit(cluster: RabbitClusterView, step: str, stopping: Iterable[str]
                 ) -> GuardResult:
    """Refuse `step` if stopping the brokers on `stopping` (addresses or host names) would
    leave fewer than a majority of the cluster's members running."""
    stops = tuple(dict.fromkeys(stopping))
    stopped = HostSet(stops)
    members = cluster.members
    touched = [m for m in members if cluster.host(m) in stopped]
    running_after = [n for n in cluster.running if cluster.host(n) not in stopped]
    needed = len(members) // 2 + 1
    checked = (f"RabbitMQ: {len(members)} members, needs {needed} running",)
    if not touched or len(running_after) >= needed:
        return GuardResult(step, stops, (), checked)
    marks = ", ".join(
        m + (" (stopped by the step)" if cluster.host(m) in stopped
             else " (not running)" if m not in cluster.running else "")
        for m in members)
    return GuardResult(step, stops, (Refusal(
        "RabbitMQ cluster", step, stops,
        f"{len(members)} members need {needed} running; of {marks} {len(running_after)} "
        "would run"),), checked)


def combine(*results: GuardResult) -> GuardResult:
    first = results[0]
    return GuardResult(first.step, first.stopping,
                       tuple(r for res in results for r in res.refusals),
                       tuple(c for res in results for c in res.checked))


def unknown_nodes(step: str, stopping: Iterable[str], ring: RingView | None,
                  ensemble: EnsembleView | None) -> GuardResult:
    """Refuse a step naming a host that is neither a ring node nor an ensemble member: the
    step names the wrong hosts, and guarding it would prove nothing."""
    stops = tuple(dict.fromkeys(stopping))
    known = {n.address for n in ring.nodes} if ring else set()
    known |= {m.host for m in ensemble.members} if ensemble else set()
    known_hosts = HostSet(known)
    unknown = [a for a in stops if a not in known_hosts]
    if not unknown:
        return GuardResult(step, stops, (), ())
    return GuardResult(step, stops, (Refusal(
        "the step's hosts", step, stops,
        f"{', '.join(unknown)} neither a Cassandra node nor a ZooKeeper member (known: "
        f"{', '.join(sorted(known)) or 'none'})"),), ())


def live_guard(side: CassandraSide | None, zk_hosts: Iterable[str], step: str,
               stopping: Iterable[str], *, min_replicas: int | None = None,
               keyspaces: Iterable[str] | None = None) -> GuardResult:
    """Read the live ring (through `side`'s contact points) and the ensemble (`zk_hosts`),
    then guard the step; raises CassandraUnavailable when no contact point answers."""
    from backends.cassandra.connection import connect
    from backends.cassandra.ring import read_ring
    from backends.zookeeper.ensemble import read_ensemble

    stops = tuple(stopping)
    zk = list(zk_hosts)
    if side is None and not zk:
        raise ValueError("nothing to guard: give a Cassandra or ZooKeeper to read")
    ring = ensemble = None
    if side is not None:
        with connect(side, request_timeout=15) as conn:
            ring = read_ring(conn.cluster, conn.session, keyspaces)
    if zk:
        ensemble = read_ensemble(zk)
    results = [unknown_nodes(step, stops, ring, ensemble)]
    if ring is not None:
        results.append(guard_ring(ring, step, stops, min_replicas))
    if ensemble is not None:
        results.append(guard_ensemble(ensemble, step, stops))
    return combine(*results)
