"""The ring runner on a real deployment: database hosts reached over SSH as the controller
inventory (`[[old.controllers]]` / `[[new.controllers]]`) lists them, their services driven
through their controller profiles (backends/controller.py).

A node's conversion to v2 here: issu_tui/orchestrator/convert.py (v1 stopped, v2 installed
through the profile's `install` step, recorded, started database first, version read back);
a node recorded as converted is driven through its v2 profile (its `[[new.controllers]]`
entry) from then on.
A node that left the ring (stay) is stopped (checked stopped), its database directories (the
profile's `cassandra_dirs`) emptied over SSH, then converted as above: it bootstraps into
the ring as a new v2 node.
"""

from __future__ import annotations

from collections.abc import Sequence

from backends.cassandra.nodetool import Nodetool
from backends.controller import ROLE_SERVICES, ROLES, ControllerError, ControllerExecutor
from backends.hostport import HostSet
from backends.rabbit_cluster import RabbitClusterView, RabbitStatusError, parse_cluster_status
from backends.ssh import SshExecutor, SshTarget
from issu_tui.config import ControllerHostConfig, IssuConfig
from issu_tui.journal import Journal
from issu_tui.orchestrator.convert import (
    Conversion,
    absent_said,
    convert_node,
    converted,
    serving,
    stop_present,
)
from issu_tui.orchestrator.ringrun import RingHooks, RingRunner
from issu_tui.sides import cassandra_side, issu_keyspaces

DATABASE = ROLE_SERVICES["database"]


def _hosts_by_address(config: IssuConfig) -> dict[str, ControllerHostConfig]:
    hosts: dict[str, ControllerHostConfig] = {}
    for host in [*config.old.controllers, *config.new.controllers]:
        hosts.setdefault(host.address, host)
    return hosts


def controller_runner(config: IssuConfig, nodetool_argv: Sequence[str],
                      min_replicas: int | None, journal: Journal,
                      timeout_s: float = 3600.0) -> RingRunner:
    """ValueError names a database node without a controller host or a missing [ssh].
    `timeout_s` bounds each long step (a repair, a decommission, a join) and its wait."""
    if config.ssh is None:
        raise ValueError("[ssh] is missing: the ring steps reach the database hosts over SSH")
    hosts = _hosts_by_address(config)
    v2_hosts = {h.address: h for h in config.new.controllers}
    try:  # a node converted already: driven through its v2 entry
        hosts.update({a: v2_hosts[a] for a in converted(config.state_dir) if a in v2_hosts})
    except ControllerError as exc:
        raise ValueError(str(exc)) from None
    nodes = dict.fromkeys([*config.old.cassandra.hosts, *config.new.cassandra.hosts])
    missing = [n for n in nodes if n not in hosts]
    if missing:
        raise ValueError(f"database node(s) {', '.join(missing)} have no [[old.controllers]] "
                         "or [[new.controllers]] entry (address, roles, profile, ssh)")
    controllers = ControllerExecutor(config.ssh.known_hosts, config.ssh.connect_timeout_s,
                                     900, config.controller_profiles)

    def target(address: str) -> SshTarget:
        host = hosts.get(address)
        if host is None:  # a ring member the inventory does not list
            raise ValueError(f"ring node {address} has no [[old.controllers]] or "
                             "[[new.controllers]] entry: issu cannot reach it over SSH")
        return SshTarget(host.name, host.address, host.ssh_port, host.ssh_user, host.ssh_key)

    def services(address: str, *, database: bool) -> list[str]:
        host = hosts[address]
        mapped = set(controllers.profile(host.profile).services)
        ordered = [s for role in ROLES if role in host.roles for s in ROLE_SERVICES[role]
                   if s in mapped and (database or s not in DATABASE)]
        return list(dict.fromkeys(ordered))

    def start_database(address: str) -> None:
        host = hosts[address]
        controllers.act(target(address), host.profile, "start", ["cassandra"])

    def stop_v1(address: str) -> None:
        host = hosts[address]
        absent = stop_present(controllers, target(address), host,
                              list(reversed(services(address, database=False))),
                              "its v1 services not stopped")
        if absent:
            _event(journal, f"{host.name}: stop v1: {absent_said(absent)}")

    def stop_node(address: str) -> None:
        host = hosts[address]
        wanted = list(reversed(services(address, database=True)))
        absent = stop_present(controllers, target(address), host, wanted,
                              "its database directories are left alone")
        wanted = [s for s in wanted if s not in absent]
        # its directories are emptied next: never under a database still running
        running = [s for s in controllers.status(target(address), host.profile, wanted)
                   if s.running]
        if running:
            raise ControllerError(f"{host.name}: after stop still running: "
                                  + ", ".join(f"{s.service} ({s.state})" for s in running)
                                  + "; its database directories are left alone")

    def convert(address: str) -> None:
        v1 = hosts[address]
        conversion = Conversion(v1, v2_hosts.get(address, v1), config.new.version)
        convert_node(controllers, conversion, target(address), config.state_dir,
                     lambda message: _event(journal, message),
                     serves=lambda host: serving(config.new, host),
                     serve_wait_s=min(timeout_s, 120.0))
        hosts[address] = conversion.v2

    def rabbit_status(stopping: tuple[str, ...]) -> RabbitClusterView | None:
        """The broker cluster as read on a database host (one the step keeps first), when
        the step stops the broker of a host whose profile runs one; None otherwise."""
        brokers = [a for a, h in hosts.items() if "database" in h.roles
                   and "rabbitmq" in controllers.profile(h.profile).services]
        stopped = HostSet(stopping)
        if not any(a in stopped for a in brokers):
            return None
        failures = []
        for address in sorted(brokers, key=lambda a: a in stopped):
            try:
                view = parse_cluster_status(
                    controllers.rabbit_status(target(address), hosts[address].profile))
            except (ControllerError, RabbitStatusError) as exc:
                failures.append(f"{address}: {exc}")
                continue
            # a member is matched to a host by resolving its node name's host part here:
            # a stopped broker no member resolves to would pass as "not touched"
            unmatched = [a for a in brokers if a in stopped
                         and not any(view.host(m) in HostSet([a]) for m in view.members)]
            if unmatched:
                raise ControllerError(
                    f"the broker on {', '.join(unmatched)} (stopped by the step) is none of "
                    f"the RabbitMQ cluster's members as this host resolves their names "
                    f"({', '.join(view.members)}), so the step is not guarded: make those "
                    "names resolve to the hosts' addresses here (DNS or /etc/hosts)")
            return view
        # nothing shows stopping the broker safe: refused rather than guessed
        raise ControllerError("the RabbitMQ cluster's status could not be read, so stopping "
                              f"the broker on {', '.join(stopping)} is not guarded: "
                              + "; ".join(failures))

    def clear_data(address: str) -> list[str]:
        host = hosts[address]
        return controllers.clear_cassandra_dirs(target(address), host.profile)

    ssh = SshExecutor(config.ssh.known_hosts, config.ssh.connect_timeout_s, timeout_s)
    # Old's keyspaces and new's (after pre-sync they share the ring; after finalize new's
    # serve and old's are kept for the way back): the runner uses those in the ring.
    names = issu_keyspaces(config)
    keyspaces = list(dict.fromkeys([*(config.old.cassandra.keyspace(k) for k in names),
                                    *(config.new.cassandra.keyspace(k) for k in names)]))
    return RingRunner(
        cassandra_side(config, "old"), Nodetool(ssh, target, nodetool_argv, timeout_s),
        RingHooks(start_database, convert, stop_v1, rabbit_status, stop_node=stop_node,
                  clear_data=clear_data), keyspaces,
        zk_hosts=list(config.old.zookeeper.hosts),
        new_zk_hosts=list(config.new.zookeeper.hosts), min_replicas=min_replicas,
        step_done=journal.step_done, mark_step=journal.mark_step,
        on_event=lambda message: _event(journal, message), wait_s=timeout_s)


def _event(journal: Journal, message: str) -> None:
    journal.event("ring", message)
