"""Publishes config changes on `vnc_config.object-update` (fanout, not durable).

Body (JSON): {"request-id", "oper": CREATE|UPDATE|DELETE, "type", "uuid", "fq_name", "obj_dict"?}.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kombu import Connection, Exchange, Producer

from .spec import RabbitSpec

log = logging.getLogger(__name__)


class NotifyError(Exception):
    """RabbitMQ refused a publish even after reconnecting; the message names broker and vhost."""


class ChangePublisher:
    def __init__(self, spec: RabbitSpec, user: str, password: str):
        self.spec = spec
        self._conn = Connection(
            hostname=spec.host, port=spec.port, userid=user, password=password,
            virtual_host=spec.vhost, connect_timeout=10, heartbeat=0)
        self._exchange = Exchange(spec.exchange, type="fanout", durable=False)
        self._producer: Producer | None = None
        self._lock = threading.Lock()  # a kombu channel is not thread-safe

    def where(self) -> str:
        return f"amqp://{self.spec.host}:{self.spec.port} vhost {self.spec.vhost!r}"

    def start(self) -> None:
        try:
            self._conn.ensure_connection(max_retries=5)
            channel = self._conn.channel()
            self._exchange(channel).declare()
            self._producer = Producer(channel, exchange=self._exchange)
        except Exception as exc:
            raise NotifyError(f"{self.where()}: {exc}") from exc

    def _retrying(self, exc: Exception, interval: float) -> None:
        log.warning("%s: publish failed (%s), retrying in %.1fs", self.where(), exc, interval)

    def stop(self) -> None:
        self._conn.release()

    def publish(self, message: dict[str, Any]) -> None:
        if self._producer is None:
            raise NotifyError(f"{self.where()}: publish before start()")
        # Reconnect through a broker restart (about a minute), then fail loudly: the caller
        # answers 500 naming the broker, the change itself is already in Cassandra.
        publish = self._conn.ensure(self._producer, self._producer.publish, errback=self._retrying,
                                    max_retries=30, interval_start=0.5, interval_step=0.5,
                                    interval_max=2.0)
        try:
            with self._lock:
                publish(message, serializer="json", declare=[self._exchange])
        except Exception as exc:
            raise NotifyError(f"{self.where()}: publish {message.get('oper')} "
                              f"{message.get('type')} {message.get('uuid')}: {exc}") from exc
