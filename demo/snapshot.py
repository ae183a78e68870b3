"""`issu demo up --snapshot FILE`: the operator's own config database behind the simulated v1.

The snapshot (the original `db_json_exim.py` format, `issu db export`'s too) is checked whole
before any service starts; once the services run it is imported into v1's Cassandra and
ZooKeeper before v1's controller starts, so the api-server serves the operator's objects and
the whole upgrade story runs on them. It goes into a fresh world only: v1 already holding data
is refused, and a marker in the world directory lets the next `up` reuse what was imported.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backends.snapshot.exim import SnapshotSummary

MARKER = Path("snapshot") / "imported.json"


class SnapshotWorldError(Exception):
    """The snapshot cannot become this world's v1 (the message says why and what to do)."""


def check(path: Path) -> SnapshotSummary:
    """Read the whole file; SnapshotError (naming the position) when it is not a snapshot."""
    from backends.snapshot.exim import scan_snapshot

    return scan_snapshot(path)


def recorded(world_dir: Path) -> dict[str, Any]:
    """What the world's v1 was loaded from ({} when it was not)."""
    try:
        data = json.loads((world_dir / MARKER).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_into_v1(world_dir: Path, path: Path, summary: SnapshotSummary, cassandra: tuple[str, int],
                 zk_hosts: str, progress: Callable[[str], None], down_hint: str) -> None:
    """Import `path` into v1's Cassandra (no keyspace prefix) and ZooKeeper (root)."""
    from backends.cassandra.connection import CassandraSide, connect
    from backends.cassandra.registry import load_registry
    from backends.snapshot.exim import ImportFailed, ImportRefused, import_snapshot
    from backends.zookeeper.sync import connect as zk_connect
    from demo.controller.store import CONFIG_KEYSPACE, create_schema

    path = path.resolve()
    before = recorded(world_dir)
    if before.get("path") == str(path):
        progress(f"v1 holds the snapshot {path} (imported before)")
        return
    if before:
        raise SnapshotWorldError(f"this world's v1 already holds the snapshot {before.get('path')}"
                                 f"; to start from {path}: {down_hint}")
    progress(f"importing the snapshot {path} into v1 ({summary.cells:,} cells, "
             f"{summary.znodes:,} znodes) ...")
    conn = connect(CassandraSide("old", (cassandra[0],), cassandra[1]))
    try:
        # v1's own tables first, in the simulated api-server's layout (the snapshot's
        # values are text either way); the import fills them
        create_schema(conn.session, CONFIG_KEYSPACE)
        zk = zk_connect(zk_hosts)
        try:
            report = import_snapshot(path, conn, zk, registry=load_registry(), summary=summary)
        finally:
            zk.stop()
            zk.close()
    except ImportRefused as exc:
        raise SnapshotWorldError(f"v1 already holds data, a snapshot goes into a fresh world "
                                 f"({exc}); {down_hint}") from None
    except ImportFailed as exc:
        raise SnapshotWorldError(f"importing {path} into v1 failed: {exc}") from None
    finally:
        conn.close()
    marker = world_dir / MARKER
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"path": str(path), "cells": report.cells,
                                  "znodes": report.znodes}) + "\n")
    progress(f"v1 holds the snapshot {path}: {report.cells:,} cells, {report.znodes:,} znodes "
             f"in {report.write_seconds:.1f} s")
