"""`issu config generate --from-api-servers`: both clusters' node records and releases, read
from their api-servers and analytics, added to the config the api confs gave."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backends.apiserver import ApiServerClient, ApiServerError
from backends.cluster_version import ClusterVersionError, cluster_release
from backends.node_records import NodeRecord, copied_from, node_records
from issu_tui.config import InventorySsh, add_node_records


def _read_records(url: str, token_file: Path | None) -> list[NodeRecord]:
    token = token_file.read_text().strip() if token_file else None
    with ApiServerClient(url, token=token) as api:
        return node_records(api)


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
