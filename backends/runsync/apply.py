"""Apply one config change: re-read the object's rows from old, replace them on new.

The message only says WHICH object changed; its content is always re-read from the old
database (so a late or duplicated message can never write stale data). Replace, not merge:
cells old no longer has are deleted on new. Rows touched, all in `config_db_uuid` and named
as on the OLD side (the replicator translates):

- `obj_uuid_table`, partition = uuid: the whole object;
- `obj_fq_name_table`, partition = the object's type, column `<fq_name joined by ':'>:<uuid>`;
- the object's `children:<type>:<uuid>` cell in its parent's partition and its
  `backref:<type>:<uuid>` cell in every referenced object's partition (parents and refs as
  they were on new before and are on old now, so dropped links are removed too), each with
  that partition's `META:latest_col_ts` (the api-server rewrites it when linking);
- `obj_shared_table`, partition = the object's type (some releases spell it with `_`, so
  both spellings), columns `<share type>:<share id>:<uuid>` (`global::<uuid>`,
  `tenant:<id>:<uuid>`, `domain:<id>:<uuid>`) named by `prop:perms2` before and after.

Requests per change, alone: the object's partition on new with the linked cells the
message names (its fq-name index cell; for a create or a delete the parent's and ref
targets' cells its obj_dict names), then the same on old (a CREATE reads those named
cells on old alone, see _CellsRead); the linked cells only the rows name (parent, ref
targets, shares: every partition in one request per side) on new, then on old; the writes,
of only the cells new does not already have with that value and writetime, linked
partitions first and the object's own last. Under load, what the lanes send of one kind at
the same moment goes as one request (backends/runsync/combine.py). A partition wider than
`WIDE_CELLS` takes the streaming replicator path (memory bounded).
"""

from __future__ import annotations

import json
import uuid as uuid_module
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from backends.cassandra.replicator import CellChanges, ReplaceOutcome, Replicator
from backends.cassandra.tables import RawRow, TableContext, translate_rows
from backends.cassandra.translate import Cell
from backends.group_commit import Slot
from backends.runsync.combine import CombinedRequests
from backends.runsync.messages import Change, underscore

CONFIG_DB_UUID = "config_db_uuid"
OBJ_UUID = "obj_uuid_table"
OBJ_FQ_NAME = "obj_fq_name_table"
OBJ_SHARED = "obj_shared_table"
LATEST_COL_TS = "META:latest_col_ts"
WIDE_CELLS = 5000  # an object partition with more cells is replaced by streaming
KEYS_PER_READ = 100  # partitions per multi-partition read of linked cells


@dataclass
class ApplyResult:
    uuid: str
    present_on_old: bool = False
    newest_writetime: int = 0  # microseconds, of the newest cell new lacked; 0: nothing was behind
    cells_written: int = 0
    cells_deleted: int = 0
    cells_unchanged: int = 0  # already on new with that value and writetime: not rewritten
    quarantined: int = 0
    partitions: list[str] = field(default_factory=list)

    def add(self, out: ReplaceOutcome) -> None:
        self.newest_writetime = max(self.newest_writetime, out.newest_writetime)
        self.cells_written += out.cells_written
        self.cells_deleted += out.cells_deleted
        self.quarantined += out.quarantined
        self.partitions.append(f"{out.table}:{out.key}")


def _json(value: str | None) -> object:
    """The JSON a cell holds, None when it is empty or not JSON; callers check its shape."""
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


def link_uuids(columns: Iterable[str], head: str) -> set[str]:
    """uuids of `<head>:<type>:<uuid>` columns (the uuid is the last segment whatever the
    spelling of the type, so old- and new-side names give the same answer)."""
    prefix = head + ":"
    return {c.rsplit(":", 1)[1] for c in columns if c.startswith(prefix) and c.count(":") >= 2}


def share_keys(perms2: Any) -> set[str]:
    """`<share type>:<share id>` an object is shared with, from its perms2 property
    (`global:` for global access); its obj_shared_table columns are these + `:<uuid>`."""
    keys: set[str] = set()
    if not isinstance(perms2, dict):
        return keys
    if perms2.get("global_access"):
        keys.add("global:")
    for item in perms2.get("share") or []:
        tenant = item.get("tenant") if isinstance(item, dict) else None
        if not isinstance(tenant, str) or not tenant:
            continue
        kind, sep, ident = tenant.partition(":")
        keys.add(f"{kind}:{ident}" if sep and kind in ("tenant", "domain") else f"tenant:{tenant}")
    return keys


class ObjectApplier:
    """Applies changes through the Cassandra worker's Replicator (thread-safe)."""

    def __init__(self, replicator: Replicator) -> None:
        self.repl = replicator
        self.io = CombinedRequests(replicator)  # lanes' requests of a kind go together

    def _ctx(self, table: str) -> TableContext | None:
        try:
            return self.repl.context(CONFIG_DB_UUID, table)
        except LookupError:
            return None  # table absent on old (e.g. obj_shared_table before 3.x): nothing to do

    def _old_type(self, ctx: TableContext, change: Change) -> str:
        """The type as the OLD database spells it. A `-` or a plain name can only be the
        spelling of the release that sent it; a `_` name may come from a release that
        stores `-`, so the object's `type` cell is read (the message's spelling if gone)."""
        if "_" not in change.type:
            return change.type
        rows = ctx.read_old(ctx.old_cells, (ctx.enc_old_key(change.uuid),
                                            ctx.enc_old_columns(["type"])))
        for _, _, value, _ in rows:
            decoded = _json(value)
            if isinstance(decoded, str) and decoded:
                return decoded
        return change.type

    def apply(self, change: Change, *, thorough: bool = False) -> ApplyResult:
        """Replace the object's rows on new with old's (translated): reads gathered in two
        rounds (four when the rows name links the message does not), the ordered writes.

        An UPDATE cannot move an object: fq_name and parent are fixed at creation, and the
        api-server writes the fq-name index entry and the parent's `children:` cell in the
        CREATE's mutation, with the object's `fq_name` and `parent:` cells. So for an UPDATE
        of an object new already has, the index entry and the parent's cells are replaced
        only when that own cell differs between new and old (they were written with it, by
        the CREATE's thorough apply), and only once the CREATE's apply completed on new
        (its `type` cell is there). Refs and shares can change with any UPDATE: their
        target cells are always replaced. A CREATE or DELETE, a retry and a redelivered
        message (`thorough`) replace every linked cell."""
        ctx = self._ctx(OBJ_UUID)
        if ctx is None:
            raise LookupError(f"{CONFIG_DB_UUID}.{OBJ_UUID} does not exist on old")
        repl, io = self.repl, self.io
        fq_ctx = self._ctx(OBJ_FQ_NAME)
        may_skip = change.oper == "UPDATE" and not thorough
        # The cells the message itself names (its fq-name index entry, its parent's and ref
        # targets' cells, its shares) are read in the same rounds as the object's partition
        # (see _named_reads); for a CREATE on old alone (see _CellsRead.old_first).
        ahead = [] if may_skip else self._named_reads(change, ctx, fq_ctx)
        old_first = change.oper == "CREATE"
        for read in ahead:
            read.old_first = old_first
        new_f = io.partition(ctx, ctx.translator.key(change.uuid), new=True, wide=WIDE_CELLS)
        for read in ahead:
            read.send_first(io)
        new_rows = new_f.wait()
        if new_rows is None:  # (a read started and not used is harmless)
            return self.apply_streaming(change)
        for read in ahead:
            read.collect_new()
        old_f = io.partition(ctx, change.uuid, new=False, wide=WIDE_CELLS)
        for read in ahead:
            read.send_old(io)
        old_rows = old_f.wait()
        if old_rows is None:
            return self.apply_streaming(change)

        changes = CellChanges()
        written = repl.diff(ctx, old_rows, new_rows, changes, finish=True)
        result = ApplyResult(change.uuid, present_on_old=bool(old_rows))
        result.partitions.append(f"{OBJ_UUID}:{change.uuid}")
        before = {c: v for _, c, v, _ in new_rows}
        after = {cell.column: cell.value for cell in written}
        old_type = _type_from(change, old_rows)
        shortcut = may_skip and bool(new_rows) and bool(old_rows)
        if shortcut:
            had = {c: (v, ts) for _, c, v, ts in new_rows}
            has = {cell.column: (cell.value, cell.writetime) for cell in written}
            # Only for an object whose CREATE was applied completely: its `type` cell goes
            # with the object's own cells, after the linked ones. An apply cut short after
            # the link names (a quarantined CREATE) left new without it.
            shortcut = "type" in had and had["type"] == has.get("type")
        if shortcut:

            def unchanged(*columns: str) -> bool:
                return all(had.get(c) == has.get(c) for c in columns)

            def link_unchanged(head: str, target: str) -> bool:
                cols = {c for c in had.keys() | has.keys()
                        if c.startswith(head + ":") and c.endswith(":" + target)}
                return unchanged(*cols)
        else:
            def unchanged(*columns: str) -> bool:
                return False

            def link_unchanged(head: str, target: str) -> bool:
                return False

        reads: list[_CellsRead] = []
        fq_name: Any = list(change.fq_name) if change.fq_name else None
        fq_name = fq_name or _json(after.get("fq_name")) or _json(before.get("fq_name"))
        if isinstance(fq_name, list) and fq_name and fq_ctx is not None and \
                not unchanged("fq_name", "type"):
            reads += _covered(ahead, fq_ctx, {old_type: {_fq_column(fq_name, change.uuid)}},
                              lambda _, __: bool(old_rows))

        # The api-server also rewrites the parent's and each new ref target's
        # META:latest_col_ts when it links a child or a ref, and the message names only this
        # object: that cell comes along (a few cells, whatever the parent's width). Every
        # linked partition in one request per side.
        links: dict[str, set[str]] = {}
        for parent in link_uuids(before, "parent") | link_uuids(after, "parent"):
            if not link_unchanged("parent", parent):
                links.setdefault(parent, {LATEST_COL_TS}).add(
                    f"children:{old_type}:{change.uuid}")
        for ref in link_uuids(before, "ref") | link_uuids(after, "ref"):
            # always: a reconciliation pass may have brought the object's new ref: cell
            # before its UPDATE message, without the target's backref: cell
            links.setdefault(ref, {LATEST_COL_TS}).add(f"backref:{old_type}:{change.uuid}")
        # Links the message itself names (Contrail's obj_dict: parent_uuid, <type>_refs). They
        # matter when neither side has the object's row any more, e.g. a copy took its
        # parent's partition before the delete and its own after: only the message then
        # tells where its children: and backref: cells are.
        if not unchanged("fq_name", "type"):
            for key, columns in _named_links(change, old_type).items():
                links.setdefault(key, set()).update(columns)
        links.pop(change.uuid, None)  # a link to itself: the whole partition is replaced
        if links:
            reads += _covered(ahead, ctx, links, _named_by(after))

        shares = share_keys(_json(before.get("prop:perms2"))) | share_keys(
            _json(after.get("prop:perms2")))
        shared_ctx = self._ctx(OBJ_SHARED) if shares else None
        now_shared = share_keys(_json(after.get("prop:perms2")))
        if shared_ctx is not None:
            reads += _covered(ahead, shared_ctx, _share_cells(shares, old_type, change.uuid),
                              lambda _, column: column.rsplit(":", 1)[0] in now_shared)

        _read_all(io, reads)
        for read in reads:
            old_cells, new_cells = read.wait()
            repl.diff(read.ctx, old_cells, new_cells, changes, finish=False)
            result.partitions.extend(f"{read.ctx.spec.name}:{k}" for k in sorted(read.wanted))
        # The linked partitions first, the object's own last: its row on new is where a
        # retry or a redelivery finds the links to repair, so it must not show the new
        # links (or lose the dropped ones) before the linked cells are written.
        own_key = ctx.translator.key(change.uuid)
        linked, own = changes.split(lambda c, key, _: not (c is ctx and key == own_key))
        # Cells that name links new does not know of yet (all of them for an object new
        # does not have, a ref an UPDATE adds) go first: cut short after the linked writes,
        # a retry would otherwise find the object on neither side (deleted on old meanwhile)
        # and never learn which parent's and targets' cells it had written. Changed or
        # dropped ones go last, with the rest (see above).
        naming, own = own.split(
            lambda _, __, column: column not in before and (column.startswith(_LINK_HEADS)
                                                           or column in _LINK_CELLS))
        io.write(naming)
        io.write(linked)
        io.write(own)
        others = [cell for c, key, cell in own.inserts
                  if c is ctx and key == own_key and cell.column.startswith(_OTHERS_LINKS)]
        result.newest_writetime = changes.newest_writetime
        result.cells_written = len(changes.inserts)
        result.cells_deleted = len(changes.deletes)
        if others:
            result.cells_deleted += self._confirm_on_old(ctx, change.uuid, own_key, others)
        result.cells_unchanged = changes.unchanged
        result.quarantined = changes.quarantined
        return result

    def _named_reads(self, change: Change, ctx: TableContext,
                     fq_ctx: TableContext | None) -> list[_CellsRead]:
        """Reads of the linked cells the message names, planned before the object's rows are
        read: its fq-name index entry, its parent's and ref targets' cells its obj_dicts
        name (a create's or a delete's), its shares their perms2 name. They go with the
        object's own reads (two rounds fewer); what the rows name besides is read after
        (apply). Only for a type spelled as old spells it (see _old_type)."""
        if "_" in change.type:
            return []
        reads = []
        if fq_ctx is not None and change.fq_name:
            reads.append(_CellsRead.plan(fq_ctx, {change.type: {
                _fq_column(change.fq_name, change.uuid)}}))
        links = _named_links(change, change.type)
        links.pop(change.uuid, None)
        if links:
            reads.append(_CellsRead.plan(ctx, links))
        shares: set[str] = set()
        for one in (*change.coalesced, change):
            obj = one.body.get("obj_dict")
            if isinstance(obj, dict):
                shares |= share_keys(obj.get("perms2"))
        shared_ctx = self._ctx(OBJ_SHARED) if shares else None
        if shared_ctx is not None:
            reads.append(_CellsRead.plan(shared_ctx,
                                         _share_cells(shares, change.type, change.uuid)))
        return reads

    def _confirm_on_old(self, ctx: TableContext, uuid: str, own_key: str,
                        copied: list[Cell]) -> int:
        """Delete again, with the writetime they were copied with, the cells of this
        object's partition that name other objects (`children:`, `backref:`) just copied
        from old and that old no longer has. The other object's lane may have applied its
        delete between this change's read of old and its write, and found nothing on new to
        delete: this copy, written last, would bring the cell back. Read whole and streamed
        (only the copied names are kept); it happens only when this change copied a link
        another lane had not written yet."""
        wanted = {cell.column: cell.writetime for cell in copied}
        for _, _, item in translate_rows(ctx.translator, ctx.read_old(
                ctx.old_partition, (ctx.enc_old_key(uuid),))):
            wanted.pop(item.column if isinstance(item, Cell) else item.new_column, None)
        if wanted:
            self.io.write(CellChanges(deletes=[(ctx, own_key, column, ts)
                                               for column, ts in wanted.items()]))
        return len(wanted)

    def apply_streaming(self, change: Change) -> ApplyResult:
        """The same replace through the replicator's streaming calls, one partition at a time
        (memory bounded however wide the object's partition is)."""
        ctx = self._ctx(OBJ_UUID)
        if ctx is None:
            raise LookupError(f"{CONFIG_DB_UUID}.{OBJ_UUID} does not exist on old")
        result = ApplyResult(change.uuid)
        # New's link-bearing cells before (to drop the links old no longer has), streamed:
        # only those cells are kept, so memory does not grow with the partition's width
        # (the replicator reads and spills new's cells itself).
        before = _link_bearing(ctx.read_new_full(
            ctx.new_partition_full, (ctx.enc_new_key(ctx.translator.key(change.uuid)),)))
        old_type = self._old_type(ctx, change)
        # Old's link-bearing cells, read ahead: the linked partitions are replaced before the
        # object's own (see apply), so a retry after a partial write still finds them.
        after = _link_bearing(ctx.read_old(ctx.old_partition, (ctx.enc_old_key(change.uuid),)))

        fq_name: Any = list(change.fq_name) if change.fq_name else None
        fq_name = fq_name or _json(after.get("fq_name")) or _json(before.get("fq_name"))
        if isinstance(fq_name, list) and fq_name and self._ctx(OBJ_FQ_NAME) is not None:
            column = ":".join(str(p) for p in fq_name) + ":" + change.uuid
            result.add(self.repl.replace_cells(CONFIG_DB_UUID, OBJ_FQ_NAME, old_type, [column]))

        # The api-server also rewrites the parent's and each new ref target's
        # META:latest_col_ts when it links a child or a ref, and the message names only this
        # object: that cell comes along, in the same request (a few cells, whatever the
        # parent's width).
        for parent in sorted(link_uuids(before, "parent") | link_uuids(after, "parent")):
            result.add(self.repl.replace_cells(CONFIG_DB_UUID, OBJ_UUID, parent,
                                               [f"children:{old_type}:{change.uuid}",
                                                LATEST_COL_TS]))
        for ref in sorted(link_uuids(before, "ref") | link_uuids(after, "ref")):
            result.add(self.repl.replace_cells(CONFIG_DB_UUID, OBJ_UUID, ref,
                                               [f"backref:{old_type}:{change.uuid}",
                                                LATEST_COL_TS]))

        shares = share_keys(_json(before.get("prop:perms2"))) | share_keys(
            _json(after.get("prop:perms2")))
        shared_ctx = self._ctx(OBJ_SHARED) if shares else None
        if shared_ctx is not None:
            columns = [f"{share}:{change.uuid}" for share in sorted(shares)]
            # one source key per target key: two spellings that translate to one partition
            # would each replace the other's cells (the one old spells the type with wins)
            keys = {shared_ctx.translator.key(k): k for k in (underscore(old_type), old_type)}
            for key in sorted(keys.values()):
                result.add(self.repl.replace_cells(CONFIG_DB_UUID, OBJ_SHARED, key, columns))

        out = self.repl.replace_partition(CONFIG_DB_UUID, OBJ_UUID, change.uuid)
        result.add(out)
        result.present_on_old = out.present_on_old
        return result


_LINK_HEADS = ("parent:", "ref:")
_OTHERS_LINKS = ("children:", "backref:")  # cells another object's lane writes too
_LINK_CELLS = ("fq_name", "prop:perms2")


def message_links(change: Change) -> tuple[set[str], set[str]]:
    """(parent uuids, ref target uuids) the obj_dicts of the message and of the earlier
    messages it stands for name (a DELETE may carry none, the UPDATE queued before it
    the ref it dropped); only well-formed uuids."""
    parents: set[str] = set()
    refs: set[str] = set()
    for one in (*change.coalesced, change):
        obj = one.body.get("obj_dict")
        if not isinstance(obj, dict):
            continue
        if _is_uuid(obj.get("parent_uuid")):
            parents.add(obj["parent_uuid"])
        for name, value in obj.items():
            if name.endswith("_refs") and isinstance(value, list):
                refs.update(item["uuid"] for item in value
                            if isinstance(item, dict) and _is_uuid(item.get("uuid")))
    return parents, refs


def _named_links(change: Change, old_type: str) -> dict[str, set[str]]:
    """The linked cells (old-side key -> columns) of the parents and ref targets the
    message names (message_links), with each one's META:latest_col_ts."""
    links: dict[str, set[str]] = {}
    parents, refs = message_links(change)
    for parent in parents:
        links.setdefault(parent, {LATEST_COL_TS}).add(f"children:{old_type}:{change.uuid}")
    for ref in refs:
        links.setdefault(ref, {LATEST_COL_TS}).add(f"backref:{old_type}:{change.uuid}")
    return links


def _named_by(after: Iterable[str]) -> Callable[[str, str], bool]:
    """Whether the object's own row (`after`, as old has it now) still names the link a
    linked cell stands for: its parent's `children:` cell, a ref target's `backref:`."""
    parents, refs = link_uuids(after, "parent"), link_uuids(after, "ref")

    def named(key: str, column: str) -> bool:
        if column.startswith("children:"):
            return key in parents
        if column.startswith("backref:"):
            return key in refs
        return True  # META:latest_col_ts: old's own value, harmless whenever read

    return named


def _share_cells(shares: set[str], old_type: str, uuid: str) -> dict[str, set[str]]:
    """obj_shared_table cells (old-side key -> columns) of an object's shares, under both
    spellings of its type."""
    columns = {f"{share}:{uuid}" for share in shares}
    return {key: set(columns) for key in {old_type, underscore(old_type)}}


def _is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid_module.UUID(value)
    except ValueError:
        return False
    return True


def _link_bearing(rows: Iterable[RawRow]) -> dict[str, str | None]:
    """column -> value of the cells that name an object's links (parent, refs, fq_name,
    shares), streamed: the rest of a wide row is not kept."""
    return {c: v for _, c, v, _ in rows if c.startswith(_LINK_HEADS) or c in _LINK_CELLS}


def _fq_column(fq_name: Iterable[Any], uuid: str) -> str:
    return ":".join(str(p) for p in fq_name) + ":" + uuid


def _type_from(change: Change, old_rows: list[RawRow]) -> str:
    """The type as the OLD database spells it (see ObjectApplier._old_type), from the
    object's `type` cell already read."""
    if "_" not in change.type:
        return change.type
    for _, column, value, _ in old_rows:
        if column == "type":
            decoded = _json(value)
            if isinstance(decoded, str) and decoded:
                return decoded
    return change.type


@dataclass
class _CellsRead:
    """Some cells of some partitions of one table (old-side names: key -> columns), read on
    both sides in one request each (per KEYS_PER_READ partitions: an object with thousands
    of refs does not make one huge multi-partition read).

    New is read first and old only once new's answers are in: a new cell old does not
    return is deleted with the writetime it had, which is safe only if that cell already
    existed when old was read. Read the other way round, a cell another lane copied in
    between (a child created meanwhile) would be deleted at its own writetime, and that
    tombstone would hide every later copy of it.

    `old_first` (a CREATE's named cells, which old has and new normally not yet): old is
    read alone; the cells it returns are written with their writetimes whatever new has
    (a write of what new already has changes nothing), and only those it does not return
    are read again in the order above (see _covered)."""

    ctx: TableContext
    wanted: dict[str, set[str]]
    new_wanted: dict[str, set[str]]
    new_slots: list[Slot[Any, list[RawRow]]] = field(default_factory=list)
    old_slots: list[Slot[Any, list[RawRow]]] = field(default_factory=list)
    new_rows: list[RawRow] | None = None
    old_rows: list[RawRow] | None = None
    old_first: bool = False

    @classmethod
    def plan(cls, ctx: TableContext, wanted: dict[str, set[str]]) -> _CellsRead:
        tr = ctx.translator
        new_wanted: dict[str, set[str]] = {}
        for key, columns in wanted.items():
            new_wanted.setdefault(tr.key(key), set()).update(tr.column(key, c) for c in columns)
        return cls(ctx, wanted, new_wanted)

    def send_first(self, io: CombinedRequests) -> None:
        """The first round: new, or old alone (`old_first`)."""
        if self.old_first:
            self.send_old(io)
        else:
            self.send_new(io)

    def send_new(self, io: CombinedRequests) -> None:
        if self.new_rows is None and not self.new_slots and not self.old_first:
            self.new_slots = _request_cells(io, self.ctx, self.new_wanted, new=True)

    def collect_new(self) -> None:
        if self.new_rows is None and not self.old_first:
            rows = [r for f in self.new_slots for r in f.wait()]
            self.new_rows = [r for r in rows if r[1] in self.new_wanted.get(r[0], ())]

    def send_old(self, io: CombinedRequests) -> None:
        if self.old_rows is None and not self.old_slots:
            self.old_slots = _request_cells(io, self.ctx, self.wanted, new=False)

    def collect_old(self) -> list[RawRow]:
        if self.old_rows is None:
            old = [r for f in self.old_slots for r in f.wait()]
            self.old_rows = [r for r in old if r[1] in self.wanted.get(r[0], ())]
        return self.old_rows

    def wait(self) -> tuple[list[RawRow], list[RawRow]]:
        """(old rows, new rows) of exactly the wanted cells (a request reads every key x
        column pair: the others are left out)."""
        assert not self.old_first, "an old-first read is used through _covered"
        self.collect_new()
        assert self.new_rows is not None
        return self.collect_old(), self.new_rows


def _covered(ahead: list[_CellsRead], ctx: TableContext, wanted: dict[str, set[str]],
             named: Callable[[str, str], bool]) -> list[_CellsRead]:
    """Reads of the cells `wanted`: those a read ahead of the same table already has (its
    rows, kept to these cells), and one read planned for the rest. An old-first read
    covers only the cells old returned that the object's own row, read on old after it,
    still names (`named(key, column)`): the others are read again, new first. (Another
    lane may lead that read before this one reads the object's row: a ref an UPDATE drops
    in between would otherwise be written back as a target's stale `backref:` cell, which
    no later change of the object names.)"""
    source = next((a for a in ahead if a.ctx is ctx), None)
    if source is None:
        return [_CellsRead.plan(ctx, wanted)]
    covered: dict[str, set[str]] = {}
    rest: dict[str, set[str]] = {}
    for key, columns in wanted.items():
        had = source.wanted.get(key, set())
        if columns & had:
            covered[key] = columns & had
        if columns - had:
            rest[key] = columns - had
    out = []
    if covered:
        old_rows = [r for r in source.collect_old() if r[1] in covered.get(r[0], ())]
        if source.old_first:
            old_rows = [r for r in old_rows if named(r[0], r[1])]
            found: dict[str, set[str]] = {}
            for key, column, _, _ in old_rows:
                found.setdefault(key, set()).add(column)
            for key, columns in covered.items():
                if columns - found.get(key, set()):
                    rest.setdefault(key, set()).update(columns - found.get(key, set()))
            covered = found
            new_rows: list[RawRow] = []  # written whatever new has (see _CellsRead)
        else:
            source.collect_new()
            assert source.new_rows is not None
            new_rows = source.new_rows
        if covered:
            read = _CellsRead.plan(ctx, covered)
            read.old_rows = old_rows
            read.new_rows = [r for r in new_rows if r[1] in read.new_wanted.get(r[0], ())]
            out.append(read)
    if rest:
        out.append(_CellsRead.plan(ctx, rest))
    return out


def _request_cells(io: CombinedRequests, ctx: TableContext, wanted: dict[str, set[str]], *,
                   new: bool) -> list[Slot[Any, list[RawRow]]]:
    """Requests for the cells `wanted` (names as that side spells them), KEYS_PER_READ
    partitions each."""
    keys, columns = sorted(wanted), sorted(set().union(*wanted.values()))
    step = KEYS_PER_READ
    return [io.cells(ctx, keys[i:i + step], columns, new=new, max_keys=step)
            for i in range(0, len(keys), step)]


def _read_all(io: CombinedRequests, reads: list[_CellsRead]) -> None:
    """Every read's new side, then (new's answers in) every read's old side."""
    for read in reads:
        read.send_new(io)
    for read in reads:
        read.collect_new()
    for read in reads:
        read.send_old(io)
