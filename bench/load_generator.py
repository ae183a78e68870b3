"""bench_runsync's load generator: Contrail-shaped changes written to old and announced on
old's exchange as the api-server does it (a create or a delete is one batch, with the parent's
`children:` cell and the fq-name index entry; then the notification message), each change
recorded (its request id, when it was written, what it was) for the lag and the replay
ceiling.

One Python process is held to one core's share by its interpreter, and on a loaded 2-core
box to less; threads that each waited for their own write reached 0.20-0.43x of the replay
ceiling's rate whatever they were asked. So the writes are asynchronous (up to `in_flight`
outstanding per process, a publisher thread announcing each once old acknowledged it), and
`GeneratorPool` runs the same Generator in several processes (spawned), each at its share
of the rate, on objects of its own; the rows and messages are the same code's, so the
offered load is the same kind, only more of it.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import queue
import random
import socket
import threading
import time
import uuid
from multiprocessing.connection import Connection as Pipe
from typing import Any

import kombu
from cassandra import OperationTimedOut, WriteTimeout
from cassandra.query import BatchStatement, BatchType

from backends.cassandra.connection import CassandraSide, connect
from backends.rabbit import RabbitSide, connection, object_update_exchange
from bench.replay_peers import Recorded
from tests import contrail_data as cd

WRITE_ATTEMPTS = 3  # a write old timed out is tried again, up to this many times in all
# a key of each message: when the generator announced it (passed on by run-sync's republish)
ANNOUNCED = "bench-announced"


class Generator:
    """Paced threads start the writes, the driver's callbacks record them, one publisher
    thread announces them: each change is written to old, then announced, without a thread
    waiting for each write (a thread per outstanding write did not offer 0.6x of the
    ceiling's rate on the loaded 2-core box)."""

    def __init__(self, session, prefix: str, rabbit: RabbitSide, project: str,  # type: ignore[no-untyped-def]
                 names: str = "vn", in_flight: int = 64) -> None:
        """`names`: the prefix of the networks' names (one per generator process);
        `in_flight`: writes outstanding at most."""
        self.session = session
        self.names = names
        ks = cd.ks_name(prefix, "config_db_uuid")
        self.ins_uuid = session.prepare(
            f'INSERT INTO "{ks}".obj_uuid_table (key, column1, value) VALUES (?, ?, ?) '
            "USING TIMESTAMP ?")
        self.ins_fq = session.prepare(
            f'INSERT INTO "{ks}".obj_fq_name_table (key, column1, value) VALUES (?, ?, ?) '
            "USING TIMESTAMP ?")
        self.del_cell_uuid = session.prepare(
            f'DELETE FROM "{ks}".obj_uuid_table USING TIMESTAMP ? WHERE key = ? AND column1 = ?')
        self.del_cell_fq = session.prepare(
            f'DELETE FROM "{ks}".obj_fq_name_table USING TIMESTAMP ? WHERE key = ? '
            "AND column1 = ?")
        self.del_part = session.prepare(
            f'DELETE FROM "{ks}".obj_uuid_table USING TIMESTAMP ? WHERE key = ?')
        self.rabbit = rabbit
        self.project = project
        self.written: dict[str, float] = {}  # request-id -> wall time written
        self.lock = threading.Lock()
        self.live: list[tuple[str, list[str]]] = []
        self.recorded: list[Recorded] = []  # every change, for the replay ceiling
        self.count = 0
        self.serial = 0
        self.errors: list[str] = []
        self.in_flight = in_flight
        self._slots = threading.BoundedSemaphore(in_flight)
        self._outbox: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def _next_serial(self) -> int:
        with self.lock:
            self.serial += 1
            return self.serial

    def one_change(self, rng: random.Random) -> None:
        """Starts one change's write (asynchronous, the driver's execute_async); once old
        acknowledged it, the change is recorded and its message goes to the publisher."""
        # at most `in_flight` writes outstanding in this process; the change's time is taken
        # once it may go (its lag does not count the generator's own wait)
        self._slots.acquire()
        roll = rng.random()
        with self.lock:
            pick = None
            if self.live and roll >= 0.5:
                index = rng.randrange(len(self.live))
                pick = self.live.pop(index) if roll >= 0.9 else self.live[index]
        now = time.time()
        ts = int(now * 1_000_000)
        rid = f"bench-{uuid.uuid4().hex}"
        statement: Any
        if pick is None:
            n = self._next_serial()
            uid = str(uuid.uuid4())
            fq = ["default-domain", "bench", f"{self.names}-{n}"]
            ds = cd.Dataset()
            cd.add_object(ds, "virtual-network", fq, parent=("project", self.project),
                          props={"virtual_network_network_id": n}, obj_uuid=uid)
            # one batch, as the api-server writes an object, its parent's children: cell
            # and its index entry
            statement = BatchStatement(batch_type=BatchType.UNLOGGED)
            for col, val in ds.tables[cd.UUID_TABLE][uid].items():
                statement.add(self.ins_uuid, (uid.encode(), col.encode(), val, ts))
            statement.add(self.ins_uuid, (self.project.encode(),
                                          f"children:virtual-network:{uid}".encode(), "null",
                                          ts))
            statement.add(self.ins_fq, (b"virtual-network",
                                        (":".join(fq) + ":" + uid).encode(), "null", ts))
            oper = "CREATE"
        elif roll < 0.9:
            uid, fq = pick
            statement = self.ins_uuid.bind((uid.encode(), b"prop:display_name",
                                            json.dumps(f"v{ts}"), ts))
            oper = "UPDATE"
        else:
            uid, fq = pick
            statement = BatchStatement(batch_type=BatchType.UNLOGGED)
            statement.add(self.del_part, (ts, uid.encode()))
            statement.add(self.del_cell_uuid, (ts, self.project.encode(),
                                               f"children:virtual-network:{uid}".encode()))
            statement.add(self.del_cell_fq, (ts, b"virtual-network",
                                             (":".join(fq) + ":" + uid).encode()))
            oper = "DELETE"
        body: dict[str, Any] = {"request-id": rid, "oper": oper, "type": "virtual-network",
                                "uuid": uid, "fq_name": fq}
        if oper != "UPDATE":
            # as the api-server announces a create or a delete (dbe_create_publish,
            # dbe_delete_publish): with the object as it was, which names its parent
            body["obj_dict"] = {"uuid": uid, "fq_name": fq, "parent_type": "project",
                                "parent_uuid": self.project}
        change = Recorded(rid, oper, uid, tuple(fq), self.project, ts)

        def written(_: object) -> None:
            with self.lock:
                if oper == "CREATE":  # updated or deleted only once it exists on old
                    self.live.append((uid, fq))
                self.written[rid] = now
                self.recorded.append(change)
                self.count += 1
            self._outbox.put(body)
            self._slots.release()

        attempts = [1]

        def failed(exc: BaseException) -> None:
            # old timing out under the box's load (WriteTimeout at load 42, 2026-12-05): the
            # same write again (idempotent: same cells, same timestamps); its lag counts from
            # the first attempt
            if isinstance(exc, (WriteTimeout, OperationTimedOut)) and attempts[0] < WRITE_ATTEMPTS:
                attempts[0] += 1
                self.session.execute_async(statement).add_callbacks(written, failed)
                return
            with self.lock:
                self.errors.append(f"{oper} {uid}: {exc!r}")
            self._slots.release()

        self.session.execute_async(statement).add_callbacks(written, failed)

    def _publish(self) -> None:
        """Announces each change once old acknowledged its write (one connection; no
        publisher confirms: the messages go in order on it, as the api-server's). A failure
        is recorded and the rest of the outbox emptied, so `run` raises instead of waiting
        for announcements that will not come."""
        conn = connection(self.rabbit, confirm_publish=False)
        # Flat out, the broker holds this connection back (credit flow: it stops reading
        # the socket while the queue catches up); py-amqp's default TCP_USER_TIMEOUT of 1 s
        # then has the kernel drop it (ETIMEDOUT), 2026-12-05 06:27 on a quiet box.
        conn.transport_options["socket_settings"] = {socket.TCP_USER_TIMEOUT: 60_000}
        try:
            conn.connect()
            producer = kombu.Producer(conn.channel(),
                                      exchange=object_update_exchange(self.rabbit))
            while (body := self._outbox.get()) is not None:
                # when it was announced: the bench splits the lag into the generator's part
                # (written -> announced) and the rest (broker, run-sync, broker)
                body[ANNOUNCED] = time.time()
                producer.publish(json.dumps(body))
                self._outbox.task_done()
            self._outbox.task_done()
        except Exception as exc:
            with self.lock:
                self.errors.append(f"publishing: {exc!r}")
            while self._outbox.get() is not None:
                self._outbox.task_done()
            self._outbox.task_done()
        finally:
            conn.release()

    def run(self, rate: float, seconds: float, threads: int = 2,
            limit: int | None = None) -> float:
        """Changes at `rate`/s for `seconds` (or until `limit` changes), `threads` paced
        threads starting writes without waiting for them (up to `in_flight` outstanding);
        returns the rate achieved: changes written and announced over the time from the
        first start to the last announcement."""
        start_count = self.count
        started = time.monotonic()
        issued = [0]
        publisher = threading.Thread(target=self._publish, daemon=True)
        publisher.start()

        def worker(k: int) -> None:
            rng = random.Random(f"{self.names}-{k}-{start_count}")
            interval = threads / rate
            next_at = time.monotonic() + k * interval / threads
            while time.monotonic() - started < seconds:
                with self.lock:
                    if limit is not None and issued[0] >= limit:
                        return
                    issued[0] += 1
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.one_change(rng)
                next_at += interval

        pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        for _ in range(self.in_flight):  # every write answered
            self._slots.acquire()
        for _ in range(self.in_flight):
            self._slots.release()
        self._outbox.put(None)
        self._outbox.join()  # and announced
        publisher.join()
        if self.errors:
            raise RuntimeError(f"{len(self.errors)} writes failed: {self.errors[:3]}")
        return (self.count - start_count) / (time.monotonic() - started)


def _serve(side: CassandraSide, prefix: str, rabbit: RabbitSide, project: str, names: str,
           in_flight: int, pipe: Pipe) -> None:
    """A generator process: runs what the pool asks, sends back what it wrote."""
    conn = connect(side)
    gen = Generator(conn.session, prefix, rabbit, project, names=names, in_flight=in_flight)
    pipe.send(("ready",))
    try:
        while True:
            try:
                item = pipe.recv()
            except EOFError:
                return
            if item[0] == "stop":
                return
            _, rate, seconds, threads, limit = item
            count, recorded = gen.count, len(gen.recorded)
            started = time.monotonic()
            try:
                gen.run(rate, seconds, threads, limit)
            except RuntimeError as exc:  # failed writes: the bench stops, saying why
                pipe.send(("failed", str(exc)))
                continue
            new = gen.recorded[recorded:]
            pipe.send(("done", gen.count - count, time.monotonic() - started,
                       {c.rid: gen.written[c.rid] for c in new}, new))
    finally:
        conn.close()


class GeneratorPool:
    """`processes` Generators in processes of their own, run together: the interface of
    Generator (run, written, recorded, count) for the bench."""

    def __init__(self, processes: int, side: CassandraSide, prefix: str, rabbit: RabbitSide,
                 project: str, in_flight: int = 64) -> None:
        """`in_flight`: writes outstanding at most in each process."""
        ctx = multiprocessing.get_context("spawn")
        self._pipes: list[Pipe] = []
        self._procs: list[Any] = []
        for index in range(processes):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, name=f"bench-generator-{index}", daemon=True,
                               args=(side, prefix, rabbit, project, f"vn{index}", in_flight,
                                     child))
            proc.start()
            child.close()
            self._pipes.append(parent)
            self._procs.append(proc)
        for pipe in self._pipes:
            if pipe.recv()[0] != "ready":
                raise RuntimeError("a generator process did not start")
        self.written: dict[str, float] = {}
        self.recorded: list[Recorded] = []
        self.count = 0

    def pids(self) -> set[int]:
        return {p.pid for p in self._procs if p.pid is not None}

    def run(self, rate: float, seconds: float, threads: int = 2,
            limit: int | None = None) -> float:
        """Each process at its share of `rate` (and of `limit`) with `threads` threads;
        returns the rate achieved by all together."""
        n = len(self._pipes)
        for index, pipe in enumerate(self._pipes):
            share = None if limit is None else limit // n + (index < limit % n)
            pipe.send(("run", rate / n, seconds, threads, share))
        done, longest = 0, 1e-6
        failures = []
        for pipe in self._pipes:
            answer = pipe.recv()
            if answer[0] == "failed":
                failures.append(answer[1])
                continue
            _, count, took, written, recorded = answer
            done += count
            longest = max(longest, took)
            self.written.update(written)
            self.recorded += recorded
        self.count += done
        if failures:
            raise RuntimeError(f"load generator: {failures}")
        return done / longest

    def close(self) -> None:
        for pipe in self._pipes:
            with contextlib.suppress(OSError):
                pipe.send(("stop",))
        for proc in self._procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
