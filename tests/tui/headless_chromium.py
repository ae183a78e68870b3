"""Drive Debian's headless Chromium over the DevTools protocol (test helper, loopback only).

The web console (textual-serve) draws the terminal with xterm.js on a canvas, so the page's
DOM holds no text. A script injected before the page loads keeps a reference to the xterm.js
Terminal when textual-serve's client stores it (as `.terminal`); the test then reads the
terminal's rows, which are what the canvas shows.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = "chromium"  # Debian's package (demo/install-services.sh installs it)

KEEP_TERMINAL = """
Object.defineProperty(Object.prototype, 'terminal', {
  configurable: true,
  set(value) {
    Object.defineProperty(this, 'terminal',
                          {value, writable: true, configurable: true, enumerable: true});
    if (value && value.buffer && value.buffer.active) { window.__issuTerminal = value; }
  },
});
"""

READ_ROWS = """
(() => {
  const t = window.__issuTerminal;
  if (!t) return null;
  const b = t.buffer.active, rows = [];
  for (let i = 0; i < t.rows; i++) {
    const line = b.getLine(b.viewportY + i);
    rows.push(line ? line.translateToString(true) : '');
  }
  return rows.join('\\n');
})()
"""


def chromium_path() -> str | None:
    return shutil.which(CHROMIUM)


class Browser:
    """One headless Chromium with one page; every name resolves nowhere but 127.0.0.1."""

    def __init__(self, width: int, height: int) -> None:
        self.size = (width, height)
        self._profile = tempfile.TemporaryDirectory(prefix="issu-chromium-")
        self._process: subprocess.Popen[bytes] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._next_id = 0

    async def __aenter__(self) -> Browser:
        path = chromium_path()
        assert path is not None
        profile = Path(self._profile.name)
        self._process = subprocess.Popen(
            [path, "--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", f"--window-size={self.size[0]},{self.size[1]}",
             # the page asks for a web font: no name resolves, nothing leaves loopback
             "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-default-apps", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        port = await _wait_for(lambda: _first_line(port_file), 120, "Chromium's DevTools port")
        self._session = aiohttp.ClientSession()
        targets = await _wait_for_async(lambda: self._pages(port), 60, "Chromium's first page")
        self._ws = await self._session.ws_connect(targets[0]["webSocketDebuggerUrl"],
                                                  max_msg_size=0)
        await self.call("Page.enable")
        await self.call("Emulation.setDeviceMetricsOverride", width=self.size[0],
                        height=self.size[1], deviceScaleFactor=1, mobile=False)
        await self.call("Page.addScriptToEvaluateOnNewDocument", source=KEEP_TERMINAL)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(30)
        self._profile.cleanup()

    async def _pages(self, port: str) -> list[dict[str, Any]] | None:
        assert self._session is not None
        try:
            async with self._session.get(f"http://127.0.0.1:{port}/json/list") as reply:
                targets = await reply.json()
        except aiohttp.ClientError:
            return None
        return [t for t in targets if t.get("type") == "page"] or None

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        assert self._ws is not None
        self._next_id += 1
        ident = self._next_id
        await self._ws.send_json({"id": ident, "method": method, "params": params})
        while True:
            message = await self._ws.receive_json(timeout=120)
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    async def open(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def terminal_text(self) -> str | None:
        """The rows the terminal shows now (None until textual-serve made its terminal)."""
        result = await self.call("Runtime.evaluate", expression=READ_ROWS, returnByValue=True)
        return result["result"].get("value")

    async def screenshot(self) -> bytes:
        shot = await self.call("Page.captureScreenshot", format="png")
        return base64.b64decode(shot["data"])


def _first_line(path: Path) -> str | None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    return lines[0] if len(lines) >= 2 else None  # written whole: port, then the path


async def _wait_for(probe: Any, timeout: float, what: str) -> Any:
    return await _wait_for_async(lambda: _as_coroutine(probe()), timeout, what)


async def _as_coroutine(value: Any) -> Any:
    return value


async def _wait_for_async(probe: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await probe()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{what}: not there after {timeout:.0f}s")
