"""Signals in the worker processes of pre-sync and run-sync."""

from __future__ import annotations

import signal


def ignore_stop_signals() -> None:
    """A worker stops when its parent says so or is gone, never on a signal of its own:
    Ctrl-C reaches the whole process group, and `systemctl kill` (SIGUSR1: reconcile now)
    the whole unit."""
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
