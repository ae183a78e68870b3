"""Waiting for the driver's asynchronous requests without leaving cyclic garbage behind."""

from __future__ import annotations

from cassandra.cluster import ResponseFuture, ResultSet


def settle(future: ResponseFuture) -> ResultSet:
    """`future.result()`, then drop the driver's request-timeout timer.

    cassandra-driver 3.x keeps a cancelled timer on its ResponseFuture, and the timer holds
    a bound method of that future: every finished request (with its whole batch or page)
    becomes a reference cycle that only a full collection frees, so the heap grew with the
    amount written until one ran (tests/test_copy_memory_budget.py checks that the copy's
    peak stays flat). A later page fetch starts a new timer.
    """
    try:
        return future.result()
    finally:
        future._timer = None  # ResponseFuture's own attribute (no public way to release it)
