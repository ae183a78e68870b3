"""Periodic reconciliation: find what no message announced, by range checksums.

A pass walks every token range of the run-sync tables (config_db_uuid), compares per-partition
digests of old (translated) and new (the replicator's `range_diff`) and replaces every
partition that differs. Partitions being changed at that moment may show up as differences;
replacing them again is harmless (writes carry the source WRITETIME). A failed range is
logged, counted and retried at the next pass; it never stops the replay of messages.

An object's row is replaced together with the cells that name it elsewhere: its parent's
`children:` cell and each ref target's `backref:` cell live in other partitions, which the
pass may have compared before the change that moved the link. Once the row is equal (or
gone), the change's lane (whose message may not name the links) finds nothing left that
tells it where they are.

A pass gives way to the replay: while changes flow (`busy()`), it pauses after each range
for as long as the range took times (1 - `share`) / `share`, so it takes about `share` of
the time; while the replay is behind (`behind()`: changes wait on the broker beyond its
prefetch), `share_behind` of it. A whole pass compares every partition of both sides (30-115
s of one interpreter on the 2-core bench box with 20,000-30,000 objects); run flat out in the
consuming process while changes flowed, it took 39 % of that process's CPU samples and
repaired hundreds of objects whose messages were only in flight, and paced to a quarter it
still queued changes when the replay had no room to spare (docs/benchmarks-archive.md). It is a
safety net: later is fine, slowing the replay is not.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from backends.cassandra.replicator import KeyDiff, Replicator
from backends.cassandra.tables import RawRow
from backends.runsync.apply import (
    CONFIG_DB_UUID,
    LATEST_COL_TS,
    OBJ_FQ_NAME,
    OBJ_SHARED,
    OBJ_UUID,
    link_uuids,
)

log = logging.getLogger(__name__)

RUN_SYNC_TABLES = (OBJ_UUID, OBJ_FQ_NAME, OBJ_SHARED)
SAMPLES = 3  # partitions a pass's event names
# the share of its time a pass takes while changes flow (see the module's docstring), and the
# longest pause after one range
SHARE_WHILE_BUSY = 0.25
SHARE_WHILE_BEHIND = 0.05
MAX_PAUSE_S = 10.0


@dataclass
class ReconcileReport:
    ranges: int = 0
    ranges_failed: int = 0
    pruned: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    paused_s: float = 0.0  # of `seconds`, the pauses giving way to the replay
    complete: bool = True
    # what the pass repaired, per table, and the first partitions it found differing: no
    # message announced them (a writer beside the api-server, a lost message), or a change
    # was in flight while the pass compared
    by_table: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)

    @property
    def repaired(self) -> int:
        return sum(self.by_table.values())

    def repaired_text(self) -> str:
        """`5 partitions repaired (obj_uuid_table 4, obj_fq_name_table 1; first: ...)`."""
        text = f"{self.repaired} partitions repaired"
        if not self.repaired:
            return text
        tables = ", ".join(f"{t} {n}" for t, n in sorted(self.by_table.items()))
        return text + f" ({tables}; first: {', '.join(self.samples)})"


class Reconciler:
    def __init__(self, replicator: Replicator, *, slices: int = 64,
                 tables: Sequence[str] = RUN_SYNC_TABLES,
                 on_repair: Callable[[int], None] | None = None,
                 busy: Callable[[], bool] | None = None,
                 share: float = SHARE_WHILE_BUSY,
                 behind: Callable[[], bool] | None = None,
                 share_behind: float = SHARE_WHILE_BEHIND,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`busy`: whether changes are flowing now (the pass then gives way, see the
        module's docstring); `share`: the share of the time it then takes (0 < share <= 1);
        `behind`, `share_behind`: the same while the replay is behind."""
        if not (0.0 < share <= 1.0 and 0.0 < share_behind <= 1.0):
            raise ValueError(f"shares must be in (0, 1], not {share}, {share_behind}")
        self.repl = replicator
        self.slices = slices
        self.tables = tuple(tables)
        self.on_repair = on_repair
        self.busy, self.behind = busy, behind
        self.share, self.share_behind = share, share_behind
        self.clock = clock
        self.paused_s = 0.0  # the passes' pauses so far (giving way to the replay)

    def _give_way(self, took: float, stop: threading.Event | None) -> None:
        """After a range that took `took` seconds: pause while changes flow."""
        if self.behind is not None and self.behind():
            share = self.share_behind
        elif self.busy is not None and self.busy():
            share = self.share
        else:
            return
        if share >= 1.0:
            return
        pause = min(MAX_PAUSE_S, took * (1.0 - share) / share)
        started = self.clock()
        if stop is not None:
            stop.wait(pause)
        else:
            time.sleep(pause)
        self.paused_s += self.clock() - started

    def run_pass(self, stop: threading.Event | None = None) -> ReconcileReport:
        report = ReconcileReport()
        started, paused = self.clock(), self.paused_s
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
                range_started = self.clock()
                try:
                    for diff in self.repl.range_diff(CONFIG_DB_UUID, table, lo, hi):
                        repaired = self.repair(diff)
                        report.by_table[table] = report.by_table.get(table, 0) + repaired
                        if len(report.samples) < SAMPLES:
                            report.samples.append(f"{table} {diff.old_key or diff.new_key}")
                        if self.on_repair is not None:
                            self.on_repair(repaired)
                except Exception as exc:
                    report.ranges_failed += 1
                    report.complete = False
                    report.errors.append(f"{CONFIG_DB_UUID}.{table} range {slice_id}: "
                                         f"{type(exc).__name__}: {exc}")
                self._give_way(self.clock() - range_started, stop)
            if ctx.translator.renames_keys and not (stop is not None and stop.is_set()):
                try:
                    report.pruned += self.repl.prune_extra_partitions(CONFIG_DB_UUID, table)
                except Exception as exc:
                    report.complete = False
                    report.errors.append(f"{CONFIG_DB_UUID}.{table} pruning: "
                                         f"{type(exc).__name__}: {exc}")
        report.seconds = self.clock() - started
        report.paused_s = self.paused_s - paused
        for err in report.errors[:20]:
            log.warning("reconcile: %s", err)
        return report

    def repair(self, diff: KeyDiff) -> int:
        """Make one differing partition equal; an object's row goes with its links (see the
        module's docstring). Returns the partitions repaired."""
        if diff.table != OBJ_UUID:
            self.repl.repair(diff)
            return 1
        linked = self._repair_links(diff)
        self.repl.repair(diff)
        return 1 + linked

    def _repair_links(self, diff: KeyDiff) -> int:
        """The cells naming the object in its parent's and its ref targets' partitions
        (`children:`/`backref:` and the partition's META:latest_col_ts), for every link new's
        row or old's names: the pass may have compared those partitions before the change
        that moved the link, and once the row is equal the change's lane finds nothing that
        tells it. Two cells each, whatever the partition's width. Returns how many."""
        ctx = self.repl.context(CONFIG_DB_UUID, OBJ_UUID)
        uuid = diff.old_key or diff.new_key
        new_cells = _links_and_type(ctx.read_new_full(ctx.new_partition_full,
                                                      (ctx.enc_new_key(diff.new_key),)))
        old_cells = {} if diff.old_key is None else _links_and_type(
            ctx.read_old(ctx.old_partition, (ctx.enc_old_key(diff.old_key),)))
        # as old spells the object's type (its own row); when old has no row, both
        # spellings: a cell neither side has is left alone
        types = ({old_cells["type"]} if old_cells.get("type")
                 else _spellings(new_cells.get("type") or ""))
        cells = old_cells | new_cells
        repaired = 0
        for head, named in (("parent", "children"), ("ref", "backref")):
            for target in sorted(link_uuids(cells, head) - {uuid}):
                self.repl.replace_cells(CONFIG_DB_UUID, OBJ_UUID, target,
                                        [*(f"{named}:{t}:{uuid}" for t in sorted(types)),
                                         LATEST_COL_TS])
                repaired += 1
        return repaired


def _links_and_type(rows: Iterable[RawRow]) -> dict[str, str]:
    """An object row's `parent:`/`ref:` columns and its type (the `type` cell's JSON string),
    streamed: the rest of a wide row is not kept."""
    found: dict[str, str] = {}
    for _, column, value, _ in rows:
        if column.startswith(("parent:", "ref:")):
            found[column] = ""
        elif column == "type" and value:
            try:
                decoded = json.loads(value)
            except ValueError:
                continue
            if isinstance(decoded, str):
                found["type"] = decoded
    return found


def _spellings(obj_type: str) -> set[str]:
    return {obj_type.replace("_", "-"), obj_type.replace("-", "_")} if obj_type else set()
