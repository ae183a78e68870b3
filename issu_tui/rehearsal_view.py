"""A rehearsal's report (`issu rehearse --report BASE` writes `BASE.json`) as the console shows
it: the upgrade's phases with what the rehearsal measured for each, the tables with the cells
copied and quarantined, and what would go wrong on the day. Read-only: nothing here reaches a
cluster or the journal.

This is the console API of `issu tui --rehearsal REPORT.json` (the screen in
`screens/rehearsal.py` reads only this). A file that is not such a report is a
`RehearsalFileError` naming the file and the key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# The rehearsal's steps behind each phase of the upgrade (the rest are its own set-up).
PHASE_STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("snapshot", ("clean the scratch clusters", "import the snapshot as old")),
    ("preflight", ("preflight",)),
    ("pair", ()),
    ("pre-sync", ("pre-sync", "translated samples")),
    ("run-sync", ("run-sync under load",)),
    ("computes", ()),
    ("finalize", ("post-sync", "zk-sync", "verify")),
)
NOT_REHEARSED = {"pair": "not rehearsed: no control nodes on the scratch clusters",
                 "computes": "not rehearsed: no computes on the scratch clusters"}


class RehearsalFileError(ValueError):
    """The file is not a rehearsal report; the message names the file and the key."""


@dataclass(frozen=True)
class RehearsedPhase:
    name: str                    # the upgrade's phase (plus `snapshot`, the import)
    status: str                  # ok, problems (would lose data), failed, not-run, not-rehearsed
    seconds: float | None        # measured on the scratch clusters
    predicted_s: float | None    # predicted on the production cluster's size
    what: str                    # what ran and what it found, in words


@dataclass(frozen=True)
class RehearsedTable:
    job: str                     # pre-sync, post-sync
    table: str                   # keyspace.table
    status: str
    copied: int
    quarantined: int
    seconds: float
    translator: str


@dataclass(frozen=True)
class QuarantinedTable:
    table: str
    count: int
    reasons: tuple[tuple[str, int], ...]
    samples: tuple[tuple[str, str, str], ...]   # key, column, reason


@dataclass(frozen=True)
class RehearsalView:
    report: str                  # the report file
    snapshot: str
    cells: int
    rows: int
    znodes: int
    from_version: str
    to_version: str
    started_at: str
    machine: str
    ok: bool
    phases: tuple[RehearsedPhase, ...]
    tables: tuple[RehearsedTable, ...]
    quarantine: tuple[QuarantinedTable, ...]
    problems: tuple[str, ...]    # what would be lost or fail on the day
    refusals: tuple[str, ...]    # what preflight would refuse on the day
    facts: tuple[str, ...]       # rates, verify, zk-sync, run-sync and prediction basis
    translated: tuple[str, ...] = ()  # before -> after samples of the translators, one a line


class _Reader:
    """Typed access to the report's JSON, naming the key of anything unexpected."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, expected: str) -> RehearsalFileError:
        return RehearsalFileError(f"{self.path}: {where}: expected {expected}; not a "
                                  "rehearsal report (issu rehearse --report BASE writes "
                                  "BASE.json)")

    def get(self, data: Mapping[str, Any], key: str, kind: type[T], where: str,
            default: T | None = None) -> T:
        value = data.get(key, default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(f"{where}{key}", kind.__name__ if value is not None else
                            f"{kind.__name__} (missing)")
        return value

    def number(self, data: Mapping[str, Any], key: str, where: str) -> float | None:
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"{where}{key}", "a number")
        return float(value)

    def section(self, data: Mapping[str, Any], key: str) -> dict[str, Any]:
        return self.get(data, key, dict, "", {})

    def strings(self, data: Mapping[str, Any], key: str, where: str = "") -> tuple[str, ...]:
        items = self.get(data, key, list, where, [])
        if not all(isinstance(i, str) for i in items):
            raise self.fail(f"{where}{key}", "a list of strings")
        return tuple(items)


def load_rehearsal(path: Path) -> RehearsalView:
    """The report at `path` for the console (RehearsalFileError when it is not one)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise RehearsalFileError(f"{path}: cannot read: {reason}") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise RehearsalFileError(f"{path}: not JSON ({exc})") from None
    r = _Reader(path)
    if not isinstance(data, dict):
        raise r.fail("the document", "an object")
    snapshot = r.section(data, "snapshot")
    steps = _steps(r, r.get(data, "steps", list, ""))
    refusals = r.strings(data, "refusals")
    problems = r.strings(data, "problems")
    pre_sync, post_sync = r.section(data, "pre_sync"), r.section(data, "post_sync")
    prediction = r.section(data, "prediction")
    quarantine = _quarantine(r, r.section(data, "quarantine"))
    view_phases = _phases(r, data, steps, refusals, prediction)
    tables = tuple(_tables(r, "pre-sync", pre_sync)) + tuple(_tables(r, "post-sync", post_sync))
    machine = r.section(data, "machine")
    return RehearsalView(
        report=str(path), snapshot=r.get(snapshot, "path", str, "snapshot."),
        cells=r.get(snapshot, "cells", int, "snapshot.", 0),
        rows=r.get(snapshot, "rows", int, "snapshot.", 0),
        znodes=r.get(snapshot, "znodes", int, "snapshot.", 0),
        from_version=r.get(data, "from_version", str, ""),
        to_version=r.get(data, "to_version", str, ""),
        started_at=r.get(data, "started_at", str, "", ""),
        machine=_machine(machine),
        ok=r.get(data, "ok", bool, ""),
        phases=view_phases, tables=tables, quarantine=quarantine, problems=problems,
        refusals=refusals, facts=_facts(r, data, prediction),
        translated=_translated(r, r.get(data, "translated", list, "", [])))


def _translated(r: _Reader, samples: Sequence[Any]) -> tuple[str, ...]:
    lines = []
    for i, sample in enumerate(samples):
        if not isinstance(sample, dict):
            raise r.fail(f"translated[{i}]", "an object")
        where = f"translated[{i}]."
        old_key, new_key = (r.get(sample, "old_key", str, where),
                            r.get(sample, "new_key", str, where))
        key = old_key if old_key == new_key else f"{old_key} -> {new_key}"
        lines.append(f"{r.get(sample, 'table', str, where)} {key}: "
                     f"{_n(sample.get('changed_cells'))} cell(s) changed")
        for change in r.get(sample, "changes", list, where, [])[:3]:
            if isinstance(change, dict):
                lines.append(f"  {_cell(change.get('before'))} -> {_cell(change.get('after'))}")
    return tuple(lines)


def _cell(cell: object) -> str:
    if not isinstance(cell, list) or len(cell) != 2:
        return "(none)"
    column, value = cell
    text = "(absent)" if value is None else str(value)
    return f"{column} = {text[:60]}"


def _steps(r: _Reader, items: Sequence[Any]) -> dict[str, tuple[float, bool, str]]:
    found: dict[str, tuple[float, bool, str]] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise r.fail(f"steps[{i}]", "an object")
        where = f"steps[{i}]."
        found[r.get(item, "name", str, where)] = (
            r.number(item, "seconds", where) or 0.0, r.get(item, "ok", bool, where),
            r.get(item, "detail", str, where, ""))
    return found


def _phases(r: _Reader, data: Mapping[str, Any], steps: Mapping[str, tuple[float, bool, str]],
            refusals: Sequence[str], prediction: Mapping[str, Any]
            ) -> tuple[RehearsedPhase, ...]:
    said = _what(r, data, refusals)
    found = []
    for name, behind in PHASE_STEPS:
        if not behind:
            found.append(RehearsedPhase(name, "not-rehearsed", None, None, NOT_REHEARSED[name]))
            continue
        ran = [steps[s] for s in behind if s in steps]
        failed = [f"{s}: {steps[s][2]}" for s in behind if s in steps and not steps[s][1]]
        if not ran:
            status, what = "not-run", "not run (see what preflight would refuse)"
        elif failed:
            status, what = "failed", "; ".join(failed)
        else:
            status, what = said.get(name, ("ok", ""))
        seconds = sum(s[0] for s in ran) if ran else None
        predicted = {"pre-sync": r.number(prediction, "pre_sync_s", "prediction."),
                     "finalize": r.number(prediction, "post_sync_s", "prediction.")}.get(name)
        found.append(RehearsedPhase(name, status, seconds, predicted, what))
    return tuple(found)


def _what(r: _Reader, data: Mapping[str, Any], refusals: Sequence[str]
          ) -> dict[str, tuple[str, str]]:
    """Per phase that ran whole: (status, what it did and found). Every figure that decides
    a status is checked to be a number (the error names its key)."""
    said: dict[str, tuple[str, str]] = {}
    imported = r.section(data, "import")
    said["snapshot"] = ("ok", f"{_n(imported.get('cells'))} cells, "
                              f"{_n(imported.get('znodes'))} znodes imported as old")
    said["preflight"] = (("problems", f"would refuse {len(refusals)} thing(s)") if refusals
                         else ("ok", "nothing would be refused"))
    pre = r.section(data, "pre_sync")
    quarantined = r.number(pre, "quarantined", "pre_sync.") or 0
    said["pre-sync"] = ("problems" if quarantined else "ok",
                        f"{_n(pre.get('cells'))} cells copied at {_n(pre.get('cells_per_s'))}"
                        f"/s; {_n(quarantined)} quarantined")
    rs = r.section(data, "run_sync")
    if rs:
        def figure(key: str) -> float:
            return r.number(rs, key, "run_sync.") or 0.0

        after = r.get(rs, "verify_after", dict, "run_sync.", {})
        lost = figure("failed") + figure("quarantined")
        bad = lost or figure("applied") < figure("published") or after.get("ok") is False
        said["run-sync"] = ("problems" if bad else "ok",
                            f"{_n(rs.get('published'))} changes at {_n(rs.get('rate'))}/s: "
                            f"{_n(rs.get('applied'))} applied, {_n(lost)} lost; lag p99 "
                            f"{_s(r.number(rs, 'lag_p99_s', 'run_sync.'))}")
    post, zk, verify = (r.section(data, "post_sync"), r.section(data, "zk_sync"),
                        r.section(data, "verify"))
    verify_diffs = r.number(verify, "differences", "verify.") or 0
    zk_diffs = r.number(zk, "differences", "zk_sync.") or 0
    post_quarantined = r.number(post, "quarantined", "post_sync.") or 0
    said["finalize"] = (
        "problems" if verify_diffs or zk_diffs or post_quarantined else "ok",
        f"post-sync {_n(post.get('cells'))} cells; zk-sync {_n(zk.get('verified_nodes'))} "
        f"nodes, {_n(zk_diffs)} mismatches; verify {_n(verify_diffs)} differences")
    return said


def _tables(r: _Reader, job: str, copy: Mapping[str, Any]) -> list[RehearsedTable]:
    found = []
    for i, item in enumerate(r.get(copy, "tables", list, f"{job.replace('-', '_')}.", [])):
        where = f"{job.replace('-', '_')}.tables[{i}]."
        if not isinstance(item, dict):
            raise r.fail(where.rstrip("."), "an object")
        found.append(RehearsedTable(
            job, r.get(item, "table", str, where), r.get(item, "status", str, where, ""),
            r.get(item, "cells", int, where, 0), r.get(item, "quarantined", int, where, 0),
            r.number(item, "seconds", where) or 0.0,
            r.get(item, "translator", str, where, "")))
    return found


def _quarantine(r: _Reader, section: Mapping[str, Any]) -> tuple[QuarantinedTable, ...]:
    found = []
    tables = r.get(section, "tables", dict, "quarantine.", {})
    for name, entry in tables.items():
        where = f"quarantine.tables[{name}]."
        if not isinstance(entry, dict):
            raise r.fail(where.rstrip("."), "an object")
        reasons = r.get(entry, "reasons", dict, where, {})
        samples = []
        for i, sample in enumerate(r.get(entry, "samples", list, where, [])):
            if not isinstance(sample, dict):
                raise r.fail(f"{where}samples[{i}]", "an object")
            samples.append(tuple(str(sample.get(k, "")) for k in ("key", "column", "reason")))
        found.append(QuarantinedTable(
            str(name), r.get(entry, "count", int, where, 0),
            tuple((str(k), v if isinstance(v, int) else 0) for k, v in reasons.items()),
            tuple((s[0], s[1], s[2]) for s in samples)))
    return tuple(found)


def _facts(r: _Reader, data: Mapping[str, Any], prediction: Mapping[str, Any]
           ) -> tuple[str, ...]:
    facts = []
    steps = prediction.get("version_steps")
    if isinstance(steps, list) and steps:
        facts.append(f"version path: {', '.join(str(s) for s in steps)}")
    facts.append(f"predictions for {_n(prediction.get('production_cells'))} cells "
                 f"({prediction.get('basis', 'the snapshot size')}), at the rates measured "
                 "here")
    for job, key in (("pre-sync", "pre_sync"), ("post-sync", "post_sync")):
        measured = r.section(data, key)
        facts.append(f"{job}: {_n(measured.get('cells_per_s'))} cells/s measured; predicted "
                     f"{_s(r.number(prediction, f'{key}_s', 'prediction.'))} for "
                     f"{_n(prediction.get(f'{key}_cells'))} cells")
    verify = r.section(data, "verify")
    totals = verify.get("totals") if isinstance(verify.get("totals"), dict) else {}
    if totals:
        facts.append(f"verify: {_n(totals.get('cells_compared'))} cells compared, "
                     f"{_n(totals.get('missing'))} missing, {_n(totals.get('extra'))} extra, "
                     f"{_n(totals.get('different'))} different")
    zk = r.section(data, "zk_sync")
    facts += [f"zk-sync mismatch: {s}" for s in r.get(zk, "samples", list, "zk_sync.", [])
              if isinstance(s, str)]
    if isinstance(prediction.get("note"), str):
        facts.append(prediction["note"])
    return tuple(facts)


def _machine(machine: Mapping[str, Any]) -> str:
    cpu = machine.get("cpu") or "unknown CPU"
    return f"{cpu}, {machine.get('cores', '?')} cores"


def _n(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return f"{value:,.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:,.1f}"


def _s(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value / 60:.1f} min" if value >= 120 else f"{value:.1f} s"
