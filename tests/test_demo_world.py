"""The whole demo world starts and stops cleanly, twice in a row, leaving no process behind.

It runs on its own network (`$ISSU_TEST_WORLD_NET`, default `$ISSU_TEST_NET` + 100) so that it
never meets the services of the other tests.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from demo.services.plan import DEFAULT_TEST_NET
from demo.world import World, WorldOptions
from issu_tui.config import check_files, load_config
from issu_tui.demo_cli import demo


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


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_demo_world_up_and_down_twice(tmp_path: Path) -> None:
    config = tmp_path / "issu.toml"
    options = WorldOptions(net=_world_net(), computes=3, config_path=config, seed_objects=100,
                           workload_rate=2.0, install_s=0.5, wait_seed=True)
    world = World(options)
    world.down(progress=lambda _m: None)  # a world left over by an interrupted run
    run_dir = str(world.run_dir)
    for cycle in range(2):
        world.up(progress=lambda _m: None)
        pieces = {p.name: p for p in world.status()}
        broken = {n: p for n, p in pieces.items() if p.state not in ("ready", "running", "done")}
        assert not broken, broken
        assert pieces["seed"].state == "done"
        assert pieces["workload"].state == "running"
        _wait_agents(world, 3)

        # the tool's config is valid and names what runs
        cfg = load_config(config)
        assert check_files(cfg) == []
        assert [c.name for c in cfg.computes] == ["compute-1", "compute-2", "compute-3"]
        assert cfg.state_dir.is_relative_to(world.run_dir)
        assert httpx.get(f"{cfg.old.api_server.url}/", timeout=10).status_code == 200
        fence = httpx.get(f"{cfg.new.api_server.url}/issu/status", timeout=10).json()
        assert fence["northbound_open"] is False

        if cycle == 0:
            # a second `up` reuses everything that runs
            before = world.processes()
            world.up(progress=lambda _m: None)
            assert world.processes() == before

        assert world.processes()
        stopped = world.down(progress=lambda _m: None)
        assert {"computes", "controller-v1", "controller-v2", "workload"} <= set(stopped)
        assert world.processes() == []
        assert _processes_mentioning(run_dir) == []
        # nothing was deleted: the next up finds its data and secrets again
        assert (world.dir / "secrets" / "admin-token-v2").is_file()
        assert (world.fleet.dir / "hosts" / "compute-1").is_dir()
        assert config.is_file()


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
