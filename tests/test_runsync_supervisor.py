"""The run-sync supervisor when the state directory is full: a run-sync whose pid cannot be
recorded in the journal is stopped, not left running where no executor would find it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from issu_tui.config import IssuConfig
from issu_tui.journal import Journal
from issu_tui.orchestrator import syncproc
from issu_tui.orchestrator.context import Context, OrchestratorError


@contextlib.contextmanager
def small_disk(path: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of `size` mounted on `path`, always unmounted at the end."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                              str(path)], capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def fill(disk: Path) -> None:
    """Write until the disk refuses (ENOSPC)."""
    with open(disk / "filler", "ab") as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * 65536)
            fh.flush()
            os.fsync(fh.fileno())


def _config(state: Path) -> IssuConfig:
    def cluster(name: str, version: str, last: int) -> dict[str, object]:
        return {"name": name, "version": version,
                "cassandra": {"hosts": [f"10.0.{last}.11"]},
                "zookeeper": {"hosts": [f"10.0.{last}.21"]},
                "rabbit": {"hosts": [f"10.0.{last}.31"]},
                "api_server": {"url": f"http://10.0.{last}.101:8082"},
                "control_nodes": [{"name": f"{name}-ctl", "address": f"10.0.{last}.101"}]}
    return IssuConfig.model_validate({"state_dir": str(state),
                                      "old": cluster("old", "4.1.0", 0),
                                      "new": cluster("new", "5.0.0", 1)})


def test_runsync_whose_pid_cannot_be_recorded_is_stopped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # run-sync's own start-up is not the subject: a process that would run for minutes
    # stands in for it, so an orphan cannot end by itself before the check
    monkeypatch.setattr(syncproc, "issu_argv",
                        lambda: [sys.executable, "-c", "import time; time.sleep(600)"])
    with small_disk(tmp_path / "state") as state:
        journal = Journal.open(state)
        ctx = Context(config=_config(state), config_path=tmp_path / "issu.toml",
                      journal=journal)
        supervisor = syncproc.RunSyncSupervisor(ctx)
        started: list[int] = []
        real_popen = subprocess.Popen

        def recording_popen(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
            proc: subprocess.Popen[bytes] = real_popen(*args, **kwargs)  # type: ignore[call-overload]
            started.append(proc.pid)
            return proc

        monkeypatch.setattr(syncproc.subprocess, "Popen", recording_popen)
        try:
            fill(state)
            with pytest.raises(Exception) as refused:  # its type is checked below
                supervisor.start()
            assert len(started) == 1
            assert not syncproc._alive(started[0]), "run-sync left running, pid not recorded"
            # the refusal names the journal and what to look at
            assert isinstance(refused.value, OrchestratorError), refused.value
            assert str(state) in str(refused.value) and "full" in str(refused.value)
        finally:
            for pid in started:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, 9)
            journal.close()
