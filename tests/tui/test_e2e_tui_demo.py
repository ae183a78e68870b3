"""A whole demo upgrade driven from the console, by keys only, from phase `plan` to `done`.

The demo world (tests/orch_world.py: v1 seeded, every compute on v1, v2 empty and fenced) is
given to a console that runs the executor inside itself; no command line in between. `n`
runs each next safe step after its confirmation (preflight, pair, pre-sync, run-sync, then
the upgrade of every compute with batch size and parallelism set in the dialog), `c` shows
the preflight's checks, `R` stops run-sync (a tenant created on v1 meanwhile waits in its
queue) and starts it again (the tenant reaches v2), `r` rolls one back, `u` upgrades it
again, `V` verifies, and `n` finalizes with the typed word. The outcome is read back from the
journal and from both clusters' analytics-api.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from demo.services import Endpoints
from issu_tui.app import IssuApp
from issu_tui.config import load_config
from issu_tui.console_api import ConsoleBackend
from issu_tui.tui_cli import EmbeddedOrchestrator
from screens.dialogs import MoveConfirm, StepConfirm, TypedConfirm
from screens.preflight import PreflightScreen
from screens.widgets.computes import ComputeGrid
from tests.orch_world import fresh_world, seed, stop_world

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

COMPUTES = ("compute-1", "compute-2", "compute-3")
V1, V2 = "4.1.0", "5.0.0"


@pytest.fixture(scope="module")
def demo_world(services: Endpoints) -> Iterator[Any]:
    w = fresh_world(services, computes=len(COMPUTES), install_s=0.3, seed_projects=1)
    yield w
    stop_world(w)


async def until(pilot: Pilot, check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Let the console run until `check()` holds (polls every 0.2 s of its own loop)."""
    for _ in range(int(timeout_s / 0.2)):
        result = check()
        if result:
            return result
        await pilot.pause(0.2)
    app = pilot.app
    assert isinstance(app, IssuApp)
    recent = [f"{e.kind}: {e.message}" for e in list(app.state.events)[-15:]]
    raise AssertionError(f"not reached within {timeout_s}s: {what}\nlast events:\n"
                         + "\n".join(recent))


def grid_states(app: IssuApp) -> dict[str, tuple[str, str]]:
    """What the compute grid shows: name -> (state, version)."""
    grid = app.screen.query_one(ComputeGrid)
    return {name: (str(grid.get_cell(name, "state")), str(grid.get_cell(name, "version")))
            for name in COMPUTES if name in {str(k.value) for k in grid.rows}}


async def replace(pilot: Pilot, text: str) -> None:
    """Type into the focused Input over what it holds."""
    await pilot.press("end", *["backspace"] * 6, *text)


async def confirm_move(pilot: Pilot, *, batch: str | None = None,
                       parallel: str | None = None) -> None:
    """The upgrade/rollback dialog: optionally set its fields, then `Yes` (focus starts on No)."""
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, MoveConfirm), 30, "the move dialog")
    if batch is not None:
        await pilot.press("shift+tab", "shift+tab")  # No -> parallel -> batch size
        assert app.focused is not None and app.focused.id == "batch-size"
        await replace(pilot, batch)
        await pilot.press("enter")  # Enter moves on to the next field
        assert isinstance(app.focused, Input) and app.focused.id == "parallel"
        await replace(pilot, parallel or "1")
        await pilot.press("enter")  # -> No
    await pilot.press("tab")  # No -> Yes
    assert app.focused is not None and app.focused.id == "yes"
    await pilot.press("enter")
    await until(pilot, lambda: not isinstance(app.screen, MoveConfirm), 30, "dialog closed")


def projects_on(world: Any, cluster: str) -> set[str]:
    """The projects an api-server lists (reads pass v2's fence)."""
    with urllib.request.urlopen(f"{world.api_url(cluster)}/projects", timeout=10) as answer:
        listed = json.load(answer)["projects"]
    return {":".join(p["fq_name"]) for p in listed}


def process_gone(pid: int) -> bool:
    """No such process, or one that has exited (a zombie not reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


async def confirm_step(pilot: Pilot, title: str) -> None:
    """A StepConfirm titled `title`: Yes (focus starts on No)."""
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, StepConfirm), 30, f"dialog {title}")
    assert app.screen.title_text == title
    await pilot.press("tab")
    assert app.focused is not None and app.focused.id == "yes"
    await pilot.press("enter")
    await until(pilot, lambda: not isinstance(app.screen, StepConfirm), 30, "dialog closed")


def runsync_state(app: IssuApp) -> str | None:
    snap = app.state.snapshot
    return snap.sync.runsync if snap is not None else None


def next_step(app: IssuApp) -> Any:
    snap = app.state.snapshot
    return snap.phase.next_step if snap is not None else None


async def run_next_phase(pilot: Pilot, name: str) -> None:
    """`n` offers phase `name`: confirm it, and wait until the console offers what follows."""
    app = pilot.app
    assert isinstance(app, IssuApp)
    await until(pilot, lambda: (step := next_step(app)) is not None and step.action != "wait",
                600, f"n offers {name}")
    assert (next_step(app).action, next_step(app).target) == ("phase", name)
    await pilot.press("n")
    await until(pilot, lambda: isinstance(app.screen, StepConfirm), 30, f"{name} dialog")
    assert app.screen.title_text == f"Run {name}?"
    await pilot.press("tab")  # No -> Yes
    assert app.focused is not None and app.focused.id == "yes"
    await pilot.press("enter")
    await until(pilot, lambda: not isinstance(app.screen, StepConfirm), 30, "dialog closed")
    await until(pilot, lambda: (step := next_step(app)) is not None
                and step.action != "wait" and step.target != name, 900, f"{name} done")


async def test_whole_upgrade_from_the_console(demo_world: Any) -> None:
    world = demo_world
    config = load_config(world.config_path)
    backend = ConsoleBackend.open(config, config_path=str(world.config_path))
    assert backend.options.owns_executor
    embedded = EmbeddedOrchestrator(config, world.config_path.resolve(), backend.journal)
    app = IssuApp(backend, refresh_interval=0.3, analytics_interval=2.0, executor=embedded)
    try:
        async with app.run_test(size=(160, 50)) as pilot:
            await until(pilot, lambda: app.state.snapshot is not None
                        and app.state.snapshot.phase.phase == "plan", 60, "phase plan")
            await run_next_phase(pilot, "preflight")
            # c: every check of that preflight, each passed
            await pilot.press("c")
            await until(pilot, lambda: isinstance(app.screen, PreflightScreen), 30,
                        "the preflight results")
            results = app.screen
            assert isinstance(results, PreflightScreen)
            assert results.view.status == "passed", results.view
            assert len(results.checks) >= 5 and {c.result for c in results.checks} == {"ok"}
            shown = results.query_one("#preflight-checks")
            assert shown.row_count == len(results.checks)
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, PreflightScreen), 30,
                        "the results closed")
            for name in ("pair", "pre-sync", "run-sync"):
                await run_next_phase(pilot, name)

            # R: stop run-sync and hold it; a tenant created on v1 meanwhile waits in the
            # queue; R again starts run-sync, which brings the tenant to v2
            await until(pilot, lambda: runsync_state(app) == "running", 120, "run-sync runs")
            pid = backend.journal.orchestrator_state().runsync_pid
            assert pid is not None and not process_gone(pid)
            await pilot.press("R")
            await confirm_step(pilot, "Stop run-sync?")
            await until(pilot, lambda: runsync_state(app) == "held", 120, "run-sync held")
            await until(pilot, lambda: process_gone(pid), 60, f"run-sync (pid {pid}) gone")
            await asyncio.to_thread(seed, world, projects=1, prefix="held")
            tenant = "default-domain:held-000"
            assert tenant in projects_on(world, "v1")
            assert tenant not in projects_on(world, "v2")
            await pilot.press("R")
            await confirm_step(pilot, "Start run-sync again?")
            await until(pilot, lambda: runsync_state(app) == "running", 120,
                        "run-sync runs again")
            assert backend.journal.orchestrator_state().runsync_pid != pid
            await until(pilot, lambda: tenant in projects_on(world, "v2"), 300,
                        "the tenant created while held on v2")

            await pilot.press("5")  # the compute grid alone
            await until(pilot, lambda: len(grid_states(app)) == len(COMPUTES), 30,
                        "every compute in the grid")
            assert {s for s, _v in grid_states(app).values()} == {"old"}

            # n now offers every compute left on old: batches of 2, 2 at once
            assert next_step(app).action == "upgrade"
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, MoveConfirm), 30, "move dialog")
            assert app.screen.computes == list(COMPUTES)
            await confirm_move(pilot, batch="2", parallel="2")
            await until(pilot, lambda: set(grid_states(app).values()) == {("upgraded", V2)},
                        300, "every compute upgraded on v2 in the grid")
            batches = {c.name: c.batch for c in backend.journal.computes()}
            assert sorted(b or 0 for b in batches.values()) == [1, 2, 2], batches

            # roll back the one under the cursor (compute-2), then upgrade it again
            await pilot.press("k", "k", "k", "j", "r")  # top, then one down
            await confirm_move(pilot)
            await until(pilot, lambda: grid_states(app).get("compute-2") == ("old", V1),
                        180, "compute-2 back on v1")
            assert grid_states(app)["compute-1"] == ("upgraded", V2)
            await pilot.press("u")
            await confirm_move(pilot)
            await until(pilot, lambda: set(grid_states(app).values()) == {("upgraded", V2)},
                        180, "compute-2 upgraded again")

            # V: verify new against old while run-sync runs
            await until(pilot, lambda: app.state.snapshot is not None
                        and "verify" in app.state.snapshot.phase.allowed, 60, "verify allowed")
            await pilot.press("V")
            await until(pilot, lambda: isinstance(app.screen, StepConfirm), 30, "verify dialog")
            await pilot.press("tab", "enter")
            await until(pilot, lambda: app.state.snapshot is not None
                        and app.state.snapshot.sync.verify_at is not None, 600, "verified")
            assert (app.state.snapshot.sync.verify_checked or 0) > 0

            # n: finalize, with the typed confirmation
            await until(pilot, lambda: (step := next_step(app)) is not None
                        and step.action == "finalize", 60, "n offers finalize")
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, TypedConfirm), 30,
                        "the finalize dialog")
            dialog = app.screen
            assert isinstance(dialog, TypedConfirm)
            # a difference left by run-sync's lag at verify time makes it a forced finalize
            await pilot.press(*dialog.expected, "enter")  # -> reason
            await pilot.press(*"e2e from the console", "enter", "tab")  # -> No -> Finalize
            assert app.focused is not None and app.focused.id == "yes"
            await pilot.press("enter")
            await until(pilot, lambda: app.state.snapshot is not None
                        and app.state.snapshot.phase.phase == "done", 600, "phase done")
            snap = app.state.snapshot
            assert snap.sync.verify_differences == 0 and (snap.sync.verify_checked or 0) > 0
            assert snap.phase.next_step.action == "none"
    finally:
        backend.close()

    # The journal: every compute upgraded on v2; every intent done.
    config = load_config(world.config_path)
    after = ConsoleBackend.open(config, read_only=True, config_path=str(world.config_path))
    try:
        rows = {c.name: c for c in after.journal.computes()}
        assert set(rows) == set(COMPUTES)
        assert {(c.state, c.version, c.cluster) for c in rows.values()} == \
            {("upgraded", V2, "new")}
        ours = [(i.kind, i.status) for i in after.journal.intents(None)
                if i.kind in ("upgrade", "rollback", "finalize")]
        assert ours == [("upgrade", "done"), ("rollback", "done"), ("upgrade", "done"),
                        ("finalize", "done")], ours
        phases_run = [i.args.get("target") for i in after.journal.intents(None)
                      if i.kind == "phase" and i.status == "done"]
        assert phases_run == ["preflight", "pair", "pre-sync", "run-sync"]
        assert [i.status for i in after.journal.intents(None) if i.kind == "verify"] == ["done"]
        assert {i.by.split(":")[0] for i in after.journal.intents(None)} == {"tui"}
        # The demo's analytics: each vrouter reports to the new cluster, on v2.
        analytics = after.poll_analytics()
        assert analytics is not None
        reports = {n: (r.reports_to, r.version) for n, r in analytics.computes.items()}
        assert reports == {n: ("new", V2) for n in COMPUTES}, reports
    finally:
        after.close()
