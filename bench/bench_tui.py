"""How fast the operator console stays with many computes: time per refresh, per key, RSS.

Runs the real App headless (Textual's test driver) against a real journal in a temporary
directory, for 100, 1,000 and 5,000 computes, each size in its own process so RSS is per size.

    .venv/bin/python bench/bench_tui.py            # all sizes, markdown table on stdout
    .venv/bin/python bench/bench_tui.py --sizes 5000 --json

A refresh is split in its two halves: the worker thread reading the journal (off the UI
thread) and the UI thread applying it (diff + only the changed cells + repaint); the target
is the UI half under 50 ms at 5,000 computes, because that is what blocks keys.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHANGED_PER_REFRESH = 25   # computes whose state changes between two refreshes
REFRESHES = 15
KEY_PRESSES = 30


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _build(state_dir: Path, computes: int) -> object:
    from issu_tui.journal import Journal
    from tests.tui.tui_world import build_journal

    journal: Journal = build_journal(state_dir, computes=0, events=200)
    now = time.time()
    states = ["old"] * 6 + ["upgraded"] * 3 + ["failed"]
    rows = []
    for i in range(computes):
        state = states[i % len(states)]
        upgraded = state == "upgraded"
        rows.append((f"cmp-{i:05d}", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", state,
                     "5.0.0" if upgraded else "4.1.0", "new" if upgraded else "old",
                     "Functional", 1 + i // 50 if upgraded else None,
                     "upgrade" if upgraded else "", 150.0 + i % 90 if upgraded else None, now))
    # one transaction: setting up 5,000 computes one transition at a time is not the point
    with journal.transaction() as db:
        db.executemany("INSERT INTO computes (name, address, state, version, cluster, "
                       "agent_state, batch, last_action, gap_ms, updated_at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return journal


async def _measure(computes: int) -> dict[str, float]:
    from issu_tui.app import IssuApp
    from tests.tui.tui_world import config_for, make_backend

    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp)
        journal = _build(state_dir, computes)
        backend = make_backend(journal, config_for(state_dir))
        app = IssuApp(backend, refresh_interval=3600, analytics_interval=3600)
        result: dict[str, float] = {"computes": computes}
        async with app.run_test(size=(160, 50)) as pilot:
            start = time.perf_counter()
            while not app.refreshes:
                await pilot.pause(0.005)
            await pilot.pause()
            result["first_paint_s"] = time.perf_counter() - start
            names = [r.name for r in journal.computes()]
            rng = random.Random(7)
            read_ms, apply_ms, apply_cpu = [], [], []
            for n in range(REFRESHES):
                with journal.transaction() as db:
                    for name in rng.sample(names, CHANGED_PER_REFRESH):
                        db.execute("UPDATE computes SET state = ?, last_action = ? "
                                   "WHERE name = ?",
                                   ("queued" if n % 2 else "upgrading", f"bench {n}", name))
                t0 = time.perf_counter()
                snap = backend.snapshot(events_after=app.state.last_event_id)
                t1 = time.perf_counter()
                c1 = time.thread_time()  # the UI thread's CPU: immune to a loaded machine
                app._apply_snapshot(snap)
                await pilot.pause()  # the repaint belongs to the refresh
                c2 = time.thread_time()
                t2 = time.perf_counter()
                read_ms.append((t1 - t0) * 1000)
                apply_ms.append((t2 - t1) * 1000)
                apply_cpu.append((c2 - c1) * 1000)
            result["refresh_read_ms"] = statistics.median(read_ms)
            result["refresh_ui_ms"] = statistics.median(apply_ms)
            result["refresh_ui_p90_ms"] = sorted(apply_ms)[int(len(apply_ms) * 0.9) - 1]
            result["refresh_ui_cpu_ms"] = statistics.median(apply_cpu)
            for key, label in (("j", "key_move_ms"), ("space", "key_mark_ms")):
                times, cpu = [], []
                for _ in range(KEY_PRESSES):
                    t0, c0 = time.perf_counter(), time.thread_time()
                    await pilot.press(key)
                    times.append((time.perf_counter() - t0) * 1000)
                    cpu.append((time.thread_time() - c0) * 1000)
                result[label] = statistics.median(times)
                result[label.replace("_ms", "_cpu_ms")] = statistics.median(cpu)
            t0, c0 = time.perf_counter(), time.thread_time()
            await pilot.press("slash")
            app.screen.query_one("#compute-filter").value = "state:failed"  # type: ignore[attr-defined]
            await pilot.press("enter")
            result["filter_apply_ms"] = (time.perf_counter() - t0) * 1000
            result["filter_apply_cpu_ms"] = (time.thread_time() - c0) * 1000
            result["rss_mb"] = _rss_mb()
        result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        journal.close()  # type: ignore[attr-defined]
        return result


def _one(computes: int) -> dict[str, float]:
    os.environ.setdefault("TZ", "UTC")
    return asyncio.run(_measure(computes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_one(args.child)))
        return
    results = []
    for size in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--child", str(size)], check=True,
                             capture_output=True, text=True, cwd=ROOT).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print("CPU of the UI thread (wall clock in brackets: it includes waiting for the CPU)\n")
    print("| computes | first paint | refresh: journal read (worker) | refresh: UI "
          "| key j | key space | filter | RSS (peak) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {int(r['computes']):,} | ({r['first_paint_s'] * 1000:.0f} ms) "
              f"| ({r['refresh_read_ms']:.1f} ms) "
              f"| {r['refresh_ui_cpu_ms']:.1f} ms ({r['refresh_ui_ms']:.0f} ms) "
              f"| {r['key_move_cpu_ms']:.1f} ms ({r['key_move_ms']:.0f} ms) "
              f"| {r['key_mark_cpu_ms']:.1f} ms ({r['key_mark_ms']:.0f} ms) "
              f"| {r['filter_apply_cpu_ms']:.0f} ms ({r['filter_apply_ms']:.0f} ms) "
              f"| {r['rss_mb']:.0f} MB ({r['max_rss_mb']:.0f} MB) |")


if __name__ == "__main__":
    main()
