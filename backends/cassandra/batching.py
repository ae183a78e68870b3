"""Where the copy's UNLOGGED batches end, for cells arriving partition by partition.

A batch carries either one partition (up to `cells` / `nbytes`: a single-partition batch is
one mutation on the replica, and Cassandra applies its batch size thresholds only to
batches over several partitions, CASSANDRA-10876), or several small partitions with the
same replicas (up to `group_cells` / `group_bytes` / `group_partitions`: below Cassandra's
5 KiB batch size warning and its 10-partition unlogged batch warning). Contrail's rows are
small (an object is a few dozen cells), so one request then carries several objects: per
request the driver and the coordinator pay about as much as per partition, so fewer
requests cost less CPU on both sides for the same cells (docs/benchmarks.md).
Grouping only partitions with the same replicas keeps every mutation on a replica of the
coordinator the driver picks (token-aware, from the batch's first partition), as the Spark
Cassandra connector's `batch.grouping.key=replica_set` does.

Pure bookkeeping, no I/O: the writer asks `add` before queueing each item and sends the
oldest `cut` items it is told to as one batch.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

_UNSET = object()
Item = TypeVar("Item")
Key = TypeVar("Key", bound=Hashable)

# Bytes counted per cell on top of its column name and value. Cassandra sizes a batch for its
# 5 KiB warning by the mutations' data size: per row the clustering, its liveness info and
# deletion time, per cell the timestamp, TTL and local deletion time. Measured against its
# warnings with Contrail-shaped cells: about 39 bytes; 48 keeps a margin.
CELL_OVERHEAD = 48


@dataclass(frozen=True)
class BatchBounds:
    cells: int = 250               # one partition's batch
    nbytes: int = 32_000
    group_cells: int = 100         # a batch over several partitions
    group_bytes: int = 4500
    group_partitions: int = 10


class Batching(Generic[Key]):
    """`replicas(key)` names a partition's replica set (None: one set for all, e.g. the
    cluster's token map is unknown); it is asked only when a partition could join a batch."""

    def __init__(self, bounds: BatchBounds,
                 replicas: Callable[[Key], Hashable] | None = None) -> None:
        self.bounds = bounds
        self._replicas = replicas
        self.reset()

    def reset(self) -> None:
        """Everything pending was sent."""
        self._n = 0              # items pending
        self._bytes = 0
        self._parts = 0          # partitions in the pending batch
        self._key: object = _UNSET
        self._part_start = 0     # index of the current partition's first pending item
        self._part_bytes0 = 0    # pending bytes before it
        self._first: object = _UNSET
        self._first_replicas: object = _UNSET

    def add(self, key: Key, size: int) -> int:
        """Account one item of partition `key`, `size` bytes; returns how many pending items,
        oldest first, make a finished batch to send before this one is queued (0: none)."""
        b = self.bounds
        if key == self._key:
            if self._parts == 1:
                if self._n < b.cells and self._bytes + size <= b.nbytes:
                    return self._take(size)
                return self._fresh(key, size)
            if self._n < b.group_cells and self._bytes + size <= b.group_bytes:
                return self._take(size)
            # the group is full: its earlier partitions go, this partition's items so far
            # start a single-partition batch (if it would not fit either, all go)
            kept, kept_bytes = self._n - self._part_start, self._bytes - self._part_bytes0
            if not (self._part_start and kept < b.cells and kept_bytes + size <= b.nbytes):
                return self._fresh(key, size)
            cut = self._part_start
            self._n, self._bytes, self._parts = kept, kept_bytes, 1
            self._part_start = self._part_bytes0 = 0
            self._first, self._first_replicas = key, _UNSET
            self._take(size)
            return cut
        if (self._n and self._parts < b.group_partitions and self._n < b.group_cells
                and self._bytes + size <= b.group_bytes and self._same_replicas(key)):
            self._parts += 1
            self._key, self._part_start, self._part_bytes0 = key, self._n, self._bytes
            return self._take(size)
        return self._fresh(key, size)

    def _take(self, size: int) -> int:
        self._n += 1
        self._bytes += size
        return 0

    def _fresh(self, key: Key, size: int) -> int:
        """Everything pending goes; this item starts a batch."""
        cut = self._n
        self._n, self._bytes, self._parts = 1, size, 1
        self._key, self._part_start, self._part_bytes0 = key, 0, 0
        self._first, self._first_replicas = key, _UNSET
        return cut

    def _same_replicas(self, key: Key) -> bool:
        if self._replicas is None:
            return True
        if self._first_replicas is _UNSET:
            # a key by now: _fresh set it when the pending batch began (add asks only then)
            self._first_replicas = self._replicas(cast(Key, self._first))
        return self._replicas(key) == self._first_replicas


def grouped(items: Iterable[Item], batching: Batching[Key], key: Callable[[Item], Key],
            size: Callable[[Item], int]) -> Iterator[list[Item]]:
    """The batches `batching` makes of `items` (a whole stream at hand, as the benchmark's
    ceiling has; the writer feeds `add` as cells arrive)."""
    pending: list[Item] = []
    for item in items:
        cut = batching.add(key(item), size(item))
        if cut:
            yield pending[:cut]
            del pending[:cut]
        pending.append(item)
    if pending:
        yield pending
    batching.reset()
