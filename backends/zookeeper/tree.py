"""Fast reads of ZooKeeper subtrees.

A subtree is read level by level. On ZooKeeper 3.6+ each level goes out as `multiRead`
requests (opcode 22: many getData/getChildren in one request, each answered on its own),
several in flight; kazoo has no call for it, so the request type is defined here and handed to
kazoo's request queue. Older servers get pipelined single calls: kazoo answers asynchronous
calls in order over one session, so a bounded window stays in flight instead of one round trip
per znode (the way `zk-shell` and the original zk-sync walk). docs/benchmarks.md
compares the two.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from kazoo.client import KazooClient
from kazoo.exceptions import EXCEPTIONS, NoNodeError
from kazoo.protocol.serialization import (
    ZnodeStat,
    int_struct,
    multiheader_struct,
    read_buffer,
    read_string,
    stat_struct,
    write_string,
)

T = TypeVar("T")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

DEFAULT_WINDOW = 4000
MULTI_READ_OPS = 500  # operations per multiRead request
MULTI_READ_WINDOW = 16  # multiRead requests in flight
_OP_GET_DATA = 4
_OP_GET_CHILDREN = 8
_OP_ERROR = -1


@dataclass(frozen=True, slots=True)
class Znode:
    """One persistent znode as read: data and whether it had children."""

    data: bytes
    ephemeral: bool
    num_children: int


def join(root: str, rel: str) -> str:
    """Absolute path of `rel` ("" = the root itself) below `root` ("/" allowed)."""
    if not rel:
        return root or "/"
    return ("" if root == "/" else root) + "/" + rel


class AsyncResult(Protocol[R_co]):
    """kazoo's IAsyncResult, as far as these calls use it."""

    def get(self, block: bool = True, timeout: float | None = None) -> R_co: ...


def pipelined(
    items: Iterable[T],
    submit: Callable[[T], AsyncResult[R]],
    window: int = DEFAULT_WINDOW,
) -> Iterator[tuple[T, R | Exception]]:
    """Submit async calls with at most `window` in flight; yield (item, result or exception)."""
    pending: list[tuple[T, AsyncResult[R]]] = []
    for item in items:
        pending.append((item, submit(item)))
        if len(pending) >= window:
            yield from _drain(pending)
            pending = []
    yield from _drain(pending)


def _drain(pending: list[tuple[T, AsyncResult[R]]]) -> Iterator[tuple[T, R | Exception]]:
    for item, async_result in pending:
        try:
            yield item, async_result.get()
        except Exception as exc:  # the caller decides per item (NoNode is normal)
            yield item, exc


class MultiRead(tuple[tuple[str, str], ...]):
    """ZooKeeper `multiRead` request: ("data" | "children", path) operations.

    Shaped like kazoo's own request types (`type`, `serialize`, `deserialize`); the result is
    one entry per operation: (data, ZnodeStat), a list of child names, or the exception.
    """

    type = 22

    def serialize(self) -> bytearray:
        b = bytearray()
        for kind, path in self:
            op = _OP_GET_DATA if kind == "data" else _OP_GET_CHILDREN
            b.extend(multiheader_struct.pack(op, False, -1))
            b.extend(write_string(path))
            b.append(0)  # no watch
        b.extend(multiheader_struct.pack(-1, True, -1))
        return b

    @classmethod
    def deserialize(cls, buf: bytes, offset: int) -> list[Any]:
        out: list[Any] = []
        while True:
            op, done, _err = multiheader_struct.unpack_from(buf, offset)
            offset += multiheader_struct.size
            if done:
                return out
            if op == _OP_GET_DATA:
                data, offset = read_buffer(buf, offset)
                out.append((data, ZnodeStat._make(stat_struct.unpack_from(buf, offset))))
                offset += stat_struct.size
            elif op == _OP_GET_CHILDREN:
                count = int_struct.unpack_from(buf, offset)[0]
                offset += int_struct.size
                children = []
                for _ in range(max(count, 0)):
                    child, offset = read_string(buf, offset)
                    children.append(child)
                out.append(children)
            elif op == _OP_ERROR:
                code = int_struct.unpack_from(buf, offset)[0]
                offset += int_struct.size
                out.append(EXCEPTIONS[code]())
            else:
                raise ValueError(f"unexpected multiRead result type {op}")


def _multi_read_async(zk: KazooClient, ops: list[tuple[str, str]]) -> AsyncResult[list[Any]]:
    result: AsyncResult[list[Any]] = zk.handler.async_result()
    zk._call(MultiRead(ops), result)  # kazoo's request queue; no public hook for new opcodes
    return result


_multi_read_support: dict[int, bool] = {}


def supports_multi_read(zk: KazooClient) -> bool:
    """Probe once per client whether the server answers multiRead (ZooKeeper 3.6+)."""
    key = id(zk)
    if key not in _multi_read_support:
        try:
            answer = _multi_read_async(zk, [("data", "/")]).get(timeout=10)
            _multi_read_support[key] = isinstance(answer, list) and len(answer) == 1
        except Exception:
            _multi_read_support[key] = False
    return _multi_read_support[key]


def _read_many(
    zk: KazooClient, kind: str, paths: list[str], window: int
) -> Iterator[tuple[str, Any]]:
    """(path, result or exception) for each path, in order, by the fastest available means."""
    if supports_multi_read(zk):
        chunks = [paths[i:i + MULTI_READ_OPS] for i in range(0, len(paths), MULTI_READ_OPS)]
        for chunk, answer in pipelined(
            chunks, lambda c: _multi_read_async(zk, [(kind, p) for p in c]), MULTI_READ_WINDOW
        ):
            if isinstance(answer, Exception):
                raise answer
            yield from zip(chunk, answer, strict=True)
        return
    call = zk.get_async if kind == "data" else zk.get_children_async
    yield from pipelined(paths, call, window)


def read_subtree(
    zk: KazooClient, root: str, window: int = DEFAULT_WINDOW
) -> dict[str, Znode] | None:
    """Every znode under `root` (inclusive), keyed by path relative to `root` ("" = root).

    Returns None when `root` does not exist. Nodes that vanish during the walk are left out
    (they were deleted concurrently); any other error is raised.
    """
    nodes: dict[str, Znode] = {}
    level = [""]
    while level:
        parents: list[str] = []
        abs_level = [join(root, r) for r in level]
        results = (r for _, r in _read_many(zk, "data", abs_level, window))
        for rel, result in zip(level, results, strict=True):
            if isinstance(result, NoNodeError):
                if rel == "":
                    return None
                continue
            if isinstance(result, Exception):
                raise result
            data, stat = result
            node = Znode(data or b"", stat.ephemeralOwner != 0, stat.numChildren)
            nodes[rel] = node
            if node.num_children:
                parents.append(rel)
        level = []
        abs_parents = [join(root, r) for r in parents]
        results = (r for _, r in _read_many(zk, "children", abs_parents, window))
        for rel, result in zip(parents, results, strict=True):
            if isinstance(result, NoNodeError):
                continue
            if isinstance(result, Exception):
                raise result
            prefix = rel + "/" if rel else ""
            level.extend(prefix + child for child in sorted(result))
    return nodes


def node_digest(rel: str, data: bytes) -> str:
    """Content hash of one znode: its relative path and its exact data."""
    h = hashlib.sha256()
    h.update(rel.encode())
    h.update(b"\0")
    h.update(data)
    return h.hexdigest()


def persistent_digests(nodes: dict[str, Znode]) -> dict[str, str]:
    """Per-node content hashes of the persistent nodes (ephemerals belong to live sessions)."""
    return {rel: node_digest(rel, n.data) for rel, n in nodes.items() if not n.ephemeral}


def tree_digest(digests: dict[str, str]) -> str:
    """One hash over a whole subtree (sorted per-node hashes), for summaries."""
    h = hashlib.sha256()
    for rel in sorted(digests):
        h.update(digests[rel].encode())
    return h.hexdigest()
