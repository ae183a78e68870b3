"""run-sync: replay every config change of the old cluster into the new one until finalize.

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
import json
import logging
import queue
import socket
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import amqp.exceptions
import kombu
import kombu.exceptions
from cassandra import (
    CoordinationFailure,
    OperationTimedOut,
    ReadTimeout,
    Unavailable,
    WriteTimeout,
)
from cassandra.cluster import NoHostAvailable
from cassandra.connection import ConnectionException

from backends.cassandra.connection import CassandraUnavailable, Connection
from backends.cassandra.copy import CopyEngine
from backends.cassandra.registry import Registry
from backends.cassandra.replicator import Replicator
from backends.cassandra.tables import SyncSettings
from backends.progress import CheckpointStore, CounterSink, EventSink, MemoryCheckpoints
from backends.rabbit import (
    Publisher,
    RabbitSide,
    connection,
    issu_queue,
    object_update_exchange,
    quarantine_queue,
    queue_depth,
    queue_exists,
)
from backends.runsync.apply import CONFIG_DB_UUID, ApplyResult, ObjectApplier
from backends.runsync.messages import BadMessage, Change, parse, translate
from backends.runsync.metrics import RunSyncMetrics, push
from backends.runsync.processes import Delivery, WorkerPool, WorkerSpec
from backends.runsync.reconcile import Reconciler

log = logging.getLogger(__name__)

T = TypeVar("T")

CATCH_UP_JOB = "run-sync-catch-up"
STATE_JOB = "run-sync"
STATE_TABLE = "state"
CATCH_UP_DONE = "catch-up-complete"

# Failures of the surroundings, not of the message: retried until they pass (or stop).
TRANSIENT = (
    NoHostAvailable, OperationTimedOut, Unavailable, ReadTimeout, WriteTimeout,
    CoordinationFailure, ConnectionException, CassandraUnavailable,
    kombu.exceptions.OperationalError, amqp.exceptions.ConnectionError,
    amqp.exceptions.RecoverableConnectionError, ConnectionError, OSError, TimeoutError,
)


def object_key(body: bytes | str) -> str | None:
    """The object uuid a message is about (None: not a JSON object with a uuid)."""
    try:
        decoded = json.loads(body)
    except Exception:
        return None
    if not isinstance(decoded, dict) or not decoded.get("uuid"):
        return None
    key = str(decoded["uuid"])
    try:
        key.encode()  # the lane is a hash of its bytes
    except UnicodeEncodeError:
        return None  # not a UUID either: quarantined as such
    return key


def lane_of(body: bytes | str, lanes: int) -> int:
    """The worker lane of a message: by object uuid (unparsable bodies go to lane 0)."""
    return lane_of_key(object_key(body), lanes)


def lane_of_key(key: str | None, lanes: int, stride: int = 1) -> int:
    """`stride`: in an apply process, how many processes share the objects. The process was
    chosen by crc32 % processes, so the lane takes the quotient: the same remainder would
    leave all but 1/processes of each process's lanes without work."""
    return (zlib.crc32(key.encode()) // stride) % lanes if key else 0


class Stopped(Exception):
    """Raised inside start-up retries when a stop was requested."""


@dataclass(frozen=True)
class RunSyncOptions:
    queue_name: str = "vnc-config.issu-queue"
    concurrency: int = 32             # lanes: a message waits on ~6 Cassandra round trips
    prefetch: int = 64
    max_attempts: int = 3             # per message, for failures of the message itself
    reconcile_interval_s: float = 300.0
    reconcile_slices: int = 64
    # A pass as soon as the changes queued during a catch-up copy are applied: a copy taken
    # while old changed can leave cells no message places (a parent copied before a delete,
    # the object after it, and a message without obj_dict).
    reconcile_after_catch_up: bool = True
    catch_up: bool = True
    force_catch_up: bool = False
    old_version: str = ""
    new_version: str = ""
    metrics_listen: str | None = "127.0.0.1:9109"
    counters_interval_s: float = 2.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    processes: int = 1                # apply processes (1: the lanes run in this process)
    lane_stride: int = 1              # in an apply process: how many there are (lane_of_key)


@dataclass
class _Outcome:
    kind: str  # "applied" | "quarantine" | "abandoned" | "requeue" (an apply process died)
    reason: str = ""
    attempts: int = 0
    result: ApplyResult | None = None


class Backoff:
    def __init__(self, initial: float, maximum: float) -> None:
        self.initial, self.maximum = initial, maximum
        self.current = initial

    def wait(self, stop: threading.Event) -> bool:
        """Sleep the current delay (True if stopped meanwhile), then double it."""
        stopped = stop.wait(self.current)
        self.current = min(self.maximum, self.current * 2)
        return stopped

    def reset(self) -> None:
        self.current = self.initial


class RunSync:
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
        self._done: queue.Queue[tuple[Any, int, _Outcome]] = queue.Queue()
        # Messages waiting in a lane, by object uuid: a message for an object that already has
        # one waiting joins it, and one re-read + replace serves them all (the content is read
        # from old when the work starts, so it covers every change announced before).
        self._pending: dict[str, list[tuple[Any, int]]] = {}
        self._pending_lock = threading.Lock()
        self._in_flight = 0
        self._gen = 0
        self._reconcile_when_caught_up = False
        self._publishers: list[Publisher] = []
        self._local = threading.local()  # one publisher per lane: no lock shared by lanes
        self._conns: tuple[Connection, Connection] | None = None
        self.repl: Replicator | None = None
        self.applier: ObjectApplier | None = None

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
        backoff = Backoff(self.options.backoff_initial_s, self.options.backoff_max_s)
        failures = 0
        while True:
            if self.stop.is_set():
                raise Stopped(what)
            try:
                return fn()
            except Exception as exc:
                failures += 1
                if failures == 1 or failures % 20 == 0:
                    self._event(f"{what} failed ({failures}x), retrying: "
                                f"{type(exc).__name__}: {exc}", level="warning")
                if backoff.wait(self.stop):
                    raise Stopped(what) from exc

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
            self.applier = ObjectApplier(self.repl)
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
                    raise Stopped("starting the apply processes")
                self._event(f"run-sync: {self.options.processes} apply processes ready "
                            f"(pids {', '.join(map(str, self._pool.pids()))})")
            reconciler = threading.Thread(target=self._reconcile_loop, name="issu-reconcile",
                                          daemon=True)
            reconciler.start()
            threads.append(reconciler)
            self._event("run-sync: replaying changes", queue=self.options.queue_name)
            self._consume_forever()
        except Stopped:
            pass
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(timeout=60)
            if self._pool is not None:
                self._pool.join()
            self._publish_counters()
            for publisher in self._publishers:
                publisher.close()
            self.metrics.stop_serving()
            if self._conns is not None:
                for conn in self._conns:
                    conn.close()
        self._event("run-sync stopped")
        return 0

    def _declare(self) -> bool:
        """Declare exchange, durable queue + binding and the quarantine queue on old.
        Returns True when the queue did not exist before."""
        conn = connection(self.old_rabbit)
        try:
            conn.connect()
            probe = conn.channel()
            existed = queue_exists(probe, self.options.queue_name)
            with contextlib.suppress(Exception):
                probe.close()
            channel = conn.channel()
            object_update_exchange(self.old_rabbit)(channel).declare()
            issu_queue(self.old_rabbit, self.options.queue_name)(channel).declare()
            quarantine_queue(self.options.queue_name)(channel).declare()
            return not existed
        finally:
            conn.release()

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
                raise Stopped("catch-up")
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
                raise Stopped("catch-up")

    # ---------------------------------------------------------------------------- consuming

    def _consume_forever(self) -> None:
        opts = self.options
        backoff = Backoff(opts.backoff_initial_s, opts.backoff_max_s)
        # One single-thread lane per worker; an object always goes to the same lane, so the
        # changes of one object are applied and republished in the order they were announced.
        lanes = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"issu-apply-{i}")
                 for i in range(opts.concurrency)]
        if self._pool is None:  # (with apply processes, these lanes stay idle)
            self._warm_lanes(lanes)
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
            for lane in lanes:
                lane.shutdown(wait=True)
        while not self._done.empty():
            self._done.get_nowait()

    def _consume(self, conn: kombu.Connection, lanes: list[ThreadPoolExecutor],
                 backoff: Backoff) -> None:
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

        def on_message(message: Any) -> None:
            self._in_flight += 1
            self.metrics.in_flight.set(self._in_flight)
            key = object_key(message.body)
            if self._pool is not None:
                self._next_id += 1
                self._by_id[self._next_id] = message
                redelivered = bool((message.delivery_info or {}).get("redelivered"))
                self._pool.submit(key, self._next_id, message.body, redelivered, gen)
                return
            self._dispatch(lanes, key, message, gen)

        consumer = kombu.Consumer(channel, queues=[bound], on_message=on_message,
                                  no_ack=False, prefetch_count=opts.prefetch)
        consumer.consume()
        backoff.reset()
        self.ready.set()
        last_periodic = 0.0
        while not self.stop.is_set():
            with contextlib.suppress(socket.timeout):
                conn.drain_events(timeout=0.05)
            conn.heartbeat_check()
            self._finish_done(gen, producer)
            now = time.monotonic()
            if now - last_periodic >= opts.counters_interval_s:
                last_periodic = now
                with contextlib.suppress(*TRANSIENT):
                    depth = queue_depth(channel, opts.queue_name)
                    self.metrics.queue_depth.set(depth)
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
            self._finish_done(gen, producer, wait=0.1)
        self._finish_done(gen, producer)

    def _finish_done(self, gen: int, producer: kombu.Producer, wait: float = 0.0) -> None:
        while True:
            try:
                message, message_gen, outcome = self._done.get(timeout=wait) if wait else \
                    self._done.get_nowait()
            except queue.Empty:
                return
            wait = 0.0
            self._in_flight -= 1
            self.metrics.in_flight.set(self._in_flight)
            if message_gen != gen:
                continue  # delivered on a connection since lost: the broker redelivers it
            if outcome.kind == "applied":
                message.ack()
            elif outcome.kind == "quarantine":
                self._quarantine(message, outcome, producer)
                message.ack()
            elif outcome.kind == "requeue":
                message.requeue()
            # "abandoned" (stopping before it started): left unacknowledged, redelivered

    def _quarantine(self, message: Any, outcome: _Outcome, producer: kombu.Producer) -> None:
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

    def _dispatch(self, lanes: list[ThreadPoolExecutor], key: str | None, message: Any,
                  gen: int) -> None:
        """Into the object's lane; a message for an object that already has one waiting
        joins it."""
        if key is None:  # not parsable: on its own, to be quarantined with the reason
            lanes[0].submit(self._work, [(message, gen)])
            return
        with self._pending_lock:
            waiting = self._pending.get(key)
            if waiting is not None:  # not started yet: its write will serve this one too
                waiting.append((message, gen))
                return
            self._pending[key] = [(message, gen)]
        lanes[lane_of_key(key, len(lanes), self.options.lane_stride)].submit(
            self._work_object, key)

    # ---------------------------------------------------------------------------- processes

    def _worker_done(self, message_id: int, gen: int, kind: str, reason: str,
                     attempts: int) -> None:
        message = self._by_id.pop(message_id, None)
        if message is not None:
            self._done.put((message, gen, _Outcome(kind, reason, attempts)))

    def _worker_deltas(self, index: int, deltas: dict[str, Any]) -> None:
        self.metrics.apply_deltas(deltas)
        self._worker_requests[index] = deltas.get("requests") or {}

    def serve_pipe(self, pipe: Any) -> None:
        """An apply process's life (see backends/runsync/processes.py): messages from the
        pipe into this process's lanes, outcomes and counters back, until told to stop or
        the parent is gone."""
        self.metrics.export_lags()
        self._conns = self._retry("connecting to Cassandra", self.connect_cassandra)
        old, new = self._conns
        self.repl = Replicator(old, new, self.registry, self.settings)
        self.applier = ObjectApplier(self.repl)
        lanes = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"issu-apply-{i}")
                 for i in range(self.options.concurrency)]
        self._warm_lanes(lanes)
        for lane in lanes:  # every lane's publisher connected (or tried) before "ready"
            lane.submit(lambda: None).result()
        with contextlib.suppress(OSError, ValueError):
            pipe.send(("ready",))
        sender = threading.Thread(target=self._send_results, args=(pipe,),
                                  name="issu-apply-results", daemon=True)
        sender.start()
        try:
            while True:
                try:
                    item = pipe.recv()
                except (EOFError, OSError):
                    break  # the parent is gone
                if item[0] == "stop":
                    break
                _, message_id, key, body, redelivered, gen = item
                self._dispatch(lanes, key, Delivery(message_id, body, redelivered), gen)
        finally:
            self.stop.set()  # what has not started is reported abandoned
            for lane in lanes:
                lane.shutdown(wait=True)
            self._done.put(None)  # type: ignore[arg-type]
            sender.join(timeout=60)
            with contextlib.suppress(Exception):
                pipe.send(("bye",))
            for publisher in self._publishers:
                publisher.close()
            for conn in self._conns:
                conn.close()

    def _send_results(self, pipe: Any) -> None:
        last = False
        while not last:
            items = [self._done.get()]
            with contextlib.suppress(queue.Empty):
                while len(items) < 500:
                    items.append(self._done.get_nowait())
            last = any(item is None for item in items)
            results = [(d.id, gen, o.kind, o.reason, o.attempts)
                       for d, gen, o in (i for i in items if i is not None)]
            assert self.applier is not None
            try:
                pipe.send(("done", results, self.metrics.take_deltas(self.applier.io.stats())))
            except (OSError, ValueError):
                return  # the parent is gone: the broker redelivers what it held

    # ---------------------------------------------------------------------------- one message

    def _work_object(self, key: str) -> None:
        with self._pending_lock:
            batch = self._pending.pop(key)
        self._work(batch)

    def _work(self, batch: list[tuple[Any, int]]) -> None:
        try:
            redelivered = any((getattr(message, "delivery_info", None) or {}).get("redelivered")
                              for message, _ in batch)
            outcomes = self._process([message.body for message, _ in batch],
                                     thorough=bool(redelivered))
        except BaseException as exc:  # never lose track of a delivery
            reason = f"internal error: {type(exc).__name__}: {exc}"
            outcomes = [_Outcome("quarantine", reason, 1) for _ in batch]
        for (message, gen), outcome in zip(batch, outcomes, strict=True):
            self._done.put((message, gen, outcome))

    def _process(self, bodies: list[bytes | str], *, thorough: bool = False) -> list[_Outcome]:
        """Apply the messages of one object (queued in this order) with one re-read and
        replace, then republish each, in order. One outcome per message. `thorough`: every
        linked cell is replaced (see ObjectApplier.apply); so it is when one of the messages
        is a CREATE or DELETE."""
        if self.stop.is_set():
            return [_Outcome("abandoned") for _ in bodies]
        outcomes: list[_Outcome | None] = [None] * len(bodies)
        changes = []
        for i, body in enumerate(bodies):
            try:
                changes.append((i, parse(body)))
            except BadMessage as exc:
                self.metrics.failed.inc()
                outcomes[i] = _Outcome("quarantine", str(exc), 1)
        if changes:
            # The newest message stands for the object; an fq_name from any of them helps
            # find its fq-name index entry once the object is gone, and so do the links
            # their obj_dicts name.
            change = replace(changes[-1][1], coalesced=tuple(c for _, c in changes[:-1]))
            if not change.fq_name:
                named = [c for _, c in changes if c.fq_name]
                if named:
                    change = replace(change, fq_name=named[-1].fq_name)
            thorough = thorough or any(c.oper != "UPDATE" for _, c in changes)
            applied = self._apply(change, thorough=thorough)
            if isinstance(applied, _Outcome):
                for i, _ in changes:
                    outcomes[i] = applied
            else:
                self.metrics.object_writes.inc()
                self.metrics.coalesced.inc(len(changes) - 1)
                self.metrics.cells_quarantined.inc(applied.quarantined)
                for n, (i, one) in enumerate(changes):
                    outcomes[i] = self._republish(one, applied, first=n == 0)
                    if outcomes[i].kind == "abandoned":  # stopping: the rest stay queued,
                        break                           # redelivered in order
        return [o if o is not None else _Outcome("abandoned") for o in outcomes]

    def _apply(self, change: Change, *, thorough: bool = False) -> ApplyResult | _Outcome:
        """Re-read the object from old and replace it on new, retrying failures of the
        surroundings (a retry is thorough: a failed attempt may have written part of the
        change); an _Outcome when it is quarantined or abandoned."""
        opts = self.options
        assert self.applier is not None
        backoff = Backoff(opts.backoff_initial_s, opts.backoff_max_s)
        attempts = 0
        while True:
            attempts += 1
            try:
                if thorough or attempts > 1:
                    return self.applier.apply(change, thorough=True)
                return self.applier.apply(change)
            except TRANSIENT as exc:
                self.metrics.failed.inc()
                log.warning("applying %s %s: %s: %s (retrying)", change.type, change.uuid,
                            type(exc).__name__, exc)
                if backoff.wait(self.stop):
                    return _Outcome("abandoned")
            except Exception as exc:
                self.metrics.failed.inc()
                reason = f"{change.oper} {change.type} {change.uuid}: {type(exc).__name__}: {exc}"
                log.warning("applying failed (attempt %d/%d): %s", attempts,
                            opts.max_attempts, reason)
                if attempts >= opts.max_attempts:
                    return _Outcome("quarantine", reason, attempts)
                if backoff.wait(self.stop):
                    return _Outcome("abandoned")

    def _republish(self, change: Change, result: ApplyResult, first: bool) -> _Outcome:
        opts = self.options
        out_body = translate(change.body, opts.old_version, opts.new_version)
        backoff = Backoff(opts.backoff_initial_s, opts.backoff_max_s)
        while True:
            try:
                self._lane_publisher().publish(out_body)
                break
            except Exception as exc:  # the new broker is down: the change waits
                log.warning("republishing on %s failed: %s (retrying)",
                            self.new_rabbit.describe(), exc)
                if backoff.wait(self.stop):
                    return _Outcome("abandoned")
        self.metrics.applied.inc()
        self.metrics.republished.inc()
        self.metrics.last_applied.set(time.time())
        if first and result.newest_writetime:
            self.metrics.observe_lag(time.time() - result.newest_writetime / 1e6)
        return _Outcome("applied", result=result)

    def _warm_lanes(self, lanes: list[ThreadPoolExecutor]) -> None:
        """Each lane opens its publisher's connection now, not on its first change: after a
        start, the first changes would otherwise each wait for a new connection."""
        def warm() -> None:
            try:
                self._lane_publisher().connect()
            except Exception as exc:  # the broker is down: the first publish retries
                log.debug("publisher not connected ahead: %s", exc)

        for lane in lanes:
            lane.submit(warm)

    def _lane_publisher(self) -> Publisher:
        publisher = getattr(self._local, "publisher", None)
        if publisher is None:
            publisher = self._local.publisher = Publisher(self.new_rabbit)
            self._publishers.append(publisher)
        return publisher

    # ---------------------------------------------------------------------------- periodic

    def _publish_counters(self) -> None:
        if self.applier is not None:
            stats = dict(self.applier.io.stats())
            for worker in list(self._worker_requests.values()):
                for kind, (sent, asked) in worker.items():
                    had = stats.get(kind, (0, 0))
                    stats[kind] = (had[0] + sent, had[1] + asked)
            self.metrics.set_requests(stats)
        try:
            push(self.counters, self.metrics.refresh())
        except Exception as exc:
            log.warning("counters not written to the journal: %s", exc)

    def request_reconcile(self) -> None:
        self.reconcile_requested.set()

    def _reconcile_loop(self) -> None:
        assert self.repl is not None
        reconciler = Reconciler(self.repl, slices=self.options.reconcile_slices,
                                on_repair=lambda n: self.metrics.reconciled.inc(n))
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
            self._event(f"reconcile pass: {report.ranges} ranges, {report.repaired} partitions "
                        f"repaired, {report.pruned} extra removed, {report.ranges_failed} "
                        f"ranges failed in {report.seconds:.1f}s", level=level,
                        repaired=report.repaired, ranges_failed=report.ranges_failed)
            if self.zk_mirror is not None and not self.stop.is_set():
                try:
                    self.zk_mirror()
                except Exception as exc:  # ZooKeeper down: next pass tries again
                    self._event(f"zk mirror failed, retried next pass: "
                                f"{type(exc).__name__}: {exc}", level="warning")
            next_at = time.monotonic() + self.options.reconcile_interval_s
