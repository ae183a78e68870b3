"""`issu tui --web` in a real headless Chromium: the dashboard arrives and shows the computes.

Writes the browser's screenshot to `ISSU_WEB_SCREENSHOT` when set (docs/console.md shows
docs/screenshots/web-dashboard.png, made this way), else into the test's temporary directory.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.tui.headless_chromium import Browser, _wait_for_async, chromium_path
from tests.tui.test_dialogs_refuse import _write_config
from tests.tui.tui_world import build_journal

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

COMPUTES = [f"cmp-{i:02d}" for i in range(1, 13)]
WINDOW = (1280, 880)  # room for all twelve rows of the dashboard's grid


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def web_console(tmp_path: Path) -> Iterator[str]:
    if chromium_path() is None:
        pytest.skip("Debian's chromium is not installed and could not be: `make "
                    "services-install` (demo/install-services.sh) installs it")
    build_journal(tmp_path, computes=len(COMPUTES)).close()
    config = tmp_path / "issu.toml"
    _write_config(config, tmp_path)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "issu_tui.tui_cli", "--web", "--config", str(config),
         "--host", "127.0.0.1", "--port", str(port)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "serve.log").open("wb"), start_new_session=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        # the server and the console it started for the browser tab share its session
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(60)


async def _served(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as reply:
            return reply.status == 200
    except aiohttp.ClientError:
        return False


def _grid_names(text: str) -> list[str]:
    """The first word of each row inside the "4 Computes" box."""
    lines = text.splitlines()
    top = next(i for i, line in enumerate(lines) if "4 Computes" in line)
    names = []
    for line in lines[top + 2:]:  # below the column headers
        words = line.strip("│ ▆▂▁▏").split()
        if not line.startswith("│") or not words:
            break
        names.append(words[0])
    return names


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk comes first
    return width, height


async def test_web_console_shows_the_dashboard_in_chromium(web_console: str,
                                                           tmp_path: Path) -> None:
    await _wait_for_async(lambda: _served(web_console), 120, f"the web console at {web_console}")
    async with Browser(*WINDOW) as browser:
        await browser.open(web_console)

        async def dashboard() -> str | None:
            text = await browser.terminal_text()
            shown = text is not None and "1 Dashboard" in text and "4 Computes" in text \
                and all(name in text for name in COMPUTES)
            return text if shown else None

        try:
            text = await _wait_for_async(dashboard, 240, "the dashboard in the browser")
        except TimeoutError:
            last = await browser.terminal_text()
            pytest.fail(f"the dashboard with every compute never showed; the page had:\n{last}")
        png = await browser.screenshot()
    assert "READ-ONLY" in text  # a browser tab never runs the executor
    assert _grid_names(text) == COMPUTES
    assert _png_size(png) == WINDOW
    out = Path(os.environ.get("ISSU_WEB_SCREENSHOT") or tmp_path / "web-dashboard.png")
    out.write_bytes(png)
    assert out.stat().st_size > 10_000  # a drawn page, not a blank one
