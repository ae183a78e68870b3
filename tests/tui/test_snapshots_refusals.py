"""SVG snapshots of the dialogs that refuse: nothing eligible, a refused letter, a mistyped
word. Update as in test_snapshots.py (`--snapshot-update`, then look at the SVGs)."""

from __future__ import annotations

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from issu_tui.app import IssuApp
from tests.tui.test_snapshots import prepare

TO_CMP_06 = ("j",) * 5  # the first old compute below cmp-01..04 (upgraded, failed)


def painted_then(keys: tuple[str, ...]):
    """The dashboard painted whole (first snapshot, analytics, event log at its head) before
    any key: a dialog opened at once would otherwise show, behind it, a half-drawn grid on a
    loaded machine."""
    painted = prepare(())

    async def run_before(pilot: Pilot) -> None:
        app = pilot.app
        assert isinstance(app, IssuApp)
        await painted(pilot)
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()
        for key in keys:
            await pilot.press(key)
            await app.workers.wait_for_complete()
            await pilot.pause()
        for box in app.screen.query(Input):
            box.cursor_blink = False
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", [(80, 24)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("dialog,keys", [
    ("rollback-none-eligible", (*TO_CMP_06, "r")),
    ("batch-size-refused", (*TO_CMP_06, "u", "shift+tab", "shift+tab", "end", "x")),
    ("abort-mistyped", ("X", "a", "b", "r", "t")),
])
def test_refusing_dialog(snap_compare, make_app, dialog: str, keys: tuple[str, ...],
                         size: tuple[int, int]) -> None:
    assert snap_compare(make_app(), terminal_size=size, run_before=painted_then(keys))
