"""Cassandra's own `nodetool`, run over SSH on the database hosts (host keys verified, argv
quoted item by item), and its `status` output parsed.

`argv` is how a host runs it: `nodetool` from the package, `docker exec cassandra nodetool`
in containers, the demo ring's wrapper on loopback.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from backends.ssh import CommandResult, SshError, SshExecutor, SshTarget

# UN  127.0.0.1  104.1 KiB  1  100.0%  6f8c...  rack1   (Load is "?" while a node joins)
_STATUS_LINE = re.compile(
    r"^(?P<state>[UD][NLJM])\s+(?P<address>\S+)\s+(?P<load>\?|n/a|[\d.,]+\s?[A-Za-z]+)\s+"
    r"(?P<tokens>\d+)\s+(?P<owns>\?|[\d.]+%)\s+(?P<host_id>[0-9a-f-]{36})")


class NodetoolError(RuntimeError):
    """nodetool failed on a host; the message names the host, the command and its output."""


@dataclass(frozen=True)
class NodeStatus:
    address: str
    state: str              # UN, DN, UJ (joining), UL (leaving), UM (moving)
    tokens: int
    owns: float | None      # effective ownership in percent (with a keyspace), else None
    host_id: str

    @property
    def normal(self) -> bool:
        return self.state == "UN"


def parse_status(text: str) -> list[NodeStatus]:
    nodes = []
    for line in text.splitlines():
        match = _STATUS_LINE.match(line.strip())
        if match:
            owns = match["owns"]
            nodes.append(NodeStatus(
                match["address"].rsplit(":", 1)[0] if match["address"].count(":") == 1
                else match["address"], match["state"], int(match["tokens"]),
                None if owns == "?" else float(owns.rstrip("%")), match["host_id"]))
    return nodes


class Nodetool:
    """nodetool on the database hosts; `target_of(address)` is the SSH target of a node."""

    def __init__(self, ssh: SshExecutor, target_of: Callable[[str], SshTarget],
                 argv: Sequence[str] = ("nodetool",), timeout_s: float = 900.0) -> None:
        self.ssh = ssh
        self.target_of = target_of
        self.argv = tuple(argv)
        self.timeout_s = timeout_s

    def run(self, address: str, *args: str, timeout_s: float | None = None) -> CommandResult:
        target = self.target_of(address)
        try:
            result = self.ssh.run(target, [*self.argv, *args], timeout_s or self.timeout_s)
        except SshError as exc:
            raise NodetoolError(f"nodetool {' '.join(args)} on {target.where}: {exc}") from exc
        if not result.ok:
            why = "timed out" if result.timed_out else f"exit {result.exit_code}"
            tail = (result.stderr.strip() or result.stdout.strip())[-800:]
            raise NodetoolError(
                f"nodetool {' '.join(args)} on {target.where}: {why}: {tail}")
        return result

    def status(self, address: str, keyspace: str | None = None) -> list[NodeStatus]:
        result = self.run(address, "status", *([keyspace] if keyspace else []),
                          timeout_s=120)
        nodes = parse_status(result.stdout)
        if not nodes:
            raise NodetoolError(f"nodetool status on {address}: no node lines in "
                                f"{result.stdout.strip()[-400:]!r}")
        return nodes

    def decommission(self, address: str) -> None:
        self.run(address, "decommission")

    def removenode(self, via: str, host_id: str) -> None:
        self.run(via, "removenode", host_id)

    def repair(self, address: str, keyspace: str) -> None:
        """A full repair of `keyspace`'s ranges on `address` (after its factor changed)."""
        self.run(address, "repair", "--full", keyspace)

    def cleanup(self, address: str, keyspace: str) -> None:
        self.run(address, "cleanup", keyspace)
