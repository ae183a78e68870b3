"""The container engine the demo uses: rootful podman with the runc runtime, host network,
lowered limits (this machine refuses to raise rlimits, so crun and the defaults fail)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

# Every container the demo starts gets these (the engine's defaults ask for more than the
# machine allows) and the host network: each service binds its own loopback address; the
# engine's bridge network (a private range) is never used.
RUN_OPTIONS = ("--network", "host", "--ulimit", "nofile=1024:1024",
               "--ulimit", "nproc=1024:1024")
PODMAN = ("podman", "--runtime", "runc")
# Label on every container the demo starts: `issu.demo.net=<net>` is what `down` removes.
NET_LABEL = "issu.demo.net"


class EngineUnavailable(Exception):
    """The container engine cannot run here; the message is the one-line reason."""


@dataclass(frozen=True)
class Engine:
    argv: tuple[str, ...] = PODMAN

    def run(self, *args: str, check: bool = True, timeout: float = 600
            ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*self.argv, *args], capture_output=True, text=True,
                              timeout=timeout, check=False)
        if check and proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()
            raise EngineUnavailable(f"{' '.join(self.argv[:1])} {' '.join(args[:3])}: "
                                    f"{tail[-1] if tail else f'exit {proc.returncode}'}")
        return proc

    def image_exists(self, ref: str) -> bool:
        return self.run("image", "exists", ref, check=False).returncode == 0

    def image_label(self, ref: str, label: str) -> str | None:
        proc = self.run("image", "inspect", "--format", "{{json .Labels}}", ref, check=False)
        if proc.returncode != 0:
            return None
        labels = json.loads(proc.stdout or "null") or {}
        value = labels.get(label)
        return str(value) if value is not None else None

    def containers(self, *filters: str, all_states: bool = True) -> list[dict[str, object]]:
        args = ["ps", "--format", "json", *(["-a"] if all_states else [])]
        for f in filters:
            args += ["--filter", f]
        out = self.run(*args).stdout.strip()
        return list(json.loads(out or "[]"))

    def remove(self, names: Sequence[str], stop_timeout_s: int = 5) -> None:
        if names:
            self.run("rm", "--force", "--ignore", "-t", str(stop_timeout_s), *names, check=False)


def engine_problem(engine: Engine | None = None) -> str | None:
    """Why the engine cannot run containers here, or None when it can."""
    engine = engine or Engine()
    for tool in ("podman", "runc"):
        if shutil.which(tool) is None and not _in_sbin(tool):
            return f"{tool} is not installed (make containers-install installs it)"
    try:
        proc = engine.run("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False,
                          timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"podman info: {exc}"
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        return f"podman info failed: {tail[-1] if tail else proc.returncode}"
    return None


def _in_sbin(tool: str) -> bool:
    return any(shutil.which(tool, path=p) for p in ("/usr/sbin", "/sbin"))
