"""`issu sync translate --dry-run`: before/after of sample partitions, nothing written."""

from __future__ import annotations

from typing import Any

from backends.cassandra.connection import Connection
from backends.cassandra.registry import Registry
from backends.cassandra.schema import table_layout
from backends.cassandra.tables import RawRow, Rejected, SyncSettings, translate_rows
from backends.cassandra.translate import Cell
from backends.versions import version_path


def _cell(column: str, value: str | None) -> dict[str, Any]:
    return {"column": column, "value": value}


def dry_run_samples(old: Connection, registry: Registry, old_version: str, new_version: str,
                    tables: list[str], *, sample: int = 5, max_columns: int = 40,
                    settings: SyncSettings | None = None) -> dict[str, Any]:
    steps = version_path(old_version, new_version)
    page = (settings or SyncSettings()).page_size
    result: dict[str, Any] = {"from": old_version, "to": new_version,
                              "steps": [f"{a}->{b}" for a, b in steps], "tables": []}
    for qualified in tables:
        keyspace, _, table = qualified.partition(".")
        spec = registry.table(keyspace, table)
        translator = registry.translator(old_version, new_version, keyspace, table)
        entry: dict[str, Any] = {"table": qualified, "translator": translator.name,
                                 "partitions": []}
        result["tables"].append(entry)
        old_ks = old.side.keyspace(keyspace)
        layout = table_layout(old.session, old_ks, table)
        if layout is None:
            entry["note"] = f"{old_ks}.{table} absent on old"
            continue
        stmt = old.session.prepare(f'SELECT DISTINCT key FROM "{old_ks}"."{spec.name}"')
        stmt.fetch_size = page
        keys = []
        for (k,) in old.session.execute(stmt.bind(())):
            keys.append(layout.decode_key(k))
            if len(keys) >= sample:
                break
        part_stmt = old.session.prepare(
            f'SELECT column1, value, WRITETIME(value) FROM "{old_ks}"."{spec.name}" '
            "WHERE key = ?")
        for key in keys:
            bound = part_stmt.bind((layout.encode_key(key),))
            bound.fetch_size = page
            rows: list[RawRow] = []
            truncated = 0
            for c, v, ts in old.session.execute(bound):
                if len(rows) < max_columns:
                    rows.append((key, layout.decode_column(c),
                                 None if v is None else layout.decode_value(v), ts))
                else:
                    truncated += 1
            part: dict[str, Any] = {"key": key, "new_key": translator.key(key), "cells": [],
                                    "truncated": truncated}
            for _, _, item in translate_rows(translator, rows):
                if isinstance(item, Rejected):
                    part["cells"].append({"before": _cell(item.column, item.value),
                                          "after": None, "reason": item.reason})
                    continue
                assert isinstance(item, Cell)
                source = next((r for r in rows if translator.column(key, r[1]) == item.column),
                              None)
                if source is None:
                    part["cells"].append({"before": None,
                                          "after": _cell(item.column, item.value)})
                else:
                    part["cells"].append({"before": _cell(source[1], source[2]),
                                          "after": _cell(item.column, item.value)})
            entry["partitions"].append(part)
    return result
