"""verify: old (translated) against new, slice by slice, streaming, in bounded memory.

Every cell of old is translated and looked up on new: `missing` (not on new), `different`
(value or writetime differs), and cells only new has are `extra`. Counts are complete; only
the printed samples are capped. Safe while run-sync runs: keys that differ are compared once
more, partition by partition, after a short pause, and only what still differs is reported
(in-flight changes settle; a real difference stays).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field

from backends.cassandra.connection import Connection
from backends.cassandra.registry import Registry, RegistryError, TableSpec
from backends.cassandra.schema import check_partitioner, keyspace_exists
from backends.cassandra.slice_copy import check_path, translator_for
from backends.cassandra.spill import SpillMap
from backends.cassandra.tables import (
    Quarantine,
    RawRow,
    SyncSettings,
    TableContext,
    token_slices,
    translate_rows,
)
from backends.cassandra.translate import Cell
from backends.progress import EventSink

log = logging.getLogger(__name__)
_CHUNK = 500


def value_digest(value: str | None) -> int:
    h = hashlib.blake2b((value or "").encode("utf-8", "surrogateescape"), digest_size=8)
    return int.from_bytes(h.digest(), "big")


@dataclass(frozen=True)
class Difference:
    kind: str          # missing | extra | different
    keyspace: str
    table: str
    key: str           # key on the new side
    column: str        # column on the new side
    detail: str = ""


@dataclass
class TableVerify:
    keyspace: str
    table: str
    status: str = "ok"            # ok | differences | skipped | failed
    # skipped (absent on old) fails verify unless the operator allowed that keyspace's absence
    absent_allowed: bool = False
    cells_compared: int = 0
    missing: int = 0
    extra: int = 0
    different: int = 0
    quarantined: int = 0
    suspect_keys: int = 0
    rechecked: bool = False
    duration_s: float = 0.0
    samples: list[Difference] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def differences(self) -> int:
        return self.missing + self.extra + self.different


@dataclass
class VerifyReport:
    tables: list[TableVerify] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return all(t.status == "ok" or (t.status == "skipped" and t.absent_allowed)
                   for t in self.tables)

    @property
    def unverified(self) -> list[str]:
        """Tables absent on old whose absence was not allowed: each fails verify."""
        return [f"{t.keyspace}.{t.table}" for t in self.tables
                if t.status == "skipped" and not t.absent_allowed]

    def totals(self) -> dict[str, int]:
        return {k: sum(getattr(t, k) for t in self.tables)
                for k in ("cells_compared", "missing", "extra", "different", "quarantined")}

    def as_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "duration_s": round(self.duration_s, 3), "totals": self.totals(),
                "unverified": self.unverified,
                "tables": [asdict(t) | {"differences": t.differences} for t in self.tables]}


@dataclass
class _Tally:
    cells: int = 0
    missing: int = 0
    extra: int = 0
    different: int = 0
    quarantined: int = 0
    samples: list[Difference] = field(default_factory=list)
    suspects: dict[str, str | None] = field(default_factory=dict)
    overflow: bool = False

    def merge(self, other: _Tally, max_samples: int, limit: int) -> None:
        self.cells += other.cells
        self.missing += other.missing
        self.extra += other.extra
        self.different += other.different
        self.quarantined += other.quarantined
        room = max_samples - len(self.samples)
        if room > 0:
            self.samples.extend(other.samples[:room])
        self.overflow = self.overflow or other.overflow
        for k, v in other.suspects.items():
            if len(self.suspects) >= limit:
                self.overflow = True
                break
            self.suspects[k] = v


class _Comparer:
    def __init__(self, ctx: TableContext, max_samples: int, suspect_limit: int,
                 source_of: Callable[[str], str | None]) -> None:
        self.ctx, self.max_samples, self.suspect_limit = ctx, max_samples, suspect_limit
        self.source_of = source_of

    def _diff(self, tally: _Tally, kind: str, new_key: str, old_key: str | None, column: str,
              detail: str = "") -> None:
        setattr(tally, kind, getattr(tally, kind) + 1)
        if len(tally.samples) < self.max_samples:
            tally.samples.append(Difference(kind, self.ctx.spec.keyspace, self.ctx.spec.name,
                                            new_key, column, detail))
        if new_key not in tally.suspects:
            if len(tally.suspects) < self.suspect_limit:
                tally.suspects[new_key] = old_key
            else:
                tally.overflow = True

    def compare(self, rows: Iterable[RawRow], existing: SpillMap, *,
                finish: bool = True) -> _Tally:
        tally = _Tally()
        pending: list[tuple[str, str, Cell]] = []

        def settle() -> None:
            found = existing.take_many([(nk, c.column) for _, nk, c in pending])
            for old_key, new_key, cell in pending:
                entry = found.get((new_key, cell.column))
                tally.cells += 1
                if entry is None:
                    self._diff(tally, "missing", new_key, old_key, cell.column)
                    continue
                ts, digest = entry
                if digest != value_digest(cell.value):
                    self._diff(tally, "different", new_key, old_key, cell.column,
                               "value differs")
                elif ts != cell.writetime:
                    self._diff(tally, "different", new_key, old_key, cell.column,
                               f"writetime old={cell.writetime} new={ts}")
            pending.clear()

        for old_key, new_key, item in translate_rows(self.ctx.translator, rows, finish=finish):
            if isinstance(item, Cell):
                pending.append((old_key, new_key, item))
                if len(pending) >= _CHUNK:
                    settle()
            else:
                tally.quarantined += 1
                existing.take_many([(new_key, item.new_column)])
        settle()
        for new_key, column, _, _ in existing.items():
            self._diff(tally, "extra", new_key, self.source_of(new_key), column)
        return tally


def _fill_full(existing: SpillMap, rows: Iterable[RawRow]) -> None:
    chunk: list[tuple[str, str, int, int]] = []
    for k, c, v, ts in rows:
        chunk.append((k, c, ts or 0, value_digest(v)))
        if len(chunk) >= _CHUNK:
            existing.put_many(chunk)
            chunk = []
    existing.put_many(chunk)


class Verifier:
    def __init__(self, old: Connection, new: Connection, registry: Registry,
                 settings: SyncSettings, *, events: EventSink | None = None,
                 max_samples: int = 100, recheck: bool = True, recheck_delay_s: float = 1.0,
                 suspect_limit: int = 10_000, allow_missing: Iterable[str] = ()) -> None:
        """`allow_missing`: keyspaces (registry names) the operator accepts as absent on old;
        any other keyspace or table absent on old makes verify fail."""
        self.old, self.new, self.registry, self.settings = old, new, registry, settings
        self.allow_missing = frozenset(allow_missing)
        unknown = sorted(self.allow_missing - set(registry.keyspaces))
        if unknown:
            raise RegistryError(f"--allow-missing: keyspace(s) not registered: "
                                f"{', '.join(unknown)} (registered: "
                                f"{', '.join(registry.keyspaces)})")
        self.events = events
        self.max_samples, self.recheck = max_samples, recheck
        self.recheck_delay_s, self.suspect_limit = recheck_delay_s, suspect_limit
        self._quarantine = Quarantine(new, "verify")  # never written: verify only reads

    def run(self, *, phase: str = "pre") -> VerifyReport:
        specs = self.registry.tables(self.settings.keyspaces, phase=phase)
        check_path(self.old, self.new, {s.keyspace for s in specs}, self.registry.keyspaces,
                   reverse=self.registry.reverse)
        check_partitioner(self.old.session, "old")
        check_partitioner(self.new.session, "new")
        started = time.monotonic()
        report = VerifyReport()
        for spec in specs:
            report.tables.append(self.verify_table(spec))
        report.duration_s = time.monotonic() - started
        totals = report.totals()
        if self.events is not None:
            unverified = report.unverified
            self.events.event("sync", f"verify: {'no differences' if report.ok else 'DIFFERENCES'}"
                              f" ({totals['missing']} missing, {totals['extra']} extra, "
                              f"{totals['different']} different"
                              + (f"; absent on old, not verified: {', '.join(unverified)}"
                                 if unverified else "") + ")",
                              level="info" if report.ok else "error", **totals)
        return report

    def verify_table(self, spec: TableSpec) -> TableVerify:
        started = time.monotonic()
        rep = TableVerify(spec.keyspace, spec.name)
        old_ks = self.old.side.keyspace(spec.keyspace)
        if not keyspace_exists(self.old.session, old_ks):
            return self._absent(rep, f"keyspace {old_ks} absent on old")
        try:
            ctx = TableContext(spec, self.old, self.new,
                               translator_for(self.registry, self.old, self.new, spec),
                               self.settings, self._quarantine, create=False)
            if not ctx.present_on_old:
                return self._absent(rep, f"table absent on old ({old_ks}.{spec.name})")
            if ctx.new_layout is None:
                rep.note = "table absent on new"
            key_map = ctx.key_map() if ctx.translator.renames_keys else None
            tally = self._scan(ctx, key_map)
            if self.recheck and tally.suspects and not tally.overflow:
                if self.recheck_delay_s:
                    time.sleep(self.recheck_delay_s)
                tally = self._recheck(ctx, tally, key_map)
                rep.rechecked = True
            elif tally.overflow:
                rep.note = (rep.note + "; " if rep.note else "") + \
                    f"more than {self.suspect_limit} differing keys: not re-checked"
        except Exception as exc:
            rep.status = "failed"
            rep.errors.append(f"{spec.qualified}: {type(exc).__name__}: {exc}")
            rep.duration_s = time.monotonic() - started
            return rep
        rep.cells_compared, rep.missing, rep.extra = tally.cells, tally.missing, tally.extra
        rep.different, rep.quarantined = tally.different, tally.quarantined
        rep.samples, rep.suspect_keys = tally.samples, len(tally.suspects)
        rep.status = "differences" if rep.differences else "ok"
        rep.duration_s = time.monotonic() - started
        return rep

    def _absent(self, rep: TableVerify, what: str) -> TableVerify:
        """Absent on old is never "equal": it fails unless its keyspace is allowed missing."""
        rep.status, rep.absent_allowed = "skipped", rep.keyspace in self.allow_missing
        rep.note = (f"{what}; allowed (--allow-missing {rep.keyspace})" if rep.absent_allowed
                    else f"{what}: NOT verified, verify fails (check old.cassandra.prefix; "
                    f"to accept it: --allow-missing {rep.keyspace}, or leave the keyspace "
                    "out with -k / sync.keyspaces)")
        return rep

    def _comparer(self, ctx: TableContext, key_map: dict[str, str] | None) -> _Comparer:
        def source_of(new_key: str) -> str | None:
            return new_key if key_map is None else key_map.get(new_key)
        return _Comparer(ctx, self.max_samples, self.suspect_limit, source_of)

    def _scan(self, ctx: TableContext, key_map: dict[str, str] | None) -> _Tally:
        comparer = self._comparer(ctx, key_map)
        total = _Tally()
        lock = threading.Lock()

        def one(lo: int, hi: int) -> _Tally:
            with ctx.spill_map() as existing:
                if ctx.new_layout is not None:
                    if key_map is not None:
                        for old_key in list(ctx.old_keys(lo, hi)):
                            _fill_full(existing, ctx.read_new_full(
                                ctx.new_partition_full,
                                (ctx.enc_new_key(ctx.translator.key(old_key)),)))
                    else:
                        _fill_full(existing, ctx.read_new_full(ctx.new_range_full, (lo, hi)))
                return comparer.compare(ctx.read_old(ctx.old_range, (lo, hi)), existing)

        with ThreadPoolExecutor(max_workers=self.settings.concurrency,
                                thread_name_prefix="issu-verify") as pool:
            futures = [pool.submit(one, lo, hi)
                       for _, lo, hi in token_slices(ctx.slice_count())]
            for future in as_completed(futures):
                part = future.result()
                with lock:
                    total.merge(part, self.max_samples, self.suspect_limit)
        if key_map is not None and ctx.new_layout is not None:
            for new_key in list(ctx.new_keys()):
                if new_key in key_map:
                    continue
                for _, column, _ in ctx.read_new_meta(ctx.new_partition_meta,
                                                      (ctx.enc_new_key(new_key),)):
                    comparer._diff(total, "extra", new_key, None, column,
                                   "partition has no source on old")
        return total

    def _recheck(self, ctx: TableContext, first: _Tally,
                 key_map: dict[str, str] | None) -> _Tally:
        """Compare each suspect partition again; the result replaces the first pass's
        differences (cells of partitions that matched the first time still count)."""
        comparer = self._comparer(ctx, key_map)
        total = _Tally(quarantined=first.quarantined)
        for new_key, old_key in first.suspects.items():
            with ctx.spill_map() as existing:
                if ctx.new_layout is not None:
                    _fill_full(existing, ctx.read_new_full(ctx.new_partition_full,
                                                           (ctx.enc_new_key(new_key),)))
                rows: Iterable[RawRow] = ()
                if old_key is None and key_map is None:
                    old_key = new_key
                if old_key is not None:
                    rows = ctx.read_old(ctx.old_partition, (ctx.enc_old_key(old_key),))
                part = comparer.compare(rows, existing)
            part.quarantined = 0
            part.cells = 0
            total.merge(part, self.max_samples, self.suspect_limit)
        total.cells = first.cells
        return total
