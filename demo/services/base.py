"""What every service provides to the launcher."""

from __future__ import annotations

import contextlib
import os
import socket
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from demo.services.plan import AddressPlan
from demo.services.procs import Command


class ServiceError(RuntimeError):
    """A service could not be started, checked or stopped; the message says which and why."""


class NotReady(Exception):
    """Readiness probe failed (the reason is the message); the launcher retries."""


@dataclass(frozen=True)
class Context:
    net: int
    profile: str
    run_dir: Path
    plan: AddressPlan


class Service(ABC):
    """One server process group with its own directory ``<run_dir>/<name>``."""

    group: str = ""
    heavy = False  # heavy services are started one after the other
    start_timeout = 60.0
    stop_timeout = 30.0

    def __init__(self, ctx: Context, name: str) -> None:
        self.ctx = ctx
        self.name = name

    @property
    def dir(self) -> Path:
        return self.ctx.run_dir / self.name

    @property
    def pidfile(self) -> Path:
        return self.dir / "pid"

    @property
    def console_log(self) -> Path:
        return self.dir / "console.log"

    def log_files(self) -> list[Path]:
        """Logs worth showing when the service fails, most telling last."""
        return [self.console_log]

    def base_env(self) -> dict[str, str]:
        keep = ("PATH", "LANG", "LC_ALL", "HOME", "USER", "LOGNAME", "TZ")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        return env

    @abstractmethod
    def listens(self) -> list[tuple[str, int]]:
        """Addresses this service binds (checked free before a start)."""

    @abstractmethod
    def prepare(self) -> None:
        """Create directories, configuration and secrets (idempotent, keeps existing data)."""

    @abstractmethod
    def commands(self) -> list[Command]:
        """Processes to start in one group; the first one leads it."""

    @abstractmethod
    def check_ready(self) -> None:
        """Talk to the service with a real client; raise NotReady if it does not answer yet."""

    def signature(self) -> str:
        """What a running instance must match to be reused (else it is restarted)."""
        return repr(self.listens())

    def describe(self) -> str:
        return ", ".join(f"{h}:{p}" for h, p in self.listens())


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def port_bindable(host: str, port: int) -> bool:
    """True if nothing listens on host:port (SO_REUSEADDR, like the servers themselves)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        return False
    finally:
        sock.close()
    return True


def tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(data.splitlines()[-lines:])
