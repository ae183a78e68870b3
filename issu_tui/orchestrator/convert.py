"""A controller node converted from v1 to v2 in place (the ring approaches' `convert` step),
through the controller profiles:

1. every v1 service of the host's roles stopped (analytics, control, config, the database
   last), each one checked stopped;
2. release v2 installed (the v2 profile's `install` step with the target version: packages,
   images, or the demo host's release);
3. the node recorded as v2 (`<state_dir>/converted-nodes.json`: its v2 profile and version;
   a re-run starts from here, the ring runner uses the v2 profile for it from then on);
4. the v2 services started role after role: database, config, control, analytics,
   northbound; each role's services must run before the next role starts;
5. the version the host reports (the profile's `version` step) must be a build of v2;
6. the node serves in its roles, asked until a deadline (`serving`): config, its own
   api-server answers (new.api_server's scheme and port on the node's address); control,
   new's analytics-api has the node's control-node UVE. Running is not serving: a
   process up that does not answer stops the plan here, naming the node and what did not
   answer. The database's evidence (UN, owning its share) is the ring runner's.

A service the host's roles map but the host has not got (ABSENT: the service manager says it
is not there) is skipped and said when it is optional (OPTIONAL_SERVICES: the northbound
clients, the optional writers: a neutron-only northbound host has no vcenter-manager); a
required one absent refuses the conversion, naming it (before anything stops when the status
step tells, else at its stop or start).

Which profile runs v2: the host's entry in `[[new.controllers]]` with the same address, if
the inventory lists the node there too (e.g. supervisord for v1, docker for v2), else the
same profile. A step that fails stops the conversion with an error naming host, service
and step; nothing after it runs.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from backends.apiserver import ApiServerError
from backends.controller import (
    OPTIONAL_SERVICES,
    ROLE_SERVICES,
    ControllerError,
    ControllerExecutor,
)
from backends.http_answers import request_whole
from backends.ssh import SshTarget
from backends.versions import release_matches
from issu_tui.config import ClusterConfig, ControllerHostConfig
from issu_tui.orchestrator.context import api_client

START_ORDER = ("database", "config", "control", "analytics", "northbound")
CONVERTED_FILE = "converted-nodes.json"


@dataclass(frozen=True)
class Conversion:
    v1: ControllerHostConfig  # the host as v1 runs (its profile stops the v1 services)
    v2: ControllerHostConfig  # the same address as v2 runs (its profile installs, starts)
    version: str              # the release to install and to find running


def role_groups(ex: ControllerExecutor, host: ControllerHostConfig) -> list[list[str]]:
    """The host's services its profile maps, one list per role in START_ORDER."""
    mapped = ex.profile(host.profile).services
    groups = []
    seen: set[str] = set()
    for role in START_ORDER:
        if role not in host.roles:
            continue
        group = [s for s in ROLE_SERVICES[role] if s in mapped and s not in seen]
        seen.update(group)
        if group:
            groups.append(group)
    return groups


def absent_said(absent: Sequence[str]) -> str:
    """The words for services a host has not got, as the controller steps say them."""
    return f"{', '.join(absent)} absent (not on this host), skipped" if absent else ""


def _refuse_required(host: ControllerHostConfig, absent: Sequence[str], what: str) -> None:
    required = [s for s in absent if s not in OPTIONAL_SERVICES]
    if required:
        raise ControllerError(
            f"{host.name}: {', '.join(required)} absent (not on this host) though its roles "
            f"({', '.join(host.roles)}) map {'it' if len(required) == 1 else 'them'}: {what}")


def stop_present(ex: ControllerExecutor, target: SshTarget, host: ControllerHostConfig,
                 services: Sequence[str], what: str) -> list[str]:
    """Stop `services` in order on `host`, but those it has not got: the optional ones
    absent are skipped and returned; a required one absent raises ControllerError naming
    it and `what` is refused (before anything stops when its status says so)."""
    if not services:
        return []
    absent = [s.service for s in ex.status(target, host.profile, services) if s.absent]
    _refuse_required(host, absent, f"{what}, nothing stopped")
    absent += ex.act_present(target, host.profile, ["stop"],
                             [s for s in services if s not in absent])
    _refuse_required(host, absent, what)
    return [s for s in services if s in absent]


def converted(state_dir: Path) -> dict[str, dict[str, str]]:
    """address -> {"name", "profile", "version"} of every node converted so far."""
    path = state_dir / CONVERTED_FILE
    if not path.exists():
        return {}
    try:
        return {str(k): dict(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError, AttributeError) as exc:
        raise ControllerError(f"{path}: cannot read the converted nodes: {exc}") from None


def _record(state_dir: Path, conv: Conversion) -> None:
    nodes = converted(state_dir)
    nodes[conv.v2.address] = {"name": conv.v2.name, "profile": conv.v2.profile,
                              "version": conv.version}
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / CONVERTED_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(nodes, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _on_host(url: str, address: str) -> str:
    """`url` with its host replaced by `address` (scheme, port and path kept)."""
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def serving(cluster: ClusterConfig, host: ControllerHostConfig,
            timeout_s: float = 10.0) -> list[str]:
    """What of `host`'s config and control roles does not answer as `cluster` (new) runs
    them; empty: every one does."""
    problems = []
    if "config" in host.roles:
        api = cluster.api_server
        if api is None:
            problems.append("config: its api-server cannot be asked: new.api_server is not "
                            "set (its scheme and port are those of the node's api-server)")
        else:
            url = _on_host(api.url, host.address)
            try:
                with api_client(api, url, timeout_s) as client:
                    client.ping()
            except ApiServerError as exc:
                problems.append(f"config: its api-server {url} did not answer ({exc})")
    if "control" in host.roles:
        name = next((c.name for c in cluster.control_nodes if c.address == host.address),
                    host.name)
        if cluster.analytics is None:
            problems.append(f"control: its control-node UVE ({name}) cannot be read: "
                            "new.analytics is not set")
        else:
            url = (f"{cluster.analytics.url.rstrip('/')}/analytics/uves/control-node/"
                   f"{quote(name, safe='')}?flat")
            problems += _uve_problems(url, name, timeout_s)
    return problems


def _uve_problems(url: str, name: str, timeout_s: float) -> list[str]:
    try:
        with httpx.Client(timeout=timeout_s) as client:
            response = request_whole(client, "GET", url, deadline_s=max(timeout_s, 30.0))
        uve = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError) as exc:
        return [f"control: the analytics-api did not answer {url} ({exc})"]
    if not isinstance(uve, dict) or not uve:  # analytics answers {} for a node it never heard
        return [f"control: no control-node UVE of {name} at {url} (HTTP "
                f"{response.status_code}): the control node does not report"]
    return []


def wait_serving(name: str, check: Callable[[], list[str]], wait_s: float,
                 poll_s: float = 3.0, sleep: Callable[[float], None] = time.sleep) -> None:
    """Ask `check` until it finds nothing wrong; ControllerError naming the node and what
    still did not answer when `wait_s` has passed."""
    deadline = time.monotonic() + wait_s
    while True:
        problems = check()
        if not problems:
            return
        if time.monotonic() >= deadline:
            raise ControllerError(f"{name}: running v2 but not serving after {wait_s:.0f} s: "
                                  + "; ".join(problems))
        sleep(poll_s)


def convert_node(ex: ControllerExecutor, conv: Conversion, target: SshTarget,
                 state_dir: Path, say: Callable[[str], None],
                 serves: Callable[[ControllerHostConfig], list[str]] = lambda _h: [],
                 serve_wait_s: float = 120.0) -> str:
    """Convert one node (above); what was done, one line. ControllerError names the host,
    the service and the step that failed, or what of the node does not serve (`serves`:
    what of a host's roles does not answer, e.g. `serving`)."""
    name = conv.v1.name  # the v2 entry's name once v2 is installed
    v2 = ex.profile(conv.v2.profile)
    for step in ("install", "version"):  # refused before anything stops
        if step not in v2.steps:
            raise ControllerError(
                f"{name}: conversion to {conv.version} refused, nothing stopped: controller "
                f"profile {v2.name} has no {step!r} step (set "
                f"controller_profiles.{v2.name}.{step})")
    if conv.v2.address not in converted(state_dir):
        v1_services = [s for group in reversed(role_groups(ex, conv.v1))
                       for s in reversed(group)]
        absent = stop_present(ex, target, conv.v1, v1_services,
                              f"conversion to {conv.version} refused")
        v1_services = [s for s in v1_services if s not in absent]
        running = [s for s in ex.status(target, conv.v1.profile, v1_services) if s.running]
        if running:
            raise ControllerError(f"{name}: after stop still running: "
                                  + ", ".join(f"{s.service} ({s.state})" for s in running)
                                  + f"; {conv.version} not installed")
        say(f"{name}: v1 services stopped: {', '.join(v1_services) or 'none mapped'}"
            + (f"; {absent_said(absent)}" if absent else ""))
        ex.install(target, conv.v2.profile, conv.version)
        _record(state_dir, conv)
        say(f"{name}: {conv.version} installed (profile {conv.v2.profile})")
    name = conv.v2.name
    started: list[str] = []
    skipped: list[str] = []
    groups = role_groups(ex, conv.v2)
    for group in groups:
        absent = ex.act_present(target, conv.v2.profile, ["start"], group)
        later = [s for g in groups for s in g if s not in started and s not in group]
        _refuse_required(conv.v2, absent, f"not installed by {conv.version}'s install step; "
                         f"not started: {', '.join(later) or 'none'}")
        skipped += absent
        present = [s for s in group if s not in absent]
        down = [s for s in ex.status(target, conv.v2.profile, present) if not s.running]
        if down:
            raise ControllerError(
                f"{name}: after the start of {conv.version} not running: "
                + ", ".join(f"{s.service} ({s.state})" for s in down)
                + f"; not started: {', '.join(later) or 'none'}")
        started += present
    service, found = ex.version(target, conv.v2.profile)
    if not release_matches(conv.version, found):
        raise ControllerError(f"{name}: {service} reports version {found!r} after the "
                              f"conversion, not a build of {conv.version}")
    wait_serving(name, lambda: serves(conv.v2), serve_wait_s)
    said = (f"{name}: converted to {conv.version} ({service} reports {found}); started in "
            f"order: {', '.join(started) or 'none mapped'}"
            + (f"; {absent_said(skipped)}" if skipped else ""))
    say(said)
    return said
