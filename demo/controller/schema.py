"""Resource types (from the public vnc_api schema) and the storage shape of each release.

The REST side always speaks the resource names of the public schema (`virtual-network`,
field `virtual_network_network_id`). What differs between releases is how rows look in
Cassandra, ZooKeeper and the change messages:
- 4.x: type names with `-`, `prop:virtual_network_network_id`, no default `perms2`;
- 5.0: type names with `_`, `prop:virtual_network_id`, `perms2` always present.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from vnc_api.gen import resource_common, resource_xsd
from vnc_api.gen.vnc_api_client_gen import all_resource_type_tuples

__all__ = ["DEFAULT_PERMS2", "ResourceType", "Shape", "lookup", "registry", "resource_xsd",
           "shape_for"]

DEFAULT_PERMS2: dict[str, Any] = {
    "owner": "cloud-admin",
    "owner_access": 7,
    "global_access": 0,
    "share": [],
}


@dataclass(frozen=True)
class ResourceType:
    res_type: str  # "virtual-network"
    obj_type: str  # "virtual_network"
    cls: Any  # the vnc_api generated class, used only for its schema metadata

    @property
    def collection(self) -> str:
        return f"{self.res_type}s"

    @property
    def parent_types(self) -> list[str]:
        return list(self.cls.parent_types)

    @property
    def prop_fields(self) -> set[str]:
        return set(self.cls.prop_fields)

    @property
    def ref_fields(self) -> dict[str, str]:
        """ref field name -> referred resource type."""
        return {f: t[0] for f, t in self.cls.ref_field_types.items()}

    @property
    def backref_fields(self) -> set[str]:
        return set(self.cls.backref_fields)

    @property
    def children_fields(self) -> set[str]:
        return set(self.cls.children_fields)


def _camel(res_type: str) -> str:
    return "".join(w[:1].upper() + w[1:] for w in res_type.replace("_", "-").split("-"))


@cache
def registry() -> dict[str, ResourceType]:
    out: dict[str, ResourceType] = {}
    for obj_type, res_type in all_resource_type_tuples:
        cls = getattr(resource_common, _camel(res_type), None)
        if cls is None:
            continue
        out[res_type] = ResourceType(res_type=res_type, obj_type=obj_type, cls=cls)
    return out


@cache
def collections() -> dict[str, ResourceType]:
    return {rt.collection: rt for rt in registry().values()}


def lookup(type_name: str) -> ResourceType | None:
    """Accept either spelling (`virtual-network` or `virtual_network`)."""
    reg = registry()
    if type_name in reg:
        return reg[type_name]
    return reg.get(type_name.replace("_", "-"))


@dataclass(frozen=True)
class Shape:
    """How one release writes objects into its stores."""

    name: str
    underscore_types: bool
    vn_id_column: str
    default_perms2: bool

    def db_type(self, rt: ResourceType) -> str:
        return rt.obj_type if self.underscore_types else rt.res_type

    def prop_column(self, prop: str) -> str:
        if prop == "virtual_network_network_id":
            return f"prop:{self.vn_id_column}"
        return f"prop:{prop}"

    def prop_from_column(self, column: str) -> str:
        name = column[len("prop:") :]
        if name == self.vn_id_column:
            return "virtual_network_network_id"
        return name


SHAPE_4X = Shape("4.x", underscore_types=False, vn_id_column="virtual_network_network_id",
                 default_perms2=False)
SHAPE_50 = Shape("5.0", underscore_types=True, vn_id_column="virtual_network_id",
                 default_perms2=True)


def shape_for(version: str) -> Shape:
    try:
        major = int(version.split(".")[0])
    except ValueError as exc:
        raise ValueError(f"version {version!r} is not of the form MAJOR.MINOR.PATCH") from exc
    return SHAPE_50 if major >= 5 else SHAPE_4X
