"""`issu demo down` after finalize: the reverse replication (new -> old, `issu sync run
--reverse`, started by finalize for `issu revert`) goes with the world, as run-sync does.
It outlived `make demo`'s exit path, still polling a broker that was gone (seen after a
whole upgrade in `make demo`)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from demo.world import World, WorldOptions
from issu_tui.journal import REVERSE_PID, Journal


def _sync_run(config: Path, *extra: str) -> subprocess.Popen[bytes]:
    """A process whose command line is the one the executor starts (`... sync run -c
    CONFIG [--reverse]`), in its own session as run-sync is."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "sync",
                             "run", "-c", str(config), *extra], start_new_session=True)


def test_demo_down_stops_the_reverse_replication_and_spares_another_worlds(
        tmp_path: Path) -> None:
    world = World(WorldOptions(net=205, computes=1, run_dir=tmp_path / "run",
                               config_path=tmp_path / "issu.toml"))
    state = world.dir / "state"
    state.mkdir(parents=True)
    Journal.open(state).close()
    world.config_path.write_text("# this world's\n")
    other = tmp_path / "other.toml"
    other.write_text("# another world's\n")
    reverse = _sync_run(world.config_path, "--reverse")
    stranger = _sync_run(other, "--reverse")  # same command, another world's config
    try:
        (state / REVERSE_PID).write_text(f"{reverse.pid} {time.time()}\n")
        assert world._stop_runsync() == ["reverse-sync"]
        assert reverse.wait(timeout=30) is not None
        (state / REVERSE_PID).write_text(f"{stranger.pid} {time.time()}\n")
        assert world._stop_runsync() == []
        assert stranger.poll() is None
    finally:
        for proc in (reverse, stranger):
            proc.kill()
            proc.wait()


def test_demo_down_stops_the_run_sync_of_a_world_whose_config_went_elsewhere(
        tmp_path: Path) -> None:
    """`issu demo up --config /tmp/x.toml`, then `issu demo down` (which is not told the
    config): the reverse replication was spared as another world's and ran on for an hour."""
    world = World(WorldOptions(net=205, computes=1, run_dir=tmp_path / "run",
                               config_path=tmp_path / "issu.toml"))
    state = world.dir / "state"
    state.mkdir(parents=True)
    Journal.open(state).close()
    elsewhere = tmp_path / "elsewhere.toml"
    elsewhere.write_text("# this world's, written by up --config\n")
    (world.dir / "config-path").write_text(f"{elsewhere}\n")
    down = World(WorldOptions(net=205, computes=1, run_dir=tmp_path / "run"))  # as `down`
    reverse = _sync_run(elsewhere, "--reverse")
    try:
        (state / REVERSE_PID).write_text(f"{reverse.pid} {time.time()}\n")
        assert down._stop_runsync() == ["reverse-sync"]
        assert reverse.wait(timeout=30) is not None
    finally:
        reverse.kill()
        reverse.wait()
