"""Contrail-shaped data for tests, demos and benchmarks (importable: `from tests.contrail_data
import ...`). Shapes follow Contrail's vnc_cassandra layout:

- `config_db_uuid.obj_uuid_table`: one partition per object (key = uuid) with columns
  `fq_name`, `type`, `parent_type`, `prop:<name>`, `parent:<type>:<uuid>`,
  `children:<type>:<uuid>`, `ref:<type>:<uuid>`, `backref:<type>:<uuid>`,
  `META:latest_col_ts`; every value is JSON.
- `config_db_uuid.obj_fq_name_table`: one partition per type, one column per object
  `<fq_name joined by ':'>:<uuid>`, value `null`.
- `config_db_uuid.obj_shared_table`: key = object type, column `tenant:<project>:<uuid>`.
- one or more rows in each table of `to_bgp_keyspace`, `useragent`, `svc_monitor_keyspace`,
  `dm_keyspace`.

`generate()` builds a `Dataset` (plain dicts: (keyspace, table) -> key -> column -> value);
`create_schema()` creates the tables the way Contrail's CQL driver does (`key blob, column1
blob, value text`, minus COMPACT STORAGE which Cassandra 5 lacks); `write()` writes a dataset
with chosen WRITETIMEs (`USING TIMESTAMP`); `read_table()` reads one back with writetimes.
Type names use the 4.x shape (`virtual-network`) unless `dashed=False` (5.0 shape).
"""

from __future__ import annotations

import json
import random
import time
import uuid as uuid_mod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from cassandra.cluster import Session
from cassandra.concurrent import execute_concurrent, execute_concurrent_with_args
from cassandra.query import BatchStatement, BatchType

Table = tuple[str, str]  # (unprefixed keyspace, table)
Cells = dict[str, str]

CONTRAIL_TABLES: dict[str, list[str]] = {
    "config_db_uuid": ["obj_uuid_table", "obj_fq_name_table", "obj_shared_table"],
    "to_bgp_keyspace": ["route_target_table", "service_chain_ip_address_table",
                        "service_chain_table", "service_chain_uuid_table"],
    "useragent": ["useragent_keyval_table"],
    "svc_monitor_keyspace": ["service_instance_table", "pool_table", "loadbalancer_table",
                             "healthmonitor_table"],
    "dm_keyspace": ["dm_pr_vn_ip_table", "dm_pr_asn_table", "dm_ni_ipv6_ll_table",
                    "dm_pnf_resource_table"],
}

UUID_TABLE: Table = ("config_db_uuid", "obj_uuid_table")
FQ_TABLE: Table = ("config_db_uuid", "obj_fq_name_table")
SHARED_TABLE: Table = ("config_db_uuid", "obj_shared_table")


def now_us() -> int:
    return int(time.time() * 1_000_000)


def ks_name(prefix: str, keyspace: str) -> str:
    return f"{prefix}_{keyspace}" if prefix else keyspace


@dataclass
class Dataset:
    tables: dict[Table, dict[str, Cells]] = field(default_factory=dict)
    objects: dict[str, str] = field(default_factory=dict)  # uuid -> type (as written)

    def partition(self, table: Table, key: str) -> Cells:
        return self.tables.setdefault(table, {}).setdefault(key, {})

    def cell_count(self) -> int:
        return sum(len(cols) for parts in self.tables.values() for cols in parts.values())

    def uuids_of(self, type_name: str) -> list[str]:
        return [u for u, t in self.objects.items() if t == type_name]


def _t(name: str, dashed: bool) -> str:
    return name if dashed else name.replace("-", "_")


def add_object(ds: Dataset, type_name: str, fq_name: list[str], *, parent: tuple[str, str]
               | None = None, props: Mapping[str, object] | None = None,
               refs: Iterable[tuple[str, str]] = (), dashed: bool = True,
               perms2: bool = True, obj_uuid: str | None = None) -> str:
    """One object (type as given, e.g. 'virtual-network') in obj_uuid_table with its
    fq-name index entry, parent/children links and refs/backrefs; returns its uuid."""
    uid = obj_uuid or str(uuid_mod.uuid4())
    t = _t(type_name, dashed)
    cols = ds.partition(UUID_TABLE, uid)
    cols["fq_name"] = json.dumps(fq_name)
    cols["type"] = json.dumps(t)
    cols["prop:id_perms"] = json.dumps({"enable": True, "uuid": {"uuid_mslong": 1,
                                                                 "uuid_lslong": 2},
                                        "created": "2026-01-01T00:00:00",
                                        "description": None, "user_visible": True})
    cols["prop:display_name"] = json.dumps(fq_name[-1])
    if perms2:
        cols["prop:perms2"] = json.dumps({"owner": "admin", "owner_access": 7,
                                          "global_access": 0, "share": []})
    for name, value in (props or {}).items():
        cols[f"prop:{name}"] = json.dumps(value)
    cols["META:latest_col_ts"] = json.dumps(None)
    if parent is not None:
        ptype, puuid = parent
        cols["parent_type"] = json.dumps(_t(ptype, dashed).replace("-", "_"))
        cols[f"parent:{_t(ptype, dashed)}:{puuid}"] = json.dumps(None)
        ds.partition(UUID_TABLE, puuid)[f"children:{t}:{uid}"] = json.dumps(None)
    for rtype, ruuid in refs:
        cols[f"ref:{_t(rtype, dashed)}:{ruuid}"] = json.dumps({"attr": None,
                                                                "is_weakref": False})
        ds.partition(UUID_TABLE, ruuid)[f"backref:{t}:{uid}"] = json.dumps({"attr": None})
    ds.partition(FQ_TABLE, t)[":".join(fq_name) + ":" + uid] = json.dumps(None)
    ds.objects[uid] = t
    return uid


def generate(projects: int = 2, vns_per_project: int = 5, vmis_per_vn: int = 2, *,
             seed: int = 7, dashed: bool = True, without_perms2_every: int = 3) -> Dataset:
    """A domain, `projects` projects each with an IPAM, VNs (every `without_perms2_every`-th
    VN without prop:perms2, to exercise the 5.0 default), VMIs referring to their VN, and a
    few rows in every other Contrail keyspace."""
    rng = random.Random(seed)

    def uid() -> str:
        return str(uuid_mod.UUID(int=rng.getrandbits(128), version=4))

    ds = Dataset()
    dom = add_object(ds, "domain", ["default-domain"], dashed=dashed, obj_uuid=uid())
    vn_count = 0
    for p in range(projects):
        proj = add_object(ds, "project", ["default-domain", f"project-{p}"],
                          parent=("domain", dom), dashed=dashed, obj_uuid=uid())
        ipam = add_object(ds, "network-ipam", ["default-domain", f"project-{p}", "ipam"],
                          parent=("project", proj), dashed=dashed, obj_uuid=uid())
        for v in range(vns_per_project):
            vn_count += 1
            fq = ["default-domain", f"project-{p}", f"vn-{v}"]
            vn = add_object(ds, "virtual-network", fq, parent=("project", proj),
                            props={"virtual_network_network_id": vn_count,
                                   "is_shared": False},
                            refs=[("network-ipam", ipam)], dashed=dashed,
                            perms2=(vn_count % without_perms2_every) != 0, obj_uuid=uid())
            ds.partition(SHARED_TABLE, "virtual_network")[f"tenant:{proj}:{vn}"] = "7"
            for i in range(vmis_per_vn):
                add_object(ds, "virtual-machine-interface",
                           ["default-domain", f"project-{p}", f"vmi-{v}-{i}"],
                           parent=("project", proj), refs=[("virtual-network", vn)],
                           props={"virtual_machine_interface_mac_addresses":
                                  {"mac_address": [f"02:00:00:{p:02x}:{v:02x}:{i:02x}"]}},
                           dashed=dashed, obj_uuid=uid())
            ri = f"default-domain:project-{p}:vn-{v}:vn-{v}"
            ds.partition(("to_bgp_keyspace", "route_target_table"), ri)["rtgt_num"] = \
                str(8_000_000 + vn_count)
            ds.partition(("to_bgp_keyspace", "service_chain_ip_address_table"),
                         f"sc-{vn_count}")["ip_address"] = f"10.{p}.{v}.1"
            ds.partition(("to_bgp_keyspace", "service_chain_uuid_table"),
                         f"sc-{vn_count}")["value"] = uid()
            ds.partition(("to_bgp_keyspace", "service_chain_table"),
                         f"sc-{vn_count}")["value"] = json.dumps({"vn": ri})
            ds.partition(("dm_keyspace", "dm_pr_vn_ip_table"),
                         f"pr-1:{vn}")[f"10.{p}.{v}.254"] = "1"
    ds.partition(("useragent", "useragent_keyval_table"), "neutron:port:1")["value"] = "x"
    ds.partition(("svc_monitor_keyspace", "service_instance_table"), "si-1")["state"] = "active"
    ds.partition(("svc_monitor_keyspace", "pool_table"), "pool-1")["state"] = "up"
    ds.partition(("svc_monitor_keyspace", "loadbalancer_table"), "lb-1")["state"] = "up"
    ds.partition(("svc_monitor_keyspace", "healthmonitor_table"), "hm-1")["delay"] = "5"
    ds.partition(("dm_keyspace", "dm_pr_asn_table"), "pr-1")["asn"] = "64512"
    ds.partition(("dm_keyspace", "dm_ni_ipv6_ll_table"), "ni-1")["ip"] = "fe80::1"
    ds.partition(("dm_keyspace", "dm_pnf_resource_table"), "pnf-1")["unit"] = "1"
    return ds


def wide_fq_partition(ds: Dataset, type_name: str, columns: int) -> None:
    """An obj_fq_name_table partition `type_name` with `columns` entries (no objects)."""
    cols = ds.partition(FQ_TABLE, type_name)
    for i in range(columns):
        cols[f"default-domain:wide:obj-{i:07d}:{uuid_mod.UUID(int=i, version=4)}"] = "null"


# --------------------------------------------------------------------------- Cassandra I/O

def create_schema(session: Session, prefix: str = "", *, layout: str = "blob",
                  tables: Mapping[str, Iterable[str]] = CONTRAIL_TABLES) -> None:
    """Keyspaces (SimpleStrategy RF 1) and tables as Contrail's CQL driver lays them out
    (`layout="blob"`), or all-text columns (`layout="text"`)."""
    kt = "blob" if layout == "blob" else "text"
    for keyspace, names in tables.items():
        ks = ks_name(prefix, keyspace)
        session.execute(f'CREATE KEYSPACE IF NOT EXISTS "{ks}" WITH replication = '
                        "{'class': 'SimpleStrategy', 'replication_factor': 1}")
        for table in names:
            session.execute(f'CREATE TABLE IF NOT EXISTS "{ks}"."{table}" (key {kt}, '
                            f"column1 {kt}, value text, PRIMARY KEY (key, column1))")


def drop_schema(session: Session, prefix: str = "",
                keyspaces: Iterable[str] = (*CONTRAIL_TABLES, "issu_quarantine")) -> None:
    for keyspace in keyspaces:
        session.execute(f'DROP KEYSPACE IF EXISTS "{ks_name(prefix, keyspace)}"')


class TableIO:
    """Prepared reads and writes on one table, encoding keys/columns for its layout."""

    def __init__(self, session: Session, prefix: str, table: Table) -> None:
        self.session = session
        ks = ks_name(prefix, table[0])
        self.name = f'"{ks}"."{table[1]}"'
        row = session.execute(
            "SELECT type FROM system_schema.columns WHERE keyspace_name = %s AND "
            "table_name = %s AND column_name = 'key'", (ks, table[1])).one()
        if row is None:
            raise LookupError(f"{ks}.{table[1]} does not exist")
        key_type = row[0] if isinstance(row, tuple) else row.type
        self.blob = key_type == "blob"
        self._insert = session.prepare(f"INSERT INTO {self.name} (key, column1, value) "
                                       "VALUES (?, ?, ?) USING TIMESTAMP ?")
        self._delete = session.prepare(f"DELETE FROM {self.name} USING TIMESTAMP ? "
                                       "WHERE key = ? AND column1 = ?")
        self._delete_part = session.prepare(f"DELETE FROM {self.name} USING TIMESTAMP ? "
                                            "WHERE key = ?")

    def enc(self, text: str) -> object:
        return text.encode() if self.blob else text

    def dec(self, value: object) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    def write(self, key: str, cells: Mapping[str, str], writetime: int | None = None,
              *, concurrency: int = 64) -> None:
        ts = writetime or now_us()
        args = [(self.enc(key), self.enc(c), v, ts) for c, v in cells.items()]
        for ok, result in execute_concurrent_with_args(self.session, self._insert, args,
                                                       concurrency=concurrency):
            if not ok:
                raise result

    def delete(self, key: str, columns: Iterable[str], writetime: int | None = None) -> None:
        ts = writetime or now_us()
        for c in columns:
            self.session.execute(self._delete, (ts, self.enc(key), self.enc(c)))

    def delete_partition(self, key: str, writetime: int | None = None) -> None:
        self.session.execute(self._delete_part, (writetime or now_us(), self.enc(key)))

    def read(self) -> dict[str, dict[str, tuple[str, int]]]:
        """key -> column -> (value, writetime), the whole table (small tables only)."""
        out: dict[str, dict[str, tuple[str, int]]] = {}
        rows = self.session.execute(f"SELECT key, column1, value, WRITETIME(value) "
                                    f"FROM {self.name}")
        for k, c, v, ts in rows:
            out.setdefault(self.dec(k), {})[self.dec(c)] = (v, ts)
        return out

    def read_partition(self, key: str) -> dict[str, tuple[str, int]]:
        rows = self.session.execute(f"SELECT column1, value, WRITETIME(value) FROM {self.name} "
                                    "WHERE key = %s", (self.enc(key),))
        return {self.dec(c): (v, ts) for c, v, ts in rows}

    def count(self, key: str | None = None) -> int:
        if key is None:
            return int(self.session.execute(f"SELECT COUNT(*) FROM {self.name}",
                                            timeout=120).one()[0])
        return int(self.session.execute(f"SELECT COUNT(*) FROM {self.name} WHERE key = %s",
                                        (self.enc(key),), timeout=120).one()[0])


def write(session: Session, prefix: str, ds: Dataset,
          writetime: int | Callable[[Table, str, str], int] | None = None,
          *, concurrency: int = 16, keyspaces: Iterable[str] | None = None) -> None:
    """Write every cell of `ds` (only of `keyspaces` when given); `writetime` fixed, per
    cell (callable), or now."""
    base = now_us()
    wanted = None if keyspaces is None else set(keyspaces)
    for table, partitions in ds.tables.items():
        if wanted is not None and table[0] not in wanted:
            continue
        io = TableIO(session, prefix, table)
        batches = []
        for key, cells in partitions.items():
            ekey = io.enc(key)
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            size = 0
            for column, value in cells.items():
                ts = writetime(table, key, column) if callable(writetime) else (writetime or base)
                if len(batch) >= 100 or size > 4000:
                    batches.append(batch)
                    batch, size = BatchStatement(batch_type=BatchType.UNLOGGED), 0
                batch.add(io._insert, (ekey, io.enc(column), value, ts))
                size += len(column) + len(value) + 24
            if len(batch):
                batches.append(batch)
        # one UNLOGGED batch per partition chunk: a single mutation on the replica
        for ok, result in execute_concurrent(session, [(b, ()) for b in batches],
                                             concurrency=concurrency):
            if not ok:
                raise result


def read_table(session: Session, prefix: str, table: Table) -> dict[str, dict[str,
                                                                          tuple[str, int]]]:
    return TableIO(session, prefix, table).read()


def as_values(rows: Mapping[str, Mapping[str, tuple[str, int]]]) -> dict[str, dict[str, str]]:
    """Drop writetimes: key -> column -> value."""
    return {k: {c: v for c, (v, _) in cols.items()} for k, cols in rows.items()}
