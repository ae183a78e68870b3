"""`issu revert`: what it undoes and what refuses it, from the journal (no services: the
revert itself, before the point of no return, is abort's, tested on the demo world in
tests/test_orchestrator.py)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from issu_tui.cli import cli
from issu_tui.config import load_config
from issu_tui.journal import Journal
from issu_tui.orchestrator.finalize import COMMIT_STEP
from issu_tui.orchestrator.revert import REVERSE_REPLICATION_MISSING, plan_from_journal
from tests.test_ringplan import NEW, OLD, _write_config


def _journal(tmp_path: Path, phase: str, markers: list[str], approach: str = "grow") -> None:
    journal = Journal.open(tmp_path / "state")
    journal.set_phase(phase)
    journal.set_approach(approach)
    for marker in markers:
        journal.mark_step(marker)
    journal.close()


def test_before_the_commit_revert_is_abort_plus_the_ring_steps_to_undo(tmp_path: Path) -> None:
    path = _write_config(tmp_path, OLD, NEW)
    # grow: both new nodes joined and the factor went to 5 (ring steps 0-2 marked)
    _journal(tmp_path, "computes", ["ring.0.join.10.0.0.4", "ring.1.join.10.0.0.5",
                                    "ring.2.replication." + "+".join(NEW)])
    plan = plan_from_journal(load_config(path))
    assert plan.ok and not plan.committed
    assert plan.undo[0].startswith("rollback-computes: roll back every compute")
    assert plan.by_hand == (
        "ISSU keyspaces to replication factor 5 (ALTER KEYSPACE), full repair on every "
        "node, ownership checked: undo with replication factor back to 3",
        "start the database on 10.0.0.5; it bootstraps into the ring (nodetool status: "
        "all UN): undo with decommission 10.0.0.5",
        "start the database on 10.0.0.4; it bootstraps into the ring (nodetool status: "
        "all UN): undo with decommission 10.0.0.4")
    check = CliRunner().invoke(cli, ["revert", "-c", str(path), "--check"])
    assert check.exit_code == 0, check.output
    assert "undo  rollback-computes" in check.output and "undo with decommission" in \
        check.output


def test_after_the_commit_revert_is_refused_naming_each_blocker(tmp_path: Path) -> None:
    path = _write_config(tmp_path, OLD, NEW)
    _journal(tmp_path, "done", [COMMIT_STEP, "ring.6.decommission.10.0.0.2"])
    plan = plan_from_journal(load_config(path))
    assert plan.committed and not plan.ok
    text = "\n".join(plan.blockers)
    # 4.1 -> 5.0 goes through the contrail 4.x -> 5.0 translators, which declare no inverse
    assert "no inverse translation: config_db_uuid.obj_uuid_table 4.x -> 5.0" in text
    assert "ring step done without an inverse: decommission 10.0.0.2" in text
    assert REVERSE_REPLICATION_MISSING in plan.blockers
    refused = CliRunner().invoke(cli, ["revert", "-c", str(path), "--json"])
    assert refused.exit_code == 1
    data = json.loads(refused.output.splitlines()[-1])
    assert data["ok"] is False and data["committed"] is True
    assert any("decommission 10.0.0.2" in b for b in data["blockers"])


def test_nothing_to_revert_without_an_upgrade_or_after_an_abort(tmp_path: Path) -> None:
    path = _write_config(tmp_path, OLD, NEW)
    missing = CliRunner().invoke(cli, ["revert", "-c", str(path)])
    assert missing.exit_code == 2 and "no journal here yet" in missing.output
    _journal(tmp_path, "aborted", [])
    aborted = CliRunner().invoke(cli, ["revert", "-c", str(path)])
    assert aborted.exit_code == 1
    assert "refused: the upgrade was aborted" in aborted.output


def test_after_new_writers_ran_revert_needs_drop_new_data(tmp_path: Path) -> None:
    """abort refuses then (new's writers' cells outlive a retry's copy): revert --check says
    so before anything is submitted, and passes with --drop-new-data."""
    path = _write_config(tmp_path, OLD, NEW)
    _journal(tmp_path, "finalize", ["finalize.start-new-writers.begun"])
    refused = CliRunner().invoke(cli, ["revert", "-c", str(path), "--check"])
    assert refused.exit_code == 1
    assert "refused: new's writers ran (finalize start-new-writers)" in refused.output
    assert "revert --drop-new-data" in refused.output
    ok = CliRunner().invoke(cli, ["revert", "-c", str(path), "--check", "--drop-new-data"])
    assert ok.exit_code == 0, ok.output
