"""The console's view of the controller hosts: each host of both clusters' inventory with the
state of the services its roles run and its profile maps, asked over SSH through its
controller profile's `status` step (what preflight and finalize use), all hosts at once.

The data and which hosts; the poll itself (SSH) is issu_tui/controller_poll.py, loaded only
when a poll runs (the screens load no SSH client).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from issu_tui.config import ControllerHostConfig, IssuConfig

# the roles whose services the console shows, in this order
SHOWN_ROLES = ("config", "control", "analytics")


@dataclass(frozen=True)
class HostServices:
    side: str  # old / new
    name: str
    address: str
    roles: tuple[str, ...]
    services: tuple[tuple[str, str], ...] = ()  # (service, state as the host printed it)
    error: str | None = None

    @property
    def running(self) -> int:
        return sum(1 for _, state in self.services if running_state(state))


@dataclass(frozen=True)
class ControllersView:
    hosts: tuple[HostServices, ...]
    fetched_at: float = field(default_factory=time.time)


def running_state(state: str) -> bool:
    """A state a profile's status step prints for a running service."""
    return state.lower() in ("running", "active", "up")


def controller_hosts(config: IssuConfig) -> list[tuple[str, ControllerHostConfig]]:
    return [(side.name, h) for side in (config.old, config.new) for h in side.controllers
            if set(SHOWN_ROLES) & set(h.roles)]
