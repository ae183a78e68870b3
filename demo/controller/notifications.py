"""A writer's own queue of the api-server's change notifications, as Contrail's writers have.

schema-transformer, svc-monitor and device-manager each consume `vnc_config.object-update`
(fanout) from a queue of their own, `<prefix>.<host>` (schema_transformer, svc_monitor,
device_manager), not durable, deleted at start (a pass catches up with the history) and at
a clean stop, and ack a message once they have handled it. Here a message wakes the writer
and is acked once a pass that began after it arrived has finished: the broker's count of
unacknowledged messages is the work the writer has not done yet (what issu's
settle-old-writers waits on).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from kombu import Connection, Consumer, Exchange, Queue

from .spec import RabbitSpec

log = logging.getLogger("demo.writers")

QUEUE_PREFIXES = {"schema-transformer": "schema_transformer", "svc-monitor": "svc_monitor",
                  "device-manager": "device_manager"}


class Notifications(threading.Thread):
    """Consumes the writer's queue; `wake` is set on every message."""

    def __init__(self, spec: RabbitSpec, user: str, password: str, service: str,
                 host: str) -> None:
        super().__init__(name=f"notifications-{service}", daemon=True)
        self.queue_name = f"{QUEUE_PREFIXES[service]}.{host}"
        self.conn = Connection(hostname=spec.host, port=spec.port, userid=user,
                               password=password, virtual_host=spec.vhost, connect_timeout=10,
                               heartbeat=0)
        self.exchange = Exchange(spec.exchange, type="fanout", durable=False)
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.ready = threading.Event()  # the queue is declared and consumed
        self.passes_begun = 0  # written by the writer's loop, read here (ints: no lock needed)
        self.passes_done = 0
        self._held: list[tuple[int, Any]] = []  # (passes begun when it arrived, message)

    def _got(self, body: object, message: Any) -> None:
        self._held.append((self.passes_begun, message))
        self.wake.set()

    def _ack_handled(self) -> None:
        done = self.passes_done
        keep = []
        for begun, message in self._held:
            if done > begun:  # a pass that began after it arrived has finished
                message.ack()
            else:
                keep.append((begun, message))
        self._held = keep

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self._consume()
            except Exception as exc:  # the broker restarted: consume again
                log.warning("%s: notifications: %s: %s", self.queue_name, type(exc).__name__,
                            exc)
                self._held = []  # unacked deliveries go back to the queue with the channel
                self.conn.release()
                self.stopping.wait(1.0)

    def _consume(self) -> None:
        self.conn.ensure_connection(max_retries=3)
        channel = self.conn.channel()
        queue = Queue(self.queue_name, self.exchange, durable=False)
        bound = queue(channel)
        bound.declare()
        if not self.ready.is_set():
            bound.purge()  # at start: the first pass catches up with the history
        with Consumer(channel, queues=[queue], callbacks=[self._got], accept=["json"]):
            self.ready.set()
            while not self.stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    self.conn.drain_events(timeout=0.2)
                self._ack_handled()
        bound.delete()  # a clean stop: the queue goes with the writer

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)
        self.conn.release()
