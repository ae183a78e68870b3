"""`issu status` says when run-sync has not reported for a while (a stall, a cut from
RabbitMQ): the lag and queue it prints are then that old."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from issu_tui.journal import Journal
from issu_tui.orch_cli import status_cmd
from issu_tui.orchestrator import phases
from tests.fuzz.configs import minimal_toml


def test_status_says_how_long_run_sync_has_been_silent(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "issu.toml"
    config.write_text(minimal_toml(state))
    # a process that looks like run-sync (`... sync run`), alive but silent: stopped
    silent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)",
                               "sync", "run"])
    journal = Journal.open(state)
    try:
        journal.set_phase("run-sync")
        journal.mark_step(phases.phase_marker("run-sync"))
        journal.set_runsync_process(silent.pid, time.time())
        journal.set_counters("runsync", {"lag_s": 1.5, "applied": 900, "queue_depth": 3})
        shown = {}
        for age in (3, 42):
            with journal.transaction() as db:
                db.execute("UPDATE counters SET updated_at = ?", (time.time() - age,))
            done = CliRunner().invoke(status_cmd, ["-c", str(config)])
            assert done.exit_code == 0, done.output
            (line,) = [ln for ln in done.output.splitlines() if ln.startswith("run-sync:")]
            shown[age] = line
        assert shown[3] == "run-sync:  running, lag 1.5s, applied 900, failed 0, queue 3"
        assert shown[42].startswith(shown[3] + "; no report for 4"), shown[42]
    finally:
        journal.close()
        silent.kill()
        silent.wait()
