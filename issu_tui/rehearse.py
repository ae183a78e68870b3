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
import json
import os
import platform
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

ENTRY_POINT_GROUP = "issu.scratch_clusters"
RUNSYNC_QUEUE = "vnc-config.issu-rehearsal"
SAMPLE_KEYS = 50          # partitions looked at to find translated samples, per table
SAMPLE_CELLS = 200        # cells read per sampled partition
LOAD_OBJECTS = 500        # objects the synthetic load changes, round robin
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
    return found[name].load()  # type: ignore[no-any-return]


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


@dataclass
class Step:
    name: str
    seconds: float = 0.0
    ok: bool = True
    detail: str = ""


@dataclass
class RehearsalReport:
    snapshot: dict[str, Any]
    from_version: str
    to_version: str
    started_at: str
    machine: dict[str, Any]
    steps: list[Step] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)      # what preflight would refuse
    import_: dict[str, Any] = field(default_factory=dict)
    pre_sync: dict[str, Any] = field(default_factory=dict)
    quarantine: dict[str, Any] = field(default_factory=dict)
    translated: list[dict[str, Any]] = field(default_factory=list)
    zk_sync: dict[str, Any] = field(default_factory=dict)
    verify: dict[str, Any] = field(default_factory=dict)
    run_sync: dict[str, Any] = field(default_factory=dict)
    post_sync: dict[str, Any] = field(default_factory=dict)
    prediction: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)      # anything lost or quarantined

    @property
    def ok(self) -> bool:
        return not self.problems and not self.refusals and all(s.ok for s in self.steps)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["import"] = data.pop("import_")
        data["ok"] = self.ok
        return data


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

    def _step(self, name: str, fn: Callable[[], Any], *, fatal: bool = True) -> Any:
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

    def _settings(self) -> Any:
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
        from backends.cassandra.copy import translator_for
        from backends.cassandra.schema import table_layout

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
        changes = []
        mapped = set()
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
        self.report.run_sync = SyntheticLoad(self).run()

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


class SyntheticLoad:
    """run-sync (the real service, in a thread) against changes made on old at a steady rate:
    each change rewrites an object's `prop:display_name` on old and announces it on old's
    exchange, as the api-server would."""

    def __init__(self, rehearsal: Rehearsal) -> None:
        self.r = rehearsal

    def _objects(self) -> list[tuple[str, str, list[str]]]:
        """(uuid, type, fq_name) of up to LOAD_OBJECTS objects of old's obj_uuid_table."""
        from backends.cassandra.schema import table_layout

        session = self.r.old.session
        layout = table_layout(session, "config_db_uuid", "obj_uuid_table")
        if layout is None:
            return []
        self.layout = layout
        keys = session.execute("SELECT DISTINCT key FROM config_db_uuid.obj_uuid_table "
                               f"LIMIT {LOAD_OBJECTS * 2}")
        read = session.prepare("SELECT column1, value FROM config_db_uuid.obj_uuid_table "
                               "WHERE key = ? AND column1 IN ?")
        wanted = [layout.encode_column("fq_name"), layout.encode_column("type")]
        objects = []
        for (raw_key,) in keys:
            cells = {layout.decode_column(c): v for c, v in session.execute(read,
                                                                           (raw_key, wanted))}
            try:
                obj_type = json.loads(cells["type"])
                fq_name = json.loads(cells["fq_name"])
                uuid.UUID(layout.decode_key(raw_key))
            except (KeyError, ValueError, TypeError):
                continue
            if isinstance(obj_type, str) and isinstance(fq_name, list):
                objects.append((layout.decode_key(raw_key), obj_type, fq_name))
            if len(objects) >= LOAD_OBJECTS:
                break
        return objects

    def run(self) -> dict[str, Any]:
        from backends.cassandra.connection import connect_pair
        from backends.progress import MemoryCounters, MemoryEvents
        from backends.rabbit import Publisher, RabbitSide, delete_issu_queues
        from backends.runsync.metrics import COUNTER_SCOPE
        from backends.runsync.service import RunSync, RunSyncOptions

        r, o, eps = self.r, self.r.options, self.r.eps
        objects = self._objects()
        if not objects:
            return {"skipped": "no objects in config_db_uuid.obj_uuid_table to change"}
        rabbit = {"hosts": (f"{eps.rabbit_host}:{eps.rabbit_port}",),
                  "user": eps.rabbit_user, "password": eps.rabbit_password}
        old_rabbit = RabbitSide("old", vhost=eps.rabbit_vhost_old, **rabbit)  # type: ignore[arg-type]
        new_rabbit = RabbitSide("new", vhost=eps.rabbit_vhost_new, **rabbit)  # type: ignore[arg-type]
        counters = MemoryCounters()
        service = RunSync(
            old_rabbit=old_rabbit, new_rabbit=new_rabbit,
            connect_cassandra=lambda: connect_pair(r.old_side, r.new_side),
            registry=r.registry, settings=r._settings(),
            options=RunSyncOptions(queue_name=RUNSYNC_QUEUE, catch_up=False,
                                   reconcile_after_catch_up=False, reconcile_interval_s=3600,
                                   metrics_listen=None, counters_interval_s=1.0,
                                   old_version=o.from_version, new_version=o.to_version),
            counters=counters, events=MemoryEvents())
        thread = threading.Thread(target=service.run, name="issu-rehearsal-runsync",
                                  daemon=True)
        thread.start()
        publisher = Publisher(old_rabbit)
        insert = r.old.session.prepare("INSERT INTO config_db_uuid.obj_uuid_table (key, column1, "
                                       "value) VALUES (?, ?, ?) USING TIMESTAMP ?")
        published = 0
        try:
            if not service.ready.wait(180):
                raise RehearsalError("run-sync did not start consuming within 180 s")
            column = self.layout.encode_column("prop:display_name")
            started = time.monotonic()
            while time.monotonic() - started < o.load_seconds:
                due = started + published / o.rate
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())
                obj_uuid, obj_type, fq_name = objects[published % len(objects)]
                value = self.layout.encode_value(json.dumps(f"rehearsal change {published}"))
                r.old.session.execute(insert, (self.layout.encode_key(obj_uuid), column, value,
                                               time.time_ns() // 1000))
                publisher.publish({"request-id": f"req-rehearsal-{published}", "oper": "UPDATE",
                                   "type": obj_type, "uuid": obj_uuid, "fq_name": fq_name})
                published += 1
            load_seconds = time.monotonic() - started
            deadline = time.monotonic() + 120
            values: dict[str, float] = {}
            while time.monotonic() < deadline:
                values = counters.values.get(COUNTER_SCOPE, {})
                done = values.get("applied", 0) + values.get("failed", 0) + \
                    values.get("quarantined", 0)
                if done >= published and not values.get("in_flight", 0):
                    break
                time.sleep(0.5)
            drained = time.monotonic() - started
        finally:
            publisher.close()
            service.stop.set()
            thread.join(timeout=120)
        values = counters.values.get(COUNTER_SCOPE, {})
        with contextlib.suppress(Exception):
            delete_issu_queues(old_rabbit, RUNSYNC_QUEUE)
        verify_after = r._verify_now(("config_db_uuid",))
        return {"rate": o.rate, "published": published, "load_seconds": round(load_seconds, 3),
                "drained_after_s": round(drained, 3),
                "applied": int(values.get("applied", 0)), "failed": int(values.get("failed", 0)),
                "quarantined": int(values.get("quarantined", 0)),
                "cells_quarantined": int(values.get("cells_quarantined", 0)),
                "lag_p50_s": values.get("lag_p50_s"), "lag_p99_s": values.get("lag_p99_s"),
                "applied_per_s": _rate(values.get("applied", 0), drained),
                "verify_after": verify_after}


def _rate(count: float, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


# --------------------------------------------------------------------------- the report files

def render_markdown(report: RehearsalReport) -> str:
    r = report
    s = r.snapshot
    lines = [f"# Rehearsal of the upgrade {r.from_version} -> {r.to_version}", "",
             f"- snapshot: `{s['path']}`: {s['cells']:,} cells in {s['rows']:,} rows, "
             f"{s['znodes']:,} znodes",
             f"- started: {r.started_at}; machine: {r.machine.get('cpu') or 'unknown CPU'}, "
             f"{r.machine.get('cores')} cores, kernel {r.machine.get('kernel')}",
             f"- result: **{'PASSED' if r.ok else 'FAILED'}**", ""]
    if r.problems or r.refusals:
        lines += ["## What would go wrong on the day", ""]
        lines += [f"- {p}" for p in r.problems]
        lines += [f"- preflight would refuse: {p}" for p in r.refusals]
        lines.append("")
    lines += ["## Steps", "", "| step | seconds | result |", "|---|---:|---|"]
    for step in r.steps:
        lines.append(f"| {step.name} | {step.seconds:.1f} | "
                     f"{'ok' if step.ok else 'FAILED: ' + step.detail} |")
    pred = r.prediction
    lines += ["", "## Rates and predictions", "",
              f"- import into old: {r.import_.get('cells_per_s', 0):,.0f} cells/s",
              f"- pre-sync: {r.pre_sync.get('cells_per_s', 0):,.0f} cells/s measured; predicted "
              f"{_seconds(pred.get('pre_sync_s'))} for {pred.get('pre_sync_cells', 0):,} cells",
              f"- post-sync: {r.post_sync.get('cells_per_s', 0):,.0f} cells/s measured; predicted "
              f"{_seconds(pred.get('post_sync_s'))} for {pred.get('post_sync_cells', 0):,} cells",
              f"- predictions for {pred.get('production_cells', 0):,} cells "
              f"({pred.get('basis', '')}), on this machine", ""]
    if r.pre_sync.get("tables"):
        lines += ["## Pre-sync per table", "",
                  "| table | cells copied | quarantined | seconds | translator |",
                  "|---|---:|---:|---:|---|"]
        for t in r.pre_sync["tables"]:
            lines.append(f"| {t['table']} | {t['cells']:,} | {t['quarantined']:,} | "
                         f"{t['seconds']:.1f} | {t['translator']} |")
        lines.append("")
    if r.quarantine.get("count"):
        lines += ["## Quarantined", ""]
        for name, entry in r.quarantine["tables"].items():
            lines.append(f"- {name}: {entry['count']} cell(s)")
            lines += [f"  - {n} x {reason}" for reason, n in entry["reasons"].items()]
            lines += [f"  - sample: key `{x['key']}` column `{x['column']}`"
                      for x in entry["samples"]]
        lines.append("")
    if r.translated:
        lines += ["## Translated samples (before -> after)", ""]
        for sample in r.translated:
            key = (sample["old_key"] if sample["old_key"] == sample["new_key"]
                   else f"{sample['old_key']} -> {sample['new_key']}")
            lines.append(f"- {sample['table']} `{key}` ({sample['changed_cells']} cells changed)")
            for change in sample["changes"]:
                lines.append(f"  - `{_cell(change['before'])}` -> `{_cell(change['after'])}`")
        lines.append("")
    zk = r.zk_sync
    if zk:
        lines += ["## zk-sync", "", f"- {zk.get('verified_nodes', 0):,} nodes verified, "
                  f"{zk.get('differences', 0)} mismatch(es)"]
        lines += [f"- {d}" for d in zk.get("samples", [])]
        lines.append("")
    if r.verify:
        t = r.verify["totals"]
        lines += ["## verify", "", f"- {t['cells_compared']:,} cells compared: "
                  f"{t['missing']} missing, {t['extra']} extra, {t['different']} different", ""]
    rs = r.run_sync
    if rs and "published" in rs:
        lines += ["## run-sync under a synthetic load", "",
                  f"- {rs['published']} changes at {rs['rate']}/s over {rs['load_seconds']:.0f}s:"
                  f" {rs['applied']} applied, {rs['failed']} failed, {rs['quarantined']} "
                  f"quarantined; lag p50 {_seconds(rs.get('lag_p50_s'))}, p99 "
                  f"{_seconds(rs.get('lag_p99_s'))}",
                  f"- verify of config_db_uuid afterwards: "
                  f"{rs['verify_after']['differences']} difference(s)", ""]
    return "\n".join(lines) + "\n"


def _seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value / 60:.1f} min" if value >= 120 else f"{value:.2f} s"


def _cell(cell: list[Any] | None) -> str:
    if cell is None:
        return "(none)"
    column, value = cell
    text = "(absent)" if value is None else str(value)
    return f"{column} = {text[:80]}"


def write_reports(report: RehearsalReport, base: Path) -> tuple[Path, Path]:
    """`<base>.md` and `<base>.json`."""
    md, js = base.with_name(base.name + ".md"), base.with_name(base.name + ".json")
    md.write_text(render_markdown(report))
    js.write_text(json.dumps(report.as_dict(), indent=2, default=str) + "\n")
    return md, js
