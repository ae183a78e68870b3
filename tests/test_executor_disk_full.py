"""The state directory's disk full for a moment (make chaos `disk-full`): the executor does not
die with a traceback on its next journal write; it says which journal it cannot write, waits,
and carries on once there is room. A command that cannot even add its intent says so, naming
the journal, without a traceback."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from issu_tui.journal import Journal
from issu_tui.orch_cli import pair_cmd
from issu_tui.orchestrator.context import Context
from issu_tui.orchestrator.executor import Executor
from tests.fuzz.configs import minimal_toml
from tests.test_orchestrator_units import _config


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of its own (root only, as make chaos does)."""
    where = tmp_path / "state"
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs for the state directory")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"tmpfs mount refused: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def _fill(where: Path) -> Path:
    filler = where / "filler"
    with open(filler, "ab", buffering=0) as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * 65536)
    return filler


def _wait(condition: Callable[[], bool], timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_the_executor_waits_out_a_full_disk_and_carries_on(
        small_disk: Path, caplog: pytest.LogCaptureFixture) -> None:
    journal = Journal.open(small_disk)
    ctx = Context(config=_config(small_disk), config_path=small_disk / "issu.toml",
                  journal=journal)
    executor = Executor(ctx)
    executor.start()
    crashed: list[BaseException] = []

    def serve() -> None:
        try:
            executor.serve(poll_s=0.02, heartbeat_s=0.05)
        except BaseException as exc:
            crashed.append(exc)

    runner = threading.Thread(target=serve, daemon=True)
    runner.start()
    try:
        filler = _fill(small_disk)
        # several heartbeats with no room for them
        _wait(lambda: bool(crashed) or "database or disk is full" in caplog.text, 30.0)
        assert not crashed, crashed
        assert "database or disk is full" in caplog.text
        time.sleep(0.5)
        assert runner.is_alive(), crashed
        assert str(journal.path) in caplog.text  # it names the journal it cannot write
        filler.unlink()
        intent_id = journal.add_intent("pause", {}, "test")

        def done() -> bool:
            return any(i.id == intent_id and i.status == "done"
                       for i in journal.intents(None))

        assert _wait(done), [vars(i) for i in journal.intents(None)]
        assert json.loads(next(i.result for i in journal.intents(None)
                               if i.id == intent_id))["ok"]
        assert runner.is_alive() and not crashed
    finally:
        executor.shutdown.set()
        runner.join(timeout=30)
        executor.close()
        journal.close()


def _config_file(tmp_path: Path, state: Path) -> Path:
    config = tmp_path / "issu.toml"
    config.write_text(minimal_toml(state))
    return config


def test_a_command_that_cannot_add_its_intent_says_so_naming_the_journal(
        small_disk: Path, tmp_path: Path) -> None:
    config = _config_file(tmp_path, small_disk)
    holder = Journal.open(small_disk)  # open (its WAL files there), as a console keeps it
    filler = _fill(small_disk)
    try:
        done = CliRunner().invoke(pair_cmd, ["--json", "-c", str(config)])
    finally:
        filler.unlink()
    try:
        assert isinstance(done.exception, SystemExit), done.exception  # no traceback
        assert done.exit_code == 1, done.output
        result = json.loads(done.output.strip().splitlines()[-1])
        assert result["ok"] is False
        assert f"journal {small_disk / 'journal.db'} cannot be written" in result["error"]
        assert "database or disk is full" in result["error"]
        assert holder.intents(None) == []  # nothing was asked
    finally:
        holder.close()


def test_a_journal_that_cannot_be_opened_on_a_full_disk_names_the_disk(
        small_disk: Path, tmp_path: Path) -> None:
    config = _config_file(tmp_path, small_disk)
    Journal.open(small_disk).close()
    filler = _fill(small_disk)
    try:
        done = CliRunner().invoke(pair_cmd, ["--json", "-c", str(config)])
    finally:
        filler.unlink()
    assert isinstance(done.exception, SystemExit), done.exception  # no traceback
    assert done.exit_code == 2, done.output
    assert f"{small_disk / 'journal.db'}: cannot be opened for writing" in done.output
    assert f"the disk of {small_disk} is full" in done.output
    assert "not a journal issu can use" not in done.output
