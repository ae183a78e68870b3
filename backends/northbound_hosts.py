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

from typing import Any
from urllib.parse import quote

import httpx

from backends.analytics import parse_uve_list
from backends.http_answers import request_whole

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
    base = base_url.rstrip("/")
    found: dict[str, list[str]] = {}
    with httpx.Client(timeout=timeout_s, transport=transport,
                      headers={"Accept": "application/json"}) as client:

        def get(url: str) -> Any:
            response = request_whole(client, "GET", url, deadline_s=max(timeout_s, 30.0))
            if response.status_code == 404:
                return None
            response.raise_for_status()
            return response.json()

        try:
            names = get(f"{base}/analytics/uves/config-nodes")
            for name in parse_uve_list(names) if names is not None else []:
                uve = get(f"{base}/analytics/uves/config-node/{quote(name, safe='')}?flat")
                services = [MODULES[m] for m in _modules(uve) if m in MODULES]
                if services:
                    found[name] = sorted(set(services))
        except httpx.HTTPStatusError as exc:
            raise NorthboundHostsError(
                f"{exc.request.url}: HTTP {exc.response.status_code}") from None
        except httpx.HTTPError as exc:
            raise NorthboundHostsError(f"{base}: {type(exc).__name__}: {exc}") from None
        except ValueError as exc:  # not JSON, or not a UVE list
            raise NorthboundHostsError(f"{base}: unexpected answer: {exc}") from None
    return found
