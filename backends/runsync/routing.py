"""Which apply process a message goes to: by the uuid of its object, so one object's changes
are applied and republished in the order they were announced (lanes.py keeps that order
inside the process)."""

from __future__ import annotations

import json
import zlib


def object_key(body: bytes | str) -> str | None:
    """The object uuid a message is about (None: not a JSON object with a uuid)."""
    try:
        decoded = json.loads(body)
    except Exception:
        return None
    if not isinstance(decoded, dict) or not decoded.get("uuid"):
        return None
    key = str(decoded["uuid"])
    try:
        key.encode()  # the process is a hash of its bytes
    except UnicodeEncodeError:
        return None  # not a UUID either: quarantined as such
    return key


def process_of(key: str | None, processes: int) -> int:
    return zlib.crc32(key.encode()) % processes if key else 0
