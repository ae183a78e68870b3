"""Contrail release numbers ("3.2.14", "4.1.0", "5.0", "2005" style builds are not versions)."""

from __future__ import annotations

import re

_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?(?:[.-].*)?$")


def parse_version(text: str) -> tuple[int, int, int]:
    """`"4.1.0"` -> `(4, 1, 0)`; raises ValueError naming the text when it is not a release."""
    match = _VERSION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a release number like 4.1.0 or 5.0")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)
