"""A (key, column) -> (writetime, digest) map that spills to a temporary SQLite file when
it grows past a threshold, so a slice or a partition of any width fits a fixed memory budget."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator

Entry = tuple[int, int]  # writetime, value digest (0 when not needed)

_CHUNK = 400  # parameters per statement stay below SQLite's limit


class SpillMap:
    def __init__(self, threshold: int = 100_000, directory: str | None = None) -> None:
        self._threshold = threshold
        self._directory = directory
        self._mem: dict[tuple[str, str], Entry] | None = {}
        self._db: sqlite3.Connection | None = None
        self._path: str | None = None
        self._count = 0

    def __len__(self) -> int:
        return len(self._mem) if self._mem is not None else self._count

    @property
    def spilled(self) -> bool:
        return self._db is not None

    def _spill(self) -> None:
        fd, self._path = tempfile.mkstemp(prefix="issu-spill-", suffix=".db", dir=self._directory)
        os.close(fd)
        self._db = sqlite3.connect(self._path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("PRAGMA cache_size=-16000")  # 16 MB page cache at most
        self._db.execute("CREATE TABLE m (k TEXT, c TEXT, ts INTEGER, d INTEGER, "
                         "PRIMARY KEY (k, c)) WITHOUT ROWID")
        assert self._mem is not None
        self._db.executemany("INSERT OR REPLACE INTO m VALUES (?, ?, ?, ?)",
                             ((k, c, ts, d) for (k, c), (ts, d) in self._mem.items()))
        self._count = len(self._mem)
        self._mem = None

    def put_many(self, items: Iterable[tuple[str, str, int, int]]) -> None:
        if self._mem is not None:
            for k, c, ts, d in items:
                self._mem[(k, c)] = (ts, d)
            if len(self._mem) > self._threshold:
                self._spill()
            return
        assert self._db is not None
        items = list(items)
        self._db.executemany("INSERT OR REPLACE INTO m VALUES (?, ?, ?, ?)", items)
        self._count += len(items)  # scans never repeat a (key, column): exact in practice

    def take_many(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], Entry]:
        """Remove and return the entries present among `pairs`."""
        if not pairs:
            return {}
        if self._mem is not None:
            found: dict[tuple[str, str], Entry] = {}
            for pair in pairs:
                entry = self._mem.pop(pair, None)
                if entry is not None:
                    found[pair] = entry
            return found
        if self._count == 0:
            return {}
        assert self._db is not None
        found = {}
        by_key: dict[str, list[str]] = {}
        for k, c in pairs:
            by_key.setdefault(k, []).append(c)
        for k, columns in by_key.items():
            # `k = ? AND c IN (...)` walks the primary key index; no table scan
            for i in range(0, len(columns), _CHUNK):
                chunk = columns[i:i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"DELETE FROM m WHERE k = ? AND c IN ({marks}) RETURNING k, c, ts, d",
                    [k, *chunk]).fetchall()
                for rk, rc, ts, d in rows:
                    found[(rk, rc)] = (ts, d)
        self._count -= len(found)
        return found

    def items(self) -> Iterator[tuple[str, str, int, int]]:
        """What is left, ordered by key then column when spilled."""
        if self._mem is not None:
            for (k, c), (ts, d) in list(self._mem.items()):
                yield k, c, ts, d
            return
        assert self._db is not None
        cursor = self._db.execute("SELECT k, c, ts, d FROM m ORDER BY k, c")
        while True:
            rows = cursor.fetchmany(1000)
            if not rows:
                return
            yield from rows

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)
            self._path = None

    def __enter__(self) -> SpillMap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
