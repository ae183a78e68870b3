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

# Either (vnodes)  UN  127.0.0.1  104.1 KiB  16  66.7%  6f8c...-...  rack1
# or (one token)   UN  127.0.0.1  104.1 KiB  66.7%  6f8c...-...  -9223372036854775808  rack1
# Load is "?" while a node joins; Owns is "?" without a keyspace when factors differ.
_NODE_LINE = re.compile(r"^[UD][NLJM]\s")
_HOST_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class NodetoolError(RuntimeError):
    """nodetool failed on a host; the message names the host, the command and its output."""


class NodetoolOutputError(NodetoolError):
    """nodetool answered, but not in a form issu reads (not worth waiting for)."""


@dataclass(frozen=True)
class NodeStatus:
    address: str
    state: str              # UN, DN, UJ (joining), UL (leaving), UM (moving)
    tokens: int
    owns: float | None      # effective ownership in percent (with a keyspace), else None
    host_id: str
    datacenter: str = ""    # the "Datacenter:" heading the line is under

    @property
    def normal(self) -> bool:
        return self.state == "UN"


def parse_status(text: str) -> list[NodeStatus]:
    """The node lines of `nodetool status`, in either of its layouts (Owns is the column
    before Host ID in both; a Tokens count before Owns, or one Token after Host ID)."""
    nodes = []
    datacenter = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("Datacenter:"):
            datacenter = line.partition(":")[2].strip()
            continue
        if not _NODE_LINE.match(line):
            continue
        parts = line.split()
        where = next((i for i, p in enumerate(parts) if _HOST_ID.fullmatch(p)), None)
        if where is None or where < 3:
            continue
        owns = parts[where - 1]
        count = parts[where - 2]
        tokens = int(count) if count.isdigit() else 1
        address = parts[1].rsplit(":", 1)[0] if parts[1].count(":") == 1 else parts[1]
        nodes.append(NodeStatus(address, parts[0], tokens,
                                None if owns == "?" else float(owns.rstrip("%")),
                                parts[where], datacenter))
    return nodes


def parse_seeds(text: str) -> list[str]:
    """The addresses of `nodetool getseeds`: "Current list of seed node IPs, excluding the
    current node's IP: /127.31.0.41:7000 ..." (5.0), or "Seed node list does not contain
    any remote node IPs"; each without its slash and storage port."""
    _, colon, rest = text.partition("IP: ")
    if not colon:
        if "does not contain any remote node" in text:
            return []
        raise NodetoolOutputError(f"nodetool getseeds: unexpected output {text.strip()[-400:]!r}")
    seeds = []
    for word in rest.replace(",", " ").split():
        address = word.lstrip("/")
        if address.count(":") == 1:
            address = address.rsplit(":", 1)[0]
        elif address.startswith("[") and "]:" in address:  # [v6]:port
            address = address[1:address.index("]:")]
        seeds.append(address)
    return seeds


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
            raise NodetoolOutputError(f"nodetool status on {address}: no node lines in "
                                f"{result.stdout.strip()[-400:]!r}")
        return nodes

    def seeds(self, address: str) -> list[str]:
        """The seed nodes `address` uses, but itself (`nodetool getseeds`, Cassandra 4.0+)."""
        return parse_seeds(self.run(address, "getseeds", timeout_s=120).stdout)

    def decommission(self, address: str, timeout_s: float | None = None) -> None:
        self.run(address, "decommission", timeout_s=timeout_s)

    def removenode(self, via: str, host_id: str) -> None:
        self.run(via, "removenode", host_id)

    def repair(self, address: str, keyspace: str) -> None:
        """A full repair of the primary ranges of `keyspace` on `address` (-pr): run on
        every node, each range is repaired once (without -pr each node repairs every range
        it holds: factor times the work). Full, not incremental: sstables an earlier
        incremental repair marked repaired would not reach a new replica. A repair run
        again after a timeout repairs what is left."""
        self.run(address, "repair", "--full", "-pr", keyspace)

    def cleanup(self, address: str, keyspace: str) -> None:
        self.run(address, "cleanup", keyspace)
