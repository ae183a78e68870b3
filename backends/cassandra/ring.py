"""The live ring as a client sees it: nodes (up or down), their tokens, and for each keyspace
its replication and the replicas of every token range.

Read through the driver's metadata (system.local / system.peers, the schema and the token
map the driver keeps current through the control connection), so no JMX is needed. A node
the driver has not yet decided about counts as down: a guard must not count on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# Keyspaces kept on every node by Cassandra itself (LocalStrategy or virtual): never replicated.
_LOCAL_KEYSPACES = frozenset({"system", "system_schema", "system_views", "system_virtual_schema"})


@dataclass(frozen=True)
class RingNode:
    address: str
    up: bool
    datacenter: str
    tokens: int


@dataclass(frozen=True)
class TokenRange:
    """The range (start, end] and the nodes that hold its replicas, in placement order."""

    start: str
    end: str
    replicas: tuple[str, ...]


@dataclass(frozen=True)
class KeyspaceReplicas:
    name: str
    strategy: str
    factor: int              # the replication factor (the smallest of the datacenters')
    ranges: tuple[TokenRange, ...]
    # NetworkTopologyStrategy: each datacenter's own factor (a quorum is counted per
    # datacenter, as LOCAL_QUORUM does); empty for SimpleStrategy
    dc_factors: tuple[tuple[str, int], ...] = ()

    @property
    def quorum(self) -> int:
        return self.factor // 2 + 1


@dataclass(frozen=True)
class RingView:
    cluster_name: str
    nodes: tuple[RingNode, ...]
    keyspaces: tuple[KeyspaceReplicas, ...]
    partitioner: str = ""    # the partitioner's class name, e.g. ...dht.Murmur3Partitioner

    @property
    def down(self) -> tuple[str, ...]:
        return tuple(n.address for n in self.nodes if not n.up)

    def keyspace(self, name: str) -> KeyspaceReplicas | None:
        return next((k for k in self.keyspaces if k.name == name), None)


def replication_factor(options: dict[str, str]) -> int:
    """The factor of a keyspace's replication map (`system_schema.keyspaces.replication`):
    SimpleStrategy's `replication_factor`, else the smallest per-datacenter factor.
    Transient replicas (`3/1`) count by their full replicas."""
    if "replication_factor" in options:
        return _full(options["replication_factor"])
    factors = [_full(v) for k, v in options.items() if k != "class"]
    return min(factors) if factors else 1


def datacenter_factors(options: dict[str, str]) -> tuple[tuple[str, int], ...]:
    """Each datacenter's factor of a NetworkTopologyStrategy map (empty for SimpleStrategy)."""
    if "replication_factor" in options or not options.get("class", "").endswith(
            "NetworkTopologyStrategy"):
        return ()
    return tuple(sorted((k, _full(v)) for k, v in options.items() if k != "class"))


def _full(value: str) -> int:
    total, _, transient = str(value).partition("/")
    return int(total) - (int(transient) if transient else 0)


def read_ring(cluster: Any, session: Any, keyspaces: Iterable[str] | None = None, *,
              include_system: bool = False) -> RingView:
    """The ring and the replicas of `keyspaces` (default: every replicated keyspace but the
    `system*` ones, unless `include_system`: system_auth, system_distributed, system_traces).
    `cluster` / `session`: a connected driver Cluster and its Session."""
    # The schema rows first, the driver's metadata after: a keyspace created in between (a
    # writer's first start) is then either in both or in neither, never listed without the
    # token map that places its replicas.
    rows = session.execute("SELECT keyspace_name, replication FROM system_schema.keyspaces")
    replication = {str(r[0]): dict(r[1]) for r in rows}
    cluster.refresh_schema_metadata()
    metadata = cluster.metadata
    hosts = list(metadata.all_hosts())
    token_map = metadata.token_map
    tokens_of: dict[str, int] = {}
    if token_map is not None:
        for host in token_map.token_to_host_owner.values():
            tokens_of[str(host.address)] = tokens_of.get(str(host.address), 0) + 1
    nodes = tuple(sorted(
        (RingNode(str(h.address), h.is_up is True, str(h.datacenter or ""),
                  tokens_of.get(str(h.address), 0)) for h in hosts),
        key=lambda n: _address_key(n.address)))
    if keyspaces is None:
        names = sorted(k for k in replication if include_system or not k.startswith("system"))
    else:
        names = list(keyspaces)
        missing = [k for k in names if k not in replication]
        if missing:
            raise KeyError(f"keyspace(s) not in the ring's schema: {', '.join(missing)}")
    result = []
    for name in names:
        options = {str(k): str(v) for k, v in replication[name].items()}
        strategy = options.get("class", "").rsplit(".", 1)[-1]
        if name in _LOCAL_KEYSPACES or strategy in ("LocalStrategy", "EverywhereStrategy"):
            continue
        placed = name in metadata.keyspaces
        result.append(KeyspaceReplicas(name, strategy, replication_factor(options),
                                       _ranges(token_map, name) if placed else (),
                                       datacenter_factors(options)))
    return RingView(str(metadata.cluster_name or ""), nodes, tuple(result),
                    str(metadata.partitioner or ""))


# The token space of the partitioners with integer tokens: a range's share is its length
# (modulo the space: the last range wraps around) over the whole.
_TOKEN_SPACE = {"Murmur3Partitioner": 2 ** 64, "RandomPartitioner": 2 ** 127}


def ownership(keyspace: KeyspaceReplicas, node: str, partitioner: str) -> float | None:
    """`node`'s effective ownership of `keyspace` in percent, as `nodetool status <keyspace>`
    computes it (the share of the token space whose ranges it holds a replica of), from the
    ranges' replicas; None when the partitioner's tokens are not integers or no range is
    known."""
    space = _TOKEN_SPACE.get(partitioner.rsplit(".", 1)[-1])
    if space is None or not keyspace.ranges:
        return None
    held = 0
    for token_range in keyspace.ranges:
        if node in token_range.replicas:
            length = (int(token_range.end) - int(token_range.start)) % space
            held += length or space  # one token: its range is the whole ring
    return 100.0 * held / space


def _ranges(token_map: Any, keyspace: str) -> tuple[TokenRange, ...]:
    if token_map is None or not token_map.ring:
        return ()
    ring = list(token_map.ring)
    ranges = []
    for i, token in enumerate(ring):
        replicas = token_map.get_replicas(keyspace, token)
        ranges.append(TokenRange(str(ring[i - 1].value), str(token.value),
                                 tuple(str(h.address) for h in replicas)))
    return tuple(ranges)


def _address_key(address: str) -> tuple[int, ...]:
    parts = address.split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else (0,)
