"""The chaos report (bench/chaos/report.py) says, per fault kind, what the operator saw after
it (the runbook's "what you see"), each message once whatever its moment."""

from __future__ import annotations

from typing import Any

from bench.chaos.report import _markdown


def _fault(kind: str, seen: list[str], outcome: str = "injected") -> dict[str, Any]:
    return {"kind": kind, "at_s": 10.0, "phase": "run-sync", "outcome": outcome, "note": "",
            "duration_s": 0.0, "recovery_s": 2.0, "together_with": "", "seen": seen}


def _trial(number: int, faults: list[dict[str, Any]]) -> dict[str, Any]:
    return {"trial": number, "seed": number, "computes": 4, "ok": True, "faults": faults,
            "checks": {"objects": {"ok": True, "differences": 0}}, "attempts": {}}


def test_the_report_lists_what_each_fault_kind_showed_once() -> None:
    restarted = "run-sync was not running: restarted"
    results = [
        _trial(1, [_fault("kill-run-sync", [f"12.0 s sync warning: {restarted}"]),
                   _fault("restart-rabbitmq", [])]),
        _trial(2, [_fault("kill-run-sync", [f"40.5 s sync warning: {restarted}",
                                            "41.0 s `issu finalize` exit 1: refused"]),
                   _fault("disk-full", ["not shown: skipped"], outcome="skipped")]),
    ]
    text = _markdown([], results)
    section = text.split("## What the operator saw after each fault", 1)[1]
    section = section.split("## Trials", 1)[0]
    assert section.count(restarted) == 1
    assert "`issu finalize` exit 1: refused" in section.split("- kill-run-sync: ", 1)[1]
    assert "- restart-rabbitmq: nothing" in section
    assert "disk-full" not in section
