"""Threads that import issu's modules at the same moment (the console's workers, the demo's
startup threads) all get a working kombu. kombu replaces its module object at the end of its
import; a thread importing it concurrently used to get the replaced object, without
`Connection` (seen: `issu demo up --console` failed at once with "module 'kombu' has no
attribute 'Connection'"). Each try is a fresh interpreter: the race is on the first import."""

from __future__ import annotations

import subprocess
import sys

ISSU_MAIN = """
import contextlib, io, sys
sys.argv = ["issu", "--help"]
from issu_tui.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    main()
"""
SCRIPT = """
import sys, threading
{entry}  # what the `issu` command and the demo's commands do first
barrier = threading.Barrier(6)
seen = []
def load():
    barrier.wait()
    import kombu  # as backends.rabbit, backends.runsync.* and demo.services.rabbitmq do
    seen.append(hasattr(kombu, "Connection"))
threads = [threading.Thread(target=load) for _ in range(6)]
for t in threads: t.start()
for t in threads: t.join()
print(sum(not ok for ok in seen))
"""


def test_modules_imported_by_threads_at_once_see_all_of_kombu() -> None:
    broken = []
    for attempt in range(20):
        entry = ("issu", "demo")[attempt % 2]
        first = ISSU_MAIN if entry == "issu" else "import demo"
        done = subprocess.run([sys.executable, "-c", SCRIPT.format(entry=first)],
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        if done.stdout.strip() != "0":
            broken.append((entry, attempt, done.stdout.strip()))
    assert broken == [], f"threads saw kombu without Connection: (entry, try, threads) {broken}"
