"""The faults a trial injects, each a function of the running trial.

A fault returns a note of what it hit, or raises Skip with the reason when it cannot apply at
that moment (e.g. run-sync is not running before its phase). Faults that last (a stall, a full
disk, a compute whose installs fail) hold for their duration and undo themselves in `finally`.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from demo.compute.layout import load_world, save_world
from demo.services.procs import descendants, read_pidfile

if TYPE_CHECKING:
    from bench.chaos.trial import Trial


class Skip(Exception):
    """The fault cannot apply now (what it targets does not run)."""


@dataclass(frozen=True)
class Fault:
    kind: str
    what: str
    inject: Callable[[Trial, random.Random], str]


def _kill(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    os.kill(pid, sig)


def runsync_pid(trial: Trial) -> int:
    pid = trial.journal_state().runsync_pid
    if not pid or not Path(f"/proc/{pid}").exists():
        raise Skip("run-sync is not running")
    return pid


def kill_runsync(trial: Trial, rng: random.Random) -> str:
    pid = runsync_pid(trial)
    _kill(pid)
    return f"pid {pid}"


def kill_apply(trial: Trial, rng: random.Random) -> str:
    children = sorted(descendants([runsync_pid(trial)]))
    if not children:
        raise Skip("run-sync has no apply process")
    pid = rng.choice(children)
    _kill(pid)
    return f"apply pid {pid}"


def kill_daemon(trial: Trial, rng: random.Random) -> str:
    pid = trial.daemon.pid()
    if pid is None:
        raise Skip("the daemon is not running (being restarted)")
    _kill(pid)
    return f"pid {pid}"


def kill_console(trial: Trial, rng: random.Random) -> str:
    pid = trial.driver.current_pid()
    if pid is None:
        raise Skip("no command is running")
    _kill(pid)
    return f"`issu {trial.driver.current_step}` pid {pid}"


def _restart(name: str) -> Callable[[Trial, random.Random], str]:
    def restart(trial: Trial, rng: random.Random) -> str:
        trial.launcher.restart(name)
        return name
    restart.__name__ = f"restart_{name}"
    return restart


def _stall(trial: Trial, rng: random.Random, pids: list[int], what: str) -> str:
    seconds = rng.uniform(5, 30)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    try:
        trial.sleep(seconds)
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    return f"{what} stopped {seconds:.0f}s"


def stall_runsync(trial: Trial, rng: random.Random) -> str:
    pid = runsync_pid(trial)
    return _stall(trial, rng, [pid, *descendants([pid])], f"run-sync pid {pid}")


def stall_cassandra_new(trial: Trial, rng: random.Random) -> str:
    group = read_pidfile(trial.launcher.service("cassandra-new").pidfile)
    if group is None or not group.any_alive():
        raise Skip("new Cassandra is not running")
    return _stall(trial, rng, sorted(group.members()), "new Cassandra")


def cut_ssh(trial: Trial, rng: random.Random) -> str:
    """Kill the per-connection sshd processes (the compute commands' sessions)."""
    sessions: list[int] = []
    for name in trial.launcher.names():
        if not name.startswith("sshd"):
            continue
        group = read_pidfile(trial.launcher.service(name).pidfile)
        if group is not None:
            masters = {p.pid for p in group.procs}
            sessions += [pid for pid in descendants(list(masters)) if _is_sshd(pid)]
    if not sessions:
        raise Skip("no SSH session open")
    for pid in sessions:
        with contextlib.suppress(ProcessLookupError):
            _kill(pid)
    return f"{len(sessions)} sshd session process(es)"


def _is_sshd(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "sshd"
    except OSError:
        return False


def fail_install(trial: Trial, rng: random.Random) -> str:
    """One compute's package installs fail (dpkg error) for 20-40 s."""
    computes = trial.world.dir / "computes"
    settings = load_world(computes)
    host = rng.choice(sorted(settings.hosts))
    seconds = rng.uniform(20, 40)
    settings.failures[host] = 1.0
    save_world(computes, settings)
    try:
        trial.sleep(seconds)
    finally:
        settings = load_world(computes)
        settings.failures.pop(host, None)
        save_world(computes, settings)
    return f"{host} for {seconds:.0f}s"


def fill_state_disk(trial: Trial, rng: random.Random) -> str:
    """The state directory's (small, tmpfs) disk full for 3-10 s."""
    if not trial.state_disk_mounted:
        raise Skip(trial.state_disk_reason or "the state directory is not on its own disk")
    seconds = rng.uniform(3, 10)
    filler = trial.state_dir / "chaos-filler"
    try:
        with open(filler, "ab", buffering=0) as fh, contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * (1 << 20))
        trial.sleep(seconds)
    finally:
        with contextlib.suppress(OSError):
            filler.unlink()
    return f"full for {seconds:.0f}s"


FAULTS: tuple[Fault, ...] = (
    Fault("kill-run-sync", "SIGKILL of run-sync's main process", kill_runsync),
    Fault("kill-apply", "SIGKILL of one run-sync apply process", kill_apply),
    Fault("kill-daemon", "SIGKILL of the executor (issu daemon)", kill_daemon),
    Fault("kill-console", "SIGKILL of the command that drives (issu <step>)", kill_console),
    Fault("restart-rabbitmq", "restart of RabbitMQ", _restart("rabbitmq")),
    Fault("restart-cassandra-old", "restart of old Cassandra", _restart("cassandra-old")),
    Fault("restart-cassandra-new", "restart of new Cassandra", _restart("cassandra-new")),
    Fault("restart-zk-old", "restart of old ZooKeeper", _restart("zk-old")),
    Fault("restart-zk-new", "restart of new ZooKeeper", _restart("zk-new")),
    Fault("stall-run-sync", "SIGSTOP of run-sync 5-30 s, then SIGCONT", stall_runsync),
    Fault("stall-cassandra-new", "SIGSTOP of new Cassandra 5-30 s, then SIGCONT",
          stall_cassandra_new),
    Fault("cut-ssh", "SSH sessions cut (sshd session processes killed)", cut_ssh),
    Fault("fail-install", "a compute's package install fails for 20-40 s", fail_install),
    Fault("disk-full", "the state directory's disk full for 3-10 s", fill_state_disk),
)
BY_KIND = {f.kind: f for f in FAULTS}
# the faults whose target is run-sync: drawn before it runs, they wait for it
RUN_SYNC_FAULTS = frozenset({"kill-run-sync", "kill-apply", "stall-run-sync"})
