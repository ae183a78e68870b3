"""Copy processes: pre-sync's token slices spread over several Python processes.

One Python process copies with one interpreter however many slices it has in flight: its
threads wait in turn for it (the same limit run-sync's apply processes lift, see
backends/runsync/processes.py). Here each process copies whole slices (slice_copy.py) with
its own connections and threads; the engine in the parent (copy.py) hands
out the slices, records each finished slice's checkpoint as it is reported, and decides
what is done, failed or resumed exactly as with its own threads. A slice is independent of
every other (its own token range of one table), so nothing else changes.

Pipe protocol (spawn: a fresh interpreter):
  parent -> worker: ("slice", qualified table, slice id, lo, hi) | ("stop",)
  worker -> parent: ("done", slice id, Counts) | ("failed", slice id, reason)
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from typing import Any

from backends.cassandra.connection import Connection
from backends.cassandra.registry import Registry, load_registry
from backends.cassandra.slice_copy import copy_slice, translator_for
from backends.cassandra.tables import Quarantine, SyncSettings, TableContext
from backends.worker_signals import ignore_stop_signals

log = logging.getLogger(__name__)

SliceOutcome = tuple[str, int, int, Any]  # (slice id, lo, hi, Counts or failure reason)


@dataclass(frozen=True)
class CopyWorkerSpec:
    """What a copy process needs; picklable (sent to a spawned interpreter)."""

    connect: Callable[[], tuple[Connection, Connection]]
    processes: int = 2
    registry: Callable[[], Registry] = load_registry
    log_level: int = logging.INFO


def worker_main(spec: CopyWorkerSpec, settings: SyncSettings, run_id: str, pipe: Pipe) -> None:
    """A copy process: slices from the pipe, each copied by one of `settings.concurrency`
    threads, reported back when finished."""
    logging.basicConfig(level=spec.log_level,
                        format="%(asctime)s %(levelname)s copy[%(process)d] %(name)s: "
                               "%(message)s")
    ignore_stop_signals()

    old, new = spec.connect()
    registry = spec.registry()
    quarantine = Quarantine.of_sync(old, new, run_id, reverse=registry.reverse)
    contexts: dict[str, TableContext] = {}
    contexts_lock, send_lock = threading.Lock(), threading.Lock()

    def context(qualified: str) -> TableContext:
        with contexts_lock:
            ctx = contexts.get(qualified)
            if ctx is None:
                keyspace, _, table = qualified.partition(".")
                table_spec = registry.table(keyspace, table)
                ctx = TableContext(table_spec, old, new,
                                   translator_for(registry, old, new, table_spec),
                                   settings, quarantine)
                contexts[qualified] = ctx
            return ctx

    def run(qualified: str, slice_id: str, lo: int, hi: int, new_empty: bool) -> None:
        try:
            reply: tuple[Any, ...] = ("done", slice_id, copy_slice(context(qualified), lo, hi,
                                                                   new_empty=new_empty))
        except Exception as exc:  # reported: the parent marks the slice failed, resumable
            reply = ("failed", slice_id, f"{type(exc).__name__}: {exc}")
        with send_lock, contextlib.suppress(OSError, ValueError):
            pipe.send(reply)

    pool = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="issu-slice")
    try:
        while True:
            try:
                item = pipe.recv()
            except (EOFError, OSError):
                # the parent is gone (killed): stop writing now. A slice cut short is not
                # checkpointed and deletes nothing (deletes follow a complete read): resumable
                os._exit(1)
            if item[0] == "stop":
                break
            _, qualified, slice_id, lo, hi, new_empty = item
            pool.submit(run, qualified, slice_id, lo, hi, new_empty)
    finally:
        pool.shutdown(wait=True)
        old.close()
        new.close()


class SliceProcesses:
    """The parent's side for one run: `spec.processes` copy processes. `copy(table, slices)`
    yields (slice id, Counts | failure reason) as slices finish, keeping each process at
    most `settings.concurrency` slices busy."""

    def __init__(self, spec: CopyWorkerSpec, settings: SyncSettings, run_id: str) -> None:
        self.settings = settings
        ctx = multiprocessing.get_context("spawn")
        self._results: queue.Queue[tuple[int, tuple[Any, ...] | None]] = queue.Queue()
        self._pipes: list[Pipe] = []
        self._procs: list[Any] = []
        for index in range(spec.processes):
            parent_end, child_end = ctx.Pipe(duplex=True)
            proc = ctx.Process(target=worker_main, args=(spec, settings, run_id, child_end),
                               name=f"issu-copy-{index}", daemon=True)
            proc.start()
            child_end.close()
            self._pipes.append(parent_end)
            self._procs.append(proc)
            threading.Thread(target=self._read, args=(index, parent_end), daemon=True,
                             name=f"issu-copy-reader-{index}").start()

    def _read(self, index: int, pipe: Pipe) -> None:
        while True:
            try:
                self._results.put((index, pipe.recv()))
            except (EOFError, OSError):
                self._results.put((index, None))  # the process is gone
                return

    def copy(self, qualified: str, slices: list[tuple[str, int, int]],
             stop: threading.Event | None = None, *, new_empty: bool = False
             ) -> Iterator[SliceOutcome]:
        """(slice id, lo, hi, Counts, or the failure's reason) as slices finish; slices not
        started when `stop` is set are not reported. `new_empty`: see copy_slice."""
        todo = list(slices)
        bounds = {s[0]: s for s in slices}
        held: list[set[str]] = [set() for _ in self._pipes]
        alive = [True] * len(self._pipes)
        per_process = max(1, self.settings.concurrency)

        def feed() -> None:
            for index, pipe in enumerate(self._pipes):
                while alive[index] and todo and len(held[index]) < per_process and \
                        not (stop is not None and stop.is_set()):
                    slice_id, lo, hi = todo.pop(0)
                    try:
                        pipe.send(("slice", qualified, slice_id, lo, hi, new_empty))
                        held[index].add(slice_id)
                    except (OSError, ValueError):
                        todo.insert(0, (slice_id, lo, hi))
                        alive[index] = False

        feed()
        while any(held):
            index, item = self._results.get()
            if item is None:  # a process died: what it held failed (resumable)
                alive[index] = False
                for slice_id in sorted(held[index]):
                    yield (*bounds[slice_id], f"copy process {index} exited "
                           f"(code {self._procs[index].exitcode})")
                held[index].clear()
                continue
            _, slice_id, payload = item
            held[index].discard(slice_id)
            yield (*bounds[slice_id], payload)
            feed()
        if todo and not (stop is not None and stop.is_set()):
            for slice_id, lo, hi in todo:  # every process died
                yield slice_id, lo, hi, "no copy process left"

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def close(self) -> None:
        for pipe in self._pipes:
            with contextlib.suppress(Exception):
                pipe.send(("stop",))
        for proc in self._procs:
            proc.join(60)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        for pipe in self._pipes:
            with contextlib.suppress(Exception):
                pipe.close()
