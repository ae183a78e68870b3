"""finalize's settle-old-writers step: old's writers catch up with the fenced api-server before
they are stopped.

schema-transformer, svc-monitor and device-manager derive their own state (route targets and
their ZooKeeper ids, useragent keys, link-local addresses...) from the api-server's changes,
a moment after them. Stopped right after the fence, they leave the last changes underived on
old: post-sync then copies old's state without it, and new's writers, started after verify,
derive it on new only, so new ends with cells and ZooKeeper ids that old never had.

After the fence nothing else writes to the tables post-sync copies, so they are read on old
until they stay unchanged for `sync.writers_settle_s` (the writers have caught up), at most
`sync.writers_settle_timeout_s`; then stop-old-services stops them. Past the timeout the step
goes on with a warning: new's writers derive what old's had not.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from backends.cassandra.registry import TableSpec, load_registry
from issu_tui.orchestrator.context import Context

POLL_S = 0.5


def writer_tables(ctx: Context) -> list[TableSpec]:
    """The tables post-sync copies (the writers' own: every keyspace but config_db_uuid)."""
    registry = load_registry()
    wanted = ctx.config.sync.keyspaces or sorted(registry.keyspaces)
    names = [k for k in wanted if k in registry.keyspaces and registry.keyspaces[k].post_sync]
    return registry.tables(names)


def settle_old_writers(ctx: Context, *, clock: Callable[[], float] = time.monotonic,
                       sleep: Callable[[float], None] = time.sleep) -> str:
    """Wait until the writers' tables on old stay unchanged for the quiet window."""
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
                ctx.event("finalize", f"settle-old-writers: old's writers still changing "
                          f"{len(tables)} table(s) after {timeout_s:g}s; stopping them anyway "
                          "(new's writers derive what they had not)", level="warning")
                return f"still changing after {timeout_s:g}s ({changes} change(s) seen)"
            sleep(min(POLL_S, quiet_s))
            now = digest()
            if now != last:
                last, quiet_since, changes = now, clock(), changes + 1
    return (f"old's writers settled: {len(tables)} table(s) unchanged for {quiet_s:g}s "
            f"({changes} change(s) seen after the fence, {clock() - began:.1f}s)")
