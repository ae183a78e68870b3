"""`address[:port]` items as Contrail writes them (`10.0.0.1:5269`, `[fd00::1]:5269`)."""

from __future__ import annotations

import socket
import time
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


# Answers are kept a minute: a guard asks for the same members many times in one check,
# and a long-lived process (the daemon) must see a host that moved to another address.
RESOLVE_TTL_S = 60.0
_RESOLVED: dict[str, tuple[float, frozenset[str]]] = {}
_RESOLVED_MAX = 4096


def addresses_of(host: str, *, now: float | None = None) -> frozenset[str]:
    """`host` and every address it resolves to (itself only when it does not resolve), so a
    member named by host name and one named by address are found to be the same host. An
    answer is reused for RESOLVE_TTL_S."""
    now = time.monotonic() if now is None else now
    cached = _RESOLVED.get(host)
    if cached is not None and cached[0] > now:
        return cached[1]
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        found = frozenset({host, *(str(info[4][0]) for info in infos)})
    except (OSError, UnicodeError):
        found = frozenset({host})
    if len(_RESOLVED) >= _RESOLVED_MAX:
        _RESOLVED.clear()
    _RESOLVED[host] = (now + RESOLVE_TTL_S, found)
    return found


class HostSet:
    """Hosts named by address or by name; `h in hosts` when `h` resolves to one of theirs."""

    def __init__(self, hosts: Iterable[str]) -> None:
        self.names = tuple(dict.fromkeys(hosts))
        self.addresses = frozenset(a for h in self.names for a in addresses_of(h))

    def __contains__(self, host: object) -> bool:
        return isinstance(host, str) and not addresses_of(host).isdisjoint(self.addresses)
