"""Write SVG screenshots of every console screen and dialog into docs/screenshots/.

Same frozen data as the snapshot tests (a real journal in a temporary directory):
    .venv/bin/python bench/tui_screenshots.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["TZ"] = "UTC"
time.tzset()

SHOTS = [
    ("dashboard", (160, 50), ("1",)),
    ("dashboard-80x24", (80, 24), ("1",)),
    ("phase", (120, 36), ("2",)),
    ("sync", (120, 36), ("3",)),
    ("analytics", (160, 50), ("4",)),
    ("computes", (120, 36), ("5",)),
    ("events", (120, 36), ("6",)),
    ("upgrade-confirm", (100, 30), ("j", "j", "j", "j", "space", "space", "space", "u")),
    ("abort-typed", (100, 30), ("X",)),
    ("compute-detail", (120, 36), ("j", "j", "j", "enter")),
    ("help", (100, 40), ("question_mark",)),
    ("filter", (100, 30), ("slash", *"state:old", "enter")),
    ("preflight", (100, 30), ("c",)),
]


async def shoot(name: str, size: tuple[int, int], keys: tuple[str, ...], out: Path) -> None:
    from textual.widgets import Input

    from issu_tui.app import IssuApp
    from screens.widgets.events import EventTable
    from tests.tui.tui_world import (
        add_preflight,
        build_journal,
        config_for,
        frozen_analytics,
        make_backend,
    )

    with tempfile.TemporaryDirectory() as tmp:
        journal = build_journal(Path(tmp), computes=24)
        if name == "preflight":
            add_preflight(journal)
        app = IssuApp(make_backend(journal, config_for(Path(tmp))), refresh_interval=3600,
                      analytics_interval=3600)
        async with app.run_test(size=size) as pilot:
            while not app.refreshes:
                await pilot.pause(0.01)
            app._apply_analytics(frozen_analytics(journal), None)
            for key in keys:
                await pilot.press(key)
                await app.workers.wait_for_complete()
                await pilot.pause()
            for box in app.screen.query(Input):
                box.cursor_blink = False
            for table in app.screen.query(EventTable):
                table._to_end()
            await pilot.pause()
            (out / f"{name}.svg").write_text(app.export_screenshot(title=f"issu tui: {name}"))
        journal.close()


def main() -> None:
    out = ROOT / "docs" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    for name, size, keys in SHOTS:
        asyncio.run(shoot(name, size, keys, out))
        print(out / f"{name}.svg")


if __name__ == "__main__":
    main()
