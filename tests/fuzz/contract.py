"""The contract every input surface keeps, as assertions the fuzz tests share."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from click.testing import Result
from hypothesis import settings

EXIT_USAGE = 2  # bad configuration or usage (issu_tui.cli)


def budget(ci_examples: int, **more: Any) -> settings:
    """`ci_examples` examples in the default profile (keeps `make test` within minutes);
    the deep profile's count (`make fuzz`) otherwise. `more`: other settings."""
    if os.environ.get("ISSU_FUZZ_PROFILE", "ci") == "ci" and "ISSU_FUZZ_EXAMPLES" not in \
            os.environ:
        return settings(max_examples=ci_examples, **more)
    return settings(**more)


def no_traceback(result: Result) -> None:
    """The command ended by its own decision: an exit code, never an exception."""
    crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
    assert not crashed, (
        f"exception {type(result.exception).__name__}: {result.exception}\n"
        f"output: {result.output[-2000:]}")
    assert "Traceback" not in result.output, result.output[-3000:]


def usage_error(result: Result, *names: str) -> None:
    """Exit 2, no traceback, and the message names at least one of `names`
    (the file, the option, the key)."""
    no_traceback(result)
    assert result.exit_code == EXIT_USAGE, (result.exit_code, result.output[-2000:])
    if names:
        assert any(n in result.output for n in names), (names, result.output[-2000:])


def tree(root: Path) -> dict[str, tuple[int, float]]:
    """Every file under root with its size and mtime (to prove nothing was written)."""
    out = {}
    for path in root.rglob("*"):
        if path.is_file() or path.is_symlink():
            stat = path.lstat()
            out[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime)
    return out


@contextmanager
def unchanged(root: Path) -> Iterator[None]:
    """Asserts that nothing under `root` was created, changed or removed."""
    before = tree(root)
    yield
    assert tree(root) == before, "files written or changed"
