"""RabbitMQ helpers (kombu) for run-sync: the old cluster's change feed, the new one's.

Contrail's api-server publishes every config change on `vnc_config.object-update`, a fanout
exchange declared NOT durable; every consumer must declare it the same way or the broker
refuses the declaration. run-sync binds a DURABLE queue of its own to it on the old vhost (so
changes wait there while run-sync restarts) and republishes on the same exchange of the new
vhost. Unlike the original client, the queue is never deleted on connect (that dropped every
change made while run-sync was down) and a message is acknowledged only after it was applied.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import amqp
import kombu

if TYPE_CHECKING:
    from amqp.channel import Channel  # what kombu's pyamqp transport hands out

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
    ssl_version: str | None = None
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
        """py-amqp TLS options: the broker's certificate is always verified (CERT_REQUIRED),
        against ssl_ca_certs or else the system CA store; never an unverified connection.
        ssl_version (Contrail's rabbit_ssl_version) pins the protocol version."""
        if not self.use_ssl:
            return False
        options: dict[str, Any] = {
            "ssl_version": ssl.PROTOCOL_TLS_CLIENT,
            "cert_reqs": ssl.CERT_REQUIRED,
        }
        pinned = tls_version(self.ssl_version)
        if pinned is not None:
            options["tls_minimum_version"] = options["tls_maximum_version"] = pinned
        else:
            options["tls_minimum_version"] = ssl.TLSVersion.TLSv1_2
        if self.ssl_ca_certs:
            options["ca_certs"] = self.ssl_ca_certs  # else py-amqp loads the system CAs
        if self.ssl_keyfile:
            options["keyfile"] = self.ssl_keyfile
        if self.ssl_certfile:
            options["certfile"] = self.ssl_certfile
        return options


# Contrail's rabbit_ssl_version values (kombu's names); sslv23/tls: negotiate, TLS 1.2 or later.
_TLS_VERSIONS: dict[str, ssl.TLSVersion | None] = {
    "tlsv1": ssl.TLSVersion.TLSv1,
    "tlsv1_1": ssl.TLSVersion.TLSv1_1,
    "tlsv1_2": ssl.TLSVersion.TLSv1_2,
    "tlsv1_3": ssl.TLSVersion.TLSv1_3,
    "sslv23": None,
    "tls": None,
}


def tls_version(name: str | None) -> ssl.TLSVersion | None:
    """The TLS version a rabbit_ssl_version value pins (None: negotiate); ValueError names an
    unknown value."""
    if name is None or not name.strip():
        return None
    key = name.strip().lower().replace("protocol_", "").replace(".", "_")
    if key not in _TLS_VERSIONS:
        raise ValueError(f"rabbit ssl_version {name!r} is not one of "
                         f"{', '.join(sorted(_TLS_VERSIONS))}")
    return _TLS_VERSIONS[key]


def connection(side: RabbitSide, heartbeat: float = 30.0, *,
               confirm_publish: bool = True) -> kombu.Connection:
    """A kombu connection (not yet connected); with `confirm_publish` each publish waits
    for the broker's confirm (Publisher handles its confirms itself, several at once)."""
    return kombu.Connection(
        ";".join(side.urls()),
        ssl=side.ssl_options(),
        heartbeat=heartbeat,
        connect_timeout=5,
        transport_options={"confirm_publish": confirm_publish},
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


def queue_exists(channel: Channel, name: str) -> bool:
    """Passive declare: True when the queue exists (the channel is unusable after a miss,
    so the caller passes a throwaway channel)."""
    try:
        channel.queue_declare(queue=name, passive=True)
        return True
    except Exception as exc:
        if getattr(exc, "code", None) == 404 or "NOT_FOUND" in str(exc):
            return False
        raise


def declare_issu_queues(side: RabbitSide, name: str) -> bool:
    """Declare run-sync's durable queue `name`, bound to `side`'s object-update exchange,
    and its quarantine; True when the queue did not exist before. From the moment it
    returns the broker keeps every change announced on `side` for whoever consumes `name`
    later (run-sync, or the reverse replication finalize starts at its commit)."""
    conn = connection(side)
    try:
        conn.connect()
        probe = conn.channel()  # a passive declare miss closes its channel
        existed = queue_exists(probe, name)
        with contextlib.suppress(Exception):
            probe.close()
        channel = conn.channel()
        object_update_exchange(side)(channel).declare()
        issu_queue(side, name)(channel).declare()
        quarantine_queue(name)(channel).declare()
        return not existed
    finally:
        conn.release()


def queue_state(side: RabbitSide, name: str) -> tuple[int, int] | None:
    """(messages, consumers) of queue `name` on `side`, None when it does not exist."""
    conn = connection(side)
    try:
        conn.connect()
        return _queue_state(conn, name)
    finally:
        conn.release()


def purge_queue(side: RabbitSide, name: str) -> int:
    """Drop every message ready in queue `name` (it must exist); how many there were."""
    conn = connection(side)
    try:
        conn.connect()
        channel = conn.channel()
        return int(channel.queue_purge(queue=name) or 0)
    finally:
        conn.release()


def queue_depth(channel: Channel, name: str) -> int:
    return int(channel.queue_declare(queue=name, passive=True).message_count)


@dataclass(frozen=True, slots=True)
class QueueCleanup:
    """One queue's fate in delete_issu_queues: its depth before (None: it did not exist)."""

    name: str
    depth: int | None
    deleted: bool


class QueueInUse(RuntimeError):
    """A queue to delete still has consumers: run-sync is running."""


def _queue_state(conn: kombu.Connection, name: str) -> tuple[int, int] | None:
    """(messages, consumers) of a queue, None when it does not exist."""
    probe = conn.channel()  # a passive declare miss closes its channel
    try:
        if not queue_exists(probe, name):
            return None
        ok = probe.queue_declare(queue=name, passive=True)
        return int(ok.message_count), int(ok.consumer_count)
    finally:
        with contextlib.suppress(Exception):
            probe.close()


def delete_issu_queues(side: RabbitSide, queue_name: str,
                       confirm: Callable[[list[QueueCleanup]], bool] | None = None
                       ) -> list[QueueCleanup]:
    """Delete run-sync's durable queue and its `.quarantine` on the old side (finalize/abort),
    reporting each queue's message count first. A durable queue left behind keeps collecting
    every config change on the production broker. Idempotent: an absent queue is reported
    with depth None. Raises (naming the side) when the broker cannot be reached, and
    QueueInUse, deleting nothing, while a queue has consumers (run-sync still running:
    the changes announced meanwhile would be lost). `confirm(what would go)` may decline:
    nothing is deleted and every result says deleted=False."""
    results: list[QueueCleanup] = []
    conn = connection(side)
    try:
        conn.connect()
        names = (queue_name, queue_name + QUARANTINE_SUFFIX)
        states = {name: _queue_state(conn, name) for name in names}
        for name, state in states.items():
            if state is not None and state[1]:
                raise QueueInUse(f"{side.describe()}: queue {name} has {state[1]} "
                                 "consumer(s): run-sync is still running; stop it first")
        found = [QueueCleanup(name, state[0] if state else None, False)
                 for name, state in states.items()]
        if confirm is not None and not confirm(found):
            return found
        for name in names:
            state = states[name]
            depth = state[0] if state is not None else None
            if depth is None:
                log.info("%s: queue %s absent, nothing to delete", side.describe(), name)
                results.append(QueueCleanup(name, None, False))
                continue
            channel = conn.channel()
            try:
                channel.queue_delete(queue=name)
            finally:
                with contextlib.suppress(Exception):
                    channel.close()
            log.warning("%s: deleted queue %s holding %d message(s)", side.describe(), name,
                        depth)
            results.append(QueueCleanup(name, depth, True))
    finally:
        conn.release()
    return results


class PublishNotConfirmed(Exception):
    """The broker refused (nacked) a message or did not confirm it in time."""


class Publisher:
    """Thread-safe publishing with confirms on one side's object-update exchange, with
    reconnection. `publish_many` sends its messages back to back and returns once the broker
    confirmed every one (one round trip for all of them), else raises: then some may have
    been routed, and the caller publishes them again (a duplicate notification is harmless).
    """

    def __init__(self, side: RabbitSide, confirm_timeout_s: float = 30.0) -> None:
        self.side = side
        self.confirm_timeout_s = confirm_timeout_s
        self._lock = threading.Lock()
        self._conn: kombu.Connection | None = None
        self._producer: kombu.Producer | None = None
        self._exchange = object_update_exchange(side)
        # the channel's delivery tags: the last one sent, the highest confirmed, nacked ones
        self._sent = self._confirmed = 0
        self._nacked = 0

    def _ensure(self) -> kombu.Producer:
        if self._producer is None:
            # No heartbeats: nothing would answer them between two publishes, and the broker
            # would close an idle connection; a broken one shows at the next publish.
            conn = connection(self.side, heartbeat=0, confirm_publish=False)
            conn.connect()
            channel: Channel = conn.channel()
            self._exchange(channel).declare()
            channel.confirm_select()
            channel.events["basic_ack"].add(self._on_ack)
            channel.events["basic_nack"].add(self._on_nack)
            self._sent = self._confirmed = self._nacked = 0
            self._conn, self._producer = conn, kombu.Producer(channel, exchange=self._exchange)
        return self._producer

    def _on_ack(self, tag: int, multiple: bool) -> None:
        # the broker confirms in order; `multiple`: every tag up to this one
        self._confirmed = max(self._confirmed, tag)

    def _on_nack(self, tag: int, multiple: bool) -> None:
        self._nacked = max(self._nacked, tag)
        self._confirmed = max(self._confirmed, tag)

    def connect(self) -> None:
        """Open the connection now (else the first publish opens it); raises if it cannot."""
        with self._lock:
            try:
                self._ensure()
            except Exception:
                self._reset()
                raise

    def publish(self, body: Mapping[str, Any]) -> None:
        self.publish_many([body])

    def publish_many(self, bodies: Sequence[Mapping[str, Any]]) -> None:
        payloads = [json.dumps(body).encode() for body in bodies]
        with self._lock:
            try:
                producer = self._ensure()
                first = self._sent + 1
                # straight to the channel: the message kombu's Producer.publish builds from
                # these arguments, without its per-message Python (run-sync republishes
                # every change through here)
                channel, exchange = producer.channel, self._exchange.name
                for payload in payloads:
                    channel.basic_publish(
                        amqp.Message(payload, content_type="application/json",
                                     content_encoding="utf-8", application_headers={},
                                     delivery_mode=1, priority=0),
                        exchange=exchange, routing_key="")
                    self._sent += 1
                self._wait_confirmed(first)
            except Exception:
                self._reset()
                raise

    def _wait_confirmed(self, first: int) -> None:
        assert self._conn is not None
        deadline = time.monotonic() + self.confirm_timeout_s
        while self._confirmed < self._sent:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PublishNotConfirmed(f"{self.side.describe()}: "
                                          f"{self._sent - self._confirmed} message(s) not "
                                          f"confirmed in {self.confirm_timeout_s:g} s")
            with contextlib.suppress(socket.timeout):
                self._conn.drain_events(timeout=left)
        if self._nacked >= first:
            raise PublishNotConfirmed(f"{self.side.describe()} refused (nacked) a message")

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
