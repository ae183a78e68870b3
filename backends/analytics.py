"""Poll both clusters' analytics-api and consolidate what they say into one model.

During an ISSU each compute's vrouter-agent reports to exactly one cluster: the old one
until it is upgraded, the new one after. Each analytics-api only knows its own half, so
nobody could see the fleet as a whole: this module merges both views. Per compute it tells
which cluster it reports to (from where its UVE appears and which control nodes its XMPP
sessions are up with), and it merges the alarms of both clusters, tagged by cluster.

The JSON shapes are those of the real analytics-api (opserver):
- `GET /analytics/uves/vrouters` -> `[{"name": "<host>", "href": "..."}]`
- `GET /analytics/uves/vrouter/*` -> `{"value": [{"name": ..., "value": <UVE>}]}` (used when
  answered; else one request per vrouter)
- `GET /analytics/uves/vrouter/<host>` -> `{"VrouterAgent": {"control_ip": ...,
  "xmpp_peer_list": [{"ip": ..., "status": true, "primary": true}], "build_info":
  "<JSON string with build-info[0].build-version>"}, "NodeStatus": {"process_status":
  [{"module_id": "contrail-vrouter-agent", "state": "Functional"}]}}`
- `GET /analytics/uves/control-nodes` -> `[{"name": ..., "href": ...}]`
- `GET /analytics/alarms` -> `{"<uve type>": [{"name": ..., "value": {"UVEAlarms":
  {"alarms": [{"type": ..., "severity": ..., "ack": ..., "timestamp": ...,
  "description": ...}]}}}]}`

This module imports no Textual and nothing of issu_tui: it is a backend.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from backends.http_answers import ANSWER_DEADLINE_S, request_whole
from backends.versions import release_matches

AGENT_MODULE = "contrail-vrouter-agent"


@dataclass(frozen=True)
class XmppPeer:
    ip: str
    up: bool
    primary: bool


@dataclass(frozen=True)
class Vrouter:
    """One vrouter UVE as one cluster's analytics reports it."""

    name: str
    cluster: str
    control_ip: str
    version: str
    agent_state: str
    xmpp_peers: tuple[XmppPeer, ...]


@dataclass(frozen=True)
class Alarm:
    cluster: str
    uve_type: str
    name: str
    type: str
    severity: int
    description: str
    ack: bool
    timestamp: float | None


@dataclass(frozen=True)
class ClusterAnalytics:
    """Everything one cluster's analytics-api said in one poll (or why it said nothing)."""

    cluster: str
    url: str
    fetched_at: float
    error: str | None = None
    vrouters: Mapping[str, Vrouter] = field(default_factory=dict)
    control_nodes: tuple[str, ...] = ()
    alarms: tuple[Alarm, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class ComputeReport:
    """Where one compute reports, across both clusters."""

    name: str
    reports_to: str          # cluster name, "" when no cluster knows it, "both" when ambiguous
    seen_in: tuple[str, ...]  # clusters whose analytics list this vrouter
    xmpp_cluster: str        # cluster owning the control nodes its up XMPP sessions go to
    version: str
    agent_state: str
    control_ip: str


# the UVE type analytics files a vrouter's alarms under (/analytics/alarms)
VROUTER_ALARM_UVE_TYPE = "vrouter"


@dataclass(frozen=True)
class AnalyticsSnapshot:
    clusters: Mapping[str, ClusterAnalytics]
    computes: Mapping[str, ComputeReport]
    alarms: tuple[Alarm, ...]
    fetched_at: float

    def moved_away(self, alarm: Alarm) -> str:
        """The cluster a compute now reports to when `alarm` is the cluster it left raising
        its vrouter's alarm (node failure, XMPP down): what moving it does, not a fault; ""
        otherwise, and while it reports to both or neither."""
        if alarm.uve_type != VROUTER_ALARM_UVE_TYPE:
            return ""
        report = self.computes.get(alarm.name)
        if report is None or report.reports_to in ("", "both", alarm.cluster):
            return ""
        return report.reports_to


def parse_uve_list(data: object) -> list[str]:
    """Names from a UVE list (`[{"name": ..., "href": ...}]`)."""
    if not isinstance(data, list):
        raise ValueError("expected a JSON list of {name, href}")
    return [str(item["name"]) for item in data if isinstance(item, dict) and "name" in item]


def build_version(build_info: object) -> str:
    """`build_info` is a JSON document inside a string: {"build-info": [{"build-version": }]}."""
    if isinstance(build_info, str):
        try:
            build_info = json.loads(build_info)
        except ValueError:
            return ""
    if isinstance(build_info, dict):
        infos = build_info.get("build-info") or []
        if infos and isinstance(infos[0], dict):
            return str(infos[0].get("build-version", ""))
    return ""


def _agent_state(uve: Mapping[str, Any]) -> str:
    status = uve.get("NodeStatus") or {}
    for process in status.get("process_status") or []:
        if isinstance(process, dict) and process.get("module_id", AGENT_MODULE) == AGENT_MODULE:
            return str(process.get("state", ""))
    return ""


def parse_vrouter(cluster: str, name: str, uve: Mapping[str, Any]) -> Vrouter:
    agent = uve.get("VrouterAgent") or {}
    node = uve.get("NodeStatus") or {}
    peers = tuple(
        XmppPeer(str(p.get("ip", "")), bool(p.get("status")), bool(p.get("primary")))
        for p in agent.get("xmpp_peer_list") or [] if isinstance(p, dict)
    )
    # An agent not heard from any more keeps only its alarms in the UVE.
    state = _agent_state(uve) or ("down" if not agent and not node else "")
    return Vrouter(name=name, cluster=cluster, control_ip=str(agent.get("control_ip", "")),
                   version=build_version(agent.get("build_info") or node.get("build_info")),
                   agent_state=state, xmpp_peers=peers)


@dataclass(frozen=True)
class HealthEvidence:
    """The compute health gate's verdict on one vrouter UVE, with the reason either way."""

    ok: bool
    reason: str


def health_evidence(name: str, uve: Mapping[str, Any] | None, version: str,
                    control_nodes: set[str]) -> HealthEvidence:
    """A compute is healthy only on positive evidence: its vrouter UVE reports the agent at
    `version` (a build of that release) with an XMPP session up to one of `control_nodes`.
    A missing UVE, build version or XMPP peer list is a failure that says which is missing.
    """
    if not uve:
        return HealthEvidence(False, f"no vrouter UVE for {name}")
    vrouter = parse_vrouter("", name, uve)
    if not vrouter.version:
        return HealthEvidence(False, f"the vrouter UVE of {name} has no build version")
    if not release_matches(version, vrouter.version):
        return HealthEvidence(False, f"the agent on {name} reports version {vrouter.version}, "
                                     f"expected {version}")
    if not vrouter.xmpp_peers:
        return HealthEvidence(False, f"the vrouter UVE of {name} lists no XMPP peers "
                                     f"(agent state {vrouter.agent_state or 'unknown'})")
    up = [p.ip for p in vrouter.xmpp_peers if p.up]
    ours = [ip for ip in up if ip in control_nodes]
    if not ours:
        return HealthEvidence(False, f"XMPP sessions up to {', '.join(up) or 'none'}, "
                                     f"expected one of {', '.join(sorted(control_nodes))}")
    return HealthEvidence(True, f"version {vrouter.version}, XMPP up to {', '.join(ours)}")


def parse_alarms(cluster: str, data: object) -> list[Alarm]:
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object of UVE type -> alarms")
    alarms = []
    for uve_type, entries in data.items():
        for entry in entries or []:
            if not isinstance(entry, dict):
                continue
            value = entry.get("value") or {}
            for alarm in (value.get("UVEAlarms") or {}).get("alarms") or []:
                if not isinstance(alarm, dict):
                    continue
                timestamp = alarm.get("timestamp")
                # opserver timestamps are microseconds since the epoch
                at = float(timestamp) / 1e6 if isinstance(timestamp, int | float) else None
                alarms.append(Alarm(
                    cluster=cluster, uve_type=str(uve_type), name=str(entry.get("name", "")),
                    type=str(alarm.get("type", "")), severity=int(alarm.get("severity", 0)),
                    description=str(alarm.get("description") or alarm.get("type", "")),
                    ack=bool(alarm.get("ack")), timestamp=at))
    return alarms


def consolidate(clusters: Mapping[str, ClusterAnalytics],
                control_nodes: Mapping[str, set[str]]) -> dict[str, ComputeReport]:
    """Per compute, which cluster it reports to.

    The XMPP sessions decide when they point at a known control node (the agent talks to
    that cluster's control plane); otherwise the analytics that lists it. A compute listed
    by both with no decisive XMPP session is "both": a stale UVE or a half-moved agent.
    """
    owner_of_ip = {ip: name for name, ips in control_nodes.items() for ip in ips}
    names = sorted({n for c in clusters.values() for n in c.vrouters})
    reports: dict[str, ComputeReport] = {}
    for name in names:
        seen = tuple(c.cluster for c in clusters.values() if name in c.vrouters)
        xmpp_clusters = {
            owner_of_ip[p.ip]
            for c in clusters.values() if name in c.vrouters
            for p in c.vrouters[name].xmpp_peers if p.up and p.ip in owner_of_ip
        }
        xmpp_cluster = next(iter(xmpp_clusters)) if len(xmpp_clusters) == 1 else ""
        if xmpp_cluster:
            reports_to = xmpp_cluster
        elif len(seen) == 1:
            reports_to = seen[0]
        else:
            reports_to = "both"
        source = clusters[reports_to] if reports_to in clusters and name in \
            clusters[reports_to].vrouters else clusters[seen[0]]
        vrouter = source.vrouters[name]
        reports[name] = ComputeReport(name=name, reports_to=reports_to, seen_in=seen,
                                      xmpp_cluster=xmpp_cluster, version=vrouter.version,
                                      agent_state=vrouter.agent_state,
                                      control_ip=vrouter.control_ip)
    return reports


class AnalyticsPoller:
    """Fetch both clusters' analytics-api; blocking, meant to run in a worker thread.

    `endpoints` maps a cluster name to its analytics-api base URL; `control_nodes` maps a
    cluster name to its control nodes' addresses (from the config), used to tell which
    cluster a vrouter's XMPP sessions go to.
    """

    def __init__(self, endpoints: Mapping[str, str], control_nodes: Mapping[str, set[str]],
                 *, timeout_s: float = 5.0, concurrency: int = 8,
                 transport: httpx.BaseTransport | None = None,
                 clock: Callable[[], float] = time.time,
                 answer_deadline_s: float = ANSWER_DEADLINE_S) -> None:
        self.endpoints = dict(endpoints)
        self._answer_deadline_s = answer_deadline_s
        self.control_nodes = {k: set(v) for k, v in control_nodes.items()}
        self._clock = clock
        self._concurrency = concurrency
        self._client = httpx.Client(timeout=timeout_s, transport=transport,
                                    headers={"Accept": "application/json"})

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> AnalyticsPoller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, url: str) -> object:
        """The JSON document at `url`, whatever its shape: the parsers check it."""
        response = request_whole(self._client, "GET", url, deadline_s=self._answer_deadline_s)
        response.raise_for_status()
        return response.json()

    def _vrouters(self, cluster: str, base: str) -> dict[str, Vrouter]:
        """All vrouter UVEs: one `vrouter/*` request when the server can, else one each."""
        names = parse_uve_list(self._get(f"{base}/analytics/uves/vrouters"))
        if not names:
            return {}
        try:
            bulk = self._get(f"{base}/analytics/uves/vrouter/*")
        except httpx.HTTPStatusError:
            bulk = None
        if isinstance(bulk, dict) and isinstance(bulk.get("value"), list):
            found = {str(item["name"]): parse_vrouter(cluster, str(item["name"]),
                                                       item.get("value") or {})
                     for item in bulk["value"] if isinstance(item, dict) and "name" in item}
            return {n: found.get(n, parse_vrouter(cluster, n, {})) for n in names}

        def one(name: str) -> Vrouter:
            uve = self._get(f"{base}/analytics/uves/vrouter/{quote(name, safe='')}")
            return parse_vrouter(cluster, name, uve if isinstance(uve, dict) else {})

        with ThreadPoolExecutor(max_workers=self._concurrency) as pool:
            return {v.name: v for v in pool.map(one, names)}

    def poll_cluster(self, cluster: str, base_url: str) -> ClusterAnalytics:
        base = base_url.rstrip("/")
        try:
            vrouters = self._vrouters(cluster, base)
            control = parse_uve_list(self._get(f"{base}/analytics/uves/control-nodes"))
            alarms = parse_alarms(cluster, self._get(f"{base}/analytics/alarms"))
        except httpx.HTTPStatusError as exc:
            return ClusterAnalytics(cluster, base, self._clock(),
                                    error=f"{exc.request.url}: HTTP {exc.response.status_code}")
        except httpx.HTTPError as exc:
            return ClusterAnalytics(cluster, base, self._clock(),
                                    error=f"{base}: {type(exc).__name__}: {exc}")
        except (ValueError, KeyError, TypeError, AttributeError, ArithmeticError,
                RecursionError) as exc:  # an answer not of the documented shape
            return ClusterAnalytics(cluster, base, self._clock(),
                                    error=f"{base}: unexpected answer: {type(exc).__name__}: "
                                          f"{exc}")
        return ClusterAnalytics(cluster, base, self._clock(), vrouters=vrouters,
                                control_nodes=tuple(control), alarms=tuple(alarms))

    def poll(self) -> AnalyticsSnapshot:
        clusters = {name: self.poll_cluster(name, url) for name, url in self.endpoints.items()}
        # severity 0 is critical: the most severe first
        alarms = tuple(sorted((a for c in clusters.values() for a in c.alarms),
                              key=lambda a: (a.severity, a.cluster, a.name, a.type)))
        return AnalyticsSnapshot(clusters=clusters,
                                 computes=consolidate(clusters, self.control_nodes),
                                 alarms=alarms, fetched_at=self._clock())
