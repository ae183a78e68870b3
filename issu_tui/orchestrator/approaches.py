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

from issu_tui.orchestrator.ringplan import RingStep, ring_steps

if TYPE_CHECKING:
    from issu_tui.config import IssuConfig

APPROACHES = ("separate", "grow", "stay", "rolling")


def config_ring_steps(config: IssuConfig, approach: str) -> list[RingStep]:
    """`approach`'s ring steps on the config's Cassandra hosts (old's seeds never leave);
    RingPlanError when the hosts do not fit it, [] for separate."""
    return ring_steps(approach, list(config.old.cassandra.hosts),
                      list(config.new.cassandra.hosts), config.old.cassandra.seeds)


def default_approach(config: IssuConfig) -> str:
    """The config's `approach`; unset, the one that fits the Cassandra hosts: separate when
    old and new share none, grow when new's add nodes to old's ring, stay on a shared ring
    of five nodes or more, rolling on one of three or four; a shared ring smaller than that
    has no ring steps to run: separate (nothing converted, keyspaces told apart by prefix)."""
    if config.approach is not None:
        return config.approach
    old, new = set(config.old.cassandra.hosts), set(config.new.cassandra.hosts)
    if old & new and new - old:
        return "grow"
    if old & new and len(old) >= 5:
        return "stay"
    if old & new and len(old) >= 3:
        return "rolling"
    return "separate"
