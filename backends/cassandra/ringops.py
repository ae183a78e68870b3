"""Ring operations of the approaches, each checked before the next: wait for a joining node,
change a keyspace's replication (ALTER KEYSPACE, then a full repair of it on every node),
decommission, removenode. A check is `nodetool status`: exactly the expected nodes, every
one UN, and each keyspace's effective ownership adding up to its replicas.

The quorum guard (issu_tui.orchestrator.quorum) runs before a step that stops a node; these
functions only do and check the step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
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


def wait_ring(nodetool: Nodetool, via: str, expected: Iterable[str], what: str,
              timeout_s: float = 600.0, keyspace: str | None = None,
              factor: int | None = None, poll_s: float = 3.0,
              sleep: Callable[[float], None] = time.sleep) -> None:
    """Poll `nodetool status` until check_ring finds nothing wrong; RingOpError naming the
    step `what` and the last status when the deadline passes."""
    wanted = list(expected)
    deadline = time.monotonic() + timeout_s
    problems: list[str] = []
    while True:
        try:
            problems = check_ring(nodetool, via, wanted, keyspace, factor)
        except NodetoolOutputError as exc:
            raise RingOpError(f"{what}: {exc}") from exc
        except NodetoolError as exc:
            problems = [str(exc)]
        if not problems:
            return
        if time.monotonic() > deadline:
            raise RingOpError(f"{what}: ring not as expected after {timeout_s:.0f} s: "
                              f"{'; '.join(problems)}")
        sleep(poll_s)


def set_replication(session: Any, nodetool: Nodetool, keyspace: str, factor: int,
                    nodes: Sequence[str]) -> None:
    """SimpleStrategy with `factor` replicas, then a full repair of the keyspace on every
    node, so the new replicas hold the data before anything reads at the new factor."""
    if not keyspace.replace("_", "").isalnum():
        raise RingOpError(f"keyspace name {keyspace!r} is not a plain identifier")
    session.execute(
        f'ALTER KEYSPACE "{keyspace}" WITH replication = '
        f"{{'class': 'SimpleStrategy', 'replication_factor': {int(factor)}}}")
    for node in nodes:
        nodetool.repair(node, keyspace)


def decommission(nodetool: Nodetool, node: str, remaining: Sequence[str],
                 timeout_s: float = 900.0) -> None:
    """The node streams its data away and leaves; then the others must be all UN."""
    nodetool.decommission(node)
    wait_ring(nodetool, remaining[0], remaining, f"decommission {node}", timeout_s)


def remove_dead_node(nodetool: Nodetool, via: str, node: str, remaining: Sequence[str],
                     timeout_s: float = 900.0) -> None:
    """`removenode` of a node that is down for good (its host id from `nodetool status`);
    refused while it is up (decommission it instead)."""
    entry = next((n for n in nodetool.status(via) if n.address == node), None)
    if entry is None:
        raise RingOpError(f"removenode {node}: not in the ring as {via} sees it")
    if entry.state.startswith("U"):
        raise RingOpError(f"removenode {node}: it is up ({entry.state}); decommission it")
    nodetool.removenode(via, entry.host_id)
    wait_ring(nodetool, via, remaining, f"removenode {node}", timeout_s)
