"""The whole demo world starts and stops cleanly, twice in a row, leaving no process behind.

It runs on its own network (`$ISSU_TEST_WORLD_NET`, default `$ISSU_TEST_NET` + 100) so that it
never meets the services of the other tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from demo.cli import demo
from demo.services.plan import DEFAULT_TEST_NET
from demo.world import World, WorldOptions
from issu_tui.config import check_files, load_config


def _world_net() -> int:
    if "ISSU_TEST_WORLD_NET" in os.environ:
        return int(os.environ["ISSU_TEST_WORLD_NET"])
    net = int(os.environ.get("ISSU_TEST_NET", DEFAULT_TEST_NET))
    return net + 100 if net + 100 <= 254 else net - 100


def _processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Live processes whose command line names `text` (the run directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if text in cmdline and state not in ("Z", "X"):
            found.append((int(entry.name), cmdline[:200]))
    return found


def _wait_agents(world: World, count: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = world.fleet.status()
        connected = [h for h in status.hosts.values() if h.get("connected")]
        if len(connected) == count and all(h["cluster"] == "v1" for h in connected):
            return
        assert time.monotonic() < deadline, f"agents connected: {len(connected)}/{count}"
        time.sleep(1.0)


def _quiet(_message: str) -> None:
    pass


def _kill_leftovers(text: str) -> None:
    """Last resort after a failed test: end what still runs from this world's run directory
    (its own network and directory, so these are processes this test started)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        found = _processes_mentioning(text)
        for pid, _ in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 15.0
        while found and _processes_mentioning(text) and time.monotonic() < deadline:
            time.sleep(0.3)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_demo_world_up_and_down_twice(tmp_path: Path) -> None:
    # The smallest whole world (2 computes, no seed, no workload): what this test is about
    # is that every piece starts and that `down` leaves nothing, twice in a row.
    config = tmp_path / "issu.toml"
    options = WorldOptions(net=_world_net(), computes=2, config_path=config, seed_objects=0,
                           workload_rate=0.0, install_s=0.5)
    world = World(options)
    run_dir = str(world.run_dir)
    world.down(progress=_quiet)  # a world left over by an interrupted run
    try:
        for cycle in range(2):
            world.up(progress=_quiet)
            pieces = {p.name: p for p in world.status()}
            unwell = {n: p for n, p in pieces.items()
                      if p.state not in ("ready", "running", "done", "off")}
            assert not unwell, unwell
            assert pieces["workload"].state == "off"
            assert pieces["seed"].state in ("off", "done")  # done: seeded by an older run
            assert {"cassandra-old", "cassandra-new", "zk-old", "zk-new", "rabbitmq",
                    "sshd-1", "controller-v1", "controller-v2", "computes"} <= set(pieces)

            if cycle == 0:
                _wait_agents(world, 2)
                # the tool's config is valid and names what runs
                cfg = load_config(config)
                assert check_files(cfg) == []
                assert [c.name for c in cfg.computes] == ["compute-1", "compute-2"]
                assert cfg.state_dir.is_relative_to(world.run_dir)
                assert httpx.get(f"{cfg.old.api_server.url}/", timeout=10).status_code == 200
                fence = httpx.get(f"{cfg.new.api_server.url}/issu/status", timeout=10).json()
                assert fence["northbound_open"] is False
                # a second `up` reuses everything that runs
                before = world.processes()
                world.up(progress=_quiet)
                assert world.processes() == before

            assert world.processes()
            stopped = world.down(progress=_quiet)
            assert {"computes", "controller-v1", "controller-v2", "cassandra-old",
                    "cassandra-new"} <= set(stopped)
            assert world.processes() == []
            assert _processes_mentioning(run_dir) == []
            # nothing was deleted: the next up finds its data and secrets again
            assert (world.dir / "secrets" / "admin-token-v2").is_file()
            assert (world.fleet.dir / "hosts" / "compute-1").is_dir()
            assert config.is_file()
    finally:
        world.down(progress=_quiet)
        _kill_leftovers(run_dir)


def test_cli_on_a_network_without_a_world_starts_nothing(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISSU_RUN_ROOT", str(tmp_path))
    runner = CliRunner()
    down = runner.invoke(demo, ["down", "--net", "201"])
    assert down.exit_code == 0 and "nothing was running" in down.output
    status = runner.invoke(demo, ["status", "--net", "201", "--json"])
    assert status.exit_code == 1  # nothing runs
    assert {p["state"] for p in json.loads(status.output)} <= {"stopped", "missing"}
    assert list(tmp_path.iterdir()) == []  # neither created anything


def test_cli_refuses_more_than_a_thousand_computes() -> None:
    result = CliRunner().invoke(demo, ["up", "--computes", "1001"])
    assert result.exit_code == 2 and "1001" in result.output


def test_a_world_of_fewer_computes_keeps_the_shared_sshds_other_hosts(tmp_path: Path) -> None:
    """A world started on a test session's services: its sshd serves the world's computes
    first (the fleet takes them in order), then its controllers, then the session's hosts it
    would otherwise take away (a 1-compute world left 127.N.1.2 unserved)."""
    session = {"127.203.1.1": "compute-1", "127.203.1.2": "compute-2"}
    world = World(WorldOptions(net=203, computes=1, run_dir=tmp_path / "run",
                               extra_ssh_hosts=session))
    hosts = world.ssh_hosts(1)
    assert next(iter(hosts)) == "127.203.1.1"
    assert hosts["127.203.1.2"] == "compute-2"
    assert hosts[world.controller_address("v2")] == "controller-v2"
    assert list(hosts)[-1] == "127.203.1.2"


def test_status_tells_a_seed_and_workload_turned_off(tmp_path: Path) -> None:
    world = World(WorldOptions(net=201, run_dir=tmp_path / "run"))
    world.dir.mkdir(parents=True)
    world._record(seed_objects=0, workload_rate=0.0)  # what `up --objects 0 --rate 0` records
    pieces = {p.name: p.state for p in world.status(probe=False)}
    assert (pieces["seed"], pieces["workload"]) == ("off", "off")
    world._record(workload_rate=5.0)  # wanted but not running: a problem again
    assert {p.name: p.state for p in world.status(probe=False)}["workload"] == "stopped"


def test_down_stops_the_worlds_run_sync_and_nothing_else(tmp_path: Path) -> None:
    """run-sync outlives the console that started it; `issu demo down` takes it with the
    world. A process with another world's config is left alone."""
    import subprocess
    import sys

    from issu_tui.journal import Journal

    world = World(WorldOptions(net=202, run_dir=tmp_path / "run",
                               config_path=tmp_path / "issu.toml"))
    sleeper = "import time; time.sleep(120)"

    def runsync(config: Path) -> subprocess.Popen[bytes]:  # what syncproc starts, as argv
        return subprocess.Popen([sys.executable, "-c", sleeper, "sync", "run", "-c",
                                 str(config)], start_new_session=True, cwd=tmp_path)

    ours, other = runsync(Path("issu.toml")), runsync(tmp_path / "other.toml")
    try:
        (world.dir / "state").mkdir(parents=True)
        journal = Journal.open(world.dir / "state")
        journal.set_runsync_process(other.pid, 0.0)  # not this world's: left alone
        assert "run-sync" not in world.down(lambda msg: None)
        assert other.poll() is None
        journal.set_runsync_process(ours.pid, 0.0)
        journal.close()
        assert "run-sync" in world.down(lambda msg: None)
        assert ours.wait(30) is not None and other.poll() is None
    finally:
        for proc in (ours, other):
            proc.kill()
            proc.wait()
