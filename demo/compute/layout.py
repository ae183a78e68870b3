"""Where a simulated compute keeps its state, and the world's settings (`world.json`).

A world directory holds `world.json`, the daemon's socket and one directory per host:
```
hosts/<name>/etc/contrail/contrail-vrouter-agent.conf   the agent config (Contrail's keys)
hosts/<name>/var/lib/issu-demo/packages.json            installed package versions
hosts/<name>/var/lib/issu-demo/agent.enabled            the agent should run (systemd enabled)
hosts/<name>/var/lib/issu-demo/maintenance              drained
hosts/<name>/var/run/contrail-vrouter-agent.pid         while the agent runs
hosts/<name>/var/log/contrail/contrail-vrouter-agent.log
hosts/<name>/var/log/apt/history.log
```
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from backends.hostport import DEFAULT_PORTS, with_port

WORLD_FILE = "world.json"
SOCKET_NAME = "hostd.sock"
AGENT_PACKAGE = "contrail-vrouter-agent"
PACKAGES = ("contrail-vrouter-agent", "contrail-vrouter-utils", "contrail-vrouter-dkms")


class WorldError(Exception):
    pass


@dataclass
class WorldSettings:
    """Everything the simulation needs; durations in seconds."""

    net: int
    hosts: dict[str, str]  # name -> loopback address
    repository: list[str] = field(default_factory=lambda: ["4.1.0", "5.0.0"])
    install_s: float = 4.0  # package download + unpack + dkms build
    install_jitter_s: float = 1.0
    failure_rate: float = 0.0  # chance that an install fails (dpkg error)
    failures: dict[str, float] = field(default_factory=dict)  # per-host override
    datapath_down_s: float = 0.6  # vrouter.ko reload until the agent reprograms forwarding
    datapath_jitter_s: float = 0.2
    agent_start_s: float = 0.3
    heartbeat_s: float = 3.0
    analytics_port: int = 8081  # where the simulated collector (analytics-api) listens
    report_path: str = "/issu-demo/agent-report"
    probe_port: int = 6635  # the UDP echo on each host's data path (MPLSoUDP port)
    probe_peer: str = ""  # the address the traffic comes from (a VM elsewhere)
    probe_fast_ms: float = 10.0
    probe_slow_ms: float = 1000.0

    def __post_init__(self) -> None:
        if not self.probe_peer:
            self.probe_peer = f"127.{self.net}.0.250"

    def failure_for(self, host: str) -> float:
        return self.failures.get(host, self.failure_rate)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def load_world(world_dir: Path) -> WorldSettings:
    path = world_dir / WORLD_FILE
    try:
        data = json.loads(path.read_text())
        return WorldSettings(**data)
    except FileNotFoundError:
        raise WorldError(f"{path}: no simulated world here (start it with `issu demo up`)") \
            from None
    except (json.JSONDecodeError, TypeError) as exc:
        raise WorldError(f"{path}: malformed world settings: {exc}") from None


def save_world(world_dir: Path, settings: WorldSettings) -> None:
    world_dir.mkdir(parents=True, exist_ok=True)
    tmp = world_dir / f".{WORLD_FILE}.{os.getpid()}"
    tmp.write_text(settings.to_json() + "\n")
    os.replace(tmp, world_dir / WORLD_FILE)


def split_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value if str(v)]
    return [v for v in re.split(r"[\s,]+", value) if v]


class HostDir:
    """One simulated compute's files."""

    def __init__(self, world_dir: Path, name: str) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise WorldError(f"{name!r} is not a valid host name")
        self.name = name
        self.root = world_dir / "hosts" / name

    @property
    def agent_conf(self) -> Path:
        return self.root / "etc/contrail/contrail-vrouter-agent.conf"

    @property
    def packages_file(self) -> Path:
        return self.root / "var/lib/issu-demo/packages.json"

    @property
    def enabled_flag(self) -> Path:
        return self.root / "var/lib/issu-demo/agent.enabled"

    @property
    def maintenance_flag(self) -> Path:
        return self.root / "var/lib/issu-demo/maintenance"

    @property
    def dpkg_lock(self) -> Path:
        return self.root / "var/lib/dpkg/lock-frontend"

    @property
    def pidfile(self) -> Path:
        return self.root / "var/run/contrail-vrouter-agent.pid"

    @property
    def agent_log(self) -> Path:
        return self.root / "var/log/contrail/contrail-vrouter-agent.log"

    @property
    def apt_log(self) -> Path:
        return self.root / "var/log/apt/history.log"

    def exists(self) -> bool:
        return self.agent_conf.is_file() and self.packages_file.is_file()

    # ---------------------------------------------------------------- packages
    def packages(self) -> dict[str, str]:
        try:
            return dict(json.loads(self.packages_file.read_text()))
        except FileNotFoundError:
            return {}

    def version(self) -> str:
        return self.packages().get(AGENT_PACKAGE, "")

    def set_version(self, version: str) -> None:
        write_atomic(self.packages_file, json.dumps({p: version for p in PACKAGES}) + "\n")

    # ---------------------------------------------------------------- agent config
    def read_conf(self) -> dict[str, list[str]]:
        ini = read_ini(self.agent_conf)
        return {
            "control_nodes": split_list(ini.get(("CONTROL-NODE", "servers"))),
            "collectors": split_list(ini.get(("DEFAULT", "collectors"))),
            "dns_servers": split_list(ini.get(("DNS", "servers"))),
        }

    def create(self, address: str, version: str, control_nodes: list[str],
               collectors: list[str], dns_servers: list[str]) -> None:
        """Lay the host out as an installed, configured compute (agent enabled)."""
        for sub in ("etc/contrail", "var/lib/issu-demo", "var/lib/dpkg", "var/run",
                    "var/log/contrail", "var/log/apt"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.set_version(version)
        write_atomic(self.agent_conf, AGENT_CONF_TEMPLATE.format(
            name=self.name, address=address, mac=_mac_for(address),
            control_nodes=_with_ports(control_nodes, "control_nodes"),
            collectors=_with_ports(collectors, "collectors"),
            dns_servers=_with_ports(dns_servers, "dns_servers"),
        ))
        self.enabled_flag.touch()


AGENT_CONF_TEMPLATE = """\
# contrail-vrouter-agent.conf of simulated compute {name}
[DEFAULT]
# Everything a real compute has; the simulation reads collectors.
collectors={collectors}
log_file=/var/log/contrail/contrail-vrouter-agent.log
log_level=SYS_NOTICE
log_local=1
xmpp_dns_auth_enable=False
xmpp_auth_enable=False
platform=default
physical_interface_mac=02:00:{mac}
http_server_ip=0.0.0.0

[SANDESH]
introspect_ssl_enable=False
sandesh_ssl_enable=False

[NETWORKS]
control_network_ip={address}

[CONTROL-NODE]
servers={control_nodes}

[DNS]
servers={dns_servers}

[METADATA]
metadata_proxy_secret=contrail

[VIRTUAL-HOST-INTERFACE]
name=vhost0
ip={address}/8
gateway=
physical_interface=eth0
compute_node_address={address}

[SERVICE-INSTANCE]
netns_command=/usr/bin/opencontrail-vrouter-netns
docker_command=/usr/bin/opencontrail-vrouter-docker

[FLOWS]
fabric_snat_hash_table_size=4096
"""


def _with_ports(items: list[str], kind: str) -> str:
    return " ".join(with_port(c, DEFAULT_PORTS[kind]) for c in items)


def _mac_for(address: str) -> str:
    parts = [int(p) for p in address.split(".")]
    return ":".join(f"{p:02x}" for p in parts)



def read_ini(path: Path) -> dict[tuple[str, str], str]:
    """(section, key) -> value of a Contrail-style INI file (last one wins)."""
    values: dict[tuple[str, str], str] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        key, sep, value = line.partition("=")
        if sep:
            values[(section, key.strip())] = value.strip()
    return values


def set_ini(path: Path, changes: list[tuple[str, str, str]]) -> list[str]:
    """Set (section, key, value) in an INI file, keeping every other line and comment.
    Returns one `section.key: old -> new` line per change. A line break in any part is
    refused before anything is written (it would add lines or sections)."""
    for section, key, value in changes:
        if any(c in part for part in (section, key, value) for c in "\r\n"):
            raise ValueError(f"{path}: [{section!r}] {key!r}: a line break is not allowed; "
                             "nothing was changed")
    lines = path.read_text().splitlines()
    report = []
    for section, key, value in changes:
        current = ""
        start = end = None  # the section's line span
        found = None
        for i, raw in enumerate(lines):
            stripped = raw.strip()
            if stripped.startswith("[") and stripped.endswith("]"):
                if current == section and end is None:
                    end = i
                current = stripped[1:-1].strip()
                if current == section and start is None:
                    start = i
                continue
            if current == section and not stripped.startswith(("#", ";")):
                k, sep, _ = stripped.partition("=")
                if sep and k.strip() == key:
                    found = i
        old = ""
        if found is not None:
            old = lines[found].partition("=")[2].strip()
            lines[found] = f"{key}={value}"
        elif start is not None:
            at = end if end is not None else len(lines)
            while at > start + 1 and not lines[at - 1].strip():
                at -= 1
            lines.insert(at, f"{key}={value}")
        else:
            lines += ["", f"[{section}]", f"{key}={value}"]
        report.append(f"[{section}] {key}: {old or '(unset)'} -> {value}")
    write_atomic(path, "\n".join(lines) + "\n")
    return report


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
