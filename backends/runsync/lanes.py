"""The lanes: `count` threads applying changes, one object at a time in each, so the changes
of one object are applied and republished in the order they were announced.

Any idle lane takes the next object that has a change waiting; an object with a change in
progress keeps its later messages until that change is done, then the same lane applies
them. (Lanes used to be picked by a hash of the uuid: a change then waited behind an
unrelated object's slow change in its lane while other lanes idled, which at a low rate
was most of the lag: docs/benchmarks-archive.md.)

A message for an object that already has one waiting joins it, and one re-read and replace
serves them all (the content is read from old when the work starts, so it covers every
change announced before). Every message's Outcome is put on `done`, with the message and
the connection generation it came with; the owner acknowledges (service.py) or reports it
to its parent (processes.py).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol

from backends.runsync.applier import Outcome

log = logging.getLogger(__name__)


class Delivered(Protocol):
    """A message in hand: the broker's (kombu) or an apply process's Delivery."""

    body: bytes | str
    delivery_info: dict[str, Any]


class Applies(Protocol):
    """What the lanes run (applier.ChangeApplier)."""

    def process(self, bodies: list[bytes | str], *, thorough: bool = False) -> list[Outcome]:
        ...

    def connect_publisher(self) -> None:
        ...


Finished = tuple[Delivered, int, Outcome]  # the message, its generation, what became of it
DoneQueue = queue.Queue[Finished | None]  # None: the owner's end-of-stream mark


class Lanes:
    def __init__(self, applier: Applies, count: int, done: DoneQueue) -> None:
        self.applier, self.done = applier, done
        # `count` threads, each taking the oldest task waiting (an object, or one unparsable
        # message): a bare queue, not a ThreadPoolExecutor, whose Future, work item and idle
        # semaphore per task were a few % of run-sync's CPU (one task per object changed)
        self._tasks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._lane, name=f"issu-apply_{i}",
                                          daemon=True) for i in range(count)]
        for thread in self._threads:
            thread.start()
        # object -> its messages not started yet; an object is in `_busy` from its first
        # message until a lane found nothing more for it (at most one lane per object)
        self._pending: dict[str, list[tuple[Delivered, int]]] = {}
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    def connect_publisher(self, *, wait: bool = False) -> None:
        """The lanes' publisher opens its connection (`wait`: until it tried)."""
        tried = threading.Event()

        def connect() -> None:
            try:
                self.applier.connect_publisher()
            finally:
                tried.set()

        self._tasks.put(connect)
        if wait:
            tried.wait()

    def dispatch(self, key: str | None, message: Delivered, gen: int) -> None:
        """To the next idle lane, unless its object is in a lane already (then it waits for
        it there); a message for an object that already has one waiting joins it."""
        if key is None:  # not parsable: on its own, to be quarantined with the reason
            self._tasks.put(lambda: self._work([(message, gen)]))
            return
        with self._lock:
            waiting = self._pending.get(key)
            if waiting is not None:  # not started yet: its write will serve this one too
                waiting.append((message, gen))
                return
            self._pending[key] = [(message, gen)]
            if key in self._busy:  # in a lane now: that lane takes it next
                return
            self._busy.add(key)
        self._tasks.put(lambda: self._work_object(key))

    def shutdown(self) -> None:
        """Wait for the lanes to finish what they were given (after a stop, what had not
        started is reported abandoned)."""
        for _ in self._threads:
            self._tasks.put(None)  # after every task given: each lane ends on one
        for thread in self._threads:
            thread.join()

    def _lane(self) -> None:
        while (task := self._tasks.get()) is not None:
            try:
                task()
            except BaseException:  # _work reports every message's outcome itself
                log.exception("a lane's task failed")

    def _work_object(self, key: str) -> None:
        while True:
            with self._lock:
                batch = self._pending.pop(key, None)
                if batch is None:
                    self._busy.discard(key)
                    return
            self._work(batch)

    def _work(self, batch: list[tuple[Delivered, int]]) -> None:
        try:
            redelivered = any((message.delivery_info or {}).get("redelivered")
                              for message, _ in batch)
            outcomes = self.applier.process([message.body for message, _ in batch],
                                            thorough=bool(redelivered))
        except BaseException as exc:  # never lose track of a delivery
            reason = f"internal error: {type(exc).__name__}: {exc}"
            outcomes = [Outcome("quarantine", reason, 1) for _ in batch]
        for (message, gen), outcome in zip(batch, outcomes, strict=True):
            self.done.put((message, gen, outcome))
