"""The computes' command outputs, written to the journal by a thread of their own.

A compute's next remote step does not wait for the commit of the previous step's output
(an fsync each: at 50 computes in parallel, most of an action's time outside its remote
commands went to waiting for those). What queued while one transaction committed goes in
the next one. `flush(name)` returns once every output of that compute queued so far is in
the journal: the runner calls it before the compute's transition to upgraded, rolled back
or failed, so the journal never says a compute is done without the outputs of its steps.
A crash in the middle of an action can lose the outputs of its last moments (its state is
still `upgrading`, and the next start probes it).

`record` never raises: it is called between a compute's remote steps, and leaving the
sequence there (drained, agent stopped) would be worse than a missing output. A write that
fails is said by the `flush` of each compute it held, at the transition; the writes after it
are tried again (a disk that was full for a moment does not fail every later action).
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
        self._pending: Counter[str] = Counter()  # compute -> outputs not yet written or failed
        self._failed: dict[str, BaseException] = {}  # compute -> a write of its outputs failed
        self._writer: threading.Thread | None = None

    def record(self, record: CommandRecord) -> None:
        with self._cond:
            self._queue.append(record)
            self._pending[record[0]] += 1
            if self._writer is None:
                self._writer = threading.Thread(target=self._write, name="issu-step-journal",
                                                daemon=True)
                self._writer.start()
            self._cond.notify_all()

    def flush(self, compute: str) -> None:
        """Wait until every output of `compute` recorded so far is in the journal; raises
        the journal's error if writing some of them failed."""
        with self._cond:
            while self._pending[compute] > 0:
                self._cond.wait()
            self._pending.pop(compute, None)
            error = self._failed.pop(compute, None)
        if error is not None:
            raise error

    def _write(self) -> None:
        while True:
            with self._cond:
                if not self._queue:
                    self._cond.wait_for(lambda: bool(self._queue), timeout=LINGER_S)
                if not self._queue:
                    self._writer = None
                    return
                batch, self._queue = self._queue, []
            failed: BaseException | None = None
            try:
                self.journal.record_commands(batch)
            except BaseException as exc:  # e.g. the disk is full: those computes' flush says so
                log.error("command outputs not written to the journal: %s", exc)
                failed = exc
            with self._cond:
                for record in batch:
                    self._pending[record[0]] -= 1
                    if failed is not None:
                        self._failed.setdefault(record[0], failed)
                self._cond.notify_all()
