"""Natural order of names: `compute-2` before `compute-10`, wherever computes are listed."""

from __future__ import annotations

import re
from collections.abc import Iterable

_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[tuple[str | int, ...], str]:
    """Digit runs compare as numbers, letters without case (the name itself breaks ties)."""
    parts = _DIGITS.split(name.casefold())
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), name


def natural_sorted(names: Iterable[str]) -> list[str]:
    return sorted(names, key=natural_key)
