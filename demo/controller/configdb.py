"""The api-server's object logic: CRUD, refs, lists, fq-name lookups, ID allocation, notifications.

Storage follows Contrail's `obj_uuid_table` / `obj_fq_name_table` layout in the shape of the
controller's release (see schema.Shape). Every method is synchronous and is run by the HTTP
layer in a thread; mutations run on one dedicated thread so their order on the message bus
is the order of the writes in Cassandra.
"""

from __future__ import annotations

import builtins
import datetime
import ipaddress
import json
import logging
import threading
import uuid as uuidlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import schema
from .ids import ZkIds
from .notify import ChangePublisher
from .schema import ResourceType, Shape
from .store import FQ_NAME_TABLE, JSON_NONE, ConfigStore, Mutation

log = logging.getLogger(__name__)

# Fields every object dict carries besides props / refs / children / back_refs.
BASE_KEYS = ("uuid", "fq_name", "name", "href", "parent_type", "parent_uuid", "parent_href")
SYSTEM_PROPS = {"virtual_network_network_id", "security_group_id"}
# A fq-name lock in ZooKeeper older than this whose object is not in Cassandra was left by a
# crash between the two writes and may be taken over.
STALE_LOCK_S = 30.0


class ApiError(Exception):
    """An error the REST layer returns as-is: HTTP status and a plain-text body."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None).isoformat()


def _default_id_perms(obj_uuid: str) -> dict[str, Any]:
    u = uuidlib.UUID(obj_uuid)
    created = _now()
    return {
        "enable": True,
        "uuid": {"uuid_mslong": u.int >> 64, "uuid_lslong": u.int & ((1 << 64) - 1)},
        "created": created,
        "last_modified": created,
        "description": None,
        "creator": None,
        "user_visible": True,
        "permissions": {"owner": "cloud-admin", "owner_access": 7, "group": "cloud-admin-group",
                        "group_access": 7, "other_access": 7},
    }


@dataclass
class ListQuery:
    parent_ids: list[str] | None = None
    parent_fq_name: list[str] | None = None
    obj_uuids: list[str] | None = None
    back_ref_ids: list[str] | None = None
    fq_names: list[list[str]] | None = None
    fields: set[str] | None = None
    detail: bool = False
    count: bool = False


class ConfigDB:
    def __init__(self, store: ConfigStore, ids: ZkIds, publisher: ChangePublisher | None,
                 shape: Shape, base_url: str):
        self.store = store
        self.ids = ids
        self.publisher = publisher
        self.shape = shape
        self.base_url = base_url.rstrip("/")
        self._fq_cache: dict[str, list[str]] = {}
        self._stripes = [threading.Lock() for _ in range(64)]

    def _lock(self, obj_uuid: str) -> threading.Lock:
        """Mutations of one object are serialised (write + publish in one order)."""
        return self._stripes[hash(obj_uuid) % len(self._stripes)]

    # -- helpers -----------------------------------------------------------------------------
    def _rt(self, type_name: str) -> ResourceType:
        rt = schema.lookup(type_name)
        if rt is None:
            raise ApiError(404, f"Unknown resource type {type_name!r}")
        return rt

    def href(self, rt: ResourceType, obj_uuid: str) -> str:
        return f"{self.base_url}/{rt.res_type}/{obj_uuid}"

    def uuid_of(self, rt: ResourceType, fq_name: list[str]) -> str | None:
        return self.store.fq_name_to_uuid(self.shape.db_type(rt), ":".join(fq_name))

    def _fq_names(self, uuids: Iterable[str]) -> dict[str, list[str]]:
        uuids = list(uuids)
        missing = [u for u in set(uuids) if u not in self._fq_cache]
        if missing:
            for u, raw in self.store.columns(missing, "fq_name").items():
                if raw is not None:
                    self._fq_cache[u] = json.loads(raw)
        return {u: self._fq_cache[u] for u in uuids if u in self._fq_cache}

    def _row_of(self, rt: ResourceType | None, obj_uuid: str) -> dict[str, str]:
        row = self.store.row(obj_uuid)
        if "fq_name" not in row or "type" not in row:
            what = rt.res_type if rt else "object"
            raise ApiError(404, f"No {what} with uuid {obj_uuid}")
        if rt is not None:
            found = schema.lookup(json.loads(row["type"]))
            if found is None or found.res_type != rt.res_type:
                raise ApiError(404, f"No {rt.res_type} with uuid {obj_uuid}")
        return row

    def _publish(self, oper: str, rt: ResourceType, obj_uuid: str, fq_name: list[str],
                 request_id: str, obj_dict: dict[str, Any] | None) -> None:
        if self.publisher is None:
            return
        message: dict[str, Any] = {
            "request-id": request_id,
            "oper": oper,
            "type": self.shape.db_type(rt),
            "uuid": obj_uuid,
            "fq_name": fq_name,
        }
        if obj_dict is not None:
            message["obj_dict"] = obj_dict
        self.publisher.publish(message)

    # -- name lookups ------------------------------------------------------------------------
    def fq_name_to_id(self, type_name: str, fq_name: list[str]) -> str:
        rt = self._rt(type_name)
        found = self.uuid_of(rt, fq_name)
        if found is None:
            raise ApiError(404, f"Name {fq_name!r} not found for type {rt.res_type}")
        return found

    def id_to_fq_name(self, obj_uuid: str) -> tuple[list[str], str]:
        row = self._row_of(None, obj_uuid)
        rt = self._rt(json.loads(row["type"]))
        return json.loads(row["fq_name"]), rt.res_type

    # -- create ------------------------------------------------------------------------------
    def create(self, type_name: str, body: dict[str, Any], request_id: str) -> dict[str, Any]:
        rt = self._rt(type_name)
        fq_name = body.get("fq_name")
        parent_type = body.get("parent_type")
        parent_uuid = body.get("parent_uuid")
        if not fq_name:
            name = body.get("name")
            if not name:
                raise ApiError(400, f"{rt.res_type}: create needs fq_name (or name and parent)")
            if parent_uuid:
                parent_fq, ptype = self.id_to_fq_name(parent_uuid)
                parent_type = parent_type or ptype
                fq_name = [*parent_fq, name]
            else:
                fq_name = [name]
        if not isinstance(fq_name, list) or not all(isinstance(x, str) and x for x in fq_name):
            raise ApiError(400, f"{rt.res_type}: fq_name must be a list of non-empty strings")
        parent_rt: ResourceType | None = None
        if len(fq_name) > 1:
            if parent_type is None:
                candidates = [p for p in rt.parent_types if p != "config-root"]
                if len(candidates) != 1:
                    raise ApiError(400, f"{rt.res_type} {':'.join(fq_name)}: parent_type needed, "
                                        f"one of {rt.parent_types}")
                parent_type = candidates[0]
            if parent_type not in rt.parent_types:
                raise ApiError(400, f"Invalid parent type: {parent_type} not in {rt.parent_types}")
            parent_rt = self._rt(parent_type)
            parent_uuid = self.uuid_of(parent_rt, fq_name[:-1])
            if parent_uuid is None:
                raise ApiError(404, f"Parent {parent_type} {':'.join(fq_name[:-1])} not found")
        elif parent_type not in (None, "config-root"):
            raise ApiError(400, f"{rt.res_type} {fq_name[0]}: one-element fq_name has no parent")

        obj_uuid = str(body.get("uuid") or uuidlib.uuid4())
        try:
            uuidlib.UUID(obj_uuid)
        except ValueError as exc:
            raise ApiError(400, f"{rt.res_type}: invalid uuid {obj_uuid!r}") from exc
        db_type = self.shape.db_type(rt)
        existing = self.uuid_of(rt, fq_name)
        if existing is not None:
            raise ApiError(409, f"Fq name {':'.join(fq_name)} of type {rt.res_type} already "
                                f"exists with uuid {existing}")
        if body.get("uuid") and self.store.column(obj_uuid, "type") is not None:
            raise ApiError(409, f"uuid {obj_uuid} already in use")
        owner, age = self.ids.claim_fq_name(db_type, fq_name, obj_uuid)
        if owner != obj_uuid:
            # Another create of that name is in flight, or a crash left the lock behind.
            if age < STALE_LOCK_S or self.store.column(owner, "type") is not None:
                raise ApiError(409, f"Fq name {':'.join(fq_name)} of type {rt.res_type} is "
                                    f"being created with uuid {owner}")
            log.warning("zk fq-name lock for %s:%s held %.0fs by %s with no object; taking "
                        "it over", db_type, ":".join(fq_name), age, owner)
            self.ids.release_fq_name(db_type, fq_name)
            owner, _ = self.ids.claim_fq_name(db_type, fq_name, obj_uuid)
            if owner != obj_uuid:
                raise ApiError(409, f"Fq name {':'.join(fq_name)} of type {rt.res_type} is "
                                    f"being created with uuid {owner}")

        allocated: list[tuple[str, Any]] = []
        try:
            obj_dict = self._build_create(rt, body, fq_name, obj_uuid, parent_rt, parent_uuid,
                                          allocated)
            mutation = self._create_mutation(rt, obj_dict, parent_rt, parent_uuid)
            self.store.apply(mutation)
        except Exception:
            self._undo_allocations(allocated)
            self.ids.release_fq_name(db_type, fq_name)
            raise
        self._fq_cache[obj_uuid] = list(fq_name)
        self._publish("CREATE", rt, obj_uuid, fq_name, request_id, obj_dict)
        result = {"uuid": obj_uuid, "fq_name": fq_name, "name": fq_name[-1],
                  "href": self.href(rt, obj_uuid)}
        if parent_rt is not None and parent_uuid is not None:
            result.update(parent_type=parent_rt.res_type, parent_uuid=parent_uuid,
                          parent_href=self.href(parent_rt, parent_uuid))
        return result

    def _build_create(self, rt: ResourceType, body: dict[str, Any], fq_name: list[str],
                      obj_uuid: str, parent_rt: ResourceType | None, parent_uuid: str | None,
                      allocated: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {"uuid": obj_uuid, "fq_name": fq_name}
        if parent_rt is not None:
            obj["parent_type"] = parent_rt.res_type
            obj["parent_uuid"] = parent_uuid
        for prop in rt.prop_fields:
            if body.get(prop) is not None:
                obj[prop] = body[prop]
        id_perms = _default_id_perms(obj_uuid)
        id_perms.update({k: v for k, v in (body.get("id_perms") or {}).items()
                         if v is not None and k not in ("uuid", "created", "last_modified")})
        obj["id_perms"] = id_perms
        obj.setdefault("display_name", fq_name[-1])
        if self.shape.default_perms2 and "perms2" in rt.prop_fields:
            obj.setdefault("perms2", dict(schema.DEFAULT_PERMS2))
        for field, target_type in rt.ref_fields.items():
            refs = body.get(field)
            if not refs:
                continue
            obj[field] = [self._resolve_ref(rt, field, target_type, ref) for ref in refs]
        fq_str = ":".join(fq_name)
        if rt.res_type == "virtual-network" and obj.get("virtual_network_network_id") is None:
            vn_id = self.ids.alloc_vn_id(fq_str)
            allocated.append(("vn", vn_id))
            obj["virtual_network_network_id"] = vn_id
        if rt.res_type == "security-group" and obj.get("security_group_id") is None:
            sg_id = self.ids.alloc_sg_id(fq_str)
            allocated.append(("sg", sg_id))
            obj["security_group_id"] = sg_id
        if rt.res_type == "instance-ip":
            self._assign_address(obj, allocated)
        return obj

    def _resolve_ref(self, rt: ResourceType, field: str, target_type: str,
                     ref: dict[str, Any]) -> dict[str, Any]:
        target_rt = self._rt(target_type)
        ref_uuid = ref.get("uuid")
        to = ref.get("to")
        if ref_uuid:
            row = self.store.row(ref_uuid)
            if "fq_name" not in row:
                raise ApiError(404, f"{rt.res_type} {field}: {target_type} {ref_uuid} not found")
            to = json.loads(row["fq_name"])
        elif to:
            ref_uuid = self.uuid_of(target_rt, to)
            if ref_uuid is None:
                raise ApiError(404, f"{rt.res_type} {field}: {target_type} {':'.join(to)} "
                                    "not found")
        else:
            raise ApiError(400, f"{rt.res_type} {field}: a ref needs 'uuid' or 'to'")
        return {"to": to, "uuid": ref_uuid, "attr": ref.get("attr")}

    def _ref_mutation(self, m: Mutation, rt: ResourceType, obj_uuid: str, target_rt: ResourceType,
                      ref_uuid: str, attr: Any, add: bool) -> None:
        my_t, their_t = self.shape.db_type(rt), self.shape.db_type(target_rt)
        value = json.dumps({"attr": attr, "is_weakref": False})
        back_col = (f"ref:{my_t}:{obj_uuid}" if rt.res_type == target_rt.res_type
                    else f"backref:{my_t}:{obj_uuid}")
        if add:
            m.put(obj_uuid, f"ref:{their_t}:{ref_uuid}", value)
            m.put(ref_uuid, back_col, value)
            m.put(ref_uuid, "META:latest_col_ts", JSON_NONE)
        else:
            # no cell written on the target: it may be gone, and a lone META cell would
            # leave a row without fq_name/type behind
            m.remove(obj_uuid, f"ref:{their_t}:{ref_uuid}")
            m.remove(ref_uuid, back_col)

    def _create_mutation(self, rt: ResourceType, obj: dict[str, Any],
                         parent_rt: ResourceType | None, parent_uuid: str | None) -> Mutation:
        m = Mutation()
        u = obj["uuid"]
        db_type = self.shape.db_type(rt)
        m.put(u, "fq_name", json.dumps(obj["fq_name"]))
        m.put(u, "type", json.dumps(db_type))
        m.put(u, "META:latest_col_ts", JSON_NONE)
        if parent_rt is not None and parent_uuid is not None:
            m.put(u, "parent_type", json.dumps(parent_rt.res_type))
            m.put(u, f"parent:{self.shape.db_type(parent_rt)}:{parent_uuid}", JSON_NONE)
            m.put(parent_uuid, f"children:{db_type}:{u}", JSON_NONE)
            m.put(parent_uuid, "META:latest_col_ts", JSON_NONE)
        for prop in rt.prop_fields:
            if obj.get(prop) is not None:
                m.put(u, self.shape.prop_column(prop), json.dumps(obj[prop]))
        for field, target_type in rt.ref_fields.items():
            for ref in obj.get(field) or []:
                self._ref_mutation(m, rt, u, self._rt(target_type), ref["uuid"], ref["attr"], True)
        m.put(db_type, f"{':'.join(obj['fq_name'])}:{u}", JSON_NONE, table=FQ_NAME_TABLE)
        return m

    # -- instance-ip address management (ZooKeeper subnets) ---------------------------------
    def _vn_subnets(self, vn_uuid: str) -> tuple[list[str], list[dict[str, Any]]]:
        row = self.store.row(vn_uuid)
        if "fq_name" not in row:
            raise ApiError(404, f"virtual-network {vn_uuid} not found")
        subnets: list[dict[str, Any]] = []
        for col, val in row.items():
            if col.startswith("ref:") and schema.lookup(col.split(":")[1]) is schema.lookup(
                    "network-ipam"):
                attr = json.loads(val).get("attr") or {}
                subnets.extend(attr.get("ipam_subnets") or [])
        return json.loads(row["fq_name"]), subnets

    def _iip_vn(self, obj: dict[str, Any]) -> str | None:
        refs = obj.get("virtual_network_refs") or []
        return refs[0]["uuid"] if refs else None

    def _assign_address(self, obj: dict[str, Any], allocated: list[tuple[str, Any]]) -> None:
        vn_uuid = self._iip_vn(obj)
        if vn_uuid is None:
            if obj.get("instance_ip_address") is None:
                raise ApiError(400, "instance-ip needs a virtual_network_refs to allocate from")
            return
        vn_fq, subnets = self._vn_subnets(vn_uuid)
        wanted = obj.get("instance_ip_address")
        for sn in subnets:
            pfx = (sn.get("subnet") or {})
            if not pfx.get("ip_prefix"):
                continue
            net = ipaddress.ip_network(f"{pfx['ip_prefix']}/{pfx['ip_prefix_len']}", strict=False)
            if net.version != 4:
                continue
            key = (vn_fq, str(net.network_address), net.prefixlen)
            if wanted is not None:
                addr = ipaddress.ip_address(wanted)
                if addr in net:
                    if not self.ids.reserve_address(*key, int(addr), obj["uuid"]):
                        raise ApiError(409, f"Ip address {wanted} already in use in "
                                            f"{':'.join(vn_fq)}")
                    allocated.append(("ip", (*key, int(addr))))
                    return
                continue
            # .1 is the default gateway and .2 the service address, as in Contrail defaults.
            lo, hi = int(net.network_address) + 3, int(net.broadcast_address) - 1
            value = self.ids.alloc_address(*key, lo, hi, obj["uuid"])
            allocated.append(("ip", (*key, value)))
            obj["instance_ip_address"] = str(ipaddress.ip_address(value))
            obj.setdefault("instance_ip_family", "v4")
            return
        if wanted is None:
            raise ApiError(400, f"virtual-network {':'.join(vn_fq)} has no IPv4 subnet to "
                                "allocate an instance-ip from")

    def _free_address(self, obj: dict[str, Any]) -> None:
        vn_uuid, wanted = self._iip_vn(obj), obj.get("instance_ip_address")
        if vn_uuid is None or wanted is None:
            return
        try:
            vn_fq, subnets = self._vn_subnets(vn_uuid)
        except ApiError:
            return
        addr = ipaddress.ip_address(wanted)
        for sn in subnets:
            pfx = sn.get("subnet") or {}
            if not pfx.get("ip_prefix"):
                continue
            net = ipaddress.ip_network(f"{pfx['ip_prefix']}/{pfx['ip_prefix_len']}", strict=False)
            if addr in net:
                self.ids.free_address(vn_fq, str(net.network_address), net.prefixlen, int(addr))
                return

    def _undo_allocations(self, allocated: list[tuple[str, Any]]) -> None:
        for kind, value in allocated:
            if kind == "vn":
                self.ids.free_vn_id(value)
            elif kind == "sg":
                self.ids.free_sg_id(value)
            elif kind == "ip":
                self.ids.free_address(*value)

    # -- read --------------------------------------------------------------------------------
    def read(self, type_name: str, obj_uuid: str, fields: set[str] | None = None,
             exclude_back_refs: bool = False, exclude_children: bool = False) -> dict[str, Any]:
        rt = self._rt(type_name)
        row = self._row_of(rt, obj_uuid)
        return self.render(rt, obj_uuid, row, fields, exclude_back_refs, exclude_children)

    def render(self, rt: ResourceType, obj_uuid: str, row: dict[str, str],
               fields: set[str] | None, exclude_back_refs: bool = False,
               exclude_children: bool = False,
               names: dict[str, list[str]] | None = None) -> dict[str, Any]:
        fq_name = json.loads(row["fq_name"])
        obj: dict[str, Any] = {"uuid": obj_uuid, "fq_name": fq_name, "name": fq_name[-1],
                               "href": self.href(rt, obj_uuid)}
        linked: list[tuple[str, str, ResourceType, str, str]] = []  # kind, field, type, uuid, val
        for col, val in row.items():
            if col.startswith("prop:"):
                name = self.shape.prop_from_column(col)
                if fields is None or name in fields:
                    obj[name] = json.loads(val)
            elif col.startswith("parent:"):
                _, ptype, puuid = col.split(":", 2)
                prt = schema.lookup(ptype)
                if prt is not None:
                    obj.update(parent_type=prt.res_type, parent_uuid=puuid,
                               parent_href=self.href(prt, puuid))
            elif col.startswith(("ref:", "backref:", "children:")):
                kind, ttype, tuuid = col.split(":", 2)
                trt = schema.lookup(ttype)
                if trt is None:
                    continue
                field = {"ref": f"{trt.obj_type}_refs", "backref": f"{trt.obj_type}_back_refs",
                         "children": f"{trt.obj_type}s"}[kind]
                asked = fields is not None and field in fields
                if fields is not None and not asked:
                    continue
                if kind == "backref" and exclude_back_refs and not asked:
                    continue
                if kind == "children" and exclude_children and not asked:
                    continue
                linked.append((kind, field, trt, tuuid, val))
        if linked:
            resolved = names if names is not None else self._fq_names(u for *_, u, _ in linked)
            for kind, field, trt, tuuid, val in linked:
                entry: dict[str, Any] = {"to": resolved.get(tuuid, []), "uuid": tuuid,
                                         "href": self.href(trt, tuuid)}
                if kind != "children":
                    entry["attr"] = json.loads(val).get("attr") if val else None
                obj.setdefault(field, []).append(entry)
        return obj

    # -- update ------------------------------------------------------------------------------
    def update(self, type_name: str, obj_uuid: str, body: dict[str, Any],
               request_id: str) -> dict[str, Any]:
        with self._lock(obj_uuid):
            return self._update(type_name, obj_uuid, body, request_id)

    def _update(self, type_name: str, obj_uuid: str, body: dict[str, Any],
                request_id: str) -> dict[str, Any]:
        rt = self._rt(type_name)
        row = self._row_of(rt, obj_uuid)
        fq_name = json.loads(row["fq_name"])
        if body.get("fq_name") not in (None, fq_name):
            raise ApiError(400, f"{rt.res_type} {obj_uuid}: fq_name cannot be changed")
        m = Mutation()
        changed: dict[str, Any] = {}
        for prop in rt.prop_fields & body.keys():
            value = body[prop]
            col = self.shape.prop_column(prop)
            if prop in SYSTEM_PROPS:
                current = json.loads(row[col]) if col in row else None
                if value is not None and value != current:
                    raise ApiError(403, f"Cannot update {prop} of {rt.res_type} {obj_uuid}")
                continue
            if prop == "id_perms":
                continue
            changed[prop] = value
            if value is None:
                m.remove(obj_uuid, col)
            else:
                m.put(obj_uuid, col, json.dumps(value))
        id_perms = json.loads(row["prop:id_perms"]) if "prop:id_perms" in row else \
            _default_id_perms(obj_uuid)
        if isinstance(body.get("id_perms"), dict):
            id_perms.update({k: v for k, v in body["id_perms"].items()
                             if k not in ("uuid", "created", "last_modified")})
            changed["id_perms"] = body["id_perms"]
        id_perms["last_modified"] = _now()
        m.put(obj_uuid, "prop:id_perms", json.dumps(id_perms))
        for field, target_type in rt.ref_fields.items():
            if field not in body:
                continue
            target_rt = self._rt(target_type)
            wanted = {r["uuid"]: r for r in (self._resolve_ref(rt, field, target_type, ref)
                                             for ref in body[field] or [])}
            prefix = f"ref:{self.shape.db_type(target_rt)}:"
            for col in [c for c in row if c.startswith(prefix)]:
                old_uuid = col[len(prefix):]
                if old_uuid not in wanted:
                    self._ref_mutation(m, rt, obj_uuid, target_rt, old_uuid, None, False)
            for ref_uuid, ref in wanted.items():
                self._ref_mutation(m, rt, obj_uuid, target_rt, ref_uuid, ref["attr"], True)
            changed[field] = list(wanted.values())
        m.put(obj_uuid, "META:latest_col_ts", JSON_NONE)
        self.store.apply(m)
        self._publish("UPDATE", rt, obj_uuid, fq_name, request_id,
                      {"uuid": obj_uuid, "fq_name": fq_name, **changed})
        return {"uuid": obj_uuid, "href": self.href(rt, obj_uuid)}

    # -- ref-update --------------------------------------------------------------------------
    def ref_update(self, body: dict[str, Any], request_id: str) -> str:
        obj_uuid = body.get("uuid")
        if not isinstance(obj_uuid, str):
            raise ApiError(400, "ref-update: missing 'uuid'")
        with self._lock(obj_uuid):
            return self._ref_update(body, request_id)

    def _ref_update(self, body: dict[str, Any], request_id: str) -> str:
        try:
            rt = self._rt(body["type"])
            obj_uuid = body["uuid"]
            target_rt = self._rt(body["ref-type"])
            operation = body["operation"]
        except KeyError as exc:
            raise ApiError(400, f"ref-update: missing {exc.args[0]!r}") from exc
        if operation not in ("ADD", "DELETE"):
            raise ApiError(400, f"ref-update: operation {operation!r} is not ADD or DELETE")
        field = f"{target_rt.obj_type}_refs"
        if field not in rt.ref_fields:
            raise ApiError(400, f"ref-update: {rt.res_type} has no {field}")
        row = self._row_of(rt, obj_uuid)
        ref_uuid = body.get("ref-uuid")
        if not ref_uuid:
            to = body.get("ref-fq-name")
            if not to:
                raise ApiError(400, "ref-update: ref-uuid or ref-fq-name needed")
            ref_uuid = self.uuid_of(target_rt, to)
            if ref_uuid is None:
                raise ApiError(404, f"ref-update: {target_rt.res_type} {':'.join(to)} not found")
        target_row = self._row_of(target_rt, ref_uuid)
        m = Mutation()
        self._ref_mutation(m, rt, obj_uuid, target_rt, ref_uuid, body.get("attr"),
                           operation == "ADD")
        m.put(obj_uuid, "META:latest_col_ts", JSON_NONE)
        self.store.apply(m)
        fq_name = json.loads(row["fq_name"])
        ref = {"to": json.loads(target_row["fq_name"]), "uuid": ref_uuid, "attr": body.get("attr")}
        self._publish("UPDATE", rt, obj_uuid, fq_name, request_id,
                      {"uuid": obj_uuid, "fq_name": fq_name, "ref_update": {
                          "operation": operation, "field": field, "ref": ref}})
        self._publish("UPDATE", target_rt, ref_uuid, ref["to"], request_id, None)
        return obj_uuid

    # -- prop-collection-update --------------------------------------------------------------
    def prop_collection_update(self, body: dict[str, Any], request_id: str) -> None:
        obj_uuid = body.get("uuid")
        updates = body.get("updates")
        if not isinstance(obj_uuid, str) or not isinstance(updates, list):
            raise ApiError(400, "prop-collection-update: body needs 'uuid' and 'updates' (list)")
        with self._lock(obj_uuid):
            self._prop_collection_update(obj_uuid, updates, request_id)

    def _prop_collection_update(self, obj_uuid: str, updates: list[Any],
                                request_id: str) -> None:
        row = self._row_of(None, obj_uuid)
        rt = self._rt(json.loads(row["type"]))
        values: dict[str, Any] = {}
        for upd in updates:
            if not isinstance(upd, dict) or not isinstance(upd.get("field"), str):
                raise ApiError(400, f"prop-collection-update {obj_uuid}: bad update {upd!r}")
            field = upd["field"]
            if field not in values:
                col = self.shape.prop_column(field)
                values[field] = json.loads(row[col]) if col in row else None
            values[field] = self._apply_collection_op(rt, obj_uuid, field, values[field], upd)
        m = Mutation()
        for field, value in values.items():
            col = self.shape.prop_column(field)
            if value is None:
                m.remove(obj_uuid, col)
            else:
                m.put(obj_uuid, col, json.dumps(value))
        id_perms = json.loads(row["prop:id_perms"]) if "prop:id_perms" in row else \
            _default_id_perms(obj_uuid)
        id_perms["last_modified"] = _now()
        m.put(obj_uuid, "prop:id_perms", json.dumps(id_perms))
        m.put(obj_uuid, "META:latest_col_ts", JSON_NONE)
        self.store.apply(m)
        fq_name = json.loads(row["fq_name"])
        self._publish("UPDATE", rt, obj_uuid, fq_name, request_id,
                      {"uuid": obj_uuid, "fq_name": fq_name, **values})

    def _apply_collection_op(self, rt: ResourceType, obj_uuid: str, field: str, current: Any,
                             upd: dict[str, Any]) -> Any:
        """One list/map element operation on a whole stored property (wrapper kept)."""
        cls = rt.cls
        is_map = field in cls.prop_map_fields
        if not is_map and field not in cls.prop_list_fields:
            raise ApiError(400, f"{rt.res_type} {obj_uuid}: {field} is not a list or map property")
        wrapped = (cls.prop_map_field_has_wrappers if is_map
                   else cls.prop_list_field_has_wrappers).get(field, False)
        wrapper_key = None
        if wrapped:
            xsd = getattr(schema.resource_xsd, cls.prop_field_types[field]["xsd_type"], None)
            wrapper_key = (getattr(xsd, "attr_fields", None) or [None])[0]
        elems = list(((current or {}).get(wrapper_key) if wrapped else current) or [])
        op, value, position = upd.get("operation"), upd.get("value"), upd.get("position")
        if is_map:
            key_name = cls.prop_map_field_key_names[field]
            key = position if position is not None else (value or {}).get(key_name)
            elems = [e for e in elems if e.get(key_name) != key]
            if op in ("set", "add", "modify"):
                elems.append(value)
            elif op != "delete":
                raise ApiError(400, f"{rt.res_type} {obj_uuid}: map operation {op!r} unknown")
        else:
            index = None if position is None else int(position)
            if op == "add":
                elems.insert(len(elems) if index is None else index, value)
            elif op in ("modify", "set") and index is not None and 0 <= index < len(elems):
                elems[index] = value
            elif op == "delete" and index is not None and 0 <= index < len(elems):
                del elems[index]
            else:
                raise ApiError(400, f"{rt.res_type} {obj_uuid}: list operation {op!r} at "
                                    f"position {position!r} not possible")
        if wrapped and wrapper_key:
            return {wrapper_key: elems}
        return elems

    # -- delete ------------------------------------------------------------------------------
    def delete(self, type_name: str, obj_uuid: str, request_id: str) -> None:
        with self._lock(obj_uuid):
            self._delete(type_name, obj_uuid, request_id)

    def _delete(self, type_name: str, obj_uuid: str, request_id: str) -> None:
        rt = self._rt(type_name)
        row = self._row_of(rt, obj_uuid)
        fq_name = json.loads(row["fq_name"])
        if rt.res_type == "virtual-network" and self._delete_primary_instance(
                row, fq_name, request_id):
            row = self._row_of(rt, obj_uuid)
        children = [c for c in row if c.startswith("children:")]
        if children:
            raise ApiError(409, f"Delete when children still present: {self._hrefs(children)}")
        backrefs = [c for c in row if c.startswith("backref:")
                    and not json.loads(row[c] or "{}").get("is_weakref")]
        if backrefs:
            raise ApiError(409, f"Delete when resource still referred: {self._hrefs(backrefs)}")
        obj = self.render(rt, obj_uuid, row, None)
        m = Mutation()
        for col in row:
            if col.startswith("ref:"):
                _, ttype, tuuid = col.split(":", 2)
                trt = schema.lookup(ttype)
                if trt is not None:
                    self._ref_mutation(m, rt, obj_uuid, trt, tuuid, None, False)
            elif col.startswith("parent:"):
                _, _ptype, puuid = col.split(":", 2)
                m.remove(puuid, f"children:{self.shape.db_type(rt)}:{obj_uuid}")
                m.put(puuid, "META:latest_col_ts", JSON_NONE)
        m.drop_row(obj_uuid)
        m.remove(self.shape.db_type(rt), f"{':'.join(fq_name)}:{obj_uuid}", table=FQ_NAME_TABLE)
        self.store.apply(m)
        self.ids.release_fq_name(self.shape.db_type(rt), fq_name)
        if rt.res_type == "virtual-network" and obj.get("virtual_network_network_id"):
            self.ids.free_vn_id(int(obj["virtual_network_network_id"]))
        if rt.res_type == "security-group" and obj.get("security_group_id"):
            self.ids.free_sg_id(int(obj["security_group_id"]))
        if rt.res_type == "instance-ip":
            self._free_address(obj)
        self._fq_cache.pop(obj_uuid, None)
        self._publish("DELETE", rt, obj_uuid, fq_name, request_id, obj)

    def _delete_primary_instance(self, row: dict[str, str], vn_fq: list[str],
                                 request_id: str) -> bool:
        """The network's own routing instance (`<vn>:<vn name>`, which the schema-transformer
        made) goes with the network, as Contrail's api-server deletes a network's default
        children; whether there was one."""
        ri_rt = self._rt("routing-instance")
        wanted = self.uuid_of(ri_rt, [*vn_fq, vn_fq[-1]])
        if wanted is None or f"children:{self.shape.db_type(ri_rt)}:{wanted}" not in row:
            return False
        # not under the instance's own lock: locks are striped, it may be the network's
        self._delete("routing-instance", wanted, request_id)
        return True

    def _hrefs(self, columns: list[str]) -> list[str]:
        out = []
        for col in columns:
            _, ttype, tuuid = col.split(":", 2)
            trt = schema.lookup(ttype)
            out.append(self.href(trt, tuuid) if trt else tuuid)
        return out

    # -- list --------------------------------------------------------------------------------
    def list(self, type_name: str, q: ListQuery) -> dict[str, Any]:
        rt = self._rt(type_name)
        db_type = self.shape.db_type(rt)
        uuids = self._candidates(rt, db_type, q)
        key = rt.collection
        if q.count:
            return {key: {"count": len(uuids)}}
        if not q.detail:
            names = self._fq_names(uuids)
            return {key: [{"href": self.href(rt, u), "fq_name": names[u], "uuid": u}
                          for u in uuids if u in names]}
        rows = self.store.rows(uuids)
        fields = None
        if q.fields:
            fields = q.fields | rt.prop_fields | set(rt.ref_fields)
        linked = {c.split(":", 2)[2] for r in rows.values() for c in r
                  if c.startswith(("ref:", "backref:", "children:"))}
        names = self._fq_names(linked)
        out = []
        for u in uuids:
            row = rows.get(u) or {}
            if "fq_name" not in row:
                continue
            obj = self.render(rt, u, row, fields, exclude_back_refs=not q.fields,
                              exclude_children=not q.fields, names=names)
            out.append({rt.res_type: obj})
        return {key: out}

    def _candidates(self, rt: ResourceType, db_type: str,
                    q: ListQuery) -> builtins.list[str]:  # `list` here is the method above
        parent_ids = list(q.parent_ids or [])
        if q.parent_fq_name:
            for ptype in rt.parent_types:
                prt = schema.lookup(ptype)
                found = self.uuid_of(prt, q.parent_fq_name) if prt else None
                if found:
                    parent_ids.append(found)
            if not parent_ids:
                return []
        selected: list[str] | None = None
        if parent_ids:
            selected = []
            for pid in parent_ids:
                selected += [c.split(":", 2)[2] for c, _ in
                             self.store.prefixed(pid, f"children:{db_type}:")]
        if q.back_ref_ids:
            via: list[str] = []
            for rid in q.back_ref_ids:
                for kind in ("backref", "ref"):
                    via += [c.split(":", 2)[2]
                            for c, _ in self.store.prefixed(rid, f"{kind}:{db_type}:")]
            selected = via if selected is None else [u for u in selected if u in set(via)]
        if q.fq_names:
            by_name = [self.uuid_of(rt, fq) for fq in q.fq_names]
            names = [u for u in by_name if u]
            selected = names if selected is None else [u for u in selected if u in set(names)]
        if selected is None and q.obj_uuids is not None:
            # look the given objects up directly instead of scanning the type's partition
            types = self.store.columns(list(dict.fromkeys(q.obj_uuids)), "type")
            selected = [u for u, t in types.items()
                        if t is not None and schema.lookup(json.loads(t)) is rt]
        if selected is None:
            selected = [entry[-36:] for entry in self.store.fq_name_entries(db_type)]
        if q.obj_uuids is not None:
            wanted = set(q.obj_uuids)
            selected = [u for u in selected if u in wanted]
        return list(dict.fromkeys(selected))  # each uuid once, first occurrence first

    # -- defaults ----------------------------------------------------------------------------
    def ensure_defaults(self, asn: int, request_id: str,
                        nodes: tuple[tuple[str, str, str], ...] = ()) -> int:
        """Create the objects an api-server creates at first start, and the node records the
        provisioning adds (`nodes`: (type, name, address) of config/analytics/database nodes,
        and `bgp-router` for a control node); return how many were new."""
        wanted: list[tuple[str, dict[str, Any]]] = [
            ("global-system-config", {"fq_name": ["default-global-system-config"],
                                      "autonomous_system": asn}),
            ("global-vrouter-config", {"fq_name": ["default-global-system-config",
                                                   "default-global-vrouter-config"],
                                       "parent_type": "global-system-config"}),
            ("domain", {"fq_name": ["default-domain"]}),
            ("project", {"fq_name": ["default-domain", "default-project"],
                         "parent_type": "domain"}),
            ("network-ipam", {"fq_name": ["default-domain", "default-project",
                                          "default-network-ipam"], "parent_type": "project"}),
        ]
        for vn, ri in (("default-virtual-network", "default-routing-instance"),
                       ("ip-fabric", "__default__"), ("__link_local__", "__link_local__")):
            base = ["default-domain", "default-project", vn]
            wanted.append(("virtual-network", {"fq_name": base, "parent_type": "project"}))
            wanted.append(("routing-instance", {"fq_name": [*base, ri],
                                                "parent_type": "virtual-network"}))
        gsc = ["default-global-system-config"]
        fabric = ["default-domain", "default-project", "ip-fabric", "__default__"]
        for node_type, name, address in nodes:
            if node_type == "bgp-router":  # a control node, as provision_control.py adds it
                wanted.append((node_type, {
                    "fq_name": [*fabric, name], "parent_type": "routing-instance",
                    "bgp_router_parameters": {
                        "vendor": "contrail", "router_type": "control-node",
                        "autonomous_system": asn, "identifier": address, "address": address,
                        "port": 179, "hold_time": 90, "address_families": {"family": [
                            "route-target", "inet-vpn", "e-vpn", "erm-vpn", "inet6-vpn"]}}}))
                continue
            prop = f"{node_type.replace('-', '_')}_ip_address"
            wanted.append((node_type, {"fq_name": [*gsc, name],
                                       "parent_type": "global-system-config", prop: address}))
        created = 0
        for type_name, body in wanted:
            if self.uuid_of(self._rt(type_name), body["fq_name"]) is None:
                self.create(type_name, body, request_id)
                created += 1
        return created
