"""`issu rehearse`: the upgrade tried on a copy of production before the maintenance window.

A snapshot of the production config database (the original `db_json_exim.py` format) is
imported as the OLD cluster of a scratch pair of real clusters, then the day is played through
with the real engine: preflight-like checks, pre-sync through the translator chain, zk-sync,
verify, a synthetic change load through run-sync at the operator's rate, post-sync. The report
says per table what was copied, quarantined (reasons, samples) and translated (before/after),
how long each step took, the measured rates and the predicted pre/post-sync durations, zk-sync
mismatches, and what preflight would refuse on the day.

The scratch clusters come from a provider registered under the entry point group
`issu.scratch_clusters` (the demo registers its services launcher there); this module never
imports the demo.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, overload

from issu_tui.rehearse_report import RehearsalReport, Step

if TYPE_CHECKING:
    from backends.cassandra.tables import SyncSettings

ENTRY_POINT_GROUP = "issu.scratch_clusters"
T = TypeVar("T")
SAMPLE_KEYS = 50          # partitions looked at to find translated samples, per table
SAMPLE_CELLS = 200        # cells read per sampled partition
QUARANTINE_SAMPLES = 5


class RehearsalError(RuntimeError):
    """The rehearsal could not run (no scratch provider, services failed to start...)."""


@dataclass(frozen=True)
class ScratchEndpoints:
    cassandra_old: tuple[str, int]
    cassandra_new: tuple[str, int]
    zk_old: str                      # "host:port"
    zk_new: str
    rabbit_host: str
    rabbit_port: int
    rabbit_user: str
    rabbit_password: str = field(repr=False)
    rabbit_vhost_old: str = "/"
    rabbit_vhost_new: str = "/v2"
    where: str = ""                  # the provider's run directory (logs), for messages


class ScratchClusters(Protocol):
    def up(self) -> ScratchEndpoints: ...
    def down(self) -> None: ...


ScratchFactory = Callable[[int, Path | None], ScratchClusters]


def scratch_factory(name: str | None = None) -> ScratchFactory:
    """The installed provider of scratch clusters (by entry point name, or the only one)."""
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if not found:
        raise RehearsalError(f"no scratch cluster provider is installed (entry point group "
                             f"{ENTRY_POINT_GROUP}; the demo registers one: install issu with "
                             "its demo extra)")
    if name is None:
        name = "demo" if "demo" in found else sorted(found)[0]
    if name not in found:
        raise RehearsalError(f"scratch cluster provider {name!r} not installed "
                             f"(installed: {', '.join(sorted(found))})")
    # an entry point's object is untyped; the group's contract is a ScratchFactory
    factory: ScratchFactory = found[name].load()
    return factory


@dataclass
class RehearsalOptions:
    snapshot: Path
    from_version: str
    to_version: str
    rate: float = 10.0               # synthetic changes per second through run-sync
    load_seconds: float = 30.0
    net: int = 50
    run_dir: Path | None = None
    keep_services: bool = False
    production_cells: int | None = None  # scale the predictions (default: the snapshot's)

def _machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model, "cores": os.cpu_count(), "kernel": platform.release(),
            "load_before": os.getloadavg()[0]}


class Rehearsal:
    """One rehearsal; `run()` returns the report (and never leaves services it started)."""

    def __init__(self, options: RehearsalOptions, factory: ScratchFactory,
                 echo: Callable[[str], None]) -> None:
        self.options, self.factory, self.echo = options, factory, echo

    # ------------------------------------------------------------------ the run
    def run(self) -> RehearsalReport:
        from backends.snapshot.exim import scan_snapshot

        o = self.options
        self.echo(f"checking {o.snapshot}")
        summary = scan_snapshot(o.snapshot)   # SnapshotError: the caller's exit 2
        cluster_ids = summary.zk_cluster_ids or {""}
        if len(cluster_ids) > 1:
            raise RehearsalError(f"{o.snapshot}: ZooKeeper paths of several cluster ids "
                                 f"({', '.join(sorted(cluster_ids))}); one expected")
        self.zk_prefix = next(iter(cluster_ids))
        report = RehearsalReport(summary.as_dict(), o.from_version, o.to_version,
                                 time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                                 _machine())
        self.report, self.summary = report, summary
        scratch = self.factory(o.net, o.run_dir)
        try:
            eps = self._step("scratch clusters up", scratch.up)
            self._play(eps)
        finally:
            if not o.keep_services:
                self._step("scratch clusters down", scratch.down, fatal=False)
        report.machine["load_after"] = os.getloadavg()[0]
        return report

    @overload
    def _step(self, name: str, fn: Callable[[], T], *, fatal: Literal[True] = True) -> T: ...
    @overload
    def _step(self, name: str, fn: Callable[[], T], *, fatal: Literal[False]) -> T | None: ...

    def _step(self, name: str, fn: Callable[[], T], *, fatal: bool = True) -> T | None:
        """fn's result; a failure raises RehearsalError when fatal, else gives None."""
        self.echo(f"{name}...")
        step = Step(name)
        started = time.monotonic()
        try:
            return fn()
        except Exception as exc:
            step.ok, step.detail = False, f"{type(exc).__name__}: {exc}"
            self.echo(f"{name}: FAILED: {step.detail}")
            if fatal:
                raise RehearsalError(f"{name} failed: {step.detail}") from exc
            return None
        finally:
            step.seconds = round(time.monotonic() - started, 3)
            self.report.steps.append(step)
            if step.ok:
                self.echo(f"{name}: {step.seconds:.1f}s")

    def _play(self, eps: ScratchEndpoints) -> None:
        from backends.cassandra.connection import CassandraSide, connect
        from backends.cassandra.registry import load_registry
        from backends.zookeeper.sync import connect as zk_connect

        o = self.options
        self.registry = load_registry()
        self.old_side = CassandraSide("old", (eps.cassandra_old[0],), eps.cassandra_old[1],
                                      version=o.from_version)
        self.new_side = CassandraSide("new", (eps.cassandra_new[0],), eps.cassandra_new[1],
                                      version=o.to_version)
        self.eps = eps
        with contextlib.ExitStack() as stack:
            old = connect(self.old_side)
            stack.callback(old.close)
            new = connect(self.new_side)
            stack.callback(new.close)
            old_zk, new_zk = zk_connect(eps.zk_old), zk_connect(eps.zk_new)
            for client in (old_zk, new_zk):
                stack.callback(client.close)
                stack.callback(client.stop)
            self.old, self.new, self.old_zk, self.new_zk = old, new, old_zk, new_zk
            self._step("clean the scratch clusters", self._wipe)
            self._step("import the snapshot as old", self._import)
            self._step("preflight", self._preflight, fatal=False)
            path_ok = not any(r.startswith("version path") for r in self.report.refusals)
            if path_ok:
                self._step("pre-sync", self._pre_sync, fatal=False)
                self._step("translated samples", self._translated_samples, fatal=False)
            self._step("zk-sync", self._zk_sync, fatal=False)
            if path_ok:
                self._step("verify", self._verify, fatal=False)
                if o.rate > 0 and o.load_seconds > 0:
                    self._step("run-sync under load", self._run_sync, fatal=False)
                self._step("post-sync", self._post_sync, fatal=False)
            self._predict()
            self._collect_problems()

    # ------------------------------------------------------------------ steps
    def _wipe(self) -> None:
        """The scratch clusters may hold an earlier rehearsal: start from empty ones."""
        keyspaces = set(self.registry.keyspaces) | set(self.summary.keyspaces) | {
            "issu_quarantine"}
        for conn in (self.old, self.new):
            for keyspace in sorted(keyspaces):
                conn.session.execute(f'DROP KEYSPACE IF EXISTS "{keyspace}"', timeout=120)
        for zk in (self.old_zk, self.new_zk):
            for child in zk.get_children("/"):
                if child != "zookeeper":
                    zk.delete(f"/{child}", recursive=True)

    def _import(self) -> None:
        from backends.snapshot.exim import import_snapshot

        result = import_snapshot(self.options.snapshot, self.old, self.old_zk,
                                 zk_prefix=self.zk_prefix, registry=self.registry,
                                 summary=self.summary)
        self.report.import_ = {"cells": result.cells, "znodes": result.znodes,
                               "znodes_ignored": result.znodes_ignored,
                               "ephemerals_skipped": result.ephemerals_skipped,
                               "seconds": round(result.write_seconds, 3),
                               "cells_per_s": _rate(result.cells, result.write_seconds)}

    def _preflight(self) -> None:
        """What the real preflight and sync would refuse, or silently leave behind, on the
        day, judged from the snapshot."""
        from backends.versions import VersionPathError, version_path
        from backends.zookeeper.sync import DEFAULT_SUBTREES

        refusals = self.report.refusals
        o = self.options
        try:
            steps = version_path(o.from_version, o.to_version)
            self.report.prediction["version_steps"] = [f"{a} -> {b}" for a, b in steps]
        except (VersionPathError, ValueError) as exc:
            refusals.append(f"version path {o.from_version} -> {o.to_version}: {exc}")
        registered = self.registry.keyspaces
        for keyspace, table in self.summary.tables:
            if keyspace not in registered:
                refusals.append(f"keyspace {keyspace} is in the snapshot but not registered: "
                                "no sync copies it, the new cluster would not have it "
                                "(register it through the issu.keyspaces entry point)")
            elif table not in registered[keyspace].tables:
                refusals.append(f"table {keyspace}.{table} is in the snapshot but not "
                                "registered: no sync copies it (register it)")
        for keyspace in registered:
            if keyspace not in self.summary.keyspaces:
                refusals.append(f"keyspace {keyspace} is registered but absent from the "
                                "snapshot: verify fails on the day (check the prefix, or leave "
                                "it out with sync.keyspaces)")
        present = self.summary.zk_first_level
        for subtree in DEFAULT_SUBTREES:
            if subtree not in present:
                refusals.append(f"ZooKeeper subtree /{subtree} is absent from the snapshot: "
                                "zk-sync fails on the day (check the ZooKeeper prefix)")
        refusals[:] = list(dict.fromkeys(refusals))

    def _settings(self) -> SyncSettings:
        from backends.cassandra.tables import SyncSettings

        return SyncSettings(concurrency=4, slices_per_table=16)

    def _copy(self, job: str, phase: str) -> dict[str, Any]:
        from backends.cassandra.copy import CopyEngine
        from backends.progress import MemoryCheckpoints

        engine = CopyEngine(self.old, self.new, self.registry, self._settings(),
                            checkpoints=MemoryCheckpoints())
        report = engine.run(job, phase=phase, fresh=True)
        totals = report.totals()
        tables = [{"table": f"{t.keyspace}.{t.table}", "status": t.status, "cells": t.cells,
                   "partitions": t.partitions, "quarantined": t.quarantined,
                   "deleted": t.deleted, "seconds": round(t.duration_s, 3),
                   "translator": t.translator, "errors": t.errors, "note": t.note}
                  for t in report.tables]
        return {"ok": report.ok, "run_id": report.run_id, "cells": int(totals["cells"]),
                "quarantined": int(totals["quarantined"]), "deleted": int(totals["deleted"]),
                "seconds": round(report.duration_s, 3),
                "cells_per_s": _rate(totals["cells"], report.duration_s), "tables": tables}

    def _pre_sync(self) -> None:
        self.report.pre_sync = self._copy("pre-sync", "pre")
        self._collect_quarantine()
        if not self.report.pre_sync["ok"]:
            raise RehearsalError("pre-sync failed on some tables (see the per-table errors)")

    def _collect_quarantine(self) -> None:
        from backends.cassandra.tables import Quarantine

        rows = Quarantine(self.new, "report").rows(limit=100_000)
        by_table: dict[str, dict[str, Any]] = {}
        for row in rows:
            name = f"{row['keyspace']}.{row['table']}"
            entry = by_table.setdefault(name, {"count": 0, "reasons": Counter(), "samples": []})
            entry["count"] += 1
            entry["reasons"][str(row["reason"])] += 1
            if len(entry["samples"]) < QUARANTINE_SAMPLES:
                entry["samples"].append({"key": row["key"], "column": row["column"],
                                         "reason": row["reason"]})
        for entry in by_table.values():
            entry["reasons"] = dict(entry["reasons"].most_common())
        self.report.quarantine = {"count": len(rows), "tables": by_table}

    def _translated_samples(self) -> None:
        from backends.cassandra.schema import table_layout
        from backends.cassandra.slice_copy import translator_for

        for spec in self.registry.tables(phase="pre"):
            translator = translator_for(self.registry, self.old, self.new, spec)
            if translator.is_identity:
                continue
            old_layout = table_layout(self.old.session, spec.keyspace, spec.name)
            new_layout = table_layout(self.new.session, spec.keyspace, spec.name)
            if old_layout is None or new_layout is None:
                continue
            keys = self.old.session.execute(
                f'SELECT DISTINCT key FROM "{spec.keyspace}"."{spec.name}" '
                f"LIMIT {SAMPLE_KEYS}")
            found = 0
            shown: set[tuple[str, ...]] = set()
            for (raw_key,) in keys:
                key = old_layout.decode_key(raw_key)
                sample = self._sample(spec, translator, key, old_layout, new_layout)
                if not sample["changes"] and sample["new_key"] == key:
                    continue
                # one sample per kind of change (object type, columns changed), not three alike
                kind = tuple(sorted({str(c["before"]) if c["before"] and c["before"][0] == "type"
                                     else (c["after"] or [""])[0].split(":")[0]
                                     for c in sample["changes"]}))
                if kind in shown:
                    continue
                shown.add(kind)
                self.report.translated.append(sample)
                found += 1
                if found >= 3:
                    break

    def _sample(self, spec: Any, translator: Any, key: str, old_layout: Any,
                new_layout: Any) -> dict[str, Any]:
        def cells(conn: Any, layout: Any, k: str) -> dict[str, str]:
            rows = conn.session.execute(
                f'SELECT column1, value FROM "{spec.keyspace}"."{spec.name}" WHERE key = %s '
                f"LIMIT {SAMPLE_CELLS}", (layout.encode_key(k),))
            return {layout.decode_column(c): layout.decode_value(v) for c, v in rows}

        new_key = translator.key(key)
        before = cells(self.old, old_layout, key)
        after = cells(self.new, new_layout, new_key)
        changes: list[dict[str, list[Any] | None]] = []
        mapped: set[str] = set()
        for column, value in before.items():
            new_column = translator.column(key, column)
            mapped.add(new_column)
            if new_column != column or after.get(new_column) != value:
                changes.append({"before": [column, value],
                                "after": [new_column, after.get(new_column)]})
        if len(before) < SAMPLE_CELLS:  # the whole partition was read: additions are real
            for column, value in after.items():
                if column not in mapped:
                    changes.append({"before": None, "after": [column, value]})
        return {"table": spec.qualified, "old_key": key, "new_key": new_key,
                "changes": changes[:8], "changed_cells": len(changes)}

    def _zk_sync(self) -> None:
        from backends.zookeeper.sync import ZkSyncer

        syncer = ZkSyncer(self.old_zk, self.new_zk, self.zk_prefix, self.zk_prefix)
        result = syncer.run()
        self.report.zk_sync = {
            "ok": result.ok, "verified_nodes": result.verified_nodes, **result.totals(),
            "missing_on_old": result.missing_on_old,
            "differences": len(result.differences),
            "samples": [d.describe(result.old_root, result.new_root)
                        for d in result.differences[:20]],
            "seconds": round(result.copy_seconds + result.verify_seconds, 3)}

    def _verify_now(self, keyspaces: tuple[str, ...] | None = None) -> dict[str, Any]:
        from dataclasses import replace

        from backends.cassandra.verify import Verifier

        settings = replace(self._settings(), keyspaces=keyspaces)
        result = Verifier(self.old, self.new, self.registry, settings,
                          recheck_delay_s=1.0).run()
        samples = [asdict(s) for t in result.tables for s in t.samples][:20]
        return {"ok": result.ok, "totals": result.totals(), "unverified": result.unverified,
                "differences": sum(t.differences for t in result.tables), "samples": samples,
                "seconds": round(result.duration_s, 3)}

    def _verify(self) -> None:
        self.report.verify = self._verify_now()

    def _run_sync(self) -> None:
        from issu_tui.rehearse_load import Broker, SyntheticLoad

        e, o = self.eps, self.options
        broker = Broker(e.rabbit_host, e.rabbit_port, e.rabbit_user, e.rabbit_password,
                        e.rabbit_vhost_old, e.rabbit_vhost_new)
        self.report.run_sync = SyntheticLoad(
            self.old, self.old_side, self.new_side, self.registry, self._settings(), broker,
            rate=o.rate, seconds=o.load_seconds, from_version=o.from_version,
            to_version=o.to_version, verify=self._verify_now).run()

    def _post_sync(self) -> None:
        self.report.post_sync = self._copy("post-sync", "post")
        self._collect_quarantine()

    # ------------------------------------------------------------------ conclusions
    def _predict(self) -> None:
        pre_tables = {t.qualified for t in self.registry.tables(phase="pre")}
        post_tables = {t.qualified for t in self.registry.tables(phase="post")}
        cells = {f"{k}.{t}": n for (k, t), n in self.summary.tables.items()}
        total = sum(cells.values())
        scale = (self.options.production_cells / total
                 if self.options.production_cells and total else 1.0)
        prediction = self.report.prediction
        prediction["production_cells"] = round(total * scale)
        prediction["basis"] = ("the snapshot's size" if scale == 1.0
                               else f"--production-cells {self.options.production_cells}")
        for job, tables, measured in (("pre_sync", pre_tables, self.report.pre_sync),
                                      ("post_sync", post_tables, self.report.post_sync)):
            job_cells = sum(n for name, n in cells.items() if name in tables) * scale
            rate = measured.get("cells_per_s") or 0.0
            prediction[f"{job}_cells"] = round(job_cells)
            prediction[f"{job}_s"] = round(job_cells / rate, 1) if rate else None

    def _collect_problems(self) -> None:
        r, problems = self.report, self.report.problems
        quarantined = r.quarantine.get("count", 0)
        if quarantined:
            problems.append(f"{quarantined} cell(s) quarantined by the translators: they would "
                            "not reach the new cluster")
        if r.verify and not r.verify.get("ok"):
            problems.append(f"verify after pre-sync: {r.verify.get('differences', 0)} "
                            "difference(s)"
                            + (f"; not verified: {', '.join(r.verify['unverified'])}"
                               if r.verify.get("unverified") else ""))
        if r.zk_sync and not r.zk_sync.get("ok"):
            problems.append(f"zk-sync: {r.zk_sync.get('differences', 0)} mismatch(es)"
                            + (f", missing on old: {', '.join(r.zk_sync['missing_on_old'])}"
                               if r.zk_sync.get("missing_on_old") else ""))
        rs = r.run_sync
        if rs:
            lost = rs.get("failed", 0) + rs.get("quarantined", 0)
            if lost or rs.get("applied", 0) < rs.get("published", 0):
                problems.append(f"run-sync: {rs.get('published', 0)} changes published, "
                                f"{rs.get('applied', 0)} applied, {rs.get('failed', 0)} failed, "
                                f"{rs.get('quarantined', 0)} quarantined")
            if rs.get("verify_after") and not rs["verify_after"].get("ok"):
                problems.append(f"verify of config_db_uuid after the run-sync load: "
                                f"{rs['verify_after'].get('differences', 0)} difference(s)")
        for job in ("pre_sync", "post_sync"):
            copy = getattr(r, job)
            if copy and not copy.get("ok"):
                failed = [t["table"] for t in copy["tables"] if t["status"] == "failed"]
                problems.append(f"{job.replace('_', '-')} failed on {', '.join(failed)}")
        skipped = r.import_.get("ephemerals_skipped", 0)
        if skipped:
            r.prediction["note"] = (f"{skipped} ephemeral znode(s) of the snapshot were not "
                                    "imported (live sessions' nodes; zk-sync skips them too)")


def _rate(count: float, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0
