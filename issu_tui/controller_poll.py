"""The console's poll of the controller hosts (issu_tui/controller_view.py): each host's
services that its roles run and its profile maps, asked over SSH through the profile's
`status` step (what preflight and finalize use), all hosts at once. A host whose profile
maps none of them (a database or northbound host on the demo profile) is not asked; a host
that cannot be asked is listed with the reason.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from backends.compute import ProfileError
from backends.controller import ROLE_SERVICES, ControllerError, ControllerExecutor
from backends.ssh import SshTarget
from issu_tui.config import ControllerHostConfig, IssuConfig
from issu_tui.controller_view import (
    SHOWN_ROLES,
    ControllersView,
    HostServices,
    controller_hosts,
)


def shown_services(host: ControllerHostConfig, mapped: set[str]) -> list[str]:
    wanted = [s for role in SHOWN_ROLES if role in host.roles for s in ROLE_SERVICES[role]]
    return [s for s in wanted if s in mapped]


def poll_controllers(config: IssuConfig, timeout_s: float = 20.0) -> ControllersView | None:
    """Every controller host's services and their states; None without an inventory."""
    hosts = controller_hosts(config)
    if not hosts or config.ssh is None:
        return None
    ssh = config.ssh
    try:
        ex = ControllerExecutor(ssh.known_hosts, min(ssh.connect_timeout_s, timeout_s),
                                timeout_s, config.controller_profiles)
    except ProfileError as exc:
        return ControllersView(tuple(HostServices(side, h.name, h.address, tuple(h.roles),
                                                  error=str(exc)) for side, h in hosts))

    def one(item: tuple[str, ControllerHostConfig]) -> HostServices | None:
        side, host = item
        roles = tuple(r for r in SHOWN_ROLES if r in host.roles)
        try:
            services = shown_services(host, set(ex.profile(host.profile).services))
            if not services:
                return None
            target = SshTarget(host.name, host.address, host.ssh_port, host.ssh_user,
                               host.ssh_key)
            states = ex.status(target, host.profile, services)
        except (ControllerError, ProfileError) as exc:
            return HostServices(side, host.name, host.address, roles, error=str(exc))
        return HostServices(side, host.name, host.address, roles,
                            tuple((s.service, s.state) for s in states))

    with ThreadPoolExecutor(max_workers=min(8, len(hosts))) as pool:
        found = [h for h in pool.map(one, hosts) if h is not None]
    return ControllersView(tuple(found))
