"""SVG snapshots of looks the frozen world of test_snapshots.py does not have: a pre-sync under
way (per-table bars, speed, ETA) and analytics that stopped answering (the stale look).
Update as in test_snapshots.py (`--snapshot-update`, then look at the SVGs)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot

from issu_tui.app import IssuApp
from issu_tui.journal import Journal
from tests.tui.test_snapshots import prepare
from tests.tui.test_snapshots_refusals import painted_then
from tests.tui.tui_world import NOW, config_for, frozen_analytics, make_backend, pin_times

SIZES = [(80, 24), (160, 50)]
UUID = "config_db_uuid"


def presync_journal(state_dir: Path) -> Journal:
    """Pre-sync half-way: two tables copied, the third at 40 of 64 slices (one every 2 s,
    the newest 5 s ago), the fourth not reached yet."""
    journal = Journal.open(state_dir)
    journal.set_phase("plan", from_version="4.1.0", to_version="5.0.0", note="planned")
    for phase in ("preflight", "pair", "pre-sync"):
        journal.set_phase(phase, note=f"{phase} started")
    for i in range(1, 7):
        journal.upsert_compute(f"cmp-{i:02d}", f"127.36.1.{i + 1}", version="4.1.0",
                               cluster="old")
    for table, slices, done in (("obj_fq_name_table", 16, 16), ("obj_shared_table", 4, 4),
                                ("obj_uuid_table", 64, 40)):
        for i in range(done):
            journal.mark_slice_done("pre-sync", f"{UUID}.{table}", f"{slices}:{i}", 750)
    pin_times(journal)
    with journal.transaction() as db:
        db.execute("UPDATE checkpoints SET at = ? WHERE table_name != ?",
                   (NOW - 600, f"{UUID}.obj_uuid_table"))
        db.execute("UPDATE checkpoints SET at = ? + 2 * CAST(substr(slice_id, 4) AS INTEGER) "
                   "WHERE table_name = ?", (NOW - 83, f"{UUID}.obj_uuid_table"))
    return journal


@pytest.fixture
def presync_app(tmp_path: Path) -> IssuApp:
    journal = presync_journal(tmp_path)
    yield IssuApp(make_backend(journal, config_for(tmp_path), lag_history=False),
                  refresh_interval=3600, analytics_interval=3600)
    journal.close()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_sync_screen_during_presync(snap_compare, presync_app: IssuApp,
                                    size: tuple[int, int]) -> None:
    """A bar per table of the slices copied out of its slices, cells/s, the table's ETA."""
    assert snap_compare(presync_app, terminal_size=size, run_before=prepare(("3",)))


def stale_then(keys: tuple[str, ...]) -> Callable[[Pilot], object]:
    """The frozen analytics answered 2m05s ago, then a poll failed on both clusters."""
    painted = prepare(())

    async def run_before(pilot: Pilot) -> None:
        app = pilot.app
        assert isinstance(app, IssuApp)
        await painted(pilot)
        fresh = frozen_analytics(app.backend.journal)
        old = dataclasses.replace(
            fresh, fetched_at=NOW - 125,
            clusters={name: dataclasses.replace(c, fetched_at=NOW - 125)
                      for name, c in fresh.clusters.items()})
        app._apply_analytics(old, None)
        app._apply_analytics(None, "old: connection refused; new: timed out after 5s")
        for key in keys:
            await pilot.press(key)
            await app.workers.wait_for_complete()
            await pilot.pause()
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("screen,key", [("dashboard", "1"), ("analytics", "4")])
def test_stale_analytics(snap_compare, make_app, screen: str, key: str,
                         size: tuple[int, int]) -> None:
    """What is shown is the last answer, said STALE with its age; agents' states `?`."""
    assert snap_compare(make_app(), terminal_size=size, run_before=stale_then((key,)))


@pytest.mark.parametrize("dialog,keys", [
    ("verify-confirm", ("V",)),           # a StepConfirm (as n's phases and R use)
    ("upgrade-next", ("n",)),             # n: every compute left on old, in natural order
])
def test_step_dialogs(snap_compare, make_app, dialog: str, keys: tuple[str, ...]) -> None:
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=painted_then(keys))


def test_quit_refused_notice(snap_compare, make_app, world) -> None:
    """q while this console runs work: the notice that says how to hand it over."""
    world[0].transition_compute("cmp-05", "upgrading", "batch 2")
    pin_times(world[0])
    assert snap_compare(make_app(owns=True), terminal_size=(80, 24),
                        run_before=painted_then(("q",)))


@pytest.fixture
def upgraded_app(tmp_path: Path) -> IssuApp:
    from tests.tui.tui_world import build_journal

    journal = build_journal(tmp_path, computes=12, upgraded=12, failed=0)
    yield IssuApp(make_backend(journal, config_for(tmp_path)), refresh_interval=3600,
                  analytics_interval=3600)
    journal.close()


def test_finalize_dialog(snap_compare, upgraded_app: IssuApp) -> None:
    """n once every compute is upgraded: the typed confirmation of finalize."""
    assert snap_compare(upgraded_app, terminal_size=(80, 24), run_before=painted_then(("n",)))
