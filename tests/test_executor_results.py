"""What a phase intent's result carries: preflight's checks only with the advance that ran
them (the console's preflight view takes the newest intent that has checks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from issu_tui.journal import Journal
from issu_tui.orchestrator import executor as executor_module
from issu_tui.orchestrator.context import Context
from issu_tui.orchestrator.executor import Executor
from tests.test_runsync_supervisor import _config


def test_a_later_phase_does_not_carry_the_checks_of_an_earlier_preflight(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the phases' own work (SSH, Cassandra) is not the subject: each stands in with its outcome
    def preflight(executor: Executor, args: dict[str, Any]) -> str:
        executor.last_checks = [{"name": "versions", "ok": True, "severity": "error",
                                 "detail": "4.1.0 -> 5.0.0", "fix": ""}]
        return "1 checks passed"

    runners = dict(executor_module.PHASE_RUNNERS, preflight=preflight,
                   pair=lambda executor, args: "paired")
    monkeypatch.setattr(executor_module, "PHASE_RUNNERS", runners)
    state = tmp_path / "state"
    journal = Journal.open(state)
    try:
        ctx = Context(config=_config(state), config_path=tmp_path / "issu.toml",
                      journal=journal)
        executor = Executor(ctx)
        executor.ensure_plan()
        first = executor.advance("preflight")
        assert [c["name"] for c in first["checks"]] == ["versions"]
        second = executor.advance("pair")
        assert second["done"] == ["pair: paired"]
        assert "checks" not in second
    finally:
        journal.close()
