"""A streaming reader of the original snapshot format (see format.py).

The document is parsed as it is read, in chunks: memory stays bounded whatever the size of the
file, of a row, or of the ZooKeeper part (a JSON string holding a JSON text, decoded and parsed
on the fly). Anything that is not that format, a truncated file, a corrupt gzip stream or text
that is not UTF-8 raises SnapshotError with the offset (characters of the decompressed text)
and the place in the document (`cassandra["ks"]["table"]["row"]...`).
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zlib
from collections.abc import Callable, Iterator
from json.decoder import JSONDecodeError
from pathlib import Path
from typing import BinaryIO, NamedTuple

from backends.snapshot.format import STAT_EPHEMERAL_OWNER, SnapshotError, path_in_document

# The standard library's own JSON string scanner (C when available); typeshed does not
# declare it, hence the lookup.
scanstring: Callable[[str, int, bool], tuple[str, int]] = vars(json.decoder)["scanstring"]

READ_CHUNK = 1 << 16
CELLS_PER_EVENT = 1000
_WS = re.compile(r"[ \t\n\r]*")
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
# the body of a JSON string up to its closing quote, an invalid character, or the buffer end
_STRING_BODY = re.compile(r'(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*')
# a string body ending in the first half of a surrogate pair (an escape, not an escaped "\\")
_HIGH_SURROGATE_TAIL = re.compile(r"(?:^|[^\\])(?:\\\\)*(\\u[dD][89abAB][0-9a-fA-F]{2})$")
_ESCAPE_MAX = 12  # an escape cut by a chunk end is at most this close to it


class KeyspaceStart(NamedTuple):
    keyspace: str


class TableStart(NamedTuple):
    keyspace: str
    table: str


class Cells(NamedTuple):
    """Cells of one row in document order (a wide row comes as several events)."""

    keyspace: str
    table: str
    key: str
    cells: list[tuple[str, str, int]]  # (column, value, writetime)


class Znode(NamedTuple):
    path: str                 # as in the file: "<cluster_id>/<name>/.../"
    data: bytes
    stat: tuple[int, ...]     # kazoo's ZnodeStat as written (may be empty)

    @property
    def ephemeral(self) -> bool:
        return len(self.stat) > STAT_EPHEMERAL_OWNER and self.stat[STAT_EPHEMERAL_OWNER] != 0


Event = KeyspaceStart | TableStart | Cells | Znode


class _Scanner:
    """JSON tokens from a text source read in chunks; positions are absolute offsets."""

    def __init__(self, read: Callable[[int], str], fail: Callable[[str, int, str], Exception]
                 ) -> None:
        self._read, self._fail = read, fail
        self.buf, self.pos, self.base, self.eof = "", 0, 0, False

    def offset(self) -> int:
        return self.base + self.pos

    def error(self, message: str, where: tuple[str, ...], offset: int | None = None
              ) -> Exception:
        return self._fail(message, self.offset() if offset is None else offset,
                          path_in_document(*where))

    def more(self) -> bool:
        if self.eof:
            return False
        chunk = self._read(READ_CHUNK)
        if not chunk:
            self.eof = True
            return False
        if self.pos:
            self.buf, self.base, self.pos = self.buf[self.pos:], self.base + self.pos, 0
        self.buf += chunk
        return True

    def peek(self) -> str:
        """The next non-blank character ("" at the end of the text), not consumed."""
        while True:
            # union-attr: _WS matches the empty string, so match() is never None here; a
            # check would run once per token, in the hottest loop of the read
            self.pos = _WS.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""

    def expect(self, char: str, where: tuple[str, ...], what: str = "") -> None:
        found = self.peek()
        if found != char:
            raise self.error(f"expected {what or repr(char)}, found "
                             f"{_describe(found)}", where)
        self.pos += 1

    def string(self, where: tuple[str, ...], what: str = "a string") -> str:
        if self.peek() != '"':
            raise self.error(f"expected {what}, found {_describe(self.peek())}", where)
        while True:
            try:
                value, end = scanstring(self.buf, self.pos + 1, True)
            except JSONDecodeError as exc:
                cut = exc.msg.startswith("Unterminated") or \
                    exc.pos + _ESCAPE_MAX >= len(self.buf)
                if cut and self.more():
                    continue  # the string goes on in the next chunk
                if self.eof and exc.msg.startswith("Unterminated"):
                    raise self.error("the text ends inside a string: the file is truncated",
                                     where, self.base + len(self.buf)) from None
                raise self.error(f"bad string: {exc.msg}", where, self.base + exc.pos) from None
            self.pos = end
            return value

    def integer(self, where: tuple[str, ...]) -> int:
        if self.peek() == "":
            raise self.error("expected an integer, found the end of the text: the file is "
                             "truncated", where)
        while True:
            match = _INT.match(self.buf, self.pos)
            if match and match.end() == len(self.buf) and self.more():
                continue
            if not match:
                raise self.error(f"expected an integer, found {_describe(self.peek())}", where)
            end = match.end()
            if end < len(self.buf) and self.buf[end] in ".eE":
                raise self.error("expected an integer, found a fraction", where)
            self.pos = end
            return int(match.group())

    def literal(self, word: str, where: tuple[str, ...]) -> None:
        while len(self.buf) - self.pos < len(word) and self.more():
            pass
        if self.buf.startswith(word, self.pos):
            self.pos += len(word)
            return
        raise self.error(f"expected {word}, found {_describe(self.peek())}", where)

    def members(self, where: tuple[str, ...], what: str) -> Iterator[str]:
        """The keys of an object, one by one; the caller reads each value before the next."""
        self.expect("{", where, f"an object ({what})")
        if self.peek() == "}":
            self.pos += 1
            return
        while True:
            key = self.string(where, f"a key ({what})")
            self.expect(":", where)
            yield key
            # the caller has read the value when the generator resumes
            if self._after_item("}", where):
                return

    def items(self, where: tuple[str, ...], what: str) -> Iterator[int]:
        """The positions of an array's items; the caller reads each item before the next."""
        self.expect("[", where, f"an array ({what})")
        if self.peek() == "]":
            self.pos += 1
            return
        index = 0
        while True:
            yield index
            index += 1
            if self._after_item("]", where):
                return

    def _after_item(self, close: str, where: tuple[str, ...]) -> bool:
        """Consume the ',' or the closing bracket after an item; True at the closing one."""
        found = self.peek()
        if found in (",", close):
            self.pos += 1
            return found == close
        raise self.error(f"expected ',' or {close!r}, found {_describe(found)}", where)

    def end(self, where: tuple[str, ...]) -> None:
        found = self.peek()
        if found:
            raise self.error(f"unexpected {_describe(found)} after the end of the document",
                             where)


def _describe(char: str) -> str:
    return "the end of the text (the file is truncated)" if char == "" else repr(char)


class _StringStream:
    """The decoded content of the JSON string at the scanner's position, read in chunks
    (the ZooKeeper part: a whole JSON text inside one string)."""

    def __init__(self, scanner: _Scanner, where: tuple[str, ...]) -> None:
        scanner.expect('"', where)
        self._sc, self._where, self.done = scanner, where, False

    def read(self, _size: int) -> str:
        sc = self._sc
        while not self.done:
            # union-attr: _STRING_BODY matches the empty string: match() is never None
            end = _STRING_BODY.match(sc.buf, sc.pos).end()  # type: ignore[union-attr]
            closing = end < len(sc.buf) and sc.buf[end] == '"'
            if not closing and end < len(sc.buf):
                # an invalid character, or an escape cut by the chunk's end
                if end + _ESCAPE_MAX < len(sc.buf) or not sc.more():
                    raise sc.error(f"bad character {sc.buf[end]!r} in the string",
                                   self._where, sc.base + end)
                continue
            body = sc.buf[sc.pos:end]
            if not closing:
                tail = _HIGH_SURROGATE_TAIL.search(body)
                if tail is not None:  # keep a surrogate pair's first half with its second
                    body = body[:tail.start(1)]
                    end = sc.pos + len(body)
            sc.pos = end + 1 if closing else end
            self.done = closing
            if body:
                text: str = json.loads('"' + body + '"')
                return text
            if not closing and not sc.more():
                raise sc.error("the text ends inside the ZooKeeper string: the file is "
                               "truncated", self._where)
        return ""


class SnapshotReader:
    """Iterating yields KeyspaceStart, TableStart, Cells and Znode events in document order;
    SnapshotError on anything not in the format, with its position."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._raw: BinaryIO | None = None

    def __iter__(self) -> Iterator[Event]:
        try:
            raw = open(self.path, "rb")  # noqa: SIM115 (closed below, the generator owns it)
        except OSError as exc:
            raise SnapshotError(str(self.path), f"cannot open: {exc.strerror}") from None
        self._raw = raw
        try:
            gzipped = self.path.name.endswith(".gz") or raw.peek(2)[:2] == b"\x1f\x8b"
            binary: gzip.GzipFile | io.BufferedReader = (
                gzip.GzipFile(fileobj=raw) if gzipped else raw)
            text = io.TextIOWrapper(binary, encoding="utf-8", errors="strict", newline="")
            scanner = _Scanner(self._reader(text, gzipped), self._fail)
            yield from self._document(scanner)
        finally:
            raw.close()

    def _fail(self, message: str, offset: int, where: str) -> SnapshotError:
        return SnapshotError(str(self.path), message, offset=offset, where=where)

    def _reader(self, text: io.TextIOWrapper, gzipped: bool) -> Callable[[int], str]:
        def read(size: int) -> str:
            assert self._raw is not None
            try:
                return text.read(size)
            except EOFError:
                raise SnapshotError(str(self.path), "the gzip stream ends before its end "
                                    "marker: the file is truncated", offset=self._raw.tell(),
                                    where="compressed bytes") from None
            except (gzip.BadGzipFile, zlib.error) as exc:
                raise SnapshotError(str(self.path), f"not a readable gzip stream: {exc}",
                                    offset=self._raw.tell(), where="compressed bytes") from None
            except UnicodeDecodeError as exc:
                raise SnapshotError(str(self.path), f"not UTF-8 text: {exc.reason}"
                                    + (" (in the decompressed text)" if gzipped else ""),
                                    where=f"near byte {self._raw.tell()}") from None
        return read

    def _document(self, sc: _Scanner) -> Iterator[Event]:
        if sc.peek() == "":
            raise sc.error("the file is empty: not a snapshot", ())
        seen: set[str] = set()
        for name in sc.members((), "the snapshot: {\"cassandra\": ..., \"zookeeper\": ...}"):
            if name in seen:
                raise sc.error(f"{name!r} appears twice", (name,))
            seen.add(name)
            if name == "cassandra":
                yield from self._cassandra(sc)
            elif name == "zookeeper":
                yield from self._zookeeper(sc)
            else:
                raise sc.error(f"unexpected key {name!r}: a snapshot holds only \"cassandra\" "
                               "and \"zookeeper\"", (name,))
        sc.end(())
        missing = [k for k in ("cassandra", "zookeeper") if k not in seen]
        if missing:
            raise sc.error(f"no {' and no '.join(repr(m) for m in missing)} in the document: "
                           "not a snapshot", ())

    def _cassandra(self, sc: _Scanner) -> Iterator[Event]:
        for keyspace in sc.members(("cassandra",), "keyspace -> column families"):
            yield KeyspaceStart(keyspace)
            for table in sc.members(("cassandra", keyspace), "column family -> rows"):
                yield TableStart(keyspace, table)
                where_table = ("cassandra", keyspace, table)
                for key in sc.members(where_table, "row key -> columns"):
                    where_row = (*where_table, key)
                    cells: list[tuple[str, str, int]] = []
                    for column in sc.members(where_row, "column -> [value, timestamp]"):
                        where = (*where_row, column)
                        sc.expect("[", where, "[value, timestamp]")
                        value = sc.string(where, "the column's value (a string)")
                        sc.expect(",", where)
                        writetime = sc.integer(where)
                        sc.expect("]", where, "']' after [value, timestamp]")
                        cells.append((column, value, writetime))
                        if len(cells) >= CELLS_PER_EVENT:
                            yield Cells(keyspace, table, key, cells)
                            cells = []
                    if cells:
                        yield Cells(keyspace, table, key, cells)

    def _zookeeper(self, sc: _Scanner) -> Iterator[Event]:
        where = ("zookeeper",)
        if sc.peek() == "n":
            sc.literal("null", where)
            return
        start = sc.offset()
        stream = _StringStream(sc, where)

        def fail(message: str, offset: int, at: str) -> SnapshotError:
            return SnapshotError(str(self.path), message, offset=start,
                                 where=f"the ZooKeeper string, character {offset} of its JSON "
                                       f"text, {at}")

        inner = _Scanner(stream.read, fail)
        if inner.peek() != "":
            for index in inner.items(("zookeeper",), "[path, [value, stat]] entries"):
                yield self._znode(inner, ("zookeeper", f"entry {index}"))
            inner.end(("zookeeper",))
        while not stream.done and stream.read(READ_CHUNK):
            pass

    def _znode(self, sc: _Scanner, where: tuple[str, ...]) -> Znode:
        sc.expect("[", where, "[path, [value, stat]]")
        path = sc.string(where, "the znode's path")
        at = (*where[:-1], path)
        sc.expect(",", at)
        sc.expect("[", at, "[value, stat]")
        if sc.peek() == "n":
            sc.literal("null", at)
            data = b""
        else:
            value = sc.string(at, "the znode's value (a string)")
            try:
                data = value.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError as exc:
                raise sc.error(f"the znode's value is not text: {exc.reason}", at) from None
        sc.expect(",", at)
        stat: list[int] = []
        if sc.peek() == "n":
            sc.literal("null", at)
        else:
            for _ in sc.items(at, "the znode's stat"):
                stat.append(sc.integer(at))
        sc.expect("]", at, "']' after [value, stat]")
        sc.expect("]", at, "']' after the znode entry")
        return Znode(path, data, tuple(stat))
