"""The original snapshot format of Contrail's `db_json_exim.py` (cfgm_common), as a contract.

One JSON document, gzip-compressed when the file name ends in `.gz`:

    {"cassandra": {KEYSPACE: {COLUMN_FAMILY: {ROW_KEY: {COLUMN: [VALUE, WRITETIME]}}}},
     "zookeeper": "<a JSON text: [[PATH, [VALUE, STAT]], ...]>"}

Keyspaces are named without the cluster-id prefix. The ZooKeeper part is a string holding its
own JSON text: one entry per znode, PATH built as `<cluster_id>/<name>/.../` (so `/a/b/` without
a cluster id, `v1/a/b/` with one), STAT being kazoo's ZnodeStat as a list. The original writes
only the leaves (interior nodes come back with empty data); this implementation also writes an
interior node whose data is not empty, before its children, which the original's import reads
the same way (it creates each entry with `makepath`, in document order).
"""

from __future__ import annotations

import json

# The keyspaces the original exports (each one only when it exists on the cluster).
KEYSPACES: tuple[str, ...] = ("config_db_uuid", "useragent", "to_bgp_keyspace",
                              "svc_monitor_keyspace", "dm_keyspace")

# ZooKeeper names the original skips: other applications' nodes (Kafka's, ZooKeeper's own),
# locks, elections and the daemons' own state. On export a node whose name is in the list is
# skipped with its subtree at any depth; on import, entries whose first-level name is in it.
_ZK_IGNORED = ("consumers", "config", "controller", "isr_change_notification", "admin",
               "brokers", "zookeeper", "controller_epoch", "api-server-election",
               "vnc_api_server_locks", "vnc_api_server_obj_create", "schema-transformer",
               "device-manager", "svc-monitor", "contrail_cs", "lockpath",
               "analytics-discovery-", "vcenter-plugin", "vcenter-fabric-manager")

STAT_EPHEMERAL_OWNER = 7  # index of ephemeralOwner in kazoo's ZnodeStat


def zk_ignore_list(cluster_id: str) -> frozenset[str]:
    """The original's ignore list for a cluster id (it adds `analytics-discovery-<id>`)."""
    return frozenset((*_ZK_IGNORED, "analytics-discovery-" + cluster_id))


def file_path(cluster_id: str, rel: str) -> str:
    """PATH of the znode `rel` (relative to the cluster's root) as the original writes it."""
    return f"{cluster_id}/{rel}/" if rel else f"{cluster_id}/"


def relative_path(path: str) -> tuple[str, str]:
    """(cluster id, path relative to its root) of a PATH of the file; ValueError if it is not
    one (no `/`, or an empty name inside)."""
    cluster_id, sep, rest = path.partition("/")
    if not sep:
        raise ValueError(f"{path!r} is not a ZooKeeper path")
    rel = rest[:-1] if rest.endswith("/") else rest
    if rel and any(part == "" for part in rel.split("/")):
        raise ValueError(f"{path!r} has an empty name in it")
    return cluster_id, rel


class SnapshotError(ValueError):
    """The file is not a snapshot of this format (or is truncated/corrupt); the message names
    the file, the position and the place in the document."""

    def __init__(self, file: str, message: str, *, offset: int | None = None,
                 where: str = "") -> None:
        self.file, self.offset, self.where, self.reason = file, offset, where, message
        parts = [file]
        if offset is not None:
            parts.append(f"offset {offset}")
        if where:
            parts.append(f"at {where}")
        super().__init__(": ".join([", ".join(parts), message]))


def path_in_document(*names: str) -> str:
    """`cassandra["ks"]["table"]["row"]`-style location for error messages."""
    if not names:
        return "the document"
    head, *rest = names
    return head + "".join(f"[{json.dumps(n)}]" for n in rest)
