"""`issu demo up --containers-if-possible` without an engine, and the docker stand-in's
`update --restart` (what the `docker` controller profile's disable / enable run): no
service, no container needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from demo.cli import _containers_mode
from demo.containers import docker
from demo.world import World, WorldOptions


def test_without_podman_the_demo_falls_back_to_loopback_hosts_saying_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr("demo.containers.engine._in_sbin", lambda tool: False)
    world = World(WorldOptions(net=199, run_dir=tmp_path / "run"))
    assert _containers_mode(world, "auto") is False
    line = capsys.readouterr().out.strip()
    assert line == ("issu demo up: loopback hosts, not containers (podman is not installed "
                    "(make containers-install installs it))")
    # asked for explicitly, the mode is not second-guessed
    assert _containers_mode(world, "yes") is True
    assert _containers_mode(world, "no") is False
    assert _containers_mode(world, None) is None


@pytest.mark.parametrize("argv, message", [
    (["update", "--restart=sometimes", "c1"], "usage: docker update --restart="),
    (["update", "--restart=no"], "usage: docker update --restart="),
    (["update", "--restart=no", "--memory", "1g", "c1"], "--memory: only --restart"),
])
def test_the_stand_in_refuses_an_update_it_cannot_do(
        argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert docker.main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_recorded_restart_policy_is_read_from_the_containers_directory(
        tmp_path: Path) -> None:
    assert docker.restart_policy(tmp_path, "issu47-controller-v1-config_schema") == ""
    path = docker.policy_file(tmp_path, "issu47-controller-v1-config_schema")
    path.parent.mkdir()
    path.write_text("no\n")
    assert docker.restart_policy(tmp_path, "issu47-controller-v1-config_schema") == "no"


@pytest.mark.parametrize("flags", [["--containers", "--loopback"],
                                   ["--loopback", "--containers-if-possible"]])
def test_contradictory_mode_flags_are_refused_before_anything_starts(
        tmp_path: Path, flags: list[str]) -> None:
    from click.testing import CliRunner

    from demo.cli import demo

    config = tmp_path / "issu.toml"
    result = CliRunner().invoke(demo, ["up", "--net", "199", "--config", str(config), *flags])
    assert result.exit_code == 2
    assert "exclude each other" in result.output
    assert not config.exists()


def test_containers_asked_without_an_engine_say_so_before_anything_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even where a container world ran before (its run dir recorded containers)."""
    from demo.world import WorldError

    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr("demo.containers.engine._in_sbin", lambda tool: False)
    world = World(WorldOptions(net=199, run_dir=tmp_path / "run", containers=True))
    world.dir.mkdir(parents=True)
    (world.dir / "options.json").write_text('{"containers": true}\n')
    with pytest.raises(WorldError, match="the engine cannot run here: podman is not installed"):
        world.up(lambda msg: None)
    assert not (world.dir / "controller-v1").exists()


@pytest.mark.parametrize("flags, message", [
    (["--approach", "rolling", "--containers"],
     "--approach rolling runs on loopback hosts: drop --containers"),
    (["--controllers", "2", "--containers"],
     "--controllers 2..3 runs on loopback hosts: drop --containers"),
    (["--approach", "grow", "--snapshot", "SNAPSHOT"],
     "--approach grow runs on seeded tenants: drop --snapshot")])
def test_a_loopback_only_world_refuses_containers_before_anything_starts(
        tmp_path: Path, flags: list[str], message: str) -> None:
    from click.testing import CliRunner

    from demo.cli import demo

    snapshot = tmp_path / "snap.json"
    snapshot.write_text("{}")
    config = tmp_path / "issu.toml"
    args = [str(snapshot) if f == "SNAPSHOT" else f for f in flags]
    result = CliRunner().invoke(demo, ["up", "--net", "199", "--config", str(config), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not config.exists()


def test_a_ring_world_where_a_container_world_stopped_runs_on_loopback_hosts(
        tmp_path: Path) -> None:
    """`issu demo up --approach rolling` where `make demo` (containers) ran and stopped: the
    recorded mode failed it halfway up ("runs on loopback hosts"); now loopback is chosen
    before anything starts."""
    from demo.cli import _loopback_if_needed

    world = World(WorldOptions(net=199, run_dir=tmp_path / "run", approach="rolling"))
    world.dir.mkdir(parents=True)
    (world.dir / "options.json").write_text('{"containers": true}\n')
    assert world.containers  # what the world would have used
    assert _loopback_if_needed(world, None) == "no"
    assert _containers_mode(world, _loopback_if_needed(world, None)) is False
    separate = World(WorldOptions(net=199, run_dir=tmp_path / "run"))
    assert _loopback_if_needed(separate, None) is None  # the recorded mode, as before


def test_a_world_built_for_another_approach_sets_the_last_journal_and_seed_aside(
        tmp_path: Path) -> None:
    """`issu demo up --approach rolling` where a separate world ran: the console opened on
    that world's finished upgrade (12 computes, 'aborted'), and v1 on the fresh ring went
    unseeded (the seed marker said done). Both are set aside, not deleted."""
    world = World(WorldOptions(net=199, run_dir=tmp_path / "run", approach="rolling"))
    for name, file in (("state", "journal.db"), ("seed", "done")):
        (world.dir / name).mkdir(parents=True)
        (world.dir / name / file).write_text("the last world's\n")
    (world.dir / "options.json").write_text('{"approach": "separate"}\n')
    said: list[str] = []
    world._set_aside_another_worlds_upgrade(world.ring(), said.append)
    assert not (world.dir / "state").exists() and not (world.dir / "seed").exists()
    (state,) = world.dir.glob("state.separate-*")
    assert (state / "journal.db").read_text() == "the last world's\n"
    assert len(list(world.dir.glob("seed.separate-*"))) == 1
    assert said == [f"the last world here was built for separate, not rolling: its journal "
                    f"and seed set aside ({state}, {next(world.dir.glob('seed.separate-*'))})"]
    # the same approach again: the same world, its upgrade continues
    (world.dir / "state").mkdir()
    (world.dir / "options.json").write_text('{"approach": "rolling"}\n')
    world._set_aside_another_worlds_upgrade(world.ring(), said.append)
    assert (world.dir / "state").is_dir() and len(said) == 1
