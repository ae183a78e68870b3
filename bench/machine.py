"""What every published figure records, and the services a benchmark starts.

A figure that does not reproduce can only be understood with the machine it was made on:
`Machine.now()` reads the CPU model, cores, kernel, memory, the commit (and whether the
tree had uncommitted changes) and the load average; `Machine.line()` prints it for the
page. `bench_services` starts what a benchmark needs, and when it ends stops what it
started (unless `--keep`), saying which: left running, they would slow every later
measurement on the box.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from demo.services import Endpoints, Launcher

ROOT = Path(__file__).resolve().parent.parent


def _cpu_model() -> str:
    """The model name, with family/model/clock: a hypervisor often shows only "AMD EPYC",
    which names several generations of very different speed."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            fields.setdefault(name.strip(), value.strip())
    model = fields.get("model name") or platform.processor() or "unknown"
    if "cpu family" in fields and "model" in fields:
        model += f" (family {fields['cpu family']} model {fields['model']}"
        model += f", {float(fields['cpu MHz']):.0f} MHz)" if "cpu MHz" in fields else ")"
    return model


def _memory_gib() -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    return 0.0


def python_speed_ms() -> float:
    """CPU milliseconds of a fixed pure-Python workload (best of 5): the single-thread
    speed figures of two machines can be scaled by, whatever their CPU names say."""
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        total = 0
        for i in range(300_000):
            total += i * i % 7
        best = min(best, time.process_time() - started)
    return best * 1000


def tree_dirty() -> bool:
    """Whether the checkout measured has uncommitted changes to tracked files, docs/ aside
    (the benchmarks of a `make bench` before this one wrote their figures there)."""
    return bool(_git("status", "--porcelain", "--untracked-files=no", "--", ".",
                     ":(exclude)docs"))


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


@dataclass
class Machine:
    cpu_model: str
    cores: int
    kernel: str
    memory_gib: float
    commit: str
    dirty: bool
    date_utc: str
    load_before: tuple[float, float, float]
    python_ms: float = 0.0
    load_after: tuple[float, float, float] | None = None

    @classmethod
    def now(cls) -> Machine:
        return cls(cpu_model=_cpu_model(), cores=os.cpu_count() or 0,
                   kernel=platform.release(), memory_gib=_memory_gib(),
                   commit=_git("rev-parse", "--short", "HEAD") or "unknown",
                   dirty=tree_dirty(),
                   date_utc=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   load_before=os.getloadavg(), python_ms=python_speed_ms())

    def finish(self) -> Machine:
        self.load_after = os.getloadavg()
        return self

    def line(self) -> str:
        def load(values: tuple[float, float, float] | None) -> str:
            return "-" if values is None else " / ".join(f"{v:.2f}" for v in values)

        commit = self.commit + (" (with uncommitted changes)" if self.dirty else "")
        return (f"{self.date_utc}, commit {commit}; {self.cpu_model}, {self.cores} cores, "
                f"{self.memory_gib:.0f} GiB, Linux {self.kernel}, Python speed probe "
                f"{self.python_ms:.0f} ms; load average (1/5/15 min) "
                f"before {load(self.load_before)}, after {load(self.load_after)}")


@contextlib.contextmanager
def bench_services(launcher: Launcher, names: Iterable[str], *,
                   keep: bool = False) -> Iterator[Endpoints]:
    """Start (or reuse) the services `names`; at the end stop those this call started,
    unless `keep`, and say what was stopped and what was left running."""
    wanted = launcher.names(names)
    already = {s.name for s in launcher.status(wanted, probe=False) if s.state != "stopped"}
    try:
        yield launcher.up(only=wanted)
    finally:
        started = [n for n in wanted if n not in already]
        net = launcher.net
        if keep:
            print(f"services left running (--keep): {', '.join(wanted)}; stop them with "
                  f"`.venv/bin/python -m demo.services down --net {net} --profile test`")
        else:
            stopped = launcher.down(only=started) if started else []
            print(f"stopped the services this benchmark started: "
                  f"{', '.join(stopped) or 'none'}")
            if already:
                print(f"left running, as found: {', '.join(sorted(already))} (net {net})")
