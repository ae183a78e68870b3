"""A demo compute whose vrouter-agent is a container: its files, laid out as on a Contrail
5.x compute under the host's directory, and the `container` profile that drives it.

    <root>/<name>/etc/contrail/common_vrouter.env          CONTRAIL_VERSION, CONTROL_NODES...
    <root>/<name>/etc/contrail/vrouter/docker-compose.yaml one service, vrouter-agent

Several demo worlds (and the tests) share one engine, so the container's name carries the
network and the host: `issu<net>-<name>-vrouter_vrouter-agent` (Contrail's compose names it
`vrouter_vrouter-agent_1`), with the label `issu.demo.net=<net>` that `issu demo down` uses.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from backends.hostport import host_of
from demo.containers.engine import NET_LABEL
from demo.containers.images import VROUTER_AGENT

SERVICE = "vrouter-agent"


def container_name(net: int, name: str) -> str:
    return f"issu{net}-{name}-vrouter_{SERVICE}"


def host_dir(root: Path, name: str) -> Path:
    return root / name / "etc" / "contrail"


def write_compute(root: Path, net: int, name: str, address: str, release: str,
                  control_nodes: Sequence[str], heartbeat_s: float = 2.0) -> Path:
    """Write the compute's env and compose files (pointed at `control_nodes`, running
    `release`); return its etc/contrail directory."""
    etc = host_dir(root, name)
    (etc / "vrouter").mkdir(parents=True, exist_ok=True)
    nodes = ",".join(host_of(n) for n in control_nodes)
    (etc / "common_vrouter.env").write_text(
        "# written by issu demo up: the vrouter-agent container's environment\n"
        f"CONTRAIL_VERSION={release}\nCONTROL_NODES={nodes}\nANALYTICS_NODES={nodes}\n"
        f"DNS_NODES={nodes}\nVROUTER_HOSTNAME={name}\nVROUTER_IP={address}\n"
        f"HEARTBEAT_S={heartbeat_s:g}\n")
    compose = {"services": {SERVICE: {
        "image": f"localhost/{VROUTER_AGENT}:${{CONTRAIL_VERSION}}",
        "container_name": container_name(net, name),
        "network_mode": "host",
        "env_file": "../common_vrouter.env",
        "labels": {NET_LABEL: str(net)},
    }}}
    (etc / "vrouter" / "docker-compose.yaml").write_text(json.dumps(compose, indent=2) + "\n")
    return etc


def docker_command(python: str | None = None) -> str:
    """The `docker` the profile runs on these computes: the stand-in over podman."""
    return f"{python or sys.executable} -m demo.containers.docker"


def profile_spec(root: Path, python: str | None = None) -> dict[str, str]:
    """`profiles.container` for computes laid out under `root` (one engine, one machine)."""
    etc = f"{root}/{{name}}/etc/contrail"
    return {"docker": docker_command(python),
            "compose_file": f"{etc}/vrouter/docker-compose.yaml",
            "env_file": f"{etc}/common_vrouter.env",
            "introspect": "{address}:8085"}


def compose_up(etc: Path, python: str | None = None) -> None:
    """Start the compute's agent container as its installer would (`docker compose up -d`)."""
    import subprocess

    argv = [*docker_command(python).split(), "compose", "--env-file",
            str(etc / "common_vrouter.env"), "-f", str(etc / "vrouter" / "docker-compose.yaml"),
            "up", "-d"]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{etc}: docker compose up: {proc.stderr.strip()}")


def remove_net_containers(net: int) -> list[str]:
    """Remove every container labelled with this demo network; return their names."""
    from demo.containers.engine import Engine

    engine = Engine()
    names = []
    for found in engine.containers(f"label={NET_LABEL}={net}"):
        value = found.get("Names")
        names.append(str(value[0]) if isinstance(value, list) else str(value))
    engine.remove(names)
    return names
