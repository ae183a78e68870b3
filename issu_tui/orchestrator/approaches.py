"""Approaches: the topologies an upgrade can take (see docs/runbook.md).

- separate: the new controllers have their own Cassandra and ZooKeeper (nothing shared).
- grow:     one Cassandra/ZooKeeper shared through prefixes; grow 3 -> 5 nodes for the
            duration (both keyspace sets), shrink back to 3 after finalize.
- stay:     shared, 5 nodes throughout: two leave, are converted to v2 and rejoin before
            the sync; the other three are converted one at a time after finalize.
- rolling:  shared, stays at 3 nodes; the nodes are converted one at a time (quorum kept).

Their ring steps are in ringplan.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from issu_tui.config import IssuConfig

APPROACHES = ("separate", "grow", "stay", "rolling")


def default_approach(config: IssuConfig) -> str:
    shared = set(config.old.cassandra.hosts) & set(config.new.cassandra.hosts)
    return "grow" if shared else "separate"
