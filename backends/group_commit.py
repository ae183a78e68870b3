"""Group commit: what several threads ask of one kind at the same moment is done as one
request (run-sync's Cassandra reads and writes and its publishes, the journal's command
records). A lone request goes alone, at once: nothing waits for company."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar, cast

Item = TypeVar("Item")
Result = TypeVar("Result")


class Slot(Generic[Item, Result]):
    """One lane's request in a group commit queue."""

    __slots__ = ("done", "error", "item", "owner", "result", "waiting", "wake")

    def __init__(self, owner: GroupCommit[Item, Result], item: Item) -> None:
        self.owner, self.item = owner, item
        self.done = self.waiting = False
        self.result: Result | None = None
        self.error: BaseException | None = None
        # a bare lock held from the start: the lane blocks acquiring it, a waker releases it
        # (cheaper than an Event: no Condition, no waiter lock per wait)
        self.wake = threading.Lock()
        self.wake.acquire()

    def wait(self) -> Result:
        """The result (this lane may run a group meanwhile); raises the group's failure."""
        return self.owner.wait(self)


class GroupCommit(Generic[Item, Result]):
    """Requests of one kind. `submit` queues one without blocking; `wait` returns its
    result. Up to `leaders` groups are in flight; a waiting lane with none in flight for
    its kind leads: it takes the queue's head, as many as `fits(group)` allows, and runs
    them with `run(items) -> results`. A failure of the group is every member's failure.

    With `stall_s`, a group in flight for longer than that no longer holds the others: a
    waiting lane then leads one more group (up to `leaders` in flight). A stalled request
    (a Cassandra node pausing a few hundred ms on a loaded box) held every lane of the
    process behind it; groups that answer in time keep the others waiting, so requests are
    still combined as much as before."""

    def __init__(self, run: Callable[[list[Item]], Sequence[Result]], *,
                 fits: Callable[[list[Item]], bool], leaders: int = 1,
                 stall_s: float | None = None) -> None:
        self._run, self._fits, self._max_leaders = run, fits, leaders
        self._stall_s = stall_s
        self._lock = threading.Lock()
        self._queue: deque[Slot[Item, Result]] = deque()
        self._leaders = 0
        self._started: dict[int, float] = {}  # id of a group in flight -> when it went
        self.requests = 0   # groups run (each one request or one set of batches)
        self.items = 0      # items they carried

    def submit(self, item: Item) -> Slot[Item, Result]:
        slot: Slot[Item, Result] = Slot(self, item)
        with self._lock:
            self._queue.append(slot)
        return slot

    def wait(self, slot: Slot[Item, Result]) -> Result:
        while True:
            with self._lock:
                if slot.done:
                    break
                timeout = self._patience()
                if timeout is not None and timeout <= 0.0:
                    self._leaders += 1
                    group = self._take()
                    self._started[id(group)] = time.monotonic()
                else:
                    # released exactly once, by whoever sets `waiting` back to False
                    slot.waiting = True
                    group = None
            if group is None:
                if not slot.wake.acquire(timeout=-1 if timeout is None else timeout):
                    with self._lock:  # the oldest group stalls: look again
                        if slot.waiting:
                            slot.waiting = False
                        else:  # released meanwhile: take that release back
                            slot.wake.acquire()
                continue
            self._lead(group)
        if slot.error is not None:
            raise slot.error
        # _lead set the result of every member when the group did not fail; a cast, not a
        # None check: Result may itself be None (writes)
        return cast(Result, slot.result)

    def call(self, item: Item) -> Result:
        return self.wait(self.submit(item))

    def _patience(self) -> float | None:
        """With the lock held: seconds a waiting lane waits before it may lead (<= 0: lead
        now; None: until woken)."""
        if not self._queue or self._leaders >= self._max_leaders:
            return None
        if not self._leaders or self._stall_s is None:
            return 0.0
        return self._stall_s - (time.monotonic() - min(self._started.values()))

    def _take(self) -> list[Slot[Item, Result]]:
        group = [self._queue.popleft()]
        items = [group[0].item]
        while self._queue and self._fits([*items, self._queue[0].item]):
            items.append(self._queue[0].item)
            group.append(self._queue.popleft())
        return group

    def _lead(self, group: list[Slot[Item, Result]]) -> None:
        try:
            results = self._run([slot.item for slot in group])
            for slot, result in zip(group, results, strict=True):
                slot.result = result
        except BaseException as exc:  # the whole group failed: each member retries its own
            for slot in group:
                slot.error = exc
        with self._lock:
            self.requests += 1
            self.items += len(group)
            self._leaders -= 1
            del self._started[id(group)]
            for slot in group:
                slot.done = True
                if slot.waiting:
                    slot.waiting = False
                    slot.wake.release()
            # someone already waiting leads the next group (a queued request whose lane has
            # not waited yet is taken by whoever leads next)
            for queued in self._queue:
                if queued.waiting:
                    queued.waiting = False
                    queued.wake.release()
                    break
