"""The journal: committed transitions survive a killed writer; readers never block or see halves."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from issu_tui.journal import SCHEMA_VERSION, Journal, JournalError, JournalLocked, JournalReadOnly

REPO = Path(__file__).resolve().parents[1]


def _spawn(code: str, state: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), str(state)], cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


WRITER = """
import sys, time
from issu_tui.journal import Journal
j = Journal.open(sys.argv[1]); j.acquire_writer()
for i in range(100):
    j.upsert_compute(f"c{i}", f"127.0.0.{i}")
print("ready", flush=True)
n = 0
while True:
    # one transition per transaction: state, history and event move together
    j.transition_compute(f"c{n % 100}", "upgrading" if n % 2 == 0 else "upgraded",
                         detail=str(n), batch=n)
    j.mark_slice_done("pre", "config_db_uuid.obj_uuid_table", str(n), n)
    n += 1
"""


def test_killed_writer_loses_nothing_committed(tmp_path: Path) -> None:
    proc = _spawn(WRITER, tmp_path)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    journal = Journal.open(tmp_path)
    history = journal._query("SELECT COUNT(*) FROM compute_history")[0][0]
    compute_events = journal._query("SELECT COUNT(*) FROM events WHERE kind='compute'")[0][0]
    assert history > 10
    # each transition wrote its history row and its event in the same transaction
    assert history == compute_events
    # the last committed transition of each compute is its current state
    for row in journal.computes():
        last = journal.compute_history(row.name)
        if last:
            assert last[-1]["to_state"] == row.state
            assert str(row.batch) == last[-1]["detail"]
    # the dead writer's lock is released by the kernel: a new executor can take over
    journal.acquire_writer()
    assert journal.executor() is not None
    journal.close()


def test_concurrent_readers_while_writing(tmp_path: Path) -> None:
    proc = _spawn(WRITER, tmp_path)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    try:
        readers = [Journal.open(tmp_path, read_only=True) for _ in range(3)]
        seen_max = 0
        seen: set[int] = set()
        deadline = time.monotonic() + 120  # a condition, not a rate: the box may be loaded
        reads = 0
        while reads < 60 or len(seen) < 5:
            assert time.monotonic() < deadline, f"the log grew {len(seen)} times in {reads} reads"
            for reader in readers:
                events = reader.last_events(5)
                rows = reader.computes()
                assert len(rows) == 100
                if events:
                    assert events[-1].id >= seen_max  # the log only grows
                    seen_max = events[-1].id
                    seen.add(seen_max)
                reads += 1
        with pytest.raises(JournalReadOnly):
            readers[0].event("x", "readers cannot write")
    finally:
        proc.kill()
        proc.wait()


def test_one_executor_at_a_time(tmp_path: Path) -> None:
    first = Journal.open(tmp_path)
    first.acquire_writer()
    second = Journal.open(tmp_path)
    with pytest.raises(JournalLocked, match=f"pid {os.getpid()}"):
        second.acquire_writer()
    first.release_writer()
    second.acquire_writer()
    assert second.holds_writer


def test_secrets_never_reach_the_journal(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path)
    journal.scrub(["hunter2-password"])
    journal.upsert_compute("c1", "127.0.0.5")
    journal.event("ssh", "connecting with hunter2-password", secret="hunter2-password")
    journal.record_command("c1", "install", "apt-get install x", 0, 0.1,
                           "echo hunter2-password", "")
    journal.transition_compute("c1", "failed", "auth hunter2-password rejected")
    journal.close()
    raw = (tmp_path / "journal.db").read_bytes()
    wal = tmp_path / "journal.db-wal"
    if wal.exists():
        raw += wal.read_bytes()
    assert b"hunter2-password" not in raw


def test_commands_recorded_by_many_threads_at_once_are_all_there(tmp_path: Path) -> None:
    """Records waiting while one commits go in the next transaction together: each one is
    in the journal, with its own step and output, seen by a reader of the file."""
    journal = Journal.open(tmp_path)
    names = [f"c{i}" for i in range(40)]
    for name in names:
        journal.upsert_compute(name, "127.0.0.5")

    def record(name: str) -> None:
        for step in ("probe", "install", "health"):
            journal.record_command(name, step, f"run {step}", 0, 0.1, f"{name} {step}", "")

    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(record, names))
    # and one inside an outer transaction of the same thread joins it (no deadlock)
    with journal.transaction():
        journal.record_command("c0", "gap", "run gap", 0, 0.1, "c0 gap", "")
    reader = Journal(tmp_path / "journal.db", read_only=True)
    for name in names:
        assert [(r["step"], r["stdout"]) for r in reader.command_output(name)][:3] == [
            (step, f"{name} {step}") for step in ("probe", "install", "health")]
    assert reader.command_output("c0")[-1]["stdout"] == "c0 gap"
    reader.close()
    journal.close()


@pytest.mark.parametrize("secret", ['p"ss\\w0rd', "s\u00e9cret-pw", "tab\tsecret"])
def test_secrets_with_json_special_characters_are_scrubbed(tmp_path: Path, secret: str) -> None:
    journal = Journal.open(tmp_path)
    journal.scrub([secret])
    journal.event("config", "loaded", password=secret, nested={"list": [secret]})
    journal.add_intent("upgrade", {"note": secret}, by="test")
    stored = journal._query("SELECT fields FROM events UNION ALL SELECT args FROM intents")
    for (text,) in stored:
        assert secret not in json.dumps(json.loads(text), ensure_ascii=False)
        assert "********" in text


def test_phase_transitions_and_checkpoints(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path)
    journal.set_phase("plan", from_version="4.1.0", to_version="5.0.0")
    journal.set_phase("preflight")
    info = journal.phase()
    assert info is not None and info.phase == "preflight" and info.from_version == "4.1.0"
    assert [h["phase"] for h in journal.phase_history()] == ["plan", "preflight"]
    with pytest.raises(JournalError):
        journal.set_phase("teleport")
    journal.mark_slice_done("pre", "t", "0", 5)
    journal.mark_slice_done("pre", "t", "1", 5)
    assert journal.done_slices("pre", "t") == {"0", "1"}
    assert journal.checkpoint_summary() == {"pre": {"t": 2}}
    journal.reset_job("pre")
    assert journal.done_slices("pre", "t") == set()
    intent = journal.add_intent("upgrade", {"computes": ["c1"]}, by="test")
    assert [i.id for i in journal.intents()] == [intent]
    journal.finish_intent(intent, "done")
    assert journal.intents() == []


def test_schema_is_versioned_and_newer_schema_refused(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path)
    assert journal.schema_version == SCHEMA_VERSION
    journal.close()
    db = sqlite3.connect(tmp_path / "journal.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(JournalError, match="newer than this issu"):
        Journal.open(tmp_path)


def test_transaction_rolls_back_as_a_whole(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path)
    journal.upsert_compute("c1", "127.0.0.5")
    with pytest.raises(RuntimeError), journal.transaction():
        journal.transition_compute("c1", "upgrading")
        journal.event("x", "inside")
        raise RuntimeError("crash between two writes")
    row = journal.compute("c1")
    assert row is not None and row.state == "old"
    assert journal.compute_history("c1") == []
    assert [e.message for e in journal.events()] == []


def test_reader_of_a_journal_not_yet_migrated_sees_it_empty(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "journal.db").close()  # created, schema not yet committed
    reader = Journal.open(tmp_path, read_only=True)
    assert reader.done_slices("pre-sync", "t") == set()
    assert reader.computes() == [] and reader.phase() is None
    writer = Journal.open(tmp_path)
    writer.mark_slice_done("pre-sync", "t", "0", 1)
    assert reader.done_slices("pre-sync", "t") == {"0"}


def test_a_state_dir_that_cannot_hold_a_journal_is_named(tmp_path: Path) -> None:
    a_file = tmp_path / "state"
    a_file.write_text("not a directory")
    with pytest.raises(JournalError, match=f"{a_file} is a file, not a directory"):
        Journal.open(a_file)


def test_compute_changes_are_read_by_sequence(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path)
    for name in ("c1", "c2", "c3"):
        journal.upsert_compute(name, f"127.0.0.{name[1]}")
    first = journal.computes_since(0)
    assert [r.name for r in first.rows] == ["c1", "c2", "c3"]
    assert first.seq == max(r.seq for r in first.rows)
    assert len({r.seq for r in first.rows}) == 3
    assert journal.computes_since(first.seq).rows == ()  # nothing changed since

    journal.transition_compute("c2", "upgrading", "batch 1", batch=1)
    journal.upsert_compute("c3", "127.0.0.3")  # the inventory again: no change
    second = journal.computes_since(first.seq)
    assert [(r.name, r.state, r.batch) for r in second.rows] == [("c2", "upgrading", 1)]
    assert second.seq > first.seq

    with pytest.raises(RuntimeError), journal.transaction():  # rolled back: not a change
        journal.transition_compute("c1", "failed")
        raise RuntimeError("crash")
    assert journal.computes_since(second.seq).rows == ()

    # any write path is numbered, even plain SQL (the sequence is kept by triggers)
    with journal.transaction() as db:
        db.execute("UPDATE computes SET gap_ms = 12.5 WHERE name = 'c1'")
    journal.transition_compute("c3", "upgraded", version="5.0.0")
    third = journal.computes_since(second.seq)
    assert [(r.name, r.gap_ms, r.version) for r in third.rows] == \
        [("c1", 12.5, ""), ("c3", None, "5.0.0")]
    reader = Journal.open(tmp_path, read_only=True)
    assert reader.computes_since(second.seq) == third
    assert {r.name: r for r in reader.computes_since(0).rows} == \
        {r.name: r for r in journal.computes()}


def test_an_existing_journal_gets_the_sequence(tmp_path: Path) -> None:
    from issu_tui.journal import _MIGRATIONS, _statements

    db = sqlite3.connect(tmp_path / "journal.db", isolation_level=None)
    for statement in _statements(_MIGRATIONS[0]):  # a journal of the first schema
        db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    db.executemany("INSERT INTO computes (name, address, state, updated_at) VALUES (?,?,?,?)",
                   [(f"c{i}", f"127.0.0.{i}", "old", 1.0) for i in range(1, 6)])
    db.close()
    old_reader = Journal.open(tmp_path, read_only=True)  # before any newer writer opened it
    unnumbered = old_reader.computes_since(0)
    assert len(unnumbered.rows) == 5 and unnumbered.seq == 0

    journal = Journal.open(tmp_path)  # the writer migrates it
    assert journal.schema_version == SCHEMA_VERSION
    rows = journal.computes_since(0)
    assert sorted(r.name for r in rows.rows) == [f"c{i}" for i in range(1, 6)]
    assert sorted(r.seq for r in rows.rows) == [1, 2, 3, 4, 5]
    journal.transition_compute("c4", "upgrading")
    journal.upsert_compute("c6", "127.0.0.6")
    after = old_reader.computes_since(rows.seq)
    assert [(r.name, r.seq) for r in after.rows] == [("c4", 6), ("c6", 7)]


FOLLOWED = """
import sys
from issu_tui.journal import Journal
j = Journal.open(sys.argv[1]); j.acquire_writer()
for i in range(50):
    j.upsert_compute(f"c{i}", f"127.0.0.{i}")
print("ready", flush=True)
n = 0
while True:
    j.transition_compute(f"c{n * 7 % 50}", ("upgrading", "upgraded", "failed")[n % 3],
                         detail=str(n), batch=n)
    n += 1
"""


def test_a_reader_following_changes_misses_none(tmp_path: Path) -> None:
    """Polling only what changed, while a writer works, ends where the journal is."""
    proc = _spawn(FOLLOWED, tmp_path)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    try:
        reader = Journal.open(tmp_path, read_only=True)
        seen: dict[str, object] = {}
        seq = polls = 0
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline or polls < 20:
            changes = reader.computes_since(seq)
            assert changes.seq >= seq
            for row in changes.rows:
                seen[row.name] = row
            seq, polls = changes.seq, polls + 1
    finally:
        proc.kill()
        proc.wait()
    for row in reader.computes_since(seq).rows:  # what was committed after the last poll
        seen[row.name] = row
    assert seen == {r.name: r for r in reader.computes()}
    assert any(r.batch for r in reader.computes())  # the writer did change them
