"""A second `make demo` on a demo whose upgrade has ended: the console (when the world still
runs) says so and how to start a new one; a world whose finalize disabled v1's api-server
refuses to come up saying the same, not how to re-enable the service."""

from __future__ import annotations

from pathlib import Path

import pytest

from demo.cli import ended_upgrade_hint
from demo.world import World, WorldError, WorldOptions
from issu_tui.app import IssuApp
from issu_tui.config import to_toml
from issu_tui.journal import Journal
from tests.tui.test_console_keys import settle
from tests.tui.tui_world import build_journal, config_data, config_for, make_backend


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "issu.toml"
    path.write_text(to_toml(config_data(tmp_path / "state")))
    return path


def test_only_an_ended_upgrade_gets_the_hint(tmp_path: Path) -> None:
    path = _config(tmp_path)
    assert ended_upgrade_hint(path, 20) is None  # no journal yet: a new world
    journal = build_journal(tmp_path / "state", computes=4, phase="computes")
    try:
        assert ended_upgrade_hint(path, 20) is None  # under way: the console drives it on
        journal.set_phase("finalize", note="finalize")
        journal.set_phase("done", status="done", note="the new cluster serves")
        hint = ended_upgrade_hint(path, 20)
    finally:
        journal.close()
    assert hint is not None
    assert "phase done" in hint and "`make clean`, then `make demo`" in hint
    assert "DEMO_NET=46" in (ended_upgrade_hint(path, 46) or "")  # another net: said


def test_an_aborted_demo_gets_it_too(tmp_path: Path) -> None:
    path = _config(tmp_path)
    with Journal.open(tmp_path / "state") as journal:
        journal.set_phase("plan", from_version="4.1.0", to_version="5.0.0")
        journal.set_phase("aborting", note="abort")
        assert ended_upgrade_hint(path, 20) is None  # still rolling back
        journal.set_phase("aborted", status="done")
    assert "phase aborted" in (ended_upgrade_hint(path, 20) or "")


def test_a_bad_config_gets_no_hint_and_no_error(tmp_path: Path) -> None:
    path = tmp_path / "issu.toml"
    path.write_text("state_dir = [\n")
    assert ended_upgrade_hint(path, 20) is None  # the console itself names what is wrong


async def test_the_console_shows_the_greeting(tmp_path: Path) -> None:
    journal = build_journal(tmp_path / "state", computes=4, phase="done")
    app = IssuApp(make_backend(journal, config_for(tmp_path / "state")),
                  greeting="this demo's upgrade has ended")
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            assert "this demo's upgrade has ended" in [n.message for n in app._notifications]
    finally:
        journal.close()


def test_a_world_whose_upgrade_ended_says_how_to_start_a_new_demo(tmp_path: Path) -> None:
    world = World(WorldOptions(net=197, run_dir=tmp_path / "run"))
    world.refuse_if_ended("api-server of v1")  # no journal: the caller says how to enable it
    journal = build_journal(world.dir / "state", computes=2, phase="done")
    journal.close()
    with pytest.raises(WorldError) as refused:
        world.refuse_if_ended("api-server of v1")
    said = str(refused.value)
    assert "upgrade has ended (phase done)" in said and "api-server of v1" in said
    assert "`make clean DEMO_NET=197`, then `make demo DEMO_NET=197`" in said
