"""Which lane (and which apply process) a message goes to: by the uuid of its object, so
one object's changes are applied and republished in the order they were announced."""

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
        key.encode()  # the lane is a hash of its bytes
    except UnicodeEncodeError:
        return None  # not a UUID either: quarantined as such
    return key


def lane_of(body: bytes | str, lanes: int) -> int:
    """The worker lane of a message: by object uuid (unparsable bodies go to lane 0)."""
    return lane_of_key(object_key(body), lanes)


def lane_of_key(key: str | None, lanes: int, stride: int = 1) -> int:
    """`stride`: in an apply process, how many processes share the objects. The process was
    chosen by crc32 % processes, so the lane takes the quotient: the same remainder would
    leave all but 1/processes of each process's lanes without work."""
    return (zlib.crc32(key.encode()) // stride) % lanes if key else 0


def process_of(key: str | None, processes: int) -> int:
    return zlib.crc32(key.encode()) % processes if key else 0
