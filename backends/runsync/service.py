"""run-sync's consuming service: replay every config change of the old cluster into the new
one until finalize.

This half holds the broker side (the durable queue, acknowledgements, quarantine), the
catch-up copy, the lanes' intake (in this process, or the apply processes of processes.py),
reconciliation, metrics and the journal; the applying half (re-read, translate, replace,
republish) is applier.py.

Start-up, in this order (so no change can slip between the copy and the replay):
1. connect both Cassandra clusters (retried with backoff while they are down);
2. declare the durable queue bound to the old `vnc_config.object-update` exchange;
3. catch-up copy of `config_db_uuid` (the Cassandra worker's CopyEngine, checkpointed) -
   done once: skipped on later starts unless the queue had to be created anew (then changes
   may have been missed) or `force_catch_up`; a failed copy resumes its unfinished slices,
   it never starts over in a loop;
4. consume: each message is applied (re-read from old, replaced on new), republished
   translated on the new exchange, then acknowledged. Infrastructure failures (Cassandra,
   RabbitMQ down) are retried with backoff and nothing is acknowledged meanwhile; a message
   that fails on its own is retried a few times, then put in `<queue>.quarantine` with the
   reason and counted. A periodic reconciliation pass finds what no message announced.

Stop (SIGTERM): stop taking messages, finish the ones in hand, acknowledge them, return 0.
Messages prefetched but not started go back to the queue.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import kombu

from backends.cassandra.connection import Connection
from backends.cassandra.copy import CopyEngine
from backends.cassandra.registry import Registry
from backends.cassandra.replicator import Replicator
from backends.cassandra.tables import SyncSettings
from backends.progress import CheckpointStore, CounterSink, EventSink, MemoryCheckpoints
from backends.rabbit import (
    RabbitSide,
    connection,
    declare_issu_queues,
    issu_queue,
    quarantine_queue,
    queue_depth,
)
from backends.runsync.acks import AckWindow
from backends.runsync.applier import ChangeApplier, Outcome
from backends.runsync.apply import CONFIG_DB_UUID, ObjectApplier
from backends.runsync.lanes import Delivered, DoneQueue, Lanes
from backends.runsync.metrics import Deltas, RunSyncMetrics, push
from backends.runsync.options import RunSyncOptions
from backends.runsync.processes import WorkerPool, WorkerSpec
from backends.runsync.reconcile import Reconciler
from backends.runsync.retry import TRANSIENT, Backoff, StopRequested, retry_until_stopped
from backends.runsync.routing import object_key

log = logging.getLogger(__name__)

T = TypeVar("T")

CATCH_UP_JOB = "run-sync-catch-up"
STATE_JOB = "run-sync"
STATE_TABLE = "state"
CATCH_UP_DONE = "catch-up-complete"
# deliveries read from the broker after the first without waiting, before they are handed on
# (one pipe write per apply process for all of them) and the finished ones acknowledged
DRAIN_BURST = 64
# a message received within this many seconds: changes are flowing (see _replaying)
BUSY_WINDOW_S = 1.0


class ReplayService:
    """run-sync: the consumer of the old cluster's changes (see the module's docstring)."""

    def __init__(
        self,
        *,
        old_rabbit: RabbitSide,
        new_rabbit: RabbitSide,
        connect_cassandra: Callable[[], tuple[Connection, Connection]],
        registry: Registry,
        settings: SyncSettings | None = None,
        options: RunSyncOptions | None = None,
        checkpoints: CheckpointStore | None = None,
        events: EventSink | None = None,
        counters: CounterSink | None = None,
        zk_mirror: Callable[[], object] | None = None,
        worker_spec: WorkerSpec | None = None,
    ) -> None:
        self.old_rabbit, self.new_rabbit = old_rabbit, new_rabbit
        self.connect_cassandra = connect_cassandra
        self.registry = registry
        self.settings = settings or SyncSettings()
        self.options = options or RunSyncOptions()
        self.checkpoints = checkpoints or MemoryCheckpoints()
        self.events, self.counters = events, counters
        self.zk_mirror = zk_mirror
        self.worker_spec = worker_spec
        if self.options.processes > 1 and worker_spec is None:
            raise ValueError("several apply processes need a worker_spec (picklable factories)")
        self._pool: WorkerPool | None = None
        self._by_id: dict[int, Any] = {}  # message id -> broker message, while in a process
        self._next_id = 0
        self._worker_requests: dict[int, dict[str, tuple[int, int]]] = {}
        self.metrics = RunSyncMetrics()
        self.metrics_address: tuple[str, int] | None = None
        self.stop = threading.Event()
        self.reconcile_requested = threading.Event()
        self.ready = threading.Event()  # set once consuming
        self._done: DoneQueue = queue.Queue()
        self._in_flight = 0
        self._last_delivery = 0.0  # monotonic time of the last message received
        self._behind = False  # changes waiting on the broker at the last look (its depth)
        self._gen = 0
        self._reconcile_when_caught_up = False
        self._conns: tuple[Connection, Connection] | None = None
        self.repl: Replicator | None = None
        self.objects: ObjectApplier | None = None  # in this process (no apply processes)
        self.applier: ChangeApplier | None = None

    # ---------------------------------------------------------------------------- helpers

    def _event(self, message: str, level: str = "info", **fields: object) -> None:
        getattr(log, "warning" if level == "warning" else "error" if level == "error"
                else "info")("%s", message)
        if self.events is not None:
            try:
                self.events.event("run-sync", message, level=level, **fields)
            except Exception as exc:  # the journal must never stop the replay
                log.warning("journal event not written: %s", exc)

    def _retry(self, what: str, fn: Callable[[], T]) -> T:
        return retry_until_stopped(
            what, fn, stop=self.stop,
            backoff=Backoff(self.options.backoff_initial_s, self.options.backoff_max_s),
            report=lambda message: self._event(message, level="warning"))

    # ---------------------------------------------------------------------------- main

    def run(self) -> int:
        """Run until `stop` is set; returns the exit code (0 after a graceful stop)."""
        if self.options.metrics_listen:
            try:
                self.metrics_address = self.metrics.serve(self.options.metrics_listen)
                log.info("metrics on http://%s:%d/metrics", *self.metrics_address)
            except OSError as exc:  # e.g. the port is taken: replicate anyway, say so loudly
                self._event(f"metrics endpoint {self.options.metrics_listen} not served: {exc}; "
                            "counters still go to the journal", level="error")
        threads: list[threading.Thread] = []
        try:
            self._conns = self._retry("connecting to Cassandra", self.connect_cassandra)
            old, new = self._conns
            self.repl = Replicator(old, new, self.registry, self.settings)
            created = self._retry("declaring the run-sync queue on old RabbitMQ",
                                  self._declare)
            if created:
                self._event(f"queue {self.options.queue_name} created on "
                            f"{self.old_rabbit.describe()}")
            self._catch_up(created)
            if self.options.processes > 1:
                assert self.worker_spec is not None
                self._pool = WorkerPool(self.worker_spec, self.options.processes,
                                        on_done=self._worker_done,
                                        on_deltas=self._worker_deltas,
                                        on_event=lambda m, level: self._event(m, level=level))
                if not self._pool.wait_ready(self.stop):
                    raise StopRequested("starting the apply processes")
                self._event(f"run-sync: {self.options.processes} apply processes ready "
                            f"(pids {', '.join(map(str, self._pool.pids()))})")
            else:
                self.objects = ObjectApplier(self.repl)
                self.applier = ChangeApplier(self.objects, self.new_rabbit, self.options,
                                             self.metrics, self.stop)
            reconciler = threading.Thread(target=self._reconcile_loop, name="issu-reconcile",
                                          daemon=True)
            reconciler.start()
            threads.append(reconciler)
            self._event("run-sync: replaying changes", queue=self.options.queue_name)
            self._consume_forever()
        except StopRequested:
            pass
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(timeout=60)
            if self._pool is not None:
                self._pool.join()
            self._publish_counters()
            if self.applier is not None:
                self.applier.close()
            self.metrics.stop_serving()
            if self._conns is not None:
                for conn in self._conns:
                    conn.close()
        self._event("run-sync stopped")
        return 0

    def _declare(self) -> bool:
        """Declare exchange, durable queue + binding and the quarantine queue on old.
        Returns True when the queue did not exist before."""
        return declare_issu_queues(self.old_rabbit, self.options.queue_name)

    def _catch_up(self, queue_created: bool) -> None:
        opts = self.options
        done = CATCH_UP_DONE in self.checkpoints.done_slices(STATE_JOB, STATE_TABLE)
        if not opts.catch_up or (done and not queue_created and not opts.force_catch_up):
            self._event("catch-up copy of config_db_uuid skipped (done earlier; the durable "
                        "queue held the changes since)" if done else
                        "catch-up copy disabled")
            return
        assert self._conns is not None
        old, new = self._conns
        engine = CopyEngine(old, new, self.registry,
                            replace(self.settings, keyspaces=(CONFIG_DB_UUID,)),
                            checkpoints=self.checkpoints, events=self.events,
                            counters=self.counters)
        fresh = queue_created or opts.force_catch_up
        backoff = Backoff(opts.backoff_initial_s, opts.backoff_max_s)
        while True:
            report = engine.run(CATCH_UP_JOB, phase="pre", fresh=fresh, stop=self.stop)
            if self.stop.is_set():
                raise StopRequested("catch-up")
            if report.ok:
                self.checkpoints.mark_slice_done(STATE_JOB, STATE_TABLE, CATCH_UP_DONE,
                                                 int(report.totals().get("cells", 0)))
                self._reconcile_when_caught_up = opts.reconcile_after_catch_up
                return
            errors = [e for t in report.tables for e in t.errors]
            self._event(f"catch-up copy incomplete, resuming the failed slices: "
                        f"{'; '.join(errors[:3])}", level="warning")
            fresh = False  # only unfinished slices next time: never the whole copy again
            if backoff.wait(self.stop):
                raise StopRequested("catch-up")

    # ---------------------------------------------------------------------------- consuming

    def _consume_forever(self) -> None:
        opts = self.options
        backoff = Backoff(opts.backoff_initial_s, opts.backoff_max_s)
        lanes = None
        if self.applier is not None:  # no apply processes: the lanes run here
            lanes = Lanes(self.applier, opts.concurrency, self._done)
            lanes.connect_publisher()
        try:
            while not self.stop.is_set():
                conn = connection(self.old_rabbit)
                try:
                    self._consume(conn, lanes, backoff)
                except TRANSIENT as exc:
                    self.metrics.reconnects.inc()
                    self.ready.clear()
                    self._event(f"{self.old_rabbit.describe()} connection lost, reconnecting: "
                                f"{type(exc).__name__}: {exc}", level="warning")
                    backoff.wait(self.stop)
                finally:
                    with contextlib.suppress(Exception):
                        conn.release()
        finally:
            # whatever is still running finishes; an ack lost with a connection means the
            # broker redelivers the message (applying it twice is harmless)
            if lanes is not None:
                lanes.shutdown()
        while not self._done.empty():
            self._done.get_nowait()

    def _consume(self, conn: kombu.Connection, lanes: Lanes | None, backoff: Backoff) -> None:
        opts = self.options
        conn.connect()
        self._gen += 1
        gen = self._gen
        channel = conn.channel()
        channel.basic_qos(0, opts.prefetch, False)
        bound = issu_queue(self.old_rabbit, opts.queue_name)(channel)
        bound.declare()  # after a broker restart: exchange, queue and binding again
        quarantine = quarantine_queue(opts.queue_name)(channel)
        quarantine.declare()
        producer = kombu.Producer(channel)
        window = AckWindow(lambda tag, multiple: channel.basic_ack(tag, multiple=multiple))

        def on_message(message: Any) -> None:
            window.delivered(message.delivery_tag)
            self._last_delivery = time.monotonic()
            self._in_flight += 1
            self.metrics.in_flight.set(self._in_flight)
            key = object_key(message.body)
            if self._pool is not None:
                self._next_id += 1
                self._by_id[self._next_id] = message
                redelivered = bool((message.delivery_info or {}).get("redelivered"))
                self._pool.submit(key, self._next_id, message.body, redelivered, gen)
                return
            assert lanes is not None
            lanes.dispatch(key, message, gen)

        consumer = kombu.Consumer(channel, queues=[bound], on_message=on_message,
                                  no_ack=False, prefetch_count=opts.prefetch)
        consumer.consume()
        backoff.reset()
        self.ready.set()
        last_periodic = 0.0
        while not self.stop.is_set():
            with contextlib.suppress(socket.timeout):
                conn.drain_events(timeout=0.05)
                # what else has arrived, without waiting: handed on together below
                for _ in range(DRAIN_BURST):
                    conn.drain_events(timeout=0)
            if self._pool is not None:
                self._pool.flush()
            conn.heartbeat_check()
            self._finish_done(gen, producer, window)
            now = time.monotonic()
            if now - last_periodic >= opts.counters_interval_s:
                last_periodic = now
                with contextlib.suppress(*TRANSIENT):
                    depth = queue_depth(channel, opts.queue_name)
                    self.metrics.queue_depth.set(depth)
                    self._behind = depth > 0
                    if self._reconcile_when_caught_up and depth == 0 and self._in_flight == 0:
                        self._reconcile_when_caught_up = False
                        self._event("run-sync: the changes queued during the catch-up copy "
                                    "are applied; a reconciliation pass now")
                        self.request_reconcile()
                self._publish_counters()
        # stop requested: no new deliveries; finish and acknowledge what is in hand
        with contextlib.suppress(Exception):
            consumer.cancel()
        if self._pool is not None:
            self._pool.stop()
        deadline = time.monotonic() + 300
        while self._in_flight > 0 and time.monotonic() < deadline:
            self._finish_done(gen, producer, window, wait=0.1)
        self._finish_done(gen, producer, window)
        window.flush(everything=True)

    def _finish_done(self, gen: int, producer: kombu.Producer, window: AckWindow,
                     wait: float = 0.0) -> None:
        """Act on the outcomes the lanes reported; the acknowledgements go together
        (acks.py)."""
        while True:
            try:
                item = self._done.get(timeout=wait) if wait else self._done.get_nowait()
            except queue.Empty:
                window.flush()
                return
            wait = 0.0
            if item is None:
                continue
            # the broker's own message (kombu): acknowledged or requeued here
            message: Any = item[0]
            message_gen, outcome = item[1], item[2]
            self._in_flight -= 1
            self.metrics.in_flight.set(self._in_flight)
            if message_gen != gen:
                continue  # delivered on a connection since lost: the broker redelivers it
            if outcome.kind == "applied":
                window.finished(message.delivery_tag)
            elif outcome.kind == "quarantine":
                self._quarantine(message, outcome, producer)
                window.finished(message.delivery_tag)
            elif outcome.kind == "requeue":
                message.requeue()
                window.settled(message.delivery_tag)
            # "abandoned" (stopping before it started): left unacknowledged, redelivered

    def _quarantine(self, message: Any, outcome: Outcome, producer: kombu.Producer) -> None:
        name = self.options.queue_name + ".quarantine"
        body, encoding = message.body, message.content_encoding or "binary"
        if isinstance(body, str):  # decoded by the client, or an empty body (py-amqp's '')
            body, encoding = body.encode("utf-8", "surrogatepass"), "utf-8"
        producer.publish(
            body, exchange="", routing_key=name, delivery_mode=2,
            content_type=message.content_type or "application/octet-stream",
            content_encoding=encoding,
            headers={"x-issu-reason": outcome.reason[:1000],
                     "x-issu-attempts": outcome.attempts,
                     "x-issu-quarantined-at": time.time()},
        )
        self.metrics.quarantined.inc()
        self._event(f"message quarantined in {name} after {outcome.attempts} attempt(s): "
                    f"{outcome.reason}", level="error", queue=name, reason=outcome.reason)

    # ---------------------------------------------------------------------------- processes

    def _worker_done(self, message_id: int, gen: int, kind: str, reason: str,
                     attempts: int) -> None:
        message: Delivered | None = self._by_id.pop(message_id, None)
        if message is not None:
            self._done.put((message, gen, Outcome(kind, reason, attempts)))

    def _worker_deltas(self, index: int, deltas: Deltas) -> None:
        self.metrics.apply_deltas(deltas)
        self._worker_requests[index] = deltas.get("requests") or {}

    # ---------------------------------------------------------------------------- periodic

    def _publish_counters(self) -> None:
        if self.repl is not None:  # connected: the lanes' request counts, here and in processes
            stats = dict(self.objects.io.stats()) if self.objects is not None else {}
            for worker in list(self._worker_requests.values()):
                for kind, (sent, asked) in worker.items():
                    had = stats.get(kind, (0, 0))
                    stats[kind] = (had[0] + sent, had[1] + asked)
            self.metrics.set_requests(stats)
        try:
            push(self.counters, self.metrics.refresh())
        except Exception as exc:
            log.warning("counters not written to the journal: %s", exc)

    def _replaying(self) -> bool:
        """Changes flowing: one in hand, or one received within the last second (a
        reconciliation pass then gives way, reconcile.py)."""
        return self._in_flight > 0 or time.monotonic() - self._last_delivery < BUSY_WINDOW_S

    def request_reconcile(self) -> None:
        self.reconcile_requested.set()

    def _reconcile_loop(self) -> None:
        assert self.repl is not None
        reconciler = Reconciler(self.repl, slices=self.options.reconcile_slices,
                                on_repair=lambda n: self.metrics.reconciled.inc(n),
                                busy=self._replaying, behind=lambda: self._behind)
        next_at = time.monotonic() + self.options.reconcile_interval_s
        while not self.stop.is_set():
            if not self.reconcile_requested.is_set() and time.monotonic() < next_at:
                self.reconcile_requested.wait(min(1.0, max(0.0, next_at - time.monotonic())))
                continue
            self.reconcile_requested.clear()
            report = reconciler.run_pass(self.stop)
            if report.complete:
                self.metrics.reconcile_passes.inc()
            level = "info" if report.complete else "warning"
            self._event(f"reconcile pass: {report.ranges} ranges, {report.repaired_text()}, "
                        f"{report.pruned} extra removed, {report.ranges_failed} "
                        f"ranges failed in {report.seconds:.1f}s"
                        + (f" ({report.paused_s:.1f}s of it giving way to the replay)"
                           if report.paused_s >= 0.05 else ""), level=level,
                        repaired=report.repaired, ranges_failed=report.ranges_failed)
            if self.zk_mirror is not None and not self.stop.is_set():
                try:
                    self.zk_mirror()
                except Exception as exc:  # ZooKeeper down: next pass tries again
                    self._event(f"zk mirror failed, retried next pass: "
                                f"{type(exc).__name__}: {exc}", level="warning")
            next_at = time.monotonic() + self.options.reconcile_interval_s
