"""How fast the operator console stays with many computes: the grid now and before, side by side.

Runs the real App headless (Textual's test driver) against a real journal in a temporary
directory, for each size with the console's compute grid ("new": the virtualised Line API
view over an index, fed the journal's changes only) and with the grid before it ("before":
the keyed DataTable fed every compute at each refresh, bench/baseline_grid.py), each size and
grid in its own process so RSS is its own.

    .venv/bin/python bench/bench_tui.py                   # 100 .. 20,000 computes, markdown
    .venv/bin/python bench/bench_tui.py --sizes 5000 20000 --json
    .venv/bin/python bench/bench_tui.py --grids new       # without the old grid

Figures are the UI thread's CPU time (`time.thread_time()`: what blocks keys, and immune to
waiting for a CPU on a busy machine), medians; wall-clock time in brackets. A refresh is 25
computes changed in the journal, then one poll: the journal read (a worker thread in the
console; timed apart) and the UI half (apply, repaint).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHANGED_PER_REFRESH = 25   # computes whose state changes between two refreshes
REFRESHES = 15
KEY_PRESSES = 30
FILTERS = 5                # filter applications (each undone, untimed, before the next)
SIZE = (160, 50)
GRIDS = ("before", "new")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _build(state_dir: Path, computes: int) -> Any:
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
    # one transaction: setting up 20,000 computes one transition at a time is not the point
    with journal.transaction() as db:
        db.executemany("INSERT INTO computes (name, address, state, version, cluster, "
                       "agent_state, batch, last_action, gap_ms, updated_at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return journal


def _baseline_app(backend: Any) -> Any:
    """The console with the grid before the change: DataTable screens, every compute at every
    poll (the read of the whole fleet, as the console did), nothing kept beside the grid."""
    from textual import events
    from textual.app import ComposeResult
    from textual.containers import Horizontal
    from textual.widgets import Footer

    from bench.baseline_grid import ComputeGrid, ComputePanel
    from issu_tui.app import SCREEN_NAMES, IssuApp
    from screens.console import SCREEN_CLASSES, ComputesScreen, DashboardScreen
    from screens.state import ConsoleState
    from screens.widgets.events import EventPanel
    from screens.widgets.panes import AnalyticsSummary, PhasePane, SyncPane

    class BeforeState(ConsoleState):
        def add_computes(self, rows: Any, seq: int) -> None:
            pass  # compute_seq stays 0: every poll reads every compute, as before

    class BeforeDashboard(DashboardScreen):
        def compose(self) -> ComposeResult:
            yield from self.compose_tabs()
            with Horizontal(id="top"):
                yield PhasePane(id="phase-pane", classes="pane")
                yield SyncPane(id="sync-pane", classes="pane")
            yield ComputePanel(self.state.marks, id="compute-pane")
            with Horizontal(id="bottom"):
                yield EventPanel(id="event-pane")
                yield AnalyticsSummary(id="analytics-pane", classes="pane")
            yield Footer()

        def on_mount(self, event: events.Mount) -> None:
            event.prevent_default()  # not the new screen's own (it looks for the new grid)
            for selector, title in (("#phase-pane", "1 Phase"), ("#sync-pane", "2 Sync"),
                                    ("#analytics-pane", "3 Analytics"),
                                    ("#compute-pane", "4 Computes"), ("#event-pane", "5 Events")):
                self.query_one(selector).border_title = title
            self.query_one(ComputeGrid).focus()

        def update_snapshot(self, new_events: Any) -> None:
            snap = self.state.snapshot
            assert snap is not None
            self.query_one(PhasePane).show(snap, wide=self._wide())
            self.query_one(SyncPane).show(snap)
            panel = self.query_one(ComputePanel)
            panel.set_rows(snap.computes)
            panel.grid.refresh_marks()
            self.query_one(EventPanel).set_events(self.state.events, new_events)

    class BeforeComputes(ComputesScreen):
        def compose(self) -> ComposeResult:
            yield from self.compose_tabs()
            yield ComputePanel(self.state.marks, id="compute-pane")
            yield Footer()

        def on_mount(self, event: events.Mount) -> None:
            event.prevent_default()
            self.query_one("#compute-pane").border_title = "Computes"
            self.query_one(ComputeGrid).focus()

        def update_snapshot(self, new_events: Any) -> None:
            snap = self.state.snapshot
            assert snap is not None
            panel = self.query_one(ComputePanel)
            panel.set_rows(snap.computes)
            panel.grid.refresh_marks()

    classes = {**SCREEN_CLASSES, "dashboard": BeforeDashboard, "computes": BeforeComputes}

    class BeforeApp(IssuApp):
        def on_mount(self, event: events.Mount) -> None:
            event.prevent_default()  # IssuApp's would install the new screens
            for name in SCREEN_NAMES:
                self.install_screen(classes[name](self.state), name)
            self.push_screen("dashboard")
            self._poll()

    app = BeforeApp(backend, refresh_interval=3600, analytics_interval=3600)
    app.state = BeforeState(status=app.state.status)
    return app


async def _measure(computes: int, grid: str) -> dict[str, Any]:
    from issu_tui.app import IssuApp
    from tests.tui.tui_world import config_for, make_backend

    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp)
        journal = _build(state_dir, computes)
        backend = make_backend(journal, config_for(state_dir))
        if grid == "new":
            app = IssuApp(backend, refresh_interval=3600, analytics_interval=3600)
        else:
            app = _baseline_app(backend)
        result: dict[str, Any] = {"computes": computes, "grid": grid}
        # from the start of the App (the first poll may be applied before run_test returns)
        t0, c0 = time.perf_counter(), time.thread_time()
        async with app.run_test(size=SIZE) as pilot:
            while not app.refreshes:
                await pilot.pause(0.005)
            for _ in range(3):  # and what a widget leaves for idle time (DataTable's sizes)
                await pilot.pause()
            result["first_paint_cpu_ms"] = (time.thread_time() - c0) * 1000
            result["first_paint_ms"] = (time.perf_counter() - t0) * 1000
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
                snap = backend.snapshot(events_after=app.state.last_event_id,
                                        computes_since=app.state.compute_seq)
                t1 = time.perf_counter()
                c1 = time.thread_time()
                app._apply_snapshot(snap)
                await pilot.pause()  # the repaint belongs to the refresh
                c2 = time.thread_time()
                t2 = time.perf_counter()
                read_ms.append((t1 - t0) * 1000)
                apply_ms.append((t2 - t1) * 1000)
                apply_cpu.append((c2 - c1) * 1000)
            result["refresh_read_ms"] = statistics.median(read_ms)
            result["refresh_ui_ms"] = statistics.median(apply_ms)
            result["refresh_ui_cpu_ms"] = statistics.median(apply_cpu)
            for key, label in (("j", "key_move"), ("space", "key_mark")):
                times, cpu = [], []
                for _ in range(KEY_PRESSES):
                    t0, c0 = time.perf_counter(), time.thread_time()
                    await pilot.press(key)
                    times.append((time.perf_counter() - t0) * 1000)
                    cpu.append((time.thread_time() - c0) * 1000)
                result[f"{label}_ms"] = statistics.median(times)
                result[f"{label}_cpu_ms"] = statistics.median(cpu)
            filter_box = app.screen.query_one("#compute-filter")
            times, cpu = [], []
            for _ in range(FILTERS):
                t0, c0 = time.perf_counter(), time.thread_time()
                await pilot.press("slash")
                filter_box.value = "state:failed"  # type: ignore[attr-defined]
                await pilot.press("enter")
                times.append((time.perf_counter() - t0) * 1000)
                cpu.append((time.thread_time() - c0) * 1000)
                await pilot.press("slash", "escape")  # every compute again (not timed)
            result["filter_ms"] = statistics.median(times)
            result["filter_cpu_ms"] = statistics.median(cpu)
            result["rss_mb"] = _rss_mb()
        result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        journal.close()
        return result


def _one(computes: int, grid: str) -> dict[str, Any]:
    os.environ.setdefault("TZ", "UTC")
    return asyncio.run(_measure(computes, grid))


def _machine() -> dict[str, str]:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "?")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                            capture_output=True).stdout.strip()
    from bench.machine import tree_dirty

    dirty = tree_dirty()
    return {"cpu": model, "cores": str(os.cpu_count()), "kernel": platform.release(),
            "python": platform.python_version(),
            "commit": commit + (" (with uncommitted changes)" if dirty else "")}


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _table(results: Sequence[dict[str, Any]]) -> list[str]:
    lines = ["| computes | grid | refresh of 25 changes: UI | journal read (worker) "
             "| key `j` | key `space` | filter | first paint | RSS (peak) |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(
            f"| {int(r['computes']):,} | {r['grid']} "
            f"| {r['refresh_ui_cpu_ms']:.1f} ms ({r['refresh_ui_ms']:.0f}) "
            f"| ({r['refresh_read_ms']:.1f} ms) "
            f"| {r['key_move_cpu_ms']:.1f} ms ({r['key_move_ms']:.0f}) "
            f"| {r['key_mark_cpu_ms']:.1f} ms ({r['key_mark_ms']:.0f}) "
            f"| {r['filter_cpu_ms']:.0f} ms ({r['filter_ms']:.0f}) "
            f"| {r['first_paint_cpu_ms']:.0f} ms ({r['first_paint_ms']:.0f}) "
            f"| {r['rss_mb']:.0f} MB ({r['max_rss_mb']:.0f}) |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 5000, 20000])
    parser.add_argument("--grids", nargs="+", choices=GRIDS, default=list(GRIDS))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--write", type=Path, metavar="MD", nargs="?",
                        const=ROOT / "docs" / "benchmarks-tui.md",
                        help="put the results between the tui markers of this page (default "
                             "docs/benchmarks-tui.md)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_one(int(args.child[0]), args.child[1])))
        return
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = _load()
    machine = _machine()  # the commit measured: the children import the tree as it is now
    results = []
    for size in args.sizes:
        for grid in args.grids:
            out = subprocess.run([sys.executable, __file__, "--child", str(size), grid],
                                 check=True, capture_output=True, text=True, cwd=ROOT).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
    machine = {**machine, "load_before": load_before, "load_after": _load(),
               "date": started, "command": " ".join(["bench/bench_tui.py", *sys.argv[1:]])}
    if args.json:
        print(json.dumps({"machine": machine, "results": results}, indent=2))
        return
    lines = [f"{machine['date']}, commit {machine['commit']}: `{machine['command']}`  ",
             f"{machine['cpu']}, {machine['cores']} cores, Linux {machine['kernel']}, "
             f"Python {machine['python']}; load average (1, 5, 15 min) before "
             f"{machine['load_before']}, after {machine['load_after']}", "",
             "UI-thread CPU, median (wall clock in brackets, ms)", "", *_table(results)]
    print("\n".join(lines))
    if args.write:
        _write_page(args.write, lines)


def _write_page(path: Path, lines: list[str]) -> None:
    from bench.page import write_block

    write_block(path, "tui", ["## Latest", "", *lines], new_page="# Operator console\n")


if __name__ == "__main__":
    main()
