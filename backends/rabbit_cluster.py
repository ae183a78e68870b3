"""A RabbitMQ cluster's members as `rabbitmqctl cluster_status --formatter json` reports them
(disk and RAM nodes, the running ones), for the quorum guard: with quorum queues or the
`pause_minority` partition handling a broker keeps serving only with a majority running."""

from __future__ import annotations

import json
from dataclasses import dataclass


class RabbitStatusError(ValueError):
    """The text is not rabbitmqctl's cluster_status JSON; the message says what is missing."""


@dataclass(frozen=True)
class RabbitClusterView:
    members: tuple[str, ...]      # node names, rabbit@host
    running: tuple[str, ...]

    @staticmethod
    def host(node: str) -> str:
        return node.rpartition("@")[2]


def parse_cluster_status(text: str) -> RabbitClusterView:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RabbitStatusError(f"cluster_status is not JSON: {exc}") from exc
    if not isinstance(data, dict) or "running_nodes" not in data or "disk_nodes" not in data:
        raise RabbitStatusError("cluster_status JSON without disk_nodes / running_nodes")
    members = [*(data.get("disk_nodes") or []), *(data.get("ram_nodes") or [])]
    return RabbitClusterView(tuple(str(m) for m in members),
                             tuple(str(n) for n in data.get("running_nodes") or []))
