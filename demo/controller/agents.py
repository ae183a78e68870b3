"""What the simulated vrouter-agents told this cluster: the heartbeat that stands in for both the
agent's sandesh session to the collector and its XMPP session to the control nodes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

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
