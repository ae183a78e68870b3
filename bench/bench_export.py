"""`issu db export` against the original tool's approach, side by side in one run.

    .venv/bin/pip install -e '.[bench]'          # psutil
    .venv/bin/python -m bench.bench_export --net 43 --cells 1000000

Uses the launcher's real old Cassandra and ZooKeeper on 127.<net>.0.11/.21 (started when
needed). Seeds two Contrail-shaped databases, as bench_presync seeds its old side (projects of
50 VNs with 20 VMIs each, every Contrail keyspace): a small one (`--small-cells`, keyspace
prefix `es`) and the benchmark's (`--cells`, prefix `eb`), each with a ZooKeeper tree of
`--znodes` nodes under /es and /eb. Then each method exports each database to a plain JSON
file, in a child process of its own whose peak RSS (the whole process tree, polled with psutil)
is recorded:

- issu:     backends.snapshot (streaming: paged reads written as they come, ZooKeeper level
            by level); also once to a .gz file;
- original: db_json_exim.py's db_export followed step by step (tests/snapshot_original.py):
            every keyspace read whole into one dict, ZooKeeper walked recursively, then one
            json.dumps of the lot; same driver, same machine, same file format.
Memory that stays flat shows as the same peak RSS for the small and the big database.
Results (markdown) go to docs/benchmarks-export.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREFIXES = {"small": "es", "big": "eb"}


def _side(net: int, prefix: str):  # type: ignore[no-untyped-def]
    from backends.cassandra.connection import CassandraSide

    return CassandraSide("old", (f"127.{net}.0.11",), 9042, prefix=prefix)


def _zk(net: int):  # type: ignore[no-untyped-def]
    from backends.zookeeper.sync import connect

    return connect(f"127.{net}.0.21:2181")


# --------------------------------------------------------------------------- seeding

def seed(net: int, prefix: str, cells: int, znodes: int) -> int:
    from backends.cassandra.connection import connect
    from tests.contrail_data import CONTRAIL_TABLES, create_schema, drop_schema, generate, write

    per_project = generate(1, 50, 20, seed=11).cell_count()
    ds = generate(max(1, math.ceil(cells / per_project)), 50, 20, seed=11)
    conn = connect(_side(net, prefix))
    drop_schema(conn.session, prefix)
    create_schema(conn.session, prefix, tables=CONTRAIL_TABLES)
    write(conn.session, prefix, ds, concurrency=32)
    count = ds.cell_count()
    conn.close()
    zk = _zk(net)
    zk.delete(f"/{prefix}", recursive=True)
    transaction = zk.transaction()
    zk.ensure_path(f"/{prefix}/fq-name-to-uuid")
    zk.ensure_path(f"/{prefix}/id/virtual-networks")
    for i in range(znodes):
        if i % 2:
            transaction.create(f"/{prefix}/fq-name-to-uuid/virtual_network:d:p:vn-{i}",
                               f"uuid-{i}".encode())
        else:
            transaction.create(f"/{prefix}/id/virtual-networks/{i:010d}", f"d:p:vn-{i}".encode())
        if len(transaction.operations) >= 500:
            transaction.commit()
            transaction = zk.transaction()
    transaction.commit()
    zk.stop()
    zk.close()
    return count


# --------------------------------------------------------------------------- methods (child)

def run_issu(net: int, prefix: str, path: Path) -> dict[str, object]:
    from backends.cassandra.connection import connect
    from backends.snapshot.exim import export_snapshot

    conn, zk = connect(_side(net, prefix)), _zk(net)
    started = time.perf_counter()
    report = export_snapshot(path, conn, zk, zk_prefix=prefix)
    seconds = time.perf_counter() - started
    conn.close()
    zk.stop()
    return {"seconds": seconds, "cells": report.cells, "znodes": report.znodes,
            "bytes": path.stat().st_size}


def run_original(net: int, prefix: str, path: Path) -> dict[str, object]:
    from backends.cassandra.connection import connect
    from tests.snapshot_original import original_export

    conn, zk = connect(_side(net, prefix)), _zk(net)
    started = time.perf_counter()
    document = original_export(path, conn.session, prefix, zk, prefix)
    seconds = time.perf_counter() - started
    cells = sum(len(cols) for tables in document["cassandra"].values()
                for rows in tables.values() for cols in rows.values())
    znodes = len(json.loads(document["zookeeper"]))
    conn.close()
    zk.stop()
    return {"seconds": seconds, "cells": cells, "znodes": znodes,
            "bytes": path.stat().st_size}


# --------------------------------------------------------------------------- parent

def _child(method: str, args: argparse.Namespace, size: str, path: Path) -> dict[str, object]:
    import psutil

    cmd = [sys.executable, "-m", "bench.bench_export", "--net", str(args.net), "--child",
           method, "--size", size, "--path", str(path)]
    load0 = os.getloadavg()[0]
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        with contextlib.suppress(psutil.Error):  # a process of the tree just ended
            peak = max(peak, sum(p.memory_info().rss for p in [ps, *ps.children(True)]))
        time.sleep(0.05)
    out = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{method} on {size} failed (exit {proc.returncode})")
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"] = round(peak / 2**20, 1)
    result["cpu_s"] = round(kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime, 1)
    result["load"] = f"{load0:.2f} -> {os.getloadavg()[0]:.2f}"
    path.unlink(missing_ok=True)
    return result


def _machine() -> dict[str, str]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    return {"cpu": model, "cores": str(os.cpu_count()), "kernel": platform.release(),
            "commit": commit or "unknown",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net", type=int, default=int(os.environ.get("ISSU_TEST_NET", 32)))
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--small-cells", type=int, default=100_000)
    parser.add_argument("--znodes", type=int, default=20_000)
    parser.add_argument("--no-seed", action="store_true", help="reuse the seeded databases")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks-export.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        runner = run_issu if args.child == "issu" else run_original
        print(json.dumps(runner(args.net, PREFIXES[args.size], args.path)))
        return 0

    from demo.services import Launcher

    command = "python -m bench.bench_export " + " ".join(sys.argv[1:] if argv is None
                                                          else argv)
    machine = _machine()
    load_before = os.getloadavg()
    Launcher(net=args.net, profile="test").up(only=["cassandra-old", "zk-old"])
    seeded: dict[str, int] = {}
    if not args.no_seed:
        for size, cells in (("small", args.small_cells), ("big", args.cells)):
            started = time.perf_counter()
            seeded[size] = seed(args.net, PREFIXES[size], cells, args.znodes)
            print(f"seeded {size}: {seeded[size]:,} cells, {args.znodes:,} znodes in "
                  f"{time.perf_counter() - started:.0f}s", flush=True)
    rows: list[tuple[str, str, dict[str, object]]] = []
    with tempfile.TemporaryDirectory(prefix="issu-bench-export-") as tmp:
        for size in ("small", "big"):
            for method, name in (("issu", "snapshot.json"), ("issu", "snapshot.json.gz"),
                                 ("original", "snapshot.json")):
                label = f"{method} ({'gzip' if name.endswith('.gz') else 'json'})"
                result = _child(method, args, size, Path(tmp) / name)
                rows.append((size, label, result))
                rate = float(result["cells"]) / float(result["seconds"])  # type: ignore[arg-type]
                print(f"{size} {label}: {result['cells']:,} cells, {result['znodes']:,} znodes "
                      f"in {float(result['seconds']):.1f}s ({rate:,.0f} cells/s), peak RSS "  # type: ignore[arg-type]
                      f"{result['peak_rss_mb']} MB, {result['bytes']:,} bytes", flush=True)
    load_after = os.getloadavg()
    _write(args.output, command, machine, load_before, load_after, rows)
    print(f"wrote {args.output}")
    return 0


def _write(output: Path, command: str, machine: dict[str, str], before: tuple[float, ...],
           after: tuple[float, ...], rows: list[tuple[str, str, dict[str, object]]]) -> None:
    lines = [
        "# Benchmark: snapshot export (`issu db export`) against the original tool's approach",
        "",
        "Both methods export the same Contrail-shaped database (every Contrail keyspace, objects "
        "shaped as bench_presync seeds them) and a ZooKeeper tree to the original "
        "`db_json_exim.py` file format, each in a child process of its own whose peak RSS "
        "(the whole process tree) is polled. *issu* streams (paged reads written as they "
        "come); *original* follows db_json_exim.py's db_export: every keyspace read whole "
        "into memory, then one `json.dumps` (tests/snapshot_original.py). A small and a big "
        "database show how memory grows with size. Seconds cover the whole export, "
        "ZooKeeper included (the original walks it one request per node, so its time on "
        "the small database is mostly ZooKeeper).",
        "",
        f"- command: `{command}`",
        f"- date: {machine['date']}; commit: {machine['commit']}",
        f"- machine: {machine['cpu']}, {machine['cores']} cores, Linux {machine['kernel']}; "
        f"Cassandra and ZooKeeper on the same machine (loopback)",
        f"- load average (1/5/15 min) before: {before[0]:.2f} / {before[1]:.2f} / "
        f"{before[2]:.2f}; after: {after[0]:.2f} / {after[1]:.2f} / {after[2]:.2f}",
        "",
        "| database | method | cells | znodes | seconds | cells/s | peak RSS (MB) | "
        "client CPU s | file bytes | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for size, label, r in rows:
        rate = float(r["cells"]) / float(r["seconds"])  # type: ignore[arg-type]
        lines.append(f"| {size} | {label} | {r['cells']:,} | {r['znodes']:,} | "
                     f"{float(r['seconds']):.1f} | {rate:,.0f} | {r['peak_rss_mb']} | "  # type: ignore[arg-type]
                     f"{r['cpu_s']} | {r['bytes']:,} | {r['load']} |")
    by = {(size, label): r for size, label, r in rows}
    issu_small, issu_big = by[("small", "issu (json)")], by[("big", "issu (json)")]
    orig_small, orig_big = by[("small", "original (json)")], by[("big", "original (json)")]
    lines += [
        "",
        f"Peak RSS from the small to the big database: issu {issu_small['peak_rss_mb']} -> "
        f"{issu_big['peak_rss_mb']} MB, original {orig_small['peak_rss_mb']} -> "
        f"{orig_big['peak_rss_mb']} MB.",
        "",
    ]
    output.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
