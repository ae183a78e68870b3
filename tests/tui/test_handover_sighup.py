"""A console that loses its terminal with computes queued hands every one of them to a
headless `issu daemon`, which finishes them; the journal says who ran what.

The console runs as `issu tui` in a pseudo-terminal on a 4-compute demo world at run-sync
(brought there from the command line), upgrades every compute by keys (`n`, then Yes in the
dialog; batches of 1, one at a time), and gets SIGHUP while one compute upgrades and the
others wait in the queue.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from demo.services import Endpoints
from issu_tui.journal import Journal
from tests.orch_world import REPO, fresh_world, issu_json, stop_world

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

COMPUTES = 4
V2 = "5.0.0"


@pytest.fixture(scope="module")
def world(services: Endpoints) -> Iterator[Any]:
    w = fresh_world(services, computes=COMPUTES, install_s=3.0, seed_projects=1,
                    batch={"size": 1, "parallel": 1, "canary": 1})
    yield w
    stop_world(w)


class Console:
    """`issu tui` in a pseudo-terminal; what it draws is read (and kept) all along."""

    def __init__(self, config: str) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "30"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from issu_tui.cli import main; main()", "tui",
             "--config", config],
            stdin=slave, stdout=slave, stderr=slave, cwd=REPO, env=env,
            start_new_session=True)
        os.close(slave)
        self.master = master
        self.output = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.output += chunk

    def press(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def shows(self, text: str) -> bool:
        return text.encode() in self.output

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        with contextlib.suppress(OSError):
            os.close(self.master)


def until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"not reached within {timeout_s}s: {what}")


def read(journal_path: Any, fn: Callable[[Journal], Any]) -> Any:
    journal = Journal(journal_path, read_only=True)
    try:
        return fn(journal)
    finally:
        journal.close()


def test_sighup_hands_queued_computes_to_the_daemon(world: Any) -> None:
    assert issu_json(world, "plan")["to"] == V2
    assert issu_json(world, "phase", "run-sync", timeout=900)["ok"]
    journal_path = world.dir / "state" / "journal.db"
    console = Console(str(world.config_path))
    daemon_pid = None
    try:
        until(lambda: read(journal_path, lambda j: (j.executor() or {}).get("pid"))
              == console.proc.pid, 120, "the console drives (writer lock)")
        until(lambda: console.shows("Next"), 60, "the console's first screen")
        # n: the upgrade dialog with every compute left on old; Yes (batches of 1)
        for _attempt in range(5):
            console.press("n")
            with contextlib.suppress(AssertionError):
                until(lambda: console.shows("Yes, upgrade"), 20, "the upgrade dialog")
                console.press("\t")
                console.press("\r")
                until(lambda: read(journal_path, lambda j: [
                    i for i in j.intents(None) if i.kind == "upgrade"]), 20, "upgrade intent")
                break
            console.press("\x1b")
        intent = until(lambda: read(journal_path, lambda j: [
            i for i in j.intents(None) if i.kind == "upgrade"]), 5, "upgrade intent")[0]
        assert intent.by.startswith("tui:")

        def states() -> dict[str, str]:
            return read(journal_path, lambda j: {c.name: c.state for c in j.computes()})

        until(lambda: list(states().values()).count("queued") >= 2
              and "upgrading" in states().values(), 180,
              "one compute upgrading, others queued")
        os.kill(console.proc.pid, signal.SIGHUP)
        assert console.proc.wait(120) == 129

        # the daemon takes over and finishes every compute
        daemon_pid = until(lambda: read(journal_path, lambda j: (j.executor() or {}).get(
            "pid")) not in (None, console.proc.pid) and read(
                journal_path, lambda j: j.executor()["pid"]), 120, "a daemon drives")
        final = until(lambda: (s := states()) and set(s.values()) == {"upgraded"} and s,
                      600, "every compute upgraded")
        assert len(final) == COMPUTES
        rows = read(journal_path, lambda j: j.computes())
        assert {(r.version, r.cluster) for r in rows} == {(V2, "new")}
        said = read(journal_path, lambda j: [e.message for e in j.events(limit=100_000)])
        assert any("console lost its terminal" in m and "go to a headless `issu daemon`" in m
                   for m in said), said[-30:]
        ran = [m for m in said if m.startswith(f"intent #{intent.id} upgrade")]
        assert any(f"run by pid {console.proc.pid} " in m for m in ran), ran
        assert any(f"run by pid {daemon_pid} " in m for m in ran), ran
        after = read(journal_path, lambda j: [i for i in j.intents(None) if i.id == intent.id])
        assert after[0].status == "done", after
    finally:
        console.close()
        if daemon_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(daemon_pid, signal.SIGTERM)
            with contextlib.suppress(AssertionError):
                until(lambda: not os.path.exists(f"/proc/{daemon_pid}"), 120, "daemon gone")
