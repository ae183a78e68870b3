"""`address[:port]` items as Contrail writes them (`10.0.0.1:5269`, `[fd00::1]:5269`)."""

from __future__ import annotations

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
