"""Progress protocols the backends report through (implemented by issu_tui.journal.Journal).

Backends never import issu_tui: they accept any object with these methods. The in-memory
implementations below serve tools and tests that run without a journal.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Protocol, runtime_checkable


@runtime_checkable
class CheckpointStore(Protocol):
    def done_slices(self, job: str, table: str) -> set[str]: ...
    def mark_slice_done(self, job: str, table: str, slice_id: str, rows: int) -> None: ...
    def reset_job(self, job: str) -> None: ...


@runtime_checkable
class EventSink(Protocol):
    # -> object: a sink may return something (the journal: the event's id); callers ignore it
    def event(self, kind: str, message: str, **fields: object) -> object: ...


@runtime_checkable
class CounterSink(Protocol):
    def set_counters(self, scope: str, values: Mapping[str, float]) -> None: ...


class MemoryCheckpoints:
    """Checkpoints kept in this process only (a run without a journal cannot resume)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done: dict[tuple[str, str], dict[str, int]] = {}

    def done_slices(self, job: str, table: str) -> set[str]:
        with self._lock:
            return set(self._done.get((job, table), {}))

    def mark_slice_done(self, job: str, table: str, slice_id: str, rows: int) -> None:
        with self._lock:
            self._done.setdefault((job, table), {})[slice_id] = rows

    def reset_job(self, job: str) -> None:
        with self._lock:
            for key in [k for k in self._done if k[0] == job]:
                del self._done[key]


class MemoryEvents:
    """Collects events in a list (thread-safe); `print_to` echoes them to a stream."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[tuple[str, str, dict[str, object]]] = []

    def event(self, kind: str, message: str, **fields: object) -> None:
        with self._lock:
            self.events.append((kind, message, dict(fields)))

    def kinds(self) -> list[str]:
        with self._lock:
            return [k for k, _, _ in self.events]


class MemoryCounters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: dict[str, dict[str, float]] = {}

    def set_counters(self, scope: str, values: Mapping[str, float]) -> None:
        with self._lock:
            self.values.setdefault(scope, {}).update(values)
