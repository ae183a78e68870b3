"""The release a cluster runs, read from its analytics-api: the `build_info` its config and
control nodes report in their UVEs.

- `GET /analytics/uves/config-nodes` and `/analytics/uves/control-nodes` list the nodes
  (`[{"name": ..., "href": ...}]`);
- `GET /analytics/uves/config-node/<name>` -> `{"NodeStatus": {"build_info": "<JSON>"}}`;
- `GET /analytics/uves/control-node/<name>` -> `{"BgpRouterState": {"build_info": ...},
  "NodeStatus": {"build_info": ...}}`.

`build_info` is JSON text: `{"build-info": [{"build-version": "5.0.1", ...}]}`. The cluster's
release is the one every node reports; nodes that disagree, a build version that is not a
release number, or no node reporting one at all are refused with what was seen: never a guess.
"""

from __future__ import annotations

import httpx

from backends.analytics import build_version
from backends.node_uves import node_uves
from backends.versions import parse_version

NODE_TYPES = (("config-nodes", "config-node"), ("control-nodes", "control-node"))


class ClusterVersionError(Exception):
    """The cluster's release could not be read; the message says where and why."""


def _node_build_version(uve: object) -> str:
    if not isinstance(uve, dict):
        return ""
    for struct in ("NodeStatus", "BgpRouterState", "ContrailConfig"):
        part = uve.get(struct)
        if isinstance(part, dict) and part.get("build_info"):
            found = build_version(part["build_info"])
            if found:
                return found
    return ""


def node_versions(base_url: str, *, timeout_s: float = 10.0,
                  transport: httpx.BaseTransport | None = None) -> dict[str, str]:
    """`{"config-node/<name>": build version or "", ...}` for every config and control node
    the analytics-api at `base_url` lists. Raises ClusterVersionError when it cannot be
    asked (unreachable, an HTTP error, an answer of another shape)."""
    uves = node_uves(base_url, NODE_TYPES, ClusterVersionError, timeout_s=timeout_s,
                     transport=transport)
    return {f"{one}/{name}": _node_build_version(uve) for (one, name), uve in uves.items()}


def cluster_identity(base_url: str, *, timeout_s: float = 10.0,
                     transport: httpx.BaseTransport | None = None) -> str:
    """Which cluster answers at `base_url`: its config and control nodes as the analytics-api
    lists them ("config-node/a,control-node/b", sorted; two requests, no node's UVE). A pin
    of a release read earlier holds only for the same nodes behind the same URL."""
    names = node_uves(base_url, NODE_TYPES, ClusterVersionError, timeout_s=timeout_s,
                      transport=transport, fetch=False)
    if not names:
        raise ClusterVersionError(f"{base_url.rstrip('/')}: the analytics-api lists no config "
                                  "or control node")
    return ",".join(sorted(f"{one}/{name}" for one, name in names))


def cluster_release(base_url: str, *, timeout_s: float = 10.0,
                    transport: httpx.BaseTransport | None = None) -> str:
    """The release every config and control node of the cluster reports, e.g. "5.0.1".
    Raises ClusterVersionError naming the nodes when none reports one, when a build version
    is not a release number, or when nodes report different releases."""
    versions = node_versions(base_url, timeout_s=timeout_s, transport=transport)
    base = base_url.rstrip("/")
    if not versions:
        raise ClusterVersionError(f"{base}: the analytics-api lists no config or control node")
    missing = sorted(node for node, version in versions.items() if not version)
    if missing:
        raise ClusterVersionError(f"{base}: no build_info build-version in the UVE of "
                                  f"{', '.join(missing)}")
    releases: dict[tuple[int, int, int], list[str]] = {}
    for node, version in sorted(versions.items()):
        try:
            releases.setdefault(parse_version(version), []).append(f"{node} {version}")
        except ValueError:
            raise ClusterVersionError(f"{base}: {node} reports build-version {version!r}, "
                                      "not a release number like 5.0.1") from None
    if len(releases) > 1:
        seen = "; ".join(", ".join(nodes) for nodes in releases.values())
        raise ClusterVersionError(f"{base}: the nodes report different releases ({seen})")
    (release,) = releases
    return ".".join(str(n) for n in release)
