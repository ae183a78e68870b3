"""zk-sync of a Contrail-shaped ZooKeeper tree against `zk-shell` mirror/cp, side by side.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python -m bench.bench_zksync --net 33 --nodes 100000

Uses the real old/new ZooKeeper servers of the launcher on 127.<net>.0.21/.22 (started when
needed). Seeds `/<prefix>/{fq-name-to-uuid,id,api-server}` on old, then times:
- issu: `ZkSyncer.run()` = copy + verification of every node's content hash (both sides
  re-read), first into an empty new root, then again on the synced tree (idempotent resync);
- zk-shell, the peer: `mirror` of each subtree old -> new (sync, then async mode), plus a
  verification with zk-shell itself: `cp` of both sides to JSON files, compared here.
Prints a markdown table and a profile of the issu run.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kazoo.client import KazooClient

from backends.zookeeper.sync import ZkSyncer, _batches
from bench.machine import Machine, bench_services
from demo.services import Endpoints, Launcher

SUBTREES = ("fq-name-to-uuid", "id", "api-server")


def seed(zk: KazooClient, root: str, nodes: int) -> int:
    """Contrail-shaped: 80% fq-name index entries, 15% VN id allocations, the rest subnets
    with address reservations below them."""
    for sub in (*SUBTREES, "id/virtual-networks", "api-server/subnets"):
        zk.ensure_path(f"{root}/{sub}")
    fq = int(nodes * 0.80)
    ids = int(nodes * 0.15)
    nets = max(1, (nodes - fq - ids) // 10)
    items = [(f"fq-name-to-uuid/virtual_machine_interface:default-domain:proj-{i % 50}:"
              f"vmi-{i}", f"{i:08x}-0000-4000-8000-{i:012x}".encode()) for i in range(fq)]
    items += [(f"id/virtual-networks/{i:010d}",
               f"default-domain:proj-{i % 50}:vn-{i}".encode()) for i in range(ids)]
    for n in range(nets):
        sub = f"api-server/subnets/default-domain:proj:vn-{n}:10.{n % 250}.{n // 250}.0_24"
        items.append((sub, b""))
        items += [(f"{sub}/10.{n % 250}.{n // 250}.{h}", b"\x00reserved") for h in range(2, 11)]
    for batch in _batches(items):
        txn = zk.transaction()
        for rel, data in batch:
            txn.create(f"{root}/{rel}", data)
        txn.commit()
    return len(items) + len(SUBTREES) + 2


def drop(zk: KazooClient, path: str) -> None:
    if zk.exists(path):
        zk.delete(path, recursive=True)


def run_zkshell(host: str, commands: list[str]) -> tuple[float, str]:
    exe = shutil.which("zk-shell") or str(Path(sys.executable).parent / "zk-shell")
    started = time.monotonic()
    proc = subprocess.run([exe, host, "--run-from-stdin"], input="\n".join(commands) + "\n",
                          capture_output=True, text=True, timeout=3600)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"zk-shell failed: {proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def zkshell_round(old_host: str, new_host: str, src: str, dst: str, asynchronous: bool,
                  workdir: Path) -> dict[str, float | bool]:
    flag = "true" if asynchronous else "false"
    copy_s, _ = run_zkshell(old_host, [
        f"mirror {src}/{sub} zk://{new_host}{dst}/{sub} {flag} false true" for sub in SUBTREES
    ])
    # Verification with zk-shell: dump both sides to JSON, compare content per path.
    dumps = {}
    verify_s = 0.0
    for side, host, root in (("old", old_host, src), ("new", new_host, dst)):
        for sub in SUBTREES:
            target = workdir / f"{side}-{sub}.json"
            target.unlink(missing_ok=True)
            url = "json://" + str(target).replace("/", "!") + "/"
            elapsed, _ = run_zkshell(host, [f"cp {root}/{sub} {url} true true"])
            verify_s += elapsed
            started = time.monotonic()
            data = json.loads(target.read_text())
            dumps[(side, sub)] = {p: v["content"] for p, v in data.items()}
            verify_s += time.monotonic() - started
    equal = all(dumps[("old", s)] == dumps[("new", s)] for s in SUBTREES)
    return {"copy_s": copy_s, "verify_s": verify_s, "total_s": copy_s + verify_s,
            "equal": equal}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net", type=int, default=int(os.environ.get("ISSU_TEST_NET", "33")))
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--skip-zkshell", action="store_true")
    parser.add_argument("--zkshell-modes", default="async",
                        help="comma list of sync,async (sync mode is the slowest: ~15 min "
                             "for 100,000 znodes here)")
    parser.add_argument("--keep", action="store_true",
                        help="leave the ZooKeeper servers running at the end (default: stop "
                             "those this run started)")
    args = parser.parse_args()

    machine = Machine.now()
    print(f"machine: {machine.line()}", flush=True)
    with bench_services(Launcher(net=args.net, profile="test"), ["zk-old", "zk-new"],
                        keep=args.keep) as endpoints:
        code = measure(args, endpoints)
    print(f"machine: {machine.finish().line()}")
    return code


def measure(args: argparse.Namespace, endpoints: Endpoints) -> int:
    old_host, new_host = endpoints.zk_old.hosts, endpoints.zk_new.hosts
    old = KazooClient(hosts=old_host)
    new = KazooClient(hosts=new_host)
    old.start(timeout=30)
    new.start(timeout=30)
    src, ours, peer = "/bench_v1", "/bench_issu", "/bench_zkshell"
    for zk, path in ((old, src), (new, ours), (new, peer)):
        drop(zk, path)
    results: dict[str, object] = {"nodes": 0}
    try:
        started = time.monotonic()
        results["nodes"] = seed(old, src, args.nodes)
        results["seed_s"] = time.monotonic() - started

        profile = cProfile.Profile()
        syncer = ZkSyncer(old, new, src.strip("/"), ours.strip("/"), SUBTREES)
        started = time.monotonic()
        profile.enable()
        report = syncer.run()
        profile.disable()
        results["issu"] = {"copy_s": report.copy_seconds, "verify_s": report.verify_seconds,
                           "total_s": time.monotonic() - started, "ok": report.ok,
                           "verified_nodes": report.verified_nodes}
        started = time.monotonic()
        again = syncer.run()
        results["issu_resync"] = {"total_s": time.monotonic() - started, "ok": again.ok,
                                  "changed": sum(again.totals()[k] for k in
                                                 ("created", "updated", "deleted"))}
        if not args.skip_zkshell:
            modes = args.zkshell_modes.split(",")
            with tempfile.TemporaryDirectory() as tmp:
                for mode in ("sync", "async"):
                    if mode in modes:
                        drop(new, peer)
                        results[f"zkshell_{mode}"] = zkshell_round(
                            old_host, new_host, src, peer, mode == "async", Path(tmp))
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(8)
        results["profile_top"] = out.getvalue()
    finally:
        for zk, path in ((old, src), (new, ours), (new, peer)):
            drop(zk, path)
        old.stop()
        new.stop()

    issu = results["issu"]
    print(f"znodes: {results['nodes']} (seeded in {results['seed_s']:.1f}s)")
    print("| tool | copy s | verify s | total s | verified |")
    print("|---|---|---|---|---|")
    print(f"| issu zk-sync | {issu['copy_s']:.2f} | {issu['verify_s']:.2f} | "  # type: ignore[index]
          f"{issu['total_s']:.2f} | {issu['ok']} |")  # type: ignore[index]
    print(f"| issu zk-sync, resync of a synced tree | - | - | "
          f"{results['issu_resync']['total_s']:.2f} | "  # type: ignore[index]
          f"{results['issu_resync']['ok']} |")  # type: ignore[index]
    for key, label in (("zkshell_sync", "zk-shell mirror + cp-to-JSON verify"),
                       ("zkshell_async", "zk-shell mirror async + cp-to-JSON verify")):
        if key in results:
            r = results[key]
            print(f"| {label} | {r['copy_s']:.2f} | {r['verify_s']:.2f} | "  # type: ignore[index]
                  f"{r['total_s']:.2f} | {r['equal']} |")  # type: ignore[index]
            print(f"ratio {label} / issu: "
                  f"{r['total_s'] / issu['total_s']:.1f}x")  # type: ignore[index,operator]
    print("\nissu profile (tottime):\n" + str(results["profile_top"]))
    return 0 if issu["ok"] else 1  # type: ignore[index]


if __name__ == "__main__":
    sys.exit(main())
