#!/usr/bin/env python3
"""A stand-in for systemctl, supervisorctl and docker on a simulated controller host (test
only). Installed under those names on the PATH of commands run over SSH; it appends its argv
to $FAKE_STATE/$ISSU_DEMO_HOST/calls.jsonl and keeps each service's state in state.json
there, answering in the real tools' output formats and exit codes."""

import fcntl
import json
import os
import sys
from pathlib import Path

HOME = Path(os.environ["FAKE_STATE"]) / os.environ.get("ISSU_DEMO_HOST", "local")
STATE = HOME / "state.json"


def load() -> dict:
    return json.loads(STATE.read_text()) if STATE.exists() else {}


def save(state: dict) -> None:
    tmp = STATE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    tmp.replace(STATE)


def fail(message: str, code: int = 1) -> None:
    print(message, file=sys.stderr)
    sys.exit(code)


def service(state: dict, key: str) -> dict:
    if key not in state:
        fail(f"no such service: {key}", 5)
    return state[key]


def systemctl(args: list[str], state: dict) -> int:
    verb, unit = args[0], args[-1]
    if verb == "show":  # `show -p LoadState UNIT`: exit 0 for a unit that does not exist
        print(f"LoadState={'loaded' if f'systemd:{unit}' in state else 'not-found'}")
        return 0
    if verb in ("enable", "disable") and f"systemd:{unit}" not in state:
        fail(f"Failed to {verb} unit: Unit file {unit}.service does not exist.")
    if verb != "is-active" and f"systemd:{unit}" not in state:  # systemd: exit 5
        fail(f"Failed to {verb} {unit}.service: Unit {unit}.service "
             f"{'not found' if verb == 'start' else 'not loaded'}.", 5)
    svc = service(state, f"systemd:{unit}") if verb != "is-active" else \
        state.get(f"systemd:{unit}", {"running": False})
    if verb == "is-active":
        print("active" if svc["running"] else "inactive")
        return 0 if svc["running"] else 3
    if verb in ("stop", "start"):
        svc["running"] = verb == "start"
    elif verb == "restart":  # `fail_restart`: the unit does not come up again
        svc["running"] = not svc.get("fail_restart")
        svc["restarts"] = svc.get("restarts", 0) + 1
    elif verb in ("enable", "disable"):
        svc["enabled"] = verb == "enable"
    elif verb == "kill":
        svc.setdefault("signals", []).append(args[1].split("=", 1)[1])
    else:
        fail(f"Unknown command verb {verb}.")
    return 0


def supervisorctl(args: list[str], state: dict) -> int:
    if args[0] != "-s" or not args[1].startswith("unix:///"):
        fail("Error: no server url")
    sock, verb, rest = args[1], args[2], args[3:]
    program = rest[-1]
    if f"supervisord:{sock}:{program}" not in state:  # supervisor 4.x: exit 1 (3.x: 0)
        print(f"{program}: ERROR (no such process)")
        return 1
    svc = service(state, f"supervisord:{sock}:{program}")
    if verb == "status":
        if svc["running"]:
            print(f"{program:33}RUNNING   pid 4242, uptime 1:02:03")
            return 0
        print(f"{program:33}STOPPED   Dec 04 03:55 AM")
        return 3
    if verb in ("stop", "start"):
        svc["running"] = verb == "start"
        print(f"{program}: {'started' if svc['running'] else 'stopped'}")
    elif verb == "restart":
        svc["running"], svc["restarts"] = True, svc.get("restarts", 0) + 1
        print(f"{program}: stopped\n{program}: started")
    elif verb == "signal":
        svc.setdefault("signals", []).append(rest[0])
        print(f"{program}: signalled")
    else:
        fail(f"*** Unknown syntax: {verb}")
    return 0


def docker(args: list[str], state: dict) -> int:
    if args[0] == "compose":
        if args[1] != "-f":
            fail("compose: no file")
        project, rest = Path(args[2]).parent.name, args[3:]
        name = rest[-1]
        if f"compose:{project}:{name}" not in state:
            fail(f"no such service: {name}")
        svc = service(state, f"compose:{project}:{name}")
        verb = rest[0]
        if verb == "ps" and "-q" in rest:
            print(svc["id"])
        elif verb == "ps":
            print("running" if svc["running"] else "exited")
        elif verb in ("stop", "start"):
            svc["running"] = verb == "start"
        elif verb == "restart":
            svc["running"], svc["restarts"] = True, svc.get("restarts", 0) + 1
        elif verb == "kill":
            svc.setdefault("signals", []).append(rest[rest.index("-s") + 1])
        else:
            fail(f"unknown compose command {verb}")
        return 0
    verb, rest = args[0], args[1:]
    if verb == "update":
        policy = rest[0].split("=", 1)[1]
        for ident in rest[1:]:
            found = [s for s in state.values() if s.get("id") == ident or
                     s.get("container") == ident]
            if not found:
                fail(f"Error response from daemon: No such container: {ident}")
            found[0]["restart"] = policy
            print(ident)
        return 0
    name = rest[-1]
    found = [s for s in state.values() if s.get("container") == name]
    if not found:
        fail(f"Error: No such object: {name}" if verb == "inspect" else
             f"Error response from daemon: No such container: {name}")
    svc = found[0]
    if verb == "inspect" and "{{.Config.Image}}" in rest:
        print(svc["image"])
    elif verb == "inspect":
        print("running" if svc["running"] else "exited")
    elif verb in ("stop", "start"):
        svc["running"] = verb == "start"
        print(name)
    elif verb == "restart":
        svc["running"], svc["restarts"] = True, svc.get("restarts", 0) + 1
        print(name)
    elif verb == "kill":
        svc.setdefault("signals", []).append(rest[0].split("=", 1)[1])
        print(name)
    else:
        fail(f"docker: '{verb}' is not a docker command.")
    return 0


def dpkg_query(args: list[str], state: dict) -> int:
    """`dpkg-query -W -f=FORMAT PACKAGE`: the package's version; with a pattern (`contrail-*`)
    and `${Package}` in FORMAT: `ii  NAME` per installed package matching it."""
    package = args[-1]
    if "*" in package:
        import fnmatch

        names = [k.split(":", 1)[1] for k in state if k.startswith("dpkg:")]
        found_names = sorted(n for n in names if fnmatch.fnmatch(n, package))
        if not found_names:
            fail(f"dpkg-query: no packages found matching {package}")
        for name in found_names:
            print(f"ii  {name}")
        return 0
    found = state.get(f"dpkg:{package}")
    if found is None:
        fail(f"dpkg-query: no packages found matching {package}")
    print(found["version"])
    return 0


def apt_get(args: list[str], state: dict) -> int:
    """`apt-get install [options] NAME=VERSION...`: each package's version set."""
    if "install" not in args:
        fail("E: Invalid operation")
    items = args[args.index("install") + 1:]
    for i, item in enumerate(items):
        if item.startswith("-") or "=" not in item or (i and items[i - 1] == "-o"):
            continue
        name, version = item.split("=", 1)
        if f"dpkg:{name}" not in state:
            fail(f"E: Unable to locate package {name}", 100)
        if state[f"dpkg:{name}"].get("fail_install"):
            fail(f"E: Version '{version}' for '{name}' was not found", 100)
        state[f"dpkg:{name}"]["version"] = version
    return 0


def main() -> int:
    HOME.mkdir(parents=True, exist_ok=True)
    tool = Path(sys.argv[0]).name
    # one call at a time per simulated host (two inventory hosts may share one), as the real
    # service manager takes them: issu acts on several hosts at once; the lock goes at exit
    lock = (HOME / "lock").open("w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    with (HOME / "calls.jsonl").open("a") as log:
        log.write(json.dumps([tool, *sys.argv[1:]]) + "\n")
    state = load()
    code = {"systemctl": systemctl, "supervisorctl": supervisorctl,
            "docker": docker, "dpkg-query": dpkg_query,
            "apt-get": apt_get}[tool](sys.argv[1:], state)
    save(state)
    return code


if __name__ == "__main__":
    sys.exit(main())
