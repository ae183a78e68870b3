"""Create a world of simulated computes and run its daemon (used by demo/world.py and tests)."""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from demo.compute.host import HostdUnavailable, hostd
from demo.compute.layout import HostDir, WorldSettings, load_world, save_world
from demo.services.procs import Command, read_pidfile, spawn_group, terminate_group


@dataclass(frozen=True)
class FleetStatus:
    state: str  # "ready", "running" (not answering), "stopped"
    pid: int | None
    hosts: dict[str, dict[str, object]]
    detail: str = ""


def child_env() -> dict[str, str]:
    """The environment of the demo's Python children: the basics of ours, nothing else
    (no secrets or settings of the caller leak into long-lived processes)."""
    keep = ("PATH", "LANG", "LC_ALL", "HOME", "USER", "LOGNAME", "TZ", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Fleet:
    """The computes of one world directory and the daemon that runs their agents."""

    def __init__(self, world_dir: Path) -> None:
        self.dir = Path(world_dir).resolve()

    @property
    def pidfile(self) -> Path:
        return self.dir / "hostd.pid"

    @property
    def log(self) -> Path:
        return self.dir / "hostd.log"

    def host_command(self) -> str:
        """The demo profile's `{host}` variable: how an SSH session runs the host command."""
        return shlex.join([sys.executable, "-m", "demo.compute.host", "--world", str(self.dir)])

    def create(self, settings: WorldSettings, version: str, control_nodes: list[str],
               collectors: list[str] | None = None, dns_servers: list[str] | None = None
               ) -> list[str]:
        """Write world.json and lay out every host not laid out yet (existing hosts keep
        their state). Returns the hosts created."""
        save_world(self.dir, settings)
        created = []
        for name, address in settings.hosts.items():
            host = HostDir(self.dir, name)
            if not host.exists():
                host.create(address, version, control_nodes, collectors or control_nodes,
                            dns_servers or control_nodes)
                created.append(name)
        return created

    def settings(self) -> WorldSettings:
        return load_world(self.dir)

    def update_settings(self, **changes: object) -> WorldSettings:
        """Change world.json (e.g. durations, failure rates); the host command reads it on
        every call, the daemon at its start."""
        settings = self.settings()
        for key, value in changes.items():
            if not hasattr(settings, key):
                raise KeyError(f"world setting {key!r} does not exist")
            setattr(settings, key, value)
        save_world(self.dir, settings)
        return settings

    # ------------------------------------------------------------------ daemon
    def running(self) -> bool:
        group = read_pidfile(self.pidfile)
        return group is not None and group.all_alive()

    def start(self, timeout: float = 30.0, env: Mapping[str, str] | None = None) -> int:
        """Start the daemon (or reuse a live one) and wait until it answers."""
        group = read_pidfile(self.pidfile)
        if group is None or not group.all_alive():
            if group is not None:
                terminate_group(group, 5.0)
            argv = (sys.executable, "-m", "demo.compute.hostd", "--world", str(self.dir))
            group, _ = spawn_group([Command(argv, {**child_env(), **(env or {})}, self.dir)],
                                   self.log)
            self.pidfile.write_text(group.to_json() + "\n")
        deadline = time.monotonic() + timeout
        while True:
            try:
                return int(hostd(self.dir, {"op": "ping"}, timeout=2.0)["pid"])
            except HostdUnavailable as exc:
                if not group.all_alive():
                    raise RuntimeError(f"compute daemon exited; see {self.log}") from exc
                if time.monotonic() > deadline:
                    raise RuntimeError(f"compute daemon not answering after {timeout:g} s: "
                                       f"{exc}; see {self.log}") from exc
                time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the daemon (every agent and data path). True if it was running."""
        group = read_pidfile(self.pidfile)
        if group is None:
            return False
        was = group.any_alive()
        terminate_group(group, timeout)
        self.pidfile.unlink(missing_ok=True)
        return was

    def status(self) -> FleetStatus:
        group = read_pidfile(self.pidfile)
        if group is None or not group.any_alive():
            return FleetStatus("stopped", None, {})
        pid = group.procs[0].pid
        try:
            reply = hostd(self.dir, {"op": "states"}, timeout=15.0)
        except HostdUnavailable as exc:
            return FleetStatus("running", pid, {}, str(exc))
        return FleetStatus("ready", pid, reply["hosts"])
