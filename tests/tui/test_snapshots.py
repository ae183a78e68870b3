"""SVG snapshots of every screen at 80x24 and 160x50, with frozen data.

Update after an intended change: `pytest tests/tui/test_snapshots.py --snapshot-update`
(then look at the SVGs: the report shows the differences).
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input
from textual.widgets._footer import FooterKey

from issu_tui.app import IssuApp
from screens.widgets.events import EventTable
from screens.widgets.footer import ConsoleFooter, shown_keys
from tests.tui.tui_world import frozen_analytics

SIZES = [(80, 24), (160, 50)]
SCREEN_KEYS = {"dashboard": "1", "phase": "2", "sync": "3", "analytics": "4",
               "computes": "5", "events": "6"}


def prepare(keys: tuple[str, ...] = ()):
    async def run_before(pilot: Pilot) -> None:
        app = pilot.app
        assert isinstance(app, IssuApp)
        while not app.refreshes:
            await pilot.pause(0.01)
        app._apply_analytics(frozen_analytics(app.backend.journal), None)
        for key in keys:
            await pilot.press(key)
            await app.workers.wait_for_complete()
            await pilot.pause()
        for box in app.screen.query(Input):
            box.cursor_blink = False
        await pilot.pause()
        # The event log follows its tail once laid out, and where the scrollbar thumb lands
        # then depends on timing on a loaded machine: show its head, which is exact.
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()
        for table in app.screen.query(EventTable):
            table.move_cursor(row=0, animate=False)
            table.scroll_home(animate=False, immediate=True)
        await pilot.pause()
        await _footer_settled(pilot)
        await _screen_settled(pilot)

    return run_before


async def _screen_settled(pilot: Pilot, timeout: float = 10.0) -> None:
    """Two screenshots 0.1 s apart alike: on a loaded machine a table's columns can still be
    at their first width (the event log's `00:0`) when the pauses above end."""
    app = pilot.app
    shot = app.export_screenshot()
    for _ in range(int(timeout / 0.1)):
        await pilot.pause(0.1)
        again = app.export_screenshot()
        if again == shot:
            return
        shot = again


async def _footer_settled(pilot: Pilot, timeout: float = 5.0) -> None:
    """The key bar recomposes after the next refresh once the bindings changed (a dialog
    closed, a filter applied): on a loaded machine that comes after the pauses above, and
    the snapshot caught the bar of the moment before (a lone "/ Find")."""
    screen = pilot.app.screen
    for _ in range(int(timeout / 0.05)):
        footers = list(screen.query(ConsoleFooter))
        wanted = [key for key, _, action, _, _ in shown_keys(screen)
                  if action != "command_palette"]  # drawn apart, and not at every width
        if all([k.key for k in f.query(FooterKey) if k.action != "command_palette"] == wanted
               for f in footers):
            return
        await pilot.pause(0.05)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("screen", list(SCREEN_KEYS))
def test_screen(snap_compare, make_app, screen: str, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(), terminal_size=size,
                        run_before=prepare((SCREEN_KEYS[screen],)))


@pytest.mark.parametrize("dialog,keys", [
    ("upgrade-confirm", ("j", "j", "j", "j", "space", "space", "space", "u")),
    ("abort-typed", ("X",)),
    ("help", ("question_mark",)),
    ("detail", ("j", "j", "j", "enter")),
    ("filter", ("slash", "s", "t", "a", "t", "e", ":", "o", "l", "d", "enter")),
])
def test_dialog(snap_compare, make_app, dialog: str, keys: tuple[str, ...]) -> None:
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=prepare(keys))


def test_read_only_dashboard(snap_compare, make_app) -> None:
    assert snap_compare(make_app(read_only=True), terminal_size=(80, 24), run_before=prepare())


_TEXT_RUN = re.compile(r'<text class="[^"]*" x="([\d.]+)" y="([\d.]+)" textLength="([\d.]+)"'
                       r'[^>]*>([^<]*)</text>')
SVGS = sorted((Path(__file__).parent / "__snapshots__").rglob("*.svg")) + \
    sorted((Path(__file__).resolve().parents[2] / "docs" / "screenshots").glob("*.svg"))


def glued_words(svg: str) -> list[str]:
    """Runs that start with a space right after a word: librsvg (and others) drop a run's
    leading spaces, so "computes" + " for" reads "computesfor". Box-drawing characters are
    left out (Textual's own border titles)."""
    lines: dict[str, list[tuple[float, float, str]]] = {}
    for x, y, length, text in _TEXT_RUN.findall(svg):
        lines.setdefault(y, []).append(
            (float(x), float(length), html.unescape(text).replace("\xa0", " ")))
    found = []
    for runs in lines.values():
        ends = {round(x + length, 1): text for x, length, text in runs}
        for x, _length, text in runs:
            before = ends.get(round(x, 1), "")
            if text[:1] == " " and text.strip() and before[-1:].strip() \
                    and not "\u2500" <= before[-1] <= "\u259f":
                found.append(f"{before!r} + {text!r}")
    return found


@pytest.mark.parametrize("svg", SVGS, ids=lambda p: p.name)
def test_no_glued_words(svg: Path) -> None:
    assert glued_words(svg.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_preflight_results(snap_compare, make_app, world, size: tuple[int, int]) -> None:
    """`c`: each check, its result, what it found and the fix, failures first."""
    from tests.tui.tui_world import add_preflight

    add_preflight(world[0])
    assert snap_compare(make_app(), terminal_size=size, run_before=prepare(("c",)))
