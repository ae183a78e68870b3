"""The core API the screens use: reads from a real journal, actions only as intents."""

from __future__ import annotations

import os

import pytest

from issu_tui.console_api import ActionRefused
from tests.tui.tui_world import NOW, T0, make_backend


def test_snapshot_reads_phase_sync_and_computes(world) -> None:
    journal, config = world
    snap = make_backend(journal, config).snapshot()
    assert snap.phase.phase == "computes"
    assert snap.phase.in_phase_s == NOW - (T0 + 3 * 3600)
    assert [s.status for s in snap.phase.steps] == \
        ["done"] * 5 + ["current", "pending", "pending"]
    assert snap.phase.allowed == {"upgrade", "rollback", "abort", "pause", "verify"}
    assert snap.phase.next_action == "n: upgrade the 9 left on old"
    assert snap.sync.lag_s == 0.42 and snap.sync.lag_p99_s == 1.9
    assert snap.sync.quarantined == 4  # run-sync 2 + pre-sync 2
    assert [(t.table, t.copied) for t in snap.sync.tables][:1] == [("obj_fq_name_table", 48213)]
    assert snap.sync.verify_differences == 0
    assert len(snap.computes) == 12
    assert {c.state for c in snap.computes} == {"upgraded", "failed", "old"}


def test_events_are_incremental_and_filterable(world) -> None:
    journal, config = world
    backend = make_backend(journal, config)
    first = backend.snapshot()
    journal.event("compute", "cmp-09: probe failed", level="error")
    later = backend.snapshot(events_after=first.events[-1].id)
    assert [e.message for e in later.events] == ["cmp-09: probe failed"]
    assert [e.message for e in backend.events(level="error")][-1] == "cmp-09: probe failed"
    assert all(e.kind == "compute" for e in backend.events(kind="compute"))


def test_upgrade_refuses_ineligible_and_writes_one_intent(world) -> None:
    journal, config = world
    backend = make_backend(journal, config)
    with pytest.raises(ActionRefused, match="cmp-01 is upgraded"):
        backend.upgrade(["cmp-01", "cmp-05"], batch_size=2, parallel=1)
    assert journal.intents(None) == []
    check = backend.eligibility("rollback", ["cmp-01", "cmp-04", "cmp-05"])
    assert check.eligible == ("cmp-01", "cmp-04") and check.skipped == (("cmp-05", "is old"),)
    intent = backend.rollback(["cmp-01"], batch_size=1, parallel=1)
    assert [(i.id, i.kind, i.by) for i in journal.intents()] == [(intent, "rollback", "tui:test")]
    with pytest.raises(ActionRefused, match="already has a pending action"):
        backend.rollback(["cmp-01"], batch_size=1, parallel=1)


def test_finalize_only_when_every_compute_is_upgraded(world) -> None:
    journal, config = world
    backend = make_backend(journal, config)
    with pytest.raises(ActionRefused, match="finalize is not allowed"):
        backend.finalize()
    for row in journal.computes():
        journal.transition_compute(row.name, "upgraded", "test")
    assert "finalize" in backend.snapshot().phase.allowed
    with pytest.raises(ActionRefused, match="needs a reason"):
        backend.finalize(force=True)
    backend.finalize(force=True, reason="verify differences are known test data")
    assert journal.intents()[0].args == {"force": True,
                                         "reason": "verify differences are known test data"}


def test_close_way_back_offered_in_done_while_the_reverse_replication_runs(world) -> None:
    from issu_tui.orchestrator import phases

    journal, config = world
    backend = make_backend(journal, config)
    journal.set_phase("done", status="done", note="the new cluster serves")
    assert "close-way-back" not in backend.snapshot().phase.allowed  # no reverse: closed
    with pytest.raises(ActionRefused, match="close-way-back is not allowed"):
        backend.close_way_back()
    journal.mark_step(phases.REVERSE_STARTED)
    snap = backend.snapshot()
    assert snap.phase.allowed == {"close-way-back", "revert"}
    assert "the way back is open" in snap.phase.next_action and "W closes it" in \
        snap.phase.next_action and "B goes back" in snap.phase.next_action
    backend.close_way_back()
    assert journal.intents()[0].kind == "close-way-back"
    assert "close-way-back" not in backend.snapshot().phase.allowed  # one asked already


def test_pause_resume_and_read_only(world) -> None:
    journal, config = world
    backend = make_backend(journal, config)
    backend.pause()
    snap = backend.snapshot()
    assert snap.phase.paused and "resume" in snap.phase.allowed
    assert "pause" not in snap.phase.allowed
    watcher = make_backend(journal, config, read_only=True)
    assert watcher.snapshot().phase.allowed == frozenset()
    for call in (watcher.resume, watcher.pause, watcher.abort, watcher.finalize):
        with pytest.raises(ActionRefused, match="read-only"):
            call()
    with pytest.raises(ActionRefused, match="read-only"):
        watcher.upgrade(["cmp-05"], batch_size=1, parallel=1)
    assert [i.kind for i in journal.intents(None)] == ["pause"]


def test_running_work_only_when_this_console_owns_the_executor(world) -> None:
    journal, config = world
    journal.transition_compute("cmp-05", "upgrading", "batch 2")
    assert make_backend(journal, config, owns=True).running_work() == ["cmp-05 is upgrading"]
    assert make_backend(journal, config, owns=False).running_work() == []


def test_open_attaches_read_only_or_queues_for_the_daemon(world) -> None:
    from issu_tui.console_api import ConsoleBackend

    journal, config = world
    journal.acquire_writer()  # `issu daemon` drives
    watcher = ConsoleBackend.open(config, with_analytics=False)
    operator = ConsoleBackend.open(config, attach=True, with_analytics=False)
    try:
        assert watcher.read_only and not watcher.options.owns_executor
        assert f"pid {os.getpid()}" in watcher.options.read_only_reason
        assert not operator.read_only and not operator.options.owns_executor
        assert operator.snapshot().phase.executor.startswith(f"pid {os.getpid()} on ")
        operator.upgrade(["cmp-05"], batch_size=1, parallel=1)
        assert [i.kind for i in journal.intents()] == ["upgrade"]
    finally:
        watcher.close()
        operator.close()
    journal.release_writer()
    driver = ConsoleBackend.open(config, with_analytics=False)
    try:
        assert driver.options.owns_executor and not driver.read_only
    finally:
        driver.close()


def test_snapshots_carry_only_the_computes_changed_since_the_last(world) -> None:
    journal, config = world
    backend = make_backend(journal, config)
    first = backend.snapshot()
    assert len(first.computes) == 12 and first.compute_seq > 0
    quiet = backend.snapshot(computes_since=first.compute_seq)
    assert quiet.computes == () and quiet.compute_seq == first.compute_seq
    assert quiet.phase.next_action == "n: upgrade the 9 left on old"

    journal.transition_compute("cmp-05", "queued", "intent #1", batch=2)
    journal.transition_compute("cmp-06", "upgraded", "test", version="5.0.0", cluster="new")
    moved = backend.snapshot(computes_since=quiet.compute_seq)
    assert [(c.name, c.state) for c in moved.computes] == \
        [("cmp-05", "queued"), ("cmp-06", "upgraded")]
    # the phase view still speaks for the whole fleet
    assert moved.phase.running == "1 queued"
    assert moved.phase.next_action == "wait: 1 compute moving"

    for row in journal.computes():
        if row.state != "upgraded":
            journal.transition_compute(row.name, "upgraded", "test")
    done = backend.snapshot(computes_since=moved.compute_seq)
    assert len(done.computes) == 8  # 3 + cmp-06 were upgraded already
    assert "finalize" in done.phase.allowed and "upgrade" not in done.phase.allowed
    # a caller that starts over (another screen, a test) still gets every compute
    assert len(backend.snapshot().computes) == 12
    assert "finalize" in backend.snapshot(computes_since=1).phase.allowed


def test_next_step_runs_the_phases_in_order_then_names_the_computes(tmp_path) -> None:
    from tests.tui.tui_world import build_journal, config_for

    journal = build_journal(tmp_path, computes=4, phase="plan", upgraded=0, failed=0)
    backend = make_backend(journal, config_for(tmp_path))
    try:
        step = backend.next_step()
        assert (step.action, step.target) == ("phase", "preflight")
        assert "Touches:" in step.detail and backend.snapshot().phase.next_action.startswith(
            "n: run preflight")
        with pytest.raises(ActionRefused, match="pair is not the next phase"):
            backend.run_phase("pair")
        first = backend.run_phase("preflight")
        # the intent is open: `n` waits, and a second phase cannot be asked for
        assert backend.next_step().says == f"wait: preflight is queued (intent #{first})"
        with pytest.raises(ActionRefused, match="phase is not allowed"):
            backend.run_phase("preflight")
        journal.finish_intent(first, "done")
        for name in ("preflight", "pair", "pre-sync"):  # what the executor leaves behind
            journal.set_phase(name, status="done")
            journal.mark_step(f"phase.{name}")
            assert backend.next_step().target != name
        assert backend.next_step().target == "run-sync"
        journal.set_phase("run-sync", status="failed")  # a failed phase is run again
        assert backend.next_step().says.startswith("n: run run-sync again")
        journal.mark_step("phase.run-sync")
        step = backend.next_step()
        assert step.action == "upgrade" and step.computes == (
            "cmp-1", "cmp-2", "cmp-3", "cmp-4")
        assert "verify" in backend.snapshot().phase.allowed
        verify = backend.verify()
        assert journal.intents()[-1].kind == "verify"
        with pytest.raises(ActionRefused, match="verify is not allowed"):
            backend.verify()  # one at a time
        journal.finish_intent(verify, "done")
        for row in journal.computes():
            journal.transition_compute(row.name, "upgraded", "test")
        assert backend.next_step().action == "finalize"
        watcher = make_backend(journal, config_for(tmp_path), read_only=True)
        for call in (watcher.verify, lambda: watcher.run_phase("finalize")):
            with pytest.raises(ActionRefused, match="read-only"):
                call()
    finally:
        journal.close()


def test_sync_tables_come_from_the_copy_checkpoints_and_the_last_verify(tmp_path) -> None:
    from issu_tui.journal import Journal
    from tests.tui.tui_world import config_for

    journal = Journal.open(tmp_path)
    try:
        journal.set_phase("pre-sync")
        for slice_id, cells in (("4:0", 100), ("4:2", 50)):
            journal.mark_slice_done("pre-sync", "config_db_uuid.obj_uuid_table", slice_id,
                                    cells)
        journal.mark_slice_done("pre-sync", "*", "__complete__", 0)  # not a table
        journal.mark_slice_done("post-sync", "config_db_uuid.obj_uuid_table", "1:0", 7)
        journal.set_counters("verify.tables", {"config_db_uuid.obj_uuid_table.old": 157,
                                               "config_db_uuid.obj_uuid_table.new": 155})
        view = make_backend(journal, config_for(tmp_path)).sync_view()
        assert [(t.scope, t.table, t.copied, t.slices_done, t.slices_total, t.verify_old,
                 t.verify_new) for t in view.tables] == [
            ("postsync", "obj_uuid_table", 7, 1, 1, 157, 155),
            ("presync", "obj_uuid_table", 150, 2, 4, 157, 155)]
    finally:
        journal.close()


def test_running_names_what_the_executor_runs_and_the_finalize_step(world) -> None:
    """The phase pane's `running:` line: the intent the executor runs (for finalize, the step
    it is at, from the step's own event), then how many wait behind it."""
    journal, config = world
    backend = make_backend(journal, config)
    journal.set_phase("finalize")
    finalize = journal.add_intent("finalize", {}, "tui:test")
    journal.add_intent("verify", {}, "tui:test")
    assert backend.snapshot().phase.running.endswith("2 intents queued")
    journal.finish_intent(finalize, "running")
    assert backend.snapshot().phase.running.endswith(f"finalize #{finalize}, 1 intent queued")
    journal.event("finalize", "fence-old: running", step="fence-old")
    journal.event("finalize", "post-sync: running", step="post-sync")
    journal.event("sync", "post-sync: started (run 1)")
    assert f"finalize post-sync #{finalize}" in backend.snapshot().phase.running


def test_a_poll_reads_the_step_markers_once(world, monkeypatch) -> None:
    """The phase view asks for the markers in five places (the next phase, the ring steps,
    the way back, run-sync's state...): one journal read per poll serves them all, and an
    action's check reads them afresh."""
    journal, config = world
    backend = make_backend(journal, config)
    reads = []
    real = journal.steps_done
    monkeypatch.setattr(journal, "steps_done", lambda: reads.append(1) or real())
    backend.snapshot()
    assert len(reads) == 1
    backend.next_step()
    assert len(reads) == 2
    backend.journal.mark_step("finalize.stop-run-sync")  # read fresh by the next look
    assert backend.snapshot().phase.allowed == backend.snapshot().phase.allowed
    assert len(reads) == 4
