"""The trial's load on the old api-server: a writer at a steady rate that logs every change it
made (the checker's list of objects), and a reader that keeps listing and reading.

The writer is demo.controller.workload's churn (creates, updates, deletes of security groups,
policies, networks with subnets, ports) plus reference changes (a port's security groups); it
runs `--concurrency` requests at a time to hold the rate on a slow server.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from demo.controller.rest import RestError, VncRest
from demo.controller.workload import Workload


class LoggedWorkload(Workload):
    """The demo churn, each successful change appended to a JSON-lines log."""

    def __init__(self, api_url: str, rate: float, log_path: Path, seed: int) -> None:
        super().__init__(api_url, rate, project="chaos", pool=300, seed=seed)
        self.log = open(log_path, "a", buffering=1)  # noqa: SIM115  # closed in close()
        self.refused = 0  # 403: the old api-server is fenced (finalize)
        self.ops: Counter[str] = Counter()

    def _record(self, op: str, res_type: str, uuid: str) -> None:
        self.ops[op] += 1
        self.log.write(json.dumps({"at": time.time(), "op": op, "type": res_type,
                                   "uuid": uuid}) + "\n")

    async def _create(self) -> None:
        await super()._create()
        obj = self.live[-1]  # appended by the create, with no await in between
        self._record("create", obj.res_type, obj.uuid)

    async def _update(self) -> None:
        obj = self.rng.choice(self.live)
        groups = [o for o in self.live if o.res_type == "security-group"]
        if obj.res_type == "virtual-machine-interface" and groups:
            group = self.rng.choice(groups)
            body: dict[str, Any] = {"security_group_refs": [{"to": [*self.pfq, group.name]}]}
            op = "ref"
        else:
            body = {"display_name": f"{obj.name} v{self.rng.randrange(1_000_000)}",
                    "id_perms": {"description": f"chaos update at {time.time():.3f}"}}
            op = "update"
        await self.rest.update(obj.res_type, obj.uuid, body)
        self._record(op, obj.res_type, obj.uuid)

    async def _delete(self) -> None:
        obj = self.rng.choice(self.live)
        await self.rest.delete(obj.res_type, obj.uuid)
        if obj in self.live:
            self.live.remove(obj)
        self._record("delete", obj.res_type, obj.uuid)

    async def step(self) -> None:
        op = self._choose()
        try:
            await {"create": self._create, "update": self._update, "delete": self._delete}[op]()
        except RestError as exc:
            if exc.status == 403:
                self.refused += 1
            elif exc.status in (404, 409):
                self.ops[f"{op}-conflict"] += 1  # a race between two requests, or a ref held
            else:
                self.stats.errors[op] += 1
        except httpx.HTTPError:
            self.stats.errors[op] += 1

    def close_log(self) -> None:
        self.log.close()


class Load(threading.Thread):
    """Writer and reader on their own event loop until `stop` is set."""

    def __init__(self, api_url: str, rate: float, log_path: Path, seed: int,
                 concurrency: int = 8) -> None:
        super().__init__(name="chaos-load", daemon=True)
        self.api_url = api_url
        self.rate = rate
        self.concurrency = concurrency
        self.writer = LoggedWorkload(api_url, rate, log_path, seed)
        self.stop = threading.Event()
        self.reads = 0
        self.read_errors = 0
        self.started_at = 0.0
        self.ended_at = 0.0
        self.failure = ""

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # reported in the trial's result
            self.failure = f"{type(exc).__name__}: {exc}"

    async def _main(self) -> None:
        await self.writer.setup()
        self.started_at = time.monotonic()
        reader = asyncio.create_task(self._read())
        slots = asyncio.Semaphore(self.concurrency)
        pending: set[asyncio.Task[None]] = set()
        interval = 1.0 / self.rate
        next_at = time.monotonic()

        async def one() -> None:
            async with slots:
                await self.writer.step()

        while not self.stop.is_set():
            if self.writer.refused and self.writer.refused > 20:
                break  # fenced for good: finalize has passed the point of no return
            task = asyncio.create_task(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
            next_at += interval
            now = time.monotonic()
            if next_at < now - 1.0:  # behind: do not burst
                next_at = now
            await asyncio.sleep(max(0.0, next_at - now))
        await asyncio.gather(*pending, return_exceptions=True)
        self.ended_at = time.monotonic()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await self.writer.close()
        self.writer.close_log()

    async def _read(self) -> None:
        rest = VncRest(self.api_url)
        try:
            while True:
                try:
                    await rest.count("virtual-network")
                    live = list(self.writer.live)
                    if live:
                        obj = self.writer.rng.choice(live)
                        await rest.read(obj.res_type, obj.uuid)
                    self.reads += 1
                except RestError as exc:
                    if exc.status != 404:
                        self.read_errors += 1
                except httpx.HTTPError:
                    self.read_errors += 1
                await asyncio.sleep(0.05)
        finally:
            await rest.close()

    def summary(self) -> dict[str, Any]:
        seconds = max((self.ended_at or time.monotonic()) - self.started_at, 1e-6)
        changes = sum(v for k, v in self.writer.ops.items() if "conflict" not in k)
        return {"changes": changes, "ops": dict(self.writer.ops),
                "rate_per_s": round(changes / seconds, 1), "target_rate_per_s": self.rate,
                "write_errors": sum(self.writer.stats.errors.values()),
                "refused_after_fence": self.writer.refused, "reads": self.reads,
                "read_errors": self.read_errors, "failure": self.failure}
