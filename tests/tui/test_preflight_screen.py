"""`c`: the preflight results screen, from the intent the executor finished."""

from __future__ import annotations

import json

from textual.widgets import DataTable

from issu_tui.console_api import preflight_view
from screens.preflight import PreflightScreen
from tests.tui.conftest import settle
from tests.tui.test_console_runsync import footer_keys
from tests.tui.tui_world import add_preflight


async def test_a_refused_preflight_is_said_and_c_shows_each_check_and_its_fix(
        make_app, world) -> None:
    journal, _ = world
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "c" not in footer_keys(app)
        await pilot.press("c")  # none yet: says so
        await settle(pilot)
        assert not isinstance(app.screen, PreflightScreen)
        assert "no preflight has run yet" in [n.message for n in app._notifications][-1]

        add_preflight(journal)  # the executor finished a preflight that refused
        app.action_refresh_now()
        await settle(pilot, refreshes=2)
        said = [n.message for n in app._notifications][-1]
        assert said.startswith("preflight refused: 3 passed, 2 failed, 1 warning. Press c")
        assert footer_keys(app).get("c") == "Checks"
        await pilot.press("c")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, PreflightScreen)
        table = screen.query_one("#preflight-checks", DataTable)
        rows = [[str(cell) for cell in table.get_row_at(i)][:2] for i in range(table.row_count)]
        assert rows[:3] == [["FAIL", "disk new 127.36.0.12"], ["FAIL", "ssh cmp-07"],
                            ["warn", "writers on new"]]
        assert "fix: free 6.4 GiB on 127.36.0.12" in screen._detail(0).plain
        await pilot.press("down")
        await settle(pilot)
        shown = screen._detail(table.cursor_row).plain
        assert "found: host key for 127.36.1.8 not in known_hosts" in shown
        assert "fix: ssh-keyscan -t ed25519 127.36.1.8" in shown
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, PreflightScreen)


async def test_a_passed_preflight_stays_out_of_the_footer_but_c_opens_it(
        make_app, world) -> None:
    journal, _ = world
    add_preflight(journal, passed=True)
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "c" not in footer_keys(app)
        await pilot.press("c")
        await settle(pilot)
        assert isinstance(app.screen, PreflightScreen)
        assert app.screen.view.summary == "6 passed"


def test_a_preflight_that_could_not_run_says_why(world) -> None:
    journal, _ = world
    intent = journal.add_intent("phase", {"target": "preflight"}, "tui:test")
    journal.finish_intent(intent, "failed", json.dumps(
        {"ok": False, "error": "journal: database is locked"}))
    view = preflight_view(journal.last_intents("phase"))
    assert view is not None and view.status == "failed" and view.checks == ()
    assert view.summary == "preflight failed: journal: database is locked"
    # a later phase intent without checks (pair) leaves the preflight's results in view
    add_preflight(journal)
    later = journal.add_intent("phase", {"target": "pair"}, "tui:test")
    journal.finish_intent(later, "done", json.dumps({"ok": True, "done": ["pair: ok"]}))
    view = preflight_view(journal.last_intents("phase"))
    assert view is not None and view.status == "refused" and len(view.checks) == 6
