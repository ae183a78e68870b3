"""run-sync's catch-up copy resumes only what failed: a slice that failed is copied at the next
start, the slices checkpointed in the journal are not copied again.

Real Cassandra (old and new), RabbitMQ and the journal (sqlite, reopened between the two
starts like a restarted process). The failure is injected into the copy of one token slice
of `obj_uuid_table` (the copy function raises for that slice on the first start).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

import backends.cassandra.copy as copy_module
from backends.cassandra.registry import load_registry
from backends.cassandra.tables import SyncSettings, TableContext, token_slices
from backends.runsync.options import RunSyncOptions
from backends.runsync.service import (
    CATCH_UP_DONE,
    CATCH_UP_JOB,
    STATE_JOB,
    STATE_TABLE,
    ReplayService,
)
from issu_tui.journal import Journal
from tests import contrail_data as cd
from tests import test_runsync
from tests.test_runsync import World, wait_until

world = test_runsync.world  # the fixture, reused

SLICES = 8
UUID_TABLE_ID = "config_db_uuid.obj_uuid_table"


def _run_sync(w: World, journal: Journal) -> ReplayService:
    # No reconciliation pass after the catch-up: it would remove the cell the test plants on
    # new (rightly: old does not have it) if it ran before the test stops run-sync.
    opts = RunSyncOptions(queue_name=w.queue, old_version="4.1.0", new_version="5.0.0",
                          metrics_listen=None, reconcile_interval_s=3600.0, concurrency=2,
                          counters_interval_s=0.5, backoff_initial_s=60.0, backoff_max_s=60.0,
                          # no pass after the catch-up: it would repair the marked object
                          # (a cell only new has) before the test stops run-sync
                          reconcile_after_catch_up=False)
    # small_table_cells=0: this small table is still copied in SLICES token slices
    settings = SyncSettings(slices_per_table=SLICES, concurrency=4, small_table_cells=0)
    return ReplayService(old_rabbit=w.old_rabbit, new_rabbit=w.new_rabbit,
                         connect_cassandra=w.connect_both, registry=load_registry(),
                         settings=settings, options=opts, checkpoints=journal, events=journal,
                         counters=journal)


def test_catch_up_resumes_only_the_failed_slice(world: World, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    api = world.api
    vns = [api.create("virtual-network", ["default-domain", "p1", f"vn{i}"],
                      parent=world.project, announce=False) for i in range(40)]
    # The token of each object's partition on old, to know which slice holds it.
    old, _ = world.connect_both()
    world.conns.append(old)
    ks = cd.ks_name(world.old_prefix, "config_db_uuid")
    token = {cd.TableIO(old.session, world.old_prefix, cd.UUID_TABLE).dec(k): t
             for k, t in old.session.execute(
                 f'SELECT DISTINCT key, token(key) FROM "{ks}".obj_uuid_table')}
    slices = token_slices(SLICES)

    def slice_of(uid: str) -> str:
        return next(sid for sid, lo, hi in slices if lo < token[uid] <= hi)

    failing = slice_of(vns[0])
    failing_range = next((lo, hi) for sid, lo, hi in slices if sid == failing)
    in_failing = [u for u in vns if slice_of(u) == failing]
    elsewhere = [u for u in vns if slice_of(u) != failing]
    assert in_failing and elsewhere

    calls: list[tuple[str, int, int]] = []
    armed = threading.Event()
    armed.set()
    original = copy_module.copy_slice

    def copy_slice(ctx: TableContext, lo: int, hi: int, **kw):  # type: ignore[no-untyped-def]
        calls.append((ctx.spec.name, lo, hi))
        if armed.is_set() and ctx.spec.name == "obj_uuid_table" and (lo, hi) == failing_range:
            raise ConnectionError("injected: the slice's read failed")
        return original(ctx, lo, hi, **kw)

    monkeypatch.setattr(copy_module, "copy_slice", copy_slice)

    # First start: the catch-up copies every slice but one, then waits to resume it.
    journal = Journal(tmp_path / "journal.db")
    rs = _run_sync(world, journal)
    thread = threading.Thread(target=rs.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: any("catch-up copy incomplete" in e.message
                               for e in journal.events(kind="run-sync")), 120,
                   "the catch-up reported the failed slice")
    finally:
        rs.stop.set()
        thread.join(timeout=120)
    assert not thread.is_alive()
    assert not rs.ready.is_set()  # it never consumed: the catch-up was not complete
    done = journal.done_slices(CATCH_UP_JOB, UUID_TABLE_ID)
    assert done == {sid for sid, _, _ in slices} - {failing}
    assert CATCH_UP_DONE not in journal.done_slices(STATE_JOB, STATE_TABLE)
    journal.close()
    new_uuid = world.new_table(cd.UUID_TABLE)
    for uid in in_failing:
        assert new_uuid.read_partition(uid) == {}, uid
    for uid in elsewhere:
        assert json.loads(new_uuid.read_partition(uid)["type"][0]) == "virtual_network"

    # A cell only new has, in an object of a checkpointed slice: a copy of that slice again
    # would delete it (replace, not merge); resuming must leave it alone.
    marked = elsewhere[0]
    new_uuid.write(marked, {"prop:marker": json.dumps("left alone")}, writetime=1)

    # Second start (the journal reopened): only the failed slice is copied.
    armed.clear()
    calls.clear()
    journal = Journal(tmp_path / "journal.db")
    try:
        rs = _run_sync(world, journal)
        thread = threading.Thread(target=rs.run, daemon=True)
        thread.start()
        try:
            wait_until(rs.ready.is_set, 180, "run-sync consuming after the catch-up")
        finally:
            rs.stop.set()
            thread.join(timeout=120)
        assert not thread.is_alive()
        assert calls == [("obj_uuid_table", *failing_range)]
        assert journal.done_slices(CATCH_UP_JOB, UUID_TABLE_ID) == {sid for sid, _, _ in slices}
        assert CATCH_UP_DONE in journal.done_slices(STATE_JOB, STATE_TABLE)
    finally:
        journal.close()
    for uid in vns:
        assert json.loads(new_uuid.read_partition(uid)["type"][0]) == "virtual_network", uid
    assert json.loads(new_uuid.read_partition(marked)["prop:marker"][0]) == "left alone"

    # Without the marker, new is old's exact translation.
    new_uuid.delete(marked, ["prop:marker"], writetime=2)
    report = world.verify()
    assert report.ok, report.totals()
