"""``python -m demo.services up|down|status [--net N] [--profile test|demo] [--only ...]``.

``start|stop|state NAME...``: one service at a time, as a controller profile drives a host's
database (`state` prints `running` for a service that answers, else its state).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from demo.services.base import ServiceError
from demo.services.endpoints import ENDPOINTS_FILE
from demo.services.launcher import GROUPS, Launcher
from demo.services.plan import DEFAULT_TEST_NET, DEMO_NET, PROFILES, default_run_dir

DEFAULT_SSH_HOSTS = 4


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m demo.services", description=__doc__)
    parser.add_argument("action", choices=("up", "down", "status", "restart", "start",
                                           "stop", "state"))
    parser.add_argument("names", nargs="*", help="for restart, start, stop, state: service "
                        "names (e.g. rabbitmq)")
    parser.add_argument(
        "--net",
        type=int,
        help=f"127.<net>.x.y (demo {DEMO_NET}, test $ISSU_TEST_NET or {DEFAULT_TEST_NET})",
    )
    parser.add_argument("--profile", choices=PROFILES, default="test")
    parser.add_argument("--run-dir", type=Path, help="default .run/<profile>-<net>")
    parser.add_argument("--only", help=f"comma list of groups {','.join(GROUPS)} or service names")
    parser.add_argument(
        "--ssh-hosts",
        type=int,
        help=f"simulated ssh hosts (default: as last up, else {DEFAULT_SSH_HOSTS})",
    )
    parser.add_argument("--ring", type=int, default=0,
                        help="nodes of a multi-node Cassandra ring (group ring, 127.<net>.0.41..)")
    parser.add_argument("--ring-spares", type=int, default=0,
                        help="more ring nodes that join when started (group 'ring-spare')")
    return parser


def _ssh_hosts(run_dir: Path, requested: int | None) -> int | None:
    """--ssh-hosts, else what the run dir records (None), else the default count."""
    if requested is not None:
        return requested
    return None if (run_dir / ENDPOINTS_FILE).exists() else DEFAULT_SSH_HOSTS


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    net = args.net
    if net is None:
        net = (
            DEMO_NET
            if args.profile == "demo"
            else int(os.environ.get("ISSU_TEST_NET", DEFAULT_TEST_NET))
        )
    run_dir = (args.run_dir or default_run_dir(args.profile, net)).resolve()
    only = args.only.split(",") if args.only else None
    try:
        launcher = Launcher(net, args.profile, run_dir, _ssh_hosts(run_dir, args.ssh_hosts),
                            ring=args.ring, ring_spares=args.ring_spares)
        if args.action == "up":
            began = time.monotonic()
            launcher.up(only)
            _print_status(launcher, launcher.names(only))
            print(
                f"ready in {time.monotonic() - began:.1f} s; endpoints: {run_dir / ENDPOINTS_FILE}"
            )
            return 0
        if args.action in ("start", "stop", "state") and not args.names:
            print(f"error: {args.action} needs service names", file=sys.stderr)
            return 2
        if args.action == "start":
            for name in args.names:
                launcher.start(name)
            return 0
        if args.action == "stop":
            for name in args.names:
                launcher.stop(name)
            return 0
        if args.action == "state":
            for st in launcher.status(args.names):
                print("running" if st.state == "ready" else
                      "starting" if st.state == "running" else st.state)
            return 0
        if args.action == "restart":
            for name in args.names or launcher.names(only):
                launcher.restart(name)
            _print_status(launcher, args.names or launcher.names(only))
            return 0
        if args.action == "down":
            stopped = launcher.down(only)
            print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
            return 0
        statuses = _print_status(launcher, launcher.names(only))
        return 0 if all(s == "ready" for s in statuses) else 3
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _print_status(launcher: Launcher, names: list[str]) -> list[str]:
    states = []
    for st in launcher.status(names):
        pids = ",".join(map(str, st.pids)) or "-"
        rss = f"{st.rss_kib // 1024} MiB" if st.rss_kib else "-"
        took = launcher.ready_after.get(st.name)
        started = f"started in {took:.1f} s" if took is not None else ""
        print(f"{st.name:14} {st.state:8} pid {pids:12} rss {rss:>8}  {st.where}  {started}")
        if st.detail and st.state != "stopped":
            print(f"{'':14} {st.detail}")
        states.append(st.state)
    return states


if __name__ == "__main__":
    sys.exit(main())
