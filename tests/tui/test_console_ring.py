"""The console drives an approach on shared hardware to its end: after the computes it offers
the ring steps of `computes` (rolling's second node) before finalize, and after finalize the
ring steps of `done`, or says what they wait for (grow's decommissions: the way back);
`issu status` says the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import Button

from issu_tui.config import IssuConfig, to_toml
from issu_tui.console_api import ActionRefused
from issu_tui.journal import Journal
from issu_tui.orchestrator import phases
from issu_tui.orchestrator.ringplan import ring_steps, step_marker
from tests.tui.test_console_keys import settle
from tests.tui.tui_world import build_journal, make_backend

NODES = ["127.36.0.11", "127.36.0.12", "127.36.0.13"]
JOINING = ["127.36.0.14", "127.36.0.15"]


def shared_config_data(state_dir: Path, approach: str) -> dict[str, object]:
    """Old and new on one ring (rolling: the same 3 nodes; grow: 2 more join)."""
    def cluster(name: str, version: str, prefix: str, hosts: list[str]) -> dict[str, object]:
        return {"name": name, "version": version,
                "cassandra": {"hosts": hosts, "prefix": prefix},
                "zookeeper": {"hosts": [f"127.36.0.2{1 if prefix == 'v1' else 2}:2181"]},
                "rabbit": {"hosts": ["127.36.0.31"], "vhost": f"/{prefix}"},
                "control_nodes": [{"name": f"ctl-{name}", "address": hosts[0]}]}

    new_hosts = NODES + JOINING if approach == "grow" else NODES
    return {"old": cluster("old", "4.1.0", "v1", NODES),
            "new": cluster("new", "5.0.0", "v2", new_hosts),
            "state_dir": str(state_dir), "batch": {"size": 4, "parallel": 2}}


def shared_config(state_dir: Path, approach: str) -> IssuConfig:
    return IssuConfig.model_validate(shared_config_data(state_dir, approach))


def upgrade_at_computes(state_dir: Path, approach: str) -> tuple[Journal, IssuConfig]:
    """The journal of an upgrade whose ring steps of plan ran and whose run-sync runs."""
    config = shared_config(state_dir, approach)
    journal = build_journal(state_dir, computes=4, upgraded=0, failed=0)
    journal.set_approach(approach)
    steps = ring_steps(approach, NODES, list(config.new.cassandra.hosts))
    for i, step in enumerate(steps):
        if step.when == "plan":
            journal.mark_step(step_marker(i, step))
    journal.mark_step(phases.phase_marker("run-sync"))
    return journal, config


def mark_done(journal: Journal, approach: str, config: IssuConfig, when: str) -> None:
    """What the executor leaves behind once the ring steps of `when` ran."""
    steps = ring_steps(approach, NODES, list(config.new.cassandra.hosts))
    for i, step in enumerate(steps):
        if step.when == when:
            journal.mark_step(step_marker(i, step))


def test_rolling_offers_the_second_node_after_the_computes_and_before_finalize(
        tmp_path: Path) -> None:
    journal, config = upgrade_at_computes(tmp_path, "rolling")
    backend = make_backend(journal, config)
    try:
        view = backend.snapshot().phase
        assert view.ring is not None
        assert view.ring.summary == ("rolling: 1 of 4 ring steps done; next (computes): "
                                     "convert 127.36.0.12 to v2")
        # computes left on old: they move first; neither the ring nor finalize is offered
        assert backend.next_step().action == "upgrade"
        assert {"ring", "finalize"}.isdisjoint(view.allowed)
        for row in journal.computes():
            journal.transition_compute(row.name, "upgraded", "test")
        step = backend.next_step()
        assert (step.action, step.target) == ("ring", "computes")
        assert step.says == "n: run the ring steps of computes: convert 127.36.0.12 to v2"
        assert "stops 127.36.0.12" in step.detail and "one more failure loses quorum" in \
            step.detail and "way back: convert 127.36.0.12 back to v1" in step.detail
        view = backend.snapshot().phase
        assert "ring" in view.allowed and "finalize" not in view.allowed
        with pytest.raises(ActionRefused, match="finalize is not allowed"):
            backend.finalize()
        with pytest.raises(ActionRefused, match="ring steps of done are not the next"):
            backend.run_ring("done")
        intent = backend.run_ring("computes")
        assert [(i.kind, i.args) for i in journal.intents()] == [
            ("ring", {"approach": "rolling", "when": "computes"})]
        assert backend.next_step().says == f"wait: ring is queued (intent #{intent})"
        with pytest.raises(ActionRefused, match="ring is not allowed"):
            backend.run_ring("computes")  # one at a time

        journal.finish_intent(intent, "done")
        mark_done(journal, "rolling", config, "computes")
        assert backend.next_step().action == "finalize"
        assert "ring" not in backend.snapshot().phase.allowed

        journal.set_phase("done", status="done", note="the new cluster serves")
        step = backend.next_step()
        assert (step.action, step.target) == ("ring", "done")
        assert step.says == ("n: run the ring steps of done: stop v1 on 127.36.0.13 but its "
                             "database: northbound fails over to the v2 nodes (+1 more)")
        backend.run_ring("done")
        journal.finish_intent(journal.intents()[-1].id, "done")
        mark_done(journal, "rolling", config, "done")
        assert backend.next_step().says == "nothing: the upgrade is finished"
        assert backend.snapshot().phase.ring.summary == "rolling: 4 of 4 ring steps done"
    finally:
        journal.close()


def test_grows_decommissions_wait_for_the_way_back_to_close(tmp_path: Path) -> None:
    journal, config = upgrade_at_computes(tmp_path, "grow")
    backend = make_backend(journal, config)
    try:
        for row in journal.computes():
            journal.transition_compute(row.name, "upgraded", "test")
        # grow has no ring steps of computes: finalize comes next
        assert backend.next_step().action == "finalize"
        journal.set_phase("done", status="done", note="the new cluster serves")
        journal.mark_step(phases.REVERSE_STARTED)
        step = backend.next_step()
        assert step.action == "none" and step.says.startswith(
            "the ring steps of done wait: the ring steps of 'done' include steps without an "
            "inverse (decommission 127.36.0.12")
        assert "close the way back first" in step.says
        assert "ring" not in backend.snapshot().phase.allowed
        with pytest.raises(ActionRefused, match="ring is not allowed"):
            backend.run_ring("done")
        journal.mark_step(phases.WAY_BACK_CLOSED)
        step = backend.next_step()
        assert (step.action, step.target) == ("ring", "done")
        assert "decommission 127.36.0.13" in step.detail
        assert "way back: none" in step.detail
    finally:
        journal.close()


def test_a_read_only_console_says_the_ring_steps_left(tmp_path: Path) -> None:
    journal, config = upgrade_at_computes(tmp_path, "rolling")
    mark_done(journal, "rolling", config, "computes")
    journal.set_phase("done", status="done")
    watcher = make_backend(journal, config, read_only=True)
    try:
        assert watcher.next_step().says == (
            "the ring steps of done are left: rolling: 2 of 4 ring steps done; next (done): "
            "stop v1 on 127.36.0.13 but its database: northbound fails over to the v2 nodes "
            "(+1 more)")
        with pytest.raises(ActionRefused, match="read-only"):
            watcher.run_ring("done")
    finally:
        journal.close()


def test_the_separate_approach_has_no_ring_line(tmp_path: Path) -> None:
    from tests.tui.tui_world import config_for

    journal = build_journal(tmp_path, computes=2, upgraded=2, failed=0)
    try:
        view = make_backend(journal, config_for(tmp_path)).snapshot().phase
        assert view.ring is None and "ring" not in view.allowed
    finally:
        journal.close()


async def test_n_asks_then_queues_the_ring_steps(tmp_path: Path) -> None:
    from issu_tui.app import IssuApp
    from screens.dialogs import StepConfirm

    journal, config = upgrade_at_computes(tmp_path, "rolling")
    for row in journal.computes():
        journal.transition_compute(row.name, "upgraded", "test")
    app = IssuApp(make_backend(journal, config), refresh_interval=3600,
                  analytics_interval=3600)
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            await settle(pilot)
            await pilot.press("n")
            await settle(pilot)
            assert isinstance(app.screen, StepConfirm)
            assert app.screen.title_text == "Run the ring steps of computes?"
            assert "convert 127.36.0.12 to v2" in app.screen.explanation
            assert app.focused is app.screen.query_one("#no", Button)
            await pilot.press("enter")  # No
            await settle(pilot)
            assert journal.intents(None) == []
            await pilot.press("n")
            await settle(pilot)
            await pilot.press("tab", "enter")  # Yes
            await settle(pilot, refreshes=2)
            assert [(i.kind, i.args) for i in journal.intents(None)] == [
                ("ring", {"approach": "rolling", "when": "computes"})]
    finally:
        journal.close()


def test_the_executor_refuses_finalize_while_the_ring_steps_of_computes_wait(
        tmp_path: Path) -> None:
    from issu_tui.orchestrator.context import Context, OrchestratorError
    from issu_tui.orchestrator.executor import Executor

    journal, config = upgrade_at_computes(tmp_path, "rolling")
    ctx = Context(config=config, config_path=tmp_path / "issu.toml", journal=journal)
    try:
        with pytest.raises(OrchestratorError, match=r"rolling: the ring steps of computes "
                           r"are not done \(convert 127\.36\.0\.12 to v2\): run them first"):
            Executor(ctx).finalize({})
        assert journal.phase().phase == "computes"  # nothing entered
    finally:
        journal.close()


def test_issu_status_says_the_ring_steps_and_what_they_wait_for(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from issu_tui.orch_cli import status_cmd

    state = tmp_path / "state"
    journal, _ = upgrade_at_computes(state, "grow")
    path = tmp_path / "issu.toml"
    path.write_text(to_toml(shared_config_data(state, "grow")))
    try:
        journal.set_phase("done", status="done")
        journal.mark_step(phases.REVERSE_STARTED)
        shown = CliRunner().invoke(status_cmd, ["-c", str(path)])
        assert shown.exit_code == 0, shown.output
        (line,) = [ln for ln in shown.output.splitlines() if ln.startswith("ring:")]
        assert line.startswith("ring:      grow: 3 of 8 ring steps done; next (done): stop "
                               "the v1 services on the old controllers except the database "
                               "(+4 more); waits: the ring steps of 'done' include steps "
                               "without an inverse (decommission 127.36.0.12"), line
        data = CliRunner().invoke(status_cmd, ["-c", str(path), "--json"])
        ring = json.loads(data.output)["ring"]
        assert (ring["done"], ring["total"], ring["when"], len(ring["pending"])) == (
            3, 8, "done", 5)
    finally:
        journal.close()


def test_the_approach_is_the_configs_or_the_one_that_fits_the_hosts(tmp_path: Path) -> None:
    """The console's executor records the approach at plan without asking: a world built
    for rolling (3 shared nodes) was recorded as grow, which does not fit it, and no ring
    step ran. The config's `approach` is recorded; unset, the one that fits the hosts."""
    from issu_tui.orchestrator.approaches import default_approach
    from issu_tui.orchestrator.context import Context
    from issu_tui.orchestrator.executor import Executor

    assert default_approach(shared_config(tmp_path, "rolling")) == "rolling"
    assert default_approach(shared_config(tmp_path, "grow")) == "grow"
    five = shared_config(tmp_path, "rolling").model_copy(deep=True)
    for side in (five.old, five.new):
        side.cassandra.hosts = NODES + JOINING
    assert default_approach(five) == "stay"
    chosen = shared_config(tmp_path, "grow").model_copy(update={"approach": "stay"})
    assert default_approach(chosen) == "stay"

    config = shared_config(tmp_path, "grow").model_copy(update={"approach": "rolling"})
    journal = Journal.open(tmp_path / "state")
    try:
        Executor(Context(config=config, config_path=tmp_path / "issu.toml",
                         journal=journal)).ensure_plan()
        assert journal.orchestrator_state().approach == "rolling"
    finally:
        journal.close()


def test_an_unknown_approach_in_the_config_is_refused_naming_the_key(tmp_path: Path) -> None:
    from issu_tui.config import ConfigError, load_config
    from tests.fuzz.configs import minimal_toml

    path = tmp_path / "issu.toml"
    path.write_text('approach = "sideways"\n' + minimal_toml(tmp_path / "state"))
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(path) in str(refused.value) and "approach" in str(refused.value)
    assert "rolling" in str(refused.value)


def test_the_pre_sync_confirmation_names_the_ring_steps_it_runs_first(tmp_path: Path) -> None:
    """n for pre-sync converts rolling's first node before copying: the confirmation said
    only "copy every ISSU keyspace old -> new"."""
    config = shared_config(tmp_path, "rolling")
    journal = build_journal(tmp_path, computes=2, phase="pair", upgraded=0, failed=0)
    journal.set_approach("rolling")
    for name in ("preflight", "pair"):
        journal.mark_step(phases.phase_marker(name))
    try:
        step = make_backend(journal, config).next_step()
        assert (step.action, step.target) == ("phase", "pre-sync")
        assert step.detail.startswith(
            "First the ring steps of plan (rolling), before anything is copied:\n"
            "- convert 127.36.0.11 to v2 (database kept)\n  stops 127.36.0.11")
        assert "Then pre-sync: copy every ISSU keyspace" in step.detail
    finally:
        journal.close()


def test_preflight_refuses_an_approach_that_does_not_fit_the_hosts(tmp_path: Path) -> None:
    """A ring approach whose steps cannot be planned on the hosts ran none: pre-sync only
    warned and copied without converting or joining a node."""
    from issu_tui.orchestrator.context import Context
    from issu_tui.orchestrator.preflight import check_approach
    from tests.tui.tui_world import config_for

    journal = Journal.open(tmp_path / "state")
    try:
        def check(config: IssuConfig, approach: str):  # type: ignore[no-untyped-def]
            return check_approach(Context(config=config, config_path=tmp_path / "issu.toml",
                                          journal=journal), approach)

        three = shared_config(tmp_path, "rolling")
        misfit = check(three, "stay")
        assert not misfit.ok and misfit.severity == "error"
        assert misfit.detail == "stay: stay keeps 5 database nodes; the ring has 3 " \
            "(127.36.0.11, 127.36.0.12, 127.36.0.13)"
        assert f"set `approach` in {tmp_path / 'issu.toml'}" in misfit.fix
        assert check(three, "rolling").detail == "rolling: 4 ring steps"
        assert check(config_for(tmp_path), "separate").detail == "separate: no ring steps"
        # one shared node (keyspaces told apart by prefix): nothing to convert, nothing guessed
        from issu_tui.orchestrator.approaches import default_approach

        one = three.model_copy(deep=True)
        for side in (one.old, one.new):
            side.cassandra.hosts = NODES[:1]
        assert default_approach(one) == "separate"
    finally:
        journal.close()
