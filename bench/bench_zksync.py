"""zk-sync of a Contrail-shaped ZooKeeper tree against `zk-shell` mirror/cp, side by side.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python -m bench.bench_zksync --net 33 --nodes 100000

Uses the real old/new ZooKeeper servers of the launcher on 127.<net>.0.21/.22 (started when
needed). Seeds `/<prefix>/{fq-name-to-uuid,id,api-server}` on old, then times:
- issu: `ZkSyncer.run()` = copy + verification of every node's content hash (both sides
  re-read), first into an empty new root, then again on the synced tree (idempotent resync);
- zk-shell, the peer: `mirror` of each subtree old -> new (sync, then async mode), plus a
  verification with zk-shell itself: `cp` of both sides to JSON files, compared here.
  zk-shell walks the tree one synchronous round trip after another (per znode: get and
  get_acls on old, exists and create on new; `cp` to JSON: get and get_acls per znode and
  side), so its time grows with the load of the box: 11 min for 100,000 znodes at load
  25-48, more than 20 min at load 20-40 (2026-12-05, killed). `--zkshell-budget S` bounds
  each of its rounds: a mirror still running after S seconds is stopped, the znodes it
  created on new are counted and its rate (znodes/s) is what is compared; its verification
  is then not run (a partial copy cannot be verified).
Prints a markdown table and a profile of the issu run; `--write` puts the table on
docs/benchmarks.md between the zksync markers. Both happen before the trees are dropped
(batched deletes, timed on the `cleanup:` line).
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

from backends.zookeeper.sync import ZkSyncer, _batches, delete_tree
from backends.zookeeper.tree import DEFAULT_WINDOW, join, read_subtree
from bench.machine import Machine, bench_services
from demo.services import Endpoints, Launcher

SUBTREES = ("fq-name-to-uuid", "id", "api-server")
ROOT = Path(__file__).resolve().parents[1]


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


def drop(zk: KazooClient, path: str) -> int:
    """Delete the tree at `path` (batched: seconds, not minutes, for 100,000 znodes)."""
    return delete_tree(zk, path)


def run_zkshell(host: str, commands: list[str], budget: float) -> tuple[float, str | None]:
    """(seconds, stdout), or (budget, None) when zk-shell was still running after `budget`
    seconds (then stopped: its pid, started here)."""
    exe = shutil.which("zk-shell") or str(Path(sys.executable).parent / "zk-shell")
    started = time.monotonic()
    proc = subprocess.Popen([exe, host, "--run-from-stdin"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate("\n".join(commands) + "\n", timeout=max(1.0, budget))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return budget, None
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"zk-shell failed: {err[-2000:]}")
    return elapsed, out


def count_nodes(zk: KazooClient, root: str) -> int:
    """The znodes below `root`'s subtrees (their roots included), read pipelined."""
    return sum(len(read_subtree(zk, join(root, sub), DEFAULT_WINDOW) or {}) for sub in SUBTREES)


def zkshell_round(old_host: str, new_host: str, new: KazooClient, src: str, dst: str,
                  asynchronous: bool, workdir: Path, budget: float
                  ) -> dict[str, float | bool | int]:
    flag = "true" if asynchronous else "false"
    copy_s, out = run_zkshell(old_host, [
        f"mirror {src}/{sub} zk://{new_host}{dst}/{sub} {flag} false true" for sub in SUBTREES
    ], budget)
    copied = count_nodes(new, dst)
    result: dict[str, float | bool | int] = {"copy_s": copy_s, "copied": copied,
                                             "complete": out is not None}
    if out is None:
        return result
    # Verification with zk-shell: dump both sides to JSON, compare content per path.
    dumps = {}
    verify_s = 0.0
    for side, host, root in (("old", old_host, src), ("new", new_host, dst)):
        for sub in SUBTREES:
            target = workdir / f"{side}-{sub}.json"
            target.unlink(missing_ok=True)
            url = "json://" + str(target).replace("/", "!") + "/"
            elapsed, dumped = run_zkshell(host, [f"cp {root}/{sub} {url} true true"],
                                          budget - verify_s)
            verify_s += elapsed
            if dumped is None:
                result["verify_complete"] = False
                result["verify_s"] = verify_s
                return result
            started = time.monotonic()
            data = json.loads(target.read_text())
            dumps[(side, sub)] = {p: v["content"] for p, v in data.items()}
            verify_s += time.monotonic() - started
    result.update(verify_s=verify_s, total_s=copy_s + verify_s, verify_complete=True,
                  equal=all(dumps[("old", s)] == dumps[("new", s)] for s in SUBTREES))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net", type=int, default=int(os.environ.get("ISSU_TEST_NET", "33")))
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--skip-zkshell", action="store_true")
    parser.add_argument("--zkshell-modes", default="async",
                        help="comma list of sync,async (sync mode is the slowest: ~15 min "
                             "for 100,000 znodes here)")
    parser.add_argument("--zkshell-budget", type=float, default=600.0, metavar="S",
                        help="seconds each zk-shell step (the mirror, the verification) may "
                             "run; a mirror stopped there is compared by its rate")
    parser.add_argument("--write", type=Path, nargs="?", const=ROOT / "docs" / "benchmarks.md",
                        metavar="MD", help="put the results on the page (zksync markers)")
    parser.add_argument("--keep", action="store_true",
                        help="leave the ZooKeeper servers running at the end (default: stop "
                             "those this run started)")
    args = parser.parse_args()

    machine = Machine.now()
    print(f"machine: {machine.line()}", flush=True)
    with bench_services(Launcher(net=args.net, profile="test"), ["zk-old", "zk-new"],
                        keep=args.keep) as endpoints:
        return measure(args, endpoints, machine)


def write_page(page: Path, machine: Machine, lines: list[str]) -> None:
    from bench.page import measured, write_block

    write_block(page, "zksync", [*measured(machine.line(), "bench.bench_zksync"), *lines])


def measure(args: argparse.Namespace, endpoints: Endpoints, machine: Machine) -> int:
    """Seeds, times both tools, prints (and with --write, writes) the results, then drops the
    trees: the figures are out before the cleanup, which a run cut short would not reach."""
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
        results["issu_load"] = os.getloadavg()[0]
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
                        load = os.getloadavg()[0]
                        results[f"zkshell_{mode}"] = zkshell_round(
                            old_host, new_host, new, src, peer, mode == "async", Path(tmp),
                            args.zkshell_budget)
                        results[f"zkshell_{mode}"]["load"] = load  # type: ignore[index]
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(8)
        results["profile_top"] = out.getvalue()
        lines = table(args, results)
        print("\n".join(lines))
        print("\nissu profile (tottime):\n" + str(results["profile_top"]))
        print(f"machine: {machine.finish().line()}", flush=True)
        if args.write:
            write_page(args.write, machine, lines)
        return 0 if results["issu"]["ok"] else 1  # type: ignore[index]
    finally:
        started = time.monotonic()
        dropped = sum(drop(zk, path) for zk, path in ((old, src), (new, ours), (new, peer)))
        print(f"cleanup: {dropped:,} znodes dropped in {time.monotonic() - started:.1f} s",
              flush=True)
        old.stop()
        new.stop()


def table(args: argparse.Namespace, results: dict[str, object]) -> list[str]:
    """The results as the page's markdown lines."""
    issu = results["issu"]
    nodes = int(results["nodes"])  # type: ignore[call-overload]
    copy_rate = nodes / issu["copy_s"]  # type: ignore[index]
    lines = [f"znodes: {nodes:,} (seeded in {results['seed_s']:.1f} s)", "",
             "| tool | copy s | copy znodes/s | verify s | total s | verified | load (1 min) at "
             "start |", "|---|---:|---:|---:|---:|---|---:|",
             f"| issu zk-sync (copy + every node's content hash, both sides re-read) | "
             f"{issu['copy_s']:.2f} | {copy_rate:,.0f} | {issu['verify_s']:.2f} | "  # type: ignore[index]
             f"**{issu['total_s']:.2f}** | {'yes, 0 differences' if issu['ok'] else 'NO'} | "  # type: ignore[index]
             f"{results['issu_load']:.1f} |",
             f"| issu zk-sync again on the synced tree (idempotent resync + verify) | - | - | - | "
             f"{results['issu_resync']['total_s']:.2f} | "  # type: ignore[index]
             f"{'yes' if results['issu_resync']['ok'] else 'NO'} | - |"]  # type: ignore[index]
    ratios = []
    for key, label in (("zkshell_sync", "zk-shell `mirror` (sync)"),
                       ("zkshell_async", "zk-shell `mirror ... async`")):
        if key not in results:
            continue
        r: dict[str, float] = results[key]  # type: ignore[assignment]
        rate = r["copied"] / r["copy_s"]
        if not r["complete"]:
            lines.append(f"| {label}: stopped after the budget of {r['copy_s']:.0f} s, "
                         f"{r['copied']:,.0f} of {nodes:,} znodes copied (all would take about "
                         f"{nodes / rate:,.0f} s) | > {r['copy_s']:.0f} | {rate:,.0f} | not run "
                         f"| - | - | {r['load']:.1f} |")
        elif not r.get("verify_complete"):
            lines.append(f"| {label} + `cp` to JSON verify (stopped after the budget of "
                         f"{args.zkshell_budget:.0f} s) | {r['copy_s']:.2f} | {rate:,.0f} | "
                         f"> {r['verify_s']:.0f} | > {r['copy_s'] + r['verify_s']:.0f} | - | "
                         f"{r['load']:.1f} |")
        else:
            lines.append(f"| {label} + `cp` to JSON verify | {r['copy_s']:.2f} | {rate:,.0f} | "
                         f"{r['verify_s']:.2f} | {r['total_s']:.2f} | "
                         f"{'yes (equal)' if r['equal'] else 'NO'} | {r['load']:.1f} |")
            ratios.append(f"{label} + verify / issu, total: "
                          f"{r['total_s'] / issu['total_s']:.1f}x")  # type: ignore[index]
        ratios.append(f"issu / {label}, copy rate: {copy_rate / rate:.1f}x")
    return [*lines, "", *ratios]


if __name__ == "__main__":
    sys.exit(main())
