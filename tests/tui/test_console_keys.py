"""Drive the console with keys against a real journal and check what lands in it."""

from __future__ import annotations

from textual.widgets import Button, Input

from issu_tui.console_api import ConsoleBackend
from screens.dialogs import ComputeDetailScreen, HelpScreen, MoveConfirm, NoticeScreen, TypedConfirm
from screens.widgets.computes import ComputeGrid
from screens.widgets.events import EventTable
from tests.tui.conftest import settle


async def type_filter(pilot, text: str) -> None:
    """`/`, the filter text, enter (the text set at once: typing is tested once below)."""
    await pilot.press("slash")
    pilot.app.screen.query_one("#compute-filter", Input).value = text
    await pilot.press("enter")


async def set_input(pilot, selector: str, text: str) -> None:
    pilot.app.screen.query_one(selector, Input).value = text
    await pilot.pause()


async def _to(pilot, name: str) -> ComputeGrid:
    grid = pilot.app.screen.query_one(ComputeGrid)
    while grid.current_name() != name:
        await pilot.press("j")
    return grid


async def test_mark_three_upgrade_confirm(make_app, world) -> None:
    journal, _ = world
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        grid = await _to(pilot, "cmp-05")
        await pilot.press("space", "space", "space")
        assert grid.marks == {"cmp-05", "cmp-06", "cmp-07"}
        await pilot.press("u")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, MoveConfirm)
        assert dialog.computes == ["cmp-05", "cmp-06", "cmp-07"]
        assert app.focused is dialog.query_one("#no", Button)  # defaults to No
        assert dialog.query_one("#batch-size", Input).value == "4"
        await pilot.click("#yes")
        await settle(pilot, refreshes=2)
        intents = journal.intents("pending")
        assert [(i.kind, i.args) for i in intents] == [
            ("upgrade", {"computes": ["cmp-05", "cmp-06", "cmp-07"], "batch_size": 4,
                         "parallel": 2})]
        assert grid.marks == set()
        # the executor picks them up: the grid shows them queued at the next refresh
        for name in ("cmp-05", "cmp-06", "cmp-07"):
            journal.transition_compute(name, "queued", f"intent #{intents[0].id}", batch=2)
        app.action_refresh_now()
        await settle(pilot, refreshes=3)
        assert [str(grid.get_cell(n, "state")) for n in ("cmp-05", "cmp-06", "cmp-07")] == \
            ["queued"] * 3
        assert any("asked: upgrade" in e.message for e in app.state.events)


async def test_cancel_leaves_nothing(make_app, world) -> None:
    journal, _ = world
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await _to(pilot, "cmp-06")
        await pilot.press("u")
        await settle(pilot)
        assert isinstance(app.screen, MoveConfirm)
        assert app.screen.computes == ["cmp-06"]  # the row under the cursor
        await pilot.press("enter")  # on the focused No
        await settle(pilot)
        assert not isinstance(app.screen, MoveConfirm)
        await pilot.press("r")  # cmp-06 is old: nothing to roll back, still asks
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
    assert journal.intents(None) == []


async def test_shift_range_and_mark_all_shown(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        grid = await _to(pilot, "cmp-08")
        await pilot.press("shift+down", "shift+down")
        assert grid.marks == {"cmp-08", "cmp-09", "cmp-10"}
        await pilot.press("U")
        assert grid.marks == set()
        await type_filter(pilot, "cluster:new")
        await pilot.press("a")
        assert grid.marks == {"cmp-01", "cmp-02", "cmp-03"}


async def test_filter_by_state_version_and_name(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        grid = app.screen.query_one(ComputeGrid)
        await pilot.press("slash", *"cmp-1", "enter")  # typed for real, once
        assert grid.shown() == ["cmp-10", "cmp-11", "cmp-12"]
        await type_filter(pilot, "state:failed")
        assert grid.shown() == ["cmp-04"]
        await type_filter(pilot, "version:5.0 cmp-0")
        assert grid.shown() == ["cmp-01", "cmp-02", "cmp-03"]
        await pilot.press("slash", "escape")
        assert len(grid.shown()) == 12
        assert grid.has_focus


async def test_read_only_refuses(world, tmp_path) -> None:
    journal, config = world
    journal.acquire_writer()  # someone else drives the upgrade
    backend = ConsoleBackend.open(config, with_analytics=False)
    try:
        assert backend.read_only
        assert "driven by pid" in backend.options.read_only_reason
        from issu_tui.app import IssuApp

        app = IssuApp(backend, refresh_interval=3600)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            await _to(pilot, "cmp-05")
            await pilot.press("space", "u", "X", "F", "P")
            await settle(pilot)
            assert not isinstance(app.screen, MoveConfirm | TypedConfirm)
            assert "READ-ONLY" in app.state.status
            assert any("read-only" in n.message for n in app._notifications)
    finally:
        backend.close()
    assert journal.intents(None) == []


async def test_finalize_only_when_allowed(make_app, world) -> None:
    journal, _ = world
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert "finalize" not in app.state.snapshot.phase.allowed
        await pilot.press("F")
        await settle(pilot)
        assert not isinstance(app.screen, TypedConfirm)
        for row in journal.computes():
            if row.state != "upgraded":
                journal.transition_compute(row.name, "upgraded", "test", version="5.0.0",
                                           cluster="new")
        app.action_refresh_now()
        await settle(pilot, refreshes=2)
        assert "finalize" in app.state.snapshot.phase.allowed
        await pilot.press("F")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, TypedConfirm)
        # it says whether the way back after finalize will be open, not "cannot be undone"
        assert "way back after finalize: every translator on the path declares its inverse" \
            in dialog.explanation and "issu revert" in dialog.explanation
        assert dialog.query_one("#yes", Button).disabled
        await set_input(pilot, "#typed", "finalise")  # a typo does not confirm
        assert dialog.query_one("#yes", Button).disabled
        await set_input(pilot, "#typed", "finalize")
        assert not dialog.query_one("#yes", Button).disabled
        await pilot.click("#yes")
        await settle(pilot, refreshes=3)
    assert [(i.kind, i.args) for i in journal.intents("pending")] == [
        ("finalize", {"force": False, "reason": ""})]


async def test_abort_needs_the_typed_word(make_app, world) -> None:
    journal, _ = world
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("X")
        await settle(pilot)
        assert isinstance(app.screen, TypedConfirm)
        await pilot.press(*"abort")
        await set_input(pilot, "#reason", "maintenance window over")
        await pilot.click("#yes")
        await settle(pilot, refreshes=2)
    assert [(i.kind, i.args) for i in journal.intents("pending")] == [
        ("abort", {"drop_new_data": False})]


async def test_close_way_back_after_finalize_needs_the_typed_word(make_app, world) -> None:
    """Phase done with the reverse replication running: W opens the typed confirmation;
    'close' asks for close-way-back. Before that (no reverse replication) W does nothing."""
    from issu_tui.orchestrator import phases

    journal, _ = world
    journal.set_phase("done", status="done", note="the new cluster serves")
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("W")
        await settle(pilot)
        assert not isinstance(app.screen, TypedConfirm)
        journal.mark_step(phases.REVERSE_STARTED)
        app.action_refresh_now()
        await settle(pilot, refreshes=2)
        await pilot.press("W")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, TypedConfirm)
        await set_input(pilot, "#typed", "close")
        assert not dialog.query_one("#yes", Button).disabled
        await pilot.click("#yes")
        await settle(pilot, refreshes=2)
    assert [i.kind for i in journal.intents("pending")] == ["close-way-back"]


async def test_revert_after_finalize_needs_the_typed_word(make_app, world) -> None:
    """Phase done: B (back to old) only while the way back is open; 'revert' asks for
    `issu revert --drop-new-data` (after the commit revert refuses to keep new's data); a
    pending revert takes W away."""
    from issu_tui.orchestrator import phases

    journal, _ = world
    journal.set_phase("done", status="done", note="the new cluster serves")
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("B")
        await settle(pilot)
        assert not isinstance(app.screen, TypedConfirm)  # no reverse replication: no way back
        journal.mark_step(phases.REVERSE_STARTED)
        app.action_refresh_now()
        await settle(pilot, refreshes=2)
        assert {"revert", "close-way-back"} <= app.state.snapshot.phase.allowed
        await pilot.press("B")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, TypedConfirm) and "rolled back" in dialog.explanation
        assert "dropped" in dialog.explanation
        await set_input(pilot, "#typed", "revert")
        await pilot.click("#yes")
        await settle(pilot, refreshes=2)
        assert not {"revert", "close-way-back"} & app.state.snapshot.phase.allowed
    assert [(i.kind, i.args) for i in journal.intents("pending")] == [
        ("revert", {"drop_new_data": True})]


async def test_help_lists_bindings(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        ids = {e.binding_id for e in app.screen.entries}
        assert {"app.upgrade", "app.rollback", "app.help", "app.pause_refresh", "grid.mark",
                "grid.mark_down", "grid.mark_shown", "grid.clear_marks", "grid.filter",
                "grid.detail", "app.next_screen"} <= ids
        upgrade = next(e for e in app.screen.entries if e.binding_id == "app.upgrade")
        assert (upgrade.key, upgrade.description) == ("u", "Upgrade")
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_detail_shows_command_output(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await _to(pilot, "cmp-04")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ComputeDetailScreen)
        assert "Job for contrail-vrouter-agent.service failed" in \
            str(app.screen.query_one("#command-output").render())


async def test_screens_switch_with_keys(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        seen = []
        for _ in range(6):
            await pilot.press("right_square_bracket")
            await pilot.pause()
            seen.append(app.screen.name)
        assert seen == ["phase", "sync", "analytics", "computes", "events", "dashboard"]
        await pilot.press("3")
        assert app.screen.name == "sync"
        await pilot.press("left_square_bracket")
        assert app.screen.name == "phase"


async def test_polling_pauses_while_a_modal_is_open(world) -> None:
    journal, config = world
    from issu_tui.app import IssuApp
    from tests.tui.tui_world import make_backend

    app = IssuApp(make_backend(journal, config), refresh_interval=0.01)
    async with app.run_test(size=(100, 30)) as pilot:
        while not app.refreshes:
            await pilot.pause(0.01)
        await pilot.press("question_mark")
        await pilot.pause()
        before = app.refreshes
        for _ in range(20):
            await pilot.pause(0.01)
        assert app.refreshes <= before + 1  # at most the poll already in flight
        await pilot.press("escape")
        for _ in range(100):
            await pilot.pause(0.01)
            if app.refreshes > before + 2:
                break
        assert app.refreshes > before + 2


async def test_quit_refused_while_this_console_runs_work(make_app, world) -> None:
    journal, _ = world
    journal.transition_compute("cmp-05", "upgrading", "batch 2")
    app = make_app(owns=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("q")
        await settle(pilot)
        assert isinstance(app.screen, NoticeScreen)
        assert "issu daemon --config issu.toml" in app.screen.body
        assert "cmp-05 is upgrading" in app.screen.body
        assert app.is_running


async def test_quit_when_only_watching(make_app, world) -> None:
    journal, _ = world
    journal.transition_compute("cmp-05", "upgrading", "batch 2")
    app = make_app(owns=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("q")
        await settle(pilot)
    assert app.return_code == 0


async def test_event_log_filters_by_level_kind_and_words(make_app, world) -> None:
    journal, _ = world
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("6")
        await settle(pilot)
        table = app.screen.query_one(EventTable)
        assert table.row_count == len(app.state.events)
        await pilot.press("slash")
        app.screen.query_one("#event-filter", Input).value = "level:error"
        await pilot.press("enter")
        assert [str(table.get_row_at(i)[3]) for i in range(table.row_count)] == \
            ["cmp-04: upgrading -> failed (restart failed (exit 1))"]
        await pilot.press("slash")
        app.screen.query_one("#event-filter", Input).value = "kind:compute cmp-02"
        await pilot.press("enter")
        assert table.row_count == 3  # queued, upgrading, upgraded
        # new events arrive filtered too
        journal.event("compute", "cmp-02: probed again")
        journal.event("runsync", "cmp-02 mentioned by run-sync")
        app.action_refresh_now()
        await settle(pilot, refreshes=2)
        assert str(table.get_row_at(table.row_count - 1)[3]) == "cmp-02: probed again"


async def test_next_step_key_runs_the_next_phase_after_confirmation(tmp_path) -> None:
    from issu_tui.app import IssuApp
    from screens.dialogs import StepConfirm
    from tests.tui.tui_world import build_journal, config_for, make_backend

    journal = build_journal(tmp_path, computes=4, phase="plan", upgraded=0, failed=0)
    app = IssuApp(make_backend(journal, config_for(tmp_path)), refresh_interval=3600,
                  analytics_interval=3600)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            await pilot.press("n")
            await settle(pilot)
            assert isinstance(app.screen, StepConfirm)
            assert app.screen.title_text == "Run preflight?"
            assert app.focused is app.screen.query_one("#no", Button)  # defaults to No
            await pilot.press("enter")  # No: nothing asked
            await settle(pilot)
            assert journal.intents(None) == []
            await pilot.press("n")
            await settle(pilot)
            await pilot.press("tab", "enter")  # Yes
            await settle(pilot, refreshes=2)
            assert [(i.kind, i.args) for i in journal.intents(None)] == [
                ("phase", {"target": "preflight"})]
            assert app.state.snapshot.phase.next_action.startswith("wait: preflight")
            await pilot.press("n")  # while it runs, n says what it waits for
            await settle(pilot)
            assert not isinstance(app.screen, StepConfirm)
            assert "wait: preflight is queued" in [n.message for n in app._notifications][-1]
    finally:
        journal.close()


async def test_verify_key_asks_then_queues_a_verify(make_app, world) -> None:
    from screens.dialogs import StepConfirm

    journal, _ = world
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("V")
        await settle(pilot)
        assert isinstance(app.screen, StepConfirm)
        await pilot.press("tab", "enter")
        await settle(pilot, refreshes=2)
        assert [i.kind for i in journal.intents(None)] == ["verify"]
        await pilot.press("V")  # one verify at a time
        await settle(pilot)
        assert not isinstance(app.screen, StepConfirm)
        assert [i.kind for i in journal.intents(None)] == ["verify"]


async def test_sync_screen_shows_no_sparkline_before_there_is_lag(tmp_path) -> None:
    from textual.widgets import Sparkline

    from issu_tui.app import IssuApp
    from issu_tui.console_api import ConsoleOptions
    from issu_tui.journal import Journal
    from tests.tui.tui_world import config_for

    journal = Journal.open(tmp_path)
    journal.set_phase("pre-sync")
    journal.mark_slice_done("pre-sync", "config_db_uuid.obj_uuid_table", "4:0", 100)
    backend = ConsoleBackend(config_for(tmp_path), journal, ConsoleOptions(owns_executor=True))
    app = IssuApp(backend, refresh_interval=3600, analytics_interval=3600)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await pilot.press("3")
            await settle(pilot)
            assert not app.screen.query_one(Sparkline).display
            table = app.screen.query_one("#sync-tables")
            assert str(table.get_cell("presync:config_db_uuid.obj_uuid_table", "to_copy")) == \
                "3 slices"
            journal.set_counters("runsync", {"lag_s": 0.5})
            app.action_refresh_now()
            await settle(pilot, refreshes=2)
            assert app.screen.query_one(Sparkline).display
    finally:
        journal.close()


async def test_computes_listed_in_natural_order_everywhere(tmp_path) -> None:
    """compute-2 before compute-10: the upgrade `n` offers (and the batches it asks), the
    rollback dialog with what it skips, the analytics tables."""
    from issu_tui.app import IssuApp
    from issu_tui.journal import Journal
    from screens.widgets.panes import _vrouter_table
    from tests.tui.tui_world import config_for, frozen_analytics, make_backend

    journal = Journal.open(tmp_path)
    journal.set_phase("computes")
    for i in (10, 1, 11, 2, 3):
        journal.upsert_compute(f"compute-{i}", f"127.36.1.{i}", version="4.1.0",
                               cluster="old")
    for name in ("compute-11", "compute-2"):
        journal.transition_compute(name, "upgraded", "healthy on new", version="5.0.0",
                                   cluster="new")
    natural = ["compute-1", "compute-2", "compute-3", "compute-10", "compute-11"]
    app = IssuApp(make_backend(journal, config_for(tmp_path)), refresh_interval=3600,
                  analytics_interval=3600)
    try:
        async with app.run_test(size=(160, 50)) as pilot:
            await settle(pilot)
            app._apply_analytics(frozen_analytics(journal), None)
            await pilot.press("n")
            await settle(pilot)
            dialog = app.screen
            assert isinstance(dialog, MoveConfirm)
            assert str(dialog.query_one("#move-list").render()) == \
                "compute-1, compute-3, compute-10"
            await pilot.press("tab", "enter")
            await settle(pilot, refreshes=2)
            assert journal.intents("pending")[0].args["computes"] == \
                ["compute-1", "compute-3", "compute-10"]

            await pilot.press("a")  # mark every compute shown, then r
            await pilot.press("r")
            await settle(pilot)
            dialog = app.screen
            assert isinstance(dialog, MoveConfirm)
            assert dialog.computes == ["compute-2", "compute-11"]
            assert [name for name, _ in dialog.skipped] == \
                ["compute-1", "compute-3", "compute-10"]
            await pilot.press("escape")
            await settle(pilot)

            await pilot.press("4")
            await settle(pilot)
            table = app.screen.query_one("#consolidated")
            assert [str(table.get_row_at(i)[0]) for i in range(table.row_count)] == natural
            old = _vrouter_table(app.state.analytics, "old").columns[0]
            assert list(old.cells) == ["compute-1", "compute-3", "compute-10"]
    finally:
        journal.close()


async def test_dashboard_event_log_keeps_its_messages_readable_at_80_columns(make_app) -> None:
    """At 80x24 the dashboard's log shows time and message (about 30 characters of it, the
    level as its colour); wide, level and kind come back; the Events screen has them all."""
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(EventTable)
        assert [str(c.label) for c in table.columns.values()] == ["Time", "Message"]
        assert table.row_count == len(app.state.events)
        # what is left of the pane for the message (was 13 beside level and kind)
        assert table.scrollable_content_region.width - \
            table.columns["at"].get_render_width(table) >= 28
        await pilot.resize_terminal(160, 50)
        await settle(pilot)
        assert [str(c.label) for c in table.columns.values()] == \
            ["Time", "Level", "Kind", "Message"]
        assert table.row_count == len(app.state.events)
        await pilot.press("6")
        await settle(pilot)
        await pilot.resize_terminal(80, 24)
        await settle(pilot)
        full = app.screen.query_one(EventTable)
        assert [str(c.label) for c in full.columns.values()] == \
            ["Time", "Level", "Kind", "Message"]


def test_analytics_pane_keeps_one_line_per_fact_at_80_columns() -> None:
    """12 vrouters and 12 alarms on one cluster made its line wrap at 80 columns, pushing
    the merged alarms off the 4-line pane: each line stays one line."""
    from rich.console import Console

    from backends.analytics import Alarm, AnalyticsSnapshot, ClusterAnalytics
    from screens.widgets.panes import analytics_summary

    alarms = tuple(Alarm("old", "vrouter", f"compute-{i}", "xmpp", 1, "down", False, 0.0)
                   for i in range(12))
    old = ClusterAnalytics("old", "http://o", 0.0, vrouters={f"compute-{i}": None
                                                             for i in range(12)},
                           control_nodes=("ctl-old",), alarms=alarms)
    new = ClusterAnalytics("new", "http://n", 0.0, control_nodes=("ctl-new",))
    snap = AnalyticsSnapshot({"old": old, "new": new}, {}, alarms, 0.0)
    console = Console(width=32, record=True)
    console.print(analytics_summary(snap, None))
    lines = console.export_text().splitlines()
    assert len(lines) == 4 and lines[-1].startswith("alarms: 12 merged"), lines
