"""Plots of the published figures, drawn from the tables of the benchmark pages.

    .venv/bin/python -m bench.plots          # writes docs/plots/*.png

Each plot is made from the numbers the pages already publish (with their commands and
machine lines), so a plot can never show a figure the page does not:
- presync-methods.png: pre-sync cells/s per method (docs/benchmarks.md, latest run);
- rss-by-size.png: peak RSS against size, the console's grid (docs/benchmarks-tui.md) and
  the snapshot export (docs/benchmarks-export.md), each beside the approach it replaced;
- runsync-lag.png: run-sync's and the original approach's p50 and p99 lag against the rate
  achieved, as a fraction of the replay ceiling's (docs/benchmarks.md, the latest run's table).
A table that is missing or changed shape is reported and its plot skipped.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
OUT = DOCS / "plots"


def tables(text: str) -> Iterator[list[dict[str, str]]]:
    """Every markdown table of `text`, as rows keyed by the header's cells."""
    lines = text.splitlines()
    i = 0
    while i < len(lines) - 1:
        if lines[i].startswith("|") and re.match(r"^\|[\s:|-]+\|$", lines[i + 1].strip()):
            header = [c.strip() for c in lines[i].strip().strip("|").split("|")]
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                rows.append(dict(zip(header, cells, strict=False)))
                i += 1
            yield rows
        else:
            i += 1


def number(cell: str) -> float:
    """The first number of a cell (`1,008,255`, `72 MB (72)`, `**53,312**`)."""
    found = re.search(r"-?\d[\d,]*(?:\.\d+)?", cell.replace("*", ""))
    if found is None:
        raise ValueError(f"no number in {cell!r}")
    return float(found.group(0).replace(",", ""))


def between(text: str, begin: str, end: str) -> str:
    return text.split(begin, 1)[1].split(end, 1)[0] if begin in text and end in text else ""


def presync_methods(plt) -> str:  # type: ignore[no-untyped-def]
    block = between((DOCS / "benchmarks.md").read_text(), "<!-- presync:begin -->",
                    "<!-- presync:end -->")
    rows = next((t for t in tables(block) if t and "method" in t[0] and "cells/s" in t[0]), None)
    if not rows:
        return "no pre-sync table with method and cells/s"
    names = [re.sub(r"\s*\(.*", "", r["method"]) for r in rows]
    rates = [number(r["cells/s"]) / 1000 for r in rows]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.barh(names[::-1], rates[::-1], color="#4c72b0")
    ax.set_xlabel("thousand cells/s (1,008,255 cells)")
    ax.set_xlim(0, max(rates) * 1.15)
    ax.set_title("pre-sync, one run: issu beside ceilings and peers")
    for y, value in enumerate(rates[::-1]):
        ax.text(value, y, f" {value:.1f}k", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "presync-methods.png", dpi=100)
    return ""


def rss_by_size(plt) -> str:  # type: ignore[no-untyped-def]
    tui = next((t for t in tables((DOCS / "benchmarks-tui.md").read_text())
                if t and "computes" in t[0] and "grid" in t[0]), None)
    export = next((t for t in tables((DOCS / "benchmarks-export.md").read_text())
                   if t and "method" in t[0] and "peak RSS (MB)" in t[0]), None)
    if not tui or not export:
        return "the console or export table is missing"
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    for grid, style in (("before", "s--"), ("new", "o-")):
        points = [(number(r["computes"]), number(r["RSS (peak)"])) for r in tui
                  if r["grid"] == grid]
        left.plot([p[0] for p in points], [p[1] for p in points], style,
                  label="grid before" if grid == "before" else "virtualised grid")
    left.set_xscale("log")
    left.set_xlabel("computes")
    left.set_ylabel("RSS, MB")
    left.set_title("console")
    left.legend()
    for method, style in (("issu (json)", "o-"), ("original (json)", "s--")):
        points = [(number(r["cells"]) / 1e6, number(r["peak RSS (MB)"])) for r in export
                  if r["method"] == method]
        right.plot([p[0] for p in points], [p[1] for p in points], style,
                   label="issu db export" if method.startswith("issu") else
                   "db_json_exim.py's approach")
    right.set_xlabel("million cells")
    right.set_ylabel("peak RSS, MB")
    right.set_title("snapshot export")
    right.legend()
    fig.tight_layout()
    fig.savefig(OUT / "rss-by-size.png", dpi=100)
    return ""


def runsync_lag(plt) -> str:  # type: ignore[no-untyped-def]
    block = between((DOCS / "benchmarks.md").read_text(), "<!-- runsync:begin -->",
                    "<!-- runsync:end -->")
    rows = next((t for t in tables(block) if t and "lag p99 ms" in t[0]), None)
    if not rows or len(rows) < 2:
        return "no run-sync table with two rates or more"
    of_ceiling = "achieved vs ceiling" in rows[0] and rows[0]["achieved vs ceiling"] != "-"
    series: dict[str, list[tuple[float, float, float]]] = {}
    for r in rows:
        x = number(r["achieved vs ceiling"] if of_ceiling else r["achieved/s"])
        series.setdefault(r.get("who", "run-sync"), []).append(
            (x, number(r["lag p50 ms"]), number(r["lag p99 ms"])))
    draw_lag(plt, series, of_ceiling, OUT / "runsync-lag.png")
    return ""


def draw_lag(plt, series: dict[str, list[tuple[float, float, float]]],  # type: ignore[no-untyped-def]
             of_ceiling: bool, path: Path) -> None:
    """p50 and p99 lag of each peer (`series`: who -> (rate, p50 ms, p99 ms)) against the
    rate achieved, as a fraction of the replay ceiling's when `of_ceiling`."""
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for who, points in series.items():
        style = "-" if who == "run-sync" else "--"
        x = [p[0] for p in points]
        ax.plot(x, [p[1] for p in points], "o" + style, label=f"{who} p50")
        ax.plot(x, [p[2] for p in points], "s" + style, label=f"{who} p99")
    ax.axhline(1000, color="0.4", linestyle=":", linewidth=1, label="1 s (the p99 target)")
    ax.set_yscale("log")
    ax.set_xlabel("changes/s achieved, as a fraction of the replay ceiling's" if of_ceiling
                  else "changes/s achieved by the load generator")
    ax.set_ylabel("lag, ms")
    ax.set_title("lag: written on old -> on new (run-sync: republished)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(parents=True, exist_ok=True)
    skipped = 0
    for plot in (presync_methods, rss_by_size, runsync_lag):
        why = plot(plt)
        if why:
            skipped += 1
            print(f"{plot.__name__}: skipped: {why}")
        else:
            print(f"{plot.__name__}: written")
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
