"""The lanes: single-thread executors, each object always in the same one, so the changes
of one object are applied and republished in the order they were announced.

A message for an object that already has one waiting in its lane joins it, and one re-read
and replace serves them all (the content is read from old when the work starts, so it covers
every change announced before). Every message's Outcome is put on `done`, with the message
and the connection generation it came with; the owner acknowledges (service.py) or reports
it to its parent (processes.py).
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from backends.runsync.applier import ChangeApplier, Outcome
from backends.runsync.routing import lane_of_key


class Delivered(Protocol):
    """A message in hand: the broker's (kombu) or an apply process's Delivery."""

    body: bytes | str
    delivery_info: dict[str, Any]


Finished = tuple[Delivered, int, Outcome]  # the message, its generation, what became of it
DoneQueue = queue.Queue[Finished | None]  # None: the owner's end-of-stream mark


class Lanes:
    def __init__(self, applier: ChangeApplier, count: int, done: DoneQueue, *,
                 stride: int = 1) -> None:
        self.applier, self.done, self.stride = applier, done, stride
        self._lanes = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"issu-apply-{i}")
                       for i in range(count)]
        self._pending: dict[str, list[tuple[Delivered, int]]] = {}
        self._pending_lock = threading.Lock()

    def connect_publisher(self, *, wait: bool = False) -> None:
        """The lanes' publisher opens its connection (`wait`: until it tried)."""
        future = self._lanes[0].submit(self.applier.connect_publisher)
        if wait:
            future.result()

    def dispatch(self, key: str | None, message: Delivered, gen: int) -> None:
        """Into the object's lane; a message for an object that already has one waiting
        joins it."""
        if key is None:  # not parsable: on its own, to be quarantined with the reason
            self._lanes[0].submit(self._work, [(message, gen)])
            return
        with self._pending_lock:
            waiting = self._pending.get(key)
            if waiting is not None:  # not started yet: its write will serve this one too
                waiting.append((message, gen))
                return
            self._pending[key] = [(message, gen)]
        self._lanes[lane_of_key(key, len(self._lanes), self.stride)].submit(
            self._work_object, key)

    def shutdown(self) -> None:
        """Wait for every lane to finish what it was given (after a stop, what had not
        started is reported abandoned)."""
        for lane in self._lanes:
            lane.shutdown(wait=True)

    def _work_object(self, key: str) -> None:
        with self._pending_lock:
            batch = self._pending.pop(key)
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
