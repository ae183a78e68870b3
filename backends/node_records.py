"""A cluster's node records on its api-server: the objects Contrail's provisioning creates for
each controller host (`provision_config_node.py`, `provision_control.py`, ...).

- `config-node` (`config_node_ip_address`), `analytics-node` (`analytics_node_ip_address`),
  `database-node` (`database_node_ip_address`): children of the global-system-config;
- `bgp-router` with `bgp_router_parameters.router_type` `control-node`: one per control node.

`issu config generate` lists the controller hosts from them; finalize removes the old
cluster's records that the sync copied into the new cluster.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from backends.apiserver import ApiServerClient, ApiServerError

# object type -> (inventory role, the property holding the host's address)
NODE_OBJECTS: dict[str, tuple[str, str]] = {
    "config-node": ("config", "config_node_ip_address"),
    "analytics-node": ("analytics", "analytics_node_ip_address"),
    "database-node": ("database", "database_node_ip_address"),
}
CONTROL_OBJECT = "bgp-router"


@dataclass(frozen=True)
class NodeRecord:
    obj_type: str   # config-node, analytics-node, database-node, bgp-router
    name: str
    role: str       # config, analytics, database, control
    address: str
    uuid: str

    def label(self) -> str:
        return f"{self.obj_type} {self.name} ({self.address or 'no address'})"


def node_records(api: ApiServerClient, *, control: bool = True) -> list[NodeRecord]:
    """Every node record the api-server holds (control nodes' bgp-routers when `control`).
    ApiServerError naming the server when it cannot be read or answers another shape."""
    records: list[NodeRecord] = []
    try:
        for obj_type, (role, prop) in NODE_OBJECTS.items():
            for obj in api.list(obj_type, detail=True):
                records.append(NodeRecord(obj_type, str(obj["fq_name"][-1]), role,
                                          str(obj.get(prop) or ""), str(obj["uuid"])))
        if control:
            for obj in api.list(CONTROL_OBJECT, detail=True):
                params = obj.get("bgp_router_parameters") or {}
                if params.get("router_type", "control-node") != "control-node":
                    continue  # an external BGP peer, not a controller
                records.append(NodeRecord(CONTROL_OBJECT, str(obj["fq_name"][-1]), "control",
                                          str(params.get("address") or ""), str(obj["uuid"])))
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise ApiServerError(f"{api.url}: unexpected node record: {type(exc).__name__}: "
                             f"{exc}") from None
    return records


def copied_from(records: Iterable[NodeRecord],
                other: Iterable[NodeRecord]) -> list[NodeRecord]:
    """The `records` that are the other cluster's (the same type and name, or the same role
    and address): what the sync copied from old into new."""
    names = {(r.obj_type, r.name) for r in other}
    addresses = {(r.role, r.address) for r in other if r.address}
    return [r for r in records
            if (r.obj_type, r.name) in names or (r.role, r.address) in addresses]
