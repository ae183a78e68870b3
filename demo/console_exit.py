"""What `make demo` runs when its console exits: take the demo world down, leaving nothing.

Unless a headless `issu daemon` still drives the upgrade on this world (the console handed
its work over when it lost its terminal, or one was started by hand): then the world stays up
so the daemon can finish, and this says so and how to stop it.

    python -m demo.console_exit --net 20
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click

from demo.world import World, WorldOptions
from issu_tui.journal import Journal, JournalError

EXIT_LEFT_BEHIND = 1


def _argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _config_of_daemon(pid: int, argv: list[str]) -> Path | None:
    """The config a `issu daemon` process runs on, as an absolute path (None: not a daemon)."""
    if "daemon" not in argv:
        return None
    at = argv.index("daemon")
    rest = argv[at + 1:]
    for i, arg in enumerate(rest):
        value = None
        if arg in ("--config", "-c") and i + 1 < len(rest):
            value = rest[i + 1]
        elif arg.startswith("--config="):
            value = arg.split("=", 1)[1]
        if value is not None:
            path = Path(value)
            if not path.is_absolute():
                try:
                    path = Path(os.readlink(f"/proc/{pid}/cwd")) / path
                except OSError:
                    return None
            return path.resolve()
    return None


def daemons_driving(world: World) -> list[int]:
    """Live `issu daemon` processes on this world: the journal's writer, and any daemon
    started on its config (one just handed over may not hold the writer lock yet)."""
    pids: set[int] = set()
    journal_path = world.dir / "state" / "journal.db"
    if journal_path.is_file():
        try:
            journal = Journal(journal_path, read_only=True)
        except JournalError:
            journal = None
        if journal is not None:
            try:
                holder = journal.executor()
            finally:
                journal.close()
            if holder and int(holder["pid"]) != os.getpid():
                pids.add(int(holder["pid"]))
    configs = {world.config_path}
    remembered = world.dir / "config-path"
    if remembered.is_file():
        configs.add(Path(remembered.read_text(encoding="utf-8").strip()).resolve())
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            pid = int(entry.name)
            if _config_of_daemon(pid, _argv(pid)) in configs:
                pids.add(pid)
    return sorted(pids)


def _what(pid: int) -> str:
    """A driver by what it runs: the headless daemon, or a console (one that lost its
    terminal and is handing over to a daemon, while `make demo`'s shell already exits)."""
    argv = _argv(pid)
    if "daemon" in argv:
        return "a headless `issu daemon`"
    if "tui" in argv or any(arg.endswith("tui_cli") for arg in argv):
        return "an `issu tui` console"
    return "the journal's writer"


def stop_daemons(world: World, say: Callable[[str], None], *,
                 timeout_s: float = 120.0) -> list[int]:
    """Stop every headless `issu daemon` driving this world (`issu demo down`: the world it
    drives goes away). SIGTERM: the daemon finishes the step in flight and leaves; the
    journal keeps the rest. Consoles are left alone. Returns the pids still alive."""
    daemons = [pid for pid in daemons_driving(world) if "daemon" in _argv(pid)]
    for pid in daemons:
        say(f"stopping the headless `issu daemon` (pid {pid}) that drives this world")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    alive = list(daemons)
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [pid for pid in alive if _alive(pid)]
    return alive


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"  # a zombie has left already


@click.command()
@click.option("--net", type=click.IntRange(1, 254), default=20, show_default=True,
              help="the demo world's network (127.<net>.x.y)")
def main(net: int) -> None:
    """Take the demo world down after the console, unless a daemon still drives it."""
    world = World(WorldOptions(net=net))
    drivers = daemons_driving(world)
    if drivers:
        pids = " ".join(str(p) for p in drivers)
        who = ", ".join(f"{_what(pid)} (pid {pid})" for pid in drivers)
        click.echo(
            f"issu demo: {who} still drives the upgrade on this demo world, so the world "
            f"stays up for it to finish.\n"
            f"  watch it:  issu tui --config {world.config_path}\n"
            f"  stop it:   kill {pids}    (it stops after the step in flight; the journal "
            f"keeps the rest)\n"
            f"  then:      make demo-down DEMO_NET={net}", err=True)
        return
    world.down(lambda message: click.echo(f"issu demo down: {message}"))
    left = world.processes()
    if left:
        click.echo(f"issu demo: still running after down: pid {' '.join(map(str, left))}",
                   err=True)
        sys.exit(EXIT_LEFT_BEHIND)


if __name__ == "__main__":
    main()
