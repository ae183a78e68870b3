"""Address plan: every service of network ``net`` lives on 127.<net>.x.y with standard ports."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PROFILES = ("test", "demo")
DEMO_NET = 20
DEFAULT_TEST_NET = 30
SSHD_MAX_ADDRESSES = 16  # sshd's MAX_LISTEN_SOCKS
HOSTS_PER_OCTET = 250


@dataclass(frozen=True)
class AddressPlan:
    net: int

    def __post_init__(self) -> None:
        if not 1 <= self.net <= 254:
            raise ValueError(f"network number must be 1..254, got {self.net}")

    def _addr(self, third: int, fourth: int) -> str:
        return f"127.{self.net}.{third}.{fourth}"

    @property
    def cassandra_old(self) -> str:
        return self._addr(0, 11)

    @property
    def cassandra_new(self) -> str:
        return self._addr(0, 12)

    @property
    def zk_old(self) -> str:
        return self._addr(0, 21)

    @property
    def zk_new(self) -> str:
        return self._addr(0, 22)

    @property
    def rabbitmq(self) -> str:
        return self._addr(0, 31)

    def ssh_host(self, index: int) -> str:
        """Address of the ``index``-th (0-based) simulated host: 127.<net>.1.1 upwards."""
        if index < 0:
            raise ValueError(f"negative ssh host index {index}")
        return self._addr(1 + index // HOSTS_PER_OCTET, 1 + index % HOSTS_PER_OCTET)

    # Ports that are not per-address must differ between networks.
    @property
    def epmd_port(self) -> int:
        return 24000 + self.net

    @property
    def rabbit_dist_port(self) -> int:
        return 25000 + self.net


def _port(var: str, default: int) -> int:
    """Standard port, overridable (e.g. ISSU_SSH_PORT when a system sshd holds 0.0.0.0:22)."""
    value = os.environ.get(var, "")
    if not value:
        return default
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ValueError(f"{var}={value!r} is not a TCP port")
    return int(value)


CASSANDRA_CQL_PORT = _port("ISSU_CQL_PORT", 9042)
CASSANDRA_STORAGE_PORT = _port("ISSU_CASSANDRA_STORAGE_PORT", 7000)
ZK_PORT = _port("ISSU_ZK_PORT", 2181)
AMQP_PORT = _port("ISSU_AMQP_PORT", 5672)
SSH_PORT = _port("ISSU_SSH_PORT", 22)


def default_run_dir(profile: str, net: int) -> Path:
    """``$ISSU_RUN_ROOT`` (default ``<repo>/.run``) / ``<profile>-<net>``."""
    root = os.environ.get("ISSU_RUN_ROOT")
    base = Path(root) if root else REPO_ROOT / ".run"
    return (base / f"{profile}-{net}").resolve()
