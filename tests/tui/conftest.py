"""Fixtures for the console's tests: a real journal in tmp_path, a backend, the App."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.worker import WorkerCancelled

from issu_tui.app import IssuApp
from issu_tui.config import IssuConfig
from issu_tui.journal import Journal
from tests.tui.tui_world import build_journal, config_for, make_backend

# Times on screen are local; pin the zone so every run renders the same.
os.environ["TZ"] = "UTC"
time.tzset()


@pytest.fixture
def world(tmp_path: Path) -> tuple[Journal, IssuConfig]:
    journal = build_journal(tmp_path, computes=12)
    yield journal, config_for(tmp_path)
    journal.close()


@pytest.fixture
def make_app(world: tuple[Journal, IssuConfig]) -> Callable[..., IssuApp]:
    journal, config = world

    def make(*, read_only: bool = False, owns: bool = True, **kwargs: object) -> IssuApp:
        backend = make_backend(journal, config, read_only=read_only, owns=owns)
        return IssuApp(backend, refresh_interval=3600, analytics_interval=3600, **kwargs)

    return make


async def settle(pilot: Pilot, refreshes: int = 1) -> None:
    """Wait for the workers and the resulting screen updates (no wall-clock sleeps)."""
    app = pilot.app
    assert isinstance(app, IssuApp)
    for _ in range(200):
        # a key that quits cancels the workers still running (a poll, on a busy box):
        # they are finished too, and the app is on its way out
        with contextlib.suppress(WorkerCancelled):
            await app.workers.wait_for_complete()
        await pilot.pause()
        if app.refreshes >= refreshes and all(w.is_finished for w in app.workers):
            break
    await pilot.pause()
