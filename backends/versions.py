"""Contrail release numbers and the translation eras between them.

A version path from old to new is a list of steps between consecutive eras; each step has
translators registered per keyspace/table (identity when none is registered).
Eras, in order: 3.2.x, 4.x, 5.0, 5.x (5.1 and later 5 releases).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?(?:[.-].*)?$")

Version = tuple[int, int, int]


class VersionPathError(ValueError):
    """No supported upgrade path between two releases."""


def parse_version(text: str) -> Version:
    """`"4.1.0"` -> `(4, 1, 0)`; raises ValueError naming the text when it is not a release."""
    match = _VERSION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a release number like 4.1.0 or 5.0")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


@dataclass(frozen=True)
class Era:
    name: str
    low: Version    # inclusive
    high: Version   # exclusive

    def contains(self, version: Version) -> bool:
        return self.low <= version < self.high


ERAS: tuple[Era, ...] = (
    Era("3.2.x", (3, 2, 0), (3, 3, 0)),
    Era("4.x", (4, 0, 0), (5, 0, 0)),
    Era("5.0", (5, 0, 0), (5, 1, 0)),
    Era("5.x", (5, 1, 0), (6, 0, 0)),
)


def era_of(version: str) -> Era:
    parsed = parse_version(version)
    for era in ERAS:
        if era.contains(parsed):
            return era
    supported = ", ".join(e.name for e in ERAS)
    raise VersionPathError(f"release {version} is outside the supported eras ({supported})")


def version_path(old: str, new: str) -> list[tuple[str, str]]:
    """The era steps from `old` to `new`, e.g. 3.2.5 -> 5.0.1 gives
    [("3.2.x", "4.x"), ("4.x", "5.0")]. Same era: no step. Downgrade: VersionPathError."""
    if parse_version(new) < parse_version(old):
        raise VersionPathError(f"no path from {old} down to {new}: ISSU only upgrades")
    start, end = era_of(old), era_of(new)
    names = [e.name for e in ERAS]
    i, j = names.index(start.name), names.index(end.name)
    return [(names[k], names[k + 1]) for k in range(i, j)]
