"""`issu revert` on the demo world: after some computes moved to v2, revert brings them back
and leaves old's config rows as they were (the plan's refusals: tests/test_revert.py)."""

from __future__ import annotations

import pytest

from backends.cassandra.connection import CassandraSide, connect
from demo.services import Endpoints
from issu_tui.config import load_config
from issu_tui.journal import Journal
from issu_tui.orchestrator.context import Context
from issu_tui.orchestrator.executor import Executor
from issu_tui.orchestrator.phases import phase_marker
from tests.orch_world import fresh_world, issu_json, stop_world


def _old_rows(endpoints: Endpoints) -> int:
    side = CassandraSide("old", (endpoints.cassandra_old.host,),
                         port=endpoints.cassandra_old.port)
    with connect(side, request_timeout=60) as conn:
        rows = conn.session.execute("SELECT key, column1, value FROM "
                                    "config_db_uuid.obj_uuid_table")
        return sum(1 for _ in rows)


@pytest.mark.timeout(900)
def test_revert_after_some_computes_moved_brings_them_back_and_keeps_old(
        services: Endpoints) -> None:
    """One compute of two upgraded to v2, then `issu revert`: both on v1 again (their agents
    probed over SSH), old's config rows as they were, nothing more to revert."""
    world = fresh_world(services, computes=2, install_s=0.2)
    try:
        before = _old_rows(services)
        assert before > 0
        config = load_config(world.config_path)
        ctx = Context(config=config, config_path=world.config_path,
                      journal=Journal.open(config.state_dir))
        executor = Executor(ctx)
        executor.start()
        try:
            for phase in ("preflight", "pair", "pre-sync", "run-sync"):
                ctx.mark_step(phase_marker(phase))
            ctx.journal.set_phase("run-sync", status="done", note="marked by the test")
            ctx.journal.add_intent("upgrade", {"computes": ["compute-1"], "canary": 0},
                                   "test")
            executor.serve(until_idle=True)
            moved = ctx.journal.compute("compute-1")
            assert moved.state == "upgraded" and moved.version == "5.0.0"
        finally:
            executor.close()
            ctx.journal.close()
        check = issu_json(world, "revert", "--check")
        assert check["ok"] and not check["committed"] and check["by_hand"] == []
        result = issu_json(world, "revert", timeout=600)
        assert result["ok"], result
        status = issu_json(world, "status")
        assert status["phase"]["name"] == "aborted"
        assert {(c["name"], c["state"], c["version"], c["cluster"])
                for c in status["computes"]["items"]} == {
            ("compute-1", "old", "4.1.0", "old"), ("compute-2", "old", "4.1.0", "old")}
        assert _old_rows(services) == before
        again = issu_json(world, "revert", "--check", expect=1)
        assert any("aborted" in b for b in again["blockers"])
    finally:
        stop_world(world)
