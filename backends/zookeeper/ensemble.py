"""The ZooKeeper ensemble as it serves now: each member asked with the `srvr` four-letter word
(whitelisted by default since ZooKeeper 3.5) for its mode (leader, follower, observer,
standalone) or found not serving / unreachable."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

SERVING_MODES = ("leader", "follower", "standalone", "observer")
NOT_SERVING = "not currently serving requests"


@dataclass(frozen=True)
class Member:
    host: str
    port: int
    mode: str     # leader | follower | observer | standalone | not serving | unreachable

    @property
    def serving(self) -> bool:
        return self.mode in SERVING_MODES


@dataclass(frozen=True)
class EnsembleView:
    members: tuple[Member, ...]

    @property
    def voters(self) -> tuple[Member, ...]:
        """The members that count for the majority (observers do not vote)."""
        return tuple(m for m in self.members if m.mode != "observer")


def split_host(entry: str, default_port: int = 2181) -> tuple[str, int]:
    host, sep, port = entry.rpartition(":")
    if sep and port.isdigit():
        return host, int(port)
    return entry, default_port


def member_mode(host: str, port: int, timeout: float = 3.0) -> str:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"srvr")
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
    except OSError:
        return "unreachable"
    text = b"".join(chunks).decode(errors="replace")
    if NOT_SERVING in text:
        return "not serving"
    for line in text.splitlines():
        if line.startswith("Mode:"):
            return line.partition(":")[2].strip()
    return "not serving"  # an answer without a mode: srvr not whitelisted or not a server


def read_ensemble(hosts: Iterable[str], timeout: float = 3.0) -> EnsembleView:
    """Every configured member (`host[:port]`) with its mode, asked in parallel."""
    pairs = [split_host(h) for h in hosts]
    with ThreadPoolExecutor(max_workers=max(1, len(pairs))) as pool:
        modes = list(pool.map(lambda p: member_mode(p[0], p[1], timeout), pairs))
    return EnsembleView(tuple(Member(h, p, m) for (h, p), m in zip(pairs, modes, strict=True)))
