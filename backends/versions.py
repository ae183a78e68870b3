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


# --------------------------------------------------------------------------- package versions
# What dpkg-query / rpm print for an installed package, e.g. `5.0.0-0.40`, `4.1.0.0-8`,
# `2:5.0.1~ubuntu18.04`, `5.0.1-1.el7`, `(none):5.0.1-1.el7`: [epoch:]upstream[-revision].
_EPOCH = re.compile(r"^(?:\d+|\(none\)):")
_RELEASE_DIGITS = re.compile(r"^\d+(?:\.\d+)*")


@dataclass(frozen=True)
class PackageVersion:
    epoch: int
    upstream: str   # e.g. "5.0.1~ubuntu18.04"
    revision: str   # e.g. "0.40", "1.el7"; "" when the string has none
    release: tuple[int, ...]  # the leading dotted numbers of upstream, trailing zeros dropped


def _release_numbers(text: str) -> tuple[int, ...]:
    match = _RELEASE_DIGITS.match(text)
    if not match:
        return ()
    numbers = [int(p) for p in match.group().split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()
    return tuple(numbers)


def parse_package_version(text: str) -> PackageVersion:
    """Split a dpkg/rpm version string; raises ValueError naming it when no release leads it.

    The revision is what follows the last `-` (dpkg's rule; rpm's VERSION-RELEASE has the
    same shape). A distro suffix after `~` or `+` stays in upstream but not in the release.
    """
    raw = text.strip()
    epoch = 0
    match = _EPOCH.match(raw)
    if match:
        head = match.group()[:-1]
        epoch = int(head) if head.isdigit() else 0
        raw = raw[match.end():]
    upstream, _, revision = raw.rpartition("-") if "-" in raw else (raw, "", "")
    release = _release_numbers(upstream)
    if not release:
        raise ValueError(f"{text!r} is not a package version like 5.0.1-1.el7 or 2:5.0.1~ubuntu")
    return PackageVersion(epoch, upstream, revision, release)


def release_matches(release: str, installed: str) -> bool:
    """Whether an installed package version is a build of the configured release.

    `5.0.1` matches `5.0.1`, `5.0.1-1.el7`, `2:5.0.1~ubuntu18.04`, `5.0.1.0-12`, never
    `5.0.10` nor `5.0.1.1`; `5.0` and `5.0.0` are the same release. A configured release
    that carries a revision (`5.0.0-0.40`) matches that build only (any epoch).
    """
    try:
        want = parse_package_version(release)
        have = parse_package_version(installed)
    except ValueError:
        return False
    if want.release != have.release:
        return False
    if want.revision:
        return (want.upstream, want.revision) == (have.upstream, have.revision)
    return True
