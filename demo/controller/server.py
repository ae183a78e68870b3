"""One simulated controller node: api-server, analytics-api and control-node introspect.

Start order: Cassandra, ZooKeeper, RabbitMQ connections, default objects (unless fenced), then
the HTTP listeners; so an answer from `GET http://<listen>:<api_port>/` means ready.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid as uuidlib
from collections.abc import Callable
from typing import TypeVar

from aiohttp import web

from .agents import AgentRegistry
from .analytics import Analytics, config_node_name
from .apiserver import ApiServer, Fence
from .configdb import ConfigDB
from .control import ControlPlane
from .ids import IdError, ZkIds
from .introspect import Introspect
from .notify import ChangePublisher, NotifyError
from .schema import shape_for
from .spec import ControllerSpec, load_secrets
from .store import ConfigStore, StoreError

log = logging.getLogger(__name__)
T = TypeVar("T")


class Controller:
    def __init__(self, spec: ControllerSpec):
        self.spec = spec
        self.secrets = load_secrets(spec.secrets_file)
        self.shape = shape_for(spec.version)
        self.store = ConfigStore(
            spec.cassandra, self.secrets.cassandra_user,
            self.secrets.cassandra_password.get_secret_value()
            if self.secrets.cassandra_password else None)
        self.ids = ZkIds(spec.zookeeper)
        self.publisher = ChangePublisher(spec.rabbit, self.secrets.rabbit_user,
                                         self.secrets.rabbit_password.get_secret_value())
        self.db = ConfigDB(self.store, self.ids, self.publisher, self.shape, spec.api_url)
        self.fence = Fence(spec.state_dir / "northbound.json", spec.fenced, spec.cluster,
                           spec.version)
        token = self.secrets.admin_token.get_secret_value() if self.secrets.admin_token else None
        self.api = ApiServer(self.db, self.fence, token, on_open=self._bootstrap)
        self.agents = AgentRegistry(spec.agent_timeout_s)
        self.control = ControlPlane(spec, self.db, self.agents, self._read)
        self.analytics = Analytics(spec, self.agents, self.control)
        self.introspect = Introspect(self.control)
        self._runners: list[web.AppRunner] = []

    async def _read(self, fn: Callable[[], T]) -> T:
        return await asyncio.to_thread(fn)

    def _bootstrap(self) -> None:
        spec = self.spec
        nodes = (("config-node", config_node_name(spec), spec.listen),
                 ("analytics-node", f"{spec.cluster}-analytics-1", spec.listen),
                 *(("database-node", f"{spec.cluster}-database-{i + 1}", host)
                   for i, host in enumerate(spec.cassandra.hosts)),
                 *(("bgp-router", cn.name, cn.address) for cn in spec.control_nodes))
        created = self.db.ensure_defaults(spec.asn, f"req-{uuidlib.uuid4()}", nodes)
        if created:
            log.info("created %d default objects", created)

    async def start(self) -> None:
        self.spec.state_dir.mkdir(parents=True, exist_ok=True)
        for what, step in (("cassandra", self.store.connect), ("zookeeper", self.ids.start),
                           ("rabbitmq", self.publisher.start)):
            await self._with_retry(what, step)
        if self.fence.open:
            await asyncio.to_thread(self._bootstrap)
        for app, port in ((self.analytics.app(), self.spec.analytics_port),
                          (self.introspect.app(), self.spec.introspect_port),
                          (self.api.app(), self.spec.api_port)):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, self.spec.listen, port).start()
            self._runners.append(runner)
        log.info("controller %s (%s) ready on %s: api :%d analytics :%d introspect :%d%s",
                 self.spec.cluster, self.spec.version, self.spec.listen, self.spec.api_port,
                 self.spec.analytics_port, self.spec.introspect_port,
                 "" if self.fence.open else " (northbound fenced)")

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
        self.api.close()
        for closer in (self.publisher.stop, self.ids.stop, self.store.close):
            try:
                await asyncio.to_thread(closer)
            except Exception as exc:  # keep closing the others; say which one failed
                log.warning("closing %s: %s", closer.__qualname__, exc)
