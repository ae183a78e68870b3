"""Ring operations of the approaches, each checked before the next: wait for a joining node,
change a keyspace's replication (a repair at the current factor, ALTER KEYSPACE, a repair at
the new one: each a full repair of the primary ranges on every node),
decommission, removenode. A check is `nodetool status`: exactly the expected nodes, every
one UN, and each keyspace's effective ownership adding up to its replicas.

The quorum guard (issu_tui.orchestrator.quorum) runs before a step that stops a node; these
functions only do and check the step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from backends.cassandra.nodetool import (
    NodeStatus,
    Nodetool,
    NodetoolError,
    NodetoolOutputError,
)


class RingOpError(RuntimeError):
    """A ring step did not reach its expected state; the message says which and shows it."""


def _describe(nodes: Iterable[NodeStatus]) -> str:
    return ", ".join(f"{n.state} {n.address}" + (f" owns {n.owns:.1f}%" if n.owns else "")
                     for n in nodes) or "no nodes"


def check_ring(nodetool: Nodetool, via: str, expected: Iterable[str],
               keyspace: str | None = None, factor: int | None = None) -> list[str]:
    """What is wrong with the ring as `via` sees it (empty: all good): a node missing or
    extra, a node not UN, ownership of `keyspace` not adding up to `factor` replicas."""
    want = set(expected)
    nodes = nodetool.status(via, keyspace)
    seen = {n.address for n in nodes}
    problems = []
    if seen - want:
        problems.append(f"unexpected node(s) {', '.join(sorted(seen - want))}")
    if want - seen:
        problems.append(f"missing node(s) {', '.join(sorted(want - seen))}")
    problems += [f"{n.address} is {n.state}" for n in nodes if not n.normal]
    if keyspace and factor and not problems:
        total = sum(n.owns or 0.0 for n in nodes)
        replicas = min(factor, len(nodes))
        if abs(total - 100.0 * replicas) > 1.0:
            problems.append(f"{keyspace}: ownership adds up to {total:.1f}%, expected "
                            f"{100 * replicas}% ({replicas} replicas)")
    if problems:
        problems.append(f"status: {_describe(nodes)}")
    return problems


def wait_ring(nodetool: Nodetool, via: str | Sequence[str], expected: Iterable[str],
              what: str, timeout_s: float = 600.0, keyspace: str | None = None,
              factor: int | None = None, poll_s: float = 3.0,
              sleep: Callable[[float], None] = time.sleep) -> None:
    """Poll `nodetool status` until check_ring finds nothing wrong; RingOpError naming the
    step `what` and the last status when the deadline passes. `via` a list of nodes: each
    of them must see the ring so (gossip reaches the nodes one after the other: a node
    another still sees joining makes a schema change coordinated there fail)."""
    views = [via] if isinstance(via, str) else list(via)
    wanted = list(expected)
    deadline = time.monotonic() + timeout_s
    problems: list[str] = []
    while True:
        problems = []
        for view in views:
            try:
                seen = check_ring(nodetool, view, wanted, keyspace, factor)
            except NodetoolOutputError as exc:
                raise RingOpError(f"{what}: {exc}") from exc
            except NodetoolError as exc:
                seen = [str(exc)]
            if seen:
                problems = ([f"as {view} sees it"] if len(views) > 1 else []) + seen
                break
        if not problems:
            return
        if time.monotonic() > deadline:
            raise RingOpError(f"{what}: ring not as expected after {timeout_s:.0f} s: "
                              f"{'; '.join(problems)}")
        sleep(poll_s)


def replication_for(current: Mapping[str, str], factor: int,
                    dc_nodes: Mapping[str, int]) -> dict[str, str]:
    """The keyspace's replication map (`current`, as system_schema.keyspaces holds it) with
    `factor` replicas, its strategy kept: SimpleStrategy's factor; NetworkTopologyStrategy's
    datacenters that hold some of the step's nodes (`dc_nodes`: how many in each) get
    `factor`, never more than their nodes, the others keep theirs."""
    strategy = str(current.get("class", "SimpleStrategy"))
    if not strategy.endswith("NetworkTopologyStrategy"):
        return {"class": strategy, "replication_factor": str(int(factor))}
    result = {"class": strategy}
    for dc, value in current.items():
        if dc == "class":
            continue
        result[dc] = (str(min(int(factor), dc_nodes[dc])) if dc_nodes.get(dc)
                      else str(value))
    return result


def replicas_of(replication: Mapping[str, str], nodes: int) -> int:
    """How many replicas of each range a replication map places on a ring of `nodes`."""
    if "replication_factor" in replication:
        return min(int(str(replication["replication_factor"]).partition("/")[0]), nodes)
    return min(sum(int(str(v).partition("/")[0]) for k, v in replication.items()
                   if k != "class"), nodes)


def quorum_reads_complete(holders: int, replicas: int) -> bool:
    """Whether a read at (LOCAL_)QUORUM of `replicas` replicas must reach one of the
    `holders` replicas that hold a row (the others empty until a repair fills them)."""
    return holders + replicas // 2 + 1 > replicas


def _datacenter_replicas(replication: Mapping[str, str], nodes: int) -> dict[str, int]:
    """Replicas per datacenter ("" for SimpleStrategy's one count)."""
    if "replication_factor" in replication:
        return {"": replicas_of(replication, nodes)}
    return {dc: min(int(str(v).partition("/")[0]), nodes) for dc, v in replication.items()
            if dc != "class"}


def reads_during_repair(keyspace: str, before: Mapping[str, str], after: Mapping[str, str],
                        nodes: int) -> str:
    """What the operator must know of reads of `keyspace` from its ALTER KEYSPACE to the end
    of the repair at the new factor, every replica at the old factor holding every row (the
    repair before the ALTER): QUORUM reads stay complete when a quorum of the new replicas
    must include one of those; ONE never does."""
    old, new = _datacenter_replicas(before, nodes), _datacenter_replicas(after, nodes)
    degraded = [f"{dc or 'replicas'} {old.get(dc, 0)} -> {count}"
                for dc, count in new.items()
                if count > old.get(dc, 0) and not quorum_reads_complete(old.get(dc, 0), count)]
    change = ", ".join(f"{dc + ' ' if dc else ''}{old.get(dc, 0)} -> {count}"
                       for dc, count in new.items())
    if degraded:
        return (f"keyspace {keyspace} ({change}): reads at QUORUM or below are degraded "
                f"(may miss rows) until the repair at the new factor ends: "
                f"{', '.join(degraded)} leaves a quorum of empty new replicas")
    return (f"keyspace {keyspace} ({change}): reads at (LOCAL_)QUORUM stay complete until "
            "the repair at the new factor ends (every replica at the old factor was "
            "repaired first); reads at ONE / LOCAL_ONE may miss rows until then")


def set_replication(session: Any, nodetool: Nodetool, keyspace: str, factor: int,
                    nodes: Sequence[str], datacenter_of: Mapping[str, str] | None = None,
                    say: Callable[[str], None] = lambda _message: None) -> dict[str, str]:
    """`keyspace` to `factor` replicas, its strategy and datacenters kept (replication_for;
    `datacenter_of`: each node's datacenter). First a repair at the current factor, so that
    every current replica holds every row (a quorum read at the new factor then reaches
    one: `say` tells the operator whether it does, see reads_during_repair), then ALTER
    KEYSPACE, then a repair at the new factor that fills the new replicas; each repair a
    full one of the primary ranges on every node (each range once). Run again (a repair
    timed out), the factor already set, only the second repair runs. Returns the
    replication map set; RingOpError names the keyspace when it is missing or refused."""
    if not keyspace.replace("_", "").isalnum():
        raise RingOpError(f"keyspace name {keyspace!r} is not a plain identifier")
    try:
        row = session.execute("SELECT replication FROM system_schema.keyspaces "
                              "WHERE keyspace_name = %s", (keyspace,)).one()
    except Exception as exc:  # the driver's errors: no shared base class
        raise RingOpError(f"keyspace {keyspace}: its replication could not be read: "
                          f"{exc}") from exc
    if row is None:
        raise RingOpError(f"keyspace {keyspace} is not in the ring's schema")
    current = {str(k): str(v) for k, v in dict(row[0]).items()}
    dc_nodes: dict[str, int] = {}
    unplaced = []
    for node in nodes:
        dc = (datacenter_of or {}).get(node)
        if dc:
            dc_nodes[dc] = dc_nodes.get(dc, 0) + 1
        else:
            unplaced.append(node)
    if unplaced and current.get("class", "").endswith("NetworkTopologyStrategy"):
        # counted in no datacenter, the node would lower the factor asked for
        raise RingOpError(f"keyspace {keyspace}: the datacenter of {', '.join(unplaced)} "
                          "is not known yet; run the step again")
    wanted = replication_for(current, factor, dc_nodes)
    before = _datacenter_replicas(current, len(nodes))
    if before != _datacenter_replicas(wanted, len(nodes)):
        for node in nodes:
            nodetool.repair(node, keyspace)
        options = ", ".join(f"'{_cql(k)}': '{_cql(v)}'" for k, v in wanted.items())
        try:
            session.execute(f'ALTER KEYSPACE "{keyspace}" WITH replication = {{{options}}}')
        except Exception as exc:  # InvalidRequest, Unavailable, NoHostAvailable, timeouts
            raise RingOpError(f"ALTER KEYSPACE {keyspace} to {options}: {exc}") from exc
        say(reads_during_repair(keyspace, current, wanted, len(nodes)))
    for node in nodes:
        nodetool.repair(node, keyspace)
    say(f"keyspace {keyspace}: repaired at its new factor on {', '.join(nodes)}: reads at "
        "any consistency level complete again")
    return wanted


def _cql(text: str) -> str:
    """A CQL string literal's content (a quote doubled)."""
    return text.replace("'", "''")


def decommission(nodetool: Nodetool, node: str, remaining: Sequence[str],
                 timeout_s: float = 900.0) -> None:
    """The node streams its data away and leaves; then the others must be all UN. Run again
    after a timeout, it waits for a node still leaving (UL) and passes one already gone,
    instead of asking Cassandra for a second decommission (which it refuses)."""
    entry = next((n for n in nodetool.status(remaining[0]) if n.address == node), None)
    if entry is not None and entry.state != "UL":
        try:
            nodetool.decommission(node, timeout_s)
        except NodetoolError as exc:
            raise RingOpError(f"decommission {node}: {exc}; if it is still leaving "
                              "(UL in `nodetool status`), run the step again: it waits "
                              "for it") from exc
    wait_ring(nodetool, remaining, remaining, f"decommission {node}", timeout_s)


def remove_dead_node(nodetool: Nodetool, via: str, node: str, remaining: Sequence[str],
                     timeout_s: float = 900.0) -> None:
    """`removenode` of a node that is down for good (its host id from `nodetool status`);
    refused while it is up (decommission it instead). Run again after a timeout, it waits
    for a removal under way (DL) and passes a node already gone."""
    entry = next((n for n in nodetool.status(via) if n.address == node), None)
    if entry is not None and entry.state.startswith("U"):
        raise RingOpError(f"removenode {node}: it is up ({entry.state}); decommission it")
    if entry is not None and entry.state != "DL":
        nodetool.removenode(via, entry.host_id)
    wait_ring(nodetool, remaining, remaining, f"removenode {node}", timeout_s)
