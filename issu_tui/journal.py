"""The journal: the single source of truth of an upgrade, in SQLite (WAL) in the state directory.

It holds the phase, every compute's state and history, command output, sync checkpoints,
counters and an append-only event log. Every transition is one transaction, so a process
killed at any point leaves the journal at the last committed transition. One executor at a
time holds the writer lock (an flock on `executor.lock`, released by the kernel when the
process dies); any number of readers open the database read-only.

The journal implements the backends' CheckpointStore, EventSink and CounterSink protocols.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.group_commit import GroupCommit
from issu_tui.orchestrator.phases import PHASE_NAMES

# Compute states as the executor records them.
COMPUTE_STATES = (
    "old",          # on the old cluster, untouched
    "queued",       # chosen for an upgrade or rollback, not started
    "upgrading",
    "upgraded",     # on the new cluster, healthy
    "rolling-back",
    "failed",       # the last action failed; see history
    "unknown",      # after a crash, until reconciled by a probe
)

_MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE upgrade (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        phase TEXT NOT NULL,
        phase_started_at REAL NOT NULL,
        from_version TEXT, to_version TEXT,
        note TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE phase_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL, phase TEXT NOT NULL, status TEXT NOT NULL, note TEXT NOT NULL
    );
    CREATE TABLE computes (
        name TEXT PRIMARY KEY,
        address TEXT NOT NULL,
        state TEXT NOT NULL,
        version TEXT NOT NULL DEFAULT '',
        cluster TEXT NOT NULL DEFAULT '',
        agent_state TEXT NOT NULL DEFAULT '',
        batch INTEGER,
        last_action TEXT NOT NULL DEFAULT '',
        gap_ms REAL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE compute_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL, at REAL NOT NULL,
        from_state TEXT NOT NULL, to_state TEXT NOT NULL, detail TEXT NOT NULL
    );
    CREATE INDEX compute_history_name ON compute_history(name, id);
    CREATE TABLE command_output (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        compute TEXT NOT NULL, at REAL NOT NULL, step TEXT NOT NULL, command TEXT NOT NULL,
        exit_code INTEGER, duration_s REAL, stdout TEXT NOT NULL, stderr TEXT NOT NULL
    );
    CREATE INDEX command_output_compute ON command_output(compute, id);
    CREATE TABLE checkpoints (
        job TEXT NOT NULL, table_name TEXT NOT NULL, slice_id TEXT NOT NULL,
        rows INTEGER NOT NULL, at REAL NOT NULL,
        PRIMARY KEY (job, table_name, slice_id)
    );
    CREATE TABLE counters (
        scope TEXT NOT NULL, name TEXT NOT NULL, value REAL NOT NULL, updated_at REAL NOT NULL,
        PRIMARY KEY (scope, name)
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL, kind TEXT NOT NULL, level TEXT NOT NULL,
        message TEXT NOT NULL, fields TEXT NOT NULL
    );
    CREATE TABLE intents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL, kind TEXT NOT NULL, args TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending', by TEXT NOT NULL, result TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE executor (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        pid INTEGER NOT NULL, host TEXT NOT NULL, started_at REAL NOT NULL, heartbeat REAL NOT NULL
    );
    """,
    # 2: the orchestrator's own state in a typed row, and its step markers in a table of
    # their own (both were floats in the counters table: scope 'orchestrator', the approach
    # an index into ("separate", "grow", "stay", "rolling"), and scope 'steps'); carried
    # over, then removed from the counters.
    """
    CREATE TABLE orchestrator (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        approach TEXT,
        paused INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
        runsync_pid INTEGER,
        runsync_started_at REAL
    );
    INSERT INTO orchestrator (id, approach, paused, runsync_pid, runsync_started_at)
    SELECT 1,
        (SELECT CASE CAST(value AS INTEGER) WHEN 0 THEN 'separate' WHEN 1 THEN 'grow'
                WHEN 2 THEN 'stay' WHEN 3 THEN 'rolling' END
         FROM counters WHERE scope = 'orchestrator' AND name = 'approach'),
        COALESCE((SELECT value != 0 FROM counters
                  WHERE scope = 'orchestrator' AND name = 'paused'), 0),
        (SELECT NULLIF(CAST(value AS INTEGER), 0) FROM counters
         WHERE scope = 'orchestrator' AND name = 'runsync_pid'),
        (SELECT NULLIF(value, 0) FROM counters
         WHERE scope = 'orchestrator' AND name = 'runsync_started_at');
    DELETE FROM counters WHERE scope = 'orchestrator';
    CREATE TABLE steps (
        name TEXT PRIMARY KEY,
        done_at REAL NOT NULL
    );
    INSERT INTO steps (name, done_at) SELECT name, value FROM counters WHERE scope = 'steps';
    DELETE FROM counters WHERE scope = 'steps';
    """,
    # 3: computes.seq, the change sequence: every insert or change of a compute row takes the
    # next number, in the statement that makes the change (triggers, so no write path can
    # forget it), and a reader asks for what changed since the last number it saw. Computes
    # are never deleted, so MAX(seq) only grows. Rows already there are numbered in order.
    """
    ALTER TABLE computes ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
    UPDATE computes SET seq = rowid;
    CREATE INDEX computes_seq ON computes(seq);
    CREATE TRIGGER computes_seq_insert AFTER INSERT ON computes BEGIN
        UPDATE computes SET seq = (SELECT MAX(seq) FROM computes) + 1 WHERE rowid = NEW.rowid;
    END;
    CREATE TRIGGER computes_seq_update AFTER UPDATE OF
        name, address, state, version, cluster, agent_state, batch, last_action, gap_ms,
        updated_at ON computes
    WHEN (OLD.name, OLD.address, OLD.state, OLD.version, OLD.cluster, OLD.agent_state,
          OLD.batch, OLD.last_action, OLD.gap_ms, OLD.updated_at)
        IS NOT (NEW.name, NEW.address, NEW.state, NEW.version, NEW.cluster, NEW.agent_state,
                NEW.batch, NEW.last_action, NEW.gap_ms, NEW.updated_at)
    BEGIN
        UPDATE computes SET seq = (SELECT MAX(seq) FROM computes) + 1 WHERE rowid = NEW.rowid;
    END;
    """,
)

SCHEMA_VERSION = len(_MIGRATIONS)


def _columns(db: sqlite3.Connection) -> dict[str, tuple[str, ...]]:
    """Every table's columns (SQLite's own tables aside)."""
    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                      "AND name NOT LIKE 'sqlite_%'")]
    return {name: tuple(r[1] for r in db.execute(
        "SELECT * FROM pragma_table_info(?)", (name,))) for name in names}


def _stored_fields(text: object) -> dict[str, Any]:
    """An event's fields as stored; a damaged cell (not a JSON object) reads as what it
    holds, so one bad row does not hide the others."""
    try:
        fields = json.loads(text) if isinstance(text, str | bytes) else None
    except (ValueError, RecursionError):
        fields = None
    return fields if isinstance(fields, dict) else {"unreadable": repr(text)[:200]}


@functools.cache
def _columns_at(version: int) -> dict[str, tuple[str, ...]]:
    """The tables and columns the migrations up to `version` create."""
    db = sqlite3.connect(":memory:")
    try:
        for number in range(version):
            for statement in _statements(_MIGRATIONS[number]):
                db.execute(statement)
        return _columns(db)
    finally:
        db.close()


class JournalError(Exception):
    pass


def _disk_full(directory: Path) -> str:
    """Why a journal there cannot be written if its disk is (nearly) full, else ''."""
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return ""
    if free >= 1 << 20:
        return ""
    return (f"the disk of {directory} is full ({free // 1024} KiB free): free space there, "
            "then run the command again")


class JournalLocked(JournalError):
    """Another executor holds the writer lock."""


class JournalReadOnly(JournalError):
    pass


@dataclass(frozen=True)
class Event:
    id: int
    at: float
    kind: str
    level: str
    message: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class ComputeRow:
    name: str
    address: str
    state: str
    version: str
    cluster: str
    agent_state: str
    batch: int | None
    last_action: str
    gap_ms: float | None
    updated_at: float
    seq: int = 0  # the journal's change sequence at this row's last change


@dataclass(frozen=True)
class ComputeChanges:
    """The compute rows changed after a sequence number, and the number to ask from next."""

    rows: tuple[ComputeRow, ...]
    seq: int


@dataclass(frozen=True)
class PhaseInfo:
    phase: str
    phase_started_at: float
    from_version: str | None
    to_version: str | None
    note: str


@dataclass(frozen=True)
class OrchestratorState:
    """The executor's own facts, kept across restarts."""

    approach: str | None          # None until chosen (the executor chooses at its start)
    paused: bool
    runsync_pid: int | None       # the supervised run-sync process, None when stopped
    runsync_started_at: float | None


@dataclass(frozen=True)
class Intent:
    id: int
    at: float
    kind: str
    args: dict[str, Any]
    status: str
    by: str
    result: str


# compute, at, step, command, exit_code, duration_s, stdout, stderr
_CommandRow = tuple[str, float, str, str, int | None, float, str, str]
# compute, step, command, exit_code, duration_s, stdout, stderr (record_command's arguments)
CommandRecord = tuple[str, str, str, int | None, float, str, str]


# Files an upgrade keeps in its state_dir beside the journal, that only its journal explains
# (which clients it switched, which records it removed, its reverse replication's pid). A
# new journal beside any of them is refused: the earlier upgrade's abort or revert would
# otherwise act on what this one never did.
SWITCHED_FILE = "northbound-switched.json"
REMOVED_RECORDS = "removed-old-node-records.json"
REVERSE_PID = "reverse-sync.pid"
PER_UPGRADE_FILES: tuple[str, ...] = (SWITCHED_FILE, REMOVED_RECORDS, REVERSE_PID)


def _stale_markers(state_dir: Path) -> None:
    stale = [name for name in PER_UPGRADE_FILES if (state_dir / name).exists()]
    if stale:
        raise JournalError(
            f"{state_dir}: holds {', '.join(stale)} of an earlier upgrade, and no journal of "
            "it: a new upgrade would take that upgrade's switched clients or removed records "
            "for its own (abort, revert). Use a fresh state_dir for a new upgrade, or move "
            "these files away once that upgrade is understood")


class Journal:
    """One connection to the journal; safe to share between threads of one process."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        self._lock = threading.RLock()
        self._lock_fd: int | None = None
        self._secrets: tuple[str, ...] = ()
        self._ready = False
        self._seq_ready = False
        self._closed = False
        # command records of several threads, one transaction (see record_command)
        self._commands: GroupCommit[_CommandRow, None] = GroupCommit(
            self._insert_commands, fits=lambda rows: len(rows) <= 256)
        if read_only:
            if not path.exists():
                raise JournalError(f"{path}: no journal here yet (has an upgrade been planned?)")
            uri = f"file:{path}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30)
            self._check_readable()
        else:
            if not path.exists() or path.stat().st_size == 0:
                _stale_markers(path.parent)  # a new journal: nothing of another upgrade here
            try:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                self._db = sqlite3.connect(path, check_same_thread=False, timeout=30,
                                           isolation_level=None)
            except (OSError, sqlite3.Error) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                if path.parent.exists() and not path.parent.is_dir():
                    reason = f"{path.parent} is a file, not a directory"
                raise JournalError(f"{path}: cannot create the journal: {reason} (check "
                                   "state_dir)") from None
            try:
                self._check_readable()
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._migrate()
            except sqlite3.Error as exc:
                self._db.close()
                full = _disk_full(path.parent)
                if full:  # the file is fine: its directory has no room for the WAL's files
                    raise JournalError(f"{path}: cannot be opened for writing ({exc}): "
                                       f"{full}") from None
                raise JournalError(f"{path}: not a journal issu can use: {exc}") from None
            except JournalError:
                self._db.close()
                raise
        self._db.row_factory = sqlite3.Row
        # a damaged or foreign text cell reads with U+FFFD, not as an exception in any query
        self._db.text_factory = lambda raw: raw.decode("utf-8", errors="replace")

    def _check_readable(self) -> None:
        """JournalError unless the file is an SQLite database that is empty or an issu
        journal: another program's database (or any other file) is left as it is."""
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            names = [r[0] for r in self._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")]
            tables = len(names)
            for name in names:  # each table's definition parses, its first row reads
                quoted = name.replace('"', '""')
                self._db.execute(f'SELECT * FROM "{quoted}" LIMIT 1').fetchall()
            columns = _columns(self._db)
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            self._db.close()
            full = "" if self.read_only else _disk_full(self.path.parent)
            if full:
                raise JournalError(f"{self.path}: cannot be opened for writing ({exc}): "
                                   f"{full}") from None
            raise JournalError(f"{self.path}: not a journal issu can use: {exc}") from None
        if version < 0:  # a damaged header
            self._db.close()
            raise JournalError(f"{self.path}: schema version {version} is not one issu "
                               "writes: the file is damaged")
        if version > SCHEMA_VERSION:
            self._db.close()
            raise JournalError(
                f"{self.path}: schema version {version} is newer than this issu "
                f"({SCHEMA_VERSION}); upgrade issu before using this journal")
        if (version == 0 and tables) or \
                (0 < version <= SCHEMA_VERSION and columns != _columns_at(version)):
            self._db.close()
            raise JournalError(f"{self.path}: not an issu journal (another program's database, "
                               "or a damaged one); point state_dir elsewhere")

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(cls, state_dir: Path | str, *, read_only: bool = False) -> Journal:
        return cls(Path(state_dir) / "journal.db", read_only=read_only)

    def close(self) -> None:
        # Under the lock: a console's worker thread may be in the middle of a read on this
        # connection, and closing an sqlite3 connection under a running statement crashes
        # the interpreter (a segfault, not an exception).
        with self._lock:
            self.release_writer()
            self._closed = True
            self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def scrub(self, secrets: Iterable[str]) -> None:
        """Values that must never be stored: replaced by a mask wherever text is written."""
        self._secrets = tuple(s for s in secrets if s and len(s) >= 3)

    def _clean(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "********")
        return text

    def _clean_value(self, value: object) -> object:
        if isinstance(value, str):
            return self._clean(value)
        if isinstance(value, Mapping):
            return {str(k): self._clean_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set):
            return [self._clean_value(v) for v in value]
        return value

    def _migrate(self) -> None:
        with self._lock:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            for number in range(version, SCHEMA_VERSION):
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _statements(_MIGRATIONS[number]):
                        self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version = {number + 1}")
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One committed transition; nested use joins the outer transaction."""
        if self.read_only:
            raise JournalReadOnly(f"{self.path}: opened read-only")
        with self._lock:
            if self._db.in_transaction:
                yield self._db
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            if self._closed:
                raise JournalError(f"{self.path}: the journal was closed")
            if not self._schema_ready():
                return []
            return self._db.execute(sql, args).fetchall()

    def _schema_ready(self) -> bool:
        """A reader may open the file between its creation and the writer's first migration:
        until the schema is committed, the journal reads as empty instead of failing."""
        if self._ready:
            return True
        self._ready = self._db.execute("PRAGMA user_version").fetchone()[0] > 0
        return self._ready

    # ------------------------------------------------------------------ writer lock

    def acquire_writer(self) -> None:
        """Become the one executor; raises JournalLocked naming the holder otherwise."""
        if self._lock_fd is not None:
            return
        lock_path = self.path.parent / "executor.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self.executor()
            who = f"pid {holder['pid']} on {holder['host']}" if holder else "another process"
            raise JournalLocked(
                f"{self.path}: the upgrade is driven by {who}; attach read-only or stop it"
            ) from None
        self._lock_fd = fd
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO executor (id, pid, host, started_at, heartbeat) "
                "VALUES (1, ?, ?, ?, ?)", (os.getpid(), socket.gethostname(), now, now))

    def release_writer(self) -> None:
        if self._lock_fd is None:
            return
        try:
            with self.transaction() as db:
                db.execute("DELETE FROM executor WHERE pid = ?", (os.getpid(),))
        except sqlite3.Error:
            pass
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)
        self._lock_fd = None

    @property
    def holds_writer(self) -> bool:
        return self._lock_fd is not None

    def heartbeat(self) -> None:
        with self.transaction() as db:
            db.execute("UPDATE executor SET heartbeat = ? WHERE id = 1", (time.time(),))

    def executor(self) -> dict[str, Any] | None:
        """Who drives the upgrade, if anyone is alive holding the lock."""
        rows = self._query("SELECT pid, host, started_at, heartbeat FROM executor")
        if not rows:
            return None
        row = dict(rows[0])
        if row["host"] == socket.gethostname() and not _pid_alive(row["pid"]):
            return None
        return row

    # ------------------------------------------------------------------ phase

    def phase(self) -> PhaseInfo | None:
        rows = self._query("SELECT * FROM upgrade WHERE id = 1")
        if not rows:
            return None
        r = rows[0]
        return PhaseInfo(r["phase"], r["phase_started_at"], r["from_version"],
                         r["to_version"], r["note"])

    def set_phase(self, phase: str, *, note: str = "", status: str = "entered",
                  from_version: str | None = None, to_version: str | None = None) -> None:
        if phase not in PHASE_NAMES:
            raise JournalError(f"unknown phase {phase!r}")
        now = time.time()
        with self.transaction() as db:
            current = db.execute("SELECT phase FROM upgrade WHERE id = 1").fetchone()
            if current is None:
                db.execute(
                    "INSERT INTO upgrade (id, phase, phase_started_at, from_version, "
                    "to_version, note) VALUES (1, ?, ?, ?, ?, ?)",
                    (phase, now, from_version, to_version, note))
            elif current[0] != phase:
                db.execute("UPDATE upgrade SET phase = ?, phase_started_at = ?, note = ? "
                           "WHERE id = 1", (phase, now, note))
            else:
                db.execute("UPDATE upgrade SET note = ? WHERE id = 1", (note,))
            db.execute("INSERT INTO phase_history (at, phase, status, note) VALUES (?,?,?,?)",
                       (now, phase, status, self._clean(note)))
            self._insert_event(db, "phase", "info", f"phase {phase}: {status}",
                               {"phase": phase, "status": status, "note": note})

    def phase_history(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._query("SELECT * FROM phase_history ORDER BY id")]

    # ------------------------------------------------------------------ computes

    def upsert_compute(self, name: str, address: str, *, state: str = "old",
                       version: str = "", cluster: str = "") -> None:
        """Register a compute from the inventory; keeps the recorded state if known."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO computes (name, address, state, version, cluster, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET address = "
                "excluded.address", (name, address, state, version, cluster, time.time()))

    def computes(self) -> list[ComputeRow]:
        return [ComputeRow(**dict(r)) for r in self._query("SELECT * FROM computes ORDER BY name")]

    def computes_since(self, seq: int) -> ComputeChanges:
        """The computes inserted or changed after change number `seq` (all of them for 0),
        oldest change first; pass the returned `seq` next time. One indexed read: its cost
        follows the number of changes, not the number of computes."""
        if not self._has_seq():  # a journal an older issu writes: no sequence yet
            return ComputeChanges(tuple(self.computes()), 0)
        rows = self._query("SELECT * FROM computes WHERE seq > ? ORDER BY seq", (seq,))
        changed = tuple(ComputeRow(**dict(r)) for r in rows)
        return ComputeChanges(changed, changed[-1].seq if changed else seq)

    def _has_seq(self) -> bool:
        if not self._seq_ready:
            rows = self._query("PRAGMA user_version")
            self._seq_ready = bool(rows) and rows[0][0] >= 2
        return self._seq_ready

    def compute(self, name: str) -> ComputeRow | None:
        rows = self._query("SELECT * FROM computes WHERE name = ?", (name,))
        return ComputeRow(**dict(rows[0])) if rows else None

    def transition_compute(self, name: str, to_state: str, detail: str = "",
                           **fields: Any) -> None:
        """Move a compute to a new state, with its history and an event, in one transaction."""
        if to_state not in COMPUTE_STATES:
            raise JournalError(f"unknown compute state {to_state!r}")
        allowed = {"version", "cluster", "agent_state", "batch", "last_action", "gap_ms"}
        unknown = set(fields) - allowed
        if unknown:
            raise JournalError(f"unknown compute fields {sorted(unknown)}")
        detail = self._clean(detail)
        with self.transaction() as db:
            row = db.execute("SELECT state FROM computes WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise JournalError(f"compute {name!r} is not in the journal")
            sets = ", ".join(f"{k} = ?" for k in fields)
            db.execute(
                f"UPDATE computes SET state = ?, updated_at = ?{', ' + sets if sets else ''} "
                "WHERE name = ?", (to_state, time.time(), *fields.values(), name))
            db.execute(
                "INSERT INTO compute_history (name, at, from_state, to_state, detail) "
                "VALUES (?, ?, ?, ?, ?)", (name, time.time(), row[0], to_state, detail))
            level = "error" if to_state == "failed" else "info"
            self._insert_event(db, "compute", level, f"{name}: {row[0]} -> {to_state}"
                               + (f" ({detail})" if detail else ""),
                               {"compute": name, "from": row[0], "to": to_state, **fields})

    def compute_history(self, name: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self._query(
            "SELECT * FROM compute_history WHERE name = ? ORDER BY id", (name,))]

    def record_command(self, compute: str, step: str, command: str, exit_code: int | None,
                       duration_s: float, stdout: str, stderr: str) -> None:
        """Durable when it returns. The computes' threads record a step each at about the
        same moment: the records waiting while one transaction commits go in the next one
        together (one fsync for all, not one each)."""
        row = self._command_row(compute, step, command, exit_code, duration_s, stdout, stderr)
        if self._db.in_transaction:  # (maybe this thread's own: joined, not queued)
            self._insert_commands([row])
        else:
            self._commands.call(row)

    def record_commands(self, records: Sequence[CommandRecord]) -> None:
        """Several command outputs in one transaction; durable when it returns."""
        self._insert_commands([self._command_row(*record) for record in records])

    def _command_row(self, compute: str, step: str, command: str, exit_code: int | None,
                     duration_s: float, stdout: str, stderr: str) -> _CommandRow:
        limit = 64 * 1024  # keep the tail: that is where errors are
        return (compute, time.time(), step, self._clean(command), exit_code, duration_s,
                self._clean(stdout[-limit:]), self._clean(stderr[-limit:]))

    def _insert_commands(self, rows: list[_CommandRow]) -> list[None]:
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO command_output (compute, at, step, command, exit_code, duration_s,"
                " stdout, stderr) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return [None] * len(rows)

    def command_output(self, compute: str, limit: int = 50) -> list[dict[str, Any]]:
        rows = self._query("SELECT * FROM command_output WHERE compute = ? ORDER BY id DESC "
                           "LIMIT ?", (compute, limit))
        return [dict(r) for r in reversed(rows)]

    # ------------------------------------------------------------------ checkpoints

    def done_slices(self, job: str, table: str) -> set[str]:
        return {r[0] for r in self._query(
            "SELECT slice_id FROM checkpoints WHERE job = ? AND table_name = ?", (job, table))}

    def mark_slice_done(self, job: str, table: str, slice_id: str, rows: int) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?, ?)",
                       (job, table, slice_id, rows, time.time()))

    def reset_job(self, job: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM checkpoints WHERE job = ?", (job,))

    def checkpoint_summary(self) -> dict[str, dict[str, int]]:
        """job -> table -> finished slices."""
        summary: dict[str, dict[str, int]] = {}
        for r in self._query("SELECT job, table_name, COUNT(*) AS n FROM checkpoints "
                             "GROUP BY job, table_name"):
            summary.setdefault(r["job"], {})[r["table_name"]] = r["n"]
        return summary

    def checkpoint_progress(self) -> list[tuple[str, str, int, int, int]]:
        """(job, table, slices done, slices in all, cells copied) of every copy job's table,
        from its checkpoints; a slice id is `<slices in all>:<index>`."""
        progress = []
        for r in self._query(
                "SELECT job, table_name, COUNT(*) AS n, SUM(rows) AS cells, "
                "MAX(CAST(substr(slice_id, 1, instr(slice_id, ':') - 1) AS INTEGER)) AS total "
                "FROM checkpoints WHERE table_name != '*' GROUP BY job, table_name "
                "ORDER BY job, table_name"):
            progress.append((r["job"], r["table_name"], int(r["n"]), int(r["total"] or 0),
                             int(r["cells"] or 0)))
        return progress

    def recent_slices(self, window_s: float) -> list[tuple[str, str, str, int, float]]:
        """(job, table, slice id, cells, at) of the slices each copy job finished in the
        `window_s` before its newest one, oldest first, and the jobs' completion marks."""
        rows = self._query(
            "SELECT c.job, c.table_name, c.slice_id, c.rows, c.at FROM checkpoints c "
            "JOIN (SELECT job, MAX(at) AS newest FROM checkpoints GROUP BY job) n "
            "ON c.job = n.job WHERE c.at >= n.newest - ? ORDER BY c.at", (window_s,))
        return [(r["job"], r["table_name"], r["slice_id"], int(r["rows"]), float(r["at"]))
                for r in rows]

    # ------------------------------------------------------------------ counters

    def set_counters(self, scope: str, values: Mapping[str, float]) -> None:
        now = time.time()
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO counters VALUES (?, ?, ?, ?)",
                           [(scope, k, float(v), now) for k, v in values.items()])

    def counters(self, scope: str) -> dict[str, float]:
        return {r["name"]: r["value"] for r in self._query(
            "SELECT name, value FROM counters WHERE scope = ?", (scope,))}

    def counters_updated_at(self, scope: str) -> float | None:
        rows = self._query("SELECT MAX(updated_at) FROM counters WHERE scope = ?", (scope,))
        return rows[0][0] if rows else None

    # ------------------------------------------------------------------ orchestrator state
    # The executor's own facts and its step markers (what is done, so a re-run skips it).

    def orchestrator_state(self) -> OrchestratorState:
        if self.read_only and 0 < self.schema_version < 2:
            return self._orchestrator_state_v1()
        rows = self._query("SELECT approach, paused, runsync_pid, runsync_started_at "
                           "FROM orchestrator WHERE id = 1")
        if not rows:
            return OrchestratorState(None, False, None, None)
        r = rows[0]
        return OrchestratorState(r["approach"], bool(r["paused"]), r["runsync_pid"],
                                 r["runsync_started_at"])

    def _orchestrator_state_v1(self) -> OrchestratorState:
        """A reader of a journal no writer has migrated yet: the counters form of schema 1."""
        old = self.counters("orchestrator")
        approaches = ("separate", "grow", "stay", "rolling")  # schema 1 stored the index
        index = int(old["approach"]) if "approach" in old else None
        return OrchestratorState(
            approaches[index] if index is not None and 0 <= index < len(approaches) else None,
            bool(old.get("paused")), int(old.get("runsync_pid", 0)) or None,
            old.get("runsync_started_at") or None)

    def steps_done(self) -> dict[str, float]:
        """Step markers ("phase.<phase>", "finalize.<step>") -> when each was done."""
        if self.read_only and 0 < self.schema_version < 2:
            return self.counters("steps")  # schema 1 kept them as counters
        return {r["name"]: r["done_at"] for r in self._query("SELECT name, done_at FROM steps")}

    def step_done(self, name: str) -> bool:
        return name in self.steps_done()

    def mark_step(self, name: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO steps (name, done_at) VALUES (?, ?)",
                       (name, time.time()))

    def clear_steps(self, prefix: str) -> None:
        """Forget every marker whose name starts with `prefix` (abort: "finalize.")."""
        with self.transaction() as db:
            db.execute("DELETE FROM steps WHERE substr(name, 1, ?) = ?", (len(prefix), prefix))

    def set_approach(self, approach: str) -> None:
        self._update_orchestrator("approach = ?", (approach,))

    def set_paused(self, paused: bool) -> None:
        self._update_orchestrator("paused = ?", (int(paused),))

    def set_runsync_process(self, pid: int | None, started_at: float | None = None) -> None:
        """The run-sync process the executor supervises (None: stopped). The start time is
        kept when the pid is cleared: reports are compared with the last start."""
        if pid is None:
            self._update_orchestrator("runsync_pid = NULL", ())
        else:
            self._update_orchestrator("runsync_pid = ?, runsync_started_at = ?",
                                      (pid, started_at))

    def _update_orchestrator(self, assignments: str, args: Sequence[Any]) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO orchestrator (id) VALUES (1)")
            db.execute(f"UPDATE orchestrator SET {assignments} WHERE id = 1", tuple(args))

    # ------------------------------------------------------------------ events

    def event(self, kind: str, message: str, **fields: Any) -> int:
        level = str(fields.pop("level", "info"))
        with self.transaction() as db:
            return self._insert_event(db, kind, level, message, fields)

    def _insert_event(self, db: sqlite3.Connection, kind: str, level: str, message: str,
                      fields: Mapping[str, Any]) -> int:
        # Scrub each value before encoding: JSON escaping would hide a secret holding `"`,
        # `\\` or non-ASCII characters from a scrub of the encoded text.
        payload = json.dumps(self._clean_value(fields), default=str, sort_keys=True)
        cur = db.execute(
            "INSERT INTO events (at, kind, level, message, fields) VALUES (?, ?, ?, ?, ?)",
            (time.time(), kind, level, self._clean(message), payload))
        return int(cur.lastrowid or 0)

    def events(self, *, after_id: int = 0, limit: int = 1000, kind: str | None = None,
               text: str | None = None) -> list[Event]:
        sql = "SELECT * FROM events WHERE id > ?"
        args: list[Any] = [after_id]
        if kind:
            sql += " AND kind = ?"
            args.append(kind)
        if text:
            sql += " AND message LIKE ?"
            args.append(f"%{text}%")
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        return [Event(r["id"], r["at"], r["kind"], r["level"], r["message"],
                      _stored_fields(r["fields"])) for r in self._query(sql, args)]

    def last_event(self, kind: str, *, since: float = 0.0) -> Event | None:
        """The newest event of `kind` at or after `since` (newest first: a short walk back
        while that kind is being written)."""
        rows = self._query("SELECT * FROM events WHERE kind = ? AND at >= ? "
                           "ORDER BY id DESC LIMIT 1", (kind, since))
        return Event(rows[0]["id"], rows[0]["at"], rows[0]["kind"], rows[0]["level"],
                     rows[0]["message"], _stored_fields(rows[0]["fields"])) if rows else None

    def last_events(self, count: int) -> list[Event]:
        rows = self._query("SELECT * FROM events ORDER BY id DESC LIMIT ?", (count,))
        return [Event(r["id"], r["at"], r["kind"], r["level"], r["message"],
                      _stored_fields(r["fields"])) for r in reversed(rows)]

    # ------------------------------------------------------------------ intents

    def add_intent(self, kind: str, args: Mapping[str, Any], by: str) -> int:
        """A request for the executor (from the TUI or CLI); the executor picks it up."""
        with self.transaction() as db:
            cur = db.execute("INSERT INTO intents (at, kind, args, by) VALUES (?, ?, ?, ?)",
                             (time.time(), kind, json.dumps(self._clean_value(dict(args))),
                              by))
            self._insert_event(db, "intent", "info", f"{by} asked: {kind}",
                               {"intent": kind, **args})
            return int(cur.lastrowid or 0)

    def intents(self, status: str | None = "pending") -> list[Intent]:
        sql, args = "SELECT * FROM intents", tuple[str, ...]()
        if status:
            sql, args = sql + " WHERE status = ?", (status,)
        return [Intent(r["id"], r["at"], r["kind"], json.loads(r["args"]), r["status"],
                       r["by"], r["result"]) for r in self._query(sql + " ORDER BY id", args)]

    def last_intents(self, kind: str, limit: int = 20) -> list[Intent]:
        """The newest `limit` intents of one kind, oldest first."""
        rows = self._query("SELECT * FROM intents WHERE kind = ? ORDER BY id DESC LIMIT ?",
                           (kind, limit))
        return [Intent(r["id"], r["at"], r["kind"], json.loads(r["args"]), r["status"],
                       r["by"], r["result"]) for r in reversed(rows)]

    def finish_intent(self, intent_id: int, status: str, result: str = "") -> None:
        with self.transaction() as db:
            db.execute("UPDATE intents SET status = ?, result = ? WHERE id = ?",
                       (status, self._clean(result), intent_id))


def _statements(script: str) -> Iterator[str]:
    """The SQL statements of a migration script, a trigger body (`BEGIN ...; END`) whole."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.replace(";", "").strip():
                yield pending
            pending = ""
    if pending.replace(";", "").strip():
        raise JournalError(f"incomplete SQL statement in a migration: {pending.strip()[:60]}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
