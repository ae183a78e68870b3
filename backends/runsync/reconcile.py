"""Periodic reconciliation: find what no message announced, by range checksums.

A pass walks every token range of the run-sync tables (config_db_uuid), compares per-partition
digests of old (translated) and new (the replicator's `range_diff`) and replaces every
partition that differs. Partitions being changed at that moment may show up as differences;
replacing them again is harmless (writes carry the source WRITETIME). A failed range is
logged, counted and retried at the next pass; it never stops the replay of messages.

An object's row that only new still has is removed together with the cells that name it
elsewhere: its parent's `children:` cell and each ref target's `backref:` cell live in other
partitions, which the pass may have compared already. Once the row is gone, the object's
DELETE lane (whose message may not name the links) finds nothing left that tells it where
they are.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from backends.cassandra.replicator import KeyDiff, Replicator
from backends.runsync.apply import CONFIG_DB_UUID, OBJ_FQ_NAME, OBJ_SHARED, OBJ_UUID, link_uuids

log = logging.getLogger(__name__)

RUN_SYNC_TABLES = (OBJ_UUID, OBJ_FQ_NAME, OBJ_SHARED)


@dataclass
class ReconcileReport:
    ranges: int = 0
    ranges_failed: int = 0
    repaired: int = 0
    pruned: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    complete: bool = True


class Reconciler:
    def __init__(self, replicator: Replicator, *, slices: int = 64,
                 tables: Sequence[str] = RUN_SYNC_TABLES,
                 on_repair: Callable[[int], None] | None = None) -> None:
        self.repl = replicator
        self.slices = slices
        self.tables = tuple(tables)
        self.on_repair = on_repair

    def run_pass(self, stop: threading.Event | None = None) -> ReconcileReport:
        report = ReconcileReport()
        started = time.monotonic()
        for table in self.tables:
            try:
                ctx = self.repl.context(CONFIG_DB_UUID, table)
            except LookupError:
                continue  # absent on old: nothing to reconcile (and nothing deleted)
            except Exception as exc:
                report.errors.append(f"{CONFIG_DB_UUID}.{table}: {type(exc).__name__}: {exc}")
                report.complete = False
                continue
            for slice_id, lo, hi in self.repl.token_ranges(self.slices):
                if stop is not None and stop.is_set():
                    report.complete = False
                    break
                report.ranges += 1
                try:
                    for diff in self.repl.range_diff(CONFIG_DB_UUID, table, lo, hi):
                        repaired = self.repair(diff)
                        report.repaired += repaired
                        if self.on_repair is not None:
                            self.on_repair(repaired)
                except Exception as exc:
                    report.ranges_failed += 1
                    report.complete = False
                    report.errors.append(f"{CONFIG_DB_UUID}.{table} range {slice_id}: "
                                         f"{type(exc).__name__}: {exc}")
            if ctx.translator.renames_keys and not (stop is not None and stop.is_set()):
                try:
                    report.pruned += self.repl.prune_extra_partitions(CONFIG_DB_UUID, table)
                except Exception as exc:
                    report.complete = False
                    report.errors.append(f"{CONFIG_DB_UUID}.{table} pruning: "
                                         f"{type(exc).__name__}: {exc}")
        report.seconds = time.monotonic() - started
        for err in report.errors[:20]:
            log.warning("reconcile: %s", err)
        return report

    def repair(self, diff: KeyDiff) -> int:
        """Make one differing partition equal; an object row only new has goes with its
        links (see the module's docstring). Returns the partitions repaired."""
        linked: set[str] = set()
        if diff.table == OBJ_UUID and diff.old_key is None:
            ctx = self.repl.context(CONFIG_DB_UUID, OBJ_UUID)
            columns = [c for _, c, _ in ctx.read_new_meta(ctx.new_partition_meta,
                                                          (ctx.enc_new_key(diff.new_key),))]
            linked = (link_uuids(columns, "parent") | link_uuids(columns, "ref")) - {
                diff.new_key}
        self.repl.repair(diff)
        # the linked partitions after the row: replaced whole (new first, then old), they
        # lose the cells naming it that old no longer has
        for uuid in sorted(linked):
            self.repl.replace_partition(CONFIG_DB_UUID, OBJ_UUID, uuid)
        return 1 + len(linked)
