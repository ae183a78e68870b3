"""The compute grid with thousands of computes: it renders what is on screen and nothing else,
and the cursor, marks and filter work on the index, whatever the size of the fleet."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input

from issu_tui.app import IssuApp
from issu_tui.journal import Journal
from screens.widgets.computes import ComputeGrid
from tests.tui.conftest import settle
from tests.tui.tui_world import build_journal, config_for, make_backend

FLEET = 3000


@pytest.fixture
def fleet(tmp_path: Path) -> Journal:
    """A journal with 3,000 computes named without padding (compute-1 ... compute-3000)."""
    journal = build_journal(tmp_path, computes=0, events=5)
    with journal.transaction():  # one commit for the lot
        for i in range(FLEET, 0, -1):
            journal.upsert_compute(f"compute-{i}", f"127.40.{i // 250}.{i % 250 + 1}",
                                   version="4.1.0", cluster="old")
        # the widest values come first, so that no column widens under the tests' changes
        journal.transition_compute(f"compute-{FLEET}", "rolling-back", batch=10,
                                   last_action="rollback", gap_ms=999.0)
    yield journal
    journal.close()


def fleet_app(journal: Journal, tmp_path: Path) -> IssuApp:
    return IssuApp(make_backend(journal, config_for(tmp_path)), refresh_interval=3600,
                   analytics_interval=3600)


class LineCounter:
    """Counts the grid's rendered lines (render_line is the only way a row reaches the
    screen)."""

    def __init__(self, grid: ComputeGrid) -> None:
        self.names: list[str | None] = []
        render = grid.render_line

        def counted(y: int) -> object:
            index = int(grid.scroll_y) + y - 1
            self.names.append(grid.view.shown[index] if 0 <= index < len(grid.view)
                              else None)
            return render(y)

        grid.render_line = counted  # type: ignore[method-assign]


async def test_a_refresh_renders_only_the_changed_rows_on_screen(fleet, tmp_path) -> None:
    app = fleet_app(fleet, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        grid = app.screen.query_one(ComputeGrid)
        assert grid.shown()[:3] == ["compute-1", "compute-2", "compute-3"]  # natural order
        assert len(grid.shown()) == FLEET
        assert [str(key.value) for key in grid.rows] == grid.shown()  # as DataTable's rows
        on_screen = grid.shown()[:10]
        counter = LineCounter(grid)
        for i in range(100, 3000, 100):  # 29 computes off screen change, and one on screen
            fleet.transition_compute(f"compute-{i}", "queued", "intent #1", batch=1)
        fleet.transition_compute(on_screen[4], "upgrading", "batch 1")
        app.action_refresh_now()
        await settle(pilot, refreshes=2)
        assert str(grid.get_cell(on_screen[4], "state")) == "upgrading"
        assert str(grid.get_cell("compute-2900", "state")) == "queued"
        assert set(counter.names) <= {on_screen[4]}  # that row only, nothing off screen
        assert counter.names
        counter.names.clear()
        await pilot.press("j")
        await pilot.pause()
        assert set(counter.names) <= set(on_screen[:2])  # the old and the new cursor rows
        await pilot.click(ComputeGrid, offset=(3, 4))  # the header is line 0
        assert grid.current_name() == on_screen[3]


async def test_cursor_marks_and_filter_at_scale(fleet, tmp_path) -> None:
    app = fleet_app(fleet, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        grid = app.screen.query_one(ComputeGrid)
        await pilot.press("ctrl+end")
        assert grid.current_name() == f"compute-{FLEET}"
        assert grid.scroll_y == grid.max_scroll_y  # the cursor row is on screen
        await pilot.press("space")
        await pilot.press("ctrl+home", "pagedown")
        page = grid.cursor_row
        assert page > 5 and grid.current_name() == f"compute-{page + 1}"
        await pilot.press("shift+down", "shift+down")
        assert grid.marks == {f"compute-{FLEET}", f"compute-{page + 1}",
                              f"compute-{page + 2}", f"compute-{page + 3}"}

        # the filter: the cursor stays on its compute when it is still shown
        await pilot.press("k")
        current = grid.current_name()
        await pilot.press("slash")
        app.screen.query_one("#compute-filter", Input).value = "compute-1"
        await pilot.press("enter")
        assert grid.current_name() == current == f"compute-{page + 2}"
        assert len(grid.shown()) == 1 + 10 + 100 + 1000  # 1, 10-19, 100-199, 1000-1999
        await pilot.press("U", "a")
        assert len(grid.marks) == 1111 and f"compute-{FLEET}" not in grid.marks

        # computes leaving the filter above the cursor: it stays on the same compute
        for name in grid.shown()[: grid.cursor_row]:
            fleet.transition_compute(name, "upgraded", "test", version="5.0.0")
        await pilot.press("slash")
        app.screen.query_one("#compute-filter", Input).value = "compute-1 version:4.1"
        await pilot.press("enter")
        app.action_refresh_now()
        await settle(pilot, refreshes=2)
        assert grid.current_name() == current and grid.cursor_row == 0

        # marks made on one screen show on the other's grid
        await pilot.press("5")
        await settle(pilot)
        other = app.screen.query_one(ComputeGrid)
        assert other is not grid and other.current_name() == "compute-1"
        await pilot.press("U", "space")
        await pilot.press("1")
        await settle(pilot)
        assert grid.marks == {"compute-1"}
        assert "●" not in grid.render_line(1 + grid.cursor_row).text  # compute-1 is hidden
        await pilot.press("escape", "slash", "escape", "ctrl+home")
        await pilot.pause()
        assert grid.current_name() == "compute-1"
        assert "●" in grid.render_line(1).text


async def test_home_end_pages_move_the_cursor_and_s_cycles_the_order(fleet, tmp_path) -> None:
    app = fleet_app(fleet, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        grid = app.screen.query_one(ComputeGrid)
        grid.focus()
        await pilot.press("end")
        assert grid.current_name() == f"compute-{FLEET}"
        assert grid.scroll_y > 0  # the cursor's row is on screen
        await pilot.press("home")
        assert grid.current_name() == "compute-1" and grid.scroll_y == 0
        await pilot.press("pagedown")
        below = grid.cursor_row
        assert below > 0
        await pilot.press("pageup")
        assert grid.cursor_row == 0
        await pilot.press("S")  # by state: the one rolling back before the old ones
        assert grid.view.sort == "state"
        assert grid.view.shown[0] == f"compute-{FLEET}"
        assert grid.current_name() == "compute-1"  # the cursor stays on its compute
        await pilot.press("S", "S", "S", "S")  # version, cluster, gap, back to name
        assert grid.view.sort == "name" and grid.view.shown[:2] == ["compute-1", "compute-2"]


async def test_narrow_grid_leaves_out_columns_instead_of_scrolling_sideways(make_app) -> None:
    """At 80 columns the grid shows what matters without a sideways scroll (Address and
    Last action are left out; the detail screen has them); wide, every column shows; a
    resize fits it again."""
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        grid = app.screen.query_one(ComputeGrid)
        assert grid.columns_shown == ("mark", "name", "state", "version", "cluster", "agent",
                                      "gap", "batch")
        assert grid.virtual_size.width <= grid.scrollable_content_region.width
        assert grid.max_scroll_x == 0
        header = grid.render_line(0).text
        assert "Agent" in header and "Address" not in header
        await type_filter_addr(pilot, "addr:127.36.1.5")  # a hidden column still filters
        assert grid.shown() == ["cmp-04"]
        await pilot.resize_terminal(200, 50)
        await settle(pilot)
        grid = app.screen.query_one(ComputeGrid)
        assert grid.columns_shown[-2:] == ("address", "last")
        assert "Last action" in grid.render_line(0).text


async def type_filter_addr(pilot, text: str) -> None:
    await pilot.press("slash")
    pilot.app.screen.query_one("#compute-filter", Input).value = text
    await pilot.press("enter")
    await settle(pilot)
