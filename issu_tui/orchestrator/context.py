"""What every phase needs: the config, the journal, clients of both clusters, step markers."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from backends.apiserver import AnalyticsClient, ApiServerClient, BgpRouterSpec
from issu_tui.config import (
    ApiServerConfig,
    ClusterConfig,
    ComputeConfig,
    IssuConfig,
    secret_sources,
)
from issu_tui.journal import Journal

if TYPE_CHECKING:
    from backends.compute import ClusterTarget, ComputeExecutor, ComputeTarget



class OrchestratorError(Exception):
    """A step cannot go on; the message says what and how to fix it."""


class StepInterrupted(OrchestratorError):
    """The operator stopped or aborted (or the executor shut down) while a step was running;
    the step resumes when its intent runs again."""


def api_client(api: ApiServerConfig, url: str | None = None,
               timeout_s: float = 10.0) -> ApiServerClient:
    """A client of the api-server `api` configures, with its credentials (at `url` instead
    of api.url: the same api-server on another node)."""
    password = api.password.get_secret_value() if api.password else None
    # A password without a user is a token (keystone or the deployment's admin token).
    token = password if (password and not api.user) else None
    return ApiServerClient(url or api.url, token=token, user=api.user,
                           password=password if api.user else None, tenant=api.tenant,
                           timeout_s=timeout_s)


@dataclass
class Context:
    config: IssuConfig
    config_path: Path
    journal: Journal
    stop: threading.Event = field(default_factory=threading.Event)
    paused: threading.Event = field(default_factory=threading.Event)
    # Extra environment for child processes (sync commands); the tests set ISSU_TEST_NET etc.
    child_env: dict[str, str] = field(default_factory=dict)
    # Held while run-sync is checked-then-started (the supervisor) or stopped for good
    # (finalize, abort): a stop is never undone by a supervisor that looked just before it.
    runsync_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.journal.scrub(secret_sources(self.config))

    # ------------------------------------------------------------------ journal helpers

    def event(self, kind: str, message: str, **fields: Any) -> None:
        self.journal.event(kind, message, **fields)

    def step_done(self, step: str) -> bool:
        return self.journal.step_done(step)

    def mark_step(self, step: str) -> None:
        self.journal.mark_step(step)
        self.event("step", f"{step}: done", step=step)

    def clear_steps(self, prefix: str) -> None:
        self.journal.clear_steps(prefix)

    def wait_if_paused(self) -> None:
        while self.paused.is_set() and not self.stop.is_set():
            time.sleep(0.1)

    def check_stop(self, what: str) -> None:
        if self.stop.is_set():
            raise StepInterrupted(f"{what}: stopped by the operator")

    # ------------------------------------------------------------------ clusters

    def cluster(self, name: str) -> ClusterConfig:
        return self.config.old if name == "old" else self.config.new

    def api(self, name: str) -> ApiServerClient:
        cluster = self.cluster(name)
        if cluster.api_server is None:
            raise OrchestratorError(
                f"{self.config_path}: {name}.api_server: required for this step "
                f"(url of the {name} cluster's api-server)")
        return api_client(cluster.api_server)

    def analytics(self, name: str) -> AnalyticsClient | None:
        cluster = self.cluster(name)
        return AnalyticsClient(cluster.analytics.url) if cluster.analytics else None

    def bgp_specs(self, name: str) -> list[BgpRouterSpec]:
        cluster = self.cluster(name)
        return [BgpRouterSpec(cn.name, cn.address, cluster.asn) for cn in cluster.control_nodes]

    def cluster_target(self, name: str) -> ClusterTarget:
        from backends.compute import ClusterTarget

        cluster = self.cluster(name)
        nodes = [cn.address for cn in cluster.control_nodes]
        collectors = []
        if cluster.analytics:
            host = urlparse(cluster.analytics.url).hostname or ""
            collectors = [host] if host else []  # the profile adds the collector port
            # an agent reports to every analytics node of the cluster (HA), the URL's first
            collectors += [h.address for h in cluster.controllers
                           if "analytics" in h.roles and h.address not in collectors]
        return ClusterTarget(name=name, version=cluster.version, control_nodes=nodes,
                             collectors=collectors, dns_servers=nodes)

    def cluster_of(self, control_nodes: list[str]) -> str:
        """Which cluster a list of control-node addresses belongs to ('' when mixed/none)."""
        addrs = {a.rsplit(":", 1)[0] if a.count(":") == 1 else a for a in control_nodes}
        if not addrs:
            return ""
        for name in ("new", "old"):
            known = {cn.address for cn in self.cluster(name).control_nodes}
            if known and addrs <= known:
                return name
        return ""

    # ------------------------------------------------------------------ computes

    def compute_config(self, name: str) -> ComputeConfig:
        for compute in self.config.computes:
            if compute.name == name:
                return compute
        raise OrchestratorError(
            f"{self.config_path}: compute {name!r} is not in the inventory ([[computes]])")

    def compute_target(self, name: str) -> ComputeTarget:
        from backends.compute import ComputeTarget

        c = self.compute_config(name)
        return ComputeTarget(name=c.name, address=c.address, port=c.ssh_port, user=c.ssh_user,
                             key_path=c.ssh_key)

    def compute_executor(self) -> ComputeExecutor:
        from backends.compute import ComputeExecutor

        if self.config.ssh is None:
            raise OrchestratorError(f"{self.config_path}: [ssh] known_hosts is required")
        return ComputeExecutor(
            known_hosts=self.config.ssh.known_hosts,
            connect_timeout_s=self.config.ssh.connect_timeout_s,
            command_timeout_s=self.config.ssh.command_timeout_s,
            profiles=self.config.profiles,
            health_timeout_s=self.config.batch.health_timeout_s,
        )
