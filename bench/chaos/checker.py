"""The independent checker: after finalize, is new an exact copy of old, and is every compute
where the journal says it is? It uses none of the engine's own comparisons except `issu sync
verify`, which must agree with it.

- every object the load created, changed or deleted (its own log) is read back from the old
  and the new api-server with the public `vnc_api` client (`contrail-api-client` on PyPI) and
  compared field by field; a deleted object must be absent from both;
- `issu sync verify --json` must report no difference;
- ZooKeeper: a SHA-256 of the subtrees issu copies (path and data of every znode), old == new;
- node records (config-node, analytics-node, database-node): finalize deletes old's from new
  and new's api-server has its own; both are checked here, record by record, and only those
  records (their rows, their parent's child columns, their fq-name znodes) are allowed to
  differ in `issu sync verify` and in ZooKeeper;
- derived on new: a routing instance (and its route target) on new only must be one new's
  schema-transformer made for a network on old that old's had not got to before the fence;
  those, too, are the only such records allowed to differ;
- every compute, asked over SSH with the system `ssh` client: version and cluster as the
  journal records them (upgraded: 5.0.0 on new), no compute in an unsettled state;
- the journal: its phase history runs forward through the phases up to `done`, and no intent
  is left pending or running.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kazoo.client import KazooClient

from demo.services import Endpoints
from demo.world import World
from issu_tui.config import load_config
from issu_tui.journal import Journal

REPO = Path(__file__).resolve().parents[2]
ISSU = str(Path(sys.executable).parent / "issu")
MAIN_LINE = ("plan", "preflight", "pair", "pre-sync", "run-sync", "computes", "finalize",
             "done")
SETTLED = ("old", "upgraded")
# Written by each api-server itself (timestamps of its own write), not replicated data.
VOLATILE = {"last_modified", "created"}
# Added by the 4.1 -> 5.0 translation when old has none (5.0's RBAC field).
ADDED_BY_TRANSLATION = {"perms2"}
SHOWN = 10


def check(world: World, endpoints: Endpoints, changes_log: Path, intents: list[int],
          old_nodes: dict[str, tuple[Node, str]] | None = None) -> dict[str, dict[str, Any]]:
    """`old_nodes`: old's node records as they were before finalize (`old_node_records`):
    from finalize's commit the reverse replication copies new's changes to old (finalize's
    removal of old's records and new's own records included)."""
    nodes = _settled_derived(world, old_nodes)
    return {
        "objects": _objects(world, changes_log),
        "node_records": nodes.result(),
        "derived_on_new": nodes.derived_result(),
        "verify": _verify(world, nodes),
        "zookeeper": _zookeeper(world, endpoints, nodes),
        "computes": _computes(world, endpoints),
        "journal": _journal(world, intents),
    }


def _settled_derived(world: World, old_nodes: dict[str, tuple[Node, str]] | None,
                     wait_s: float = 90.0) -> NodeRecords:
    """Node records and what new derived, read again while something on new only is not
    accounted for: new is live after finalize and its writers keep deriving, and the reverse
    replication carries each object to old a moment later (a route target new's
    schema-transformer had just made was listed on new, not yet on old: make chaos seed
    976). What is still unexplained after `wait_s` is a problem."""
    deadline = time.monotonic() + wait_s
    while True:
        nodes = _node_records(world, old_nodes)
        _derived_on_new(world, nodes)
        if not nodes.derived_problems or time.monotonic() > deadline:
            return nodes
        time.sleep(5)


# ---------------------------------------------------------------------- objects (vnc_api)
def _vnc(world: World, cluster: str) -> Any:
    from vnc_api.vnc_api import VncApi

    if cluster == "v1":
        _old_api_server_up(world)
    return VncApi(api_server_host=world.controller_address(cluster), api_server_port=8082,
                  auth_type="noauth")


def _old_api_server_up(world: World, timeout_s: float = 120.0) -> None:
    """finalize stopped old's api-server (its own process): started again to read old
    through it (still fenced: northbound writes refused)."""
    from demo.controller import hostctl
    from demo.world import start_api_server

    directory = world.controller_dir("v1")
    if not hostctl.running(directory, "api-server"):
        start_api_server(directory, world.controller_address("v1"), "controller-v1",
                         timeout_s)


def _read(api: Any, res_type: str, uuid: str) -> dict[str, Any] | None:
    raw = _read_raw(api, res_type, uuid)
    if raw is None:
        return None
    plain: dict[str, Any] = _plain(raw)
    return plain


def _read_raw(api: Any, res_type: str, uuid: str) -> dict[str, Any] | None:
    """The object as the api-server has it, its own stamps (id_perms.created) included."""
    from vnc_api.exceptions import NoIdError

    try:
        obj = getattr(api, f"{res_type.replace('-', '_')}_read")(id=uuid)
    except NoIdError:
        return None
    raw: dict[str, Any] = api.obj_to_dict(obj)
    return raw


def _plain(value: Any) -> Any:
    """The object without what each api-server stamps itself (times, hrefs)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in sorted(value.items())
                if k not in VOLATILE and k != "href" and v is not None}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _objects(world: World, changes_log: Path) -> dict[str, Any]:
    touched: dict[str, tuple[str, set[str]]] = {}
    for line in changes_log.read_text().splitlines():
        entry = json.loads(line)
        res_type, ops = touched.setdefault(entry["uuid"], (entry["type"], set()))
        ops.add(entry["op"])
    old, new = _vnc(world, "v1"), _vnc(world, "v2")
    differences: list[str] = []
    present = absent = 0
    for uuid, (res_type, ops) in sorted(touched.items()):
        on_old, on_new = _read(old, res_type, uuid), _read(new, res_type, uuid)
        if on_old is None:
            absent += 1
        else:
            present += 1
        if "delete" in ops and on_old is not None:
            differences.append(f"{res_type} {uuid}: deleted by the load but on old")
        if on_old is not None and on_new is not None:
            for key in ADDED_BY_TRANSLATION - set(on_old):
                on_new.pop(key, None)
        if on_old != on_new:
            differences.append(f"{res_type} {uuid}: {_diff(on_old, on_new)}")
    return {"ok": not differences, "objects": len(touched), "present": present,
            "deleted": absent, "differences": len(differences), "shown": differences[:SHOWN]}


def _diff(old: dict[str, Any] | None, new: dict[str, Any] | None) -> str:
    if old is None or new is None:
        return f"on old: {old is not None}, on new: {new is not None}"
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "; ".join(f"{k}: old {old.get(k)!r:.80} new {new.get(k)!r:.80}" for k in keys[:3])


# ---------------------------------------------------------------------- node records
NODE_TYPES = {"config-node": "config_node_ip_address",
              "analytics-node": "analytics_node_ip_address",
              "database-node": "database_node_ip_address"}


@dataclass
class Node:
    obj_type: str
    fq_name: list[str]
    address: str
    uuid: str

    def label(self) -> str:
        where = f" ({self.address})" if self.address else ""
        return f"{self.obj_type} {':'.join(self.fq_name)}{where} {self.uuid}"

    def znodes(self) -> set[str]:
        """Its fq-name lock under fq-name-to-uuid, as either release names the type (4.x
        `config-node`, 5.0 `config_node`; zk-sync copies the paths as they are)."""
        name = ":".join(self.fq_name)
        return {f"/fq-name-to-uuid/{t}:{name}"
                for t in (self.obj_type, self.obj_type.replace("-", "_"))}


@dataclass
class NodeRecords:
    """What finalize must leave: old's node records gone from new (unless on an address new
    names too), new's own records there. `removed` and `own` are the records the other checks
    may see differ; `problems` anything else."""

    removed: list[Node] = field(default_factory=list)
    own: list[Node] = field(default_factory=list)
    kept: list[Node] = field(default_factory=list)
    parents: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    # routing instances and route targets new's schema-transformer made (see _derived_on_new)
    derived: list[Node] = field(default_factory=list)
    derived_problems: list[str] = field(default_factory=list)

    def removed_uuids(self) -> set[str]:
        return {n.uuid for n in self.removed}

    def own_uuids(self) -> set[str]:
        return {n.uuid for n in self.own + self.derived}

    def result(self) -> dict[str, Any]:
        return {"ok": not self.problems, "removed_from_new": [n.label() for n in self.removed],
                "new_own": [n.label() for n in self.own],
                "kept_shared": [n.label() for n in self.kept],
                "problems": self.problems[:SHOWN]}

    def derived_result(self) -> dict[str, Any]:
        return {"ok": not self.derived_problems,
                "routing_instances": sum(n.obj_type == "routing-instance" for n in self.derived),
                "route_targets": sum(n.obj_type == "route-target" for n in self.derived),
                "shown": [n.label() for n in self.derived[:SHOWN]],
                "problems": self.derived_problems[:SHOWN]}


def _list_nodes(api: Any) -> dict[str, tuple[Node, str]]:
    """uuid -> (record, its parent's uuid) for every node record on that api-server."""
    found: dict[str, tuple[Node, str]] = {}
    for obj_type, prop in NODE_TYPES.items():
        listed = api.resource_list(obj_type)
        for entry in next(iter(listed.values()), []):
            obj = _read(api, obj_type, entry["uuid"])
            if obj is None:
                continue  # deleted between the list and the read
            found[obj["uuid"]] = (Node(obj_type, list(obj["fq_name"]), str(obj.get(prop, "")),
                                       obj["uuid"]), str(obj.get("parent_uuid", "")))
    return found


def old_node_records(world: World) -> dict[str, tuple[Node, str]]:
    """Old's node records now (the trial reads them before finalize)."""
    return _list_nodes(_vnc(world, "v1"))


def _node_records(world: World, old_nodes: dict[str, tuple[Node, str]] | None) -> NodeRecords:
    config = load_config(world.config_path)
    new_addresses = {world.controller_address("v2"), *(
        h.partition(":")[0] for h in config.new.cassandra.hosts)}
    on_old = old_nodes if old_nodes is not None else old_node_records(world)
    return classify_nodes(on_old, _list_nodes(_vnc(world, "v2")), new_addresses)


def classify_nodes(on_old: dict[str, tuple[Node, str]], on_new: dict[str, tuple[Node, str]],
                   new_addresses: set[str]) -> NodeRecords:
    nodes = NodeRecords()
    for uuid, (node, parent) in sorted(on_old.items()):
        if node.address in new_addresses:  # a host both clusters use: its record stays
            nodes.kept.append(node)
            if uuid not in on_new:
                nodes.problems.append(f"{node.label()}: on a host new uses too, but not on "
                                      "new")
        elif uuid in on_new:
            nodes.problems.append(f"{node.label()}: old's record still on new")
        else:
            nodes.removed.append(node)
            nodes.parents.add(parent)
    for uuid, (node, parent) in sorted(on_new.items()):
        if uuid in on_old:
            continue
        if node.address not in new_addresses:
            nodes.problems.append(f"{node.label()}: on new only, for a host new does not use")
            continue
        nodes.own.append(node)
        nodes.parents.add(parent)
    for obj_type in NODE_TYPES:
        if not any(n.obj_type == obj_type for n in nodes.own + nodes.kept):
            nodes.problems.append(f"new has no {obj_type} record of its own")
    return nodes


# ---------------------------------------------------------------------- derived on new
def _uuids(api: Any, obj_type: str) -> set[str]:
    listed = api.resource_list(obj_type)
    return {entry["uuid"] for entry in next(iter(listed.values()), [])}


def _derived_on_new(world: World, nodes: NodeRecords) -> None:
    """Routing instances and route targets on new only, each checked to be what new's
    schema-transformer derives for a network old's had not got to: a network's own routing
    instance (its fq_name the network's plus the network's name), the network on old too,
    old without that routing instance; a route target only when such a routing instance
    refers to it. Old's api-server refuses its schema-transformer's writes from the fence
    on, so a network created in the last moment before it gets these on new only. Anything
    else on new only is a problem."""
    old, new = _vnc(world, "v1"), _vnc(world, "v2")
    old_names = {tuple(e["fq_name"]) for e in next(iter(
        old.resource_list("routing-instance").values()), [])}
    referred: set[str] = set()
    for uuid in sorted(_uuids(new, "routing-instance") - _uuids(old, "routing-instance")):
        ri = _read(new, "routing-instance", uuid)
        if ri is None:
            continue
        fq_name, parent = list(ri["fq_name"]), str(ri.get("parent_uuid", ""))
        network = _read(old, "virtual-network", parent)
        node = Node("routing-instance", fq_name, "", uuid)
        if network is None:
            nodes.derived_problems.append(f"{node.label()}: on new only, its network "
                                          f"{parent} not on old")
        elif fq_name != [*network["fq_name"], network["fq_name"][-1]]:
            nodes.derived_problems.append(f"{node.label()}: on new only, not its network's "
                                          "own routing instance")
        elif tuple(fq_name) in old_names:
            nodes.derived_problems.append(f"{node.label()}: on new only, old has another "
                                          "routing instance of that name")
        else:
            nodes.derived.append(node)
            nodes.parents.add(parent)
            referred |= {str(r["uuid"]) for r in ri.get("route_target_refs", [])}
    on_old = _uuids(old, "route-target")
    # a route target on both sides that a derived routing instance refers to gains that
    # back-reference (allowed by the routing instance's uuid) and a new META:latest_col_ts
    nodes.parents |= referred & on_old
    for uuid in sorted(_uuids(new, "route-target") - on_old):
        rt = _read(new, "route-target", uuid)
        if rt is None:
            continue
        node = Node("route-target", list(rt["fq_name"]), "", uuid)
        if uuid in referred:
            nodes.derived.append(node)
        else:
            nodes.derived_problems.append(f"{node.label()}: on new only, no routing instance "
                                          "derived on new refers to it")


# ---------------------------------------------------------------------- issu sync verify
DIFF_LINE = re.compile(r"^\s+(missing|extra|different)\s+key='([^']*)' column='([^']*)'")


def _verify(world: World, nodes: NodeRecords) -> dict[str, Any]:
    """`issu sync verify`, every difference listed. Finalize's unpair removes the old control
    nodes' bgp-routers from new on purpose (new must not peer with old any more), and its
    remove-old-nodes old's node records (`nodes.removed`), while new has its own node
    records (`nodes.own`): those objects (missing, or extra, respectively), and their parents'
    child columns and timestamp, are the only differences allowed, each named in the
    result."""
    # keyspaces old never had (the demo's v1 runs no device manager, svc-monitor, ...) are
    # allowed absent, as finalize's verify does; the checker finds them on old itself
    allow = [arg for k in _absent_on_old(world) for arg in ("--allow-missing", k)]
    done = subprocess.run([ISSU, "sync", "verify", "--max-print", "100000", "-c",
                           str(world.config_path), *allow], capture_output=True, text=True,
                          cwd=REPO, timeout=900, check=False)
    lines = [(m[1], m[2], m[3]) for m in map(DIFF_LINE.match, done.stdout.splitlines()) if m]
    old_control = [n.name for n in load_config(world.config_path).old.control_nodes]
    wrong, unpaired = unexpected_cells(lines, old_control, nodes)
    summary = done.stdout.strip().splitlines()[-1:] or [done.stderr.strip()[-300:]]
    ok = not wrong and (done.returncode == 0 or bool(lines))
    return {"ok": ok, "exit": done.returncode, "summary": summary[0][:300],
            "differences": len(wrong), "allowed_unpaired_bgp_routers": sorted(unpaired),
            "allowed_node_records": len(nodes.removed) + len(nodes.own),
            "shown": wrong[:SHOWN]}


def unexpected_cells(lines: list[tuple[str, str, str]], old_control: list[str],
                     nodes: NodeRecords) -> tuple[list[str], set[str]]:
    """verify's (kind, key, column) differences other than the allowed ones, and the uuids of
    the unpaired bgp-routers (old's control nodes: `old_control` names)."""
    unpaired = {column.rsplit(":", 1)[-1] for kind, key, column in lines
                if kind == "missing" and key == "bgp_router"
                and any(f":{name}:" in column for name in old_control)}
    parents = {column.rsplit(":", 1)[-1] for kind, key, column in lines
               if key in unpaired and column.startswith("parent:")} | nodes.parents
    removed, own = nodes.removed_uuids(), nodes.own_uuids()

    def allowed(kind: str, key: str, column: str) -> bool:
        # the object's own row (key) or a column naming it (its parent's children column, its
        # fq_name-table entry), each only in the direction finalize leaves it
        named = {key, column.rsplit(":", 1)[-1]}
        return ((kind == "missing" and bool(named & (unpaired | removed)))
                or (kind == "extra" and bool(named & own))
                or (kind == "different" and key in parents and column == "META:latest_col_ts"))

    wrong = [f"{kind} {key} {column}" for kind, key, column in lines
             if not allowed(kind, key, column)]
    return wrong, unpaired


def _absent_on_old(world: World) -> list[str]:
    from cassandra.cluster import Cluster

    config = load_config(world.config_path)
    old = config.old.cassandra
    host, _, port = old.hosts[0].partition(":")
    cluster = Cluster([host], port=int(port or old.port))
    try:
        session = cluster.connect()
        present = {r.keyspace_name for r in session.execute(
            "SELECT keyspace_name FROM system_schema.keyspaces")}
    finally:
        cluster.shutdown()
    registered = config.sync.keyspaces or []
    wanted = registered or ["to_bgp_keyspace", "useragent", "svc_monitor_keyspace",
                            "dm_keyspace"]
    return [k for k in wanted if k not in present and k != "config_db_uuid"]


# ---------------------------------------------------------------------- ZooKeeper
def _znodes(hosts: str, subtrees: list[str]) -> dict[str, bytes]:
    """Path -> data of every znode under the subtrees."""
    zk = KazooClient(hosts=hosts, timeout=30)
    zk.start(timeout=60)
    found: dict[str, bytes] = {}
    try:
        todo = [f"/{s.strip('/')}" for s in subtrees]
        while todo:
            path = todo.pop()
            if not zk.exists(path):
                continue
            data, _ = zk.get(path)
            found[path] = data or b""
            todo += [f"{path}/{c}" for c in zk.get_children(path)]
    finally:
        zk.stop()
        zk.close()
    return found


def znode_differences(old: dict[str, bytes], new: dict[str, bytes], nodes: NodeRecords,
                      written_on_new: Iterable[str] = ()) -> tuple[list[str], set[str]]:
    """The paths that differ, and those set aside: the fq-name lock of a record finalize
    removed from new (on old only) or of new's own record (on new only, in old's Cassandra
    too once the reverse replication copied it), each only where it holds that record's
    uuid; and `written_on_new` (writers_znodes: what new's writers made after zk-sync) where
    it is on new only."""
    old_only = {path: n.uuid.encode() for n in nodes.removed for path in n.znodes()}
    new_only = {path: n.uuid.encode() for n in nodes.own + nodes.derived + nodes.kept
                for path in n.znodes()}
    set_aside = ({p for p, uuid in old_only.items() if old.get(p) == uuid and p not in new}
                 | {p for p, uuid in new_only.items() if new.get(p) == uuid and p not in old}
                 | {p for p in written_on_new if p in new and p not in old})
    differing = sorted(p for p in (set(old) | set(new)) - set_aside
                       if old.get(p) != new.get(p))
    return differing, set_aside


# under the subtrees' prefix, if any
_LOCK = re.compile(r"/fq-name-to-uuid/(routing[-_]instance|route[-_]target):([^/]+)$")
_RT_ID = re.compile(r"/id/bgp/route-targets/(\d+)$")


def created_at(obj: dict[str, Any]) -> float:
    """When the api-server that made the object stamped it (id_perms.created, naive UTC)."""
    stamp = str((obj.get("id_perms") or {}).get("created") or "")
    try:
        return datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return 0.0


def writers_znodes(new_only: dict[str, bytes], read_new: Callable[[str, str], Any],
                   since: float) -> set[str]:
    """Of the znodes on new only, those new's schema-transformer wrote after finalize's
    zk-sync (`since`): the fq-name lock of a routing instance or route target new's
    api-server created after it, holding its uuid, and the route-target id such a routing
    instance refers to. The reverse replication carries their rows back to old's Cassandra,
    not their znodes: revert copies ZooKeeper back itself. `read_new(type, uuid)`: the object
    as new's api-server has it (with id_perms), None when absent."""
    allowed: set[str] = set()
    ids_of: dict[str, set[int]] = {}  # late routing instance (fq_name joined) -> its ids
    for path, value in sorted(new_only.items()):
        lock = _LOCK.search(path)
        if not lock:
            continue
        res_type = lock[1].replace("_", "-")
        obj = read_new(res_type, value.decode())
        if (obj is None or ":".join(obj.get("fq_name", [])) != lock[2]
                or created_at(obj) <= since):
            continue
        allowed.add(path)
        if res_type == "routing-instance":
            ids_of[lock[2]] = {int(str(r["to"][-1]).rsplit(":", 1)[-1])
                               for r in obj.get("route_target_refs") or []
                               if str(r["to"][-1]).rsplit(":", 1)[-1].isdigit()}
    for path, value in new_only.items():
        rt_id = _RT_ID.search(path)
        if rt_id and int(rt_id[1]) in ids_of.get(value.decode(), set()):
            allowed.add(path)
    return allowed


def _digest(znodes: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for path in sorted(znodes):
        digest.update(path.encode() + b"\0" + znodes[path] + b"\0")
    return digest.hexdigest()


def _zookeeper(world: World, endpoints: Endpoints, nodes: NodeRecords) -> dict[str, Any]:
    """old == new by content hash, once the fq-name locks of the node records finalize
    removed from new (on old only) and of new's own records (on new only), and what new's
    writers made after zk-sync (on new only), are set aside, each only where it holds that
    record's uuid."""
    subtrees = load_config(world.config_path).sync.zk_subtrees
    old = _znodes(endpoints.zk_old.hosts, subtrees)
    new = _znodes(endpoints.zk_new.hosts, subtrees)
    api = _vnc(world, "v2")
    written = writers_znodes({p: d for p, d in new.items() if p not in old},
                             lambda res_type, uuid: _read_raw(api, res_type, uuid),
                             _zk_synced_at(world))
    differing, set_aside = znode_differences(old, new, nodes, written)
    old_compared = {p: d for p, d in old.items() if p not in set_aside}
    new_compared = {p: d for p, d in new.items() if p not in set_aside}
    return {"ok": not differing, "subtrees": subtrees, "znodes_old": len(old),
            "znodes_new": len(new), "set_aside_node_records": len(set_aside - written),
            "set_aside_written_on_new": len(written & set_aside),
            "sha256_old": _digest(old_compared)[:16], "sha256_new": _digest(new_compared)[:16],
            "differences": len(differing),
            "shown": [f"{p}: old {old.get(p)!r:.60} new {new.get(p)!r:.60}"
                      for p in differing[:SHOWN]]}


def _zk_synced_at(world: World) -> float:
    """When finalize's zk-sync was done (its step marker); infinity when it never was, so
    that nothing is set aside as written after it."""
    journal = Journal(world.dir / "state" / "journal.db", read_only=True)
    try:
        return journal.steps_done().get("finalize.zk-sync", float("inf"))
    finally:
        journal.close()


# ---------------------------------------------------------------------- computes (SSH)
def _computes(world: World, endpoints: Endpoints) -> dict[str, Any]:
    ssh = endpoints.ssh
    journal = Journal(world.dir / "state" / "journal.db", read_only=True)
    try:
        rows = {r.name: r for r in journal.computes()}
    finally:
        journal.close()
    wrong: list[str] = []
    unknown: list[str] = []
    hosts = world.fleet.settings().hosts
    for name, address in sorted(hosts.items()):
        row = rows.get(name)
        if row is None:
            unknown.append(f"{name}: not in the journal")
            continue
        argv = ["ssh", "-i", str(ssh.key_path), "-p", str(ssh.port), "-o", "BatchMode=yes",
                "-o", f"UserKnownHostsFile={ssh.known_hosts_path}",
                "-o", "StrictHostKeyChecking=yes", f"{ssh.user}@{address}",
                world.fleet.host_command() + " status"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        try:
            seen = json.loads(done.stdout)
        except ValueError:
            unknown.append(f"{name}: status over SSH failed: {done.stderr.strip()[-200:]}")
            continue
        if row.state not in SETTLED:
            unknown.append(f"{name}: journal state {row.state}")
        # the cluster an agent reports to is the controller's cluster id (v1 / v2)
        expected = ("5.0.0", "v2") if row.state == "upgraded" else ("4.1.0", "v1")
        if (seen.get("version"), seen.get("cluster")) != expected or row.state != "upgraded":
            wrong.append(f"{name}: journal {row.state} {row.version}; host runs "
                         f"{seen.get('version')} reporting to {seen.get('cluster')!r}")
    return {"ok": not wrong and not unknown, "computes": len(hosts),
            "unknown": len(unknown), "wrong": len(wrong),
            "shown": (unknown + wrong)[:SHOWN]}


# ---------------------------------------------------------------------- journal
def _journal(world: World, intents: list[int]) -> dict[str, Any]:
    journal = Journal(world.dir / "state" / "journal.db", read_only=True)
    try:
        history = journal.phase_history()
        every = journal.intents(None)
    finally:
        journal.close()
    problems: list[str] = []
    last = 0
    for entry in history:
        if entry["phase"] not in MAIN_LINE:
            problems.append(f"phase {entry['phase']} ({entry['status']}) off the main line")
            continue
        index = MAIN_LINE.index(entry["phase"])
        if index < last:
            problems.append(f"phase {entry['phase']} entered after {MAIN_LINE[last]}")
        last = max(last, index)
    if MAIN_LINE[last] != "done":
        problems.append(f"the upgrade ended in {MAIN_LINE[last]}, not done")
    by_id = {i.id: i for i in every}
    for intent in every:
        if intent.status in ("pending", "running"):
            problems.append(f"intent {intent.id} {intent.kind} left {intent.status}")
    problems += [f"intent {i} submitted but not in the journal" for i in intents
                 if i not in by_id]
    return {"ok": not problems, "phases": len(history), "intents": len(every),
            "problems": problems[:SHOWN]}
