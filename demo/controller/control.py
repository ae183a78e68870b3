"""The control node: XMPP sessions of the agents and iBGP sessions to configured bgp-routers.

An XMPP session is the agent heartbeat (agents.py) that reaches the control node on its XMPP
port (`POST <control node>:5269/issu-demo/agent-report`, the address:port in the agent's
`[CONTROL-NODE] servers`) and names it.
A BGP session to a neighbour is Established when this cluster's config pairs the local control
node's bgp-router with the neighbour's AND the neighbour's own config (fetched from its
introspect, `/issu-demo/bgp-config`) pairs it back; otherwise it is Active (configured here,
not answered there). Paired = an explicit `bgp_router_refs` link, or, as the schema transformer
does, the iBGP full mesh of all bgp-routers of router_type control-node with the same ASN.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web

from .agents import AgentRegistry, add_report_routes, host_of
from .configdb import ConfigDB, ListQuery
from .spec import ControllerSpec

log = logging.getLogger(__name__)

XMPP_PORT = 5269
BGP_PORT = 179


@dataclass
class BgpRouterConf:
    name: str
    address: str
    asn: int
    router_type: str
    uuid: str
    neighbours: list[str] = field(default_factory=list)  # addresses


@dataclass
class Neighbour:
    local: str  # local control node name
    local_address: str
    peer: str
    peer_address: str
    peer_asn: int
    local_asn: int
    encoding: str  # BGP / XMPP
    state: str
    router_type: str
    since: float


class ControlPlane:
    def __init__(self, spec: ControllerSpec, db: ConfigDB, agents: AgentRegistry,
                 read: Any):
        self.spec = spec
        self.db = db
        self.agents = agents
        self.run_blocking = read  # coroutine runner for blocking reads
        self._since: dict[tuple[str, str], tuple[str, float]] = {}
        self._cache: tuple[float, list[Neighbour]] | None = None
        self._lock = asyncio.Lock()
        self._http = httpx.AsyncClient(timeout=2.0)
        self.started = time.time()

    async def close(self) -> None:
        await self._http.aclose()

    def xmpp_app(self) -> web.Application:
        """What listens on each control node's XMPP port: the agents' sessions."""
        app = web.Application()
        add_report_routes(app, self.agents, self.spec.cluster)
        return app

    # -- config ------------------------------------------------------------------------------
    def bgp_config(self) -> list[BgpRouterConf]:
        """This cluster's bgp-router objects with the addresses each one peers with."""
        listing = self.db.list("bgp-router", ListQuery(detail=True))
        routers: list[BgpRouterConf] = []
        by_uuid: dict[str, BgpRouterConf] = {}
        for item in listing["bgp-routers"]:
            obj = item["bgp-router"]
            params = obj.get("bgp_router_parameters") or {}
            conf = BgpRouterConf(
                name=obj["fq_name"][-1], address=str(params.get("address") or ""),
                asn=int(params.get("autonomous_system") or self.spec.asn),
                router_type=str(params.get("router_type") or "control-node"), uuid=obj["uuid"])
            conf.neighbours = [r["uuid"] for r in obj.get("bgp_router_refs") or []]
            routers.append(conf)
            by_uuid[conf.uuid] = conf
        for conf in routers:
            peers = [by_uuid[u].address for u in conf.neighbours if u in by_uuid]
            if conf.router_type == "control-node":
                # The schema transformer meshes every control node of one ASN (iBGP full mesh).
                peers += [r.address for r in routers if r is not conf and
                          r.router_type == "control-node" and r.asn == conf.asn]
            conf.neighbours = sorted(set(peers) - {conf.address})
        return routers

    async def _peer_config(self) -> dict[str, list[str]] | None:
        """address -> neighbour addresses, as the other cluster's config says; None if silent."""
        if self.spec.peer is None:
            return {}
        url = self.spec.peer.introspect_url.rstrip("/") + "/issu-demo/bgp-config"
        try:
            resp = await self._http.get(url)
            resp.raise_for_status()
            data = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.debug("peer %s unreachable: %s", url, exc)
            return None
        return {r["address"]: list(r.get("neighbours") or []) for r in data.get("routers", [])}

    # -- sessions ----------------------------------------------------------------------------
    def _stamp(self, key: tuple[str, str], state: str) -> float:
        prev = self._since.get(key)
        if prev is None or prev[0] != state:
            self._since[key] = (state, time.time())
        return self._since[key][1]

    async def neighbours(self) -> list[Neighbour]:
        async with self._lock:
            if self._cache and time.monotonic() - self._cache[0] < 1.0:
                return self._cache[1]
            result = await self._compute()
            self._cache = (time.monotonic(), result)
            return result

    async def _compute(self) -> list[Neighbour]:
        out: list[Neighbour] = []
        routers = await self.run_blocking(self.bgp_config)
        local_addrs = {c.address: c for c in self.spec.control_nodes}
        conf_by_addr = {r.address: r for r in routers}
        peer_conf = await self._peer_config() if any(
            r.address in local_addrs for r in routers) else {}
        for cn in self.spec.served_control_nodes:
            mine = conf_by_addr.get(cn.address)
            local_asn = mine.asn if mine else self.spec.asn
            for addr in mine.neighbours if mine else []:
                other = conf_by_addr.get(addr)
                if addr in local_addrs:
                    answered = other is not None and cn.address in other.neighbours
                elif peer_conf is None:
                    answered = False
                else:
                    answered = cn.address in peer_conf.get(addr, [])
                state = "Established" if answered else "Active"
                out.append(Neighbour(
                    local=cn.name, local_address=cn.address,
                    peer=other.name if other else addr, peer_address=addr,
                    peer_asn=other.asn if other else self.spec.asn, local_asn=local_asn,
                    encoding="BGP", state=state,
                    router_type=other.router_type if other else "control-node",
                    since=self._stamp((cn.name, f"bgp:{addr}"), state)))
            for agent in self.agents.all():
                if cn.address not in {host_of(n) for n in agent.control_nodes}:
                    continue
                state = "Established" if self.agents.running(agent) else "Idle"
                out.append(Neighbour(
                    local=cn.name, local_address=cn.address, peer=agent.name,
                    peer_address=agent.control_ip, peer_asn=local_asn, local_asn=local_asn,
                    encoding="XMPP", state=state, router_type="",
                    since=self._stamp((cn.name, f"xmpp:{agent.name}"), state)))
        return out

    # -- introspect rendering ----------------------------------------------------------------
    @staticmethod
    def neighbour_dict(n: Neighbour) -> dict[str, Any]:
        port = BGP_PORT if n.encoding == "BGP" else XMPP_PORT
        return {
            "peer": n.peer,
            "peer_address": n.peer_address,
            "peer_port": port,
            "peer_asn": n.peer_asn,
            "peer_type": "internal",
            "encoding": n.encoding,
            "router_type": n.router_type,
            "state": n.state,
            "local_address": n.local_address,
            "local_asn": n.local_asn,
            "control_node": n.local,
            "last_state": n.state,
            "last_state_at": time.strftime("%Y-%b-%d %H:%M:%S", time.gmtime(n.since)),
            "flap_count": 0,
        }
