"""pre-sync against its peers on a Contrail-shaped database, side by side in one run.

    .venv/bin/pip install -e '.[bench]'          # cqlsh (PyPI), psutil
    .venv/bin/python -m bench.bench_presync --net 32 --cells 1000000 --wide 1000000

Uses the launcher's real old/new Cassandra on 127.<net>.0.11/.12 (started when needed).
Seeds old (keyspace prefix `bo`) with objects shaped like Contrail's (obj_uuid_table,
obj_fq_name_table, obj_shared_table and the other keyspaces), then copies it to the new
cluster with each method, every one in its own child process (peak RSS of the whole process
tree polled with psutil), into an emptied new side:

- issu:     this engine (token slices in flight, paged reads, batched writes with the source
            WRITETIME, replace semantics, checkpoints in memory); identity translation so that
            every method moves the same bytes;
- naive:    the original tool's way with the same driver: one thread, each table loaded whole
            into memory, then one synchronous write per row (partition);
- cqlsh:    `COPY ... TO` csv files then `COPY ... FROM` (PyPI cqlsh), table by table;
- ceiling:  raw concurrent writes of the same rows (UNLOGGED batches grouped as issu's writer
            groups them, 64 in flight) from memory: reading is not timed, nothing else
            is done;
- ceiling2: the same in 2 processes, each with half of the partitions (issu copies in 2
            processes by default); "vs write ceiling" compares with the better of the two;
- readwrite2: the read+write ceiling: 2 processes, each reading old by token slices (issu's
            slice count, every other one; issu's slices in flight) and writing new as it
            reads (batches as issu's, 64 in flight), timed from when both are ready to the
            last acknowledgement; nothing is read on new or compared;
- issu-again: issu once more onto the full new side it just wrote (new read and compared:
            the cost of replace semantics when new is not known empty).
Then the wide case: one obj_fq_name_table partition of `--wide` columns copied by issu (and
copied again onto the full new side, where the new side's cells spill to disk), RSS measured.
Results (markdown) go to docs/benchmarks.md between the pre-sync markers, with a profile.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.machine import Machine

OLD_PREFIX = "bo"
WIDE_PREFIX = "bw"   # the wide partition lives in its own old keyspaces
NEW_PREFIX = "bn"
ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers

def _sides(net: int, old_prefix: str = OLD_PREFIX):  # type: ignore[no-untyped-def]
    from backends.cassandra.connection import CassandraSide

    old = CassandraSide("old", (f"127.{net}.0.11",), 9042, prefix=old_prefix, version="5.0.0")
    new = CassandraSide("new", (f"127.{net}.0.12",), 9042, prefix=NEW_PREFIX, version="5.0.0")
    return old, new


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _tables(keyspaces: list[str] | None = None) -> list[tuple[str, str]]:
    from tests.contrail_data import CONTRAIL_TABLES

    return [(k, t) for k, ts in CONTRAIL_TABLES.items() for t in ts
            if keyspaces is None or k in keyspaces]


def _dataset(cells: int):  # type: ignore[no-untyped-def]
    """At least `cells` cells: projects of 50 VNs with 20 VMIs each (VMIs dominate, as in
    real deployments), as many projects as needed."""
    import math

    from tests.contrail_data import generate

    per_project = generate(1, 50, 20, seed=11).cell_count()
    return generate(max(1, math.ceil(cells / per_project)), 50, 20, seed=11)


# --------------------------------------------------------------------------- methods (child)

def run_issu(net: int, keyspaces: list[str] | None, profile: bool,
             old_prefix: str = OLD_PREFIX, knobs: dict[str, int] | None = None
             ) -> dict[str, object]:
    import functools
    import threading

    import backends.cassandra.copy as copy_mod
    from backends.cassandra.connection import connect, connect_pair
    from backends.cassandra.copy import CopyEngine
    from backends.cassandra.registry import load_registry
    from backends.cassandra.slice_processes import CopyWorkerSpec
    from backends.cassandra.tables import SyncSettings
    from backends.progress import MemoryCheckpoints

    o, n = _sides(net, old_prefix)
    old, new = connect(o), connect(n)
    knobs = dict(knobs or {})
    processes = knobs.pop("processes", 1 if profile else 2)  # as `issu sync pre` (copy_processes)
    settings = SyncSettings(keyspaces=tuple(keyspaces) if keyspaces else None, **knobs)
    engine = CopyEngine(old, new, load_registry(), settings, checkpoints=MemoryCheckpoints(),
                        processes=CopyWorkerSpec(functools.partial(connect_pair, o, n),
                                                 processes=processes))
    profiles: list[cProfile.Profile] = []
    if profile:
        # the work runs in slice threads: profile each slice and merge the statistics
        lock = threading.Lock()
        plain = copy_mod.copy_slice

        def profiled(ctx, lo, hi, **kw):  # type: ignore[no-untyped-def]
            prof = cProfile.Profile()
            prof.enable()
            try:
                return plain(ctx, lo, hi, **kw)
            finally:
                prof.disable()
                with lock:
                    profiles.append(prof)
        copy_mod.copy_slice = profiled  # type: ignore[assignment]
    started = time.perf_counter()
    report = engine.run("bench", phase="pre", fresh=True)
    seconds = time.perf_counter() - started
    out: dict[str, object] = {"seconds": seconds, "cells": report.totals()["cells"],
                              "deleted": report.totals()["deleted"], "ok": report.ok}
    if profiles:
        buf = io.StringIO()
        stats = pstats.Stats(profiles[0], stream=buf)
        for prof in profiles[1:]:
            stats.add(prof)
        stats.sort_stats("tottime").print_stats(18)
        text = buf.getvalue()
        out["profile"] = text[text.index("ncalls") - 3:] if "ncalls" in text else text
    return out


def _copy_target(o, n, new, ks: str, table: str):  # type: ignore[no-untyped-def]
    """(old's quoted table name, new's prepared INSERT ... USING TIMESTAMP), new's table
    created: what the naive copy and the ceiling write through."""
    dst = f'"{n.keyspace(ks)}"."{table}"'
    new.session.execute(f"CREATE TABLE IF NOT EXISTS {dst} (key blob, column1 blob, "
                        "value text, PRIMARY KEY (key, column1))")
    insert = new.session.prepare(f"INSERT INTO {dst} (key, column1, value) "
                                 "VALUES (?, ?, ?) USING TIMESTAMP ?")
    return f'"{o.keyspace(ks)}"."{table}"', insert


def run_naive(net: int, keyspaces: list[str] | None, budget: float) -> dict[str, object]:
    """Whole table in memory, then one synchronous write per row; stops after `budget` s."""
    from cassandra.query import BatchStatement, BatchType

    from backends.cassandra.connection import connect

    o, n = _sides(net)
    old, new = connect(o), connect(n)
    cells = 0
    started = time.perf_counter()
    complete = True
    for ks, table in _tables(keyspaces):
        src, insert = _copy_target(o, n, new, ks, table)
        rows: dict[bytes, list[tuple[bytes, str, int]]] = {}
        for k, c, v, ts in old.session.execute(
                f"SELECT key, column1, value, WRITETIME(value) FROM {src}", timeout=600):
            rows.setdefault(k, []).append((c, v, ts))
        for key, cols in rows.items():
            for i in range(0, len(cols), 100):
                batch = BatchStatement(batch_type=BatchType.UNLOGGED)
                for c, v, ts in cols[i:i + 100]:
                    batch.add(insert, (key, c, v, ts))
                new.session.execute(batch)
                cells += len(cols[i:i + 100])
            if time.perf_counter() - started > budget:
                complete = False
                break
        if not complete:
            break
    return {"seconds": time.perf_counter() - started, "cells": cells, "ok": True,
            "complete": complete}


def _add_batches(batches: list[tuple[object, tuple[()]]], insert, rows) -> int:  # type: ignore[no-untyped-def]
    """Append the rows' writes to `batches` as issu's writer groups them (the same policy and
    bounds: backends/cassandra/batching.py, SyncSettings); returns the rows."""
    from cassandra.query import BatchStatement, BatchType

    from backends.cassandra.batching import CELL_OVERHEAD, Batching, grouped
    from backends.cassandra.tables import SyncSettings

    count = 0
    batching = Batching(SyncSettings().copy_batch_bounds())  # one node: one replica set
    for group in grouped(rows, batching, key=lambda r: r[0],
                         size=lambda r: len(r[1]) + len(r[2]) + CELL_OVERHEAD):
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        for row in group:
            batch.add(insert, tuple(row))
        batches.append((batch, ()))
        count += len(group)
    return count


def run_ceiling(net: int, keyspaces: list[str] | None) -> dict[str, object]:
    from cassandra.concurrent import execute_concurrent

    from backends.cassandra.connection import connect

    o, n = _sides(net)
    old, new = connect(o), connect(n)
    work = []
    cells = 0
    for ks, table in _tables(keyspaces):
        src, insert = _copy_target(o, n, new, ks, table)
        rows = list(old.session.execute(
            f"SELECT key, column1, value, WRITETIME(value) FROM {src}", timeout=600))
        cells += len(rows)
        work.append((insert, rows))
    started = time.perf_counter()
    batches: list[tuple[object, tuple[()]]] = []
    for insert, rows in work:
        _add_batches(batches, insert, rows)
    for ok, result in execute_concurrent(new.session, batches, concurrency=64,
                                         raise_on_first_error=True):
        if not ok:
            raise result
    return {"seconds": time.perf_counter() - started, "cells": cells, "ok": True}


def _ceiling_part(net: int, keyspaces: list[str] | None, parts: int, part: int,
                  barrier, results) -> None:  # type: ignore[no-untyped-def]
    """One process of the multi-process ceiling: its share of the partitions (by crc32 of
    the key) read into memory untimed, then, from the moment every process is ready, the
    same writes as `run_ceiling`."""
    import zlib

    from cassandra.concurrent import execute_concurrent

    from backends.cassandra.connection import connect

    o, n = _sides(net)
    old, new = connect(o), connect(n)
    batches: list[tuple[object, tuple[()]]] = []
    cells = 0
    for ks, table in _tables(keyspaces):
        src, insert = _copy_target(o, n, new, ks, table)
        rows = old.session.execute(
            f"SELECT key, column1, value, WRITETIME(value) FROM {src}", timeout=600)
        cells += _add_batches(batches, insert,
                              (r for r in rows if zlib.crc32(r[0]) % parts == part))
    barrier.wait()
    started = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process of the box
    for ok, result in execute_concurrent(new.session, batches, concurrency=64,
                                         raise_on_first_error=True):
        if not ok:
            raise result
    results.put((started, time.monotonic(), cells))


def run_ceiling_processes(net: int, keyspaces: list[str] | None,
                          processes: int = 2) -> dict[str, object]:
    """The ceiling in `processes` processes (as issu copies in its copy processes): timed
    from the moment all are ready to write until the last one is done."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_ceiling_part,
                         args=(net, keyspaces, processes, i, barrier, results))
             for i in range(processes)]
    for proc in procs:
        proc.start()
    parts = [results.get(timeout=3600) for _ in procs]
    for proc in procs:
        proc.join(60)
    return {"seconds": max(p[1] for p in parts) - min(p[0] for p in parts),
            "cells": sum(p[2] for p in parts), "ok": True}


def _readwrite_part(net: int, keyspaces: list[str] | None, parts: int, part: int,
                    barrier, results) -> None:  # type: ignore[no-untyped-def]
    """One process of the read+write ceiling: its share of the token slices (issu's slice
    count, every other one), each read from old page by page and written to new as it
    comes (batches grouped as issu's writer groups them, 64 in flight per process), issu's
    slices-in-flight at once; nothing read on new, nothing compared."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from backends.cassandra.connection import connect
    from backends.cassandra.tables import SyncSettings, token_slices

    o, n = _sides(net)
    old, new = connect(o), connect(n)
    settings = SyncSettings()
    work = []
    for ks, table in _tables(keyspaces):
        src, insert = _copy_target(o, n, new, ks, table)
        select = old.session.prepare(f"SELECT key, column1, value, WRITETIME(value) FROM {src} "
                                     "WHERE token(key) > ? AND token(key) <= ?")
        work += [(select, insert, lo, hi) for i, (_, lo, hi) in
                 enumerate(token_slices(settings.slices_per_table)) if i % parts == part]
    in_flight = threading.BoundedSemaphore(64)
    errors: list[BaseException] = []

    def failed(exc: BaseException) -> None:
        errors.append(exc)
        in_flight.release()

    def send(insert, rows: list) -> int:  # type: ignore[no-untyped-def, type-arg]
        batches: list[tuple[object, tuple[()]]] = []
        count = _add_batches(batches, insert, rows)
        for batch, _ in batches:
            in_flight.acquire()
            future = new.session.execute_async(batch)
            future.add_callbacks(lambda _: in_flight.release(), failed)
        return count

    def copy_slice(item) -> int:  # type: ignore[no-untyped-def]
        select, insert, lo, hi = item
        bound = select.bind((lo, hi))
        bound.fetch_size = settings.page_size
        cells, page = 0, []
        for row in old.session.execute(bound, timeout=600):
            page.append(row)
            if len(page) >= settings.page_size:
                cells += send(insert, page)
                page = []
        return cells + send(insert, page)

    barrier.wait()
    started = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process of the box
    with ThreadPoolExecutor(max_workers=settings.concurrency) as pool:
        cells = sum(pool.map(copy_slice, work))
    for _ in range(64):  # every write acknowledged
        in_flight.acquire()
    if errors:
        raise errors[0]
    results.put((started, time.monotonic(), cells))


def run_readwrite_processes(net: int, keyspaces: list[str] | None,
                            processes: int = 2) -> dict[str, object]:
    """The read+write ceiling in `processes` processes: timed from the moment all are ready
    until the last one's writes are acknowledged."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_readwrite_part,
                         args=(net, keyspaces, processes, i, barrier, results))
             for i in range(processes)]
    for proc in procs:
        proc.start()
    parts = [results.get(timeout=3600) for _ in procs]
    for proc in procs:
        proc.join(60)
    return {"seconds": max(p[1] for p in parts) - min(p[0] for p in parts),
            "cells": sum(p[2] for p in parts), "ok": True}


def run_cqlsh(net: int, keyspaces: list[str] | None) -> dict[str, object]:
    o, n = _sides(net)
    cqlsh = str(Path(sys.executable).with_name("cqlsh"))
    cells = 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="issu-cqlsh-") as tmp:
        for ks, table in _tables(keyspaces):
            csv = Path(tmp) / f"{ks}.{table}.csv"
            src, dst = f"{o.keyspace(ks)}.{table}", f"{n.keyspace(ks)}.{table}"
            subprocess.run([cqlsh, o.hosts[0], str(o.port), "-e",
                            f"COPY {src} (key, column1, value) TO '{csv}'"],
                           check=True, capture_output=True, timeout=3600)
            subprocess.run([cqlsh, n.hosts[0], str(n.port), "-e",
                            f"CREATE TABLE IF NOT EXISTS {dst} (key blob, column1 blob, "
                            "value text, PRIMARY KEY (key, column1))"],
                           check=True, capture_output=True, timeout=600)
            subprocess.run([cqlsh, n.hosts[0], str(n.port), "-e",
                            f"COPY {dst} (key, column1, value) FROM '{csv}'"],
                           check=True, capture_output=True, timeout=3600)
            with csv.open() as fh:
                cells += sum(1 for _ in fh)
    return {"seconds": time.perf_counter() - started, "cells": cells, "ok": True}


# --------------------------------------------------------------------------- parent

def _reset_new(net: int, keep_schema: bool = False) -> None:
    from backends.cassandra.connection import connect
    from tests.contrail_data import CONTRAIL_TABLES, create_schema, drop_schema

    _, n = _sides(net)
    new = connect(n)
    drop_schema(new.session, NEW_PREFIX)
    if keep_schema:
        create_schema(new.session, NEW_PREFIX, tables=CONTRAIL_TABLES)
    new.close()


_JVMS: dict[str, list[int]] = {}


def _find_jvms(net: int) -> None:
    """The pids of the two Cassandra JVMs (and any helper in their groups), for CPU time."""
    from demo.services import Launcher

    for st in Launcher(net=net, profile="test").status(["cassandra-old", "cassandra-new"],
                                                        probe=False):
        _JVMS[st.name.replace("cassandra-", "")] = list(st.pids)


def _jvm_cpu() -> dict[str, float]:
    import psutil

    out: dict[str, float] = {}
    for side, pids in _JVMS.items():
        total = 0.0
        for pid in pids:
            try:
                p = psutil.Process(pid)
                for q in [p, *p.children(recursive=True)]:
                    t = q.cpu_times()
                    total += t.user + t.system
            except psutil.Error:
                pass
        out[side] = total
    return out


def _child(method: str, args: argparse.Namespace, extra: list[str] = ()) -> dict[str, object]:
    import psutil

    cmd = [sys.executable, "-m", "bench.bench_presync", "--net", str(args.net), "--child",
           method, *extra, *(f"--knob={kv}" for kv in args.knob)]
    jvm0 = _jvm_cpu()
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    load0 = os.getloadavg()[0]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            rss = sum(p.memory_info().rss for p in [ps, *ps.children(recursive=True)])
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.05)
    out = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{method} failed (exit {proc.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"] = round(peak / 2**20, 1)
    # CPU seconds during the method: the client's whole process tree (every waited-for
    # descendant: cqlsh and its COPY worker processes, issu's slice worker processes) and
    # each Cassandra JVM; with the 1-minute load average before and after
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    jvm1 = _jvm_cpu()
    result["cpu_client"] = round(kids1.ru_utime + kids1.ru_stime
                                 - kids0.ru_utime - kids0.ru_stime, 1)
    for side in jvm1:
        result[f"cpu_{side}"] = round(jvm1[side] - jvm0.get(side, 0.0), 1)
    result["load"] = f"{load0:.2f} -> {os.getloadavg()[0]:.2f}"
    return result


def seed(net: int, cells: int, wide: int) -> tuple[int, int]:
    from backends.cassandra.connection import connect
    from tests.contrail_data import (
        CONTRAIL_TABLES,
        Dataset,
        create_schema,
        drop_schema,
        wide_fq_partition,
        write,
    )

    o, _ = _sides(net)
    old = connect(o)
    drop_schema(old.session, OLD_PREFIX)
    create_schema(old.session, OLD_PREFIX, tables=CONTRAIL_TABLES)
    ds = _dataset(cells)
    write(old.session, OLD_PREFIX, ds, concurrency=32)
    count = ds.cell_count()
    del ds
    if wide:
        drop_schema(old.session, WIDE_PREFIX)
        create_schema(old.session, WIDE_PREFIX,
                      tables={"config_db_uuid": CONTRAIL_TABLES["config_db_uuid"]})
        w = Dataset()
        wide_fq_partition(w, "virtual_machine_interface", wide)
        write(old.session, WIDE_PREFIX, w, concurrency=32)
    old.close()
    return count, wide


def _fmt(rate: float) -> str:
    return f"{rate:,.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net", type=int, default=int(os.environ.get("ISSU_TEST_NET", 32)))
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--wide", type=int, default=1_000_000,
                        help="columns of the single wide obj_fq_name_table partition (0: none)")
    parser.add_argument("--naive-budget", type=float, default=180.0,
                        help="seconds the naive copy may run; its rate is measured over that")
    parser.add_argument("--skip", default="", help="comma list of methods to skip")
    parser.add_argument("--pairs", type=int, default=0, metavar="N",
                        help="then N rounds of issu and the read+write ceiling back to back "
                             "on the same data (each method's rows above run minutes apart, "
                             "at whatever load the box has then: a pair compares like with "
                             "like)")
    parser.add_argument("--no-seed", action="store_true", help="reuse the seeded old side")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--keep", action="store_true",
                        help="leave the Cassandra nodes running at the end (default: stop "
                             "those this run started)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--keyspaces", default="", help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--old-prefix", default=OLD_PREFIX, help=argparse.SUPPRESS)
    parser.add_argument("--knob", action="append", default=[], metavar="NAME=INT",
                        help="issu SyncSettings override (e.g. concurrency=4), for experiments")
    args = parser.parse_args(argv)
    keyspaces = [k for k in args.keyspaces.split(",") if k] or None

    if args.child:
        runners = {
            "issu": lambda: run_issu(args.net, keyspaces, args.profile, args.old_prefix,
                                     {k: int(v) for k, v in
                                      (kv.split("=", 1) for kv in args.knob)}),
            "naive": lambda: run_naive(args.net, keyspaces, args.naive_budget),
            "ceiling": lambda: run_ceiling(args.net, keyspaces),
            "ceiling2": lambda: run_ceiling_processes(args.net, keyspaces, 2),
            "readwrite2": lambda: run_readwrite_processes(args.net, keyspaces, 2),
            "cqlsh": lambda: run_cqlsh(args.net, keyspaces),
        }
        runners["issu-again"] = runners["issu"]
        result = runners[args.child]()
        result["self_peak_rss_mb"] = round(_peak_rss_mb(), 1)
        print(json.dumps(result))
        return 0

    from bench.machine import Machine, bench_services
    from demo.services import Launcher

    machine = Machine.now()
    print(f"machine: {machine.line()}", flush=True)
    with bench_services(Launcher(net=args.net, profile="test"),
                        ["cassandra-old", "cassandra-new"], keep=args.keep):
        code = _measure(args, argv, machine)
    print(f"machine: {machine.line()}")
    return code


def _measure(args: argparse.Namespace, argv: list[str] | None, machine: Machine) -> int:
    _find_jvms(args.net)
    skip = set(args.skip.split(","))
    command = "python -m bench.bench_presync " + " ".join(sys.argv[1:] if argv is None
                                                           else argv)
    if not args.no_seed:
        t = time.perf_counter()
        cells, _ = seed(args.net, args.cells, args.wide)
        print(f"seeded {cells} cells (+{args.wide} wide) in {time.perf_counter() - t:.0f}s",
              flush=True)
    # the normal data: every table except the wide partition, which lives in its own type
    results: dict[str, dict[str, object]] = {}
    for method in ("issu", "issu-again", "ceiling", "ceiling2", "readwrite2", "cqlsh", "naive"):
        if method in skip or (method == "issu-again" and "issu" in skip):
            continue
        if method != "issu-again":  # that one copies onto what issu just copied
            _reset_new(args.net, keep_schema=True)
        results[method] = _child(method, args)
        r = results[method]
        print(f"{method}: {r['cells']} cells in {r['seconds']:.1f}s "
              f"({float(r['cells']) / float(r['seconds']):,.0f}/s), "
              f"peak RSS {r['peak_rss_mb']} MB; CPU s client {r['cpu_client']} old "
              f"{r.get('cpu_old')} new {r.get('cpu_new')}; load {r['load']}", flush=True)
    if "issu" in results and "profile" not in skip:
        # a separate, untimed run under the profiler (profiling slows the copy down)
        _reset_new(args.net, keep_schema=True)
        results["issu"]["profile"] = _child("issu", args, ["--profile"]).get("profile", "")
    wide_rows = []
    if args.wide and "wide" not in skip:
        _reset_new(args.net, keep_schema=True)
        wide_args = ["--keyspaces", "config_db_uuid", "--old-prefix", WIDE_PREFIX]
        first = _child("issu", args, wide_args)
        again = _child("issu", args, wide_args)
        wide_rows = [("copy into an empty new side", first), ("copy again (new side full: "
                                                              "its cells spill to disk)", again)]
        for label, r in wide_rows:
            print(f"wide {label}: {r['seconds']:.1f}s peak RSS {r['peak_rss_mb']} MB", flush=True)
    pairs = []
    for round_ in range(1, args.pairs + 1):
        pair = []
        for method in ("issu", "readwrite2"):
            _reset_new(args.net, keep_schema=True)
            pair.append(_child(method, args))
        issu_rate, rw_rate = (float(r["cells"]) / float(r["seconds"]) for r in pair)
        print(f"pair {round_}: issu {issu_rate:,.0f}/s, read+write ceiling {rw_rate:,.0f}/s: "
              f"{issu_rate / rw_rate:.2f}x", flush=True)
        pairs.append((pair[0], pair[1]))
    _write_report(args, command, results, wide_rows, machine.finish(), pairs)
    return 0


def _write_report(args: argparse.Namespace, command: str,
                  results: dict[str, dict[str, object]],
                  wide_rows: list[tuple[str, dict[str, object]]], machine: Machine,
                  pairs: list[tuple[dict[str, object], dict[str, object]]] | None = None
                  ) -> None:
    lines = ["## pre-sync (Cassandra copy engine)", "",
             f"Measured {machine.line()}; both Cassandra 5.0 nodes on the same host (compare "
             "the ratios of one run; absolute figures depend on the load). Command:", "",
             "```", f".venv/bin/{command}", "```", ""]
    # the best of the ceilings (one process, two processes)
    ceilings = [float(r["cells"]) / float(r["seconds"]) for m, r in results.items()
                if m.startswith("ceiling")]
    ceil_rate = max(ceilings) if ceilings else None
    rw = results.get("readwrite2")
    rw_rate = float(rw["cells"]) / float(rw["seconds"]) if rw else None
    lines += ["| method | cells | seconds | cells/s | vs write ceiling | vs read+write ceiling "
              "| peak RSS (MB) | CPU s: client / old JVM / new JVM | load (1 min) before -> "
              "after |", "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    labels = {"issu": "issu pre-sync (this engine; new empty: new not read)",
              "issu-again": "issu pre-sync again onto the full new side (new read and "
                            "compared, everything rewritten)",
              "readwrite2": "read+write ceiling in 2 processes (read old by token slices, "
                            "write new as it comes; nothing read on new)",
              "ceiling": "ceiling: raw concurrent batched writes from memory (timed: writes "
                         "only)",
              "ceiling2": "ceiling in 2 processes (each half of the partitions; timed: writes "
                          "only, from when both are ready)",
              "cqlsh": "cqlsh COPY TO + COPY FROM", "naive": "naive single-threaded copy"}
    for method, r in results.items():
        rate = float(r["cells"]) / float(r["seconds"])
        ratio = f"{rate / ceil_rate:.2f}x" if ceil_rate else "-"
        rw_ratio = f"{rate / rw_rate:.2f}x" if rw_rate else "-"
        note = "" if r.get("complete", True) else " (stopped at the time budget)"
        lines.append(f"| {labels[method]}{note} | {r['cells']:,} | {float(r['seconds']):.1f} | "
                     f"{_fmt(rate)} | {ratio} | {rw_ratio} | {r['peak_rss_mb']} | "
                     f"{r.get('cpu_client')} / {r.get('cpu_old')} / {r.get('cpu_new')} | "
                     f"{r.get('load')} |")
    if "issu" in results and "cqlsh" in results:
        a = float(results["issu"]["cells"]) / float(results["issu"]["seconds"])
        b = float(results["cqlsh"]["cells"]) / float(results["cqlsh"]["seconds"])
        lines += ["", f"issu / cqlsh COPY: {a / b:.2f}x."]
    if "issu" in results and "naive" in results:
        a = float(results["issu"]["cells"]) / float(results["issu"]["seconds"])
        b = float(results["naive"]["cells"]) / float(results["naive"]["seconds"])
        lines += [f"issu / naive: {a / b:.2f}x."]
    if pairs:
        lines += ["", "In pairs: issu, then the read+write ceiling right after it on the same "
                  "data (new emptied before each), so both run at about the same load:", "",
                  "| round | issu cells/s | CPU s: client / new JVM | read+write ceiling cells/s "
                  "| CPU s: client / new JVM | issu vs ceiling | load (1 min) before -> after |",
                  "|---:|---:|---|---:|---|---:|---|"]
        for n, (issu, rw_pair) in enumerate(pairs, 1):
            a = float(issu["cells"]) / float(issu["seconds"])
            b = float(rw_pair["cells"]) / float(rw_pair["seconds"])
            lines.append(f"| {n} | {_fmt(a)} | {issu.get('cpu_client')} / {issu.get('cpu_new')} "
                         f"| {_fmt(b)} | {rw_pair.get('cpu_client')} / {rw_pair.get('cpu_new')} "
                         f"| **{a / b:.2f}x** | {issu.get('load')}; {rw_pair.get('load')} |")
    if wide_rows:
        lines += ["", f"Wide partition: one obj_fq_name_table partition of {args.wide:,} "
                  "columns, copied by issu alone (default settings: pages of 2,000 rows, "
                  "100,000 (key, column) entries in memory before spilling to SQLite):", "",
                  "| run | cells | seconds | peak RSS (MB) | CPU s: client / old JVM / new JVM "
                  "|", "|---|---:|---:|---:|---|"]
        for label, r in wide_rows:
            lines.append(f"| {label} | {r['cells']:,} | {float(r['seconds']):.1f} | "
                         f"{r['peak_rss_mb']} | {r.get('cpu_client')} / {r.get('cpu_old')} / "
                         f"{r.get('cpu_new')} |")
    prof = results.get("issu", {}).get("profile")
    if prof:
        lines += ["", "Where the time goes: cProfile of a separate (untimed) issu run, merged over "
                  "its slice threads, by own time; waiting for write acknowledgements shows as "
                  "`acquire` of a lock:", "", "```",
                  str(prof).strip(), "```"]
    from bench.page import write_block

    write_block(args.output, "presync", lines)

if __name__ == "__main__":
    sys.exit(main())
