"""RabbitMQ helpers (kombu) for run-sync: the old cluster's change feed, the new one's.

Contrail's api-server publishes every config change on `vnc_config.object-update`, a fanout
exchange declared NOT durable; every consumer must declare it the same way or the broker
refuses the declaration. run-sync binds a DURABLE queue of its own to it on the old vhost (so
changes wait there while run-sync restarts) and republishes on the same exchange of the new
vhost. Unlike the original client, the queue is never deleted on connect (that dropped every
change made while run-sync was down) and a message is acknowledged only after it was applied.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import kombu

log = logging.getLogger(__name__)

OBJECT_UPDATE_EXCHANGE = "vnc_config.object-update"
QUARANTINE_SUFFIX = ".quarantine"


@dataclass(frozen=True)
class RabbitSide:
    """One RabbitMQ cluster (a vhost of it) as run-sync sees it."""

    name: str
    hosts: tuple[str, ...]
    port: int = 5672
    user: str = "guest"
    password: str = field(default="guest", repr=False)
    vhost: str = "/"
    use_ssl: bool = False
    ssl_ca_certs: str | None = None
    ssl_keyfile: str | None = None
    ssl_certfile: str | None = None
    ha_mode: bool = False
    exchange: str = OBJECT_UPDATE_EXCHANGE

    def urls(self) -> list[str]:
        """amqp URLs, one per host (kombu fails over between them); hosts may carry a port."""
        vhost = quote(self.vhost, safe="")
        out = []
        for entry in self.hosts:
            host, sep, port = entry.rpartition(":")
            if not (sep and port.isdigit()):
                host, port = entry, str(self.port)
            out.append(f"amqp://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
                       f"@{host}:{port}/{vhost}")
        return out

    def describe(self) -> str:
        """For logs and errors: never the password."""
        return f"{self.name} RabbitMQ {','.join(self.hosts)} vhost {self.vhost!r}"

    def ssl_options(self) -> dict[str, Any] | bool:
        if not self.use_ssl:
            return False
        options: dict[str, Any] = {"ssl_version": ssl.PROTOCOL_TLSv1_2}
        if self.ssl_ca_certs:
            options["ca_certs"] = self.ssl_ca_certs
            options["cert_reqs"] = ssl.CERT_REQUIRED
        if self.ssl_keyfile:
            options["keyfile"] = self.ssl_keyfile
        if self.ssl_certfile:
            options["certfile"] = self.ssl_certfile
        return options


def connection(side: RabbitSide, heartbeat: float = 30.0) -> kombu.Connection:
    """A kombu connection (not yet connected) with publisher confirms."""
    return kombu.Connection(
        ";".join(side.urls()),
        ssl=side.ssl_options(),
        heartbeat=heartbeat,
        connect_timeout=5,
        transport_options={"confirm_publish": True},
        failover_strategy="round-robin",
    )


def object_update_exchange(side: RabbitSide) -> kombu.Exchange:
    return kombu.Exchange(side.exchange, "fanout", durable=False)


def issu_queue(side: RabbitSide, name: str) -> kombu.Queue:
    """run-sync's queue on the old side: durable, bound to the object-update exchange."""
    arguments = {"x-ha-policy": "all"} if side.ha_mode else None
    return kombu.Queue(name, object_update_exchange(side), durable=True, auto_delete=False,
                       queue_arguments=arguments)


def quarantine_queue(name: str) -> kombu.Queue:
    """Durable queue holding messages run-sync could not apply, each with the reason."""
    return kombu.Queue(name + QUARANTINE_SUFFIX, durable=True, auto_delete=False)


def queue_exists(channel: Any, name: str) -> bool:
    """Passive declare: True when the queue exists (the channel is unusable after a miss,
    so the caller passes a throwaway channel)."""
    try:
        channel.queue_declare(queue=name, passive=True)
        return True
    except Exception as exc:
        if getattr(exc, "code", None) == 404 or "NOT_FOUND" in str(exc):
            return False
        raise


def queue_depth(channel: Any, name: str) -> int:
    return int(channel.queue_declare(queue=name, passive=True).message_count)


class Publisher:
    """Thread-safe publishing with confirms on one side's object-update exchange, with
    reconnection; `publish` returns only once the broker confirmed, else raises."""

    def __init__(self, side: RabbitSide) -> None:
        self.side = side
        self._lock = threading.Lock()
        self._conn: kombu.Connection | None = None
        self._producer: kombu.Producer | None = None
        self._exchange = object_update_exchange(side)

    def _ensure(self) -> kombu.Producer:
        if self._producer is None:
            # No heartbeats: nothing would answer them between two publishes, and the broker
            # would close an idle connection; a broken one shows at the next publish.
            conn = connection(self.side, heartbeat=0)
            conn.connect()
            channel = conn.channel()
            self._exchange(channel).declare()
            self._conn, self._producer = conn, kombu.Producer(channel, exchange=self._exchange)
        return self._producer

    def publish(self, body: Mapping[str, Any]) -> None:
        payload = json.dumps(body)
        with self._lock:
            try:
                self._ensure().publish(payload, content_type="application/json",
                                       content_encoding="utf-8", delivery_mode=1)
            except Exception:
                self._reset()
                raise

    def _reset(self) -> None:
        conn, self._conn, self._producer = self._conn, None, None
        if conn is not None:
            try:
                conn.release()
            except Exception as exc:  # the connection is already broken; nothing to save
                log.debug("closing %s: %s", self.side.describe(), exc)

    def close(self) -> None:
        with self._lock:
            self._reset()


def wait_for(side: RabbitSide, timeout: float) -> None:
    """Block until the broker accepts a connection (used by tools and tests)."""
    deadline = time.monotonic() + timeout
    while True:
        conn = connection(side)
        try:
            conn.connect()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
        finally:
            conn.release()
