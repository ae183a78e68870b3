"""A benchmark's latest run on its docs page: between `<!-- NAME:begin -->` and
`<!-- NAME:end -->`, so a rerun replaces its own block and nothing else of the page."""

from __future__ import annotations

import sys
from pathlib import Path


def write_block(path: Path, name: str, lines: list[str], *, new_page: str = "# Benchmarks\n"
                ) -> None:
    """`lines` between the `name` markers of the page at `path` (appended, markers and all,
    when the page has none; the page created with `new_page` when it does not exist)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = "\n".join([begin, *lines, end]) + "\n"
    text = path.read_text() if path.exists() else new_page
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        text = head + block + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)
    print(f"results written to {path}")


def measured(machine_line: str, module: str) -> list[str]:
    """The lines a block opens with: the machine and the command that made it (this run's
    arguments)."""
    command = f".venv/bin/python -m {module} " + " ".join(sys.argv[1:])
    return [f"Measured {machine_line}. Command:", "", "```", command, "```", ""]
