"""The hosts a cluster's northbound services run on, as its analytics-api tells them.

kube-manager and the vCenter plugin report to the cluster's collectors like the config
services: their host's `config-node` UVE lists them in `NodeStatus.process_status`
(`module_id` `contrail-kube-manager`, `contrail-vcenter-plugin`):

- `GET /analytics/uves/config-nodes` -> `[{"name": <host name>, "href": ...}]`;
- `GET /analytics/uves/config-node/<name>?flat` -> `{"NodeStatus": {"process_status":
  [{"module_id": ..., ...}]}}`.

neutron-server reports to no collector: no cluster tells where it runs.
"""

from __future__ import annotations

import httpx

from backends.node_uves import node_uves

# module_id in NodeStatus -> the service name of the controller profiles
MODULES = {"contrail-kube-manager": "kube-manager",
           "contrail-vcenter-plugin": "vcenter-plugin"}


class NorthboundHostsError(Exception):
    """The analytics-api could not be asked; the message names the URL and why."""


def _modules(uve: object) -> list[str]:
    status = uve.get("NodeStatus") if isinstance(uve, dict) else None
    processes = status.get("process_status") if isinstance(status, dict) else None
    return [str(p.get("module_id")) for p in processes or [] if isinstance(p, dict)]


def northbound_services(base_url: str, *, timeout_s: float = 10.0,
                        transport: httpx.BaseTransport | None = None) -> dict[str, list[str]]:
    """`{host name: [kube-manager, vcenter-plugin, ...]}` for every config-node UVE that
    lists a northbound module; hosts with none are left out."""
    uves = node_uves(base_url, (("config-nodes", "config-node"),), NorthboundHostsError,
                     timeout_s=timeout_s, transport=transport)
    found: dict[str, list[str]] = {}
    for (_, name), uve in uves.items():
        services = {MODULES[m] for m in _modules(uve) if m in MODULES}
        if services:
            found[name] = sorted(services)
    return found
