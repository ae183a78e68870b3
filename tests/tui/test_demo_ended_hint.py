"""A second `make demo` on a demo whose upgrade has ended opens the console on that upgrade
(its journal): the console says so, and how to start a new one, instead of looking stuck."""

from __future__ import annotations

from pathlib import Path

from demo.cli import ended_upgrade_hint
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
    assert ended_upgrade_hint(path) is None  # no journal yet: a new world
    journal = build_journal(tmp_path / "state", computes=4, phase="computes")
    try:
        assert ended_upgrade_hint(path) is None  # under way: the console drives it on
        journal.set_phase("finalize", note="finalize")
        journal.set_phase("done", status="done", note="the new cluster serves")
        hint = ended_upgrade_hint(path)
    finally:
        journal.close()
    assert hint is not None
    assert "phase done" in hint and "`make clean` and `make demo`" in hint


def test_an_aborted_demo_gets_it_too(tmp_path: Path) -> None:
    path = _config(tmp_path)
    with Journal.open(tmp_path / "state") as journal:
        journal.set_phase("plan", from_version="4.1.0", to_version="5.0.0")
        journal.set_phase("aborting", note="abort")
        assert ended_upgrade_hint(path) is None  # still rolling back
        journal.set_phase("aborted", status="done")
    assert "phase aborted" in (ended_upgrade_hint(path) or "")


def test_a_bad_config_gets_no_hint_and_no_error(tmp_path: Path) -> None:
    path = tmp_path / "issu.toml"
    path.write_text("state_dir = [\n")
    assert ended_upgrade_hint(path) is None  # the console itself names what is wrong


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
