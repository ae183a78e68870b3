"""Whether a demo world's upgrade has ended (its journal's phase is terminal). The console then
shows that finished upgrade, and the world cannot serve another one (finalize disabled v1's
api-server): `make demo` says so, and how to start a new demo, instead of looking stuck or
failing on the disabled service alone."""

from __future__ import annotations

import sqlite3
from pathlib import Path

DEFAULT_NET = 20  # `make demo`'s DEMO_NET and `issu demo`'s --net


def new_demo(net: int) -> str:
    """How to start a new demo in place of the world on `net`."""
    at = "" if net == DEFAULT_NET else f" DEMO_NET={net}"
    return f"`make clean{at}`, then `make demo{at}`"


def ended_phase(state_dir: Path) -> str | None:
    """The terminal phase the journal in `state_dir` is in; None when there is no journal,
    the upgrade is under way, or the journal cannot be read (the console says why)."""
    from issu_tui.journal import Journal, JournalError
    from issu_tui.orchestrator import phases

    if not (state_dir / "journal.db").exists():
        return None
    try:
        with Journal.open(state_dir, read_only=True) as journal:
            info = journal.phase()
    except (JournalError, OSError, sqlite3.Error):
        return None
    if info is None or info.phase not in phases.PHASE_NAMES \
            or not phases.phase(info.phase).terminal:
        return None
    return info.phase
