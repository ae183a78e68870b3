"""`python -m demo.controller.hostctl --dir DIR VERB [ARG] SERVICE`: the demo controller host's
service control, what the `demo` controller profile runs over SSH.

DIR is one simulated controller's directory (spec.json, pid files, logs). Its services, each a
process group of its own with `<service>.pid` and `<service>.log`, named as issu names them:
`api-server`, `control`, `analytics-api` (demo.controller --roles api|control|analytics) and
the writers `schema-transformer`, `svc-monitor`, `device-manager` (demo/controller/writers.py).
`controller` stands for the first three together (status: running when all three run).
On the northbound host, DIR holds `ContrailPlugin.ini` and no spec: its one service is
`neutron-server` (demo/controller/neutron.py, reading that ini). A controller whose DIR holds
`contrail-kubernetes.conf` (v2's first) also runs `kube-manager` (demo/controller/
kubemanager.py). A service a host has not got (kube-manager elsewhere, vcenter-manager
anywhere) is answered `...: no such service on this host`, exit 5, as systemctl exits for a
unit that is not installed.
Verbs: status (prints running / stopped, and `disabled`), version (the release), stop, start,
disable / enable (a disabled service is not started again by `issu demo up`: the demo's
reboot), restart, signal NAME, `install VERSION controller` (the host's release, as
`version` prints it and its processes run it from their next start: the demo's package
install), fence / unfence (api-server only: closed to northbound writes, or opened),
fence_status (prints `fenced` or `open`, asked of the api-server), and `queues VHOST` (the
world's broker's queues of VHOST, `name ready unacked` per line, from rabbitmqctl).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from demo.compute.fleet import child_env
from demo.services.plan import REPO_ROOT
from demo.services.procs import Command, Group, read_pidfile, spawn_group, terminate_group

CONTROLLER = "controller"
# issu's service name -> demo.controller's role (one process each, as Contrail's containers)
ROLES = {"api-server": "api", "control": "control", "analytics-api": "analytics"}
# demo/controller/writers.py (not imported here: status over SSH stays quick)
WRITERS = ("schema-transformer", "svc-monitor", "device-manager")
PROCESSES = (*ROLES, *WRITERS)  # a controller host's
NEUTRON = "neutron-server"  # the northbound host's
PLUGIN_INI = "ContrailPlugin.ini"
KUBE_MANAGER = "kube-manager"  # where its conf is (v2's first controller host)
KUBE_CONF = "contrail-kubernetes.conf"
VCENTER_MANAGER = "vcenter-manager"  # no demo host has one: always absent
SERVICES = (CONTROLLER, *PROCESSES, KUBE_MANAGER, VCENTER_MANAGER, NEUTRON)
# the file a host must hold to have the service (else: no such service on this host)
NEEDS = {NEUTRON: PLUGIN_INI, KUBE_MANAGER: KUBE_CONF,
         VCENTER_MANAGER: "contrail-vcenter-manager.conf"}


def processes(service: str) -> tuple[str, ...]:
    """The processes `service` stands for (`controller`: the api-server, control, analytics)."""
    return tuple(ROLES) if service == CONTROLLER else (service,)


def pidfile(directory: Path, service: str) -> Path:
    return directory / f"{service}.pid"


def log_path(directory: Path, service: str) -> Path:
    return directory / f"{service}.log"


def disabled_marker(directory: Path, service: str) -> Path:
    return directory / f"{service}.disabled"


def running(directory: Path, service: str) -> bool:
    for one in processes(service):
        group = read_pidfile(pidfile(directory, one))
        if group is None or not group.all_alive():
            return False
    return True


def command(directory: Path, service: str) -> Command:
    spec = str(directory / "spec.json")
    if service == NEUTRON:
        argv: tuple[str, ...] = (sys.executable, "-m", "demo.controller.neutron", "--ini",
                                 str(directory / PLUGIN_INI), "--state",
                                 str(directory / f"{NEUTRON}.state"))
    elif service == KUBE_MANAGER:
        argv = (sys.executable, "-m", "demo.controller.kubemanager", "--conf",
                str(directory / KUBE_CONF), "--state", str(directory / f"{KUBE_MANAGER}.state"))
    elif service in ROLES:
        argv = (sys.executable, "-m", "demo.controller", "--spec", spec, "--roles",
                ROLES[service])
    else:
        argv = (sys.executable, "-m", "demo.controller.writers", "--spec", spec,
                "--service", service)
    return Command(argv, child_env(), REPO_ROOT)


def start(directory: Path, service: str) -> list[Group]:
    """Start `service` (each of its processes) unless it runs; the groups started."""
    started = []
    for one in processes(service):
        if running(directory, one):
            continue
        stale = read_pidfile(pidfile(directory, one))
        if stale is not None:
            terminate_group(stale, 10.0)
        group, _ = spawn_group([command(directory, one)], log_path(directory, one))
        pidfile(directory, one).write_text(group.to_json() + "\n")
        started.append(group)
    return started


def stop(directory: Path, service: str, timeout_s: float = 20.0) -> bool:
    """Stop `service` (each of its processes); False when one outlived SIGTERM and SIGKILL."""
    stopped = True
    for one in reversed(processes(service)):
        group = read_pidfile(pidfile(directory, one))
        # terminate_group is False once it needed SIGKILL (a writer finishing a slow pass
        # on a loaded box): stopped all the same when nothing of the group is left
        stopped = (group is None or terminate_group(group, timeout_s)
                   or not group.members()) and stopped
    return stopped


def fence(directory: Path, closed: bool) -> int:
    """The api-server's ISSU fence on this host (`POST /issu/close|open`, admin token from the
    controller's secrets file): what a firewall rule on the port would be on a real host."""
    import httpx

    from demo.controller.spec import SpecError, load_secrets, load_spec

    try:
        spec = load_spec(directory / "spec.json")
        token = load_secrets(spec.secrets_file).admin_token
    except SpecError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    url = f"{spec.api_url}/issu/{'close' if closed else 'open'}"
    # an api-server started a moment ago (abort starts old's, then unfences it) may not
    # listen yet: a firewall rule would not need it to, so wait for it a while
    deadline = time.monotonic() + 60.0
    while True:
        try:
            answer = httpx.post(url, headers={"X-Auth-Token": token.get_secret_value()
                                              if token else ""}, timeout=30)
            answer.raise_for_status()
            break
        except httpx.ConnectError as exc:
            if time.monotonic() > deadline or not running(directory, "api-server"):
                print(f"{url}: {exc}", file=sys.stderr)
                return 1
            time.sleep(0.5)
        except httpx.HTTPError as exc:
            print(f"{url}: {exc}", file=sys.stderr)
            return 1
    print("fenced" if closed else "open")
    return 0


def fence_status(directory: Path) -> int:
    """Whether this host's api-server refuses northbound writes, asked of the api-server
    itself (`GET /issu/status`): prints `fenced` or `open`, as a firewall rule's check
    (`iptables -C ...`) would on a real host."""
    import httpx

    from demo.controller.spec import SpecError, load_spec

    try:
        spec = load_spec(directory / "spec.json")
    except SpecError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    url = f"{spec.api_url}/issu/status"
    try:
        answer = httpx.get(url, timeout=30)
        answer.raise_for_status()
        northbound_open = answer.json()["northbound_open"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        print(f"{url}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print("open" if northbound_open else "fenced")
    return 0


def install(directory: Path, args: list[str]) -> int:
    """The host's release set to VERSION (spec.json, kept private as written): what its
    services run from their next start; refused while one of them runs (a package install
    under a running service is what issu's conversion never does)."""
    if len(args) != 1 or not args[0] or args[0].startswith("-"):
        print("install: usage: install VERSION controller", file=sys.stderr)
        return 2
    up = [p for p in PROCESSES if running(directory, p)]
    if up:
        print(f"install: {', '.join(up)} still running: stop them first", file=sys.stderr)
        return 1
    path = directory / "spec.json"
    spec = json.loads(path.read_text())
    spec["version"] = args[0]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(spec, indent=2))
    os.chmod(tmp, path.stat().st_mode & 0o7777)
    os.replace(tmp, path)
    print(f"installed {args[0]}")
    return 0


RABBITMQCTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"


def queues(directory: Path, vhost: str) -> int:
    """The broker's queues of `vhost` with their ready and unacknowledged messages, asked of
    the broker itself (rabbitmqctl, as on a real controller host)."""
    import subprocess

    from demo.controller.spec import SpecError, load_spec

    try:
        ctl = load_spec(directory / "spec.json").rabbit.ctl
    except SpecError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if ctl is None:
        print(f"{directory}: the spec says no way to the broker (rabbit.ctl)", file=sys.stderr)
        return 1
    done = subprocess.run(
        [RABBITMQCTL, "-n", ctl.nodename, "-q", "list_queues", "-p", vhost,
         "--no-table-headers", "name", "messages_ready", "messages_unacknowledged"],
        env={**os.environ, **ctl.env}, capture_output=True, text=True, timeout=120,
        check=False)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.controller.hostctl")
    parser.add_argument("--dir", required=True, type=Path, help="the controller's directory")
    parser.add_argument("verb", choices=("status", "stop", "start", "restart", "disable",
                                         "enable", "signal", "version", "install", "fence",
                                         "unfence", "fence_status", "queues"))
    parser.add_argument("args", nargs="+", help="[SIGNAL] SERVICE, or VHOST (queues)")
    args = parser.parse_args(argv)
    directory: Path = args.dir
    if args.verb == "queues":
        return queues(directory, args.args[-1])
    *extra, service = args.args
    if service not in SERVICES:
        print(f"{service}: unknown service (known: {', '.join(SERVICES)})", file=sys.stderr)
        return 5
    needed = NEEDS.get(service, "spec.json")
    if not (directory / needed).is_file():
        print(f"{service}: no such service on this host (no {needed} in {directory})",
              file=sys.stderr)
        return 5
    if args.verb in ("fence", "unfence", "fence_status"):
        if service not in ("api-server", CONTROLLER):
            print(f"{args.verb}: only the api-server has a fence", file=sys.stderr)
            return 2
        if args.verb == "fence_status":
            return fence_status(directory)
        return fence(directory, args.verb == "fence")
    if args.verb == "install":
        return install(directory, extra)
    if args.verb == "version":  # the release this controller runs (its spec's)
        print(json.loads((directory / "spec.json").read_text())["version"])
    elif args.verb == "status":
        state = "running" if running(directory, service) else "stopped"
        disabled = any(disabled_marker(directory, p).exists() for p in processes(service))
        print(f"{state}{' disabled' if disabled else ''}")
    elif args.verb == "stop":
        if not stop(directory, service):
            print(f"{service}: still running after SIGTERM and SIGKILL", file=sys.stderr)
            return 1
    elif args.verb in ("start", "restart"):
        if args.verb == "restart" and not stop(directory, service):
            print(f"{service}: still running after SIGTERM and SIGKILL", file=sys.stderr)
            return 1
        start(directory, service)
    elif args.verb == "disable":
        for one in processes(service):
            disabled_marker(directory, one).write_text("disabled by the demo profile\n")
    elif args.verb == "enable":
        for one in processes(service):
            disabled_marker(directory, one).unlink(missing_ok=True)
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
        for one in processes(service):
            group = read_pidfile(pidfile(directory, one))
            if group is None or not group.all_alive():
                print(f"{one}: not running", file=sys.stderr)
                return 1
            os.killpg(group.pgid, sig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
