"""The first screen of `make demo` (demo/startup.py): opens before the world is up, shows the
pieces and the steps of `World.up`, hands over once the world is up, keeps a failure on
screen. `World.up` is replaced by a scripted one (starting real services is the demo-world
tests' job); the pieces' states are the real `World.status` of an empty run directory."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from textual.widgets import RichLog

from demo.startup import PieceRow, WorldStartup
from demo.world import World, WorldError, WorldOptions


def _world(tmp_path: Path) -> World:
    return World(WorldOptions(net=199, run_dir=tmp_path / "run",
                              config_path=tmp_path / "issu.toml"))


def _log_text(app: WorldStartup) -> str:
    return "\n".join(str(line.text) for line in app.query_one(RichLog).lines)


def _headline(app: WorldStartup) -> str:
    return str(app.query_one("#headline").render())


def test_screen_shows_the_pieces_and_steps_before_the_world_is_up(tmp_path: Path) -> None:
    release = threading.Event()

    def up(world: World, progress) -> None:  # type: ignore[no-untyped-def]
        progress("services (Cassandra x2, ...) ...")
        release.wait(60)

    app = WorldStartup(_world(tmp_path), up=up, poll_s=0.1)

    async def drive() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            for _ in range(300):
                if "services (Cassandra" in _log_text(app) and app.query(PieceRow) and \
                        app.first_frame is not None:
                    break
                await pilot.pause(0.1)
            assert app.first_frame is not None and app.ready_at is None
            assert "services (Cassandra x2, ...) ..." in _log_text(app)
            names = {row.piece for row in app.query(PieceRow)}
            assert {"controller-v1", "controller-v2", "computes", "seed"} <= names
            assert "starting the demo world on 127.199.x.y" in _headline(app)
            release.set()
            for _ in range(300):
                if app.return_value is not None:
                    break
                await pilot.pause(0.1)

    asyncio.run(drive())
    assert app.return_value == "ready" and app.ready_at is not None


def test_a_failure_stays_on_screen_naming_the_piece(tmp_path: Path) -> None:
    def up(world: World, progress) -> None:  # type: ignore[no-untyped-def]
        raise WorldError("controller v1 did not answer; see /run/controller-v1/log")

    app = WorldStartup(_world(tmp_path), up=up, poll_s=0.1)

    async def drive() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            for _ in range(300):
                if app.error:
                    break
                await pilot.pause(0.1)
            await pilot.pause(0.2)
            assert "controller v1 did not answer" in _log_text(app)
            assert "did not come up" in _headline(app)
            assert app.return_value is None  # still on screen
            await pilot.press("q")

    asyncio.run(drive())
    assert app.return_value == "failed"
    assert app.error is not None and "controller-v1/log" in app.error
