"""The operator's configuration: `issu.toml`, or the original `issu.conf` (INI `[DEFAULTS]`).

Every validation error names the file, the key and what is wrong. Secrets are
`SecretStr`: given literally, as `env:VAR` or as `file:/path`, and never printed.
"""

from __future__ import annotations

import configparser
import ipaddress
import json
import os
import shlex
import socket
import time
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from backends.cluster_version import ClusterVersionError, cluster_identity, cluster_release
from backends.node_records import NodeRecord
from backends.versions import parse_version

MASK = "********"


class ConfigError(Exception):
    """A configuration problem; `problems` holds one `path: key: what` line each."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = str(path)
        # one line each, so every line printed starts with the file's name
        self.problems = [" ".join(p.split("\n")) for p in problems]
        super().__init__("\n".join(f"{self.path}: {p}" for p in problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def _resolve_secret(value: Any, info: ValidationInfo) -> object:
    """`env:NAME` reads an environment variable, `file:/path` a file's first line.

    A relative secret file is found beside the config file.
    """
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not isinstance(value, str):
        return value
    if value.startswith("env:"):
        name = value[4:]
        if name not in os.environ:
            raise ValueError(f"environment variable {name} is not set")
        return os.environ[name]
    if value.startswith("file:"):
        secret_path = Path(value[5:]).expanduser()
        base = (info.context or {}).get("base_dir")
        if base is not None and not secret_path.is_absolute():
            secret_path = Path(base) / secret_path
        try:
            return secret_path.read_text().splitlines()[0] if secret_path.stat().st_size else ""
        except OSError as exc:
            raise ValueError(f"cannot read secret file {secret_path}: {exc.strerror}") from None
    return value


def _http_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{url!r} is not an http(s) URL")
    return url.rstrip("/")


def _check_host_port(value: str, default_port: int | None = None) -> str:
    host, _, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
    if not host:
        host, port = value, ""
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"{value!r} is not a host or host:port")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"{value!r} has an invalid port")
    if not port and default_port is not None:
        return f"{host}:{default_port}"
    return value


def _check_host_ports(hosts: list[str]) -> list[str]:
    """Each of `hosts` is `host` or `host:port` (ValueError naming the first that is not)."""
    for host in hosts:
        _check_host_port(host)
    return hosts


def check_cassandra_hosts(hosts: list[str]) -> list[str]:
    """Cassandra contact points, `host` or `host:port`; the driver takes one port for all,
    so entries naming different ports are refused (ValueError)."""
    _check_host_ports(hosts)
    _one_port({int(h.rsplit(":", 1)[1]) for h in hosts if h.count(":") == 1})
    return hosts


def _one_port(ports: set[int]) -> None:
    if len(ports) > 1:
        raise ValueError(f"the hosts name different ports ({', '.join(map(str, sorted(ports)))}"
                         "); the Cassandra driver uses one port for every host")


def check_prefix(prefix: str) -> str:
    if prefix and not prefix.replace("_", "").isalnum():
        raise ValueError("a keyspace prefix may hold only letters, digits and _")
    return prefix


def parse_bool(value: str) -> bool:
    """The original tools' boolean words (ValueError for anything else)."""
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a boolean (true/false)")


class CassandraConfig(_Strict):
    hosts: list[str] = Field(min_length=1)
    port: int = Field(9042, gt=0, lt=65536)
    user: str | None = None
    password: SecretStr | None = None
    use_ssl: bool = False
    ca_certs: Path | None = None
    prefix: str = ""
    # the ring's seed nodes (cassandra.yaml's seed_provider seeds): a seed does not
    # bootstrap, so the stay approach never picks one to leave and rejoin empty
    seeds: list[str] = []

    _secret = field_validator("password", mode="before")(_resolve_secret)

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, hosts: list[str]) -> list[str]:
        return check_cassandra_hosts(hosts)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: list[str]) -> list[str]:
        return _check_host_ports(seeds)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, prefix: str) -> str:
        return check_prefix(prefix)

    def keyspace(self, name: str) -> str:
        return f"{self.prefix}_{name}" if self.prefix else name


class ZookeeperConfig(_Strict):
    hosts: list[str] = Field(min_length=1)
    prefix: str = ""

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, hosts: list[str]) -> list[str]:
        return [_check_host_port(h, 2181) for h in hosts]

    @property
    def root(self) -> str:
        return f"/{self.prefix}" if self.prefix else "/"

    @property
    def connect_string(self) -> str:
        return ",".join(self.hosts)


class RabbitConfig(_Strict):
    hosts: list[str] = Field(min_length=1)
    port: int = Field(5672, gt=0, lt=65536)
    user: str = "guest"
    password: SecretStr = SecretStr("guest")
    vhost: str = "/"
    use_ssl: bool = False
    ssl_version: str | None = None
    ssl_ca_certs: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_certfile: Path | None = None
    ha_mode: bool = False
    exchange: str = "vnc_config.object-update"

    _secret = field_validator("password", mode="before")(_resolve_secret)

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, hosts: list[str]) -> list[str]:
        return _check_host_ports(hosts)


class ApiServerConfig(_Strict):
    url: str
    user: str | None = None
    password: SecretStr | None = None
    tenant: str = "admin"

    _secret = field_validator("password", mode="before")(_resolve_secret)
    _url = field_validator("url")(_http_url)


class AnalyticsConfig(_Strict):
    url: str

    _url = field_validator("url")(_http_url)


class ControlNodeConfig(_Strict):
    name: str = Field(min_length=1)
    address: str

    @field_validator("address")
    @classmethod
    def _address(cls, address: str) -> str:
        ipaddress.ip_address(address)
        return address


def _host_address(address: str) -> str:
    if address.startswith("-") or any(c.isspace() for c in address) or not address:
        raise ValueError(f"{address!r} is not a host name or address")
    return address


ControllerRole = Literal["config", "control", "analytics", "database", "northbound"]
# The roles every cluster needs a host for once an inventory is given (northbound hosts are
# where neutron-server / kube-manager / vcenter-plugin run: optional, deployment-specific).
REQUIRED_ROLES: tuple[str, ...] = ("config", "control", "analytics", "database")


class ControllerHostConfig(_Strict):
    """One controller host of a cluster, reached over SSH like a compute (key only, host key
    in ssh.known_hosts); `profile` is a controller profile (backends/controller.py)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    address: str
    roles: list[ControllerRole] = Field(min_length=1)
    ssh_user: str = Field("root", pattern=r"^[a-z_][a-z0-9_.-]*$")
    ssh_key: Path
    ssh_port: int = Field(22, gt=0, lt=65536)
    profile: str = "systemd"

    @field_validator("address")
    @classmethod
    def _address(cls, address: str) -> str:
        return _host_address(address)


class ClusterConfig(_Strict):
    name: str
    version: str
    cluster_id: str = ""
    cassandra: CassandraConfig
    zookeeper: ZookeeperConfig
    rabbit: RabbitConfig
    api_server: ApiServerConfig | None = None
    analytics: AnalyticsConfig | None = None
    control_nodes: list[ControlNodeConfig] = []
    controllers: list[ControllerHostConfig] = []
    asn: int = Field(64512, gt=0, lt=2**32)

    @field_validator("version")
    @classmethod
    def _version(cls, version: str) -> str:
        parse_version(version)
        return version


class SyncConfig(_Strict):
    keyspaces: list[str] | None = None
    zk_subtrees: list[str] = ["fq-name-to-uuid", "api-server", "id"]
    queue_name: str = "vnc-config.issu-queue"
    concurrency: int = Field(8, ge=1, le=256)
    # run-sync: processes applying changes (one process replays as fast as one interpreter)
    apply_processes: int = Field(2, ge=1, le=32)
    # pre-sync / post-sync: processes copying token slices, each with `concurrency` in flight
    copy_processes: int = Field(2, ge=1, le=32)
    page_size: int = Field(500, ge=10, le=100_000)
    slices_per_table: int = Field(64, ge=1, le=65_536)
    reconcile_interval_s: float = Field(300, gt=0)
    # finalize: after the fence, old's writers' tables must stay unchanged this long before
    # the writers are stopped (they derive state from the api-server's last changes); 0: no wait
    writers_settle_s: float = Field(5.0, ge=0, le=600)
    writers_settle_timeout_s: float = Field(120.0, gt=0, le=3600)
    metrics_listen: str = "127.0.0.1:9109"
    reset_config: bool = False

    @field_validator("metrics_listen")
    @classmethod
    def _metrics_listen(cls, value: str) -> str:
        from backends.runsync.metrics import parse_listen

        parse_listen(value)
        return value


ProfileName = str


class ComputeConfig(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    address: str
    ssh_user: str = Field("root", pattern=r"^[a-z_][a-z0-9_.-]*$")
    ssh_key: Path
    ssh_port: int = Field(22, gt=0, lt=65536)
    profile: ProfileName = "package-apt"

    @field_validator("address")
    @classmethod
    def _address(cls, address: str) -> str:
        if address.startswith("-") or any(c.isspace() for c in address) or not address:
            raise ValueError(f"{address!r} is not a host name or address")
        return address


class BatchConfig(_Strict):
    size: int = Field(10, ge=1)
    parallel: int = Field(5, ge=1, le=1000)
    canary: int = Field(1, ge=0)
    max_failures: int = Field(1, ge=0)
    health_timeout_s: float = Field(300, gt=0)


class SshConfig(_Strict):
    known_hosts: Path
    connect_timeout_s: float = Field(10, gt=0)
    command_timeout_s: float = Field(1800, gt=0)


class FinalizeConfig(_Strict):
    # Delete the old hosts' records from new at finalize (old control nodes' bgp-routers,
    # old config/analytics/database node objects). Off: they stay until the operator
    # retires old (`issu finalize --remove-old-records` asks for it for one run).
    remove_old_records: bool = False


class RingConfig(_Strict):
    # How a database host runs Cassandra's nodetool for the approaches' ring steps (the
    # ring runner's checks, joins, repairs, decommissions, over SSH): a command line, split
    # as a shell would (no shell runs it), e.g. "docker exec cassandra nodetool";
    # `issu ring run --nodetool` overrides it for one run.
    nodetool: str = "nodetool"

    @field_validator("nodetool")
    @classmethod
    def _nodetool(cls, value: str) -> str:
        nodetool_argv(value)
        return value


def nodetool_argv(command: str) -> list[str]:
    """`ring.nodetool` (or `--nodetool`) as the argv run on a host; ValueError saying why a
    command is not one (empty, an unclosed quote)."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ValueError(f"not a command line ({exc}): {command!r}") from None
    if not argv:
        raise ValueError("empty: give the command a database host runs nodetool with, e.g. "
                         "\"nodetool\" or \"docker exec cassandra nodetool\"")
    return argv


class IssuConfig(_Strict):
    old: ClusterConfig
    new: ClusterConfig
    sync: SyncConfig = SyncConfig()
    finalize: FinalizeConfig = FinalizeConfig()
    ring: RingConfig = RingConfig()
    # the topology of the upgrade (docs/runbook.md); unset: guessed from the Cassandra hosts
    # (orchestrator/approaches.py); `issu plan --approach` records another one
    approach: Literal["separate", "grow", "stay", "rolling"] | None = None
    computes: list[ComputeConfig] = []
    batch: BatchConfig = BatchConfig()
    ssh: SshConfig | None = None
    profiles: dict[str, dict[str, str]] = {}
    # controller profile overrides: steps and variables are strings, `services` a table
    controller_profiles: dict[str, dict[str, str | dict[str, str]]] = {}
    state_dir: Path = Path("/var/lib/issu")
    source: Literal["toml", "ini"] = "toml"

    @model_validator(mode="after")
    def _consistent(self) -> IssuConfig:
        names = [c.name for c in self.computes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"computes: duplicate names {', '.join(dupes)}")
        if self.computes and self.ssh is None:
            raise ValueError("ssh: required when computes are listed (known_hosts)")
        hosts = [*self.old.controllers, *self.new.controllers]
        if hosts and self.ssh is None:
            raise ValueError("ssh: required when controllers are listed (known_hosts)")
        names = [h.name for h in hosts]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"controllers: duplicate names {', '.join(dupes)}")
        if hosts or self.controller_profiles:
            from backends.compute import ProfileError
            from backends.controller import build_controller_profiles

            try:
                known = build_controller_profiles(self.controller_profiles)
            except ProfileError as exc:
                raise ValueError(str(exc)) from None
            for side in ("old", "new"):
                for i, host in enumerate(getattr(self, side).controllers):
                    if host.profile not in known:
                        raise ValueError(
                            f"{side}.controllers.{i}.profile: unknown controller profile "
                            f"{host.profile!r} (known: {', '.join(sorted(known))})")
        if parse_version(self.new.version) <= parse_version(self.old.version):
            raise ValueError(
                f"new.version {self.new.version} must be higher than old.version "
                f"{self.old.version}"
            )
        same_db = _same_hosts(self.old.cassandra.hosts, self.new.cassandra.hosts)
        if same_db and self.old.cassandra.prefix == self.new.cassandra.prefix:
            raise ValueError(
                "old and new share Cassandra hosts "
                f"{', '.join(same_db)} with the same prefix: set odb/ndb prefixes"
            )
        same_zk = _same_hosts(self.old.zookeeper.hosts, self.new.zookeeper.hosts)
        if same_zk and self.old.zookeeper.root == self.new.zookeeper.root:
            raise ValueError(
                "old and new share ZooKeeper hosts "
                f"{', '.join(same_zk)} with the same root: set odb/ndb prefixes"
            )
        same_mq = _same_brokers(self.old.rabbit, self.new.rabbit)
        if same_mq and self.old.rabbit.vhost == self.new.rabbit.vhost:
            # run-sync's forward queue (old's vhost) and the reverse one (new's), and each
            # api-server's notification exchange, would be one: changes would loop or mix.
            raise ValueError(
                f"[old.rabbit] and [new.rabbit] name the same RabbitMQ broker "
                f"{', '.join(same_mq)} and the same vhost {self.old.rabbit.vhost!r}: "
                "give new its own vhost (e.g. vhost = \"/v2\" in [new.rabbit])"
            )
        return self


def _address_of(host: str) -> str:
    """The address a host entry reaches, without its port (`localhost:9042` -> 127.0.0.1)."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    try:
        return str(socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)[0][4][0])
    except (OSError, IndexError):
        return name.lower()


def cluster_addresses(cluster: ClusterConfig) -> set[str]:
    """Every address a cluster's config names: its controller hosts, api-server, analytics,
    control nodes, Cassandra, ZooKeeper and RabbitMQ hosts."""
    hosts = [h.address for h in cluster.controllers]
    hosts += [cn.address for cn in cluster.control_nodes]
    hosts += [*cluster.cassandra.hosts, *cluster.zookeeper.hosts, *cluster.rabbit.hosts]
    for api in (cluster.api_server, cluster.analytics):
        name = urlparse(api.url).hostname if api else None
        if name:
            hosts.append(name)
    return {_address_of(h) for h in hosts}


def same_address(host: str) -> str:
    """The address a host entry reaches (see `_address_of`)."""
    return _address_of(host)


def _broker_endpoints(rabbit: RabbitConfig) -> dict[str, str]:
    """Each host entry of a RabbitMQ config by the address:port it reaches (an entry may carry
    its own port, as run-sync's URLs allow; else the config's port)."""
    out = {}
    for entry in rabbit.hosts:
        host, sep, port = entry.rpartition(":")
        if not (sep and port.isdigit()):
            host, port = entry, str(rabbit.port)
        out[f"{_address_of(host)}:{port}"] = entry
    return out


def _same_brokers(old: RabbitConfig, new: RabbitConfig) -> list[str]:
    """old's broker entries that reach the same address and port as one of new's."""
    new_endpoints = _broker_endpoints(new)
    return sorted(entry for endpoint, entry in _broker_endpoints(old).items()
                  if endpoint in new_endpoints)


def _same_hosts(old: list[str], new: list[str]) -> list[str]:
    """Hosts of two lists that reach the same address, whatever their spelling or port."""
    new_addresses = {_address_of(h) for h in new}
    return sorted(h for h in old if _address_of(h) in new_addresses)


# --------------------------------------------------------------------------- loading


def _format_error(err: ErrorDetails) -> str:
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "required key is missing"
    msg = msg.removeprefix("Value error, ")
    return f"{loc}: {msg}"


def _validate(path: Path, data: dict[str, Any]) -> IssuConfig:
    try:
        config = IssuConfig.model_validate(data, context={"base_dir": path.parent})
    except ValidationError as exc:
        raise ConfigError(path, [_format_error(e) for e in exc.errors()]) from None
    config.state_dir = _beside(path, "state_dir", config.state_dir)
    for i, compute in enumerate(config.computes):
        compute.ssh_key = _beside(path, f"computes.{i}.ssh_key", compute.ssh_key)
    if config.ssh:
        config.ssh.known_hosts = _beside(path, "ssh.known_hosts", config.ssh.known_hosts)
    for side in ("old", "new"):
        for i, host in enumerate(getattr(config, side).controllers):
            host.ssh_key = _beside(path, f"{side}.controllers.{i}.ssh_key", host.ssh_key)
    return config


def validate_config(path: Path, data: dict[str, Any]) -> IssuConfig:
    """The config `data` (a TOML document's shape) as if read from `path`; ConfigError naming
    every problem."""
    return _validate(path, data)


def _beside(path: Path, key: str, value: Path) -> Path:
    """`value` made absolute (relative to the config file); a path the system cannot take
    (a NUL byte) is a ConfigError naming the key."""
    try:
        if "\x00" in str(value):
            raise ValueError("embedded null byte")
        return value if value.is_absolute() else (path.parent / value).resolve()
    except (ValueError, OSError) as exc:
        raise ConfigError(path, [f"{key}: {str(value)!r} is not a usable path: {exc}"]) from None


# Far above any real configuration; refuses `-c /dev/zero` instead of reading it forever.
MAX_CONFIG_BYTES = 4 * 1024 * 1024


def read_config_text(path: Path) -> str:
    """A configuration file's text: UTF-8, a leading byte-order mark dropped (Windows editors
    write one). ConfigError naming the file when it cannot be read, is too large or is not
    UTF-8."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(path, [f"cannot read: {exc.strerror}"]) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(path, [f"too large for a configuration file (over "
                                 f"{MAX_CONFIG_BYTES // 2**20} MiB)"])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        utf16 = data[:2] in (b"\xff\xfe", b"\xfe\xff")
        raise ConfigError(path, [
            f"not UTF-8 text (byte {exc.start} is {data[exc.start:exc.start + 1]!r})"
            + ("; it looks like UTF-16: save it as UTF-8" if utf16 else "")]) from None


def load_config(path: Path | str) -> IssuConfig:
    """Load `issu.toml` (or the original INI `issu.conf`, recognised by its `[DEFAULTS]`)."""
    path = Path(path)
    text = read_config_text(path)
    if text.lstrip().startswith("[DEFAULTS]") or path.suffix in {".conf", ".ini"}:
        data = ini_to_dict(path, text)
        resolve_ini_versions(path, data)
        return _validate(path, data)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"not valid TOML: {exc}"]) from None
    return _validate(path, data)


def check_files(config: IssuConfig) -> list[str]:
    """Problems with files the config names (keys, known_hosts), checked without network."""
    problems = []
    if config.ssh and not config.ssh.known_hosts.is_file():
        problems.append(f"ssh.known_hosts: {config.ssh.known_hosts} does not exist")
    for i, compute in enumerate(config.computes):
        if not compute.ssh_key.is_file():
            problems.append(f"computes.{i}.ssh_key: {compute.ssh_key} does not exist")
        elif compute.ssh_key.stat().st_mode & 0o077:
            problems.append(
                f"computes.{i}.ssh_key: {compute.ssh_key} is readable by others (chmod 600)"
            )
    for side in ("old", "new"):
        for i, host in enumerate(getattr(config, side).controllers):
            key = f"{side}.controllers.{i}.ssh_key"
            if not host.ssh_key.is_file():
                problems.append(f"{key}: {host.ssh_key} does not exist")
            elif host.ssh_key.stat().st_mode & 0o077:
                problems.append(f"{key}: {host.ssh_key} is readable by others (chmod 600)")
    return problems


def check_controllers(config: IssuConfig) -> list[str]:
    """Once a controller inventory is given: every role without a host, and every host the
    cluster config names (control nodes, Cassandra, ZooKeeper, RabbitMQ, api-server,
    analytics) that no inventory host with the matching role has."""
    if not (config.old.controllers or config.new.controllers):
        return []
    problems = []
    for side in ("old", "new"):
        cluster: ClusterConfig = getattr(config, side)
        by_role: dict[str, set[str]] = {}
        for host in cluster.controllers:
            for host_role in host.roles:
                by_role.setdefault(host_role, set()).add(_address_of(host.address))
        for needed in REQUIRED_ROLES:
            if needed not in by_role:
                problems.append(f"{side}.controllers: no host with role {needed}")
        wanted: list[tuple[str, str, str]] = [
            (f"{side}.control_nodes.{i}", cn.address, "control")
            for i, cn in enumerate(cluster.control_nodes)]
        wanted += [(f"{side}.cassandra.hosts.{i}", h, "database")
                   for i, h in enumerate(cluster.cassandra.hosts)]
        wanted += [(f"{side}.zookeeper.hosts.{i}", h, "database")
                   for i, h in enumerate(cluster.zookeeper.hosts)]
        wanted += [(f"{side}.rabbit.hosts.{i}", h, "database")
                   for i, h in enumerate(cluster.rabbit.hosts)]
        for key, api, role in ((f"{side}.api_server.url", cluster.api_server, "config"),
                               (f"{side}.analytics.url", cluster.analytics, "analytics")):
            host_name = urlparse(api.url).hostname if api else None
            if host_name:
                wanted.append((key, host_name, role))
        for key, where, role in wanted:
            address = _address_of(where)
            if role in by_role and address not in by_role[role]:
                problems.append(f"{key}: {where} is not in {side}.controllers with role {role}")
    return problems


# --------------------------------------------------------------------------- the original INI

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off", ""}


def _ini_bool(path: Path, key: str, value: str) -> bool:
    try:
        return parse_bool(value)
    except ValueError as exc:
        raise ConfigError(path, [f"DEFAULTS.{key}: {exc}"]) from None


def _ini_list(value: str) -> list[str]:
    return [item for item in value.replace(",", " ").split() if item]


def _ini_hosts_port(path: Path, key: str, items: list[str]) -> tuple[list[str], int | None]:
    """(hosts, the port they share) of `host[:port]` items; a port that is not a number,
    or ports that differ between hosts, are refused naming the option."""
    hosts, ports = [], set()
    for item in items:
        if item.count(":") > 1 and not item.startswith("["):
            hosts.append(item)  # a bare IPv6 address
            continue
        host, sep, port = item.rpartition(":")
        if not sep or item.endswith("]"):
            hosts.append(item.strip("[]"))
            continue
        host = host.strip("[]") if host.startswith("[") and host.endswith("]") else host
        if not port.isdigit() or not 0 < int(port) < 65536 or not host:
            raise ConfigError(path, [f"DEFAULTS.{key}: {item!r} is not host:port"])
        hosts.append(host)
        ports.add(int(port))
    try:
        _one_port(ports)
    except ValueError as exc:
        raise ConfigError(path, [f"DEFAULTS.{key}: {exc}"]) from None
    return hosts, ports.pop() if ports else None


def ini_versions_missing(path: Path, text: str) -> list[str]:
    """The version options (`old_version`, `new_version`) the original issu.conf does not
    set: the original tool had none."""
    parser = configparser.ConfigParser(interpolation=None, default_section="__none__")
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error:
        return []  # ini_to_dict names the problem
    opts = dict(parser.items("DEFAULTS")) if parser.has_section("DEFAULTS") else {}
    return [key for key in ("old_version", "new_version") if not opts.get(key, "").strip()]


def ini_to_dict(path: Path, text: str) -> dict[str, Any]:
    """Map the original tool's `[DEFAULTS]` options onto the TOML structure."""
    parser = configparser.ConfigParser(interpolation=None, default_section="__none__")
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        raise ConfigError(path, [f"not a valid INI file: {exc.message}"]) from None
    if not parser.has_section("DEFAULTS"):
        raise ConfigError(path, ["[DEFAULTS]: section is missing"])
    opts = dict(parser.items("DEFAULTS"))
    known = _legacy_known_keys()
    unknown = sorted(set(opts) - known)
    if unknown:
        raise ConfigError(path, [f"DEFAULTS.{k}: unknown option" for k in unknown])

    def side(prefix: str) -> dict[str, Any]:
        def opt(key: str, default: str | None = None) -> str | None:
            return opts.get(f"{prefix}_{key}", default)

        cassandra: dict[str, Any] = {
            "hosts": _ini_list(opt("cassandra_address_list", "") or ""),
            "use_ssl": _ini_bool(path, f"{prefix}_cassandra_use_ssl",
                                 opt("cassandra_use_ssl", "false") or ""),
            "prefix": opts.get("odb_prefix" if prefix == "old" else "ndb_prefix", ""),
        }
        for src, dst in (("cassandra_user", "user"), ("cassandra_password", "password"),
                         ("cassandra_ca_certs", "ca_certs")):
            if opt(src):
                cassandra[dst] = opt(src)
        # Original lists hold host:port; the driver takes one port for every host.
        hosts, port = _ini_hosts_port(path, f"{prefix}_cassandra_address_list",
                                      cassandra["hosts"])
        cassandra["hosts"] = hosts
        if port is not None:
            cassandra["port"] = port
        rabbit: dict[str, Any] = {
            "hosts": _ini_list(opt("rabbit_address_list", "") or ""),
            "use_ssl": _ini_bool(path, f"{prefix}_rabbit_use_ssl",
                                 opt("rabbit_use_ssl", "false") or ""),
            "ha_mode": _ini_bool(path, f"{prefix}_rabbit_ha_mode",
                                 opt("rabbit_ha_mode", "false") or ""),
        }
        for src, dst in (("rabbit_user", "user"), ("rabbit_password", "password"),
                         ("rabbit_vhost", "vhost"), ("rabbit_port", "port"),
                         ("rabbit_ssl_version", "ssl_version"),
                         ("rabbit_ssl_ca_certs", "ssl_ca_certs"),
                         ("rabbit_ssl_keyfile", "ssl_keyfile"),
                         ("rabbit_ssl_certfile", "ssl_certfile")):
            if opt(src):
                rabbit[dst] = opt(src)
        zk_prefix = cassandra["prefix"]
        cluster: dict[str, Any] = {
            "name": prefix,
            "cassandra": cassandra,
            "zookeeper": {"hosts": _ini_list(opt("zookeeper_address_list", "") or ""),
                          "prefix": zk_prefix},
            "rabbit": rabbit,
        }
        # No default: the original file names no release (resolve_ini_versions reads it
        # from the cluster's analytics, or refuses).
        if (opt("version") or "").strip():
            cluster["version"] = (opt("version") or "").strip()
        if (opt("analytics_url") or "").strip():
            cluster["analytics"] = {"url": (opt("analytics_url") or "").strip()}
        return cluster

    data: dict[str, Any] = {"old": side("old"), "new": side("new"), "source": "ini"}
    sync: dict[str, Any] = {}
    if "old_rabbit_q_name" in opts:
        sync["queue_name"] = opts["old_rabbit_q_name"]
    if "reset_config" in opts:
        sync["reset_config"] = _ini_bool(path, "reset_config", opts["reset_config"])
    data["sync"] = sync
    if "new_api_info" in opts:
        data["new"]["api_server"] = _legacy_api_info(path, opts["new_api_info"])
    if "state_dir" in opts:
        data["state_dir"] = opts["state_dir"]
    return data


# The releases read from the analytics-apis, kept in the state_dir: every later load of the
# same file reads them from here instead of asking both clusters again.
VERSION_PINS = "versions-read.json"


def _state_dir_of(path: Path, data: dict[str, Any]) -> Path:
    state_dir = Path(str(data.get("state_dir") or "/var/lib/issu"))
    return state_dir if state_dir.is_absolute() else path.parent / state_dir


def _read_pins(file: Path) -> dict[str, Any]:
    try:
        pins = json.loads(file.read_text())
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: read from the clusters again
    return pins if isinstance(pins, dict) else {}


def _write_pins(file: Path, pins: dict[str, Any]) -> None:
    """Kept only once the state_dir exists (the upgrade's journal makes it): a `config check`
    before that creates nothing."""
    if not file.parent.is_dir():
        return
    tmp = file.with_name(f".{file.name}.tmp")
    try:
        tmp.write_text(json.dumps(pins, indent=1) + "\n")
        os.replace(tmp, file)
    except OSError:
        tmp.unlink(missing_ok=True)  # not writable: the next load asks the clusters again


def resolve_ini_versions(path: Path, data: dict[str, Any],
                         read_release: Callable[[str], str] = cluster_release,
                         read_identity: Callable[[str], str] = cluster_identity) -> None:
    """Fill `old.version` / `new.version` of an original issu.conf (as `ini_to_dict` made it)
    that does not set them, from the build_info the cluster's config and control nodes report
    to its analytics-api (`DEFAULTS.old_analytics_url`, `new_analytics_url`). A side with
    neither is refused naming both options: issu never assumes a release.

    A release read is pinned in the state_dir (VERSION_PINS) with the cluster it came from:
    the URL, the database prefix and the config and control nodes the analytics-api lists
    (two requests, not every node's UVE). A later load takes it only when all three are the
    same, so another cluster behind the same URL is read again (an in-place upgrade of the
    same nodes: preflight's "versions running" compares with what the controllers run)."""
    problems = []
    pins_file = _state_dir_of(path, data) / VERSION_PINS
    pins = _read_pins(pins_file)
    read = False
    for side in ("old", "new"):
        cluster = data[side]
        if cluster.get("version"):
            continue
        url = (cluster.get("analytics") or {}).get("url")
        if not url:
            problems.append(
                f"DEFAULTS.{side}_version: not set, and no DEFAULTS.{side}_analytics_url to "
                f"read it from: set {side}_version = X.Y.Z (the release {side} runs) or "
                f"{side}_analytics_url = http://HOST:8081 (issu then reads the build_info of "
                "its config and control nodes); issu never assumes a release")
            continue
        try:
            _http_url(url)
        except ValueError as exc:
            problems.append(f"DEFAULTS.{side}_analytics_url: {exc}")
            continue
        prefix = str((cluster.get("cassandra") or {}).get("prefix") or "")
        pinned = pins.get(side)
        try:
            identity = read_identity(url)
            if isinstance(pinned, dict) and pinned.get("version") and (
                    pinned.get("url"), pinned.get("prefix"), pinned.get("identity")) == (
                    url, prefix, identity):
                cluster["version"] = str(pinned["version"])
                continue
            cluster["version"] = read_release(url)
        except ClusterVersionError as exc:
            problems.append(f"DEFAULTS.{side}_version: not set, and it could not be read "
                            f"from DEFAULTS.{side}_analytics_url: {exc}")
            continue
        pins[side] = {"url": url, "prefix": prefix, "identity": identity,
                      "version": cluster["version"], "read_at": time.time()}
        read = True
    if problems:
        raise ConfigError(path, problems)
    if read:
        _write_pins(pins_file, pins)


def _legacy_api_info(path: Path, literal: str) -> dict[str, Any]:
    """`new_api_info` was a Python literal `{"host": [user, password]}`; parse it safely."""
    import ast

    try:
        info = ast.literal_eval(literal)
        (host, creds), *_ = info.items()
        user, password = creds[0], creds[1]
    except (ValueError, SyntaxError, AttributeError, TypeError, IndexError):
        raise ConfigError(
            path, ['DEFAULTS.new_api_info: expected {"host": ["user", "password"]}']
        ) from None
    return {"url": f"http://{host}:8082", "user": user, "password": password}


def _legacy_known_keys() -> set[str]:
    per_side = [
        "rabbit_user", "rabbit_password", "rabbit_vhost", "rabbit_port", "rabbit_ha_mode",
        "rabbit_q_name", "rabbit_address_list", "rabbit_use_ssl", "rabbit_ssl_version",
        "rabbit_ssl_ca_certs", "rabbit_ssl_keyfile", "rabbit_ssl_certfile",
        "cassandra_address_list", "cassandra_user", "cassandra_password", "cassandra_use_ssl",
        "cassandra_ca_certs", "zookeeper_address_list", "version", "analytics_url",
    ]
    keys = {f"{side}_{k}" for side in ("old", "new") for k in per_side}
    return keys | {"odb_prefix", "ndb_prefix", "reset_config", "new_api_info", "state_dir"}


# --------------------------------------------------------------------------- output


def _plain(value: object, mask: bool) -> object:
    if isinstance(value, SecretStr):
        return MASK if mask else value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v, mask) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_plain(v, mask) for v in value]
    return value


def config_as_dict(config: IssuConfig, *, mask_secrets: bool = True) -> dict[str, Any]:
    raw = {name: getattr(config, name) for name in type(config).model_fields}
    raw.pop("source")

    def walk(value: object) -> object:
        if isinstance(value, BaseModel):
            return {k: walk(getattr(value, k)) for k in type(value).model_fields}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    return {k: _plain(walk(v), mask_secrets) for k, v in raw.items() if v is not None}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    # JSON string escapes are valid TOML basic-string escapes (\\n, \\", \\uXXXX); TOML also
    # forbids a raw DEL, which JSON leaves as it is.
    return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")


def to_toml(data: dict[str, Any]) -> str:
    """A small TOML writer for the config's shape (tables, arrays of tables, scalars and
    lists); the one the project has (`issu config`, the demo's and the tests' configs).
    Empty tables are left out."""
    lines: list[str] = []

    def emit(table: dict[str, Any], prefix: str) -> None:
        scalars = {k: v for k, v in table.items()
                   if not isinstance(v, dict) and not _is_table_list(v)}
        if prefix and scalars:
            lines.append(f"[{prefix}]")
        for key, value in scalars.items():
            lines.append(f"{_key(key)} = {_toml_value(value)}")
        if scalars:
            lines.append("")
        for key, value in table.items():
            name = f"{prefix}.{_key(key)}" if prefix else _key(key)
            if isinstance(value, dict):
                emit(value, name)
            elif _is_table_list(value):
                for item in value:
                    lines.append(f"[[{name}]]")
                    for k, v in item.items():
                        lines.append(f"{_key(k)} = {_toml_value(v)}")
                    lines.append("")

    emit(data, "")
    return "\n".join(lines).rstrip() + "\n"


def _is_table_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "")
    return key if bare.isascii() and bare.isalnum() else _toml_value(key)


# --------------------------------------------------------------------------- generate


def _read_api_conf(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    text = read_config_text(path)
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        raise ConfigError(path, [f"not a valid INI file: {exc.message}"]) from None
    if not parser.has_section("DEFAULTS"):
        raise ConfigError(path, ["[DEFAULTS]: section is missing (is this contrail-api.conf?)"])
    return dict(parser.items("DEFAULTS"))


@dataclass(frozen=True)
class InventorySsh:
    """How `config generate` lists the controller hosts it finds: SSH key, known_hosts and
    the controller profile of every host."""

    key: Path
    known_hosts: Path
    profile: str = "systemd"
    user: str = "root"


def _inventory(side: str, cluster: dict[str, Any], ssh: InventorySsh,
               records: Iterable[NodeRecord] = ()) -> list[dict[str, Any]]:
    """One host per address the api conf names, with the roles it names it for: config (the
    api-server's listen address), database (Cassandra, ZooKeeper, RabbitMQ); and per address
    of the cluster's node records (config/analytics/database nodes, control nodes' bgp-routers)
    its role. A role nothing names is left for `issu config check` to name."""
    roles: dict[str, list[str]] = {}

    def add(address: str, role: str) -> None:
        address = _address_of(address)
        if role not in roles.setdefault(address, []):
            roles[address].append(role)

    api_host = urlparse(cluster["api_server"]["url"]).hostname or ""
    add(api_host, "config")
    for host in (*cluster["cassandra"]["hosts"], *cluster["zookeeper"]["hosts"],
                 *cluster["rabbit"]["hosts"]):
        add(host, "database")
    for record in records:
        if record.address:
            add(record.address, record.role)
    return [{"name": f"{side}-{address.replace(':', '-')}", "address": address,
             "roles": host_roles, "ssh_user": ssh.user, "ssh_key": str(ssh.key),
             "profile": ssh.profile}
            for address, host_roles in roles.items()]


def generate_from_api_confs(
    old_conf: Path, new_conf: Path, old_version: str | None, new_version: str | None,
    state_dir: Path, inventory: InventorySsh | None = None,
) -> dict[str, Any]:
    """Build a config from both clusters' contrail-api.conf, as the original orchestrators did;
    with `inventory`, the controller hosts those confs name too. A version not given is left
    out (`add_node_records` / the caller fills it)."""

    def side(name: str, path: Path, version: str | None) -> dict[str, Any]:
        opts = _read_api_conf(path)
        problems = [f"DEFAULTS.{k}: required key is missing"
                    for k in ("cassandra_server_list", "zk_server_ip", "rabbit_server")
                    if k not in opts]
        if problems:
            raise ConfigError(path, problems)
        cass = _ini_list(opts["cassandra_server_list"])
        port = int(cass[0].rsplit(":", 1)[1]) if ":" in cass[0] else 9042
        if port == 9160:  # Thrift port in old configs; the CQL port is what we speak.
            port = 9042
        listen = opts.get("listen_ip_addr", "127.0.0.1")
        if listen in {"0.0.0.0", ""}:
            listen = cass[0].rsplit(":", 1)[0]
        return {
            "name": name,
            **({"version": version} if version else {}),
            "cluster_id": opts.get("cluster_id", ""),
            "cassandra": {"hosts": [h.rsplit(":", 1)[0] for h in cass], "port": port,
                          "prefix": opts.get("cluster_id", "")},
            "zookeeper": {"hosts": _ini_list(opts["zk_server_ip"]),
                          "prefix": opts.get("cluster_id", "")},
            "rabbit": {"hosts": _ini_list(opts["rabbit_server"]),
                       "port": int(opts.get("rabbit_port", "5672")),
                       "user": opts.get("rabbit_user", "guest"),
                       "password": f"env:ISSU_{name.upper()}_RABBIT_PASSWORD",
                       "vhost": opts.get("rabbit_vhost", "/")},
            "api_server": {"url": f"http://{listen}:{opts.get('listen_port', '8082')}"},
        }

    data: dict[str, Any] = {
        "state_dir": str(state_dir),
        "old": side("old", old_conf, old_version),
        "new": side("new", new_conf, new_version),
    }
    if inventory is not None:
        for name in ("old", "new"):
            data[name]["controllers"] = _inventory(name, data[name], inventory)
        data["ssh"] = {"known_hosts": str(inventory.known_hosts)}
    return data


def add_node_records(data: dict[str, Any], side: str, records: list[NodeRecord],
                     inventory: InventorySsh | None) -> None:
    """Fill one side of a generated config from its api-server's node records: the control
    nodes (bgp-routers), the analytics URL (the first analytics node, port 8081) and, with
    `inventory`, the controller hosts with the roles the records give them."""
    cluster = data[side]
    control = [r for r in records if r.role == "control" and r.address]
    if control:
        cluster["control_nodes"] = [{"name": r.name, "address": r.address} for r in control]
    analytics = [r for r in records if r.role == "analytics" and r.address]
    if analytics and "analytics" not in cluster:
        host = analytics[0].address
        cluster["analytics"] = {"url": f"http://{f'[{host}]' if ':' in host else host}:8081"}
    if inventory is not None:
        cluster["controllers"] = _inventory(side, cluster, inventory, records)


def secret_sources(config: IssuConfig) -> Iterable[str]:
    """Every secret value, so logs and journal writers can scrub them."""
    for cluster in (config.old, config.new):
        for secret in (cluster.cassandra.password, cluster.rabbit.password,
                       cluster.api_server.password if cluster.api_server else None):
            if secret is not None and secret.get_secret_value():
                yield secret.get_secret_value()
