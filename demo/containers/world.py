"""The demo world's hosts as containers (`issu demo up --containers`): what demo/world.py
asks of the engine, kept here so the world's module stays about the world.

Controllers: demo/containers/controllers.py (config_api, control_control, analytics_api,
config_schema, config_svcmonitor, config_devicemgr per cluster), driven by issu through the
`docker` controller profile.
Computes: demo/containers/compute.py (vrouter_vrouter-agent per compute, its compose and env
files under `<world>/hosts/<name>/etc/contrail`), driven through the `container` profile.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from demo.containers import controllers
from demo.containers.compute import (
    SERVICE,
    compose_up,
    docker_command,
    host_dir,
    profile_spec,
    write_compute,
)
from demo.containers.engine import NET_LABEL, Engine, EngineUnavailable, engine_problem
from demo.containers.images import ensure_images
from demo.controller import hostctl

if TYPE_CHECKING:
    from demo.world import PieceStatus, World

CLUSTER_RELEASE = {"v1": "4.1.0", "v2": "5.0.0"}


def net_containers(net: int, engine: Engine | None = None) -> list[dict[str, object]]:
    return (engine or Engine()).containers(f"label={NET_LABEL}={net}")


def _name(found: dict[str, object]) -> str:
    value = found.get("Names")
    return str(value[0]) if isinstance(value, list) else str(value)


def remove_leftovers(net: int, keep_running: bool) -> list[str]:
    """Remove the net's containers that do not run (a killed world's), or all of them when
    not `keep_running` (a loopback world starting where a container world was killed)."""
    engine = Engine()
    try:
        found = net_containers(net, engine)
    except (EngineUnavailable, OSError):
        return []
    names = [_name(c) for c in found if not keep_running or c.get("State") != "running"]
    engine.remove(names)
    return names


class ContainerHosts:
    def __init__(self, world: World) -> None:
        self.world = world
        self.net = world.opts.net
        self.root = world.dir / "hosts"
        self.engine = Engine()

    # ------------------------------------------------------------------ images
    def prepare(self, progress: Callable[[str], None]) -> None:
        from demo.world import WorldError

        problem = engine_problem(self.engine)
        if problem:
            raise WorldError(f"containers: the engine cannot run here: {problem}")
        progress("container images (built once from Debian's packages, then cached) ...")
        try:
            report = ensure_images(self.engine)
        except EngineUnavailable as exc:
            raise WorldError(f"containers: {exc}") from None
        built = [image for image, how in report.images.items() if how == "built"]
        if built:
            progress(f"built {len(built)} image(s) in {report.seconds:.0f} s")

    # ------------------------------------------------------------------ controllers
    def running(self, cluster: str, service: str) -> bool:
        """`hostctl.CONTROLLER`: the api-server, control and analytics-api containers all."""
        parts = controllers.CONTROLLER_ROLES if service == hostctl.CONTROLLER else (service,)
        return all(controllers.state(self.net, cluster, s, self.engine) == "running"
                   for s in parts)

    def start_controller(self, cluster: str, write_spec: Callable[[], Path]) -> None:
        """The controller's api-server, control and analytics-api containers (those not
        running; none when one of them is disabled)."""
        from demo.world import WorldError

        directory = self.world.controller_dir(cluster)
        missing = [s for s in controllers.CONTROLLER_ROLES if not self.running(cluster, s)]
        if not missing:
            return
        for service in missing:
            if controllers.disabled(self.net, cluster, service, directory):
                self.world.refuse_if_ended(f"{service} of {cluster}")
                name = controllers.container_name(self.net, cluster, service)
                raise WorldError(f"{service} of {cluster} is disabled; enable it: "
                                 f"{docker_command()} update --restart=always {name}")
        write_spec()
        for service in missing:
            controllers.ensure(self.net, cluster, service, directory, CLUSTER_RELEASE[cluster],
                               engine=self.engine)

    def controller_logs(self, cluster: str) -> str:
        directory = self.world.controller_dir(cluster)
        return ", ".join(str(controllers.log_path(directory, s))
                         for s in controllers.CONTROLLER_ROLES)

    def start_writers(self, cluster: str) -> None:
        for service in hostctl.WRITERS:
            start = not controllers.disabled(self.net, cluster, service,
                                             self.world.controller_dir(cluster))
            controllers.ensure(self.net, cluster, service, self.world.controller_dir(cluster),
                               CLUSTER_RELEASE[cluster], start=start, engine=self.engine)

    def create_writers(self, cluster: str) -> None:
        """The writers' containers, created and not started (unless they run)."""
        for service in hostctl.WRITERS:
            if not self.running(cluster, service):
                controllers.ensure(self.net, cluster, service,
                                   self.world.controller_dir(cluster),
                                   CLUSTER_RELEASE[cluster], start=False, engine=self.engine)

    # ------------------------------------------------------------------ computes
    def start_computes(self, hosts: dict[str, str], release: str,
                       control_nodes: Sequence[str], heartbeat_s: float) -> None:
        """Each compute's files and its agent container (`docker compose up -d`). A compute
        laid out before keeps its files (upgraded or not: a `down` then `up` is a power
        cycle, and the journal still says where each compute is, as the loopback hosts); a
        new one is written at `release`, pointed at `control_nodes`."""

        def one(item: tuple[str, str]) -> None:
            name, address = item
            etc = host_dir(self.root, name)
            if not (etc / "vrouter" / "docker-compose.yaml").is_file():
                write_compute(self.root, self.net, name, address, release, control_nodes,
                              heartbeat_s)
            compose_up(etc)

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(one, hosts.items()))

    def _agents(self) -> list[dict[str, object]]:
        return [c for c in net_containers(self.net, self.engine)
                if str(_name(c)).endswith(f"-vrouter_{SERVICE}")]

    def computes_running(self) -> bool:
        return any(c.get("State") == "running" for c in self._agents())

    def computes_state(self) -> PieceStatus:
        from demo.world import PieceStatus

        try:
            expected = len(self.world.hosts())
        except (KeyError, OSError, ValueError):
            return PieceStatus("computes", "missing", "no computes yet")
        agents = self._agents()
        running = [c for c in agents if c.get("State") == "running"]
        versions: dict[str, int] = {}
        for c in running:
            tag = str(c.get("Image", "")).rsplit(":", 1)[-1]
            versions[tag] = versions.get(tag, 0) + 1
        spread = ", ".join(f"{v}: {n}" for v, n in sorted(versions.items()))
        detail = (f"{len(running)} of {expected} agent containers running "
                  f"({spread or 'none'})")
        if len(running) == expected:
            return PieceStatus("computes", "ready", detail)
        return PieceStatus("computes", "broken" if running else "stopped", detail)

    def compose_command(self, name: str) -> str:
        etc = host_dir(self.root, name)
        return (f"{docker_command()} compose --env-file "
                f"{shlex.quote(str(etc / 'common_vrouter.env'))} -f "
                f"{shlex.quote(str(etc / 'vrouter' / 'docker-compose.yaml'))}")

    # ------------------------------------------------------------------ config
    def add_profiles(self, config: dict[str, Any]) -> None:
        """The `container` compute profile and a `docker-<cluster>` controller profile per
        cluster (the built-in `docker`, its services mapped to this world's containers)."""
        config["profiles"]["container"] = profile_spec(self.root)
        for cluster in ("v1", "v2"):
            config["controller_profiles"][f"docker-{cluster}"] = {
                "base": "docker", "docker": docker_command(),
                "services": controllers.service_map(self.net, cluster)}
