"""Which Cassandra cluster a session reaches, and the refusal to sync a keyspace onto itself.

Host strings prove nothing (aliases, VIPs, another spelling of an address): each session is
asked who it is. Two sessions reach one cluster when the cluster names are equal and the host
ids (the node answering plus its peers) overlap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from backends.cassandra.connection import CassandraSide, Connection

if TYPE_CHECKING:
    from cassandra.cluster import Session


class SameClusterError(ValueError):
    """Old and new are one Cassandra cluster and a keyspace would be both old's and new's."""


@dataclass(frozen=True)
class ClusterIdentity:
    name: str
    host_ids: frozenset[str]

    def same_as(self, other: ClusterIdentity) -> bool:
        return self.name == other.name and bool(self.host_ids & other.host_ids)


def cluster_identity(session: Session) -> ClusterIdentity:
    """cluster_name and the host ids of the node answering and its peers."""
    local = session.execute("SELECT cluster_name, host_id FROM system.local").one()
    ids = {str(local[1])}
    ids.update(str(row[0]) for row in session.execute("SELECT host_id FROM system.peers")
               if row[0] is not None)
    return ClusterIdentity(str(local[0]), frozenset(ids))


def shared_keyspaces(old: CassandraSide, new: CassandraSide, keyspaces: Iterable[str],
                     registered: Iterable[str] = ()) -> list[str]:
    """New-side names of `keyspaces` that are also old-side names of one of `keyspaces` or
    `registered` (what new would write or read that is old's, were both one cluster)."""
    chosen = list(keyspaces)
    old_names = {old.keyspace(k) for k in [*chosen, *registered]}
    return sorted({new.keyspace(k) for k in chosen} & old_names)


def refuse_same_keyspaces(old: Connection, new: Connection, keyspaces: Iterable[str],
                          registered: Iterable[str] = ()) -> None:
    """Raise SameClusterError when old and new reach one cluster and a keyspace name is
    both old's and new's. Reads only system.local and system.peers."""
    shared = shared_keyspaces(old.side, new.side, keyspaces, registered)
    if not shared:
        return
    old_id = cluster_identity(old.session)
    new_id = cluster_identity(new.session)
    if old_id.same_as(new_id):
        raise SameClusterError(
            f"refusing to sync keyspace(s) {', '.join(shared)}: old and new Cassandra "
            f"({', '.join(old.side.hosts)} / {', '.join(new.side.hosts)}) are the same cluster "
            f"{old_id.name!r} (shared host ids) and these names are both old's and new's; "
            "give new another prefix (new.cassandra.prefix, --ndb_prefix) or point it at the "
            "new cluster")
