"""`python -m demo.controller.hostctl --dir DIR VERB [ARG] SERVICE`: the demo controller host's
service control, what the `demo` controller profile runs over SSH.

DIR is one simulated controller's directory (spec.json, pid, controller.log). Today the demo
runs a controller as one process (api-server, control, analytics together), so its only
service is `controller`. Verbs: status (prints running / stopped, and `disabled`), stop,
start, disable / enable (a disabled controller is not started again by `issu demo up`: the
demo's reboot), signal NAME.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from demo.compute.fleet import child_env
from demo.services.plan import REPO_ROOT
from demo.services.procs import Command, read_pidfile, spawn_group, terminate_group

SERVICES = ("controller",)
DISABLED = "disabled"


def _running(directory: Path) -> bool:
    group = read_pidfile(directory / "pid")
    return group is not None and group.all_alive()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.controller.hostctl")
    parser.add_argument("--dir", required=True, type=Path, help="the controller's directory")
    parser.add_argument("verb", choices=("status", "stop", "start", "disable", "enable",
                                         "signal"))
    parser.add_argument("args", nargs="+", help="[SIGNAL] SERVICE")
    args = parser.parse_args(argv)
    directory: Path = args.dir
    *extra, service = args.args
    if service not in SERVICES:
        print(f"{service}: unknown service (known: {', '.join(SERVICES)})", file=sys.stderr)
        return 5
    if not (directory / "spec.json").is_file():
        print(f"{directory}: no controller here (no spec.json)", file=sys.stderr)
        return 1
    marker = directory / DISABLED
    if args.verb == "status":
        state = "running" if _running(directory) else "stopped"
        print(f"{state}{' disabled' if marker.exists() else ''}")
    elif args.verb == "stop":
        group = read_pidfile(directory / "pid")
        if group is not None and not terminate_group(group, 20.0):
            print(f"{service}: still running after SIGTERM and SIGKILL", file=sys.stderr)
            return 1
    elif args.verb == "start":
        if not _running(directory):
            command = Command((sys.executable, "-m", "demo.controller", "--spec",
                               str(directory / "spec.json")), child_env(), REPO_ROOT)
            group, _ = spawn_group([command], directory / "controller.log")
            (directory / "pid").write_text(group.to_json() + "\n")
    elif args.verb == "disable":
        marker.write_text("disabled by the demo profile\n")
    elif args.verb == "enable":
        marker.unlink(missing_ok=True)
    else:
        if len(extra) != 1:
            print("signal: usage: signal NAME SERVICE", file=sys.stderr)
            return 2
        name = extra[0].upper()
        try:
            sig = signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]
        except KeyError:
            print(f"{extra[0]}: unknown signal", file=sys.stderr)
            return 2
        group = read_pidfile(directory / "pid")
        if group is None or not group.all_alive():
            print(f"{service}: not running", file=sys.stderr)
            return 1
        os.killpg(group.pgid, sig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
