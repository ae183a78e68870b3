"""The computes' command outputs, written to the journal by a thread of their own.

A compute's next remote step does not wait for the commit of the previous step's output
(an fsync each: at 50 computes in parallel, most of an action's time outside its remote
commands went to waiting for those). What queued while one transaction committed goes in
the next one. `flush(name)` returns once every output of that compute queued so far is in
the journal: the runner calls it before the compute's transition to upgraded, rolled back
or failed, so the journal never says a compute is done without the outputs of its steps.
A crash in the middle of an action can lose the outputs of its last moments (its state is
still `upgrading`, and the next start probes it).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

from issu_tui.journal import CommandRecord, Journal

log = logging.getLogger(__name__)

LINGER_S = 1.0  # the writer thread waits this long for more before it ends


class StepRecorder:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._cond = threading.Condition()
        self._queue: list[CommandRecord] = []
        self._pending: Counter[str] = Counter()  # compute -> outputs not yet in the journal
        self._error: BaseException | None = None
        self._writer: threading.Thread | None = None

    def record(self, record: CommandRecord) -> None:
        with self._cond:
            if self._error is not None:
                raise self._error
            self._queue.append(record)
            self._pending[record[0]] += 1
            if self._writer is None:
                self._writer = threading.Thread(target=self._write, name="issu-step-journal",
                                                daemon=True)
                self._writer.start()
            self._cond.notify_all()

    def flush(self, compute: str) -> None:
        """Wait until every output of `compute` recorded so far is in the journal; raises
        the journal's error if writing failed."""
        with self._cond:
            while self._pending[compute] and self._error is None:
                self._cond.wait()
            self._pending.pop(compute, None)
            if self._error is not None:
                raise self._error

    def _write(self) -> None:
        while True:
            with self._cond:
                if not self._queue:
                    self._cond.wait_for(lambda: bool(self._queue), timeout=LINGER_S)
                if not self._queue:
                    self._writer = None
                    return
                batch, self._queue = self._queue, []
            try:
                self.journal.record_commands(batch)
            except BaseException as exc:  # e.g. the disk is full: every flush says so
                log.error("command outputs not written to the journal: %s", exc)
                with self._cond:
                    self._error = exc
                    self._writer = None
                    self._cond.notify_all()
                return
            with self._cond:
                for record in batch:
                    self._pending[record[0]] -= 1
                self._cond.notify_all()
