"""`address[:port]` items as Contrail writes them (`10.0.0.1:5269`, `[fd00::1]:5269`)."""

from __future__ import annotations

import functools
import socket
from collections.abc import Iterable

# Contrail's default ports for a vrouter-agent's control nodes (XMPP), collectors and DNS.
DEFAULT_PORTS = {"control_nodes": 5269, "collectors": 8086, "dns_servers": 53}


def host_of(item: str) -> str:
    """The address of `address[:port]` (`[v6]:port` and bare IPv6 understood)."""
    item = item.strip()
    if item.startswith("["):
        return item[1:item.index("]")] if "]" in item else item
    return item.rsplit(":", 1)[0] if item.count(":") == 1 else item


def with_port(item: str, port: int) -> str:
    """`item` with `port` added unless it has one (bare IPv6 gets brackets)."""
    item = item.strip()
    if item.startswith("[") or item.count(":") == 1:
        return item
    if ":" in item:  # bare IPv6
        return f"[{item}]:{port}"
    return f"{item}:{port}"


@functools.lru_cache(maxsize=4096)
def addresses_of(host: str) -> frozenset[str]:
    """`host` and every address it resolves to (itself only when it does not resolve), so a
    member named by host name and one named by address are found to be the same host."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return frozenset({host})
    return frozenset({host, *(str(info[4][0]) for info in infos)})


class HostSet:
    """Hosts named by address or by name; `h in hosts` when `h` resolves to one of theirs."""

    def __init__(self, hosts: Iterable[str]) -> None:
        self.names = tuple(dict.fromkeys(hosts))
        self.addresses = frozenset(a for h in self.names for a in addresses_of(h))

    def __contains__(self, host: object) -> bool:
        return isinstance(host, str) and not addresses_of(host).isdisjoint(self.addresses)
