"""`make chaos ARGS='--trials N --seed S --minutes M'`: N whole upgrades under load with random
faults, each checked by bench/chaos/checker.py; a report in docs/ (markdown and JSON).

    .venv/bin/python -m bench.chaos --trials 20 --seed 11 --minutes 4 --computes 6 --rate 50

Trial i uses seed S+i (its fault schedule and its load); a failed trial is reproduced alone
with `--trials 1 --seed <its seed>`. The services run on `--net` (127.N.0.x) for the whole
run and are stopped at the end (`--keep` leaves them).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from bench.chaos.faults import FAULTS
from bench.chaos.report import write_report
from bench.chaos.trial import Trial, TrialOptions
from bench.machine import Machine
from demo.services import Endpoints
from demo.services.launcher import Launcher

ROOT = Path(__file__).resolve().parents[2]


def run_trials(launcher: Launcher, endpoints: Endpoints, args: argparse.Namespace,
               kinds: tuple[str, ...], command: str) -> list[dict[str, Any]]:
    """The trials one after the other on these services; the report is rewritten after
    each trial (a run cut short still leaves one)."""
    machine = Machine.now()
    results: list[dict[str, Any]] = []
    began = time.time()
    for i in range(args.trials):
        opts = TrialOptions(number=i + 1, seed=args.seed + i, net=args.net,
                            computes=args.computes, rate=args.rate, minutes=args.minutes,
                            install_s=args.install_seconds,
                            out_dir=launcher.run_dir / "chaos-kept", kinds=kinds,
                            after_run_sync=args.after_run_sync)
        print(f"trial {i + 1}/{args.trials} seed {opts.seed} ...", flush=True)
        result = Trial(opts, launcher).run(endpoints)
        results.append(result)
        print(f"trial {i + 1}: {'ok' if result.get('ok') else 'FAILED'} "
              f"({result.get('upgrade_s', '?')} s, "
              f"{sum(f['outcome'] == 'injected' for f in result['faults'])} faults)",
              flush=True)
        write_report(args.report, command, machine, args, results, began)
    return results


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--minutes", type=float, default=4.0,
                    help="load and faults per trial (run-sync is held about half of it)")
    ap.add_argument("--computes", type=int, default=6)
    ap.add_argument("--rate", type=float, default=50.0, help="changes per second on old")
    ap.add_argument("--install-seconds", type=float, default=2.0)
    ap.add_argument("--net", type=int, default=43)
    ap.add_argument("--faults", default="",
                    help="comma-separated kinds (default: all): "
                         + ", ".join(f.kind for f in FAULTS))
    ap.add_argument("--after-run-sync", action="store_true",
                    help="faults' moments counted from run-sync's start (each lands on "
                         "run-sync, the computes or finalize); run-sync is held until the "
                         "last one")
    ap.add_argument("--report", type=Path, default=ROOT / "docs" / "chaos-report",
                    help="report path without extension (.md and .json are written)")
    ap.add_argument("--keep", action="store_true", help="leave the services running")
    return ap


def fault_kinds(ap: argparse.ArgumentParser, text: str) -> tuple[str, ...]:
    known = tuple(f.kind for f in FAULTS)
    kinds = tuple(k for k in text.split(",") if k) or known
    unknown = [k for k in kinds if k not in known]
    if unknown:
        ap.error(f"--faults: unknown kind(s) {', '.join(unknown)}")
    return kinds


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    kinds = fault_kinds(ap, args.faults)
    command = "make chaos ARGS='" + " ".join(sys.argv[1:] if argv is None else argv) + "'"
    launcher = Launcher(args.net, "test", ROOT / ".run" / f"chaos-{args.net}",
                        ssh_hosts=args.computes)
    try:
        results = run_trials(launcher, launcher.up(), args, kinds, command)
    finally:
        if not args.keep:
            launcher.down()
    failed = [r for r in results if not r.get("ok")]
    print(f"{len(results) - len(failed)}/{len(results)} trials passed; report "
          f"{args.report}.md", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
