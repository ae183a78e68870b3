"""Batched, bounded-in-flight writes of cells to the new cluster, each with its source
WRITETIME (`USING TIMESTAMP`): a copy can never overwrite a newer value written meanwhile."""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Hashable

from cassandra.cluster import ResponseFuture, Session
from cassandra.query import BatchStatement, BatchType, PreparedStatement

from backends.cassandra.batching import CELL_OVERHEAD, BatchBounds, Batching
from backends.cassandra.futures import settle
from backends.cassandra.schema import Layout
from backends.cassandra.translate import Cell


def request_for(statements: list[tuple[PreparedStatement, tuple[object, ...]]]) -> object:
    """One statement bound alone, several as one UNLOGGED batch."""
    if len(statements) == 1:
        stmt, args = statements[0]
        return stmt.bind(args)
    batch = BatchStatement(batch_type=BatchType.UNLOGGED)
    for stmt, args in statements:
        batch.add(stmt, args)
    return batch


class CellWriter:
    """Sends cells as UNLOGGED batches (backends/cassandra/batching.py: one partition, or
    several small ones with the same replicas), keeping at most `max_in_flight` requests
    outstanding. A failed write raises from the next call (or `close`): the caller's slice
    then fails."""

    def __init__(self, session: Session, insert: PreparedStatement, delete: PreparedStatement,
                 layout: Layout, *, bounds: BatchBounds | None = None, max_in_flight: int = 4,
                 replicas: Callable[[str], Hashable] | None = None,
                 kept: frozenset[tuple[str, str]] = frozenset()) -> None:
        self._session = session
        self._kept = kept  # (key, column) never deleted (TableContext.kept)
        self._insert, self._delete = insert, delete
        self._enc_key, self._enc_col = layout.encode_key, layout.encode_column
        self._enc_val = layout.encode_value
        self._batching = Batching(bounds or BatchBounds(), replicas)
        self._max_in_flight = max_in_flight
        self._key: str | None = None
        self._ekey: object = None
        self._pending: list[tuple[PreparedStatement, tuple[object, ...]]] = []
        self._futures: deque[ResponseFuture] = deque()
        self.inserted = 0
        self.deleted = 0
        self.requests = 0

    def insert(self, key: str, cell: Cell) -> None:
        column, value = cell.column, cell.value
        ekey = self._room(key, len(column) + len(value) + CELL_OVERHEAD)
        self._pending.append((self._insert, (ekey, self._enc_col(column),
                                             self._enc_val(value), cell.writetime)))
        self.inserted += 1

    def delete(self, key: str, column: str, writetime: int) -> None:
        """Delete one cell with the writetime it had when read: exactly that version goes,
        anything written later survives (a tombstone only wins at an equal or newer time)."""
        if self._kept and (key, column) in self._kept:
            return
        ekey = self._room(key, len(column) + CELL_OVERHEAD)
        self._pending.append((self._delete, (writetime, ekey, self._enc_col(column))))
        self.deleted += 1

    def _room(self, key: str, size: int) -> object:
        """Send the batch the next item closes, if any; the item's encoded key."""
        if key != self._key:
            self._key, self._ekey = key, self._enc_key(key)
        cut = self._batching.add(key, size)
        if cut:
            self._send(cut)
        return self._ekey

    def flush(self) -> None:
        """Send everything pending."""
        if self._pending:
            self._send(len(self._pending))
        self._batching.reset()

    def _send(self, count: int) -> None:
        items = self._pending[:count]
        del self._pending[:count]
        while len(self._futures) >= self._max_in_flight:
            settle(self._futures.popleft())
        self._futures.append(self._session.execute_async(request_for(items)))
        self.requests += 1

    def close(self) -> None:
        """Send what is pending and wait for every outstanding write (raises the first error)."""
        self.flush()
        error: BaseException | None = None
        while self._futures:
            try:
                settle(self._futures.popleft())
            except Exception as exc:
                error = error or exc
        if error is not None:
            raise error

    def abandon(self) -> None:
        """Wait for outstanding writes after a failure, ignoring their results."""
        self._pending = []
        self._batching.reset()
        while self._futures:
            # the caller already reports the first failure
            with contextlib.suppress(Exception):
                settle(self._futures.popleft())
