"""At 80 columns the footer shows every key that acts, whole (it once ended in `q Qu`)."""

from __future__ import annotations

from itertools import pairwise

from textual.widgets import Footer

from tests.tui.conftest import settle


def _footer_keys(app) -> dict[str, int]:
    """Each footer key's label and where it ends; fails if two keys overlap (the palette's
    key is docked right and covered what did not fit)."""
    footer = app.screen.query_one(Footer)
    shown = sorted((k.region.x, k.region.right, f"{k.key_display} {k.description}")
                   for k in footer.query("FooterKey") if k.display)
    for (_, right, label), (x, _, next_label) in pairwise(shown):
        assert right <= x, f"{label!r} is covered by {next_label!r}"
    return {label: right for _, right, label in shown}


async def test_every_acting_key_fits_at_80_columns(make_app, world) -> None:
    from issu_tui.orchestrator.phases import phase_marker

    journal, _ = world
    journal.mark_step(phase_marker("run-sync"))  # run-sync runs: R can stop it
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        keys = _footer_keys(app)
        assert {"? Help", "u Upgrade", "r Rollback", "R Sync off", "X Abort",
                "q Quit"} <= set(keys), keys
        assert max(keys.values()) <= 80, keys
        for row in journal.computes():  # every compute upgraded: F appears too
            if row.state != "upgraded":
                journal.transition_compute(row.name, "upgraded", "test", version="5.0.0",
                                           cluster="new")
        app.action_refresh_now()
        await settle(pilot, refreshes=2)
        await pilot.pause()
        keys = _footer_keys(app)
        assert {"F Finalize", "q Quit"} <= set(keys)
        assert max(keys.values()) <= 80, keys


async def test_wide_footer_keeps_the_palette_key(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        assert app.screen.query_one(Footer).show_command_palette
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert not app.screen.query_one(Footer).show_command_palette


def test_the_status_stays_in_sight_at_80_columns() -> None:
    """READ-ONLY (and the other statuses) after the tabs: at 80 columns the longer titles
    shorten so that it is not cut off; wide, the full titles."""
    from screens.console import tabs

    narrow = tabs("dashboard", "READ-ONLY", 80).plain
    assert narrow.rstrip().endswith("READ-ONLY") and len(narrow) <= 80
    assert "1 Dash " in narrow and "6 Events" in narrow
    assert "1 Dashboard" in tabs("dashboard", "READ-ONLY", 160).plain
    assert "1 Dashboard" in tabs("dashboard", "", 80).plain  # nothing to make room for
    long = tabs("sync", "READ-ONLY · refresh paused (p) · journal: database is locked", 80)
    assert long.cell_len <= 80 and long.plain.endswith("…")
