"""The shared approaches' ring steps: order, the nodes each stops, inverses and risks."""

from __future__ import annotations

import pytest

from issu_tui.orchestrator.quorum import guard_ring
from issu_tui.orchestrator.ringplan import RingPlanError, ring_steps
from tests.test_quorum_guard import _ring

OLD = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
NEW = [*OLD, "10.0.0.4", "10.0.0.5"]


def test_grow_joins_before_sync_and_decommissions_after_finalize() -> None:
    steps = ring_steps("grow", OLD, NEW)
    assert [(s.when, s.action) for s in steps] == [
        ("plan", "join"), ("plan", "join"), ("plan", "replication"),
        ("done", "stop"), ("done", "convert"), ("done", "replication"),
        ("done", "decommission"), ("done", "decommission")]
    assert steps[2].factor == 5 and steps[5].factor == 3
    # only the decommissions close the way back
    assert [s.nodes for s in steps if s.inverse is None] == [("10.0.0.2",), ("10.0.0.3",)]


def test_every_guarded_step_of_each_approach_passes_the_guard_one_at_a_time() -> None:
    """The plan never stops more nodes at once than quorum allows at the factor it runs."""
    for approach, nodes, factor in (("grow", NEW, 5), ("stay", NEW, 5), ("rolling", OLD, 3)):
        ring = _ring(nodes, factor=factor)
        for step in ring_steps(approach, OLD if approach == "grow" else nodes, NEW):
            assert guard_ring(ring, step.does, step.stops).ok, (approach, step)


def test_rolling_names_its_single_point_of_failure_and_stay_needs_five() -> None:
    steps = ring_steps("rolling", OLD, OLD)
    assert [s.nodes[0] for s in steps if s.action == "convert"] == OLD
    assert all("single point of failure" in s.risks[0] for s in steps)
    with pytest.raises(RingPlanError, match="stay keeps 5 database nodes"):
        ring_steps("stay", OLD, OLD)
    with pytest.raises(RingPlanError, match="grow needs"):
        ring_steps("grow", OLD, OLD)
