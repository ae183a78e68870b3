"""States keep their colours in a 16-colour terminal: only the 16 ANSI colours are used."""

from __future__ import annotations

from rich.color import ColorType
from rich.style import Style

from screens.format import LEVEL_STYLES, STATE_STYLES
from screens.widgets.panes import STEP_MARKS


def test_every_state_colour_is_one_of_the_16() -> None:
    styles = [*STATE_STYLES.values(), *LEVEL_STYLES.values(),
              *(style for _, style in STEP_MARKS.values())]
    for text in styles:
        color = Style.parse(text).color
        assert color is None or (color.type is ColorType.STANDARD and color.number < 16), text
    # and the states stay told apart by colour
    coloured = [s for s in STATE_STYLES.values() if s]
    assert len({Style.parse(s).color for s in coloured}) >= 5


def _drawn(tmp_path, term: str) -> str:
    """What `issu tui --read-only` draws in a 100x30 pseudo-terminal of type `term` until
    the compute grid shows (a frozen journal, no service needed)."""
    import fcntl
    import os
    import pty
    import select
    import struct
    import subprocess
    import sys
    import termios
    import time

    from issu_tui.config import to_toml
    from tests.tui.tui_world import build_journal, config_for

    build_journal(tmp_path, computes=12).close()
    config = tmp_path / "issu.toml"
    config.write_text(to_toml(config_for(tmp_path).model_dump(mode="json", exclude_none=True)))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLORTERM", "NO_COLOR")}
    env.update(TERM=term, COLUMNS="100", LINES="30")
    proc = subprocess.Popen([sys.executable, "-c", "from issu_tui.cli import main; main()",
                             "tui", "--read-only", "--config", str(config)],
                            stdin=slave, stdout=slave, stderr=slave, env=env,
                            start_new_session=True)
    os.close(slave)
    out = bytearray()
    try:
        deadline = time.monotonic() + 120
        while b"cmp-12" not in out and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    out += os.read(master, 65536)
                except OSError:
                    break
    finally:
        proc.kill()
        proc.wait(30)
        os.close(master)
    text = out.decode(errors="replace")
    assert "cmp-12" in text, text[-2000:]
    return text


def _sgr(text: str) -> list[str]:
    import re

    return re.findall(r"\x1b\[([0-9;]*)m", text)


def test_a_16_colour_terminal_gets_only_the_16_colours(tmp_path) -> None:
    """docs/console.md: Textual's theme is reduced to what TERM declares; with 16 colours no
    256-colour or true-colour code reaches the terminal, and the states still differ."""
    codes = _sgr(_drawn(tmp_path, "xterm-16color"))
    assert not [c for c in codes if "38;5" in c or "48;5" in c or "38;2" in c or "48;2" in c]
    foregrounds = {p for c in codes for p in c.split(";")
                   if p.isdigit() and (30 <= int(p) <= 37 or 90 <= int(p) <= 97)}
    assert {"91", "92"} <= foregrounds  # failed (red) and upgraded (green) rows


def test_a_256_colour_terminal_gets_the_theme_in_256_colours(tmp_path) -> None:
    codes = _sgr(_drawn(tmp_path, "xterm-256color"))
    assert any("38;5;" in c or "48;5;" in c for c in codes)
