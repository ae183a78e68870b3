"""Time to the first screen of `make demo` and to "world ready".

    flock /tmp/issu-heavy.lock .venv/bin/python -m bench.bench_startup --net 46 --write

`make demo` runs `issu demo up --console`: the world-coming-up screen (demo/startup.py)
opens at once and the console follows when the world is up. Measured in a fresh
interpreter (as `make demo` starts one), under Textual's Pilot, from the process's start:

- first frame: the screen's first frame painted;
- world ready: `World.up` returned (services, controllers, computes up, config written);
  before this screen, that was when `make demo` first showed anything.

The world is taken down first (`--cold`, the default: every piece starts from nothing) and
at the end, unless `--keep`. `--fake-up S`: no world, `up` only reports steps for S seconds
(the first frame alone, no services needed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(net: int, fake_up: float) -> dict[str, object]:
    """In the measured interpreter: what `issu demo up --console` does before the console."""
    import psutil

    born = psutil.Process().create_time()  # wall clock of the process's start
    # what `issu demo up --console` loads before its first screen: the CLI and the plugin
    import demo.cli  # noqa: F401
    import issu_tui.cli  # noqa: F401
    from demo.startup import WorldStartup
    from demo.world import World, WorldOptions

    def fake(world: World, progress) -> None:  # type: ignore[no-untyped-def]
        for i in range(int(fake_up * 2)):
            progress(f"step {i}")
            time.sleep(0.5)

    world = World(WorldOptions(net=net))
    app = WorldStartup(world, up=fake if fake_up else None)
    # the process's CPU seconds (interpreter start included) when the first frame is painted:
    # what the product spends, whatever the load; the wall clock adds the wait for a core
    cpu: list[float] = []
    first_paint = app._first_paint

    def counted_first_paint() -> None:
        if not cpu:
            cpu.append(time.process_time())
        first_paint()

    app._first_paint = counted_first_paint  # type: ignore[method-assign]

    def since_birth(mono: float | None) -> float | None:
        return None if mono is None else time.time() - (time.monotonic() - mono) - born

    async def drive() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            while app.ready_at is None and app.error is None:
                await pilot.pause(0.1)

    asyncio.run(drive())
    return {"first_frame_s": since_birth(app.first_frame), "ready_s": since_birth(app.ready_at),
            "first_frame_cpu_s": cpu[0] if cpu else None, "error": app.error}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net", type=int, default=46)
    parser.add_argument("--runs", type=int, default=1, help="cold starts in a row")
    parser.add_argument("--fake-up", type=float, default=0.0, metavar="S")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--warm", action="store_true",
                        help="do not take the world down first (a world left up by --keep: "
                             "World.up finds its pieces running)")
    parser.add_argument("--write", type=Path, nargs="?", const=ROOT / "docs" / "benchmarks.md",
                        metavar="MD")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.net, args.fake_up)))
        return 0

    from bench.machine import Machine

    machine = Machine.now()
    print(f"machine: {machine.line()}", flush=True)
    # this tree's issu, run by this interpreter (cwd ROOT): a venv's `issu` script runs the
    # code installed in it, whose demo state is another tree's (a checkout run with
    # BENCH_PY left its world up, 2026-12-05)
    issu = [sys.executable, "-c", "from issu_tui.cli import main; main()", "demo"]
    rows = []
    try:
        for run in range(args.runs):
            if not args.fake_up and not args.warm:
                subprocess.run([*issu, "down", "--net", str(args.net)], check=False,
                               capture_output=True, cwd=ROOT)
            load = os.getloadavg()[0]
            out = subprocess.run(
                [sys.executable, "-m", "bench.bench_startup", "--child", "--net", str(args.net),
                 "--fake-up", str(args.fake_up)], cwd=ROOT, capture_output=True, text=True,
                timeout=900)
            if out.returncode != 0:
                raise RuntimeError(f"run {run + 1} failed: {out.stderr[-2000:]}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            result["load"] = load
            rows.append(result)
            print(f"run {run + 1}: first frame {result['first_frame_s']:.2f} s "
                  f"({result['first_frame_cpu_s']:.2f} s CPU), world ready "
                  f"{result['ready_s'] or float('nan'):.1f} s, load {load:.1f}"
                  + (f", error {result['error']}" if result["error"] else ""), flush=True)
    finally:
        if not args.keep and not args.fake_up:
            subprocess.run([*issu, "down", "--net", str(args.net)], check=False,
                           capture_output=True, cwd=ROOT)
    machine.finish()
    lines = ["| run | first frame s | its CPU s (process, from its start) | world ready s | "
             "load (1 min) at start |", "|---:|---:|---:|---:|---:|"]
    for i, r in enumerate(rows, 1):
        ready = "failed: " + str(r["error"]) if r["error"] else f"{r['ready_s']:.1f}"
        lines.append(f"| {i} | {r['first_frame_s']:.2f} | {r['first_frame_cpu_s']:.2f} | "
                     f"{ready} | {r['load']:.1f} |")
    print("\n".join(lines))
    if args.write:
        from bench.page import measured, write_block

        write_block(args.write, "startup",
                    [*measured(machine.line(), "bench.bench_startup"), *lines])
    return 0


if __name__ == "__main__":
    sys.exit(main())
