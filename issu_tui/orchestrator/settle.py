"""finalize's settle-old-writers step: old's writers catch up with the fenced api-server before
they are stopped.

schema-transformer, svc-monitor and device-manager derive their own state (route targets and
their ZooKeeper ids, useragent keys, link-local addresses...) from the api-server's changes,
a moment after them. Stopped right after the fence, they leave the last changes underived on
old: post-sync then copies old's state without it, and new's writers, started after verify,
derive it on new only, so new ends with cells and ZooKeeper ids that old never had.

Each of them consumes the api-server's notifications (`vnc_config.object-update`) from a
queue of its own on old's broker (`schema_transformer.<host>`, `svc_mon.<host>` or
`svc_monitor.<host>`, `device_manager.<host>`) and acks a message once it has handled it.
The positive signal: where an old controller host's profile has a `queues` step, the step
waits until every such queue has no message ready and none unacknowledged, twice in a row.
The queues are not durable and go when their writer stops, so a missing one is not "nothing
to wait for": each writer the inventory runs on old (a config host's writers its profile
maps) must have its queue, named after one of its hosts (its name, an FQDN starting with it,
or its address). One per writer, not per host: with several config hosts Contrail's writers
are active-backup (a ZooKeeper master election; only the active one opens its queue). One
missing at the timeout is refused naming the writer and its hosts.
Without one, the tables post-sync copies are read on old until they stay unchanged for
`sync.writers_settle_s` (a heuristic: a writer further behind passes it; said so).
Not settled within `sync.writers_settle_timeout_s`: refused, unless finalize --force.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from backends.cassandra.registry import TableSpec, load_registry
from issu_tui.config import ControllerHostConfig, IssuConfig
from issu_tui.orchestrator.context import Context, OrchestratorError
from issu_tui.sides import issu_keyspaces

POLL_S = 0.5


def writer_tables(ctx: Context) -> list[TableSpec]:
    """The tables post-sync copies (the writers' own: every keyspace but config_db_uuid)."""
    registry = load_registry()
    wanted = issu_keyspaces(ctx.config, registry)
    names = [k for k in wanted if k in registry.keyspaces and registry.keyspaces[k].post_sync]
    return registry.tables(names)


# Contrail's writers' queue names (cfgm_common's VncAmqpHandle: '<prefix>.<host>'; svc-monitor
# was 'svc_mon.<host>' before it used the common handle)
WRITER_QUEUES = {"schema-transformer": ("schema_transformer.",),
                 "svc-monitor": ("svc_mon.", "svc_monitor."),
                 "device-manager": ("device_manager.",)}
WRITER_QUEUE_PREFIXES = tuple(p for prefixes in WRITER_QUEUES.values() for p in prefixes)


def expected_writers(config: IssuConfig) -> dict[str, list[ControllerHostConfig]]:
    """Each writer old's inventory runs -> the hosts it runs on: its config hosts' writers
    that their profile maps (a deployment without device-manager leaves it out)."""
    from backends.controller import build_controller_profiles
    from issu_tui.orchestrator.controllers import mapped_services

    profiles = build_controller_profiles(config.controller_profiles)
    out: dict[str, list[ControllerHostConfig]] = {}
    for host in config.old.controllers:
        if "config" in host.roles and host.profile in profiles:
            services, _ = mapped_services(profiles[host.profile], host, tuple(WRITER_QUEUES))
            for service in services:
                out.setdefault(service, []).append(host)
    return out


def queue_of(writer: str, hosts: list[ControllerHostConfig], names: list[str]) -> str | None:
    """The queue of `writer` on one of `hosts` among `names` ('<prefix>.<host>': Contrail
    names it after the writer's host name, FQDN or address)."""
    for name in names:
        for prefix in WRITER_QUEUES[writer]:
            if not name.startswith(prefix):
                continue
            where = name[len(prefix):]
            if any(where in (h.name, h.address) or where.startswith(f"{h.name}.")
                   for h in hosts):
                return name
    return None


def settle_old_writers(ctx: Context, *, force: bool = False, reason: str = "",
                       clock: Callable[[], float] = time.monotonic,
                       sleep: Callable[[float], None] = time.sleep) -> str:
    """Wait until old's writers have caught up (their queues, else their tables)."""
    host = _queues_host(ctx)
    if host is not None:
        return _settle_by_queues(ctx, host, force=force, reason=reason, clock=clock,
                                 sleep=sleep)
    return _settle_by_tables(ctx, force=force, reason=reason, clock=clock, sleep=sleep)


def _queues_host(ctx: Context) -> ControllerHostConfig | None:
    return queues_host(ctx.config)


def queues_host(config: IssuConfig) -> ControllerHostConfig | None:
    """The old controller host to list the broker's queues on: of those whose profile has a
    `queues` step, one on old's broker (`rabbitmqctl` talks to the node it runs on), else
    the first."""
    from backends.controller import build_controller_profiles

    profiles = build_controller_profiles(config.controller_profiles)
    able = [h for h in config.old.controllers
            if h.profile in profiles and profiles[h.profile].has_queues]
    brokers = {h.rsplit(":", 1)[0] if h.count(":") == 1 else h.strip("[]")
               for h in config.old.rabbit.hosts}
    return next((h for h in able if h.address in brokers), able[0] if able else None)


def settle_planned(config: IssuConfig) -> str:
    """What settle-old-writers waits on, for `issu plan`."""
    from backends.compute import ProfileError

    try:
        host = queues_host(config)
    except ProfileError as exc:
        return f"settle-old-writers: {exc}"
    if host is not None:
        expected = ", ".join(f"{w} on {' or '.join(h.name for h in hosts)}"
                             for w, hosts in expected_writers(config).items())
        return (f"old's writers' queues on old's broker (vhost {config.old.rabbit.vhost}) "
                f"drained and acknowledged, listed over SSH on {host.name} (profile "
                f"{host.profile}, step queues); one queue expected per writer: "
                f"{expected or 'none configured'}")
    return (f"old's writers' tables on old unchanged for {config.sync.writers_settle_s:g}s "
            "(no `queues` step in old's controller profiles: a heuristic)")


def _timed_out(ctx: Context, what: str, *, force: bool, reason: str) -> str:
    """Not settled: refused unless --force (then a warning with the reason)."""
    if not force:
        raise OrchestratorError(
            f"settle-old-writers: {what}; old's writers have not caught up with the changes "
            "made before the fence (stopped now, they would leave them underived on old and "
            "new's writers would derive them on new only). Look at old's schema-transformer, "
            "svc-monitor and device-manager (running? their logs), then run finalize again; "
            "or finalize --force --reason '...' to stop them anyway")
    ctx.event("finalize", f"settle-old-writers: {what}; stopping them anyway, forced: {reason}",
              level="warning", reason=reason)
    return f"{what}, forced: {reason}"


def _settle_by_queues(ctx: Context, host: ControllerHostConfig, *, force: bool, reason: str,
                      clock: Callable[[], float], sleep: Callable[[float], None]) -> str:
    from backends.controller import ControllerError
    from issu_tui.orchestrator.controllers import executor, target

    vhost, timeout_s = ctx.config.old.rabbit.vhost, ctx.config.sync.writers_settle_timeout_s
    ex = executor(ctx)
    expected = expected_writers(ctx.config)
    began, quiet_polls, busy = clock(), 0, ""
    while True:
        try:
            queues = [q for q in ex.queues(target(host), host.profile, vhost)
                      if q.name.startswith(WRITER_QUEUE_PREFIXES)]
        except ControllerError as exc:
            raise OrchestratorError(f"settle-old-writers: cannot list old's queues: {exc}"
                                    ) from None
        names = [q.name for q in queues]
        missing = {w: hosts for w, hosts in expected.items()
                   if queue_of(w, hosts, names) is None}
        if expected:  # the inventory's writers' queues only (not a foreign host's leftover)
            ours = {queue_of(w, hosts, [n]) for w, hosts in expected.items() for n in names}
            queues = [q for q in queues if q.name in ours]
        if not names and not expected:
            return (f"no writer queue on old's broker (vhost {vhost}, asked on {host.name}) "
                    "and no writer in old's inventory (no config host maps one): nothing "
                    "to wait for")
        pending = [q for q in queues if q.ready or q.unacked]
        quiet_polls = 0 if pending or missing else quiet_polls + 1
        if quiet_polls >= 2:
            return (f"old's writers settled: their queues on old's broker are empty and "
                    f"acknowledged ({', '.join(q.name for q in queues)}; asked on {host.name}, "
                    f"{clock() - began:.1f}s)")
        if pending:
            busy = "; ".join(f"{q.name} {q.ready} ready, {q.unacked} unacknowledged"
                             for q in pending)
        if clock() - began >= timeout_s:
            if missing:
                return _timed_out(ctx, _missing_queues(missing, names, vhost, host, timeout_s),
                                  force=force, reason=reason)
            return _timed_out(ctx, f"old's writers' queues not drained after {timeout_s:g}s "
                              f"({busy or 'never quiet twice in a row'})", force=force,
                              reason=reason)
        sleep(POLL_S)


def _missing_queues(missing: dict[str, list[ControllerHostConfig]], names: list[str],
                    vhost: str, asked: ControllerHostConfig, timeout_s: float) -> str:
    """Why a missing queue is not settled, naming each writer and its hosts."""
    which = "; ".join(
        f"{w} on {' or '.join(f'{h.name} ({h.address})' for h in hosts)}: no queue "
        f"{WRITER_QUEUES[w][0]}<host> (its name, FQDN or address)"
        for w, hosts in missing.items())
    present = ", ".join(names) or "none"
    return (f"no queue of old's {which} on old's broker (vhost {vhost}, asked on "
            f"{asked.name}) after {timeout_s:g}s; writer queues present: {present}. A "
            "writer's queue goes when it stops: it is not running (on any of its hosts: "
            "the active one of an active-backup set has the queue), or its queue is named "
            "after another host name (a deployment without the writer: leave it out of the "
            "hosts' controller profile services)")


def _settle_by_tables(ctx: Context, *, force: bool, reason: str,
                      clock: Callable[[], float], sleep: Callable[[float], None]) -> str:
    """Without a `queues` step: old's writer tables unchanged for the quiet window."""
    from backends.cassandra.connection import connect
    from backends.cassandra.schema import keyspace_exists
    from issu_tui.orchestrator.preflight import _side

    quiet_s, timeout_s = ctx.config.sync.writers_settle_s, ctx.config.sync.writers_settle_timeout_s
    if quiet_s <= 0:
        return "not waited for (sync.writers_settle_s = 0)"
    old = ctx.config.old.cassandra
    with connect(_side(ctx, ctx.config.old), request_timeout=60) as conn:
        tables = [t for t in writer_tables(ctx)
                  if keyspace_exists(conn.session, old.keyspace(t.keyspace))]
        if not tables:
            return "no writer keyspace on old: nothing to wait for"

        def digest() -> str:
            h = hashlib.sha256()
            for t in tables:
                h.update(f"\0{t.qualified}\0".encode())
                statement = f'SELECT * FROM "{old.keyspace(t.keyspace)}"."{t.name}"'
                for row in conn.session.execute(statement):
                    h.update(repr(tuple(row)).encode())
            return h.hexdigest()

        began = clock()
        last, quiet_since, changes = digest(), clock(), 0
        while clock() - quiet_since < quiet_s:
            if clock() - began >= timeout_s:
                return _timed_out(ctx, f"old's writers still changing {len(tables)} table(s) "
                                  f"after {timeout_s:g}s ({changes} change(s) seen)",
                                  force=force, reason=reason)
            sleep(min(POLL_S, quiet_s))
            now = digest()
            if now != last:
                last, quiet_since, changes = now, clock(), changes + 1
    return (f"old's writers settled: {len(tables)} table(s) unchanged for {quiet_s:g}s "
            f"({changes} change(s) seen after the fence, {clock() - began:.1f}s; no `queues` "
            "step on old's controller profiles: unchanged tables are a heuristic, a writer "
            "further behind passes it)")
