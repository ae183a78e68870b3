"""What the simulated vrouter-agents told one of this cluster's services: the heartbeat
(`POST /issu-demo/agent-report`) stands in for the agent's sandesh session when it reaches the
collector (analytics-api) and for its XMPP session when it reaches a control node (:5269).
Each service keeps its own registry, fed only by what reaches it on the wire.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

REPORT_PATH = "/issu-demo/agent-report"

RUNNING = "PROCESS_STATE_RUNNING"
STOPPED = "PROCESS_STATE_STOPPED"


class ReportError(ValueError):
    """A heartbeat body is malformed; the message names the field."""


def host_of(endpoint: str) -> str:
    """`127.0.0.1:5269` -> `127.0.0.1` (bare addresses pass through)."""
    return endpoint.rsplit(":", 1)[0] if endpoint.count(":") == 1 else endpoint


@dataclass
class AgentState:
    name: str
    version: str
    control_ip: str
    control_nodes: list[str]
    collectors: list[str]
    dns_servers: list[str]
    process_state: str
    first_seen_wall: float
    last_seen_wall: float
    last_seen: float  # monotonic
    start_time_wall: float
    reports: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


class AgentRegistry:
    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self._agents: dict[str, AgentState] = {}

    def report(self, body: dict[str, Any]) -> AgentState:
        def need(key: str, kind: type) -> Any:
            value = body.get(key)
            if not isinstance(value, kind) or (kind is str and not value):
                raise ReportError(
                    f"agent-report: field {key!r} must be a non-empty {kind.__name__}")
            return value

        name = need("name", str)
        version = need("version", str)
        control_ip = need("control_ip", str)
        control_nodes = [str(x) for x in body.get("control_nodes") or []]
        collectors = [str(x) for x in body.get("collectors") or []]
        dns_servers = [str(x) for x in body.get("dns_servers") or []]
        state = str(body.get("process_state") or RUNNING)
        if state not in (RUNNING, STOPPED):
            raise ReportError(
                f"agent-report: process_state {state!r} is not {RUNNING} or {STOPPED}")
        now, wall = time.monotonic(), time.time()
        prev = self._agents.get(name)
        restarted = prev is None or prev.version != version or not self._alive(prev) or \
            prev.process_state != RUNNING
        agent = AgentState(
            name=name, version=version, control_ip=control_ip, control_nodes=control_nodes,
            collectors=collectors, dns_servers=dns_servers, process_state=state,
            first_seen_wall=prev.first_seen_wall if prev else wall, last_seen_wall=wall,
            last_seen=now,
            start_time_wall=wall if restarted else prev.start_time_wall,  # type: ignore[union-attr]
            reports=(prev.reports + 1) if prev else 1,
            extra={k: body[k] for k in ("vn_count", "interface_count", "vm_count", "build_id")
                   if k in body},
        )
        self._agents[name] = agent
        return agent

    def _alive(self, agent: AgentState) -> bool:
        return time.monotonic() - agent.last_seen <= self.timeout_s

    def alive(self, agent: AgentState) -> bool:
        """Sandesh session up: heard from within the timeout."""
        return self._alive(agent)

    def running(self, agent: AgentState) -> bool:
        return self._alive(agent) and agent.process_state == RUNNING

    def get(self, name: str) -> AgentState | None:
        return self._agents.get(name)

    def all(self) -> list[AgentState]:
        return sorted(self._agents.values(), key=lambda a: a.name)

    def forget(self, name: str) -> bool:
        return self._agents.pop(name, None) is not None


def add_report_routes(app: web.Application, registry: AgentRegistry, cluster: str) -> None:
    """`POST REPORT_PATH` (a heartbeat) and `DELETE REPORT_PATH/<name>` (the agent moved away)
    into `registry`."""

    async def report(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return web.Response(status=400, text=f"agent-report: body is not JSON: {exc}")
        if not isinstance(body, dict):
            return web.Response(status=400, text="agent-report: body must be a JSON object")
        try:
            agent = registry.report(body)
        except ReportError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"accepted": True, "cluster": cluster, "name": agent.name,
                                  "timeout_s": registry.timeout_s})

    async def forget(request: web.Request) -> web.Response:
        found = registry.forget(request.match_info["name"])
        return web.json_response({"forgotten": found}, status=200 if found else 404)

    app.router.add_post(REPORT_PATH, report)
    app.router.add_delete(REPORT_PATH + "/{name}", forget)
