"""finalize's remove-old-nodes: the old cluster's node records that the sync copied into the
new cluster (config-node, analytics-node, database-node objects naming old's hosts) deleted
from new once it is open. Left there, new's analytics would raise node-down alarms for hosts
being retired and `config generate` would list them as new's. The old control nodes'
bgp-routers are the unpair step's.

A record is old's when its address is one the old cluster's config names and the new one's
does not; a record on an address both name (a shared database host) is kept, and said.
"""

from __future__ import annotations

from backends.apiserver import ApiServerError
from backends.node_records import node_records
from issu_tui.config import IssuConfig, cluster_addresses, same_address
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
