"""run-sync with several apply processes (backends/runsync/processes.py), against the real
Cassandra clusters and RabbitMQ: the changes of a churn are all applied (new equals old,
every announced change acknowledged), the processes' counters and lags reach the parent's
metrics, and an apply process killed mid-stream is replaced, its messages applied again.
"""

from __future__ import annotations

import os
import random
import signal
import threading

from tests import test_runsync
from tests.test_runsync import World, applied, start_thread, stop_thread, wait_until

world = test_runsync.world  # the fixture, reused


def _churn(world: World, n: int, seed: int) -> None:
    api, rng, live = world.api, random.Random(seed), []
    for i in range(n):
        roll = rng.random()
        if roll < 0.5 or len(live) < 5:
            live.append(api.create("virtual-network", ["default-domain", "p1", f"mp{seed}-{i}"],
                                   parent=world.project, virtual_network_network_id=i))
        elif roll < 0.85:
            api.update(rng.choice(live), display_name=f"d{i}", is_shared=bool(i % 2))
        else:
            api.delete(live.pop(rng.randrange(len(live))))


def test_two_apply_processes_replay_a_churn_exactly(world: World) -> None:
    rs = world.run_sync(processes=2)
    thread = start_thread(rs)
    try:
        assert rs._pool is not None and len(rs._pool.pids()) == 2
        writer = threading.Thread(target=_churn, args=(world, 240, 1))  # (OldApi: one writer)
        writer.start()
        writer.join(300)
        wait_until(lambda: applied(rs) >= world.api.published and rs._in_flight == 0, 180,
                   "every announced change applied")
        report = world.verify()
        assert report.ok, [(t.table, t.samples) for t in report.tables if t.samples]
        # the processes' counters and lags arrived in this process's metrics
        snapshot = rs.metrics.refresh()
        # (a message redelivered after a reconnection counts again: at least once each)
        assert snapshot["applied"] >= world.api.published
        assert snapshot["object_writes"] + snapshot["coalesced"] >= world.api.published
        assert snapshot["lag_p99_s"] == snapshot["lag_p99_s"]  # not NaN: samples arrived
        assert snapshot["cassandra_requests_asked"] >= snapshot["cassandra_requests_sent"] > 0
    finally:
        stop_thread(rs, thread)
    assert world.queue_depth() == 0
    assert rs._pool is not None and all(p.exitcode == 0 for p in rs._pool._procs)


def test_a_killed_apply_process_is_replaced_and_its_messages_applied(world: World) -> None:
    rs = world.run_sync(processes=2)
    thread = start_thread(rs)
    try:
        assert rs._pool is not None
        victim = rs._pool.pids()[0]
        writer = threading.Thread(target=_churn, args=(world, 300, 3))
        writer.start()
        wait_until(lambda: applied(rs) >= 30, 120, "some changes applied")
        os.kill(victim, signal.SIGKILL)
        writer.join(300)
        wait_until(lambda: rs._pool is not None and rs._pool.restarts == 1, 60,
                   "the apply process replaced")
        assert victim not in rs._pool.pids() and len(rs._pool.pids()) == 2
        wait_until(lambda: rs._in_flight == 0 and world.queue_depth() == 0
                   and applied(rs) >= world.api.published - 5, 180,
                   "every announced change applied after the kill")
        report = world.verify()
        assert report.ok, [(t.table, t.samples) for t in report.tables if t.samples]
        events = [m for _, m, _ in rs.events.events]  # type: ignore[union-attr]
        assert any("apply process 0 exited" in m and "a new one starts in" in m
                   for m in events), events
    finally:
        stop_thread(rs, thread)


def test_an_apply_process_that_cannot_start_is_restarted_with_growing_pauses() -> None:
    """A process that dies as it starts (here: exits while connecting) must not be
    respawned in a tight loop, and the messages sent to it go back to the queue."""
    import functools

    from backends.cassandra.tables import SyncSettings
    from backends.rabbit import RabbitSide
    from backends.runsync.options import RunSyncOptions
    from backends.runsync.processes import WorkerPool, WorkerSpec

    spec = WorkerSpec(connect=functools.partial(os._exit, 3),
                      new_rabbit=RabbitSide("new", ("127.0.0.1",), 1, "u", "p", "/"),
                      settings=SyncSettings(), options=RunSyncOptions(concurrency=2))
    done: list[tuple[int, str]] = []
    events: list[str] = []
    pool = WorkerPool(spec, 1, on_done=lambda i, g, kind, r, a: done.append((i, kind)),
                      on_deltas=lambda i, d: None, on_event=lambda m, level: events.append(m))
    try:
        pool.submit("some-uuid", 1, b'{"uuid": "some-uuid"}', False, 1)
        wait_until(lambda: len(events) >= 3, 60, "three deaths")
        assert done and done[0] == (1, "requeue"), done
        assert all("exited (code 3)" in e for e in events), events
        pauses = [float(e.rsplit("starts in ", 1)[1].rstrip("s")) for e in events[:3]]
        assert pauses == [0.5, 1.0, 2.0], events
    finally:
        pool.join(timeout=10)
