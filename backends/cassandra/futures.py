"""Waiting for the driver's asynchronous requests without leaving cyclic garbage behind."""

from __future__ import annotations

from typing import Any

from cassandra.cluster import ResponseFuture


def settle(future: ResponseFuture) -> Any:
    """`future.result()`, then drop the driver's request-timeout timer.

    cassandra-driver 3.x keeps a cancelled timer on its ResponseFuture, and the timer holds
    a bound method of that future: every finished request (with its whole batch or page)
    becomes a reference cycle that only a full collection frees, so the heap grew with the
    amount written until one ran (pre-sync, tracemalloc peak: 4.4 MiB at 20,000 cells,
    8.8 MiB at 160,000; 2.2 MiB at both with this). A later page fetch starts a new timer.
    """
    try:
        return future.result()
    finally:
        future._timer = None  # ResponseFuture's own attribute (no public way to release it)
