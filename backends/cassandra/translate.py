"""Row translation between Contrail releases.

Data model: a table holds partitions (`key`) of cells (`column`, `value`, `writetime`). A
translator for one table maps a partition key, maps column names (independently of values, so
a deleted column can be found on the new side), and translates a partition's cells as a
stream: `partition(key)` returns a per-partition object fed one cell at a time, then asked to
`finish()` (for cells that depend on the whole partition, e.g. a defaulted property).

A cell the translator rejects or cannot decode raises `RejectCell`: the engine puts it in the
quarantine table with the reason and goes on. Nothing is dropped silently.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Cell:
    column: str
    value: str
    writetime: int


class RejectCell(Exception):
    """Raised by a translator for a cell it refuses; the message is the reason recorded."""


class PartitionTranslation:
    """Identity: every cell unchanged, nothing added at the end."""

    def cell(self, cell: Cell) -> list[Cell]:
        return [cell]

    def finish(self) -> list[Cell]:
        return []


class TableTranslator:
    """Identity translator; subclass and override what a step changes.

    `renames_keys` must be True when `key()` is not the identity: the engine then checks extra
    partitions on the new side table-wide instead of per token slice.
    """

    renames_keys: bool = False
    name: str = "identity"

    def key(self, key: str) -> str:
        return key

    def column(self, key: str, column: str) -> str:
        return column

    def partition(self, key: str) -> PartitionTranslation:
        return _Renaming(self, key)

    @property
    def is_identity(self) -> bool:
        return False


class _Renaming(PartitionTranslation):
    def __init__(self, table: TableTranslator, key: str) -> None:
        self._table, self._key = table, key

    def cell(self, cell: Cell) -> list[Cell]:
        column = self._table.column(self._key, cell.column)
        return [cell if column == cell.column else Cell(column, cell.value, cell.writetime)]


_IDENTITY_PARTITION = PartitionTranslation()


class IdentityTranslator(TableTranslator):
    @property
    def is_identity(self) -> bool:
        return True

    def partition(self, key: str) -> PartitionTranslation:
        return _IDENTITY_PARTITION


IDENTITY = IdentityTranslator()


class _ChainPartition(PartitionTranslation):
    def __init__(self, parts: Sequence[PartitionTranslation]) -> None:
        self._parts = parts

    def cell(self, cell: Cell) -> list[Cell]:
        cells = [cell]
        for part in self._parts:
            cells = [out for c in cells for out in part.cell(c)]
        return cells

    def finish(self) -> list[Cell]:
        pending: list[Cell] = []
        for part in self._parts:
            out = [o for c in pending for o in part.cell(c)]
            out.extend(part.finish())
            pending = out
        return pending


class ChainTranslator(TableTranslator):
    """Steps applied in order (e.g. 3.2.x -> 4.x -> 5.0)."""

    def __init__(self, steps: Sequence[TableTranslator]) -> None:
        self.steps = [s for s in steps if not s.is_identity]
        self.renames_keys = any(s.renames_keys for s in self.steps)
        self.name = " -> ".join(s.name for s in self.steps) or "identity"

    @property
    def is_identity(self) -> bool:
        return not self.steps

    def key(self, key: str) -> str:
        for step in self.steps:
            key = step.key(key)
        return key

    def column(self, key: str, column: str) -> str:
        for step in self.steps:
            column = step.column(key, column)
            key = step.key(key)
        return column

    def partition(self, key: str) -> PartitionTranslation:
        if not self.steps:
            return _IDENTITY_PARTITION
        parts = []
        for step in self.steps:
            parts.append(step.partition(key))
            key = step.key(key)
        return parts[0] if len(parts) == 1 else _ChainPartition(parts)


# --------------------------------------------------------------------------- Contrail 4.x -> 5.0

DEFAULT_PERMS2 = {"owner": "cloud-admin", "owner_access": 7, "global_access": 0, "share": []}
_LINK_PREFIXES = ("parent", "children", "ref", "backref")
_RENAMED_PROPS = {"prop:virtual_network_network_id": "prop:virtual_network_id"}


def underscore_type(type_name: str) -> str:
    return type_name.replace("-", "_")


def _obj_uuid_column(column: str, renamed: dict[str, str],
                     retype: Callable[[str], str]) -> str:
    """An obj_uuid_table column in the other era's spelling: a renamed property, or a link
    column (parent/children/ref/backref) with its type segment respelled."""
    if column in renamed:
        return renamed[column]
    head, sep, rest = column.partition(":")
    if sep and head in _LINK_PREFIXES:
        type_name, sep2, tail = rest.partition(":")
        return f"{head}:{retype(type_name)}{sep2}{tail}"
    return column


class ObjUuid4to5(TableTranslator):
    """obj_uuid_table, 4.x -> 5.0: `-` to `_` in type names (the `type` value and the type
    segment of parent/children/ref/backref columns), `prop:virtual_network_network_id`
    renamed `prop:virtual_network_id`, `prop:perms2` defaulted when an object has none.
    Every value must be JSON (Contrail stores JSON there): one that is not is rejected."""

    name = "contrail 4.x->5.0 obj_uuid_table"

    def column(self, key: str, column: str) -> str:
        return _obj_uuid_column(column, _RENAMED_PROPS, underscore_type)

    def partition(self, key: str) -> PartitionTranslation:
        return _ObjUuidPartition(self, key)


class _ObjUuidPartition(PartitionTranslation):
    def __init__(self, table: ObjUuid4to5, key: str) -> None:
        self._table, self._key = table, key
        self._is_object = False
        self._has_perms2 = False
        # writetime of the defaulted perms2: the `type` cell's, written once at creation, so
        # the default stays the same for the object's life (the newest cell's would move with
        # every change of the object, and go backwards when that cell is deleted)
        self._type_writetime = 0

    def cell(self, cell: Cell) -> list[Cell]:
        try:
            decoded = json.loads(cell.value)
        except (ValueError, TypeError) as exc:
            raise RejectCell(f"value is not JSON: {exc}") from None
        column = self._table.column(self._key, cell.column)
        value = cell.value
        if cell.column == "type":
            if not isinstance(decoded, str):
                raise RejectCell(f"type must be a JSON string, got {type(decoded).__name__}")
            self._is_object = True
            self._type_writetime = cell.writetime
            value = json.dumps(underscore_type(decoded))
        elif column == "prop:perms2":
            self._has_perms2 = True
        return [Cell(column, value, cell.writetime)]

    def finish(self) -> list[Cell]:
        if self._is_object and not self._has_perms2:
            return [Cell("prop:perms2", json.dumps(DEFAULT_PERMS2),
                         self._type_writetime)]
        return []


class ObjFqName4to5(TableTranslator):
    """obj_fq_name_table, 4.x -> 5.0: the partition key is the type name, `-` becomes `_`."""

    name = "contrail 4.x->5.0 obj_fq_name_table"
    renames_keys = True

    def key(self, key: str) -> str:
        return underscore_type(key)


class ObjShared4to5(TableTranslator):
    """obj_shared_table, 4.x -> 5.0: the partition key is the object's type, `-` becomes `_`
    as 5.0's api-server spells it (columns `<share type>:<id>:<uuid>` name no type). Kept
    as old spelled it, new would hold both spellings of one type and the way back could
    not tell which of them old's partition is."""

    name = "contrail 4.x->5.0 obj_shared_table"
    renames_keys = True

    def key(self, key: str) -> str:
        return underscore_type(key)

    def partition(self, key: str) -> PartitionTranslation:
        return _IDENTITY_PARTITION


# --------------------------------------------------------------------------- Contrail 5.0 -> 4.x
# The inverses, for the reverse replication after finalize (issu revert). 4.x type names
# never hold `_`, so `_` -> `-` undoes the forward step exactly. A `prop:perms2` is kept:
# 4.x stores it too (it only had no default), so a defaulted one reads the same there.

_RENAMED_BACK = {new: old for old, new in _RENAMED_PROPS.items()}


def hyphen_type(type_name: str) -> str:
    return type_name.replace("_", "-")


class ObjUuid5to4(TableTranslator):
    """obj_uuid_table, 5.0 -> 4.x (ObjUuid4to5's inverse): `_` to `-` in type names (the
    `type` value, the type segment of link columns), `prop:virtual_network_id` back to
    `prop:virtual_network_network_id`. A value that is not JSON is rejected."""

    name = "contrail 5.0->4.x obj_uuid_table"

    def column(self, key: str, column: str) -> str:
        return _obj_uuid_column(column, _RENAMED_BACK, hyphen_type)

    def partition(self, key: str) -> PartitionTranslation:
        return _ObjUuidBack(self, key)


class _ObjUuidBack(PartitionTranslation):
    def __init__(self, table: ObjUuid5to4, key: str) -> None:
        self._table, self._key = table, key

    def cell(self, cell: Cell) -> list[Cell]:
        try:
            decoded = json.loads(cell.value)
        except (ValueError, TypeError) as exc:
            raise RejectCell(f"value is not JSON: {exc}") from None
        value = cell.value
        if cell.column == "type":
            if not isinstance(decoded, str):
                raise RejectCell(f"type must be a JSON string, got {type(decoded).__name__}")
            value = json.dumps(hyphen_type(decoded))
        return [Cell(self._table.column(self._key, cell.column), value, cell.writetime)]


class ObjFqName5to4(TableTranslator):
    """obj_fq_name_table, 5.0 -> 4.x (ObjFqName4to5's inverse): `_` becomes `-` in the key."""

    name = "contrail 5.0->4.x obj_fq_name_table"
    renames_keys = True

    def key(self, key: str) -> str:
        return hyphen_type(key)


class ObjShared5to4(TableTranslator):
    """obj_shared_table, 5.0 -> 4.x (ObjShared4to5's inverse): `_` becomes `-` in the key, so
    old's api-server finds a share new's made after finalize under the type it reads."""

    name = "contrail 5.0->4.x obj_shared_table"
    renames_keys = True

    def key(self, key: str) -> str:
        return hyphen_type(key)

    def partition(self, key: str) -> PartitionTranslation:
        return _IDENTITY_PARTITION


def translate_partition(translator: TableTranslator, key: str,
                        cells: Sequence[Cell]) -> tuple[str, list[Cell], list[tuple[Cell, str]]]:
    """Whole-partition helper (dry runs, tests): (new key, cells, rejected (cell, reason))."""
    part = translator.partition(key)
    out: list[Cell] = []
    rejected: list[tuple[Cell, str]] = []
    for cell in cells:
        try:
            out.extend(part.cell(cell))
        except RejectCell as exc:
            rejected.append((cell, str(exc)))
    out.extend(part.finish())
    return translator.key(key), out, rejected
