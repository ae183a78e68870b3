"""A snapshot made the way Contrail's own `db_json_exim.py --export-to` makes one (its
`db_export`, followed step by step, re-written for CQL and Python 3), as an independent
reference for the tests and the export benchmark; nothing here uses backends.snapshot.

Like the original: the keyspaces of its list that exist, every column family of each, every
row read whole into one dict of `{column: (value, timestamp)}`, the whole database in memory;
ZooKeeper walked recursively from `<cluster_id>/`, leaves only, skipping any node whose name is
in its ignore list; `json.dumps` of the lot (the ZooKeeper part dumped to a string first).
Operators gzip the file afterwards; the original's import opens it by its `.gz` name.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

ORIGINAL_KEYSPACES = ["config_db_uuid", "useragent", "to_bgp_keyspace", "svc_monitor_keyspace",
                      "dm_keyspace"]


def original_ignore_list(cluster_id: str) -> set[str]:
    return {"consumers", "config", "controller", "isr_change_notification", "admin", "brokers",
            "zookeeper", "controller_epoch", "api-server-election", "vnc_api_server_locks",
            "vnc_api_server_obj_create", "schema-transformer", "device-manager", "svc-monitor",
            "contrail_cs", "lockpath", "analytics-discovery-",
            "analytics-discovery-" + cluster_id, "vcenter-plugin", "vcenter-fabric-manager"}


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def original_cassandra(session: Any, keyspace_prefix: str,
                       omit: tuple[str, ...] = ()) -> dict[str, Any]:
    contents: dict[str, Any] = {}
    existing = {r[0] for r in session.execute("SELECT keyspace_name FROM system_schema.keyspaces")}
    for ks_name in set(ORIGINAL_KEYSPACES) - set(omit):
        full = f"{keyspace_prefix}_{ks_name}" if keyspace_prefix else ks_name
        if full not in existing:
            continue
        contents[ks_name] = {}
        tables = [r[0] for r in session.execute(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (full,))]
        for cf_name in tables:
            rows: dict[str, dict[str, tuple[str, int]]] = {}
            for key, column, value, ts in session.execute(
                    f'SELECT key, column1, value, WRITETIME(value) FROM "{full}"."{cf_name}"'):
                rows.setdefault(_text(key), {})[_text(column)] = (value, ts)
            contents[ks_name][cf_name] = rows
    return contents


def original_zookeeper(zk: KazooClient, cluster_id: str) -> str:
    ignore = original_ignore_list(cluster_id)

    def get_nodes(path: str) -> list[tuple[str, tuple[str, list[int]]]]:
        if path[:-1].rpartition("/")[-1] in ignore:
            return []
        try:
            if not zk.get_children(path):
                data, stat = zk.get(path)
                return [(path, (_text(data or b""), list(stat)))]
        except NoNodeError:
            return []
        nodes = []
        for child in zk.get_children(path):
            nodes.extend(get_nodes(f"{path}{child}/"))
        return nodes

    return json.dumps(get_nodes(cluster_id + "/"))


def original_export(path: Path, session: Any, keyspace_prefix: str, zk: KazooClient,
                    cluster_id: str) -> dict[str, Any]:
    """Write the snapshot to `path` (gzip'd when it ends in .gz); returns the document."""
    document = {"cassandra": original_cassandra(session, keyspace_prefix),
                "zookeeper": original_zookeeper(zk, cluster_id)}
    text = json.dumps(document)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return document
