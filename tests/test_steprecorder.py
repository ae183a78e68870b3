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
    # and so does the next record: nothing is dropped quietly
    with pytest.raises((JournalError, sqlite3.Error)):
        recorder.record(("c1", "health", "run health", 0, 0.1, "out", ""))
