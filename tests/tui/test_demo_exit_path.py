"""`make demo`'s exit path (`python -m demo.console_exit`): it keeps the world up while a
headless `issu daemon` drives it (and says how to stop it); `issu demo down` then stops that
daemon and the world, leaving no daemon and no demo process behind.

Runs a 1-compute demo world on `$ISSU_TEST_NET` + 10 (the demo net of this test network).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from demo.console_exit import daemons_driving
from demo.services.plan import DEFAULT_TEST_NET
from demo.world import World, WorldOptions
from issu_tui.journal import Journal
from tests.test_demo_world import _kill_leftovers, _processes_mentioning, _quiet

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(1200)]

RUNNING = {"ready", "running", "broken"}


def _demo_net() -> int:
    net = int(os.environ.get("ISSU_TEST_NET", DEFAULT_TEST_NET)) + 10
    return net if net <= 254 else net - 20


def _exit_path(net: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "demo.console_exit", "--net", str(net)],
                          capture_output=True, text=True, timeout=600, check=False)


def _wait_writer(world: World, pid: int, daemon: subprocess.Popen[bytes]) -> None:
    journal_path = world.dir / "state" / "journal.db"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert daemon.poll() is None, f"the daemon exited with {daemon.returncode}"
        if journal_path.is_file():
            journal = Journal(journal_path, read_only=True)
            try:
                holder = journal.executor()
            finally:
                journal.close()
            if holder and holder["pid"] == pid:
                return
        time.sleep(0.5)
    raise AssertionError("the daemon never took the journal's writer lock")


def test_exit_path_spares_a_driven_world_and_otherwise_leaves_nothing(tmp_path: Path) -> None:
    net = _demo_net()
    config = tmp_path / "issu.toml"
    world = World(WorldOptions(net=net, computes=1, config_path=config, seed_objects=0,
                               workload_rate=0.0, install_s=0.5))
    run_dir = str(world.run_dir)
    world.down(progress=_quiet)  # a world left over by an interrupted run
    # ...or by hand on that net (`make demo DEMO_NET=...`): its journal, at `done` after a
    # whole upgrade, would make the daemon stop at once
    shutil.rmtree(world.dir, ignore_errors=True)
    daemon: subprocess.Popen[bytes] | None = None
    try:
        world.up(progress=_quiet)
        # what the console starts when it hands its work over (tui_cli.start_headless_daemon)
        daemon = subprocess.Popen(
            [sys.executable, "-c", "from issu_tui.cli import main; main()", "daemon",
             "--config", str(config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "daemon.log").open("wb"), start_new_session=True)
        _wait_writer(world, daemon.pid, daemon)
        assert daemons_driving(world) == [daemon.pid]

        kept = _exit_path(net)
        assert kept.returncode == 0, kept.stderr
        assert f"a headless `issu daemon` (pid {daemon.pid}) still drives the upgrade" \
            in kept.stderr
        assert f"kill {daemon.pid}" in kept.stderr
        assert f"make demo-down DEMO_NET={net}" in kept.stderr
        assert daemon.poll() is None
        pieces = {p.name: p.state for p in world.status()}
        assert pieces["controller-v1"] == "ready" and pieces["computes"] == "ready", pieces

        # `issu demo down` stops the daemon that drives the world, then the world
        down = subprocess.run([sys.executable, "-c", "from issu_tui.cli import main; main()",
                               "demo", "down", "--net", str(net)], capture_output=True,
                              text=True, timeout=600, check=False)
        assert down.returncode == 0, down.stderr
        assert f"stopping the headless `issu daemon` (pid {daemon.pid})" in down.stdout
        assert daemon.wait(30) is not None
        assert daemons_driving(world) == []
        left = _exit_path(net)  # make demo's trap after that: nothing left to keep up
        assert left.returncode == 0, left.stderr
        assert "stays up" not in left.stderr
        running = {p.name: p.state for p in world.status() if p.state in RUNNING
                   and p.name != "config"}
        assert running == {}
        assert world.processes() == []
        assert _processes_mentioning(run_dir) == []
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
            daemon.wait(60)
        world.down(progress=_quiet)
        _kill_leftovers(run_dir)
