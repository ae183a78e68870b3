"""Where the running services can be reached: a frozen, JSON-serialisable description.

Written by the launcher to ``<run_dir>/endpoints.json`` (mode 0600, it holds the RabbitMQ
password) so that other processes (the demo, a second pytest run) can read it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENDPOINTS_FILE = "endpoints.json"


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    @property
    def address(self) -> str:
        """``host:port`` as most client libraries accept it."""
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ZkEndpoint:
    host: str
    port: int

    @property
    def hosts(self) -> str:
        """Kazoo / zk_server_ip style ``host:port`` string."""
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class RabbitEndpoint:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    vhost_old: str = "/"
    vhost_new: str = "/v2"


@dataclass(frozen=True)
class SshEndpoint:
    """sshd listening on ``addresses`` (one per simulated host, same order as ``names``)."""

    addresses: tuple[str, ...]
    names: tuple[str, ...]
    port: int
    user: str
    key_path: Path
    known_hosts_path: Path

    def address_of(self, name: str) -> str:
        """The loopback address serving the simulated host ``name``."""
        try:
            return self.addresses[self.names.index(name)]
        except ValueError:
            raise KeyError(f"no simulated ssh host named {name!r}") from None


@dataclass(frozen=True)
class Endpoints:
    cassandra_old: HostPort
    cassandra_new: HostPort
    zk_old: ZkEndpoint
    zk_new: ZkEndpoint
    rabbit: RabbitEndpoint
    ssh: SshEndpoint
    run_dir: Path

    @property
    def cassandra_shared(self) -> HostPort:
        """The shared-DB topologies (approaches 1-2) use the old cluster with keyspace prefixes."""
        return self.cassandra_old

    def to_dict(self) -> dict[str, Any]:
        return {
            "cassandra_old": _hp(self.cassandra_old),
            "cassandra_new": _hp(self.cassandra_new),
            "zk_old": {**_hp(self.zk_old), "hosts": self.zk_old.hosts},
            "zk_new": {**_hp(self.zk_new), "hosts": self.zk_new.hosts},
            "rabbit": {
                "host": self.rabbit.host,
                "port": self.rabbit.port,
                "user": self.rabbit.user,
                "password": self.rabbit.password,
                "vhost_old": self.rabbit.vhost_old,
                "vhost_new": self.rabbit.vhost_new,
            },
            "ssh": {
                "addresses": list(self.ssh.addresses),
                "names": list(self.ssh.names),
                "port": self.ssh.port,
                "user": self.ssh.user,
                "key_path": str(self.ssh.key_path),
                "known_hosts_path": str(self.ssh.known_hosts_path),
            },
            "run_dir": str(self.run_dir),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Endpoints:
        ssh = data["ssh"]
        rabbit = data["rabbit"]
        return cls(
            cassandra_old=HostPort(
                data["cassandra_old"]["host"], int(data["cassandra_old"]["port"])
            ),
            cassandra_new=HostPort(
                data["cassandra_new"]["host"], int(data["cassandra_new"]["port"])
            ),
            zk_old=ZkEndpoint(data["zk_old"]["host"], int(data["zk_old"]["port"])),
            zk_new=ZkEndpoint(data["zk_new"]["host"], int(data["zk_new"]["port"])),
            rabbit=RabbitEndpoint(
                host=rabbit["host"],
                port=int(rabbit["port"]),
                user=rabbit["user"],
                password=rabbit["password"],
                vhost_old=rabbit.get("vhost_old", "/"),
                vhost_new=rabbit.get("vhost_new", "/v2"),
            ),
            ssh=SshEndpoint(
                addresses=tuple(ssh["addresses"]),
                names=tuple(ssh["names"]),
                port=int(ssh["port"]),
                user=ssh["user"],
                key_path=Path(ssh["key_path"]),
                known_hosts_path=Path(ssh["known_hosts_path"]),
            ),
            run_dir=Path(data["run_dir"]),
        )

    @classmethod
    def from_json(cls, text: str) -> Endpoints:
        return cls.from_dict(json.loads(text))

    def save(self, path: Path | None = None) -> Path:
        """Write ``endpoints.json`` with mode 0600 (it contains the broker password)."""
        target = path or self.run_dir / ENDPOINTS_FILE
        write_private(target, self.to_json() + "\n")
        return target

    @classmethod
    def load(cls, run_dir: Path) -> Endpoints:
        path = run_dir / ENDPOINTS_FILE
        try:
            return cls.from_json(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{path}: no endpoints file; start the services with `python -m demo.services up`"
            ) from None
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: malformed endpoints file: {exc!r}") from exc


def _hp(value: HostPort | ZkEndpoint) -> dict[str, Any]:
    return {"host": value.host, "port": value.port}


def write_private(path: Path, text: str) -> None:
    """Atomically write ``text`` to ``path`` readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
