"""Text formatting shared by the panes: durations, times, numbers and state colours.

Colours are the 16 ANSI names so they degrade cleanly in a 16-colour terminal.

Spaces and style changes: an SVG screenshot draws each run of one style as its own <text>,
and renderers such as librsvg drop a run's leading spaces, which glues it to the word before
("computesfor"). So a space next to a style change ends the run before it (invisible unless
that style has a background) or is a run of its own; a run never starts with a space.
"""

from __future__ import annotations

import time

from rich.text import Text

# At this many columns and more the dashboard shows its wide layout (the App's breakpoint).
WIDE_COLUMNS = 120

STATE_STYLES = {
    "old": "",
    "queued": "cyan",
    "upgrading": "bold yellow",
    "rolling-back": "bold magenta",
    "upgraded": "green",
    "failed": "bold red",
    "unknown": "magenta",
}
LEVEL_STYLES = {"error": "bold red", "warning": "yellow", "info": "", "debug": "dim"}
SEVERITY_NAMES = {0: "critical", 1: "major", 2: "minor"}


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, ""))


def duration(seconds: float | None) -> str:
    """`3s`, `4m05s`, `2h03m`, `3d04h`: short enough for a cell."""
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def clock(at: float | None, *, date: bool = False) -> str:
    if at is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S", time.localtime(at))


def number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if abs(value) >= 10_000:
        return f"{value / 1000:.1f}k"
    if value == int(value):
        return f"{int(value)}"
    return f"{value:.1f}"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.1f}s"


def progress_bar(done: float, total: float, width: int = 10) -> Text:
    """`██████░░░░ 60%` (`total` 0: not known yet, `-`)."""
    if total <= 0:
        return Text("-")
    share = min(1.0, max(0.0, done / total))
    filled = round(share * width)
    bar = Text()
    bar.append("█" * filled, style="green")
    bar.append("░" * (width - filled), style="dim")
    bar.append(" ")  # a run of its own (see the module's docstring)
    bar.append(f"{int(share * 100)}%")
    return bar


def gap(ms: float | None) -> str:
    return "-" if ms is None else f"{ms:.0f}ms"
