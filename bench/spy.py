"""Where a process's time goes, from py-spy: record while a step runs, then summarise the
collapsed stacks (`-f raw`) by own time (the innermost frame) and by inclusive time."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path


class Recording:
    """py-spy sampling `pid` and its subprocesses (on-CPU samples only) until `stop`;
    `gil`: only the thread holding the GIL (Python's own CPU, without the threads that are
    runnable but wait for a core or for the GIL, which a loaded box shows as on-CPU)."""

    def __init__(self, pid: int, path: Path, rate: int = 100, *, gil: bool = False) -> None:
        self.path = path
        self._proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pid), "-o",
             str(path), "-f", "raw", "-r", str(rate), "--nonblocking", "--subprocesses",
             *(["--gil"] if gil else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        self._proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._proc.kill()


def _frame(entry: str) -> str:
    """`func (path/module.py:123)` -> `func (module.py)` (lines merged)."""
    name, _, where = entry.partition(" (")
    file = where.rsplit(":", 1)[0].rsplit("/", 1)[-1]
    return f"{name} ({file})"


def summary(path: Path, top: int = 15) -> list[str]:
    """Markdown lines: the `top` functions by own and by inclusive share of the samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";") if f and not f.startswith("process ")]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return ["(no samples)"]
    lines = [f"{total:,} on-CPU samples.", "", "| own % | function | | inclusive % | function |",
             "|---:|---|---|---:|---|"]
    for (o_name, o_n), (i_name, i_n) in zip(own.most_common(top), inclusive.most_common(top),
                                            strict=False):
        lines.append(f"| {100 * o_n / total:.1f} | `{o_name}` | | {100 * i_n / total:.1f} | "
                     f"`{i_name}` |")
    return lines


if __name__ == "__main__":
    print("\n".join(summary(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 15)))
