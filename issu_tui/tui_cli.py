"""`issu tui`: the operator console, in the terminal or (with --web) in a browser.

The console takes the journal's writer lock and runs the executor inside itself when nobody
else does; when another process (`issu daemon`, another console) holds the lock, it attaches
read-only and says who drives. `--read-only` always watches without acting.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click

from issu_tui.config import IssuConfig
from issu_tui.console_api import ConsoleBackend
from issu_tui.journal import Journal, JournalError

if TYPE_CHECKING:
    from issu_tui.orchestrator.executor import Executor

EXIT_CONFIG = 2


class EmbeddedOrchestrator:
    """The orchestrator's executor in a thread of this console (it holds the writer lock)."""

    def __init__(self, config: IssuConfig, config_path: Path, journal: Journal) -> None:
        self.config = config
        self.config_path = config_path
        self.journal = journal
        self._thread: threading.Thread | None = None
        self._executor: Executor | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="issu-executor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from issu_tui.orchestrator.context import Context
        from issu_tui.orchestrator.executor import Executor

        context = Context(config=self.config, config_path=self.config_path,
                          journal=self.journal)
        executor = Executor(context)
        self._executor = executor
        try:
            executor.start()  # reconciles first (probes unsettled computes)
            if not self._stopping.is_set():
                executor.serve()
        except Exception as exc:  # shown in the event log; the console keeps running
            self.journal.event("executor", f"embedded executor stopped: {exc}", level="error")

    def stop(self) -> None:
        self._stopping.set()
        executor = self._executor
        if executor is not None:
            executor.shutdown.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


def start_headless_daemon(config_path: Path, state_dir: Path) -> int:
    """`issu daemon` in its own session (it survives the SSH connection), logging to
    `<state_dir>/daemon.log`; it takes the writer lock, reconciles and resumes the work."""
    log = open(state_dir / "daemon.log", "ab")  # noqa: SIM115 (handed to the child)
    with log:
        child = subprocess.Popen(
            [sys.executable, "-c", "from issu_tui.cli import main; main()", "daemon",
             "--config", str(config_path.resolve())],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            close_fds=True)
    return child.pid


def _open(config_path: Path, read_only: bool,
          attach: bool) -> tuple[IssuConfig, ConsoleBackend]:
    from issu_tui.cli_common import load_or_exit

    config = load_or_exit(config_path)
    try:
        backend = ConsoleBackend.open(config, read_only=read_only, attach=attach,
                                      config_path=str(config_path))
    except JournalError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)
    if backend.read_only and not read_only:
        backend.options.read_only_reason = driven_elsewhere(backend, config_path)
    return config, backend


def driven_elsewhere(backend: ConsoleBackend, config_path: Path) -> str:
    """Why this console only watches, and the two ways out (`--attach`, or stop the driver)."""
    holder = backend.journal.executor()
    who = f"pid {holder['pid']} on {holder['host']}" if holder else "another process"
    attach = shlex.join(["issu", "tui", "--attach", "--config", str(config_path)])
    return (f"the upgrade is driven by {who}, so this console only watches; to act through "
            f"it run `{attach}` (actions are queued for it), or stop it first")


def run_console(config_path: Path, *, read_only: bool = False, attach: bool = False,
                refresh_interval: float = 2.0, greeting: str | None = None) -> int:
    """Run the console in this terminal; returns its exit code. `greeting`: told in a
    notification once the console is up."""
    from issu_tui.app import IssuApp

    config, backend = _open(config_path, read_only, attach)
    embedded = None
    if backend.options.owns_executor:
        embedded = EmbeddedOrchestrator(config, config_path.resolve(), backend.journal)
    app = IssuApp(backend, refresh_interval=refresh_interval,
                  watch_terminal=sys.stdin.isatty(), executor=embedded, greeting=greeting)
    try:
        app.run()
    finally:
        backend.close()  # releases the writer lock, so the daemon below can take it
    code = app.return_code
    if app.handover:
        start_headless_daemon(config_path, config.state_dir)
    if backend.read_only and backend.options.read_only_reason and not read_only:
        click.echo(f"attached read-only: {backend.options.read_only_reason}", err=True)
    return int(code or 0)


def run_rehearsal(report: Path) -> int:
    """Show a rehearsal's report read-only; exit 2 when the file is not one."""
    from issu_tui.rehearsal_view import RehearsalFileError, load_rehearsal

    try:
        view = load_rehearsal(report)
    except RehearsalFileError as exc:
        click.echo(f"issu tui: {exc}", err=True)
        return EXIT_CONFIG
    if "TEXTUAL_DRIVER" not in os.environ and not sys.stdout.isatty():
        raise click.UsageError("the console needs a terminal")
    from issu_tui.app import RehearsalApp

    RehearsalApp(view).run()
    return 0


def _serve_web(config_path: Path, host: str, port: int, read_only: bool,
               attach: bool) -> None:
    from textual_serve.server import Server

    from issu_tui.cli_common import load_or_exit

    # Each tab's console loads the config when it starts: a bad one would show a blank page
    # in the browser and the reason only in this server's log.
    load_or_exit(config_path)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise click.BadParameter(f"{host}: not an IP address", param_hint="--host") from None
    if not address.is_loopback:
        raise click.BadParameter(f"{host}: the web console listens on loopback only "
                                 "(put an authenticating proxy or an SSH tunnel in front)",
                                 param_hint="--host")
    # taken now, the server would fail later with a traceback
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise click.UsageError(f"{host}:{port}: cannot listen: {exc.strerror}") from None
    # Every browser tab runs its own console process. A tab never runs the executor (closing
    # it would stop the upgrade): it watches, or with --attach queues actions for the daemon.
    argv = [sys.executable, "-m", "issu_tui.tui_cli", "--config", str(config_path.resolve())]
    argv.append("--attach" if attach and not read_only else "--read-only")
    Server(shlex.join(argv), host=host, port=port, title="issu").serve()


@click.command("tui")
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path),
              default=Path("issu.toml"), show_default=True, envvar="ISSU_CONFIG",
              help="issu.toml, or the original issu.conf")
@click.option("--read-only", is_flag=True,
              help="watch only: every action is refused (automatic when another process "
                   "drives the upgrade)")
@click.option("--web", is_flag=True, help="serve the console to a browser (textual-serve)")
@click.option("--host", default="127.0.0.1", show_default=True, help="--web: listen address")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535),
              help="--web: port")
@click.option("--attach", is_flag=True,
              help="queue actions for the executor running elsewhere (`issu daemon`) "
                   "instead of becoming the executor")
@click.option("--rehearsal", "rehearsal", type=click.Path(path_type=Path, dir_okay=False),
              metavar="REPORT.json",
              help="show a rehearsal's report (`issu rehearse --report BASE` wrote BASE.json) "
                   "like an upgrade, read-only; needs no configuration")
def tui(config_path: Path, read_only: bool, web: bool, host: str, port: int,
        attach: bool, rehearsal: Path | None) -> None:
    """The operator console: phase, sync, analytics of both clusters, computes, events.

    Leaving it never stops an upgrade: when it runs the executor it refuses to quit while
    work is in flight and says how to hand over to `issu daemon`.
    """
    if rehearsal is not None:
        if web or attach:
            raise click.UsageError("--rehearsal shows a report in this terminal: not with "
                                   "--web or --attach")
        sys.exit(run_rehearsal(rehearsal))
    if web:
        _serve_web(config_path, host, port, read_only, attach)
        return
    # textual-serve runs each browser session with its web driver, not a terminal
    if "TEXTUAL_DRIVER" not in os.environ and not sys.stdout.isatty():
        raise click.UsageError("the console needs a terminal (or use --web)")
    sys.exit(run_console(config_path, read_only=read_only, attach=attach))


if __name__ == "__main__":
    tui()
