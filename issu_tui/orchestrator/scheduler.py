"""Batches of computes: a parallelism limit, a canary first, a failure threshold.

The scheduler knows nothing about SSH or the journal: it calls `run_one(name, batch)` for
each compute (which returns True on success) and decides what runs next.
- The first `canary` computes form the first batch and run one at a time, before anything
  else starts; a failing canary stops the whole run (Ansible's `serial: [1, N]`).
- Then batches of `batch_size` run one after the other; inside a batch at most `parallel`
  run at once.
- When the failures pass `max_failures`, nothing new starts (running ones finish).
- `should_stop()` (an abort or stop) also prevents new starts; `wait_if_paused()` is called
  before each start, so a pause lets running computes finish and holds the rest.
- `prepare(name)` is called for the next `lookahead` computes of a batch waiting for a slot
  (the runner opens their SSH connections ahead); it must be cheap and may be called twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

OPERATOR_STOP = "stopped by the operator"


@dataclass
class ScheduleOutcome:
    succeeded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)
    stopped_reason: str = ""
    batches_run: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.not_started

    @property
    def stopped_by_operator(self) -> bool:
        """Stopped by a request (the operator, an executor leaving), not by the failure gate
        or a failed canary."""
        return self.stopped_reason == OPERATOR_STOP


def make_batches(names: Sequence[str], batch_size: int) -> list[list[str]]:
    if batch_size < 1:
        raise ValueError("batch size must be at least 1")
    return [list(names[i:i + batch_size]) for i in range(0, len(names), batch_size)]


class BatchScheduler:
    def __init__(self, run_one: Callable[[str, int], bool], *, batch_size: int, parallel: int,
                 canary: int = 1, max_failures: int = 0,
                 should_stop: Callable[[], bool] = lambda: False,
                 wait_if_paused: Callable[[], None] = lambda: None,
                 on_batch: Callable[[int, list[str]], None] = lambda n, names: None,
                 prepare: Callable[[str], None] = lambda name: None,
                 lookahead: int = 0) -> None:
        if parallel < 1:
            raise ValueError("parallelism must be at least 1")
        self.run_one = run_one
        self.batch_size = batch_size
        self.parallel = parallel
        self.canary = max(0, canary)
        self.max_failures = max(0, max_failures)
        self.should_stop = should_stop
        self.wait_if_paused = wait_if_paused
        self.on_batch = on_batch
        self.prepare, self.lookahead = prepare, max(0, lookahead)
        self._lock = threading.Lock()
        self._in_canary = False

    def run(self, names: Sequence[str], first_batch: int = 1) -> ScheduleOutcome:
        outcome = ScheduleOutcome()
        names = list(names)
        canaries = names[:self.canary]
        batches = ([canaries] if canaries else []) + make_batches(names[self.canary:],
                                                                  self.batch_size)
        with ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="compute") as pool:
            for index, batch in enumerate(batches):
                number = first_batch + index
                if self._stop_reason(outcome):
                    outcome.not_started.extend(batch)
                    continue
                self.on_batch(number, batch)
                outcome.batches_run += 1
                if index == 0 and canaries:
                    self._in_canary = True
                    self._run_group(pool, batch, number, outcome, limit=1)
                    self._in_canary = False
                    failed = [n for n in canaries if n in outcome.failed]
                    if failed:
                        outcome.stopped_reason = f"canary {', '.join(failed)} failed"
                    continue
                self._run_group(pool, batch, number, outcome, limit=self.parallel)
        if not outcome.stopped_reason and outcome.not_started:
            outcome.stopped_reason = self._stop_reason(outcome) or "stopped"
        return outcome

    def _stop_reason(self, outcome: ScheduleOutcome) -> str:
        if outcome.stopped_reason:
            return outcome.stopped_reason
        if self._in_canary and outcome.failed:
            outcome.stopped_reason = f"canary {', '.join(outcome.failed)} failed"
            return outcome.stopped_reason
        if len(outcome.failed) > self.max_failures:
            outcome.stopped_reason = (
                f"{len(outcome.failed)} failures passed the threshold of {self.max_failures}")
            return outcome.stopped_reason
        if self.should_stop():
            outcome.stopped_reason = OPERATOR_STOP
            return outcome.stopped_reason
        return ""

    def _run_group(self, pool: ThreadPoolExecutor, names: list[str], batch: int,
                   outcome: ScheduleOutcome, limit: int) -> None:
        queue = list(names)
        running: dict[Future[bool], str] = {}
        while queue or running:
            while queue and len(running) < limit:
                self.wait_if_paused()
                if self._stop_reason(outcome):
                    outcome.not_started.extend(queue)
                    queue.clear()
                    break
                name = queue.pop(0)
                running[pool.submit(self._guarded, name, batch)] = name
            if limit > 1:  # (a canary runs alone: nothing waits behind it yet)
                for upcoming in queue[:self.lookahead]:
                    self.prepare(upcoming)
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                with self._lock:
                    (outcome.succeeded if future.result() else outcome.failed).append(name)

    def _guarded(self, name: str, batch: int) -> bool:
        try:
            return bool(self.run_one(name, batch))
        except Exception:
            # run_one records its own failure; an unexpected error still counts as one.
            return False
