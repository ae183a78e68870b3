"""`issu config generate --from-api-servers`: both clusters' node records and releases, read
from their api-servers and analytics, added to the config the api confs gave."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backends.apiserver import ApiServerClient, ApiServerError
from backends.cluster_version import ClusterVersionError, cluster_release
from backends.node_records import NodeRecord, copied_from, node_records
from backends.northbound_hosts import NorthboundHostsError, northbound_services
from issu_tui.config import InventorySsh, add_node_records


def _read_records(url: str, token_file: Path | None) -> list[NodeRecord]:
    token = token_file.read_text().strip() if token_file else None
    with ApiServerClient(url, token=token) as api:
        return node_records(api)


def _northbound_records(analytics: str, records: list[NodeRecord]) -> list[NodeRecord]:
    """The hosts the cluster's analytics says run kube-manager or the vCenter plugin, as
    role `northbound` records: at the address of the config-node record of the same name,
    else at the host name itself (SSH resolves it)."""
    addresses = {r.name: r.address for r in records if r.obj_type == "config-node"}
    return [NodeRecord("config-node UVE", name, "northbound", addresses.get(name) or name, "")
            for name in northbound_services(analytics)]


def fill_from_api_servers(data: dict[str, Any], token_files: dict[str, Path | None],
                          inventory: InventorySsh | None) -> list[str]:
    """Add each side's node records (and, where no version was given, the release its
    analytics reports) to `data`; the problems found, one line each naming the server."""
    problems: list[str] = []
    records: dict[str, list[NodeRecord]] = {}
    for side in ("old", "new"):
        url = data[side]["api_server"]["url"]
        try:
            records[side] = _read_records(url, token_files.get(side))
        except (ApiServerError, OSError) as exc:
            problems.append(f"{side} api-server: {exc}")
        if token_files.get(side):
            data[side]["api_server"]["password"] = f"file:{token_files[side]}"
    if problems:
        return problems
    # After a sync the new database also holds old's records: they are not new's hosts.
    copies = copied_from(records["new"], records["old"])
    records["new"] = [r for r in records["new"] if r not in copies]
    for side in ("old", "new"):
        add_node_records(data, side, records[side], inventory)
        analytics = (data[side].get("analytics") or {}).get("url")
        if inventory is not None and analytics:
            try:
                found = _northbound_records(analytics, records[side])
            except NorthboundHostsError as exc:
                problems.append(f"{side}'s northbound hosts: its analytics could not tell "
                                f"them: {exc}")
            else:
                add_node_records(data, side, records[side] + found, inventory)
        if data[side].get("version"):
            continue
        analytics = (data[side].get("analytics") or {}).get("url")
        if not analytics:
            problems.append(f"--{side}-version: not given, and {side}'s api-server "
                            f"({data[side]['api_server']['url']}) holds no analytics-node to "
                            "read it from: give it")
            continue
        try:
            data[side]["version"] = cluster_release(analytics)
        except ClusterVersionError as exc:
            problems.append(f"--{side}-version: not given, and {side}'s analytics could not "
                            f"tell it: {exc}")
    return problems
