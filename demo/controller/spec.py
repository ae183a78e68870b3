"""The controller's spec file: one JSON document naming everything a simulated cluster needs.

Secrets (RabbitMQ and Cassandra credentials, the admin token) never travel on argv or in the
spec itself: the spec names a secrets file that must be private to its owner (mode 0600).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, ValidationError


class SpecError(Exception):
    """The spec or the secrets file is unusable; the message names the file and the key."""


class CassandraSpec(BaseModel):
    hosts: list[str]
    port: int = 9042
    prefix: str = ""
    # the keyspaces' replication factor when the controller creates them (a ring: 3, as a
    # deployment's, so that a node can stop while its ranges keep a quorum)
    replication_factor: int = Field(default=1, ge=1)

    def keyspace(self, name: str) -> str:
        return f"{self.prefix}_{name}" if self.prefix else name


class ZookeeperSpec(BaseModel):
    hosts: list[str]  # "host:port"
    prefix: str = ""

    def path(self, *parts: str) -> str:
        root = f"/{self.prefix}" if self.prefix else ""
        return root + "/" + "/".join(p.strip("/") for p in parts if p)


class RabbitCtlSpec(BaseModel):
    """How rabbitmqctl reaches the broker from this host (the demo profile's `queues`)."""

    nodename: str
    env: dict[str, str] = {}


class RabbitSpec(BaseModel):
    host: str
    port: int = 5672
    vhost: str = "/"
    exchange: str = "vnc_config.object-update"
    ctl: RabbitCtlSpec | None = None


class ControlNodeSpec(BaseModel):
    name: str
    address: str


class PeerSpec(BaseModel):
    """The other cluster, as seen by this one's control node (for the iBGP pairing)."""

    name: str
    introspect_url: str
    control_nodes: list[ControlNodeSpec] = Field(default_factory=list)


class Secrets(BaseModel):
    rabbit_user: str = "guest"
    rabbit_password: SecretStr = SecretStr("guest")
    cassandra_user: str | None = None
    cassandra_password: SecretStr | None = None
    admin_token: SecretStr | None = None


class ControllerSpec(BaseModel):
    cluster: str  # "v1" / "v2"
    version: str  # "4.1.0", "5.0.0"
    listen: str  # loopback address all three servers bind
    api_port: int = 8082
    analytics_port: int = 8081
    introspect_port: int = 8083
    cassandra: CassandraSpec
    zookeeper: ZookeeperSpec
    rabbit: RabbitSpec
    secrets_file: Path
    state_dir: Path
    # fenced: northbound writes refused until an admin opens the api-server (the new cluster
    # before finalize). A fenced api-server also creates no default objects of its own: they
    # arrive through the sync, so the new database holds nothing the sync did not write.
    fenced: bool = False
    control_nodes: list[ControlNodeSpec] = Field(default_factory=list)
    asn: int = 64512
    peer: PeerSpec | None = None
    agent_timeout_s: float = 15.0
    startup_timeout_s: float = 90.0  # how long to retry unreachable services at start
    # this host among the cluster's config nodes (its config-node record `<cluster>-config-N`)
    node_index: int = Field(1, ge=1)
    # the cluster's config hosts (the analytics-api lists a config node UVE for each)
    config_nodes: int = Field(1, ge=1)
    # several config hosts: each writer takes part in a ZooKeeper election and works (opens
    # its queue, runs its passes) only while active, as Contrail's are active-backup
    writers_elect: bool = False
    # the cluster's control nodes this host's control role runs (names); None: all of
    # control_nodes. With several controller hosts, control_nodes lists the cluster's (the
    # analytics-api and the iBGP mesh know them all) and each host serves its own.
    serves_control: list[str] | None = None

    @property
    def api_url(self) -> str:
        return f"http://{self.listen}:{self.api_port}"

    @property
    def served_control_nodes(self) -> list[ControlNodeSpec]:
        if self.serves_control is None:
            return list(self.control_nodes)
        return [cn for cn in self.control_nodes if cn.name in self.serves_control]


def _check_private(path: Path) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SpecError(
            f"{path}: secrets file must be private (chmod 600), mode is {oct(mode & 0o777)}")


def load_spec(path: Path) -> ControllerSpec:
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise SpecError(f"{path}: cannot read spec: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path}: not JSON: {exc}") from exc
    try:
        spec = ControllerSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(f"{path}: invalid spec: {exc}") from exc
    if not spec.listen.startswith("127."):
        raise SpecError(f"{path}: listen {spec.listen!r} is not a loopback address (127.0.0.0/8)")
    if not spec.secrets_file.is_absolute():
        spec.secrets_file = (path.parent / spec.secrets_file).resolve()
    if not spec.state_dir.is_absolute():
        spec.state_dir = (path.parent / spec.state_dir).resolve()
    return spec


def load_secrets(path: Path) -> Secrets:
    try:
        _check_private(path)
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise SpecError(f"{path}: cannot read secrets file: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path}: secrets file is not JSON: {exc}") from exc
    try:
        return Secrets.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(f"{path}: invalid secrets file: {exc}") from exc


def write_secrets(path: Path, secrets: dict[str, str]) -> None:
    """Write a secrets file private from its first byte (helper for launchers and tests)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(secrets, fh)
    path.chmod(0o600)
