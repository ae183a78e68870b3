"""StepRecorder: the computes' command outputs reach the journal off the steps' path, and
all of a compute's are there when flush returns (before the runner moves its state)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from issu_tui.journal import Journal, JournalError
from issu_tui.orchestrator.steprecorder import StepRecorder


def test_every_output_of_a_compute_is_in_the_journal_when_flush_returns(
        tmp_path: Path) -> None:
    journal = Journal.open(tmp_path)
    recorder = StepRecorder(journal)
    names = [f"c{i}" for i in range(20)]

    def steps(name: str) -> None:
        for step in ("probe", "install", "restart", "health"):
            recorder.record((name, step, f"run {step}", 0, 0.1, f"{name} {step} out", ""))
        recorder.flush(name)
        # read by another connection, as the console reads it
        reader = Journal(tmp_path / "journal.db", read_only=True)
        try:
            seen[name] = [r["stdout"] for r in reader.command_output(name)]
        finally:
            reader.close()

    seen: dict[str, list[str]] = {}
    threads = [threading.Thread(target=steps, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert seen == {n: [f"{n} {s} out" for s in ("probe", "install", "restart", "health")]
                    for n in names}
    journal.close()


def test_a_journal_that_cannot_be_written_fails_the_flush(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path)
    recorder = StepRecorder(journal)
    journal.close()  # every write now fails
    recorder.record(("c1", "install", "run install", 0, 0.1, "out", ""))
    with pytest.raises((JournalError, sqlite3.Error)):
        recorder.flush("c1")
    # the next record does not raise between two remote steps; its flush says it again
    recorder.record(("c1", "health", "run health", 0, 0.1, "out", ""))
    with pytest.raises((JournalError, sqlite3.Error)):
        recorder.flush("c1")


class _FullOnce(Journal):
    """The journal's disk full for one write, then free again."""

    full = True

    def record_commands(self, records):  # type: ignore[no-untyped-def]
        if self.full:
            self.full = False
            raise sqlite3.OperationalError("database or disk is full")
        return super().record_commands(records)


def test_one_failed_write_fails_only_the_computes_it_held(tmp_path: Path) -> None:
    Journal.open(tmp_path).close()
    journal = _FullOnce(tmp_path / "journal.db")
    recorder = StepRecorder(journal)
    recorder.record(("c1", "install", "run install", 0, 0.1, "lost", ""))
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        recorder.flush("c1")
    # the disk has room again: a rollback of c1 and c2's steps are written as usual
    recorder.record(("c1", "rollback", "run rollback", 0, 0.1, "back", ""))
    recorder.record(("c2", "install", "run install", 0, 0.1, "in", ""))
    recorder.flush("c1")
    recorder.flush("c2")
    assert [r["stdout"] for r in journal.command_output("c1")] == ["back"]
    assert [r["stdout"] for r in journal.command_output("c2")] == ["in"]
    journal.close()
