"""A streaming writer of the original snapshot format (see format.py).

Written piece by piece in document order, with the separators of Python's `json.dumps` (as the
original writes it): memory stays bounded whatever the size of the database. The ZooKeeper part
is a JSON string holding a JSON text; escaping is per character, so each entry's text is escaped
and appended on its own. The file appears under its name only once complete (written to
`<name>.partial`, renamed at the end; removed if the export fails).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
from collections.abc import Iterator
from json.encoder import encode_basestring_ascii as _quote
from pathlib import Path
from typing import TextIO


class SnapshotWriter:
    """`keyspace()`, `table()`, `row()`, `cell()` in document order, then `znode()` for each
    ZooKeeper entry, then `close()`."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._depth = 1          # 1 in cassandra, 2 in a keyspace, 3 in a table, 4 in a row
        self._first = [True, True, True, True, True]
        self._zk_first = True
        self._in_zookeeper = False
        self.cells = 0
        self.znodes = 0
        out.write('{"cassandra": {')

    def _open(self, depth: int, name: str) -> None:
        """Close what is open below `depth`, then open the object `name` at that depth."""
        assert not self._in_zookeeper, "Cassandra data after the ZooKeeper part"
        out = self._out
        while self._depth > depth:
            out.write("}")
            self._depth -= 1
        if self._depth < depth:
            raise ValueError("keyspace, table and row must be opened in that order")
        out.write((_quote(name) if self._first[depth] else ", " + _quote(name)) + ": {")
        self._first[depth] = False
        self._depth = depth + 1
        self._first[depth + 1] = True

    def keyspace(self, name: str) -> None:
        self._open(1, name)

    def table(self, name: str) -> None:
        self._open(2, name)

    def row(self, key: str) -> None:
        self._open(3, key)

    def cell(self, column: str, value: str, writetime: int) -> None:
        if self._depth != 4:
            raise ValueError("a cell outside a row")
        sep = "" if self._first[4] else ", "
        self._first[4] = False
        self._out.write(f"{sep}{_quote(column)}: [{_quote(value)}, {int(writetime)}]")
        self.cells += 1

    def znode(self, path: str, data: bytes, stat: tuple[int, ...] | list[int]) -> None:
        if not self._in_zookeeper:
            self._close_cassandra()
        value = data.decode("utf-8", "surrogateescape")
        stat_text = ", ".join(str(int(v)) for v in stat)
        entry = f"[{_quote(path)}, [{_quote(value)}, [{stat_text}]]]"
        # the entry's own text is ASCII: only its quotes and backslashes need escaping again
        escaped = _quote(entry)[1:-1]
        self._out.write(escaped if self._zk_first else ", " + escaped)
        self._zk_first = False
        self.znodes += 1

    def _close_cassandra(self) -> None:
        self._out.write("}" * self._depth + ', "zookeeper": "[')
        self._depth = 0
        self._in_zookeeper = True

    def close(self) -> None:
        if not self._in_zookeeper:
            self._close_cassandra()
        self._out.write(']"}')


@contextlib.contextmanager
def open_snapshot(path: Path, *, gzip_level: int = 6) -> Iterator[SnapshotWriter]:
    """A SnapshotWriter on `path` (gzip when its name ends in .gz), published only when the
    block completes; an existing file is never overwritten (FileExistsError)."""
    if path.exists():
        raise FileExistsError(f"{path} exists; not overwritten")
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    raw = os.fdopen(fd, "wb")
    try:
        binary = (gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=gzip_level,
                                mtime=0) if path.name.endswith(".gz") else raw)
        text = io.TextIOWrapper(binary, encoding="utf-8", newline="",
                                write_through=False)
        writer = SnapshotWriter(text)
        yield writer
        writer.close()
        text.flush()
        text.detach()
        if binary is not raw:
            binary.close()
        raw.flush()
        os.fsync(raw.fileno())
        raw.close()
        if path.exists():
            raise FileExistsError(f"{path} appeared during the export; not overwritten")
        os.replace(partial, path)
    except BaseException:
        raw.close()
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        raise
