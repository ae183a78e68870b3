"""Registry of the keyspaces/tables to sync and the translators between eras.

Applications register their own through the entry point group `issu.keyspaces`: each entry
point is a callable `register(registry: Registry) -> None` (this module's `contrail_defaults`
is the built-in one). Example in an application's pyproject.toml:

    [project.entry-points."issu.keyspaces"]
    myapp = "myapp.issu:register"

    def register(registry):
        registry.add_keyspace("myapp_keyspace", ["things_table"], post_sync=True)
        registry.add_translator("4.x", "5.0", "myapp_keyspace", "things_table", MyTranslator())
        registry.add_inverse("4.x", "5.0", "myapp_keyspace", "things_table", MyBack())

A translator's inverse (5.0 rows back to 4.x) is what a way back after finalize would
replicate through; `add_inverse(..., None)` declares that a step has none. A step with no
inverse, declared or not, closes the way back: `revert_blockers` names it before finalize.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from backends.cassandra.translate import (
    IDENTITY,
    ChainTranslator,
    ObjFqName4to5,
    ObjFqName5to4,
    ObjShared4to5,
    ObjShared5to4,
    ObjUuid4to5,
    ObjUuid5to4,
    TableTranslator,
)
from backends.versions import ERAS, version_path

ENTRY_POINT_GROUP = "issu.keyspaces"
CONFIG_DB_UUID = "config_db_uuid"


class RegistryError(ValueError):
    pass


@dataclass(frozen=True)
class TableSpec:
    """A Thrift-style table: partition `key`, clustering `column1`, `value`.

    The CQL types are those used when the table must be created on the new side and the old
    side does not exist to copy them from; an existing table's own types always win."""

    keyspace: str
    name: str
    key_type: str = "blob"
    column_type: str = "blob"
    value_type: str = "text"

    @property
    def qualified(self) -> str:
        return f"{self.keyspace}.{self.name}"


@dataclass
class KeyspaceSpec:
    name: str
    tables: dict[str, TableSpec] = field(default_factory=dict)
    pre_sync: bool = True
    post_sync: bool = True
    origin: str = ""


class Registry:
    def __init__(self) -> None:
        self.keyspaces: dict[str, KeyspaceSpec] = {}
        self._translators: dict[tuple[str, str, str, str], TableTranslator] = {}
        self._inverses: dict[tuple[str, str, str, str], TableTranslator | None] = {}
        # a reversed view (reversed()): `translator` maps the newer release's rows back
        self.reverse = False

    # ---------------------------------------------------------------- registration
    def add_keyspace(self, name: str, tables: Iterable[str | TableSpec], *,
                     pre_sync: bool = True, post_sync: bool = True, origin: str = "") -> None:
        spec = self.keyspaces.setdefault(name, KeyspaceSpec(name, origin=origin))
        spec.pre_sync, spec.post_sync = pre_sync, post_sync
        for table in tables:
            t = table if isinstance(table, TableSpec) else TableSpec(name, table)
            if t.keyspace != name:
                raise RegistryError(f"table {t.qualified} registered under keyspace {name}")
            spec.tables[t.name] = t

    def add_translator(self, from_era: str, to_era: str, keyspace: str, table: str,
                       translator: TableTranslator) -> None:
        eras = [e.name for e in ERAS]
        if from_era not in eras or to_era not in eras:
            raise RegistryError(f"translator {from_era} -> {to_era} for {keyspace}.{table}: "
                                f"eras are {', '.join(eras)}")
        if eras.index(to_era) != eras.index(from_era) + 1:
            raise RegistryError(f"translator {from_era} -> {to_era}: register one step between "
                                "consecutive eras; paths are chained")
        self._translators[(from_era, to_era, keyspace, table)] = translator

    def add_inverse(self, from_era: str, to_era: str, keyspace: str, table: str,
                    inverse: TableTranslator | None) -> None:
        """Declare the inverse of the step from_era -> to_era of keyspace.table (it
        translates to_era rows back), or None: the step has none."""
        if (from_era, to_era, keyspace, table) not in self._translators:
            raise RegistryError(f"inverse of {from_era} -> {to_era} for {keyspace}.{table}: "
                                "no such translator is registered")
        self._inverses[(from_era, to_era, keyspace, table)] = inverse

    def revert_blockers(self, old_version: str, new_version: str,
                        keyspaces: Iterable[str] | None = None) -> list[str]:
        """The translator steps on the path whose inverse is missing (declared None or never
        declared), each named; identity steps are their own inverse."""
        blockers = []
        for spec in self.tables(keyspaces):
            for a, b in version_path(old_version, new_version):
                key = (a, b, spec.keyspace, spec.name)
                forward = self._translators.get(key)
                if forward is None or forward.is_identity:
                    continue
                if self._inverses.get(key) is None:
                    how = "declares none" if key in self._inverses else "declares no inverse"
                    blockers.append(f"{spec.qualified} {a} -> {b} ({forward.name}): {how}")
        return blockers

    def reversed(self) -> Registry:
        """The same registry for the reverse replication new -> old: its `translator(new's
        version, old's version, ...)` chains the inverses, newest step first."""
        view = Registry()
        view.keyspaces, view._translators, view._inverses = (
            self.keyspaces, self._translators, self._inverses)
        view.reverse = True
        return view

    # ---------------------------------------------------------------- lookup
    def table(self, keyspace: str, table: str) -> TableSpec:
        try:
            return self.keyspaces[keyspace].tables[table]
        except KeyError:
            raise RegistryError(f"{keyspace}.{table} is not a registered table") from None

    def tables(self, keyspaces: Iterable[str] | None = None, *,
               phase: str = "pre") -> list[TableSpec]:
        """Tables of the given keyspaces (all registered for the phase when None)."""
        if keyspaces is None:
            names = [k for k, s in self.keyspaces.items()
                     if (s.pre_sync if phase == "pre" else s.post_sync)]
        else:
            names = list(keyspaces)
            unknown = [k for k in names if k not in self.keyspaces]
            if unknown:
                raise RegistryError(f"keyspace(s) not registered: {', '.join(unknown)} "
                                    f"(registered: {', '.join(self.keyspaces)})")
        return [t for k in names for t in self.keyspaces[k].tables.values()]

    def translator(self, old_version: str, new_version: str, keyspace: str,
                   table: str) -> TableTranslator:
        """The chained translator from old to new (identity for steps with none registered).
        Raises VersionPathError for an unsupported path. On a reversed view `old_version`
        is the newer release (the source) and the steps are the inverses, last step first;
        a step without one raises RegistryError naming it.
        """
        if self.reverse:
            return self._inverse_chain(old_version, new_version, keyspace, table)
        steps = [self._translators.get((a, b, keyspace, table), IDENTITY)
                 for a, b in version_path(old_version, new_version)]
        chain = ChainTranslator(steps)
        return chain.steps[0] if len(chain.steps) == 1 else chain

    def _inverse_chain(self, source_version: str, target_version: str, keyspace: str,
                       table: str) -> TableTranslator:
        steps: list[TableTranslator] = []
        for a, b in reversed(version_path(target_version, source_version)):
            key = (a, b, keyspace, table)
            forward = self._translators.get(key)
            if forward is None or forward.is_identity:
                continue
            inverse = self._inverses.get(key)
            if inverse is None:
                raise RegistryError(f"{keyspace}.{table} {a} -> {b} ({forward.name}) has no "
                                    "inverse: no way back from "
                                    f"{source_version} to {target_version}")
            steps.append(inverse)
        chain = ChainTranslator(steps)
        return chain.steps[0] if len(chain.steps) == 1 else chain


CONTRAIL_KEYSPACES: dict[str, list[str]] = {
    CONFIG_DB_UUID: ["obj_uuid_table", "obj_fq_name_table", "obj_shared_table"],
    "to_bgp_keyspace": ["route_target_table", "service_chain_ip_address_table",
                        "service_chain_table", "service_chain_uuid_table"],
    "useragent": ["useragent_keyval_table"],
    "svc_monitor_keyspace": ["service_instance_table", "pool_table", "loadbalancer_table",
                             "healthmonitor_table"],
    "dm_keyspace": ["dm_pr_vn_ip_table", "dm_pr_asn_table", "dm_ni_ipv6_ll_table",
                    "dm_pnf_resource_table"],
}


def contrail_defaults(registry: Registry) -> None:
    """The Contrail keyspaces (config_db_uuid is copied by pre-sync and run-sync, never by
    post-sync) and the 4.x -> 5.0 translators with their inverses."""
    for keyspace, tables in CONTRAIL_KEYSPACES.items():
        registry.add_keyspace(keyspace, tables, post_sync=keyspace != CONFIG_DB_UUID,
                              origin="contrail")
    registry.add_translator("4.x", "5.0", CONFIG_DB_UUID, "obj_uuid_table", ObjUuid4to5())
    registry.add_translator("4.x", "5.0", CONFIG_DB_UUID, "obj_fq_name_table", ObjFqName4to5())
    registry.add_inverse("4.x", "5.0", CONFIG_DB_UUID, "obj_uuid_table", ObjUuid5to4())
    registry.add_inverse("4.x", "5.0", CONFIG_DB_UUID, "obj_fq_name_table", ObjFqName5to4())
    registry.add_translator("4.x", "5.0", CONFIG_DB_UUID, "obj_shared_table", ObjShared4to5())
    registry.add_inverse("4.x", "5.0", CONFIG_DB_UUID, "obj_shared_table", ObjShared5to4())


def load_registry(*, entry_points_group: str = ENTRY_POINT_GROUP) -> Registry:
    """The registry with every installed `issu.keyspaces` entry point applied (Contrail's
    defaults always first, even when the package metadata is not installed)."""
    registry = Registry()
    contrail_defaults(registry)
    for ep in sorted(entry_points(group=entry_points_group), key=lambda e: e.name):
        if ep.value == f"{__name__}:contrail_defaults":
            continue
        try:
            register = ep.load()
            register(registry)
        except Exception as exc:
            raise RegistryError(f"entry point {ep.name} ({ep.value}) of group "
                                f"{entry_points_group} failed: {exc}") from exc
    return registry


def load_reverse_registry(*, entry_points_group: str = ENTRY_POINT_GROUP) -> Registry:
    """load_registry's reversed view (the reverse replication's; picklable by name for the
    apply processes)."""
    return load_registry(entry_points_group=entry_points_group).reversed()
