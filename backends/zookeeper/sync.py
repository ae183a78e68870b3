"""zk-sync: copy ZooKeeper subtrees from the old cluster's root to the new one's, then verify.

Only the configured subtrees (`fq-name-to-uuid`, `api-server`, `id` by default) are touched:
below `/<ndb_prefix>/<subtree>` the new side is made an exact copy of the old one (data byte for
byte, names unchanged, so ID allocator nodes keep their indexes); persistent nodes missing on
old are removed there, ephemeral nodes (on either side) belong to live sessions and are left
alone. Nothing outside the subtrees is written or deleted, except creating the missing
ancestors of a subtree root with empty data.

Writes go in multi-op transactions, several in flight; reads are pipelined (see tree.py).
The verification re-reads both sides and compares every persistent node's content hash.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError, ZookeeperError

from backends.progress import EventSink
from backends.zookeeper.tree import (
    DEFAULT_WINDOW,
    AsyncResult,
    Znode,
    join,
    persistent_digests,
    pipelined,
    read_subtree,
)

log = logging.getLogger(__name__)

DEFAULT_SUBTREES = ("fq-name-to-uuid", "api-server", "id")
# A multi request must stay well under the server's jute.maxbuffer (1 MiB by default).
TXN_MAX_BYTES = 512 * 1024
TXN_MAX_OPS = 1000
TXN_WINDOW = 8


class ZkSyncError(Exception):
    """A subtree could not be synced; names the path."""


def prefix_root(prefix: str) -> str:
    """ZooKeeper root for a db prefix: "" -> "/", "v1" -> "/v1"."""
    prefix = prefix.strip("/")
    return "/" + prefix if prefix else "/"


def check_subtree(name: str) -> str:
    rel = name.strip("/")
    parts = rel.split("/")
    if not rel or any(p in ("", ".", "..") for p in parts) or parts[0] == "zookeeper":
        raise ValueError(f"invalid zk subtree name {name!r}")
    return rel


DiffKind = Literal["missing", "extra", "different"]


@dataclass(frozen=True, slots=True)
class ZkDifference:
    subtree: str
    path: str  # relative to the subtree root ("" = the subtree root)
    kind: DiffKind  # missing on new / extra on new / data differs

    def describe(self, old_root: str, new_root: str) -> str:
        old_path = join(join(old_root, self.subtree), self.path)
        new_path = join(join(new_root, self.subtree), self.path)
        if self.kind == "missing":
            return f"missing on new: {new_path} (old {old_path})"
        if self.kind == "extra":
            return f"extra on new: {new_path} (absent on old {old_path})"
        return f"data differs: old {old_path} != new {new_path}"


@dataclass(slots=True)
class SubtreeReport:
    subtree: str
    old_nodes: int = 0  # persistent nodes on old
    ephemerals_skipped: int = 0
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    # The subtree root does not exist on old: nothing copied or verified. A failure unless the
    # operator allowed it by name (a wrong odb_prefix would otherwise "pass" and the ID
    # allocators would silently not be copied).
    skipped_missing_on_old: bool = False
    missing_allowed: bool = False


@dataclass(slots=True)
class ZkSyncReport:
    old_root: str
    new_root: str
    subtrees: list[SubtreeReport] = field(default_factory=list)
    differences: list[ZkDifference] = field(default_factory=list)
    verified_nodes: int = 0
    copy_seconds: float = 0.0
    verify_seconds: float = 0.0

    @property
    def missing_on_old(self) -> list[str]:
        """Subtrees absent on old that were not allowed to be (each one fails the run)."""
        return [s.subtree for s in self.subtrees
                if s.skipped_missing_on_old and not s.missing_allowed]

    @property
    def ok(self) -> bool:
        return not self.differences and not self.missing_on_old

    def totals(self) -> dict[str, int]:
        keys = ("old_nodes", "ephemerals_skipped", "created", "updated", "deleted", "unchanged")
        return {k: sum(getattr(s, k) for s in self.subtrees) for k in keys}


class ZkSyncer:
    """Copies and verifies the configured subtrees between two connected kazoo clients."""

    def __init__(
        self,
        old: KazooClient,
        new: KazooClient,
        old_prefix: str = "",
        new_prefix: str = "",
        subtrees: Sequence[str] = DEFAULT_SUBTREES,
        events: EventSink | None = None,
        window: int = DEFAULT_WINDOW,
        allow_missing: Iterable[str] = (),
    ) -> None:
        self.old = old
        self.new = new
        self.old_root = prefix_root(old_prefix)
        self.new_root = prefix_root(new_prefix)
        self.subtrees = [check_subtree(s) for s in subtrees]
        self.events = events
        self.window = window
        self.allow_missing = {check_subtree(s) for s in allow_missing}

    # -- public -----------------------------------------------------------------------------

    def run(self, verify: bool = True) -> ZkSyncReport:
        """Copy every subtree, then (by default) verify every node; see ZkSyncReport.ok."""
        report = ZkSyncReport(self.old_root, self.new_root)
        started = time.monotonic()
        for subtree in self.subtrees:
            report.subtrees.append(self.copy_subtree(subtree))
        report.copy_seconds = time.monotonic() - started
        if verify:
            skipped = {s.subtree for s in report.subtrees if s.skipped_missing_on_old}
            self.verify_into(report, [s for s in self.subtrees if s not in skipped])
        self._event(
            "zk-sync",
            "zk-sync finished" if report.ok else "zk-sync found differences",
            ok=report.ok,
            differences=len(report.differences),
            missing_on_old=report.missing_on_old,
            **report.totals(),
        )
        return report

    def verify(self) -> ZkSyncReport:
        """Compare every persistent node of the subtrees, old against new, without writing."""
        report = ZkSyncReport(self.old_root, self.new_root)
        present = []
        for subtree in self.subtrees:
            if self.old.exists(join(self.old_root, subtree)) is None:
                report.subtrees.append(self._missing(subtree))
            else:
                present.append(subtree)
        self.verify_into(report, present)
        return report

    def copy_subtree(self, subtree: str) -> SubtreeReport:
        rep = SubtreeReport(subtree)
        old_path = join(self.old_root, subtree)
        new_path = join(self.new_root, subtree)
        old_nodes = read_subtree(self.old, old_path, self.window)
        if old_nodes is None:
            # Never treat a missing source as empty: that would wipe the new side.
            return self._missing(subtree)
        if old_nodes[""].ephemeral:
            raise ZkSyncError(f"zk subtree root {old_path} is ephemeral")
        new_nodes = read_subtree(self.new, new_path, self.window) or {}

        source = {rel: n for rel, n in old_nodes.items() if not n.ephemeral}
        rep.old_nodes = len(source)
        rep.ephemerals_skipped = len(old_nodes) - len(source)

        creates: list[tuple[str, bytes]] = []
        updates: list[tuple[str, bytes]] = []
        for rel, node in source.items():
            have = new_nodes.get(rel)
            if have is None:
                creates.append((rel, node.data))
            elif have.ephemeral:
                raise ZkSyncError(
                    f"{join(new_path, rel)} is an ephemeral node on new but persistent on old"
                )
            elif have.data != node.data:
                updates.append((rel, node.data))
            else:
                rep.unchanged += 1
        deletes = [
            rel for rel, node in new_nodes.items()
            if rel not in source and not node.ephemeral
        ]
        if "" in deletes:  # the root itself is never deleted, only its content fixed
            deletes.remove("")

        if "" not in new_nodes:
            self._ensure_ancestors(new_path)
        creates.sort(key=lambda item: (item[0].count("/") if item[0] else -1, item[0]))
        deletes.sort(key=lambda rel: (-rel.count("/"), rel))
        apply_ops(self.new, new_path, "create", creates)
        apply_ops(self.new, new_path, "set", updates)
        apply_ops(self.new, new_path, "delete", [(rel, b"") for rel in deletes])
        rep.created, rep.updated, rep.deleted = len(creates), len(updates), len(deletes)
        log.info("zk subtree %s -> %s: %d nodes, %d created, %d updated, %d deleted, "
                 "%d ephemerals skipped", old_path, new_path, rep.old_nodes, rep.created,
                 rep.updated, rep.deleted, rep.ephemerals_skipped)
        return rep

    def verify_into(self, report: ZkSyncReport, subtrees: Iterable[str]) -> None:
        started = time.monotonic()
        for subtree in subtrees:
            old_nodes = read_subtree(self.old, join(self.old_root, subtree), self.window) or {}
            new_nodes = read_subtree(self.new, join(self.new_root, subtree), self.window) or {}
            diffs = compare(subtree, old_nodes, new_nodes)
            report.verified_nodes += sum(1 for n in old_nodes.values() if not n.ephemeral)
            report.differences.extend(diffs)
            for d in diffs[:50]:
                log.error("zk verify: %s", d.describe(self.old_root, self.new_root))
        report.verify_seconds = time.monotonic() - started

    # -- internals ----------------------------------------------------------------------------

    def _missing(self, subtree: str) -> SubtreeReport:
        """The report of a subtree whose root is absent on old (new side left as it is)."""
        old_path = join(self.old_root, subtree)
        allowed = subtree in self.allow_missing
        if allowed:
            log.warning("zk subtree %s missing on old (allowed): skipped, new side left as it is",
                        old_path)
        else:
            log.error("zk subtree %s missing on old: wrong prefix? nothing copied "
                      "(allow it with --allow-missing %s)", old_path, subtree)
        self._event("zk-sync", f"subtree {old_path} missing on old"
                    + (" (allowed), skipped" if allowed else ": FAILED, nothing copied"),
                    subtree=subtree, allowed=allowed)
        return SubtreeReport(subtree, skipped_missing_on_old=True, missing_allowed=allowed)

    def _ensure_ancestors(self, path: str) -> None:
        parts = path.strip("/").split("/")[:-1]
        current = ""
        for part in parts:
            current += "/" + part
            with contextlib.suppress(NodeExistsError):
                self.new.create(current, b"")

    def _event(self, kind: str, message: str, **fields: object) -> None:
        if self.events is not None:
            self.events.event(kind, message, **fields)


def compare(
    subtree: str, old_nodes: dict[str, Znode], new_nodes: dict[str, Znode]
) -> list[ZkDifference]:
    """Differences between two subtree reads, by per-node content hash (persistent nodes)."""
    old_d = persistent_digests(old_nodes)
    new_d = persistent_digests(new_nodes)
    diffs: list[ZkDifference] = []
    for rel in sorted(old_d.keys() | new_d.keys()):
        a, b = old_d.get(rel), new_d.get(rel)
        if a == b:
            continue
        kind: DiffKind = "missing" if b is None else "extra" if a is None else "different"
        diffs.append(ZkDifference(subtree, rel, kind))
    return diffs


def apply_ops(zk: KazooClient, root: str, op: str, items: list[tuple[str, bytes]]) -> None:
    """Run the operations (op: create, set or delete; paths relative to `root`) in multi
    transactions, several in flight, in list order."""
    if not items:
        return

    def submit(batch: list[tuple[str, bytes]]) -> AsyncResult[list[object]]:
        txn = zk.transaction()
        for rel, data in batch:
            path = join(root, rel)
            if op == "create":
                txn.create(path, data)
            elif op == "set":
                txn.set_data(path, data)
            else:
                txn.delete(path)
        committed: AsyncResult[list[object]] = txn.commit_async()
        return committed

    for batch, result in pipelined(_batches(items), submit, TXN_WINDOW):
        if isinstance(result, Exception) or any(isinstance(r, Exception) for r in result):
            # A batch failed as a whole (e.g. a node created meanwhile): redo it one by one
            # with the conflicts resolved, and fail loudly on anything else.
            _apply_one_by_one(zk, root, op, batch)


def _apply_one_by_one(zk: KazooClient, root: str, op: str,
                      batch: list[tuple[str, bytes]]) -> None:
    for rel, data in batch:
        path = join(root, rel)
        try:
            if op == "create":
                try:
                    zk.create(path, data)
                except NodeExistsError:
                    zk.set(path, data)
            elif op == "set":
                try:
                    zk.set(path, data)
                except NoNodeError:
                    zk.create(path, data, makepath=True)
            else:
                with contextlib.suppress(NoNodeError):
                    zk.delete(path)
        except ZookeeperError as exc:
            raise ZkSyncError(f"zk {op} {path} failed: {type(exc).__name__} {exc}") from exc


def delete_tree(zk: KazooClient, path: str, window: int = DEFAULT_WINDOW) -> int:
    """Delete `path` and every znode below it; the number deleted (0 if it did not exist).

    One pipelined read of the tree, then deletes deepest-first in multi transactions: kazoo's
    `delete(recursive=True)` takes a get_children and a delete round trip per znode (minutes
    for 100,000 znodes on a loaded box). A session's requests run in order, so a parent's
    delete always follows its children's even with several transactions in flight.
    """
    nodes = read_subtree(zk, path, window)
    if nodes is None:
        return 0
    # Depth of "" (the root) is 0, of "a" 1, of "a/b" 2: the root goes last.
    rels = sorted(nodes, key=lambda rel: (-(rel.count("/") + 1 if rel else 0), rel))
    apply_ops(zk, path, "delete", [(rel, b"") for rel in rels])
    return len(rels)


def _batches(items: list[tuple[str, bytes]]) -> Iterable[list[tuple[str, bytes]]]:
    batch: list[tuple[str, bytes]] = []
    size = 0
    for rel, data in items:
        cost = len(rel) + len(data) + 64
        if batch and (size + cost > TXN_MAX_BYTES or len(batch) >= TXN_MAX_OPS):
            yield batch
            batch, size = [], 0
        batch.append((rel, data))
        size += cost
    if batch:
        yield batch


def connect(hosts: str, timeout: float = 15.0) -> KazooClient:
    """A started kazoo client for "h:p,h:p" (raises if no server answers in time)."""
    client = KazooClient(hosts=hosts, timeout=timeout)
    client.start(timeout=timeout)
    return client


def zk_sync(
    old_hosts: str,
    new_hosts: str,
    old_prefix: str = "",
    new_prefix: str = "",
    subtrees: Sequence[str] = DEFAULT_SUBTREES,
    events: EventSink | None = None,
    verify_only: bool = False,
    allow_missing: Iterable[str] = (),
) -> ZkSyncReport:
    """Connect to both ensembles, sync (or only verify) and disconnect. An invalid subtree
    or allow_missing name raises ValueError before anything is connected."""
    allow_missing = tuple(allow_missing)
    for name in (*subtrees, *allow_missing):
        check_subtree(name)
    old = connect(old_hosts)
    try:
        new = connect(new_hosts)
        try:
            syncer = ZkSyncer(old, new, old_prefix, new_prefix, subtrees, events,
                              allow_missing=allow_missing)
            return syncer.verify() if verify_only else syncer.run()
        finally:
            new.stop()
            new.close()
    finally:
        old.stop()
        old.close()
