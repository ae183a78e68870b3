"""The sync programs, run as child processes of the executor.

pre-sync, post-sync, zk-sync and verify run to completion (their progress is checkpointed
in the journal, so a re-run continues). run-sync is a long-lived process in its own session:
it outlives the executor (a crash of the executor must not stop the replication) and the
next executor adopts it by the pid recorded in the journal. On a real deployment it can run
under systemd instead (`issu sync run -c ...` as the unit's ExecStart; see docs/runbook.md).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from issu_tui.journal import REVERSE_PID, JournalError
from issu_tui.orchestrator.context import Context, OrchestratorError, StepInterrupted

# The `issu` sub-commands of the sync workers (issu_tui/sync_cli.py, issu_tui/runsync_cli.py).
SYNC_COMMANDS: dict[str, list[str]] = {
    "pre-sync": ["sync", "pre"],
    "post-sync": ["sync", "post"],
    "verify": ["sync", "verify"],
    "zk-sync": ["sync", "zk"],
    "run-sync": ["sync", "run"],
}
OUTPUT_TAIL = 4000


def issu_argv() -> list[str]:
    """How to run `issu` the same way this process was installed."""
    beside = Path(sys.executable).parent / "issu"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("issu")
    if found:
        return [found]
    return [sys.executable, "-c", "from issu_tui.cli import main; main()"]


# run-sync's counters scope: "runsync" in docs/architecture.md, "run-sync" as written by
# backends/runsync; the newest of the two is read.
RUNSYNC_SCOPES = ("runsync", "run-sync")


@dataclass(frozen=True)
class SyncRun:
    step: str
    exit_code: int
    output: str      # the tail of stdout and stderr
    duration_s: float
    stdout: str = ""  # whole stdout (the --json report)


class CounterReader(Protocol):
    """What runsync_counters reads of a journal (a read-only one will do)."""

    def counters(self, scope: str) -> dict[str, float]: ...

    def counters_updated_at(self, scope: str) -> float | None: ...


def runsync_counters(journal: CounterReader) -> tuple[dict[str, float], float]:
    """run-sync's latest counters and when they were written (0 when never)."""
    best: tuple[dict[str, float], float] = ({}, 0.0)
    for scope in RUNSYNC_SCOPES:
        updated = journal.counters_updated_at(scope) or 0.0
        if updated > best[1]:
            best = (journal.counters(scope), updated)
    return best


def _env(ctx: Context) -> dict[str, str]:
    env = dict(os.environ)
    env.update(ctx.child_env)
    return env


def run_step(ctx: Context, step: str, extra: list[str] | None = None,
             timeout_s: float | None = None) -> SyncRun:
    """Run one sync program to completion; its output tail goes into the journal."""
    argv = [*issu_argv(), *SYNC_COMMANDS[step], "-c", str(ctx.config_path), *(extra or [])]
    ctx.event("sync", f"{step}: started", step=step)
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env(ctx), start_new_session=True, text=True)
    try:
        while True:
            try:
                output, errors = proc.communicate(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if ctx.stop.is_set() or (timeout_s and time.monotonic() - started > timeout_s):
                    _terminate_group(proc.pid)
                    proc.communicate()
                    raise StepInterrupted(f"{step}: stopped") from None
    except BaseException:
        if proc.poll() is None:
            _terminate_group(proc.pid)
        raise
    duration = time.monotonic() - started
    tail = ((output or "") + (errors or ""))[-OUTPUT_TAIL:]
    level = "info" if proc.returncode == 0 else "error"
    ctx.event("sync", f"{step}: exit {proc.returncode} after {duration:.1f}s", step=step,
              exit_code=proc.returncode, output=tail, level=level)
    return SyncRun(step, proc.returncode, tail, duration, output or "")


def _terminate_group(pid: int, grace_s: float = 10.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state == "Z":
        with contextlib.suppress(ChildProcessError):  # our own child: reap it
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [p.decode(errors="replace") for p in fh.read().split(b"\0") if p]
    except OSError:
        return []


class RunSyncSupervisor:
    """Starts, adopts, watches and stops this upgrade's run-sync process (`issu sync run`);
    the process itself is backends.runsync's service. Its pid is in the journal."""

    name = "run-sync"
    extra_args: tuple[str, ...] = ()

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.ctx.config.state_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        return self.ctx.journal.orchestrator_state().runsync_pid

    def started_at(self) -> float:
        return self.ctx.journal.orchestrator_state().runsync_started_at or 0.0

    def _record(self, pid: int | None, started_at: float | None = None) -> None:
        self.ctx.journal.set_runsync_process(pid, started_at)

    def running(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        if self._proc is not None and self._proc.pid == pid:
            return self._proc.poll() is None
        if not _alive(pid):
            return False
        # The pid may have been reused by something else after a reboot.
        cmdline = _cmdline(pid)
        return "run" in cmdline and any("sync" in part for part in cmdline)

    def start(self) -> bool:
        """Start run-sync unless it is already running (adopted); True when started now."""
        if self.running():
            return False
        argv = [*issu_argv(), *SYNC_COMMANDS["run-sync"], "-c", str(self.ctx.config_path),
                *self.extra_args]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=_env(self.ctx),
                                          start_new_session=True)
        try:
            self._record(self._proc.pid, time.time())
        except BaseException as exc:
            # A process whose pid is not in the journal would be found by no later executor
            # (an orphan replicating beside the next one started): stop it before failing.
            _terminate_group(self._proc.pid, grace_s=10.0)
            self._proc.wait()
            self._proc = None
            if isinstance(exc, sqlite3.Error | OSError | JournalError):
                raise OrchestratorError(
                    f"{self.name} not started: its pid could not be recorded in the journal "
                    f"{self.ctx.journal.path} ({exc}); is the state directory full?") from exc
            raise
        self.ctx.event("sync", f"{self.name}: started (pid {self._proc.pid}, log "
                               f"{self.log_path})", step=self.name, pid=self._proc.pid)
        return True

    def stop(self) -> bool:
        """Stop run-sync (SIGTERM to its session, SIGKILL after a grace); True if it ran."""
        pid = self.pid()
        was_running = self.running()
        if pid is not None and was_running:
            _terminate_group(pid, grace_s=30.0)
            if self._proc is not None and self._proc.pid == pid:
                self._proc.wait()
        self._record(None)
        if was_running:
            self.ctx.event("sync", f"{self.name}: stopped (pid {pid})", step=self.name)
        return was_running

    def last_output(self) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(max(0, self.log_path.stat().st_size - OUTPUT_TAIL))
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def wait_reporting(self, timeout_s: float = 120.0) -> dict[str, float]:
        """Wait until run-sync writes counters after its start (it caught up and consumes)."""
        started = self.started_at()
        deadline = time.monotonic() + timeout_s
        while True:
            counters, updated = runsync_counters(self.ctx.journal)
            if updated >= started and updated > 0:
                return counters
            if not self.running():
                raise OrchestratorError(
                    f"{self.name} exited before reporting; last output:\n{self.last_output()}")
            if time.monotonic() >= deadline:
                raise OrchestratorError(
                    f"{self.name} wrote no counters within {timeout_s:.0f}s; see {self.log_path}")
            self.ctx.check_stop(f"{self.name} start")
            time.sleep(0.3)

    def wait_drained(self, timeout_s: float = 120.0, settle_s: float = 2.0, *,
                     steady: bool = True) -> dict[str, float]:
        """Wait until run-sync is quiet: two reports written after `settle_s` from now (a
        write in flight when the old api-server was fenced still lands and is published),
        both with an empty queue and the same number of applied changes. Not `steady`
        (its source still takes writes): one report after `settle_s` with an empty queue
        (everything published until then is applied)."""
        since = time.time() + settle_s
        deadline = time.monotonic() + timeout_s
        previous: tuple[float, float] | None = None  # (report time, applied)
        while True:
            counters, updated = runsync_counters(self.ctx.journal)
            if updated >= since and counters.get("queue_depth", 0) == 0:
                if not steady:
                    return counters
                applied = counters.get("applied", 0.0)
                if previous is not None and updated > previous[0] and applied == previous[1]:
                    return counters
                if previous is None or updated > previous[0]:
                    previous = (updated, applied)
            elif updated >= since:
                previous = None
            if not self.running():
                raise OrchestratorError(f"{self.name} is not running, cannot drain; last "
                                        f"output:\n{self.last_output()}")
            if time.monotonic() >= deadline:
                raise OrchestratorError(
                    f"{self.name} did not drain within {timeout_s:.0f}s "
                    f"(queue depth {counters.get('queue_depth')}, lag {counters.get('lag_s')}s)")
            self.ctx.check_stop(f"{self.name} drain")
            time.sleep(0.3)


class ReverseSyncSupervisor(RunSyncSupervisor):
    """The reverse replication new -> old after finalize (`issu sync run --reverse`), for
    `issu revert`. It runs only once run-sync is stopped for good, so it shares run-sync's
    lock and counters; its pid and start time are kept in `reverse-sync.pid` of the state
    directory (the journal's run-sync pid stays run-sync's)."""

    name = "reverse-sync"
    extra_args = ("--reverse",)

    @property
    def _pid_path(self) -> Path:
        return self.ctx.config.state_dir / REVERSE_PID

    def _read(self) -> tuple[int | None, float]:
        try:
            pid, started = self._pid_path.read_text().split()
            return int(pid), float(started)
        except (OSError, ValueError):
            return None, 0.0

    def pid(self) -> int | None:
        return self._read()[0]

    def started_at(self) -> float:
        return self._read()[1]

    def _record(self, pid: int | None, started_at: float | None = None) -> None:
        if pid is None:
            self._pid_path.unlink(missing_ok=True)
            return
        tmp = self._pid_path.with_suffix(".tmp")
        tmp.write_text(f"{pid} {started_at or time.time()}\n")
        os.replace(tmp, self._pid_path)
