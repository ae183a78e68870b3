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
5. the version the host reports (the profile's `version` step) must be a build of v2.

Which profile runs v2: the host's entry in `[[new.controllers]]` with the same address, if
the inventory lists the node there too (e.g. supervisord for v1, docker for v2), else the
same profile. A step that fails stops the conversion with an error naming host, service
and step; nothing after it runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from backends.controller import ROLE_SERVICES, ControllerError, ControllerExecutor
from backends.ssh import SshTarget
from backends.versions import release_matches
from issu_tui.config import ControllerHostConfig

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


def convert_node(ex: ControllerExecutor, conv: Conversion, target: SshTarget,
                 state_dir: Path, say: Callable[[str], None]) -> str:
    """Convert one node (above); what was done, one line. ControllerError names the host,
    the service and the step that failed."""
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
        ex.act(target, conv.v1.profile, "stop", v1_services)
        running = [s for s in ex.status(target, conv.v1.profile, v1_services) if s.running]
        if running:
            raise ControllerError(f"{name}: after stop still running: "
                                  + ", ".join(f"{s.service} ({s.state})" for s in running)
                                  + f"; {conv.version} not installed")
        say(f"{name}: v1 services stopped: {', '.join(v1_services) or 'none mapped'}")
        ex.install(target, conv.v2.profile, conv.version)
        _record(state_dir, conv)
        say(f"{name}: {conv.version} installed (profile {conv.v2.profile})")
    name = conv.v2.name
    started = []
    for group in role_groups(ex, conv.v2):
        ex.act(target, conv.v2.profile, "start", group)
        down = [s for s in ex.status(target, conv.v2.profile, group) if not s.running]
        if down:
            later = [s for g in role_groups(ex, conv.v2) for s in g
                     if s not in started and s not in group]
            raise ControllerError(
                f"{name}: after the start of {conv.version} not running: "
                + ", ".join(f"{s.service} ({s.state})" for s in down)
                + f"; not started: {', '.join(later) or 'none'}")
        started += group
    service, found = ex.version(target, conv.v2.profile)
    if not release_matches(conv.version, found):
        raise ControllerError(f"{name}: {service} reports version {found!r} after the "
                              f"conversion, not a build of {conv.version}")
    said = (f"{name}: converted to {conv.version} ({service} reports {found}); started in "
            f"order: {', '.join(started) or 'none mapped'}")
    say(said)
    return said
