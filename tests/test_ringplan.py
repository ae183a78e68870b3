"""The shared approaches' ring steps: order, the nodes each stops, inverses and risks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from backends.cassandra.registry import Registry, RegistryError, contrail_defaults
from backends.cassandra.translate import TableTranslator
from issu_tui.cli import cli
from issu_tui.orchestrator.ringplan import RingPlanError, ring_steps
from issu_tui.orchestrator.ringrun import guard_step
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


def test_every_guarded_step_of_each_approach_passes_the_runners_guard() -> None:
    """The plan never stops more nodes at once than quorum allows, nor lets a node leave that
    the others cannot replace, on the nodes and at the factor the ring has when the step
    runs: checked with the runner's own guard (guard_step; a leave with guard_leave, as
    Cassandra's decommission refuses it)."""
    for approach, old, new, factor in (("grow", OLD, NEW, 3), ("stay", NEW, NEW, 5),
                                       ("stay", NEW, NEW, 3), ("rolling", OLD, OLD, 3)):
        nodes, rf = list(old), factor
        for step in ring_steps(approach, old, new):
            if step.stops:
                result = guard_step(step, _ring(nodes, factor=rf))
                assert result.ok, (approach, factor, step.does, result.refusals)
            if step.action == "replication":
                assert step.factor is not None
                rf = step.factor
            elif step.action in ("join", "convert"):
                nodes += [n for n in step.nodes if n not in nodes]
            elif step.action in ("leave", "decommission"):
                nodes = [n for n in nodes if n not in step.nodes]
        assert len(nodes) == len(new if approach == "grow" else old) - (
            2 if approach == "grow" else 0)


def test_stay_lowers_the_factor_before_a_node_leaves_and_raises_it_after() -> None:
    steps = ring_steps("stay", NEW, NEW)
    assert [(s.when, s.action, s.factor) for s in steps] == [
        ("plan", "replication", 4), ("plan", "leave", None), ("plan", "convert", None),
        ("plan", "leave", None), ("plan", "convert", None), ("plan", "replication", 5),
        ("done", "stop", None), *[("done", "convert", None)] * 3]
    six = [*NEW, "10.0.0.6"]  # the others hold every replica at RF 5: no change needed
    assert not [s for s in ring_steps("stay", six, six) if s.action == "replication"]


def test_rolling_names_its_single_point_of_failure_and_stay_needs_five() -> None:
    steps = ring_steps("rolling", OLD, OLD)
    assert [s.nodes[0] for s in steps if s.action == "convert"] == OLD
    assert all("single point of failure" in s.risks[0] for s in steps)
    with pytest.raises(RingPlanError, match="stay keeps 5 database nodes"):
        ring_steps("stay", OLD, OLD)
    with pytest.raises(RingPlanError, match="grow needs"):
        ring_steps("grow", OLD, OLD)


def _write_config(tmp_path: Path, old: list[str], new: list[str],
                  seeds: list[str] | None = None) -> Path:
    path = tmp_path / "issu.toml"
    path.write_text(f"""state_dir = "{tmp_path / 'state'}"
[ssh]
known_hosts = "{tmp_path / 'known_hosts'}"
[old]
name = "old"
version = "4.1.0"
cassandra = {{ hosts = {old!r}, prefix = "v1", seeds = {seeds or []!r} }}
zookeeper = {{ hosts = ["10.0.0.1:2181"] }}
rabbit = {{ hosts = ["10.0.0.1"] }}
api_server = {{ url = "http://10.0.0.1:8082" }}
[new]
name = "new"
version = "5.0.0"
cassandra = {{ hosts = {new!r}, prefix = "v2" }}
zookeeper = {{ hosts = ["10.0.0.4:2181"], prefix = "v2" }}
rabbit = {{ hosts = ["10.0.0.4"] }}
api_server = {{ url = "http://10.0.0.4:8082" }}
""".replace("'", '"'))
    return path


def test_stay_never_picks_a_seed_to_leave_and_rejoin(tmp_path: Path) -> None:
    """A seed does not bootstrap: emptied and started again it would serve its ranges with
    no data. stay picks the last two nodes that are not seeds (old.cassandra.seeds), which
    `issu plan` shows; with fewer than two it refuses, naming the seeds."""
    steps = ring_steps("stay", NEW, NEW, seeds=["10.0.0.5:7000"])
    assert [s.nodes for s in steps if s.action in ("leave", "convert")] == [
        ("10.0.0.3",), ("10.0.0.3",), ("10.0.0.4",), ("10.0.0.4",),
        ("10.0.0.1",), ("10.0.0.2",), ("10.0.0.5",)]
    with pytest.raises(RingPlanError, match=r"not seeds .* seeds \(old\.cassandra\.seeds\): "
                       r"10\.0\.0\.1, 10\.0\.0\.2, 10\.0\.0\.3, 10\.0\.0\.4$"):
        ring_steps("stay", NEW, NEW, seeds=NEW[:4])
    plan = CliRunner().invoke(cli, ["plan", "-c", str(_write_config(tmp_path, NEW, NEW,
                                                                    ["10.0.0.5"])),
                                    "--approach", "stay"])
    assert plan.exit_code == 0, plan.output
    assert "decommission 10.0.0.3 (it leaves" in plan.output
    assert "decommission 10.0.0.5" not in plan.output


def test_ring_run_refuses_a_config_that_does_not_fit(tmp_path: Path) -> None:
    runner = CliRunner()
    path = _write_config(tmp_path, OLD, OLD)
    stay = runner.invoke(cli, ["ring", "run", "-c", str(path), "--approach", "stay",
                               "--when", "plan"])
    assert stay.exit_code == 2 and "stay keeps 5 database nodes" in stay.output
    grow = runner.invoke(cli, ["ring", "run", "-c", str(_write_config(tmp_path, OLD, NEW)),
                               "--approach", "grow", "--when", "plan"])
    # the ring intent, refused by the executor before any step (no marker)
    assert grow.exit_code == 1
    assert "10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4, 10.0.0.5 have no [[old.controllers]]" \
        in grow.output


def test_the_way_back_is_named_closed_by_each_translator_without_an_inverse() -> None:
    registry = Registry()
    contrail_defaults(registry)
    # the built-in 4.x -> 5.0 translators declare their inverses
    assert registry.revert_blockers("4.1.0", "5.0.0", ["config_db_uuid"]) == []
    assert registry.revert_blockers("5.0.0", "5.0.3") == []  # same era: identity only

    class Back(TableTranslator):
        name = "back"

    registry.add_inverse("4.x", "5.0", "config_db_uuid", "obj_uuid_table", Back())
    registry.add_inverse("4.x", "5.0", "config_db_uuid", "obj_fq_name_table", None)
    assert registry.revert_blockers("4.1.0", "5.0.0", ["config_db_uuid"]) == [
        "config_db_uuid.obj_fq_name_table 4.x -> 5.0 (contrail 4.x->5.0 obj_fq_name_table): "
        "declares none"]
    with pytest.raises(RegistryError, match="no such translator"):
        registry.add_inverse("3.2.x", "4.x", "config_db_uuid", "obj_uuid_table", None)


def test_ring_run_refuses_steps_outside_their_phase_or_approach(tmp_path: Path) -> None:
    """Retiring old nodes ("done") before finalize, or another approach's steps, would take
    down what still serves: refused from the journal, naming the phase or the approach."""
    from issu_tui.journal import Journal

    path = _write_config(tmp_path, OLD, NEW)
    journal = Journal.open(tmp_path / "state")
    journal.set_phase("computes")
    journal.set_approach("grow")
    journal.close()
    runner = CliRunner()
    early = runner.invoke(cli, ["ring", "run", "-c", str(path), "--approach", "grow",
                                "--when", "done"])
    assert early.exit_code == 1
    assert "run only in phase done; the upgrade is in phase computes" in early.output
    other = runner.invoke(cli, ["ring", "run", "-c", str(path), "--approach", "rolling",
                                "--when", "computes"])
    assert other.exit_code == 1 and "records the approach 'grow', not 'rolling'" in other.output
    late = runner.invoke(cli, ["ring", "run", "-c", str(path), "--approach", "grow",
                               "--when", "plan"])
    assert late.exit_code == 1 and "the upgrade is in phase computes" in late.output


def test_ring_run_is_an_executor_intent_refused_by_phase_and_inventory(tmp_path: Path) -> None:
    """`issu ring run` submits a `ring` intent: the executor refuses the steps of a phase
    the upgrade is not in, and a database node no controller entry reaches, naming them;
    nothing is marked."""
    import json as jsonlib

    from issu_tui.journal import Journal

    path = _write_config(tmp_path, OLD, NEW)
    journal = Journal.open(tmp_path / "state")
    journal.set_phase("computes")
    journal.set_approach("grow")
    journal.close()
    early = CliRunner().invoke(cli, ["ring", "run", "-c", str(path), "--approach", "grow",
                                     "--when", "done", "--json"])
    assert early.exit_code == 1, early.output
    result = jsonlib.loads(early.output.splitlines()[-1])
    assert result["kind"] == "ring" and "run only in phase done" in result["error"]
    unreachable = CliRunner().invoke(cli, ["ring", "run", "-c", str(path), "--approach",
                                           "grow", "--when", "computes", "--json"])
    assert unreachable.exit_code == 1, unreachable.output
    error = jsonlib.loads(unreachable.output.splitlines()[-1])["error"]
    assert "10.0.0.1" in error and "[[old.controllers]]" in error
    journal = Journal.open(tmp_path / "state", read_only=True)
    assert not [m for m in journal.steps_done() if m.startswith("ring.")]
    journal.close()


def test_the_phases_run_the_ring_steps_of_plan_before_pre_sync(tmp_path: Path) -> None:
    """grow recorded, preflight and pair done: `issu phase pre-sync` first runs grow's ring
    steps of plan (the joins, the factor up), through the same ring runner as `issu ring
    run` (here refused: the ring nodes have no controller entries), and copies nothing."""
    from issu_tui.journal import Journal
    from issu_tui.orchestrator.phases import phase_marker

    path = _write_config(tmp_path, OLD, NEW)
    journal = Journal.open(tmp_path / "state")
    journal.set_phase("pair", status="done")
    journal.set_approach("grow")
    for name in ("plan", "preflight", "pair"):
        journal.mark_step(phase_marker(name))
    journal.close()
    result = CliRunner().invoke(cli, ["phase", "pre-sync", "-c", str(path)])
    assert result.exit_code == 1, result.output
    assert "the ring steps of grow before pre-sync" in result.output
    assert "have no [[old.controllers]]" in result.output
    journal = Journal.open(tmp_path / "state", read_only=True)
    try:
        assert phase_marker("pre-sync") not in journal.steps_done()
        info = journal.phase()
        assert info is not None and info.phase == "pair"
    finally:
        journal.close()


def test_ring_run_of_done_waits_for_the_way_back_to_close(tmp_path: Path) -> None:
    """grow's steps of done decommission old's nodes (no inverse): while `issu revert` may
    still go back to old, `issu ring run --when done` is refused, naming close-way-back and
    the steps; once the way back is closed the run goes on (here to the inventory check)."""
    from issu_tui.journal import Journal
    from issu_tui.orchestrator.phases import WAY_BACK_CLOSED

    path = _write_config(tmp_path, OLD, NEW)
    journal = Journal.open(tmp_path / "state")
    journal.set_phase("done", status="done")
    journal.set_approach("grow")
    journal.close()
    args = ["ring", "run", "-c", str(path), "--approach", "grow", "--when", "done"]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 1, refused.output
    assert "close the way back first with `issu close-way-back`" in refused.output
    assert "decommission 10.0.0.2" in refused.output
    journal = Journal.open(tmp_path / "state")
    journal.mark_step(WAY_BACK_CLOSED)
    journal.close()
    closed = CliRunner().invoke(cli, args)
    assert closed.exit_code == 1 and "close-way-back" not in closed.output
    assert "have no [[old.controllers]]" in closed.output


def test_the_plans_ring_steps_say_the_command_the_operator_runs_and_what_it_does(
        tmp_path: Path) -> None:
    """`issu plan`'s run column for a ring step is the `issu ring run --when X` that runs
    it (before: a manual `issu ring guard ...; then nodetool ...` line), what it does a
    note; stay's rejoin says it converts the node (v2 installed through its v2 profile),
    which the runner now does."""
    config = _write_config(tmp_path, NEW, NEW)
    plan = CliRunner().invoke(cli, ["plan", "-c", str(config), "--approach", "stay", "--json"])
    assert plan.exit_code == 0, plan.output
    steps = [s for s in json.loads(plan.output)["steps"] if s["phase"] in ("plan", "done")]
    option = f"-c {config}"
    assert [s["command"] for s in steps] == [
        *[f"issu ring run {option} --approach stay --when plan  (or: issu phase pre-sync "
          f"{option}, which runs those not done first)"] * 6,
        *[f"issu ring run {option} --approach stay --when done"] * 4]
    rejoin = next(s for s in steps if s["title"].startswith("convert 10.0.0.4 to v2 and "))
    assert "v2 installed and started through its v2 profile" in rejoin["title"]
    assert "runs: issu ring guard" not in " ".join(rejoin["notes"])  # stops nothing up
    leave = next(s for s in steps if s["title"].startswith("decommission 10.0.0.4"))
    assert f"runs: issu ring guard {option} --stop 10.0.0.4 --step 'leave 10.0.0.4'; then " \
        "nodetool decommission on 10.0.0.4" in leave["notes"]
