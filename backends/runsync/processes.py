"""Apply processes: run-sync's replay spread over several Python processes.

One process replays with one interpreter however many lanes it has: its lanes wait in turn
for it. So the consuming process (service.py) keeps what must be single (the queue,
acknowledgements, quarantine, catch-up, reconciliation, metrics, journal) and hands each
message to an apply process chosen by the object's uuid: one object's changes always go to
the same process, where its lanes apply one object's changes one after the other, in the
order they were announced, as with one process. An apply process is lanes (lanes.py) and a
ChangeApplier (applier.py) fed from a pipe: it has no broker connection of its own but the
publisher on the new side.

Pipe protocol (multiprocessing, spawn: a fresh interpreter, nothing inherited from the
parent's threads), each item pickled by `_send`:
  parent -> worker: ("msgs", [(id, object uuid, body, redelivered, gen), ...]) | ("stop",)
  worker -> parent: ("ready",) once connected | ("done", [(id, gen, kind, reason, attempts)],
                    deltas) | ("bye",)
`deltas` carries the worker's counter increments, lag samples and request counts; the
parent adds them to its own metrics. A worker that dies is replaced; the messages it held
go back to the queue (rejected with requeue) to be applied again.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import pickle
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection as Pipe
from typing import Any

from backends.cassandra.connection import Connection
from backends.cassandra.registry import Registry, load_registry
from backends.cassandra.replicator import Replicator
from backends.cassandra.tables import SyncSettings
from backends.rabbit import RabbitSide
from backends.runsync.applier import ChangeApplier
from backends.runsync.apply import ObjectApplier
from backends.runsync.lanes import DoneQueue, Lanes
from backends.runsync.metrics import Deltas, RunSyncMetrics
from backends.runsync.options import RunSyncOptions
from backends.runsync.retry import Backoff, retry_until_stopped
from backends.runsync.routing import process_of
from backends.worker_signals import ignore_stop_signals

log = logging.getLogger(__name__)

# How long the results sender waits after an outcome for more to send with it: what it sends
# the parent acknowledges (the republish came before), so this delays only acknowledgements,
# and the parent's reader wakes once per batch instead of once per message.
RESULTS_LINGER_S = 0.002


def _send(pipe: Pipe, item: object) -> None:
    """`pipe.send` with plain pickle: Connection.send builds a ForkingPickler (a copy of
    copyreg's dispatch table) per call, and these items are plain tuples."""
    pipe.send_bytes(pickle.dumps(item, pickle.HIGHEST_PROTOCOL))


def _recv(pipe: Pipe) -> Any:
    return pickle.loads(pipe.recv_bytes())


@dataclass(frozen=True)
class WorkerSpec:
    """What an apply process needs; picklable (sent to a spawned interpreter)."""

    connect: Callable[[], tuple[Connection, Connection]]
    new_rabbit: RabbitSide
    settings: SyncSettings
    options: RunSyncOptions
    registry: Callable[[], Registry] = load_registry
    log_level: int = logging.INFO


@dataclass
class Delivery:
    """A message as an apply process sees it (the broker's message stays in the parent)."""

    id: int
    body: bytes | str
    redelivered: bool
    delivery_info: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.delivery_info = {"redelivered": self.redelivered}


def worker_options(options: RunSyncOptions) -> RunSyncOptions:
    """An apply process's options: its lanes in-process, no endpoint of its own."""
    return replace(options, processes=1, metrics_listen=None)


def worker_main(spec: WorkerSpec, pipe: Pipe) -> None:
    """An apply process: lanes and an applier fed from the pipe instead of a broker."""
    ignore_stop_signals()
    logging.basicConfig(level=spec.log_level,
                        format="%(asctime)s %(levelname)s apply[%(process)d] %(name)s: "
                               "%(message)s")
    serve_pipe(spec, pipe)


def serve_pipe(spec: WorkerSpec, pipe: Pipe) -> None:
    """An apply process's life: messages from the pipe into its lanes, outcomes and counters
    back, until told to stop or the parent is gone."""
    options = worker_options(spec.options)
    metrics = RunSyncMetrics()
    metrics.export_lags()
    stop = threading.Event()  # set when leaving: what has not started is reported abandoned
    old, new = retry_until_stopped(
        "connecting to Cassandra", spec.connect, stop=stop,
        backoff=Backoff(options.backoff_initial_s, options.backoff_max_s), report=log.warning)
    objects = ObjectApplier(Replicator(old, new, spec.registry(), spec.settings))
    applier = ChangeApplier(objects, spec.new_rabbit, options, metrics, stop)
    done: DoneQueue = queue.Queue()
    lanes = Lanes(applier, options.concurrency, done)
    lanes.connect_publisher(wait=True)  # connected (or tried) before "ready"
    with contextlib.suppress(OSError, ValueError):
        _send(pipe, ("ready",))
    sender = threading.Thread(target=_send_results, args=(pipe, done, metrics, objects),
                              name="issu-apply-results", daemon=True)
    sender.start()
    try:
        while True:
            try:
                item = _recv(pipe)
            except (EOFError, OSError):
                break  # the parent is gone
            if item[0] == "stop":
                break
            for message_id, key, body, redelivered, gen in item[1]:
                lanes.dispatch(key, Delivery(message_id, body, redelivered), gen)
    finally:
        stop.set()
        lanes.shutdown()
        done.put(None)
        sender.join(timeout=60)
        with contextlib.suppress(Exception):
            _send(pipe, ("bye",))
        applier.close()
        old.close()
        new.close()


def _send_results(pipe: Pipe, done: DoneQueue, metrics: RunSyncMetrics,
                  objects: ObjectApplier) -> None:
    last = False
    while not last:
        items = [done.get()]
        if items[0] is not None:
            time.sleep(RESULTS_LINGER_S)  # the outcomes of the lanes finishing with it
        with contextlib.suppress(queue.Empty):
            while len(items) < 500:
                items.append(done.get_nowait())
        last = any(item is None for item in items)
        results = []
        for item in items:
            if item is None:
                continue
            delivery, gen, outcome = item
            assert isinstance(delivery, Delivery)
            results.append((delivery.id, gen, outcome.kind, outcome.reason, outcome.attempts))
        try:
            _send(pipe, ("done", results, metrics.take_deltas(objects.io.stats())))
        except (OSError, ValueError):
            return  # the parent is gone: the broker redelivers what it held


class WorkerPool:
    """The parent's side: `processes` apply processes, each message sent to the one its
    object belongs to. `on_done(id, gen, kind, reason, attempts)` and
    `on_deltas(worker, deltas)` are called from one reader thread per process."""

    def __init__(self, spec: WorkerSpec, processes: int, *,
                 on_done: Callable[[int, int, str, str, int], None],
                 on_deltas: Callable[[int, Deltas], None],
                 on_event: Callable[[str, str], None]) -> None:
        self.spec, self.processes = spec, processes
        self.on_done, self.on_deltas, self.on_event = on_done, on_deltas, on_event
        self._ctx = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._pipes: list[Pipe | None] = [None] * processes
        self._procs: list[Any] = [None] * processes
        self._held: list[dict[int, int]] = [{} for _ in range(processes)]  # id -> gen
        # messages for a process being restarted, sent once it is up
        self._waiting: list[list[tuple[Any, ...]]] = [[] for _ in range(processes)]
        # messages submitted since the last flush, per process
        self._outbox: list[list[tuple[Any, ...]]] = [[] for _ in range(processes)]
        self._started_at = [0.0] * processes
        self._quick_deaths = [0] * processes
        self._ready = [threading.Event() for _ in range(processes)]
        self._stopping = False
        self.restarts = 0
        for index in range(processes):
            self._start(index)

    def _start(self, index: int) -> None:
        self._ready[index].clear()
        parent_end, child_end = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=worker_main, args=(self.spec, child_end),
                                 name=f"issu-apply-{index}", daemon=True)
        proc.start()
        child_end.close()
        self._pipes[index], self._procs[index] = parent_end, proc
        self._started_at[index] = time.monotonic()
        threading.Thread(target=self._read, args=(index, parent_end),
                         name=f"issu-apply-reader-{index}", daemon=True).start()
        waiting, self._waiting[index] = self._waiting[index], []
        if waiting:
            _send(parent_end, ("msgs", waiting))

    def submit(self, key: str | None, message_id: int, body: bytes | str, redelivered: bool,
               gen: int) -> None:
        """Queue a message for the process its object belongs to; sent by `flush` (the
        consumer flushes after each read from the broker: one pipe write per process for
        the messages that came in together)."""
        index = process_of(key, self.processes)
        item = (message_id, key, body, redelivered, gen)  # the key: parsed once
        with self._lock:  # so a process being replaced never gets a message meant for the new
            self._held[index][message_id] = gen
            if self._pipes[index] is None:  # being restarted: sent when it is up
                self._waiting[index].append(item)
            else:
                self._outbox[index].append(item)

    def flush(self) -> None:
        """Send what `submit` queued."""
        lost: list[tuple[Any, ...]] = []
        with self._lock:
            for index, items in enumerate(self._outbox):
                if not items:
                    continue
                self._outbox[index] = []
                pipe = self._pipes[index]
                if pipe is None:  # being restarted: sent when it is up
                    self._waiting[index].extend(items)
                    continue
                try:
                    _send(pipe, ("msgs", items))
                except (OSError, ValueError):  # it just died: back to the queue
                    for item in items:
                        self._held[index].pop(item[0], None)
                    lost += items
        for message_id, _, _, _, gen in lost:
            self.on_done(message_id, gen, "requeue", "", 0)

    def _read(self, index: int, pipe: Pipe) -> None:
        while True:
            try:
                item = _recv(pipe)
            except (EOFError, OSError):
                break
            if item[0] == "ready":
                self._ready[index].set()
            elif item[0] == "done":
                with self._lock:
                    for message_id, *_ in item[1]:
                        self._held[index].pop(message_id, None)
                for message_id, gen, kind, reason, attempts in item[1]:
                    self.on_done(message_id, gen, kind, reason, attempts)
                self.on_deltas(index, item[2])
            elif item[0] == "bye":
                break
        with contextlib.suppress(Exception):
            pipe.close()
        with self._lock:
            lost = self._held[index]
            self._held[index] = {}
            self._waiting[index] = []
            self._outbox[index] = []  # held too: in `lost`
            stopping = self._stopping
            proc = self._procs[index]
            if not stopping:
                self._pipes[index] = None
        # whatever it held is applied again (or, stopping, left for the broker to redeliver)
        for message_id, gen in lost.items():
            self.on_done(message_id, gen, "abandoned" if stopping else "requeue", "", 0)
        if stopping:
            return
        if proc is not None:
            proc.join(2)
        code = proc.exitcode if proc is not None else None
        # a process that dies young (it cannot start?) is restarted after a pause, longer
        # each time, so a broken set-up does not spawn interpreters in a loop
        lived = time.monotonic() - self._started_at[index]
        self._quick_deaths[index] = self._quick_deaths[index] + 1 if lived < 10 else 0
        pause = min(30.0, 0.5 * 2 ** (self._quick_deaths[index] - 1)) \
            if self._quick_deaths[index] else 0.0
        self.on_event(f"apply process {index} exited (code {code}); {len(lost)} message(s) it "
                      f"held go back to the queue; a new one starts in {pause:.1f}s", "error")
        time.sleep(pause)
        with self._lock:
            if not self._stopping:
                self._start(index)
                self.restarts += 1  # counted once the new process is in place
                return
            # stopped meanwhile: what came for it in the pause is left for redelivery
            waiting, self._held[index], self._waiting[index] = self._held[index], {}, []
        for message_id, gen in waiting.items():
            self.on_done(message_id, gen, "abandoned", "", 0)

    def wait_ready(self, stop: threading.Event) -> bool:
        """Wait until every process is connected and taking messages (False if `stop` is
        set first): consuming before would leave the first changes waiting for them."""
        for ready in self._ready:
            while not ready.wait(0.2):
                if stop.is_set():
                    return False
        return True

    def stop(self) -> None:
        """Tell every process to stop taking work: they finish what they started, report
        the rest as abandoned (left unacknowledged: redelivered), and exit."""
        self.flush()
        with self._lock:
            self._stopping = True
            pipes = list(self._pipes)
        for pipe in pipes:
            with contextlib.suppress(Exception):
                if pipe is not None:
                    _send(pipe, ("stop",))

    def join(self, timeout: float = 60.0) -> None:
        self.stop()
        for proc in self._procs:
            if proc is None:
                continue
            proc.join(timeout)
            if proc.is_alive():
                proc.kill()
                proc.join(5)

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p is not None and p.pid is not None]
