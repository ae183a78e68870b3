"""pre-sync / post-sync: copy registered tables old -> new, slice by slice, replacing.

The engine hands out each table's token slices (several in flight, in its own threads or in
copy processes), checkpoints each finished slice and decides what is done, failed or
resumed; a killed run resumes with the slices not yet done. How one slice is copied (read
new, replace from old, delete the leftovers only after a complete read) is
backends/cassandra/slice_copy.py.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from typing import Any

from backends.cassandra.connection import Connection
from backends.cassandra.registry import Registry, TableSpec
from backends.cassandra.schema import check_partitioner, keyspace_exists
from backends.cassandra.slice_copy import (
    Counts,
    check_path,
    copy_slice,
    prune_renamed_partitions,
    translator_for,
)
from backends.cassandra.slice_processes import CopyWorkerSpec, SliceProcesses
from backends.cassandra.tables import (
    Quarantine,
    SyncError,
    SyncSettings,
    TableContext,
    token_slices,
)
from backends.progress import CheckpointStore, CounterSink, EventSink

log = logging.getLogger(__name__)

COMPLETE_MARK = ("*", "__complete__")
PRUNE_SLICE = "prune-keys"


@dataclass
class TableReport:
    keyspace: str
    table: str
    status: str = "ok"               # ok | skipped | failed
    partitions: int = 0
    cells: int = 0
    deleted: int = 0
    quarantined: int = 0
    slices: int = 0
    slices_done: int = 0
    slices_resumed: int = 0
    slices_failed: int = 0
    duration_s: float = 0.0
    translator: str = "identity"
    errors: list[str] = field(default_factory=list)
    note: str = ""
    write_requests: int = 0
    new_was_empty: bool = False  # new held none of it at the start: new's slices not read

    def add(self, counts: Counts) -> None:
        self.partitions += counts.partitions
        self.cells += counts.cells
        self.deleted += counts.deleted
        self.quarantined += counts.quarantined
        self.write_requests += counts.write_requests


@dataclass
class CopyReport:
    job: str
    run_id: str
    tables: list[TableReport] = field(default_factory=list)
    duration_s: float = 0.0
    quarantine_table: str = ""

    @property
    def ok(self) -> bool:
        return all(t.status != "failed" for t in self.tables)

    def totals(self) -> dict[str, float]:
        return {
            "partitions": sum(t.partitions for t in self.tables),
            "cells": sum(t.cells for t in self.tables),
            "deleted": sum(t.deleted for t in self.tables),
            "quarantined": sum(t.quarantined for t in self.tables),
            "write_requests": sum(t.write_requests for t in self.tables),
            "slices_failed": sum(t.slices_failed for t in self.tables),
            "tables_failed": sum(1 for t in self.tables if t.status == "failed"),
            "tables_skipped": sum(1 for t in self.tables if t.status == "skipped"),
            "duration_s": self.duration_s,
        }

    def as_dict(self) -> dict[str, object]:
        return {"job": self.job, "run_id": self.run_id, "ok": self.ok,
                "duration_s": round(self.duration_s, 3), "totals": self.totals(),
                "quarantine_table": self.quarantine_table,
                "tables": [asdict(t) for t in self.tables]}


def _slices_in_threads(ctx: TableContext, todo: list[tuple[str, int, int]], threads: int,
                       stop: threading.Event | None, new_empty: bool
                       ) -> Iterator[tuple[str, int, int, Any]]:
    """(slice id, lo, hi, Counts or the failure's reason) as this process's threads finish
    the slices."""
    def run_slice(item: tuple[str, int, int]) -> Counts:
        if stop is not None and stop.is_set():
            raise SyncError("stopped")
        return copy_slice(ctx, item[1], item[2], new_empty=new_empty)

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="issu-slice") as pool:
        futures = {pool.submit(run_slice, s): s for s in todo}
        for future in as_completed(futures):
            slice_id, lo, hi = futures[future]
            try:
                yield slice_id, lo, hi, future.result()
            except Exception as exc:
                yield slice_id, lo, hi, f"{type(exc).__name__}: {exc}"


class CopyEngine:
    """Runs pre-sync (job "pre-sync") or post-sync (job "post-sync") over registered tables."""

    def __init__(self, old: Connection, new: Connection, registry: Registry,
                 settings: SyncSettings, *, checkpoints: CheckpointStore,
                 events: EventSink | None = None, counters: CounterSink | None = None,
                 processes: CopyWorkerSpec | None = None) -> None:
        """`processes`: copy the slices in that many processes (see slice_processes), each
        with `settings.concurrency` slices in flight; None or 1: in this one."""
        self.old, self.new, self.registry, self.settings = old, new, registry, settings
        self.checkpoints, self.events, self.counters = checkpoints, events, counters
        self.process_spec = processes
        self._processes: SliceProcesses | None = None
        self._lock = threading.Lock()

    def _event(self, kind: str, message: str, **fields: object) -> None:
        log.info("%s", message)
        if self.events is not None:
            self.events.event(kind, message, **fields)

    def tables_for(self, phase: str) -> list[TableSpec]:
        return self.registry.tables(self.settings.keyspaces, phase=phase)

    def run(self, job: str, *, phase: str, fresh: bool = False,
            stop: threading.Event | None = None) -> CopyReport:
        specs = self.tables_for(phase)
        check_path(self.old, self.new, {s.keyspace for s in specs}, self.registry.keyspaces,
                   reverse=self.registry.reverse)
        check_partitioner(self.old.session, "old")
        check_partitioner(self.new.session, "new")
        started = time.monotonic()
        run_id = uuid.uuid4().hex[:12]
        if fresh or COMPLETE_MARK[1] in self.checkpoints.done_slices(job, COMPLETE_MARK[0]):
            self.checkpoints.reset_job(job)
        quarantine = Quarantine.of_sync(self.old, self.new, run_id,
                                        reverse=self.registry.reverse)
        report = CopyReport(job, run_id,
                            quarantine_table=f"{quarantine.keyspace}.{quarantine.TABLE}")
        self._event("sync", f"{job}: started (run {run_id})", job=job, run_id=run_id)
        if self.process_spec is not None and self.process_spec.processes > 1:
            self._processes = SliceProcesses(self.process_spec, self.settings, run_id)
            self._event("sync", f"{job}: {self.process_spec.processes} copy processes (pids "
                        f"{', '.join(map(str, self._processes.pids()))}), each with "
                        f"{self.settings.concurrency} slices in flight", job=job)
        try:
            for spec in specs:
                if stop is not None and stop.is_set():
                    break
                report.tables.append(self._copy_table(job, spec, quarantine, stop))
                self._publish(job, report)
        finally:
            if self._processes is not None:
                self._processes.close()
                self._processes = None
        report.duration_s = time.monotonic() - started
        stopped = stop is not None and stop.is_set()
        if report.ok and not stopped:
            self.checkpoints.mark_slice_done(job, COMPLETE_MARK[0], COMPLETE_MARK[1],
                                             int(report.totals()["cells"]))
        totals = report.totals()
        self._event("sync", f"{job}: {'finished' if report.ok else 'FAILED'}: "
                    f"{int(totals['cells'])} cells copied, {int(totals['deleted'])} deleted, "
                    f"{int(totals['quarantined'])} quarantined in {report.duration_s:.1f}s",
                    job=job, level="info" if report.ok else "error", **totals)
        return report

    def _publish(self, job: str, report: CopyReport) -> None:
        if self.counters is not None:
            self.counters.set_counters(f"sync.{job}", report.totals())

    def _copy_table(self, job: str, spec: TableSpec, quarantine: Quarantine,
                    stop: threading.Event | None) -> TableReport:
        started = time.monotonic()
        rep = TableReport(spec.keyspace, spec.name)
        old_ks = self.old.side.keyspace(spec.keyspace)
        if not keyspace_exists(self.old.session, old_ks):
            rep.status, rep.note = "skipped", f"keyspace {old_ks} absent on old: not copied"
            self._event("sync", f"{job}: WARNING {spec.qualified}: {rep.note}", level="warning",
                        table=spec.qualified)
            return rep
        try:
            translator = translator_for(self.registry, self.old, self.new, spec)
            ctx = TableContext(spec, self.old, self.new, translator, self.settings, quarantine)
        except Exception as exc:
            rep.status = "failed"
            rep.errors.append(f"{spec.qualified}: {exc}")
            self._event("sync", f"{job}: {spec.qualified} failed: {exc}", level="error")
            return rep
        rep.translator = ctx.translator.name
        if not ctx.present_on_old:
            rep.status, rep.note = "skipped", f"table absent on old ({old_ks}.{spec.name})"
            self._event("sync", f"{job}: WARNING {spec.qualified}: {rep.note}", level="warning")
            return rep
        table_id = spec.qualified
        slices = token_slices(ctx.slice_count())
        rep.slices = len(slices)
        done = self.checkpoints.done_slices(job, table_id)
        todo = [s for s in slices if s[0] not in done]
        rep.slices_resumed = len(slices) - len(todo)
        if ctx.translator.renames_keys:
            try:
                ctx.key_map()  # refuse colliding keys before writing anything
            except Exception as exc:
                rep.status = "failed"
                rep.errors.append(str(exc))
                return rep

        # probed before old is read: what run-sync writes on new from now on, this copy
        # would never delete anyway
        rep.new_was_empty = ctx.new_is_empty()
        outcomes = (self._processes.copy(table_id, todo, stop, new_empty=rep.new_was_empty)
                    if self._processes is not None else
                    _slices_in_threads(ctx, todo, self.settings.concurrency, stop,
                                       rep.new_was_empty))
        for slice_id, lo, hi, outcome in outcomes:
            if not isinstance(outcome, str):
                try:
                    self.checkpoints.mark_slice_done(job, table_id, slice_id, outcome.cells)
                except Exception as exc:
                    outcome = f"its checkpoint was not recorded: {type(exc).__name__}: {exc}"
            if isinstance(outcome, str):
                rep.slices_failed += 1
                msg = (f"{table_id} slice {slice_id} (tokens {lo}..{hi}) failed, nothing "
                       f"deleted there: {outcome}")
                rep.errors.append(msg)
                self._event("sync", f"{job}: {msg}", level="error", table=table_id)
                continue
            rep.add(outcome)
            rep.slices_done += 1
        if ctx.translator.renames_keys and not rep.slices_failed and \
                PRUNE_SLICE not in done and not (stop is not None and stop.is_set()):
            try:
                rep.add(prune_renamed_partitions(ctx))
                self.checkpoints.mark_slice_done(job, table_id, PRUNE_SLICE, 0)
            except Exception as exc:
                rep.errors.append(f"{table_id} pruning of extra partitions failed, nothing "
                                  f"deleted: {exc}")
                rep.slices_failed += 1
        if rep.slices_failed or (stop is not None and stop.is_set() and
                                 rep.slices_done + rep.slices_resumed < rep.slices):
            rep.status = "failed"
            if stop is not None and stop.is_set() and not rep.errors:
                rep.errors.append(f"{table_id}: stopped before every slice was copied")
        rep.duration_s = time.monotonic() - started
        self._event("sync", f"{job}: {table_id}: {rep.status}, {rep.partitions} partitions, "
                    f"{rep.cells} cells copied, {rep.deleted} deleted, {rep.quarantined} "
                    f"quarantined, {rep.slices_done}+{rep.slices_resumed} resumed/"
                    f"{rep.slices} slices in {rep.duration_s:.1f}s",
                    level="info" if rep.status == "ok" else "error", table=table_id,
                    cells=rep.cells, deleted=rep.deleted, quarantined=rep.quarantined)
        return rep
