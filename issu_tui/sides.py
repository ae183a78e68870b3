"""The configuration mapped to the backends' types, in one place: the command-line tools
(sync_cli, runsync_cli) and the orchestrator (preflight, finalize) all take their
CassandraSide, RabbitSide, SyncSettings and RunSyncOptions from here.

The backends are imported when a mapping is asked for, not with this module, so that
loading a command (`issu --help` loads them all) does not load the Cassandra driver.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from issu_tui.config import ClusterConfig, IssuConfig

if TYPE_CHECKING:
    from backends.cassandra.connection import CassandraSide
    from backends.cassandra.registry import Registry
    from backends.cassandra.tables import SyncSettings
    from backends.rabbit import RabbitSide
    from backends.runsync.options import RunSyncOptions

Which = Literal["old", "new"]


# The reverse replication new -> old after finalize (issu revert) consumes its own durable
# queue on new's broker: `<sync.queue_name>.reverse`.
REVERSE_QUEUE_SUFFIX = ".reverse"


def reversed_config(config: IssuConfig) -> IssuConfig:
    """The configuration seen from the reverse replication: new is its source ("old"), old
    its target ("new"), its queue `<queue_name>.reverse` (on new's broker)."""
    sync = config.sync.model_copy(
        update={"queue_name": config.sync.queue_name + REVERSE_QUEUE_SUFFIX})
    return config.model_copy(update={"old": config.new, "new": config.old, "sync": sync})


def cluster(config: IssuConfig, which: Which) -> ClusterConfig:
    return config.old if which == "old" else config.new


def issu_keyspaces(config: IssuConfig, registry: Registry | None = None) -> list[str]:
    """The ISSU keyspaces of the upgrade, unprefixed: `sync.keyspaces`, or when it is unset
    every registered one (Contrail's five and any `issu.keyspaces` entry point's). The copy,
    verify, preflight, the ring steps' replication changes and the quorum guard all take
    theirs from here, so that none of them looks at fewer keyspaces than the others."""
    if config.sync.keyspaces:
        return list(config.sync.keyspaces)
    if registry is None:
        from backends.cassandra.registry import load_registry

        registry = load_registry()
    return sorted(registry.keyspaces)


def cassandra_side(config: IssuConfig, which: Which,
                   overrides: Mapping[str, Any] | None = None) -> CassandraSide:
    """The backend's view of one cluster's Cassandra, named `which` in its messages unless
    `overrides` (CassandraSide fields, e.g. the legacy tools' options) say otherwise."""
    from backends.cassandra.connection import CassandraSide

    side_config = cluster(config, which)
    c = side_config.cassandra
    side = CassandraSide(
        name=which, hosts=tuple(c.hosts), port=c.port, user=c.user,
        password=c.password.get_secret_value() if c.password is not None else None,
        use_ssl=c.use_ssl, ca_certs=str(c.ca_certs) if c.ca_certs else None,
        prefix=c.prefix, version=side_config.version)
    if overrides:
        side = dataclasses.replace(side, **overrides)
    return side


def rabbit_side(side: ClusterConfig) -> RabbitSide:
    """One cluster's RabbitMQ (its vhost) as run-sync connects to it; ValueError names an
    unknown rabbit ssl_version."""
    from backends.rabbit import RabbitSide, tls_version

    r = side.rabbit
    tls_version(r.ssl_version)
    return RabbitSide(
        name=side.name, hosts=tuple(r.hosts), port=r.port, user=r.user,
        password=r.password.get_secret_value(), vhost=r.vhost, use_ssl=r.use_ssl,
        ssl_ca_certs=str(r.ssl_ca_certs) if r.ssl_ca_certs else None,
        ssl_keyfile=str(r.ssl_keyfile) if r.ssl_keyfile else None,
        ssl_certfile=str(r.ssl_certfile) if r.ssl_certfile else None,
        ssl_version=r.ssl_version, ha_mode=r.ha_mode, exchange=r.exchange)


def sync_settings(config: IssuConfig, *, keyspaces: tuple[str, ...] = (),
                  slices: int | None = None, concurrency: int | None = None,
                  page_size: int | None = None) -> SyncSettings:
    """The copy's and the replicator's settings: `sync` of the config, each knob overridable
    (a command's options); `keyspaces` chooses among the registered ones (default: the
    config's `sync.keyspaces`, else all)."""
    from backends.cassandra.tables import SyncSettings

    s = config.sync
    chosen = tuple(keyspaces) or (tuple(s.keyspaces) if s.keyspaces else None)
    return SyncSettings(concurrency=concurrency or s.concurrency,
                        page_size=page_size or s.page_size,
                        slices_per_table=slices or s.slices_per_table, keyspaces=chosen)


def run_sync_options(config: IssuConfig, *, catch_up: bool = True,
                     force_catch_up: bool = False, metrics_listen: str | None = None,
                     reconcile_interval_s: float | None = None,
                     prefetch: int | None = None, reverse: bool = False) -> RunSyncOptions:
    """run-sync's options from `sync` of the config and the command's overrides (None: the
    config's value); ValueError unless the metrics endpoint is a loopback host:port."""
    from backends.runsync.metrics import parse_listen
    from backends.runsync.options import RunSyncOptions

    sync = config.sync
    options = RunSyncOptions(
        queue_name=sync.queue_name,
        # Applying a message is mostly waiting on Cassandra round trips: 8 lanes per unit of
        # sync.concurrency (64 by default, in each apply process), an object in one lane at
        # a time. More lanes make bigger group commits (combine.py): fewer requests and
        # thread wake-ups per change (64 lanes drained 1.3x faster than 32 with 20 % less
        # CPU per change, docs/benchmarks-archive.md).
        concurrency=sync.concurrency * 8,
        prefetch=prefetch or sync.concurrency * 32 * sync.apply_processes,
        processes=sync.apply_processes,
        reconcile_interval_s=reconcile_interval_s or sync.reconcile_interval_s,
        reconcile_slices=sync.slices_per_table,
        catch_up=catch_up,
        force_catch_up=force_catch_up,
        old_version=config.old.version,
        new_version=config.new.version,
        metrics_listen=metrics_listen if metrics_listen is not None else sync.metrics_listen,
        reverse=reverse,
    )
    if options.metrics_listen:
        parse_listen(options.metrics_listen)
    return options
