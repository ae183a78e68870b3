"""`issu revert`: what it undoes and what refuses it, from the journal, and the inverse
translators the reverse replication goes through (no services: the revert itself runs on
the demo world in tests/test_revert_world.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from issu_tui.cli import cli
from issu_tui.config import load_config
from issu_tui.journal import Journal
from issu_tui.orchestrator.finalize import COMMIT_STEP
from issu_tui.orchestrator.revert import (
    REVERSE_REPLICATION_MISSING,
    plan_from_journal,
    revert_plan,
)
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
        "ISSU keyspaces to replication factor 5: repair at the current factor, ALTER "
        "KEYSPACE, repair at the new one (full, -pr on every node), ownership checked; "
        "reads at ONE may miss rows until the second repair ends: undo with replication "
        "factor back to 3",
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
    # the built-in contrail 4.x -> 5.0 translators declare their inverses: they block nothing
    assert "no inverse translation" not in text
    assert "ring step done without an inverse: decommission 10.0.0.2" in text
    # finalize never started the reverse replication (no marker): nothing carries back
    assert REVERSE_REPLICATION_MISSING in plan.blockers
    assert plan.undo[0].startswith("fence-new: ")
    # a translator without an inverse is named, and then only that is said of the reverse
    config = load_config(path)
    named = revert_plan(config, "done", [COMMIT_STEP], "separate",
                        ["myapp.things 4.x -> 5.0 (mine): declares none"], drop_new_data=True)
    assert named.blockers == ("no inverse translation: myapp.things 4.x -> 5.0 (mine): "
                              "declares none",)
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


def test_an_unsupported_version_path_is_a_named_blocker_not_a_traceback(tmp_path: Path) -> None:
    path = _write_config(tmp_path, OLD, NEW)
    path.write_text(path.read_text().replace('version = "4.1.0"', 'version = "2.0.0"', 1))
    _journal(tmp_path, "done", [COMMIT_STEP], approach="separate")
    refused = CliRunner().invoke(cli, ["revert", "-c", str(path)])
    assert refused.exit_code in (1, 2), refused.output
    assert "Traceback" not in refused.output and "2.0.0" in refused.output


def test_the_inverse_translators_bring_5_0_rows_back_to_4_x_exactly() -> None:
    """Rows of 4.x through the forward translators and back through the inverses are the
    rows they were (a defaulted perms2 stays: 4.x stores perms2 too); messages likewise; a
    step that declares no inverse refuses the reverse naming it."""
    import pytest

    from backends.cassandra.registry import Registry, RegistryError, load_registry
    from backends.cassandra.translate import Cell, TableTranslator, translate_partition
    from backends.runsync.messages import translate

    registry = load_registry()
    back = registry.reversed()
    cells = [Cell("fq_name", '["default-domain", "p", "vn"]', 3),
             Cell("parent:project:p1", "null", 3),
             Cell("prop:perms2", '{"owner": "x"}', 4),
             Cell("prop:virtual_network_network_id", "7", 3),
             Cell("ref:network-ipam:i1", '{"attr": {}}', 5),
             Cell("type", '"virtual-network"', 3)]
    forward = registry.translator("4.1.0", "5.0.0", "config_db_uuid", "obj_uuid_table")
    key, on_new, rejected = translate_partition(forward, "u1", cells)
    assert not rejected and ("prop:virtual_network_id", "7") in {(c.column, c.value)
                                                                 for c in on_new}
    inverse = back.translator("5.0.0", "4.1.0", "config_db_uuid", "obj_uuid_table")
    key2, on_old, rejected = translate_partition(inverse, key, on_new)
    assert key2 == "u1" and not rejected and sorted(on_old, key=lambda c: c.column) == cells
    fq = back.translator("5.0.0", "4.1.0", "config_db_uuid", "obj_fq_name_table")
    assert fq.key("virtual_machine_interface") == "virtual-machine-interface"
    message = {"oper": "CREATE", "type": "virtual-network",
               "obj_dict": {"virtual_network_network_id": 7}}
    there = translate(message, "4.1.0", "5.0.0")
    assert there["type"] == "virtual_network"
    assert translate(there, "5.0.0", "4.1.0", reverse=True) == message

    closed = Registry()
    closed.add_keyspace("myapp", ["things"])
    closed.add_translator("4.x", "5.0", "myapp", "things", TableTranslator())
    closed.add_inverse("4.x", "5.0", "myapp", "things", None)
    assert closed.revert_blockers("4.1.0", "5.0.0") == [
        "myapp.things 4.x -> 5.0 (identity): declares none"]
    with pytest.raises(RegistryError, match=r"myapp.things 4.x -> 5.0 .*has no inverse"):
        closed.reversed().translator("5.0.0", "4.1.0", "myapp", "things")


def test_after_the_commit_revert_needs_drop_new_data_as_abort_does(tmp_path: Path) -> None:
    """new took writes and its writers ran: as abort after start-new-writers, revert after
    the commit is refused without --drop-new-data (said by --check, before anything runs)."""
    from issu_tui.orchestrator.finalize import REVERSE_STARTED
    from issu_tui.orchestrator.revert import NEW_DATA_AFTER_COMMIT

    path = _write_config(tmp_path, OLD, NEW)
    _journal(tmp_path, "done", [COMMIT_STEP, REVERSE_STARTED], approach="separate")
    refused = CliRunner().invoke(cli, ["revert", "-c", str(path), "--check"])
    assert refused.exit_code == 1
    assert f"refused: {NEW_DATA_AFTER_COMMIT}" in refused.output
    ok = CliRunner().invoke(cli, ["revert", "-c", str(path), "--check", "--drop-new-data"])
    assert ok.exit_code == 0, ok.output


def test_close_way_back_drains_stops_the_reverse_replication_and_revert_is_refused_after(
        tmp_path: Path) -> None:
    """`issu close-way-back` after finalize: waits for the reverse replication to report an
    empty queue, stops it (its process gone), tries its queues, marks the way back closed;
    status says open before and closed after, and revert is refused naming it."""
    import subprocess
    import sys
    import threading
    import time

    from issu_tui.orchestrator.finalize import REVERSE_STARTED
    from issu_tui.orchestrator.revert import WAY_BACK_CLOSED_BLOCKER

    path = _write_config(tmp_path, OLD, NEW)
    # new's broker: nothing listens there (the queues cannot be deleted: said, not fatal)
    path.write_text(path.read_text().replace('rabbit = { hosts = ["10.0.0.4"] }',
                                             'rabbit = { hosts = ["127.0.0.1"], port = 1 }'))
    _journal(tmp_path, "done", [COMMIT_STEP, REVERSE_STARTED], approach="separate")
    # the reverse replication as syncproc starts it (argv), a sleeper standing in for it
    reverse = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "sync",
                                "run", "-c", str(path), "--reverse"], start_new_session=True)
    try:
        (tmp_path / "state" / "reverse-sync.pid").write_text(f"{reverse.pid} {time.time()}\n")
        status = CliRunner().invoke(cli, ["status", "-c", str(path), "--json"])
        data = json.loads(status.output)
        assert data["reverse_sync"]["running"] is True
        assert data["way_back"].startswith("open: the reverse replication new -> old is "
                                           "running")

        def report_drained() -> None:  # what the replication writes once it caught up
            time.sleep(3)
            journal = Journal.open(tmp_path / "state")
            journal.set_counters("run-sync", {"queue_depth": 0, "applied": 7, "failed": 0})
            journal.close()

        writer = threading.Thread(target=report_drained)
        writer.start()
        closed = CliRunner().invoke(cli, ["close-way-back", "-c", str(path), "--json"])
        writer.join()
        assert closed.exit_code == 0, closed.output
        result = json.loads(closed.output.splitlines()[-1])
        assert result["ok"] is True, result
        assert "reverse replication drained (applied 7, failed 0)" in result["done"]
        assert "reverse replication stopped" in result["done"]
        assert any("NOT deleted" in line for line in result["done"])
        reverse.wait(timeout=30)
        status = CliRunner().invoke(cli, ["status", "-c", str(path)])
        assert "way back:  closed (issu close-way-back)" in status.output
        refused = CliRunner().invoke(cli, ["revert", "-c", str(path), "--check",
                                           "--drop-new-data"])
        assert refused.exit_code == 1
        assert f"refused: {WAY_BACK_CLOSED_BLOCKER}" in refused.output
    finally:
        if reverse.poll() is None:
            reverse.kill()
            reverse.wait()


def test_reverse_replication_by_hand_is_refused_before_the_commit_and_after_closing(
        tmp_path: Path) -> None:
    """`issu sync run --reverse` would make old equal to new: refused (exit 2, naming the
    reason) without finalize's commit in the journal and once the way back is closed."""
    from issu_tui.orchestrator.revert import WAY_BACK_CLOSED

    path = _write_config(tmp_path, OLD, NEW)
    _journal(tmp_path, "computes", [])
    before = CliRunner().invoke(cli, ["sync", "run", "-c", str(path), "--reverse"])
    assert before.exit_code == 2, before.output
    assert "refused" in before.output and COMMIT_STEP in before.output
    _journal(tmp_path, "done", [COMMIT_STEP, WAY_BACK_CLOSED])
    closed = CliRunner().invoke(cli, ["sync", "run", "-c", str(path), "--reverse"])
    assert closed.exit_code == 2, closed.output
    assert "the way back was closed (issu close-way-back" in closed.output


def test_a_retried_revert_goes_on_after_the_last_step_done_without_zk_back_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A revert whose compute rollback failed is run again after old reopened: the steps
    before abort's are not run again (zk-back would delete the ZooKeeper ids old allocated
    since); the retry goes on from the step that failed."""
    from typing import cast

    from issu_tui.orchestrator import revert
    from issu_tui.orchestrator.abort import AbortRun, AbortStep
    from issu_tui.orchestrator.computes import ComputeRunner
    from issu_tui.orchestrator.context import Context, OrchestratorError
    from issu_tui.orchestrator.finalize import REVERSE_STARTED

    path = _write_config(tmp_path, OLD, NEW)
    _journal(tmp_path, "done", [COMMIT_STEP, REVERSE_STARTED], approach="separate")
    ran: list[str] = []

    def recorded(name: str) -> Callable[[Context], str]:
        def run(_ctx: Context) -> str:
            ran.append(name)
            return "ran"
        return run

    monkeypatch.setattr(revert, "REVERSE_STEPS", tuple(
        revert.RevertStep(s.name, s.does, recorded(s.name)) for s in revert.REVERSE_STEPS))
    failures = ["compute-1"]

    def roll_back(_run: AbortRun) -> list[str]:
        if failures:
            raise OrchestratorError(f"rollback failed on {failures.pop()}; run abort again")
        return ["compute-1 rolled back"]

    monkeypatch.setattr(revert, "AFTER_COMMIT_ABORT",
                        (AbortStep("rollback-computes", "roll back", roll_back),))
    config = load_config(path)
    journal = Journal.open(config.state_dir)
    try:
        ctx = Context(config=config, config_path=path, journal=journal)
        runner = cast(ComputeRunner, None)
        with pytest.raises(OrchestratorError, match="rollback failed on compute-1"):
            revert.revert_after_commit(ctx, runner, drop_new_data=True)
        assert ran == [s.name for s in revert.REVERSE_STEPS]
        done = revert.revert_after_commit(ctx, runner, drop_new_data=True)
        assert ran.count("zk-back") == 1, ran
        assert "zk-back: done earlier" in done and "compute-1 rolled back" in done
    finally:
        journal.close()
