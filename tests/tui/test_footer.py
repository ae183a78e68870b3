"""The key bar: shows the keys that work, recomposed only when they change, held while a
filter is typed."""

from __future__ import annotations

from textual.widgets import Input
from textual.widgets._footer import FooterKey

from screens.widgets.footer import ConsoleFooter
from tests.tui.conftest import settle


def footer_keys(app) -> list[str]:
    footer = app.screen.query_one(ConsoleFooter)
    return [key.key for key in footer.query(FooterKey)]


async def test_footer_follows_the_keys_that_work(make_app, world) -> None:
    journal, _ = world
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await pilot.pause()
        grid_keys = footer_keys(app)
        assert grid_keys[:2] == ["space", "slash"] and "F" not in grid_keys
        before = app.screen.query_one(ConsoleFooter).query(FooterKey).first()

        await pilot.press("slash", *"cmp-1")  # typing a filter: the bar keeps its keys
        await pilot.pause()
        assert isinstance(app.focused, Input) and footer_keys(app) == grid_keys
        await pilot.press("enter")
        await pilot.pause()
        assert footer_keys(app) == grid_keys
        # nothing changed: the same key widgets, not composed again
        assert app.screen.query_one(ConsoleFooter).query(FooterKey).first() is before

        # finalize becomes allowed: its key appears
        for row in journal.computes():
            if row.state != "upgraded":
                journal.transition_compute(row.name, "upgraded", "test")
        app.action_refresh_now()
        await settle(pilot, refreshes=2)
        await pilot.pause()
        assert "F" in footer_keys(app)

        await pilot.press("6")  # another screen, its own keys
        await settle(pilot)
        await pilot.pause()
        assert "space" not in footer_keys(app) and "F" in footer_keys(app)
