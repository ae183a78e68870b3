"""analytics-api (:8081): vrouter and control-node UVEs and alarms, in the opserver's JSON shapes.

Fed over the wire, as in Contrail: the vrouter UVEs by the agents' heartbeats to the collector
(`POST /issu-demo/agent-report`), the control-node UVEs by each control node's own neighbour
table, read from its introspect (`GET <control node>:8083/Snh_BgpNeighborReq`), so the
analytics-api may run in a process (a container) of its own.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from typing import Any

import httpx
from aiohttp import web

from .agents import RUNNING, STOPPED, AgentRegistry, AgentState, add_report_routes, host_of
from .spec import ControllerSpec, ControlNodeSpec

log = logging.getLogger(__name__)

GSC = "default-global-system-config"
NODE_STATUS_ALARM = f"{GSC}:system-defined-node-status"
PROCESS_STATUS_ALARM = f"{GSC}:system-defined-process-status"
BGP_CONNECTIVITY_ALARM = f"{GSC}:system-defined-bgp-connectivity"


def _us(wall: float) -> int:
    return int(wall * 1_000_000)


def build_info(version: str, build_id: str | None = None) -> str:
    """The sandesh build_info string: JSON text inside the UVE."""
    bid = build_id or f"{version}-1"
    return json.dumps({"build-info": [{
        "build-version": version, "build-id": bid, "build-number": bid.rsplit("-", 1)[-1],
        "build-user": "contrail", "build-hostname": "issu-demo",
        "build-time": "2026-01-01 00:00:00.000000"}]})


def config_node_name(spec: ControllerSpec, index: int | None = None) -> str:
    """A config node (an api-server host) of the simulated cluster, this host's by default,
    as analytics and the api-server's config-node object name it."""
    return f"{spec.cluster}-config-{index or spec.node_index}"


def config_node_names(spec: ControllerSpec) -> list[str]:
    """Every config node of the cluster (what its analytics-api lists)."""
    return [config_node_name(spec, i) for i in range(1, max(spec.config_nodes,
                                                             spec.node_index) + 1)]


def _condition(operand1: str, operation: str, operand2: dict[str, str]) -> dict[str, Any]:
    return {"operand1": operand1, "operation": operation, "operand2": operand2}


class Analytics:
    def __init__(self, spec: ControllerSpec, agents: AgentRegistry):
        self.spec = spec
        self.agents = agents
        self._raised: dict[tuple[str, str, str], float] = {}
        self._http = httpx.AsyncClient(timeout=2.0)
        self._answering_since: dict[str, float] = {}  # control node -> first answer (wall)

    async def close(self) -> None:
        await self._http.aclose()

    def app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_get("/", self.root)
        r.add_get("/analytics", self.root)
        r.add_get("/analytics/uves", self.uve_types)
        r.add_get("/analytics/uves/vrouters", self.vrouters)
        r.add_get("/analytics/uves/vrouter/{name}", self.vrouter)
        r.add_get("/analytics/uves/control-nodes", self.control_nodes)
        r.add_get("/analytics/uves/control-node/{name}", self.control_node)
        r.add_get("/analytics/uves/config-nodes", self.config_nodes)
        r.add_get("/analytics/uves/config-node/{name}", self.config_node)
        r.add_get("/analytics/alarms", self.alarms)
        add_report_routes(app, self.agents, self.spec.cluster)
        return app

    def _base(self, request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    # -- alarms ------------------------------------------------------------------------------
    def _alarm(self, table: str, key: str, alarm_type: str, severity: int, description: str,
               and_list: list[dict[str, Any]]) -> dict[str, Any]:
        raised = self._raised.setdefault((table, key, alarm_type), time.time())
        ts = _us(raised)
        token = base64.b64encode(json.dumps(
            {"host_ip": self.spec.listen, "http_port": self.spec.analytics_port,
             "timestamp": ts}).encode()).decode()
        return {"type": alarm_type, "severity": severity, "ack": False, "timestamp": ts,
                "token": token, "description": description,
                "alarm_rules": {"or_list": [{"and_list": and_list}]}}

    def _clear(self, table: str, key: str, keep: set[str]) -> None:
        for k in [k for k in self._raised if k[0] == table and k[1] == key and k[2] not in keep]:
            del self._raised[k]

    def _vrouter_alarms(self, agent: AgentState) -> list[dict[str, Any]]:
        alarms = []
        if not self.agents.alive(agent):
            alarms.append(self._alarm("vrouter", agent.name, NODE_STATUS_ALARM, 0,
                                      "Node Failure. NodeStatus UVE not present.",
                                      [{"condition": _condition("NodeStatus", "==",
                                                                {"json_value": "null"}),
                                        "match": [{"json_operand1_value": "null"}]}]))
        elif agent.process_state != RUNNING:
            alarms.append(self._alarm(
                "vrouter", agent.name, PROCESS_STATUS_ALARM, 0, "Process Failure.",
                [{"condition": _condition("NodeStatus.process_info.process_state", "!=",
                                          {"json_value": json.dumps(RUNNING)}),
                  "match": [{"json_operand1_value": json.dumps(agent.process_state),
                             "json_variables": {"NodeStatus.process_info.process_name":
                                                json.dumps("contrail-vrouter-agent")}}]}]))
        self._clear("vrouter", agent.name, {a["type"] for a in alarms})
        return alarms

    def _control_alarms(self, name: str, state: dict[str, Any]) -> list[dict[str, Any]]:
        alarms = []
        brs = state["BgpRouterState"]
        process = state["NodeStatus"]["process_info"][0]["process_state"]
        if process != RUNNING:
            alarms.append(self._alarm(
                "control-node", name, PROCESS_STATUS_ALARM, 0, "Process Failure.",
                [{"condition": _condition("NodeStatus.process_info.process_state", "!=",
                                          {"json_value": json.dumps(RUNNING)}),
                  "match": [{"json_operand1_value": json.dumps(process),
                             "json_variables": {"NodeStatus.process_info.process_name":
                                                json.dumps("contrail-control")}}]}]))
        elif brs["num_up_bgp_peer"] != brs["num_bgp_peer"]:
            alarms.append(self._alarm(
                "control-node", name, BGP_CONNECTIVITY_ALARM, 1,
                "BGP peer mismatch. Not enough BGP peers are up.",
                [{"condition": _condition("BgpRouterState.num_up_bgp_peer", "!=",
                                          {"uve_attribute": "BgpRouterState.num_bgp_peer"}),
                  "match": [{"json_operand1_value": json.dumps(brs["num_up_bgp_peer"]),
                             "json_operand2_value": json.dumps(brs["num_bgp_peer"])}]}]))
        self._clear("control-node", name, {a["type"] for a in alarms})
        return alarms

    # -- UVE builders ------------------------------------------------------------------------
    def vrouter_uve(self, agent: AgentState) -> dict[str, Any]:
        uve: dict[str, Any] = {}
        if self.agents.alive(agent):
            local = {c.address for c in self.spec.control_nodes}
            bi = build_info(agent.version, agent.extra.get("build_id"))
            running = agent.process_state == RUNNING
            xmpp = [{"ip": host_of(n), "status": running and host_of(n) in local,
                     "primary": i == 0, "setup_time": _us(agent.start_time_wall)}
                    for i, n in enumerate(agent.control_nodes)]
            uve["VrouterAgent"] = {
                "build_info": bi,
                "control_ip": agent.control_ip,
                "self_ip_list": [agent.control_ip],
                "sandesh_http_port": 8085,
                "mode": "VROUTER",
                "platform": "HOST",
                "xmpp_peer_list": xmpp,
                "control_node_list_cfg": [host_of(n) for n in agent.control_nodes],
                "collector_server_list_cfg": agent.collectors,
                "dns_server_list_cfg": [host_of(n) for n in agent.dns_servers],
                "vn_count": int(agent.extra.get("vn_count", 0)),
                "total_interface_count": int(agent.extra.get("interface_count", 0)),
                "down_interface_count": 0,
                "uptime": int((time.time() - agent.start_time_wall) * 1000),
            }
            uve["VrouterStatsAgent"] = {
                "cpu_info": {"num_cpu": 2, "cpu_share": 0.1,
                             "meminfo": {"virt": 1048576, "peakvirt": 1048576, "res": 131072}},
                "uptime": int((time.time() - agent.start_time_wall) * 1000),
            }
            infos: list[dict[str, Any]] = [{"type": "XMPP", "name": f"control-node:{host_of(n)}",
                      "server_addrs": [f"{host_of(n)}:5269"],
                      "status": "Up" if x["status"] else "Down",
                      "description": "OpenSent" if x["status"] else "Connect"}
                     for n, x in zip(agent.control_nodes, xmpp, strict=True)]
            infos += [{"type": "Collector", "name": None, "server_addrs": [c],
                       "status": "Up", "description": "Established"} for c in agent.collectors]
            uve["NodeStatus"] = {
                "process_status": [{
                    "module_id": "contrail-vrouter-agent", "instance_id": "0",
                    "state": "Functional" if running else "Non-Functional",
                    "description": "" if running else "process stopped",
                    "connection_infos": infos}],
                "process_info": [{
                    "process_name": "contrail-vrouter-agent",
                    "process_state": agent.process_state,
                    "start_count": 1, "stop_count": 0 if running else 1, "exit_count": 0,
                    "last_start_time": str(_us(agent.start_time_wall)),
                    "core_file_list": []}],
                "build_info": bi,
            }
        alarms = self._vrouter_alarms(agent)
        if alarms:
            uve["UVEAlarms"] = {"alarms": alarms}
        return uve

    async def _neighbours(self, cn: ControlNodeSpec) -> list[dict[str, Any]] | None:
        """The control node's neighbour table from its introspect; None when it is silent."""
        url = f"http://{cn.address}:{self.spec.introspect_port}/Snh_BgpNeighborReq"
        try:
            resp = await self._http.get(url)
            resp.raise_for_status()
            found = resp.json()["BgpNeighborListResp"]["neighbors"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            log.debug("control node %s silent: %s", url, exc)
            self._answering_since.pop(cn.name, None)
            return None
        self._answering_since.setdefault(cn.name, time.time())
        return [n for n in found if isinstance(n, dict) and n.get("control_node") == cn.name]

    async def control_states(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        bi = build_info(self.spec.version)
        for cn in self.spec.control_nodes:
            mine = await self._neighbours(cn)
            bgp = [n for n in mine or [] if n.get("encoding") == "BGP"]
            xmpp = [n for n in mine or [] if n.get("encoding") == "XMPP"]
            since = self._answering_since.get(cn.name, time.time())
            process_state = RUNNING if mine is not None else STOPPED
            state: dict[str, Any] = {
                "BgpRouterState": {
                    "router_id": cn.address,
                    "local_asn": self.spec.asn,
                    "global_asn": self.spec.asn,
                    "bgp_router_ip_list": [cn.address],
                    "num_bgp_peer": len(bgp),
                    "num_up_bgp_peer": sum(n.get("state") == "Established" for n in bgp),
                    "num_xmpp_peer": len(xmpp),
                    "num_up_xmpp_peer": sum(n.get("state") == "Established" for n in xmpp),
                    "build_info": bi,
                    "uptime": _us(since) if mine is not None else 0,
                },
                "NodeStatus": {
                    "process_status": [{
                        "module_id": "contrail-control", "instance_id": "0",
                        "state": "Functional" if mine is not None else "Non-Functional",
                        "description": "" if mine is not None else "introspect not answering",
                        "connection_infos": []}],
                    "process_info": [{"process_name": "contrail-control",
                                      "process_state": process_state, "start_count": 1,
                                      "stop_count": 0 if mine is not None else 1,
                                      "exit_count": 0, "last_start_time": str(_us(since)),
                                      "core_file_list": []}],
                    "build_info": bi,
                },
            }
            alarms = self._control_alarms(cn.name, state)
            if alarms:
                state["UVEAlarms"] = {"alarms": alarms}
            out[cn.name] = state
        return out

    # -- handlers ----------------------------------------------------------------------------
    async def root(self, request: web.Request) -> web.Response:
        base = self._base(request)
        return web.json_response([{"name": n, "href": f"{base}/analytics/{n}"}
                                  for n in ("uves", "alarms")])

    async def uve_types(self, request: web.Request) -> web.Response:
        base = self._base(request)
        return web.json_response([{"name": n, "href": f"{base}/analytics/uves/{n}"}
                                  for n in ("vrouters", "control-nodes", "config-nodes")])

    async def vrouters(self, request: web.Request) -> web.Response:
        base = self._base(request)
        return web.json_response([
            {"name": a.name, "href": f"{base}/analytics/uves/vrouter/{a.name}?flat"}
            for a in self.agents.all()])

    async def vrouter(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == "*":
            return web.json_response({"value": [{"name": a.name, "value": self.vrouter_uve(a)}
                                                for a in self.agents.all()]})
        agent = self.agents.get(name)
        return web.json_response(self.vrouter_uve(agent) if agent else {})

    async def control_nodes(self, request: web.Request) -> web.Response:
        base = self._base(request)
        return web.json_response([
            {"name": c.name, "href": f"{base}/analytics/uves/control-node/{c.name}?flat"}
            for c in self.spec.control_nodes])

    async def control_node(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        states = await self.control_states()
        if name == "*":
            return web.json_response({"value": [{"name": n, "value": v}
                                                for n, v in states.items()]})
        return web.json_response(states.get(name, {}))

    def config_node_uve(self) -> dict[str, Any]:
        """The api-server's node: its NodeStatus carries the build_info of the release."""
        return {"NodeStatus": {
            "process_status": [{"module_id": "contrail-api", "instance_id": "0",
                                "state": "Functional", "description": "",
                                "connection_infos": []}],
            "build_info": build_info(self.spec.version)}}

    async def config_nodes(self, request: web.Request) -> web.Response:
        base = self._base(request)
        return web.json_response(
            [{"name": name, "href": f"{base}/analytics/uves/config-node/{name}?flat"}
             for name in config_node_names(self.spec)])

    async def config_node(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        names = config_node_names(self.spec)
        if name == "*":
            return web.json_response({"value": [{"name": n, "value": self.config_node_uve()}
                                                for n in names]})
        return web.json_response(self.config_node_uve() if name in names else {})

    async def alarms(self, request: web.Request) -> web.Response:
        out: dict[str, list[dict[str, Any]]] = {}
        for agent in self.agents.all():
            alarms = self.vrouter_uve(agent).get("UVEAlarms")
            if alarms:
                out.setdefault("vrouter", []).append(
                    {"name": agent.name, "value": {"UVEAlarms": alarms}})
        for name, state in (await self.control_states()).items():
            if "UVEAlarms" in state:
                out.setdefault("control-node", []).append(
                    {"name": name, "value": {"UVEAlarms": state["UVEAlarms"]}})
        return web.json_response(out)
