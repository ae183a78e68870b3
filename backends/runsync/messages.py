"""Contrail config change messages: validation and translation between releases.

Body (JSON): {"request-id", "oper": CREATE|UPDATE|DELETE, "type", "uuid", "fq_name",
["obj_dict"], ["extra_dict"]}. Releases before 5.0 spell type names with `-`
(`virtual-network`), 5.0 and later with `_`.
"""

from __future__ import annotations

import functools
import json
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backends.versions import version_path

OPERATIONS = ("CREATE", "UPDATE", "DELETE")


class BadMessage(ValueError):
    """The message cannot be applied whatever is retried; the text is the reason."""


@dataclass(frozen=True)
class Change:
    oper: str
    type: str
    uuid: str
    fq_name: tuple[str, ...] | None
    body: dict[str, Any]  # the whole message as received (republished after translation)
    # The object's earlier messages this one stands for (queued together, applied once):
    # the links their obj_dicts name count too (backends/runsync/apply.message_links).
    coalesced: tuple[Change, ...] = ()


def parse(payload: bytes | str | dict[str, Any]) -> Change:
    """Decode and validate one message; raises BadMessage with the reason."""
    if isinstance(payload, dict):
        body = payload
    else:
        try:
            body = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadMessage(f"body is not JSON: {exc}") from None
        except RecursionError:
            raise BadMessage("body is not JSON this tool can read: nested too deeply") from None
    if not isinstance(body, dict):
        raise BadMessage(f"body is a JSON {type(body).__name__}, expected an object")
    oper = body.get("oper")
    if oper not in OPERATIONS:
        raise BadMessage(f"oper {oper!r} is not one of {', '.join(OPERATIONS)}")
    obj_type = body.get("type")
    if not isinstance(obj_type, str) or not obj_type or ":" in obj_type or \
            not _is_utf8(obj_type):
        raise BadMessage(f"type {obj_type!r} is not an object type name")
    obj_uuid = body.get("uuid")
    try:
        uuidlib.UUID(str(obj_uuid))
    except ValueError:
        raise BadMessage(f"uuid {obj_uuid!r} is not a UUID") from None
    fq = body.get("fq_name")
    fq_name: tuple[str, ...] | None = None
    if fq is not None:
        if not isinstance(fq, list) or not fq or \
                not all(isinstance(p, str) and _is_utf8(p) for p in fq):
            raise BadMessage(f"fq_name {fq!r} is not a list of names")
        fq_name = tuple(fq)
    return Change(oper, obj_type, str(obj_uuid), fq_name, body)


def _is_utf8(text: str) -> bool:
    """False for a string with lone surrogates (JSON's "\\ud800"): it cannot be written to
    Cassandra nor named in an event."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def underscore(type_name: str) -> str:
    return type_name.replace("-", "_")


# Message translators per era step; each takes and returns a message body (a copy).
_RENAMED_PROPS_4_TO_5 = {"virtual_network_network_id": "virtual_network_id"}


def _step_4x_to_50(body: dict[str, Any]) -> dict[str, Any]:
    out = dict(body)
    out["type"] = underscore(str(body["type"]))
    obj_dict = body.get("obj_dict")
    if isinstance(obj_dict, dict) and any(k in obj_dict for k in _RENAMED_PROPS_4_TO_5):
        out["obj_dict"] = {_RENAMED_PROPS_4_TO_5.get(k, k): v for k, v in obj_dict.items()}
    return out


def _step_50_to_4x(body: dict[str, Any]) -> dict[str, Any]:
    """_step_4x_to_50's inverse (the reverse replication after finalize)."""
    out = dict(body)
    out["type"] = str(body["type"]).replace("_", "-")
    back = {new: old for old, new in _RENAMED_PROPS_4_TO_5.items()}
    obj_dict = body.get("obj_dict")
    if isinstance(obj_dict, dict) and any(k in obj_dict for k in back):
        out["obj_dict"] = {back.get(k, k): v for k, v in obj_dict.items()}
    return out


MESSAGE_STEPS: dict[tuple[str, str], Callable[[dict[str, Any]], dict[str, Any]]] = {
    ("4.x", "5.0"): _step_4x_to_50,
}
# keyed by the forward step they undo
MESSAGE_INVERSES: dict[tuple[str, str], Callable[[dict[str, Any]], dict[str, Any]]] = {
    ("4.x", "5.0"): _step_50_to_4x,
}


def translate(body: dict[str, Any], old_version: str, new_version: str, *,
              reverse: bool = False) -> dict[str, Any]:
    """The message as the new cluster's consumers expect it (steps chained; identity when
    a side has no version or a step changes nothing). `reverse`: the source `old_version`
    is the newer release and the inverse steps run, last step first."""
    out = dict(body)
    if not (old_version and new_version):
        return out
    for fn in _steps(old_version, new_version, reverse):
        out = fn(out)
    return out


@functools.lru_cache(maxsize=64)
def _steps(old_version: str, new_version: str, reverse: bool
           ) -> tuple[Callable[[dict[str, Any]], dict[str, Any]], ...]:
    """The message translators from `old_version` to `new_version`, in order (worked out
    once per pair: run-sync asks for every message it republishes)."""
    if reverse:
        backs = (MESSAGE_INVERSES.get(step) for step in
                 reversed(version_path(new_version, old_version)))
        return tuple(fn for fn in backs if fn is not None)
    fns = (MESSAGE_STEPS.get(step) for step in version_path(old_version, new_version))
    return tuple(fn for fn in fns if fn is not None)
