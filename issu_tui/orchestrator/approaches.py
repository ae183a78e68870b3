"""Approaches: the topologies an upgrade can take (see docs/runbook.md).

- separate: the new controllers have their own Cassandra and ZooKeeper (nothing shared).
- grow:     one Cassandra/ZooKeeper shared through prefixes; grow 3 -> 5 nodes for the
            duration (both keyspace sets), shrink back to 3 after finalize.
- stay:     shared, grown 3 -> 5 and kept at 5.
- rolling:  shared, stays at 3 nodes; DB nodes are replaced one at a time (quorum kept).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from issu_tui.config import IssuConfig

APPROACHES = ("separate", "grow", "stay", "rolling")


def default_approach(config: IssuConfig) -> str:
    shared = set(config.old.cassandra.hosts) & set(config.new.cassandra.hosts)
    return "grow" if shared else "separate"
