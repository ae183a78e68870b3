"""The run's report: markdown for people, JSON for machines, both rewritten after each trial
(a run cut short still leaves its report)."""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.machine import Machine


def _injected(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for r in results for f in r.get("faults", []) if f["outcome"] == "injected"]


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    differences = unknown = 0
    for r in results:
        checks = r.get("checks") or {}
        differences += (checks.get("objects", {}).get("differences", 0)
                        + checks.get("verify", {}).get("differences", 0)
                        + checks.get("zookeeper", {}).get("differences", 0)
                        + len(checks.get("node_records", {}).get("problems", []))
                        + len(checks.get("derived_on_new", {}).get("problems", [])))
        unknown += checks.get("computes", {}).get("unknown", 0)
    by_kind: dict[str, dict[str, Any]] = {}
    for f in _injected(results):
        entry = by_kind.setdefault(f["kind"], {"injected": 0, "recovery_s": []})
        entry["injected"] += 1
        if f.get("recovery_s") is not None:
            entry["recovery_s"].append(f["recovery_s"])
    skipped = Counter(f["kind"] for r in results for f in r.get("faults", [])
                      if f["outcome"] != "injected")
    waited = Counter(f["kind"] for f in _injected(results)
                     if f.get("deferred_from_s") is not None)
    in_a_row = 0
    for r in results:
        if not r.get("ok"):
            break
        in_a_row += 1
    return {"trials": len(results), "passed": sum(bool(r.get("ok")) for r in results),
            "passed_in_a_row_from_first": in_a_row, "differences": differences,
            "unknown_computes": unknown, "faults_by_kind": by_kind,
            "not_injected_by_kind": dict(skipped), "waited_for_run_sync_by_kind": dict(waited),
            "pairs": sum(1 for f in _injected(results) if f.get("together_with"))}


def write_report(path: Path, command: str, machine: Machine, args: argparse.Namespace,
                 results: list[dict[str, Any]], began: float) -> None:
    data = {"command": command, "started": time.strftime("%Y-%m-%d %H:%M UTC",
                                                         time.gmtime(began)),
            "machine": machine.line(), "options": {k: str(v) for k, v in vars(args).items()},
            "summary": summary(results), "trials": results}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    header = [
        f"Command: `{command}` (trial i uses seed S+i; one trial again: "
        f"`make chaos ARGS='--trials 1 --seed <seed> ...'` with the same other options)",
        f"Started {data['started']}; machine: {machine.line()}"]
    path.with_suffix(".md").write_text(_markdown(header, results))


def write_combined(path: Path, runs: list[dict[str, Any]]) -> None:
    """One report of several runs' JSON reports, their trials numbered in a row (a long
    series split into runs, so that the run holds the machine for less at a time)."""
    results: list[dict[str, Any]] = []
    header = ["Runs, one after the other (trial i of a run uses seed S+i; one trial again: "
              "`make chaos ARGS='--trials 1 --seed <seed> ...'` with that run's other options):"]
    for run in runs:
        first = len(results) + 1
        results += [{**r, "trial": len(results) + i + 1} for i, r in enumerate(run["trials"])]
        numbers = f"trial {first}" if first == len(results) else f"trials {first}-{len(results)}"
        header.append(f"- {numbers}: `{run['command']}`; started "
                      f"{run['started']}; machine: {run['machine']}")
    data = {"runs": [{k: v for k, v in run.items() if k != "trials"} for run in runs],
            "summary": summary(results), "trials": results}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    path.with_suffix(".md").write_text(_markdown(header, results))


def _seen(results: list[dict[str, Any]]) -> list[str]:
    """Per fault kind, the distinct warnings, errors and failed commands that followed it
    (the runbook's "what you see"), at most 4 each."""
    by_kind: dict[str, list[str]] = {}
    for f in _injected(results):
        shown = by_kind.setdefault(f["kind"], [])
        for line in f.get("seen", []):
            text = line.split(" s ", 1)[-1]  # without its moment, so repeats fold
            if text not in shown and len(shown) < 4:
                shown.append(text)
    if not by_kind:
        return []
    lines = ["## What the operator saw after each fault", "",
             "Warning and error events of the journal (`issu events`, the console's events) and "
             "failed commands, from the fault's moment until 20 s after it recovered (other "
             "faults of the trial may have caused some).", ""]
    for kind in sorted(by_kind):
        lines.append(f"- {kind}: " + ("; ".join(f"«{t[:160]}»" for t in by_kind[kind])
                                      or "nothing"))
    return [*lines, ""]


def _markdown(header: list[str], results: list[dict[str, Any]]) -> str:
    total = summary(results)
    lines = [
        "# Chaos run", "", *header, "",
        f"**{total['passed']} of {total['trials']} trials passed** "
        f"({total['passed_in_a_row_from_first']} in a row from the first); differences found: "
        f"{total['differences']}; computes in an unknown state: {total['unknown_computes']}; "
        f"pairs of simultaneous faults: {total['pairs']}.", "",
        "## Faults injected", "",
        "| fault | injected | of which waited for run-sync | recovery s (median / max) "
        "| not applicable at its moment |",
        "|---|---|---|---|---|",
    ]
    kinds = sorted(set(total["faults_by_kind"]) | set(total["not_injected_by_kind"]))
    for kind in kinds:
        entry = total["faults_by_kind"].get(kind, {"injected": 0, "recovery_s": []})
        rec = sorted(entry["recovery_s"])
        shown = f"{rec[len(rec) // 2]:.1f} / {rec[-1]:.1f}" if rec else "-"
        waited = total["waited_for_run_sync_by_kind"].get(kind, 0)
        lines.append(f"| {kind} | {entry['injected']} | {waited} | {shown} | "
                     f"{total['not_injected_by_kind'].get(kind, 0)} |")
    waits = any("deferred_from_s" in f for r in results for f in r.get("faults", []))
    lines += ["", "Recovery: from the fault's end until the executor runs again and, from "
              "run-sync's phase to finalize, run-sync reports again. " + (
                  "A fault on run-sync drawn before run-sync ran waits for it and lands at a "
                  "random moment of its hold." if waits else
                  "These runs' harness counted a fault on run-sync drawn before run-sync ran "
                  "as not applicable (it now waits for run-sync)."), ""]
    lines += _seen(results)
    lines += [
              "## Trials", "",
              "| trial | seed | computes | result | upgrade s | changes (rate/s) | faults "
              "| attempts beyond the first | checks |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        load = r.get("load") or {}
        faults = ", ".join(f"{f['kind']}@{f['at_s']:.0f}s" for f in r.get("faults", [])
                           if f["outcome"] == "injected")
        retries = sum(a - 1 for a in r.get("attempts", {}).values())
        checks = r.get("checks") or {}
        failed = [name for name, c in checks.items() if not c.get("ok")]
        verdict = "ok" if r.get("ok") else "FAILED"
        lines.append(f"| {r['trial']} | {r['seed']} | {r.get('computes', '-')} | {verdict} | "
                     f"{r.get('upgrade_s', '-')} | "
                     f"{load.get('changes', '-')} ({load.get('rate_per_s', '-')}) | "
                     f"{faults or '-'} | {retries} | "
                     f"{'all passed' if checks and not failed else ', '.join(failed) or '-'} |")
    for r in results:
        if r.get("ok"):
            continue
        lines += ["", f"### Trial {r['trial']} (seed {r['seed']}) failed", ""]
        if r.get("error"):
            lines += ["```", r["error"][:1500], "```"]
        for name, c in (r.get("checks") or {}).items():
            if not c.get("ok"):
                lines.append(f"- {name}: {json.dumps(c, default=str)[:800]}")
        lines.append("- fault timeline: " + "; ".join(
            f"{f['at_s']}s {f['kind']} ({f['outcome']}: {f['note']})" for f in r["faults"]))
        if r.get("logs_kept"):
            lines.append(f"- logs kept in `{r['logs_kept']}`")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """python -m bench.chaos.report OUT RUN1.json RUN2.json ...: one report of several runs."""
    ap = argparse.ArgumentParser(prog="python -m bench.chaos.report",
                                 description="One report (OUT.md, OUT.json) of several "
                                             "make chaos runs' JSON reports.")
    ap.add_argument("out", type=Path, help="report path without extension")
    ap.add_argument("runs", nargs="+", type=Path, help="the runs' .json reports")
    args = ap.parse_args(argv)
    runs = []
    for path in args.runs:
        try:
            runs.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            ap.error(f"{path}: not a chaos report: {exc}")
    write_combined(args.out, runs)


if __name__ == "__main__":
    main()
