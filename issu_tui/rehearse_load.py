"""run-sync under a synthetic load, for `issu rehearse`: the real service in a thread, against
changes made on old at a steady rate, each rewriting an object's `prop:display_name` on old
and announced on old's exchange as the api-server would."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

RUNSYNC_QUEUE = "vnc-config.issu-rehearsal"
LOAD_OBJECTS = 500        # objects the synthetic load changes, round robin


class LoadError(RuntimeError):
    pass


@dataclass(frozen=True)
class Broker:
    """The scratch RabbitMQ: old's and new's vhosts."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    vhost_old: str = "/"
    vhost_new: str = "/v2"


def _rate(count: float, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


# --------------------------------------------------------------------------- the report files


class SyntheticLoad:
    """`rate` changes per second for `seconds`, through run-sync from `old` to `new`;
    `verify` (keyspaces -> its report) checks config_db_uuid afterwards."""

    def __init__(self, old: Any, old_side: Any, new_side: Any, registry: Any, settings: Any,
                 broker: Broker, *, rate: float, seconds: float, from_version: str,
                 to_version: str, verify: Callable[[tuple[str, ...]], dict[str, Any]]) -> None:
        self.old, self.old_side, self.new_side = old, old_side, new_side
        self.registry, self.settings, self.broker = registry, settings, broker
        self.rate, self.seconds, self.verify = rate, seconds, verify
        self.from_version, self.to_version = from_version, to_version

    def _objects(self) -> list[tuple[str, str, list[str]]]:
        """(uuid, type, fq_name) of up to LOAD_OBJECTS objects of old's obj_uuid_table."""
        from backends.cassandra.schema import table_layout

        session = self.old.session
        layout = table_layout(session, "config_db_uuid", "obj_uuid_table")
        if layout is None:
            return []
        self.layout = layout
        keys = session.execute("SELECT DISTINCT key FROM config_db_uuid.obj_uuid_table "
                               f"LIMIT {LOAD_OBJECTS * 2}")
        read = session.prepare("SELECT column1, value FROM config_db_uuid.obj_uuid_table "
                               "WHERE key = ? AND column1 IN ?")
        wanted = [layout.encode_column("fq_name"), layout.encode_column("type")]
        objects = []
        for (raw_key,) in keys:
            cells = {layout.decode_column(c): v for c, v in session.execute(read,
                                                                           (raw_key, wanted))}
            try:
                obj_type = json.loads(cells["type"])
                fq_name = json.loads(cells["fq_name"])
                uuid.UUID(layout.decode_key(raw_key))
            except (KeyError, ValueError, TypeError):
                continue
            if isinstance(obj_type, str) and isinstance(fq_name, list):
                objects.append((layout.decode_key(raw_key), obj_type, fq_name))
            if len(objects) >= LOAD_OBJECTS:
                break
        return objects

    def run(self) -> dict[str, Any]:
        from backends.cassandra.connection import connect_pair
        from backends.progress import MemoryCounters, MemoryEvents
        from backends.rabbit import Publisher, RabbitSide, delete_issu_queues
        from backends.runsync.metrics import COUNTER_SCOPE
        from backends.runsync.options import RunSyncOptions
        from backends.runsync.service import ReplayService

        objects = self._objects()
        if not objects:
            return {"skipped": "no objects in config_db_uuid.obj_uuid_table to change"}
        b = self.broker
        hosts = (f"{b.host}:{b.port}",)
        old_rabbit = RabbitSide("old", hosts, user=b.user, password=b.password, vhost=b.vhost_old)
        new_rabbit = RabbitSide("new", hosts, user=b.user, password=b.password, vhost=b.vhost_new)
        counters = MemoryCounters()
        service = ReplayService(
            old_rabbit=old_rabbit, new_rabbit=new_rabbit,
            connect_cassandra=lambda: connect_pair(self.old_side, self.new_side),
            registry=self.registry, settings=self.settings,
            options=RunSyncOptions(queue_name=RUNSYNC_QUEUE, catch_up=False,
                                   reconcile_after_catch_up=False, reconcile_interval_s=3600,
                                   metrics_listen=None, counters_interval_s=1.0,
                                   old_version=self.from_version,
                                   new_version=self.to_version),
            counters=counters, events=MemoryEvents())
        thread = threading.Thread(target=service.run, name="issu-rehearsal-runsync",
                                  daemon=True)
        thread.start()
        publisher = Publisher(old_rabbit)
        insert = self.old.session.prepare(
            "INSERT INTO config_db_uuid.obj_uuid_table (key, column1, value) "
            "VALUES (?, ?, ?) USING TIMESTAMP ?")
        published = 0
        try:
            if not service.ready.wait(180):
                raise LoadError("run-sync did not start consuming within 180 s")
            column = self.layout.encode_column("prop:display_name")
            started = time.monotonic()
            while time.monotonic() - started < self.seconds:
                due = started + published / self.rate
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())
                obj_uuid, obj_type, fq_name = objects[published % len(objects)]
                value = self.layout.encode_value(json.dumps(f"rehearsal change {published}"))
                self.old.session.execute(insert, (self.layout.encode_key(obj_uuid), column, value,
                                               time.time_ns() // 1000))
                publisher.publish({"request-id": f"req-rehearsal-{published}", "oper": "UPDATE",
                                   "type": obj_type, "uuid": obj_uuid, "fq_name": fq_name})
                published += 1
            load_seconds = time.monotonic() - started
            deadline = time.monotonic() + 120
            values: dict[str, float] = {}
            while time.monotonic() < deadline:
                values = counters.values.get(COUNTER_SCOPE, {})
                done = values.get("applied", 0) + values.get("failed", 0) + \
                    values.get("quarantined", 0)
                if done >= published and not values.get("in_flight", 0):
                    break
                time.sleep(0.5)
            drained = time.monotonic() - started
        finally:
            publisher.close()
            service.stop.set()
            thread.join(timeout=120)
        values = counters.values.get(COUNTER_SCOPE, {})
        with contextlib.suppress(Exception):
            delete_issu_queues(old_rabbit, RUNSYNC_QUEUE)
        verify_after = self.verify(("config_db_uuid",))
        return {"rate": self.rate, "published": published, "load_seconds": round(load_seconds, 3),
                "drained_after_s": round(drained, 3),
                "applied": int(values.get("applied", 0)), "failed": int(values.get("failed", 0)),
                "quarantined": int(values.get("quarantined", 0)),
                "cells_quarantined": int(values.get("cells_quarantined", 0)),
                "lag_p50_s": values.get("lag_p50_s"), "lag_p99_s": values.get("lag_p99_s"),
                "applied_per_s": _rate(values.get("applied", 0), drained),
                "verify_after": verify_after}
