"""run-sync's peers in bench/bench_runsync.py: the replay ceiling and the original tool's
approach, both applying the same Contrail-shaped changes (the load generator's virtual
networks: creates, property updates, deletes, with the parent's `children:` cell and the
fq-name index entry).

- `replay_ceiling`: the recorded stream applied straight from memory with the driver. Per
  change: re-read on old the object's partition (and, for a create or a delete, its
  fq-name index cell and its parent's `children:` cell), then write them to new as a
  replace (a partition tombstone just below the object's cells, the cells with their own
  writetimes; absent cells deleted), in one unlogged batch. `lanes` threads, each object
  always in the same one (as run-sync's lanes); no broker, no translation, no journal.
- `original` (a process of its own: `python -m bench.replay_peers original ...`): the
  original tool's way: one consumer, per message one read of the object on old, one
  synchronous write per cell on new (no batching, no concurrency), then the message
  republished on new (on `--exchange`, so a listener tells it from run-sync's) and acked.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cassandra.cluster import Cluster
from cassandra.query import BatchStatement, BatchType

UUID_TABLE, FQ_TABLE = "obj_uuid_table", "obj_fq_name_table"


@dataclass(frozen=True)
class Recorded:
    """One change of the load generator, as it wrote it to old."""

    rid: str
    oper: str  # CREATE | UPDATE | DELETE
    uuid: str
    fq_name: tuple[str, ...]
    parent: str
    ts: int  # microseconds, the writetime of the change


def fq_column(fq_name: Sequence[str], uuid: str) -> str:
    return ":".join(fq_name) + ":" + uuid


class Statements:
    """The reads on old and the writes on new, prepared once."""

    def __init__(self, old: Any, new: Any, old_ks: str, new_ks: str) -> None:
        self.old, self.new = old, new
        self.read_part = old.prepare(
            f'SELECT column1, value, WRITETIME(value) FROM "{old_ks}".{UUID_TABLE} '
            "WHERE key = ?")
        self.read_cell = {t: old.prepare(
            f'SELECT value, WRITETIME(value) FROM "{old_ks}".{t} WHERE key = ? AND column1 = ?')
            for t in (UUID_TABLE, FQ_TABLE)}
        self.insert = {t: new.prepare(
            f'INSERT INTO "{new_ks}".{t} (key, column1, value) VALUES (?, ?, ?) '
            "USING TIMESTAMP ?") for t in (UUID_TABLE, FQ_TABLE)}
        self.delete_cell = {t: new.prepare(
            f'DELETE FROM "{new_ks}".{t} USING TIMESTAMP ? WHERE key = ? AND column1 = ?')
            for t in (UUID_TABLE, FQ_TABLE)}
        self.delete_part = new.prepare(
            f'DELETE FROM "{new_ks}".{UUID_TABLE} USING TIMESTAMP ? WHERE key = ?')

    def links(self, oper: str, uuid: str, fq_name: Sequence[str], parent: str
              ) -> list[tuple[str, bytes, bytes]]:
        """(table, key, column) of the cells a create or delete touches besides the
        object's own partition."""
        if oper == "UPDATE":
            return []
        return [(UUID_TABLE, parent.encode(), f"children:virtual-network:{uuid}".encode()),
                (FQ_TABLE, b"virtual-network", fq_column(fq_name, uuid).encode())]

    def writes(self, key: bytes, rows: list[Any], ts: int,
               links: list[tuple[str, bytes, bytes]], found: list[list[Any]]
               ) -> list[tuple[Any, tuple[Any, ...]]]:
        """The replace of the object's partition and of its linked cells on new."""
        out: list[tuple[Any, tuple[Any, ...]]] = []
        if rows:
            floor = min(r[2] for r in rows) - 1
            out.append((self.delete_part, (floor, key)))
            out += [(self.insert[UUID_TABLE], (key, c, v, w)) for c, v, w in rows]
        else:
            out.append((self.delete_part, (ts, key)))
        for (table, lkey, column), cell in zip(links, found, strict=True):
            if cell:
                out.append((self.insert[table], (lkey, column, cell[0][0], cell[0][1])))
            else:
                out.append((self.delete_cell[table], (ts, lkey, column)))
        return out


def _apply_batched(st: Statements, change: Recorded) -> None:
    key = change.uuid.encode()
    links = st.links(change.oper, change.uuid, change.fq_name, change.parent)
    part = st.old.execute_async(st.read_part, (key,))
    cells = [st.old.execute_async(st.read_cell[t], (k, c)) for t, k, c in links]
    rows = list(part.result())
    found = [list(f.result()) for f in cells]
    batch = BatchStatement(batch_type=BatchType.UNLOGGED)
    for stmt, values in st.writes(key, rows, change.ts, links, found):
        batch.add(stmt, values)
    st.new.execute(batch)


@dataclass
class CeilingResult:
    changes: int
    seconds: float
    errors: list[str] = field(default_factory=list)


def replay_ceiling(st: Statements, changes: Sequence[Recorded], lanes: int) -> CeilingResult:
    """Apply `changes` from memory with `lanes` threads (each object in one lane, in order),
    flat out."""
    started = time.monotonic()
    result = _replay(st, [(0.0, change) for change in changes], lanes, started)
    return CeilingResult(len(changes), time.monotonic() - started, result.errors)


@dataclass
class PacedResult:
    lags: list[float]  # seconds from each change's due time to its write acknowledged
    errors: list[str] = field(default_factory=list)


def paced_replay(st: Statements, changes: Sequence[Recorded], lanes: int, rate: float,
                 seconds: float) -> PacedResult:
    """The replay ceiling at a rate instead of flat out: change i is due at start + i / rate
    (for `seconds`, going round `changes` again if they are fewer). Its lag is applied minus
    due: what the ceiling's approach itself lags at that rate, while the load generator
    writes beside it on the same cores."""
    count = int(rate * seconds)
    due = [(i / rate, changes[i % len(changes)]) for i in range(count)]
    return _replay(st, due, lanes, time.monotonic() + 0.05)


def _replay(st: Statements, due: list[tuple[float, Recorded]], lanes: int,
            start: float) -> PacedResult:
    """Each change applied no sooner than `start` + its offset, in `lanes` threads (each
    object in one lane, in order); lag = applied minus due."""
    per_lane: list[list[tuple[float, Recorded]]] = [[] for _ in range(lanes)]
    for item in due:
        per_lane[hash(item[1].uuid) % lanes].append(item)
    result = PacedResult([])

    def lane(items: list[tuple[float, Recorded]]) -> None:
        for offset, change in items:
            at = start + offset
            early = at - time.monotonic()
            if early > 0:
                time.sleep(early)
            try:
                _apply_batched(st, change)
            except Exception as exc:  # reported with the figure, never hidden
                result.errors.append(f"{change.oper} {change.uuid}: {type(exc).__name__}: "
                                     f"{exc}")
                continue
            result.lags.append(time.monotonic() - at)  # list.append: atomic under the GIL

    threads = [threading.Thread(target=lane, args=(items,)) for items in per_lane]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return result


def _apply_one_by_one(st: Statements, body: dict[str, Any]) -> None:
    """The original tool's per-message work: read the object, write cell by cell."""
    uuid, oper = body["uuid"], body["oper"]
    key = uuid.encode()
    obj = body.get("obj_dict") or {}
    links = st.links(oper, uuid, body.get("fq_name") or [], obj.get("parent_uuid", ""))
    rows = list(st.old.execute(st.read_part, (key,)))
    found = [list(st.old.execute(st.read_cell[t], (k, c))) for t, k, c in links]
    for stmt, values in st.writes(key, rows, int(time.time() * 1e6), links, found):
        st.new.execute(stmt, values)


def original_main(argv: list[str]) -> int:
    import kombu

    from backends.rabbit import RabbitSide, connection, object_update_exchange

    p = argparse.ArgumentParser(prog="replay_peers original")
    p.add_argument("--old", required=True, help="host:port of old Cassandra")
    p.add_argument("--new", required=True, help="host:port of new Cassandra")
    p.add_argument("--old-ks", required=True)
    p.add_argument("--new-ks", required=True)
    p.add_argument("--rabbit", required=True,
                   help="host:port (password from BENCH_RABBIT_PASSWORD)")
    p.add_argument("--user", default="guest")
    p.add_argument("--vhost-old", required=True)
    p.add_argument("--vhost-new", required=True)
    p.add_argument("--queue", required=True)
    p.add_argument("--exchange", required=True, help="republish on new on this exchange")
    args = p.parse_args(argv)

    def cluster(hostport: str) -> Any:
        host, port = hostport.rsplit(":", 1)
        return Cluster([host], port=int(port), protocol_version=4).connect()

    old, new = cluster(args.old), cluster(args.new)
    st = Statements(old, new, args.old_ks, args.new_ks)
    host, port = args.rabbit.rsplit(":", 1)
    password = os.environ.get("BENCH_RABBIT_PASSWORD", "guest")
    old_side = RabbitSide("old", (host,), int(port), args.user, password, args.vhost_old)
    new_side = RabbitSide("new", (host,), int(port), args.user, password, args.vhost_new,
                          exchange=args.exchange)
    out_conn = connection(new_side)
    out_conn.connect()
    out_ex = object_update_exchange(new_side)
    producer = kombu.Producer(out_conn.channel(), exchange=out_ex)
    out_ex(producer.channel).declare()
    in_conn = connection(old_side)
    in_conn.connect()
    queue = kombu.Queue(args.queue, object_update_exchange(old_side), durable=True,
                        auto_delete=False)

    def on_message(message: Any) -> None:
        body = json.loads(message.body)
        _apply_one_by_one(st, body)
        producer.publish(message.body)
        message.ack()

    channel = in_conn.channel()
    channel.basic_qos(0, 1, False)
    with kombu.Consumer(channel, queues=[queue], on_message=on_message):
        print("original: consuming", flush=True)
        while True:
            try:
                in_conn.drain_events(timeout=1.0)
            except TimeoutError:
                in_conn.heartbeat_check()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "original":
        sys.exit(original_main(sys.argv[2:]))
    print(__doc__)
    sys.exit(2)
