"""The report of a rehearsal (`issu rehearse`): its model, and its markdown and JSON files."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Step:
    name: str
    seconds: float = 0.0
    ok: bool = True
    detail: str = ""


@dataclass
class RehearsalReport:
    snapshot: dict[str, Any]
    from_version: str
    to_version: str
    started_at: str
    machine: dict[str, Any]
    steps: list[Step] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)      # what preflight would refuse
    import_: dict[str, Any] = field(default_factory=dict)
    pre_sync: dict[str, Any] = field(default_factory=dict)
    quarantine: dict[str, Any] = field(default_factory=dict)
    translated: list[dict[str, Any]] = field(default_factory=list)
    zk_sync: dict[str, Any] = field(default_factory=dict)
    verify: dict[str, Any] = field(default_factory=dict)
    run_sync: dict[str, Any] = field(default_factory=dict)
    post_sync: dict[str, Any] = field(default_factory=dict)
    prediction: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)      # anything lost or quarantined

    @property
    def ok(self) -> bool:
        return not self.problems and not self.refusals and all(s.ok for s in self.steps)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["import"] = data.pop("import_")
        data["ok"] = self.ok
        return data


def render_markdown(report: RehearsalReport) -> str:
    r = report
    s = r.snapshot
    lines = [f"# Rehearsal of the upgrade {r.from_version} -> {r.to_version}", "",
             f"- snapshot: `{s['path']}`: {s['cells']:,} cells in {s['rows']:,} rows, "
             f"{s['znodes']:,} znodes",
             f"- started: {r.started_at}; machine: {r.machine.get('cpu') or 'unknown CPU'}, "
             f"{r.machine.get('cores')} cores, kernel {r.machine.get('kernel')}",
             f"- result: **{'PASSED' if r.ok else 'FAILED'}**", ""]
    if r.problems or r.refusals:
        lines += ["## What would go wrong on the day", ""]
        lines += [f"- {p}" for p in r.problems]
        lines += [f"- preflight would refuse: {p}" for p in r.refusals]
        lines.append("")
    lines += ["## Steps", "", "| step | seconds | result |", "|---|---:|---|"]
    for step in r.steps:
        lines.append(f"| {step.name} | {step.seconds:.1f} | "
                     f"{'ok' if step.ok else 'FAILED: ' + step.detail} |")
    pred = r.prediction
    lines += ["", "## Rates and predictions", "",
              f"- import into old: {r.import_.get('cells_per_s', 0):,.0f} cells/s",
              f"- pre-sync: {r.pre_sync.get('cells_per_s', 0):,.0f} cells/s measured; predicted "
              f"{_seconds(pred.get('pre_sync_s'))} for {pred.get('pre_sync_cells', 0):,} cells",
              f"- post-sync: {r.post_sync.get('cells_per_s', 0):,.0f} cells/s measured; predicted "
              f"{_seconds(pred.get('post_sync_s'))} for {pred.get('post_sync_cells', 0):,} cells",
              f"- predictions for {pred.get('production_cells', 0):,} cells "
              f"({pred.get('basis', '')}), on this machine", ""]
    if r.pre_sync.get("tables"):
        lines += ["## Pre-sync per table", "",
                  "| table | cells copied | quarantined | seconds | translator |",
                  "|---|---:|---:|---:|---|"]
        for t in r.pre_sync["tables"]:
            lines.append(f"| {t['table']} | {t['cells']:,} | {t['quarantined']:,} | "
                         f"{t['seconds']:.1f} | {t['translator']} |")
        lines.append("")
    if r.quarantine.get("count"):
        lines += ["## Quarantined", ""]
        for name, entry in r.quarantine["tables"].items():
            lines.append(f"- {name}: {entry['count']} cell(s)")
            lines += [f"  - {n} x {reason}" for reason, n in entry["reasons"].items()]
            lines += [f"  - sample: key `{x['key']}` column `{x['column']}`"
                      for x in entry["samples"]]
        lines.append("")
    if r.translated:
        lines += ["## Translated samples (before -> after)", ""]
        for sample in r.translated:
            key = (sample["old_key"] if sample["old_key"] == sample["new_key"]
                   else f"{sample['old_key']} -> {sample['new_key']}")
            lines.append(f"- {sample['table']} `{key}` ({sample['changed_cells']} cells changed)")
            for change in sample["changes"]:
                lines.append(f"  - `{_cell(change['before'])}` -> `{_cell(change['after'])}`")
        lines.append("")
    zk = r.zk_sync
    if zk:
        lines += ["## zk-sync", "", f"- {zk.get('verified_nodes', 0):,} nodes verified, "
                  f"{zk.get('differences', 0)} mismatch(es)"]
        lines += [f"- {d}" for d in zk.get("samples", [])]
        lines.append("")
    if r.verify:
        t = r.verify["totals"]
        lines += ["## verify", "", f"- {t['cells_compared']:,} cells compared: "
                  f"{t['missing']} missing, {t['extra']} extra, {t['different']} different", ""]
    rs = r.run_sync
    if rs and "published" in rs:
        lines += ["## run-sync under a synthetic load", "",
                  f"- {rs['published']} changes at {rs['rate']}/s over {rs['load_seconds']:.0f}s:"
                  f" {rs['applied']} applied, {rs['failed']} failed, {rs['quarantined']} "
                  f"quarantined; lag p50 {_seconds(rs.get('lag_p50_s'))}, p99 "
                  f"{_seconds(rs.get('lag_p99_s'))}",
                  f"- verify of config_db_uuid afterwards: "
                  f"{rs['verify_after']['differences']} difference(s)", ""]
    return "\n".join(lines) + "\n"


def _seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value / 60:.1f} min" if value >= 120 else f"{value:.2f} s"


def _cell(cell: list[Any] | None) -> str:
    if cell is None:
        return "(none)"
    column, value = cell
    text = "(absent)" if value is None else str(value)
    return f"{column} = {text[:80]}"


def write_reports(report: RehearsalReport, base: Path) -> tuple[Path, Path]:
    """`<base>.md` and `<base>.json`."""
    md, js = base.with_name(base.name + ".md"), base.with_name(base.name + ".json")
    md.write_text(render_markdown(report))
    js.write_text(json.dumps(report.as_dict(), indent=2, default=str) + "\n")
    return md, js
