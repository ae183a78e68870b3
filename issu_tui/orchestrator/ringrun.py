"""Run an approach's ring steps (ringplan.py) for real, in order, each once: the quorum guard
on the live ring before a step that stops nodes, the step, then its check (`nodetool status`:
exactly the expected nodes, every one UN). A finished step is marked (journal step markers
`ring.<n>.<action>.<nodes>`), so a re-run continues after the last one done.

What depends on the deployment comes in through `RingHooks`: starting a node's database
(a join), converting a node to v2 and stopping its v1 services (controller profiles).

A node that left the ring (stay: decommissioned, or removed) rejoins as v2 only with its
database directories emptied: Cassandra refuses to start on a decommissioned node's data,
and a removed node's sstables and tokens would come back. The runner checks through the
other nodes that it is in the ring no more (refused otherwise: its data is then left
alone), stops the node, has the hooks empty the directories (the profile's `cassandra_dirs`,
over SSH), journals what was cleared (event and step marker `<step>.cleared`), then
converts it like any other node (the `convert` hook: v2 installed, recorded, started
through its v2 profile in order, version read back): its database bootstraps, streaming
its ranges from the others. A re-run after the clear goes straight to the conversion,
which resumes after its own record (convert.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from backends.cassandra.connection import CassandraSide, CassandraUnavailable, connect
from backends.cassandra.nodetool import NodeStatus, Nodetool, NodetoolError
from backends.cassandra.ring import RingView, ownership, read_ring
from backends.cassandra.ringops import (
    RingOpError,
    decommission,
    remove_dead_node,
    replicas_of,
    set_replication,
    wait_ring,
)
from backends.rabbit_cluster import RabbitClusterView
from backends.zookeeper.ensemble import EnsembleView, read_ensemble, split_host
from issu_tui.orchestrator.quorum import (
    GuardResult,
    combine,
    guard_ensemble,
    guard_leave,
    guard_rabbit,
    guard_ring,
    unknown_nodes,
)
from issu_tui.orchestrator.ringplan import RingStep, host_of, step_marker, takes_down


class RingStepRefused(RuntimeError):
    """The guard refused a step: nothing of it ran. The message names keyspace, nodes, step."""


@dataclass(frozen=True)
class RingHooks:
    start_database: Callable[[str], None]   # a node's database service starts (joins)
    convert: Callable[[str], None]          # stop v1, install v2, start v2, health-checked
    stop_v1: Callable[[str], None]          # stop the v1 services but the database
    # The RabbitMQ cluster as a broker that keeps running sees it, when a step stops the
    # brokers of some of these nodes; None: none of them runs one (nothing to guard).
    rabbit_status: Callable[[tuple[str, ...]], RabbitClusterView | None] = \
        lambda _stopping: None
    # a node that left the ring rejoins: every service stopped (the database last) and
    # checked stopped, its database directories emptied (returns one line per directory);
    # then `convert` installs and starts v2 on it
    stop_node: Callable[[str], None] | None = None
    clear_data: Callable[[str], list[str]] | None = None


def guard_step(step: RingStep, ring: RingView, ensemble: EnsembleView | None = None,
               rabbit: RabbitClusterView | None = None,
               min_replicas: int | None = None,
               new_ensemble: EnsembleView | None = None) -> GuardResult:
    """The runner's guard of one step on what the services say now. A leave must leave room
    for every replica (`ring` with every replicated keyspace, system ones too); a step that
    takes nodes down must keep every keyspace, the ensemble and the broker cluster at
    quorum; one that keeps the database running (stop v1) must find it at quorum, since
    the services it stops fail over to those that use it."""
    down = takes_down(step)
    known = ensemble
    if new_ensemble is not None:  # a host of either ensemble is a known one
        known = EnsembleView((*(ensemble.members if ensemble else ()), *new_ensemble.members))
    results = [unknown_nodes(step.does, step.stops, ring, known)]
    if step.action in ("decommission", "leave"):
        results.append(guard_leave(ring, step.does, step.stops))
    else:
        results.append(guard_ring(ring, step.does, down, min_replicas))
    if ensemble is not None:
        results.append(guard_ensemble(ensemble, step.does, down,
                                      "old" if new_ensemble is not None else ""))
    if new_ensemble is not None:
        results.append(guard_ensemble(new_ensemble, step.does, down, "new",
                                      only_if_serving=True))
    if rabbit is not None:
        results.append(guard_rabbit(rabbit, step.does, down))
    return combine(*results)


@dataclass
class RingRunner:
    side: CassandraSide            # contact points of the ring
    nodetool: Nodetool
    hooks: RingHooks
    # the keyspaces the approach guards and whose replication it changes: old's and new's
    # names; those not in the ring (new's before pre-sync) are left out at each step
    keyspaces: Sequence[str]
    zk_hosts: Sequence[str] = ()
    # new's ensemble when it is another one (shared hardware: the converted nodes' v2
    # ZooKeeper): guarded too once it serves
    new_zk_hosts: Sequence[str] = ()
    min_replicas: int | None = None
    step_done: Callable[[str], bool] = lambda _key: False
    mark_step: Callable[[str], None] = lambda _key: None
    on_event: Callable[[str], None] = lambda _msg: None
    wait_s: float = 900.0
    poll_s: float = 3.0

    def run(self, steps: Sequence[RingStep], first_index: int = 0) -> None:
        members = self._members(steps)
        for index, step in enumerate(steps, first_index):
            key = step_marker(index, step)
            if self.step_done(key):
                members = self._members_after(step, members)
                continue
            if step.action == "leave":
                self._refuse_seeds(step, members)
            if step.stops:
                self.guard(step)
            self.on_event(f"ring step: {step.does}")
            members = self._do(step, members, key)
            self.mark_step(key)

    def _members(self, steps: Sequence[RingStep]) -> list[str]:
        """The ring's nodes as the first node that answers sees them: the ring's contact
        points, then the steps' nodes. A re-run after a kill may find the first one down
        (a convert stops it)."""
        asked = list(dict.fromkeys([*self.side.hosts, *(n for s in steps for n in s.nodes)]))
        failures = []
        for host in asked:
            try:
                return [n.address for n in self.nodetool.status(host)]
            except NodetoolError as exc:
                failures.append(str(exc))
        raise RingOpError("the ring's nodes could not be read: " + "; ".join(failures))

    def guard(self, step: RingStep) -> None:
        leaves = step.action in ("decommission", "leave")
        with self._connect(step.does) as conn:
            # A node leaving for good must leave room for every keyspace's replicas, the
            # system ones too; a node stopping must keep the ISSU keyspaces at quorum.
            ring = self._read_ring(conn, step.does, everything=leaves)
        ensemble = read_ensemble(self.zk_hosts) if self.zk_hosts else None
        other = [h for h in self.new_zk_hosts if split_host(h) not in
                 {split_host(o) for o in self.zk_hosts}]
        new_ensemble = read_ensemble(self.new_zk_hosts) if other else None
        down = takes_down(step)
        rabbit = self.hooks.rabbit_status(down) if down else None
        result = guard_step(step, ring, ensemble, rabbit, self.min_replicas, new_ensemble)
        if not result.ok:
            raise RingStepRefused("; ".join(str(r) for r in result.refusals))

    def _refuse_seeds(self, step: RingStep, members: list[str]) -> None:
        """A node that leaves to rejoin empty must bootstrap, which a seed never does (it
        would start with no data and serve its ranges empty): refused, naming it, on the
        seeds a node that stays uses (the plan avoids old.cassandra.seeds; this catches a
        config that does not list them)."""
        others = [m for m in members if host_of(m) not in {host_of(n) for n in step.nodes}]
        failures = []
        for via in others:
            try:
                seeds = {host_of(s) for s in self.nodetool.seeds(via)}
            except NodetoolError as exc:
                failures.append(str(exc))
                continue
            named = [n for n in step.nodes if host_of(n) in seeds]
            if named:
                raise RingStepRefused(
                    f"{step.does}: {', '.join(named)} is a seed of the ring (nodetool "
                    f"getseeds on {via}): a seed does not bootstrap, so it cannot rejoin "
                    "with its directories emptied; list the ring's seeds in "
                    "old.cassandra.seeds (the plan then picks other nodes), or make it a "
                    "non-seed (cassandra.yaml seeds on every node) first")
            return
        raise RingOpError(f"{step.does}: whether it is a seed could not be read (nodetool "
                          f"getseeds): {'; '.join(failures) or 'no other node in the ring'}")

    @contextmanager
    def _connect(self, what: str) -> Iterator[Any]:
        try:
            with connect(self.side, request_timeout=60) as conn:
                yield conn
        except CassandraUnavailable as exc:
            raise RingOpError(f"{what}: the ring ({', '.join(self.side.hosts)}) did not "
                              f"answer: {exc}") from exc

    def _present(self, session: Any, what: str) -> list[str]:
        """The approach's keyspaces that are in the ring now; RingOpError when none is."""
        rows = session.execute("SELECT keyspace_name FROM system_schema.keyspaces")
        names = {str(r[0]) for r in rows}
        present = [k for k in dict.fromkeys(self.keyspaces) if k in names]
        if not present:
            raise RingOpError(
                f"{what}: none of the keyspaces {', '.join(self.keyspaces) or '(none given)'} "
                "is in the ring: check the clusters' cassandra.prefix and sync.keyspaces")
        return present

    def _read_ring(self, conn: Any, what: str, *, everything: bool = False) -> RingView:
        try:
            if everything:
                return read_ring(conn.cluster, conn.session, include_system=True)
            return read_ring(conn.cluster, conn.session, self._present(conn.session, what))
        except KeyError as exc:  # a keyspace dropped between the two reads
            raise RingOpError(f"{what}: {exc.args[0]}") from exc

    @staticmethod
    def _members_after(step: RingStep, members: list[str]) -> list[str]:
        if step.action in ("decommission", "leave"):
            return [m for m in members if m not in step.nodes]
        if step.action in ("join", "convert"):
            return members + [n for n in step.nodes if n not in members]
        return members

    def _rejoin(self, node: str, members: list[str], key: str) -> None:
        """`node` left the ring: checked out of it, stopped, its directories emptied (once:
        marked), converted to v2 (its database bootstraps)."""
        hooks = self.hooks
        if hooks.stop_node is None or hooks.clear_data is None:
            raise RingOpError(f"{node} left the ring: rejoining needs its database "
                              "directories emptied, which these hooks cannot do")
        if not self.step_done(f"{key}.cleared"):
            others = [m for m in members if m != node]
            if not others:
                raise RingOpError(f"rejoin {node}: no other node to check the ring with")
            status = self._status_via(others, f"rejoin {node}")
            entry = next((n for n in status if n.address == node), None)
            if entry is not None:
                raise RingOpError(
                    f"rejoin {node}: it is still in the ring ({entry.state}); its database "
                    "directories are left alone: decommission it (or removenode it if it is "
                    "down for good) first")
            hooks.stop_node(node)
            cleared = hooks.clear_data(node)
            self.on_event(f"rejoin {node}: database directories emptied: "
                          f"{'; '.join(cleared) or '(none reported)'}")
            self.mark_step(f"{key}.cleared")
        hooks.convert(node)

    def _serves_database(self, node: str, what: str) -> None:
        """A converted node's positive evidence as a database node, before the next step:
        its own `nodetool status` shows it UN, and the ring's token map (read through the
        driver, as the guard reads it: one CQL connection, not one nodetool JVM per
        keyspace) places replicas of each ISSU keyspace in the ring on it, its effective
        ownership as `nodetool status <keyspace>` would print it. RingOpError naming the
        node and what did not answer."""
        with self._connect(what) as conn:
            ring = self._read_ring(conn, what)
        problems = []
        try:
            entry = next((n for n in self.nodetool.status(node) if n.address == node), None)
        except NodetoolError as exc:
            problems.append(f"nodetool status on it did not answer: {exc}")
        else:
            if entry is None:
                problems.append("it is not in its own nodetool status")
            elif not entry.normal:
                problems.append(f"it is {entry.state} in its own nodetool status")
        owns = []
        for keyspace in ring.keyspaces:
            share = ownership(keyspace, node, ring.partitioner)
            held = sum(node in r.replicas for r in keyspace.ranges)
            if not keyspace.ranges:
                problems.append(f"{keyspace.name}: its token ranges are unknown (the "
                                "driver does not place the keyspace yet)")
            elif not held:
                problems.append(f"{keyspace.name}: owns nothing (a replica of none of its "
                                f"{len(keyspace.ranges)} token ranges)")
            else:
                owns.append(f"{keyspace.name} " + (f"{share:.1f}%" if share is not None else
                                                   f"{held} of {len(keyspace.ranges)} ranges"))
        if problems:
            raise RingOpError(f"{what}: {node} runs but does not serve as a database node: "
                              + "; ".join(problems) + "; the steps after it are not run")
        self.on_event(f"{what}: {node} serves: UN, owns {', '.join(owns)}")

    def _leave(self, node: str, remaining: list[str], what: str) -> None:
        """`node` leaves the ring: decommissioned when it is up (it streams its ranges away);
        when the nodes that stay see it down it cannot, so `nodetool removenode <host id>`
        through one of them (the others stream its ranges' replicas among themselves).
        Either way every remaining node must then see the others UN and no trace of it."""
        failures = []
        for via in remaining:
            try:
                status = self.nodetool.status(via)
                break
            except NodetoolError as exc:
                failures.append(str(exc))
        else:
            raise RingOpError(f"{what}: no remaining node answered nodetool status: "
                              f"{'; '.join(failures) or 'none remains'}")
        entry = next((n for n in status if n.address == node), None)
        if entry is None or entry.state.startswith("U"):
            decommission(self.nodetool, node, remaining, self.wait_s)
            return
        self.on_event(f"{what}: {node} is down ({entry.state} as {via} sees it) and cannot "
                      f"stream its ranges away: nodetool removenode {entry.host_id} through "
                      f"{via}; the remaining nodes rebuild its replicas")
        remove_dead_node(self.nodetool, via, node, remaining, self.wait_s)

    def _status_via(self, nodes: Sequence[str], what: str) -> list[NodeStatus]:
        failures = []
        for node in nodes:
            try:
                return self.nodetool.status(node)
            except NodetoolError as exc:
                failures.append(str(exc))
        raise RingOpError(f"{what}: no node answered nodetool status: {'; '.join(failures)}")

    def _do(self, step: RingStep, members: list[str], key: str = "") -> list[str]:
        after = self._members_after(step, members)
        if step.action == "join":
            for node in step.nodes:
                self.hooks.start_database(node)
            wait_ring(self.nodetool, after, after, step.does, self.wait_s,
                      poll_s=self.poll_s)
        elif step.action == "replication":
            assert step.factor is not None
            # Every node must see every other one UN first: Cassandra refuses to change a
            # factor while the coordinator still sees a node joining or leaving.
            wait_ring(self.nodetool, members, members, step.does, self.wait_s,
                      poll_s=self.poll_s)
            replicas = {}
            with self._connect(step.does) as conn:
                ring = self._read_ring(conn, step.does)
                # nodetool's datacenters win: the driver's metadata learns of a node that
                # just joined later than the ring does
                datacenter_of = {n.address: n.datacenter for n in ring.nodes}
                datacenter_of |= {n.address: n.datacenter
                                  for n in self.nodetool.status(members[0]) if n.datacenter}
                for keyspace in ring.keyspaces:
                    wanted = set_replication(conn.session, self.nodetool, keyspace.name,
                                             step.factor, members, datacenter_of,
                                             say=self.on_event)
                    replicas[keyspace.name] = replicas_of(wanted, len(members))
            # every node UN and each keyspace's ownership adding up to its new replicas
            for keyspace_name, count in replicas.items():
                wait_ring(self.nodetool, members[0], members, step.does, self.wait_s,
                          keyspace=keyspace_name, factor=count)
        elif step.action in ("decommission", "leave"):
            for node in step.nodes:
                self._leave(node, [m for m in after if m != node], step.does)
        elif step.action == "convert":
            for node in step.nodes:
                if node not in members or self.step_done(f"{key}.cleared"):
                    self._rejoin(node, members, key)  # it left the ring: rejoins as v2
                else:
                    self.hooks.convert(node)
            wait_ring(self.nodetool, after, after, step.does, self.wait_s,
                      poll_s=self.poll_s)
            for node in step.nodes:
                self._serves_database(node, step.does)
        elif step.action == "stop":
            for node in step.nodes:
                self.hooks.stop_v1(node)
        else:
            raise ValueError(f"unknown ring step action {step.action!r}")
        return after
