"""Pure unit tests of the sync engine's translation, version paths, registry and spill map."""

from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

import pytest

from backends.cassandra import registry as registry_mod
from backends.cassandra.registry import Registry, RegistryError, load_registry
from backends.cassandra.spill import SpillMap
from backends.cassandra.tables import MAX_TOKEN, MIN_TOKEN, token_slices, translate_rows
from backends.cassandra.translate import (
    DEFAULT_PERMS2,
    IDENTITY,
    Cell,
    ChainTranslator,
    ObjFqName4to5,
    ObjUuid4to5,
    TableTranslator,
    translate_partition,
)
from backends.versions import VersionPathError, era_of, version_path


def test_version_paths_chain_eras() -> None:
    assert version_path("3.2.14", "5.1.2") == [("3.2.x", "4.x"), ("4.x", "5.0"), ("5.0", "5.x")]
    assert version_path("4.1.0", "5.0.0") == [("4.x", "5.0")]
    assert version_path("4.0.1", "4.1.0") == []
    assert era_of("5.0.3").name == "5.0"


@pytest.mark.parametrize(("old", "new", "why"), [
    ("5.0.0", "4.1.0", "only upgrades"),
    ("2.2.0", "4.1.0", "outside the supported eras"),
    ("4.1.0", "6.0.0", "outside the supported eras"),
    ("4.1", "banana", "not a release number"),
])
def test_bad_version_path_is_a_clear_error(old: str, new: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        version_path(old, new)


def test_bad_path_is_version_path_error() -> None:
    with pytest.raises(VersionPathError):
        load_registry().translator("5.0.0", "4.0.0", "config_db_uuid", "obj_uuid_table")


def _obj(type_name: str, *, perms2: bool = True) -> list[Cell]:
    cells = [
        Cell("type", json.dumps(type_name), 10),
        Cell("fq_name", json.dumps(["default-domain", "p", "vn"]), 11),
        Cell("parent:project:p-uuid", "null", 12),
        Cell("children:virtual-machine-interface:vmi-uuid", "null", 13),
        Cell("ref:network-ipam:ipam-uuid", json.dumps({"attr": None}), 14),
        Cell("backref:virtual-machine-interface:vmi-uuid", json.dumps({"attr": None}), 15),
        Cell("prop:virtual_network_network_id", "5", 16),
    ]
    if perms2:
        cells.append(Cell("prop:perms2", json.dumps({"owner": "x"}), 9))
    return cells


def test_obj_uuid_4_to_5_renames_types_props_and_defaults_perms2() -> None:
    key, cells, rejected = translate_partition(ObjUuid4to5(), "vn-uuid",
                                               _obj("virtual-network", perms2=False))
    assert key == "vn-uuid" and not rejected
    by_col = {c.column: c for c in cells}
    assert by_col["type"].value == json.dumps("virtual_network")
    assert "children:virtual_machine_interface:vmi-uuid" in by_col
    assert "ref:network_ipam:ipam-uuid" in by_col
    assert "backref:virtual_machine_interface:vmi-uuid" in by_col
    assert "parent:project:p-uuid" in by_col
    assert by_col["prop:virtual_network_id"].value == "5"
    assert by_col["prop:virtual_network_id"].writetime == 16  # source writetime kept
    assert "prop:virtual_network_network_id" not in by_col
    assert json.loads(by_col["prop:perms2"].value) == DEFAULT_PERMS2
    assert by_col["prop:perms2"].writetime == 10  # the type cell's: stable for the object's life
    assert len(cells) == 8


def test_default_perms2_writetime_stable_when_other_cells_change() -> None:
    """A5: a newer cell added, then deleted again, leaves the defaulted perms2 as it was
    (with the newest writetime it moved forward, then back: a permanent difference)."""
    def perms2(cells: list[Cell]) -> Cell:
        _, out, _ = translate_partition(ObjUuid4to5(), "p-uuid", cells)
        return next(c for c in out if c.column == "prop:perms2")

    row = _obj("project", perms2=False)
    before = perms2(row)
    child = Cell("children:virtual-network:vn2-uuid", "null", 100)
    meta = Cell("META:latest_col_ts", "null", 100)
    assert perms2([*row, child, meta]) == before
    assert perms2(row) == before
    assert before.writetime == 10


def test_existing_perms2_kept() -> None:
    _, cells, _ = translate_partition(ObjUuid4to5(), "k", _obj("virtual-network"))
    perms = [c for c in cells if c.column == "prop:perms2"]
    assert perms == [Cell("prop:perms2", json.dumps({"owner": "x"}), 9)]


def test_invalid_json_is_rejected_with_reason() -> None:
    cells = [Cell("type", json.dumps("project"), 1), Cell("prop:display_name", "{broken", 2)]
    _, out, rejected = translate_partition(ObjUuid4to5(), "k", cells)
    assert [c.column for c, _ in rejected] == ["prop:display_name"]
    assert "not JSON" in rejected[0][1]
    assert {c.column for c in out} == {"type", "prop:perms2"}


def test_fq_name_key_renamed_and_column_mapping_is_value_independent() -> None:
    t = ObjFqName4to5()
    assert t.renames_keys and t.key("virtual-machine-interface") == "virtual_machine_interface"
    u = ObjUuid4to5()
    assert u.column("k", "backref:virtual-network:x") == "backref:virtual_network:x"
    assert u.column("k", "prop:virtual_network_network_id") == "prop:virtual_network_id"
    assert u.column("k", "fq_name") == "fq_name"


class _Suffix(TableTranslator):
    name = "suffix"

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix

    def column(self, key: str, column: str) -> str:
        return column + self.suffix


class _Extra(TableTranslator):
    name = "extra"

    def partition(self, key: str):  # type: ignore[no-untyped-def]
        class P:
            def cell(self, cell: Cell) -> list[Cell]:
                return [cell]

            def finish(self) -> list[Cell]:
                return [Cell("added", "v", 1)]
        return P()


def test_chain_applies_steps_in_order_including_finish_cells() -> None:
    chain = ChainTranslator([_Suffix("-a"), IDENTITY, _Extra(), _Suffix("-b")])
    assert chain.column("k", "c") == "c-a-b"
    _, cells, _ = translate_partition(chain, "k", [Cell("c", "v", 5)])
    assert [c.column for c in cells] == ["c-a-b", "added-b"]
    assert ChainTranslator([IDENTITY, IDENTITY]).is_identity


def test_registry_defaults_and_paths() -> None:
    reg = load_registry()
    names = {t.qualified for t in reg.tables()}
    assert "config_db_uuid.obj_uuid_table" in names and "dm_keyspace.dm_pr_asn_table" in names
    assert len(names) == 16
    post = {t.keyspace for t in reg.tables(phase="post")}
    assert "config_db_uuid" not in post and "useragent" in post
    assert reg.translator("3.2.5", "5.1.0", "config_db_uuid", "obj_uuid_table").name == \
        ObjUuid4to5.name
    assert reg.translator("5.0.0", "5.1.0", "config_db_uuid", "obj_uuid_table").is_identity
    assert reg.translator("4.1.0", "5.0.0", "useragent", "useragent_keyval_table").is_identity
    with pytest.raises(RegistryError, match="not registered"):
        reg.tables(["nope"])
    with pytest.raises(RegistryError, match="consecutive"):
        reg.add_translator("3.2.x", "5.0", "k", "t", IDENTITY)


def test_entry_points_register_application_keyspaces(monkeypatch: pytest.MonkeyPatch) -> None:
    def register(reg: Registry) -> None:
        reg.add_keyspace("myapp_keyspace", ["things_table"], post_sync=True)
        reg.add_translator("4.x", "5.0", "myapp_keyspace", "things_table", _Suffix("!"))

    fake = SimpleNamespace(name="myapp", value="myapp.issu:register", load=lambda: register)
    monkeypatch.setattr(registry_mod, "entry_points", lambda group: [fake])
    reg = load_registry()
    assert reg.table("myapp_keyspace", "things_table").key_type == "blob"
    assert reg.translator("4.1.0", "5.0.0", "myapp_keyspace", "things_table").column("k", "c") \
        == "c!"

    def broken(reg: Registry) -> None:
        raise RuntimeError("boom")
    bad = SimpleNamespace(name="bad", value="bad:register", load=lambda: broken)
    monkeypatch.setattr(registry_mod, "entry_points", lambda group: [bad])
    with pytest.raises(RegistryError, match="bad:register"):
        load_registry()


def test_token_slices_cover_the_ring() -> None:
    slices = token_slices(7)
    assert slices[0][1] == MIN_TOKEN and slices[-1][2] == MAX_TOKEN
    for (_, _, hi), (_, lo, _) in itertools.pairwise(slices):
        assert hi == lo
    assert len({s[0] for s in slices}) == 7


def test_translate_rows_groups_by_key_and_rejects_nulls() -> None:
    rows = [("a", "type", json.dumps("project"), 1), ("a", "x", None, None),
            ("b", "type", json.dumps("virtual-network"), 2)]
    out = list(translate_rows(ObjUuid4to5(), rows))
    kinds = [(k, type(i).__name__) for k, _, i in out]
    assert kinds == [("a", "Cell"), ("a", "Rejected"), ("a", "Cell"), ("b", "Cell"), ("b", "Cell")]


@pytest.mark.parametrize("threshold", [10, 1_000_000])
def test_spill_map_same_behaviour_in_memory_and_on_disk(threshold: int) -> None:
    with SpillMap(threshold) as m:
        m.put_many((f"k{i % 3}", f"c{i}", i, i * 2) for i in range(100))
        assert m.spilled == (threshold == 10)
        found = m.take_many([("k0", "c0"), ("k1", "c1"), ("k0", "c1"), ("zz", "c5")])
        assert found == {("k0", "c0"): (0, 0), ("k1", "c1"): (1, 2)}
        assert len(m) == 98
        left = {(k, c) for k, c, _, _ in m.items()}
        assert ("k0", "c0") not in left and ("k2", "c2") in left and len(left) == 98
