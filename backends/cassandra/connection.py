"""Connections to the old and new Cassandra clusters (CQL native protocol)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

from cassandra import ConsistencyLevel
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import (
    DCAwareRoundRobinPolicy,
    ExponentialReconnectionPolicy,
    TokenAwarePolicy,
)
from cassandra.query import tuple_factory

# Contrail's issu.conf lists Thrift ports; the CQL driver of Contrail maps them the same way.
_THRIFT_TO_CQL = {9160: 9042, 9161: 9041}


class CassandraUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class CassandraSide:
    """One cluster as the sync engine sees it. `prefix` maps keyspace names
    (`<prefix>_<keyspace>`), so old and new may share one Cassandra."""

    name: str
    hosts: tuple[str, ...]
    port: int = 9042
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    use_ssl: bool = False
    ca_certs: str | None = None
    prefix: str = ""
    version: str = ""

    def keyspace(self, name: str) -> str:
        return f"{self.prefix}_{name}" if self.prefix else name

    def contact_points(self) -> tuple[list[str], int]:
        hosts: list[str] = []
        port = self.port
        for entry in self.hosts:
            host, sep, p = entry.rpartition(":") if entry.count(":") == 1 else ("", "", "")
            if sep and p.isdigit():
                hosts.append(host)
                port = int(p)
            else:
                hosts.append(entry)
        return hosts, _THRIFT_TO_CQL.get(port, port)


@dataclass
class Connection:
    side: CassandraSide
    cluster: Cluster
    session: Session

    def close(self) -> None:
        self.cluster.shutdown()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(side: CassandraSide, *, request_timeout: float = 60.0,
            consistency: int = ConsistencyLevel.QUORUM) -> Connection:
    hosts, port = side.contact_points()
    auth = None
    if side.user:
        auth = PlainTextAuthProvider(username=side.user, password=side.password or "")
    ssl_context = None
    if side.use_ssl:
        ssl_context = ssl.create_default_context(cafile=side.ca_certs)
        ssl_context.check_hostname = False  # Contrail certificates name nodes by IP
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
        consistency_level=consistency,
        request_timeout=request_timeout,
        row_factory=tuple_factory,
    )
    # The driver's default waits up to 10 minutes between attempts to reach a node that was
    # down for a while: a restarted node (every node of a small ring) would leave run-sync
    # answered NoHostAvailable long after it is back.
    cluster = Cluster(hosts, port=port, auth_provider=auth, ssl_context=ssl_context,
                      execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                      connect_timeout=10, control_connection_timeout=10,
                      reconnection_policy=ExponentialReconnectionPolicy(1.0, 10.0))
    # Start the protocol negotiation at v4, not the driver's v5: v5 frames every message in
    # CRC32-checksummed segments, which costs CPU on both the client and Cassandra (a visible
    # share of a copy's client time) and buys nothing on a TCP connection. Set as the
    # attribute, not the constructor argument, so that the version stays negotiable: the
    # driver still steps down to v3 for an old Cassandra 2.x.
    cluster.protocol_version = min(cluster.protocol_version, 4)
    try:
        session = cluster.connect()
        # Every write of the engine carries USING TIMESTAMP (the source WRITETIME): the
        # driver's client-side timestamp generator (a lock per request) is not needed.
        session.use_client_timestamp = False
    except Exception as exc:
        cluster.shutdown()
        raise CassandraUnavailable(
            f"cannot connect to the {side.name} Cassandra at {', '.join(hosts)}:{port}: {exc}"
        ) from exc
    return Connection(side, cluster, session)


def connect_pair(old: CassandraSide, new: CassandraSide) -> tuple[Connection, Connection]:
    """Both clusters' connections (a picklable factory: functools.partial of this)."""
    old_conn = connect(old)
    try:
        return old_conn, connect(new)
    except Exception:
        old_conn.close()
        raise
