"""Waiting out failures of run-sync's surroundings (Cassandra or RabbitMQ down)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import amqp.exceptions
import kombu.exceptions
from cassandra import (
    CoordinationFailure,
    OperationTimedOut,
    ReadTimeout,
    Unavailable,
    WriteTimeout,
)
from cassandra.cluster import NoHostAvailable
from cassandra.connection import ConnectionException

from backends.cassandra.connection import CassandraUnavailable

T = TypeVar("T")

# Failures of the surroundings, not of the message: retried until they pass (or stop).
TRANSIENT = (
    NoHostAvailable, OperationTimedOut, Unavailable, ReadTimeout, WriteTimeout,
    CoordinationFailure, ConnectionException, CassandraUnavailable,
    kombu.exceptions.OperationalError, amqp.exceptions.ConnectionError,
    amqp.exceptions.RecoverableConnectionError, ConnectionError, OSError, TimeoutError,
)


class StopRequested(Exception):
    """A stop was requested while run-sync waited for something to come back (start-up
    retries, the catch-up copy, the apply processes' start)."""


class Backoff:
    def __init__(self, initial: float, maximum: float) -> None:
        self.initial, self.maximum = initial, maximum
        self.current = initial

    def wait(self, stop: threading.Event) -> bool:
        """Sleep the current delay (True if stopped meanwhile), then double it."""
        stopped = stop.wait(self.current)
        self.current = min(self.maximum, self.current * 2)
        return stopped

    def reset(self) -> None:
        self.current = self.initial


def retry_until_stopped(what: str, fn: Callable[[], T], *, stop: threading.Event,
                        backoff: Backoff, report: Callable[[str], None]) -> T:
    """`fn()` until it returns; every failure waits the backoff. `report` gets the first
    failure and every 20th. Raises StopRequested once `stop` is set."""
    failures = 0
    while True:
        if stop.is_set():
            raise StopRequested(what)
        try:
            return fn()
        except Exception as exc:
            failures += 1
            if failures == 1 or failures % 20 == 0:
                report(f"{what} failed ({failures}x), retrying: {type(exc).__name__}: {exc}")
            if backoff.wait(stop):
                raise StopRequested(what) from exc
