"""One simulated controller node: api-server, control node and analytics-api, each a role that
runs in this process or in a process (a container) of its own.

    api        the api-server (:8082): Cassandra, ZooKeeper, RabbitMQ; the default objects
    control    the control node: its introspect (:8083) and the agents' XMPP sessions (:5269 on
               each control node address); reads the bgp-routers from Cassandra
    analytics  the analytics-api (:8081): the agents' reports, the control nodes' UVEs read
               from their introspect

The roles talk to each other only over the wire, so one process running all three behaves as
three containers do. Start order: the connections, the default objects (api, unless fenced),
then the HTTP listeners; an answer from each listener means that role is ready.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid as uuidlib
from collections.abc import Callable, Iterable
from typing import TypeVar

from aiohttp import web

from .agents import AgentRegistry
from .analytics import Analytics, config_node_name
from .apiserver import ApiServer, Fence
from .configdb import ConfigDB
from .control import XMPP_PORT, ControlPlane
from .ids import IdError, ZkIds
from .introspect import Introspect
from .notify import ChangePublisher, NotifyError
from .schema import shape_for
from .spec import ControllerSpec, load_secrets
from .store import ConfigStore, StoreError

log = logging.getLogger(__name__)
T = TypeVar("T")
ROLES = ("api", "control", "analytics")


class Controller:
    def __init__(self, spec: ControllerSpec, roles: Iterable[str] = ROLES):
        self.spec = spec
        self.roles = tuple(r for r in ROLES if r in set(roles))
        self.secrets = load_secrets(spec.secrets_file)
        self.shape = shape_for(spec.version)
        self.store = ConfigStore(
            spec.cassandra, self.secrets.cassandra_user,
            self.secrets.cassandra_password.get_secret_value()
            if self.secrets.cassandra_password else None)
        self.ids = ZkIds(spec.zookeeper)
        self.publisher = ChangePublisher(spec.rabbit, self.secrets.rabbit_user,
                                         self.secrets.rabbit_password.get_secret_value())
        # the control node only reads: no ZooKeeper nor RabbitMQ session of its own
        self.db = ConfigDB(self.store, self.ids, self.publisher if "api" in self.roles
                           else None, self.shape, spec.api_url)
        self.fence = Fence(spec.state_dir / "northbound.json", spec.fenced, spec.cluster,
                           spec.version)
        token = self.secrets.admin_token.get_secret_value() if self.secrets.admin_token else None
        self.api = ApiServer(self.db, self.fence, token, on_open=self._bootstrap)
        self.control = ControlPlane(spec, self.db, AgentRegistry(spec.agent_timeout_s),
                                    self._read)
        self.analytics = Analytics(spec, AgentRegistry(spec.agent_timeout_s))
        self.introspect = Introspect(self.control)
        self._runners: list[web.AppRunner] = []

    async def _read(self, fn: Callable[[], T]) -> T:
        return await asyncio.to_thread(fn)

    def _bootstrap(self) -> None:
        spec = self.spec
        nodes = (("config-node", config_node_name(spec), spec.listen),
                 ("analytics-node", f"{spec.cluster}-analytics-{spec.node_index}",
                  spec.listen),
                 *(("database-node", f"{spec.cluster}-database-{i + 1}", host)
                   for i, host in enumerate(spec.cassandra.hosts)),
                 *(("bgp-router", cn.name, cn.address) for cn in spec.control_nodes))
        created = self.db.ensure_defaults(spec.asn, f"req-{uuidlib.uuid4()}", nodes)
        if created:
            log.info("created %d default objects", created)

    def _connections(self) -> list[tuple[str, Callable[[], None]]]:
        steps: list[tuple[str, Callable[[], None]]] = []
        if "api" in self.roles or "control" in self.roles:
            steps.append(("cassandra", self.store.connect))
        if "api" in self.roles:
            steps += [("zookeeper", self.ids.start), ("rabbitmq", self.publisher.start)]
        return steps

    def _listeners(self) -> list[tuple[web.Application, str, int]]:
        spec = self.spec
        out: list[tuple[web.Application, str, int]] = []
        if "analytics" in self.roles:
            out.append((self.analytics.app(), spec.listen, spec.analytics_port))
        if "control" in self.roles:
            out.append((self.introspect.app(), spec.listen, spec.introspect_port))
            out += [(self.control.xmpp_app(), cn.address, XMPP_PORT)
                    for cn in spec.served_control_nodes]
        if "api" in self.roles:
            out.append((self.api.app(), spec.listen, spec.api_port))
        return out

    async def start(self) -> None:
        self.spec.state_dir.mkdir(parents=True, exist_ok=True)
        for what, step in self._connections():
            await self._with_retry(what, step)
        if "api" in self.roles and self.fence.open:
            await asyncio.to_thread(self._bootstrap)
        listening = []
        for app, address, port in self._listeners():
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, address, port).start()
            self._runners.append(runner)
            listening.append(f"{address}:{port}")
        log.info("controller %s (%s) %s ready on %s%s", self.spec.cluster, self.spec.version,
                 "+".join(self.roles), " ".join(listening),
                 "" if self.fence.open or "api" not in self.roles else " (northbound fenced)")

    async def _with_retry(self, what: str, step: Callable[[], None]) -> None:
        """A service that just started may refuse the first connections: retry for a while."""
        deadline = time.monotonic() + self.spec.startup_timeout_s
        delay = 1.0
        while True:
            try:
                await asyncio.to_thread(step)
                return
            except (StoreError, IdError, NotifyError) as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("%s not ready (%s); retrying in %.0fs", what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def stop(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        await self.control.close()
        await self.analytics.close()
        self.api.close()
        for closer in (self.publisher.stop, self.ids.stop, self.store.close):
            try:
                await asyncio.to_thread(closer)
            except Exception as exc:  # keep closing the others; say which one failed
                log.warning("closing %s: %s", closer.__qualname__, exc)
