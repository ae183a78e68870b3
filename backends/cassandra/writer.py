"""Batched, bounded-in-flight writes of cells to the new cluster, each with its source
WRITETIME (`USING TIMESTAMP`): a copy can never overwrite a newer value written meanwhile."""

from __future__ import annotations

import contextlib
from collections import deque

from cassandra.cluster import ResponseFuture, Session
from cassandra.query import BatchStatement, BatchType, PreparedStatement

from backends.cassandra.futures import settle
from backends.cassandra.schema import Layout
from backends.cassandra.translate import Cell

_CELL_OVERHEAD = 24


class CellWriter:
    """Groups statements of one partition in UNLOGGED batches (one mutation on the replica),
    bounded in cells and bytes; keeps at most `max_in_flight` requests outstanding.
    A failed write raises from the next call (or `close`): the caller's slice then fails."""

    def __init__(self, session: Session, insert: PreparedStatement, delete: PreparedStatement,
                 layout: Layout, *, batch_cells: int = 100, batch_bytes: int = 4500,
                 max_in_flight: int = 4) -> None:
        self._session = session
        self._insert, self._delete = insert, delete
        self._enc_key, self._enc_col = layout.encode_key, layout.encode_column
        self._enc_val = layout.encode_value
        self._batch_cells, self._batch_bytes = batch_cells, batch_bytes
        self._max_in_flight = max_in_flight
        self._key: str | None = None
        self._ekey: object = None
        self._pending: list[tuple[PreparedStatement, tuple[object, ...]]] = []
        self._bytes = 0
        self._futures: deque[ResponseFuture] = deque()
        self.inserted = 0
        self.deleted = 0

    def _start(self, key: str, size: int) -> None:
        if key != self._key or len(self._pending) >= self._batch_cells or \
                (self._pending and self._bytes + size > self._batch_bytes):
            self.flush()
        if key != self._key:
            self._key, self._ekey = key, self._enc_key(key)

    def insert(self, key: str, cell: Cell) -> None:
        column, value = cell.column, cell.value
        size = len(column) + len(value) + _CELL_OVERHEAD
        if key != self._key or len(self._pending) >= self._batch_cells or \
                self._bytes + size > self._batch_bytes:
            self._start(key, size)  # (the per-cell hot path checks inline first)
        self._pending.append((self._insert, (self._ekey, self._enc_col(column),
                                             self._enc_val(value), cell.writetime)))
        self._bytes += size
        self.inserted += 1

    def delete(self, key: str, column: str, writetime: int) -> None:
        """Delete one cell with the writetime it had when read: exactly that version goes,
        anything written later survives (a tombstone only wins at an equal or newer time)."""
        size = len(column) + _CELL_OVERHEAD
        self._start(key, size)
        self._pending.append((self._delete, (writetime, self._ekey, self._enc_col(column))))
        self._bytes += size
        self.deleted += 1

    def flush(self) -> None:
        if not self._pending:
            return
        if len(self._pending) == 1:
            stmt, args = self._pending[0]
            request: object = stmt.bind(args)
        else:
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            for stmt, args in self._pending:
                batch.add(stmt, args)
            request = batch
        self._pending = []
        self._bytes = 0
        while len(self._futures) >= self._max_in_flight:
            settle(self._futures.popleft())
        self._futures.append(self._session.execute_async(request))

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
        while self._futures:
            # the caller already reports the first failure
            with contextlib.suppress(Exception):
                settle(self._futures.popleft())
