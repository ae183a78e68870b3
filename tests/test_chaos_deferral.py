"""A chaos fault on run-sync drawn before run-sync runs is not lost: it waits for run-sync and
lands on it (bench/chaos/trial.py). Run-sync here is a real process whose pid the journal's
state names; the test checks the process was killed, and that a fault drawn after finalize
began is skipped, naming why."""

from __future__ import annotations

import random
import subprocess
import threading
import time
from types import SimpleNamespace

import pytest

from bench.chaos.trial import Injected, Trial


class _Stand:
    """The parts of a Trial that `_one` uses, around a real stand-in process."""

    def __init__(self, hold_s: float) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.trial = Trial.__new__(Trial)
        self.trial.rng = random.Random(7)
        self.trial.started = time.monotonic()
        self.trial.faults = []
        self.trial._finished = threading.Event()
        self.trial.run_sync_started = threading.Event()
        self.trial.finalizing = threading.Event()
        self.trial.opts = SimpleNamespace(after_run_sync=False, minutes=hold_s / 30)
        self.trial.journal_state = self._state  # type: ignore[method-assign]
        self.trial.phase = lambda: "run-sync"  # type: ignore[method-assign]
        self.trial._recovery = lambda since, timeout_s=300.0: 0.0  # type: ignore[method-assign]

    def _state(self) -> SimpleNamespace:
        return SimpleNamespace(runsync_pid=self.proc.pid if self.proc else None)

    def start_run_sync(self) -> None:
        self.proc = subprocess.Popen(["sleep", "300"])
        self.trial.started = time.monotonic()  # the hold is counted from here
        self.trial.run_sync_started.set()


def test_a_run_sync_fault_drawn_before_run_sync_waits_and_kills_it() -> None:
    stand = _Stand(hold_s=8.0)
    record = Injected("kill-run-sync", at_s=1.0, phase="pre-sync", outcome="injected")
    worker = threading.Thread(target=stand.trial._one, args=(record,))
    worker.start()
    time.sleep(1.0)
    assert worker.is_alive(), record  # waiting, not skipped
    stand.start_run_sync()
    worker.join(timeout=30)
    assert stand.proc is not None
    try:
        assert stand.proc.wait(timeout=5) == -9
    finally:
        if stand.proc.poll() is None:
            stand.proc.kill()
    assert record.outcome == "injected", record
    assert record.deferred_from_s == 1.0 and record.at_s >= 5.0


@pytest.mark.parametrize("when", ["finalizing", "finished"])
def test_a_run_sync_fault_is_skipped_once_finalize_began(when: str) -> None:
    stand = _Stand(hold_s=8.0)
    getattr(stand.trial, "_finished" if when == "finished" else "finalizing").set()
    record = Injected("stall-run-sync", at_s=90.0, phase="finalize", outcome="injected")
    stand.trial._one(record)
    assert record.outcome == "skipped"
    assert record.note == "run-sync is not running"
