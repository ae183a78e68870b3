"""Submitting an intent from the command line: add it to the journal, drive it with an
executor here unless one runs already (the daemon, a console), stream its events, print its
result and exit with its code. Shared by the orchestrator's commands (orch_cli) and
`issu ring run` (ring_cli).
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from issu_tui.journal import Journal, JournalError, JournalLocked

if TYPE_CHECKING:
    from issu_tui.config import IssuConfig
    from issu_tui.journal import Intent
    from issu_tui.orchestrator.context import Context

EXIT_OK, EXIT_PROBLEM, EXIT_CONFIG, EXIT_LOCKED, EXIT_TIMEOUT = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130


def _load(config_path: Path) -> IssuConfig:
    from issu_tui.cli_common import load_or_exit

    return load_or_exit(config_path)


def _context(config_path: Path, *, read_only: bool = False) -> Context:
    from issu_tui.orchestrator.context import Context

    config = _load(config_path)
    try:
        journal = Journal.open(config.state_dir, read_only=read_only)
    except JournalError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG if not read_only else EXIT_PROBLEM)
    return Context(config=config, config_path=config_path.resolve(), journal=journal)


def _who() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid())
    return f"cli:{user}@{socket.gethostname()}"


def _print_event(event: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"id": event.id, "at": event.at, "kind": event.kind,
                               "level": event.level, "message": event.message,
                               "fields": event.fields}, default=str))
        return
    stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
    mark = {"error": "!", "warning": "~"}.get(event.level, " ")
    click.echo(f"{stamp} {mark} [{event.kind}] {event.message}")


def submit(config_path: Path, kind: str, args: dict[str, Any], *, as_json: bool,
           no_wait: bool = False, timeout: float | None = None,
           extra: dict[str, Any] | None = None) -> None:
    """Add an intent; drive it here unless an executor runs; print its result (with `extra`
    beside it); exit."""
    from issu_tui.orchestrator.executor import Executor

    ctx = _context(config_path)
    journal = ctx.journal
    start_event = journal.last_events(1)[0].id if journal.last_events(1) else 0
    try:
        intent_id = journal.add_intent(kind, args, _who())
    except sqlite3.OperationalError as exc:  # e.g. the state directory's disk is full
        _finish(as_json, {"ok": False, "error": f"journal {journal.path} cannot be written "
                          f"({exc}): nothing was asked; is the state directory's disk full? "
                          "Run the command again once there is room"}, EXIT_PROBLEM)
    if no_wait:
        _finish(as_json, {**(extra or {}), "intent": intent_id, "status": "pending"}, EXIT_OK)
    started = Executor(ctx)
    executor: Executor | None = started
    runner: threading.Thread | None = None
    try:
        started.start()
    except JournalLocked:
        executor = None  # the daemon (or the TUI) runs it; we only watch
    except Exception as exc:
        journal.release_writer()
        _finish(as_json, {"intent": intent_id, "ok": False,
                          "error": f"cannot start the executor: {exc}"}, EXIT_PROBLEM)
    if executor is not None:
        runner = threading.Thread(target=executor.serve, kwargs={"until_idle": True},
                                  name="executor", daemon=True)
        runner.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    last_event = start_event
    try:
        while True:
            for event in journal.events(after_id=last_event):
                last_event = event.id
                if not as_json:
                    _print_event(event, False)
            status = _intent(journal, intent_id)
            if status is not None and status.status in ("done", "failed"):
                break
            if runner is not None and not runner.is_alive():
                break
            if deadline is not None and time.monotonic() > deadline:
                if executor is not None:  # stop cleanly: the intent resumes later
                    executor.shutdown.set()
                    if runner is not None:
                        runner.join()
                    executor.close()
                    status = _intent(journal, intent_id)
                _finish(as_json, {"intent": intent_id, "ok": False,
                                  "status": status.status if status else "unknown",
                                  "error": f"still {status.status if status else '?'} after "
                                           f"{timeout:.0f}s"}, EXIT_TIMEOUT)
            time.sleep(0.2)
    except KeyboardInterrupt:
        if executor is not None:
            executor.shutdown.set()
            if runner is not None:
                runner.join()
            executor.close()
        _finish(as_json, {"intent": intent_id, "ok": False,
                          "error": "interrupted; the intent resumes with the next executor"},
                EXIT_INTERRUPTED)
    if runner is not None:
        runner.join()
    if executor is not None:
        executor.close()
    final = _intent(journal, intent_id)
    result: dict[str, Any] = {**(extra or {}), "intent": intent_id, "kind": kind,
                              "status": final.status if final else "unknown"}
    try:
        result.update(json.loads(final.result) if final and final.result else {})
    except ValueError:
        result["detail"] = final.result if final else ""
    ok = bool(final and final.status == "done" and result.get("ok", True))
    result["ok"] = ok
    _finish(as_json, result, EXIT_OK if ok else EXIT_PROBLEM)


def _intent(journal: Journal, intent_id: int) -> Intent | None:
    for intent in journal.intents(None):
        if intent.id == intent_id:
            return intent
    return None


def _finish(as_json: bool, result: dict[str, Any], code: int) -> None:
    if as_json:
        click.echo(json.dumps(result, default=str))
    else:
        _human(result)
    sys.exit(code)


def _human(result: dict[str, Any]) -> None:
    # Every check was streamed as an event; the summary repeats the problems with their fix.
    for check in result.get("checks") or []:
        if check["ok"]:
            continue
        mark = "warn" if check["severity"] == "warning" else "FAIL"
        click.echo(f"[{mark}] {check['name']}: {check['detail']}")
        if check.get("fix"):
            click.echo(f"       fix: {check['fix']}")
    for key in ("succeeded", "failed", "not_started"):
        if result.get(key):
            click.echo(f"{key.replace('_', ' ')}: {', '.join(result[key])}")
    if result.get("stopped_reason"):
        click.echo(f"stopped: {result['stopped_reason']}")
    for line in result.get("done") or result.get("steps") or []:
        click.echo(f"- {line}")
    if result.get("detail"):
        click.echo(str(result["detail"]))
    if result.get("error"):
        click.echo(f"error: {result['error']}", err=True)
    elif result.get("ok"):
        click.echo(f"{result.get('kind', 'intent')} #{result.get('intent')}: done")
