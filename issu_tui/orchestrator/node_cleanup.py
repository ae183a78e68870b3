"""finalize's remove-old-nodes: the old cluster's node records that the sync copied into the
new cluster (config-node, analytics-node, database-node objects naming old's hosts) deleted
from new once it is open. Left there, new's analytics would raise node-down alarms for hosts
being retired and `config generate` would list them as new's. The old control nodes'
bgp-routers are the unpair step's.

A record is old's when its address is one the old cluster's config names and the new one's
does not; a record on an address both name (a shared database host) is kept, and said.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from backends.apiserver import ApiServerClient, ApiServerError
from backends.node_records import NodeRecord, node_records
from issu_tui.config import IssuConfig, cluster_addresses, same_address
from issu_tui.journal import REMOVED_RECORDS
from issu_tui.orchestrator.context import Context, OrchestratorError


def old_only(config: IssuConfig) -> set[str]:
    return cluster_addresses(config.old) - cluster_addresses(config.new)


def remove_old_node_records(ctx: Context) -> str:
    config = ctx.config
    gone, shared = old_only(config), cluster_addresses(config.old) & cluster_addresses(
        config.new)
    try:
        with ctx.api("new") as api:
            records = node_records(api, control=False)
            stale = [r for r in records if same_address(r.address) in gone]
            kept = [r for r in records if same_address(r.address) in shared]
            _keep_for_revert(ctx, api, stale)
            deleted = [r.label() for r in stale if api.delete(r.obj_type, r.uuid)]
    except ApiServerError as exc:
        raise OrchestratorError(f"remove-old-nodes: {exc}; run finalize again once the new "
                                "api-server answers") from None
    message = ("old node records removed from new: " + (", ".join(deleted) or "none left")
               + (f"; kept (an address both clusters name): "
                  f"{', '.join(r.label() for r in kept)}" if kept else ""))
    ctx.event("finalize", message, removed=deleted)
    return message


def planned_removal(config: IssuConfig) -> str:
    addresses = sorted(old_only(config))
    return ("new api-server: delete the config/analytics/database node records of "
            + (", ".join(addresses) if addresses else "no old-only address"))


# The records remove-old-nodes deletes from new, as old had them: the reverse replication
# (issu revert) carries those deletions back to old, and revert creates them again there.


def _removed_path(ctx: Context) -> Path:
    return ctx.config.state_dir / REMOVED_RECORDS


# What an api-server computes or keeps for itself: left out of a body created again.
_NOT_CREATABLE = frozenset({"uuid", "href", "parent_href", "parent_uuid", "id_perms",
                            "perms2"})


def _creatable(obj: dict[str, Any]) -> dict[str, Any]:
    """An object as read, as a body that creates it again with its uuid (its references,
    back-references and children are the other objects' to restore)."""
    body = {k: v for k, v in obj.items() if (k not in _NOT_CREATABLE
            and not k.endswith(("_refs", "_back_refs")) and not isinstance(v, list))
            or k == "fq_name"}
    body["uuid"] = obj["uuid"]
    return body


def _save(ctx: Context, items: list[dict[str, Any]]) -> None:
    path = _removed_path(ctx)
    kept: dict[str, dict[str, Any]] = {}
    if path.exists():  # a re-run: what an earlier run deleted is no longer on new
        kept = {f"{r['obj_type']}:{r['fq_name']}": r for r in json.loads(path.read_text())}
    for item in items:
        kept[f"{item['obj_type']}:{item['fq_name']}"] = item
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(list(kept.values()), indent=1))
    tmp.replace(path)


def _keep_for_revert(ctx: Context, api: ApiServerClient, stale: list[NodeRecord]) -> None:
    items = []
    for record in stale:
        obj = api.read(record.obj_type, record.uuid)
        if obj is not None:
            items.append({"obj_type": record.obj_type, "fq_name": obj["fq_name"],
                          "uuid": obj["uuid"], "body": _creatable(obj)})
    _save(ctx, items)


def keep_old_bgp_routers(ctx: Context) -> int:
    """Before finalize's unpair removes old's control nodes' bgp-routers from new: each as
    it is there (old's uuid, copied by the sync), for revert to create again on old."""
    items = []
    with ctx.api("new") as api:
        for spec in ctx.bgp_specs("old"):
            uuid = api.fq_name_to_id("bgp-router", spec.fq_name)
            obj = api.read("bgp-router", uuid) if uuid else None
            if obj is not None:
                items.append({"obj_type": "bgp-router", "fq_name": obj["fq_name"],
                              "uuid": obj["uuid"], "body": _creatable(obj)})
    _save(ctx, items)
    return len(items)


def restore_old_node_records(ctx: Context) -> str:
    """After a revert: old's node records and its control nodes' bgp-routers that finalize
    removed from new, and the reverse replication then from old, created again on old
    through its api-server with the uuids they had (one that old's provisioning created
    again meanwhile under another uuid is replaced)."""
    path = _removed_path(ctx)
    saved = json.loads(path.read_text()) if path.exists() else []
    created: list[str] = []
    try:
        with ctx.api("old") as api:
            for item in saved:
                obj_type, uuid = item["obj_type"], item.get("uuid")
                existing = api.fq_name_to_id(obj_type, item["fq_name"])
                if existing is not None and (uuid is None or existing == uuid):
                    continue
                if existing is not None:
                    api.delete(obj_type, existing)
                api.create(obj_type, {obj_type: item["body"]})
                created.append(f"{obj_type} {item['fq_name'][-1]}")
            paired = api.pair(ctx.bgp_specs("old"))  # any not saved (an earlier finalize)
            created += [f"bgp-router {name}" for name in paired.created]
            # new's own node records, created when new opened, reached old through the
            # reverse replication: old's analytics would count new's hosts as its own
            new_only = cluster_addresses(ctx.config.new) - cluster_addresses(ctx.config.old)
            removed = [r.label() for r in node_records(api, control=False)
                       if same_address(r.address) in new_only
                       and api.delete(r.obj_type, r.uuid)]
    except ApiServerError as exc:
        raise OrchestratorError(f"restoring old's node records: {exc}; run revert again once "
                                "the old api-server answers") from None
    return ("created again on old: " + (", ".join(created) or "none missing")
            + "; new's node records removed from old: " + (", ".join(removed) or "none"))
