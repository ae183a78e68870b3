"""`R` starts and stops run-sync through intents; the copy's speed and ETA on the Sync pane."""

from __future__ import annotations

from textual.widgets import Button

from issu_tui.orchestrator import phases
from screens.dialogs import StepConfirm
from screens.widgets.panes import sync_text
from tests.tui.conftest import settle


def footer_keys(app) -> dict[str, str]:
    """What the footer shows: key -> description (the bindings shown and enabled now)."""
    return {active.binding.key: active.binding.description
            for active in app.screen.active_bindings.values()
            if active.binding.show and active.enabled}


def shown(view) -> str:
    return "\n".join(line.plain for line in sync_text(view).renderables)


async def test_R_stops_after_confirmation_then_starts_again(make_app, world) -> None:
    journal, _ = world
    journal.mark_step(phases.phase_marker("run-sync"))  # run-sync runs (phase computes)
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert footer_keys(app).get("R") == "Sync off"
        await pilot.press("R")
        await settle(pilot)
        assert isinstance(app.screen, StepConfirm)
        assert app.screen.title_text == "Stop run-sync?"
        assert app.focused is app.screen.query_one("#no", Button)  # defaults to No
        await pilot.press("enter")
        await settle(pilot)
        assert journal.intents(None) == []
        await pilot.press("R")
        await settle(pilot)
        await pilot.press("tab", "enter")
        await settle(pilot, refreshes=2)
        assert [(i.kind, i.args) for i in journal.intents(None)] == [
            ("runsync", {"action": "stop"})]
        await pilot.press("R")  # one at a time: the first is still open
        await settle(pilot)
        assert not isinstance(app.screen, StepConfirm)
        assert "R" not in footer_keys(app)

        # the executor ran it: run-sync is held stopped
        journal.finish_intent(journal.intents(None)[0].id, "done", "{}")
        journal.mark_step(phases.RUNSYNC_HELD)
        app.action_refresh_now()
        await settle(pilot, refreshes=3)
        assert footer_keys(app).get("R") == "Sync on"
        assert "finalize" not in app.state.snapshot.phase.allowed
        assert app.state.snapshot.phase.next_action.startswith("n: start run-sync again")
        assert "run-sync HELD stopped (R starts it)" in shown(app.state.snapshot.sync)
        await pilot.press("R")
        await settle(pilot)
        assert app.screen.title_text == "Start run-sync again?"
        await pilot.press("tab", "enter")
        await settle(pilot, refreshes=4)
        assert [(i.kind, i.args) for i in journal.intents("pending")] == [
            ("runsync", {"action": "start"})]


async def test_R_says_why_not_before_runsync_ran(make_app, world) -> None:
    journal, _ = world
    journal.set_phase("pre-sync")  # the phase has no run-sync yet
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "R" not in footer_keys(app)
        await pilot.press("R")
        await settle(pilot)
        assert not isinstance(app.screen, StepConfirm)
        said = [n.message for n in app._notifications][-1]
        assert said.startswith("start / stop run-sync is not allowed now (phase pre-sync")
    assert journal.intents(None) == []


async def test_R_in_a_read_only_console_says_so(make_app, world) -> None:
    journal, _ = world
    journal.mark_step(phases.phase_marker("run-sync"))
    app = make_app(read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("R")
        await settle(pilot)
        assert "run-sync: refused, this console is read-only" in \
            [n.message for n in app._notifications][-1]
    assert journal.intents(None) == []


def test_copy_speed_and_eta_from_the_checkpoints(tmp_path) -> None:
    """Pre-sync: cells/s over the last minute of slices, and the current table's ETA."""
    from issu_tui.journal import Journal
    from tests.tui.tui_world import NOW, config_for, make_backend

    journal = Journal.open(tmp_path)
    journal.set_phase("pre-sync")
    table = "config_db_uuid.obj_uuid_table"
    journal.mark_slice_done("pre-sync", "config_db_uuid.obj_fq_name_table", "4:0", 999)
    for i in range(11):  # 11 slices of 64, one every 2 s, 500 cells each
        journal.mark_slice_done("pre-sync", table, f"64:{i}", 500)
    with journal.transaction() as db:
        db.execute("UPDATE checkpoints SET at = ? WHERE table_name != ?", (NOW - 3600, table))
        db.execute("UPDATE checkpoints SET at = ? + 2 * CAST(substr(slice_id, 4) AS INTEGER) "
                   "WHERE table_name = ?", (NOW - 25, table))
    backend = make_backend(journal, config_for(tmp_path))
    try:
        rate = backend.sync_view().copy_rate
        assert rate is not None and rate.job == "pre-sync" and rate.table == table
        assert rate.cells_per_s == 250.0  # 10 slices x 500 cells in 20 s
        assert (rate.slices_done, rate.slices_total) == (11, 64)
        assert rate.table_eta_s == 106.0  # 53 slices left at one per 2 s
        assert rate.idle_s == 5.0
        text = shown(backend.sync_view())
        assert "pre-sync 250 cells/s" in text
        assert "obj_uuid_table 11/64 ETA 1m46s" in text

        # the copy stopped: no slice for over a minute says so; finished: no rate at all
        with journal.transaction() as db:
            db.execute("UPDATE checkpoints SET at = at - 120")
        assert "no slice for 2m05s" in shown(backend.sync_view())
        journal.mark_slice_done("pre-sync", "*", "__complete__", 0)
        assert backend.sync_view().copy_rate is None
        assert shown(backend.sync_view()).startswith("run-sync not started yet")
    finally:
        journal.close()


def test_a_silent_run_sync_is_said_to_be_silent(tmp_path) -> None:
    """run-sync reports every 2 s: 15 s without a report (stalled, cut from RabbitMQ), the
    Sync pane says how long instead of showing old numbers as if they were current."""
    from issu_tui.journal import Journal
    from tests.tui.tui_world import NOW, config_for, make_backend

    journal = Journal.open(tmp_path)
    journal.set_phase("run-sync")
    journal.mark_step(phases.phase_marker("run-sync"))
    journal.set_counters("runsync", {"lag_s": 1.5, "lag_p50_s": 0.4, "lag_p99_s": 1.2,
                                     "applied": 900, "queue_depth": 3})
    backend = make_backend(journal, config_for(tmp_path))
    try:
        for age, silent in ((3, False), (42, True)):
            with journal.transaction() as db:
                db.execute("UPDATE counters SET updated_at = ?", (NOW - age,))
            view = backend.sync_view()
            assert view.report_age_s == age
            text = shown(view)
            assert text.startswith("lag 1.5s"), text
            assert ("no report for 42s" in text) is silent, text
            assert ("p99 1.2s" in text) is not silent, text
    finally:
        journal.close()
