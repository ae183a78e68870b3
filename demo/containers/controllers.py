"""The demo's simulated controller services, each in a container named as Contrail names it.

One controller host per cluster (`controller-v1`, `controller-v2`), its services:

    api-server          issu<net>-controller-<c>-config_api          demo.controller --roles api
    control             issu<net>-controller-<c>-control_control     ... --roles control
    analytics-api       issu<net>-controller-<c>-analytics_api       ... --roles analytics
    schema-transformer  issu<net>-controller-<c>-config_schema       demo.controller.writers
    svc-monitor         issu<net>-controller-<c>-config_svcmonitor
    device-manager      issu<net>-controller-<c>-config_devicemgr

They talk over the wire as Contrail's do: the control node reads the bgp-routers from
Cassandra and takes the agents' XMPP sessions on :5269, the analytics-api takes the agents'
reports and reads the control node's introspect (:8083). issu's service names are the keys
(`controller` stands for the first three together: the loopback world runs them as one
process). The image is Contrail's (`localhost/contrail-controller-config-api:<release>`,
Debian's userland and the release); the simulated process comes from this repository and its
venv, bind-mounted read-only at the same paths, with the controller's directory (spec,
secrets, state) mounted read-write. Each logs to `<dir>/<service>.log`. Host network, lowered
limits, the label `issu.demo.net=<net>` (what `issu demo down` removes).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from demo.containers.docker import POLICY_DIR_LABEL, restart_policy
from demo.containers.engine import NET_LABEL, RUN_OPTIONS, Engine
from demo.containers.images import image_ref
from demo.services.plan import REPO_ROOT

# issu's service -> (Contrail's container name, Contrail's image)
CONTAINERS = {
    "api-server": ("config_api", "contrail-controller-config-api"),
    "control": ("control_control", "contrail-controller-control-control"),
    "analytics-api": ("analytics_api", "contrail-analytics-api"),
    "schema-transformer": ("config_schema", "contrail-controller-config-schema"),
    "svc-monitor": ("config_svcmonitor", "contrail-controller-config-svcmonitor"),
    "device-manager": ("config_devicemgr", "contrail-controller-config-devicemgr"),
}
# the controller's roles (demo/controller/server.py), one container each
CONTROLLER_ROLES = {"api-server": "api", "control": "control", "analytics-api": "analytics"}
IMAGES = tuple(image for _, image in CONTAINERS.values())
SERVICE_LABEL = "issu.demo.service"


def container_name(net: int, cluster: str, service: str) -> str:
    return f"issu{net}-controller-{cluster}-{CONTAINERS[service][0]}"


def service_map(net: int, cluster: str) -> dict[str, str]:
    """`controller_profiles.<name>.services` for the `docker` profile: issu's service names
    -> this world's containers; the built-in names of services the demo does not run
    removed ("")."""
    from backends.controller import BUILTIN_CONTROLLER_PROFILES

    builtin = BUILTIN_CONTROLLER_PROFILES["docker"]["services"]
    assert isinstance(builtin, dict)
    return {**{service: "" for service in builtin},
            **{service: container_name(net, cluster, service) for service in CONTAINERS}}


def log_path(directory: Path, service: str) -> Path:
    return directory / f"{service}.log"


def _mounts(directory: Path) -> list[str]:
    """The interpreter, the venv and the repository read-only; the controller's directory
    read-write (its state dir and logs)."""
    paths = {Path(sys.base_prefix).resolve(), REPO_ROOT.resolve()}
    prefix = Path(sys.prefix).resolve()
    if not prefix.is_relative_to(REPO_ROOT.resolve()):
        paths.add(prefix)
    argv = []
    for path in sorted(paths):
        argv += ["--volume", f"{path}:{path}:ro"]
    argv += ["--volume", f"{directory}:{directory}"]
    return argv


def _argv(directory: Path, service: str) -> list[str]:
    spec = str(directory / "spec.json")
    if service in CONTROLLER_ROLES:
        return [sys.executable, "-m", "demo.controller", "--spec", spec, "--roles",
                CONTROLLER_ROLES[service]]
    return [sys.executable, "-m", "demo.controller.writers", "--spec", spec, "--service",
            service]


def state(net: int, cluster: str, service: str, engine: Engine | None = None) -> str:
    """The container's state as the engine says it (running, exited, created), or
    "missing"."""
    proc = (engine or Engine()).run("container", "inspect", "--format", "{{.State.Status}}",
                                    container_name(net, cluster, service), check=False)
    return proc.stdout.strip() if proc.returncode == 0 else "missing"


def disabled(net: int, cluster: str, service: str, directory: Path) -> bool:
    """Disabled through the `docker` profile (`docker update --restart=no`, recorded in the
    controller's directory)."""
    return restart_policy(directory, container_name(net, cluster, service)) == "no"


def ensure(net: int, cluster: str, service: str, directory: Path, release: str,
           start: bool = True, engine: Engine | None = None) -> str:
    """The service's container for `release`, running when `start` (else created and left
    stopped, for the `docker` profile's start); an existing one of another release or not
    running is made again. Returns its state."""
    engine = engine or Engine()
    name = container_name(net, cluster, service)
    image = image_ref(CONTAINERS[service][1], release)
    proc = engine.run("container", "inspect", name, check=False)
    if proc.returncode == 0:
        info = json.loads(proc.stdout)[0]
        current, status = info.get("ImageName"), info.get("State", {}).get("Status")
        if current == image and (status == "running" or (not start and status == "created")):
            return str(status)
        engine.remove([name])
    log = log_path(directory, service)
    verb = "run" if start else "create"
    engine.run(verb, *(["-d"] if start else []), "--name", name, *RUN_OPTIONS,
               "--label", f"{NET_LABEL}={net}", "--label", f"{SERVICE_LABEL}={service}",
               "--label", f"{POLICY_DIR_LABEL}={directory}",
               "--log-driver", "k8s-file", "--log-opt", f"path={log}",
               "--env", "PYTHONUNBUFFERED=1", "--workdir", str(REPO_ROOT),
               *_mounts(directory), image, *_argv(directory, service))
    return "running" if start else "created"


def stop(net: int, cluster: str, service: str, engine: Engine | None = None) -> None:
    (engine or Engine()).run("stop", "--ignore", "-t", "20",
                             container_name(net, cluster, service), check=False)
