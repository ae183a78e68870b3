"""Child process groups recorded in pid files, robust against pid reuse and zombies."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcRef:
    """A process identified by pid plus kernel start time (pids get reused)."""

    pid: int
    start_ticks: int

    def state(self) -> str | None:
        """Kernel state letter, or None if this exact process no longer exists."""
        stat = _read_stat(self.pid)
        if stat is None or stat[2] != self.start_ticks:
            return None
        return stat[0]

    def alive(self) -> bool:
        state = self.state()
        if state is None:
            return False
        return state not in ("Z", "X") or _threads_running(self.pid)


def start_ticks(pid: int) -> int | None:
    """The kernel start time of `pid` (with the pid, names that one process), None if gone."""
    stat = _read_stat(pid)
    return None if stat is None else stat[2]


def _read_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, starttime) of ``pid`` from /proc, None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[19])


def proc_ref(pid: int) -> ProcRef:
    stat = _read_stat(pid)
    if stat is None:
        raise ProcessLookupError(pid)
    return ProcRef(pid, stat[2])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time consumed so far by ``pid`` (all its threads)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    fields = raw[raw.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (0 if unknown)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def descendants(roots: Sequence[int]) -> set[int]:
    """Every live process below ``roots`` (children may have left the process group)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _read_stat(int(entry.name))
        if stat is not None:
            children.setdefault(stat[1], []).append(int(entry.name))
    found: set[int] = set()
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


@dataclass(frozen=True)
class Group:
    """What a pid file records: the process group and the processes started in it."""

    pgid: int
    procs: tuple[ProcRef, ...]

    def to_json(self) -> str:
        return json.dumps(
            {"pgid": self.pgid, "procs": [[p.pid, p.start_ticks] for p in self.procs]}
        )

    @classmethod
    def from_json(cls, text: str) -> Group:
        data = json.loads(text)
        return cls(int(data["pgid"]), tuple(ProcRef(int(a), int(b)) for a, b in data["procs"]))

    def all_alive(self) -> bool:
        return all(p.alive() for p in self.procs)

    def any_alive(self) -> bool:
        return any(p.alive() for p in self.procs)

    def members(self) -> set[int]:
        """Live pids of the group plus every descendant of its recorded processes."""
        live = [p.pid for p in self.procs if p.alive()]
        if not live:
            # With none of ours left the group id may have been reused: do not scan it.
            return set()
        pids = set(live) | descendants(live)
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    if os.getpgid(int(entry.name)) == self.pgid:
                        pids.add(int(entry.name))
        return {pid for pid in pids if _alive_pid(pid)}


def _alive_pid(pid: int) -> bool:
    stat = _read_stat(pid)
    return stat is not None and (stat[0] not in ("Z", "X") or _threads_running(pid))


def _threads_running(pid: int) -> bool:
    """A zombie thread-group leader may still have threads exiting (and holding sockets)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return False
    for task in tasks:
        try:
            raw = (task / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if raw[raw.rfind(")") + 2 :].split()[0] not in ("Z", "X"):
            return True
    return False


def read_pidfile(path: Path) -> Group | None:
    try:
        return Group.from_json(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        # A torn or foreign pid file: treat as no record (its processes, if any, are unknown).
        return None


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: Path
    # Start the next command only once this one listens here (e.g. epmd before the broker).
    listens_before_next: tuple[str, int] | None = None
    # Linux timer slack for the process and every thread it makes (0: inherit ours). See
    # timer_slack below.
    timer_slack_ns: int = 0


_PR_SET_TIMERSLACK, _PR_GET_TIMERSLACK = 29, 30


@contextlib.contextmanager
def timer_slack(ns: int) -> Iterator[None]:
    """This thread's timer slack set to `ns` for the block (0: unchanged). A child forked
    meanwhile inherits it, keeps it across exec, and hands it to each thread it creates. A
    longer slack lets the kernel merge the short timed sleeps of a server's spin-then-park
    worker pools (Cassandra's shared executor parks its spare workers for 10 us - 1 ms at a
    time), which on a small shared box otherwise cost a third of a core per server while
    nearly idle."""
    if not ns:
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    before = libc.prctl(_PR_GET_TIMERSLACK, 0, 0, 0, 0)
    if before < 0 or libc.prctl(_PR_SET_TIMERSLACK, ns, 0, 0, 0) != 0:
        yield  # not Linux, or refused: the server just runs with the default slack
        return
    try:
        yield
    finally:
        libc.prctl(_PR_SET_TIMERSLACK, before, 0, 0, 0)


def spawn_group(
    commands: Sequence[Command], log_path: Path
) -> tuple[Group, list[subprocess.Popen[bytes]]]:
    """Start ``commands`` in one new process group (the first one leads it)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    popens: list[subprocess.Popen[bytes]] = []
    pgid = 0
    with open(log_path, "ab") as log:
        for cmd in commands:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} exec {cmd.argv[0]}\n".encode())
            log.flush()
            with timer_slack(cmd.timer_slack_ns):
                popen = subprocess.Popen(
                    list(cmd.argv),
                    env=dict(cmd.env),
                    cwd=cmd.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    process_group=pgid,  # 0: lead a new group; else join the leader's
                    close_fds=True,
                )
            if not pgid:
                pgid = popen.pid
            popens.append(popen)
            if cmd.listens_before_next is not None:
                _await_listener(popen, cmd.listens_before_next)
    return Group(pgid, tuple(proc_ref(p.pid) for p in popens)), popens


def _await_listener(popen: subprocess.Popen[bytes], where: tuple[str, int]) -> None:
    deadline = time.monotonic() + 15
    while popen.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(where, timeout=0.5):
            return
        time.sleep(0.05)
    # Exited or never listened: the next command starts anyway and the readiness check
    # reports the failure with the log tail.


def terminate_group(
    group: Group, timeout: float, reap: Sequence[subprocess.Popen[bytes]] = ()
) -> bool:
    """SIGTERM the group (and strays), SIGKILL after ``timeout``. True if all ended in time."""
    targets = group.members()
    if not targets:
        return True
    _signal_all(group.pgid, targets, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(reap)
        targets = {pid for pid in targets if _alive_pid(pid)} | group.members()
        if not targets:
            return True
        time.sleep(0.1)
    _signal_all(group.pgid if group.any_alive() else 0, targets | group.members(), signal.SIGKILL)
    end = time.monotonic() + 10
    while time.monotonic() < end and any(_alive_pid(p) for p in targets):
        _reap(reap)
        time.sleep(0.05)
    _reap(reap)
    return False


def _signal_all(pgid: int, pids: set[int], sig: signal.Signals) -> None:
    if pgid > 1:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _reap(popens: Sequence[subprocess.Popen[bytes]]) -> None:
    for popen in popens:
        popen.poll()
