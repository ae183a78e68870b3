"""The independent checker: after finalize, is new an exact copy of old, and is every compute
where the journal says it is? It uses none of the engine's own comparisons except `issu sync
verify`, which must agree with it.

- every object the load created, changed or deleted (its own log) is read back from the old
  and the new api-server with the public `vnc_api` client (`contrail-api-client` on PyPI) and
  compared field by field; a deleted object must be absent from both;
- `issu sync verify --json` must report no difference;
- ZooKeeper: a SHA-256 of the subtrees issu copies (path and data of every znode), old == new;
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


def check(world: World, endpoints: Endpoints, changes_log: Path,
          intents: list[int]) -> dict[str, dict[str, Any]]:
    return {
        "objects": _objects(world, changes_log),
        "verify": _verify(world),
        "zookeeper": _zookeeper(world, endpoints),
        "computes": _computes(world, endpoints),
        "journal": _journal(world, intents),
    }


# ---------------------------------------------------------------------- objects (vnc_api)
def _vnc(world: World, cluster: str) -> Any:
    from vnc_api.vnc_api import VncApi

    return VncApi(api_server_host=world.controller_address(cluster), api_server_port=8082,
                  auth_type="noauth")


def _read(api: Any, res_type: str, uuid: str) -> dict[str, Any] | None:
    from vnc_api.exceptions import NoIdError

    method = getattr(api, f"{res_type.replace('-', '_')}_read")
    try:
        obj = method(id=uuid)
    except NoIdError:
        return None
    plain: dict[str, Any] = _plain(api.obj_to_dict(obj))
    return plain


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


# ---------------------------------------------------------------------- issu sync verify
DIFF_LINE = re.compile(r"^\s+(missing|extra|different)\s+key='([^']*)' column='([^']*)'")


def _verify(world: World) -> dict[str, Any]:
    """`issu sync verify`, every difference listed. Finalize's unpair removes the old control
    nodes' bgp-routers from new on purpose (new must not peer with old any more): those
    objects, and their parent routing instance's child column and timestamp, are the only
    differences allowed, each named in the result."""
    # keyspaces old never had (the demo's v1 runs no device manager, svc-monitor, ...) are
    # allowed absent, as finalize's verify does; the checker finds them on old itself
    allow = [arg for k in _absent_on_old(world) for arg in ("--allow-missing", k)]
    done = subprocess.run([ISSU, "sync", "verify", "--max-print", "100000", "-c",
                           str(world.config_path), *allow], capture_output=True, text=True,
                          cwd=REPO, timeout=900, check=False)
    lines = [m.groups() for m in map(DIFF_LINE.match, done.stdout.splitlines()) if m]
    old_nodes = [n.name for n in load_config(world.config_path).old.control_nodes]
    unpaired = {column.rsplit(":", 1)[-1] for kind, key, column in lines
                if kind == "missing" and key == "bgp_router"
                and any(f":{name}:" in column for name in old_nodes)}
    parents = {column.rsplit(":", 1)[-1] for kind, key, column in lines
               if key in unpaired and column.startswith("parent:")}

    def allowed(kind: str, key: str, column: str) -> bool:
        return (key in unpaired or column.rsplit(":", 1)[-1] in unpaired
                or (key in parents and column == "META:latest_col_ts")
                or (key == "bgp_router" and column.rsplit(":", 1)[-1] in unpaired))

    wrong = [f"{kind} {key} {column}" for kind, key, column in lines
             if not allowed(kind, key, column)]
    summary = done.stdout.strip().splitlines()[-1:] or [done.stderr.strip()[-300:]]
    ok = not wrong and (done.returncode == 0 or bool(lines))
    return {"ok": ok, "exit": done.returncode, "summary": summary[0][:300],
            "differences": len(wrong), "allowed_unpaired_bgp_routers": sorted(unpaired),
            "shown": wrong[:SHOWN]}


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
def _zk_digest(hosts: str, subtrees: list[str]) -> tuple[str, int]:
    zk = KazooClient(hosts=hosts, timeout=30)
    zk.start(timeout=60)
    digest = hashlib.sha256()
    count = 0
    try:
        todo = [f"/{s.strip('/')}" for s in subtrees]
        while todo:
            path = todo.pop()
            if not zk.exists(path):
                continue
            data, _ = zk.get(path)
            digest.update(path.encode() + b"\0" + (data or b"") + b"\0")
            count += 1
            todo += [f"{path}/{c}" for c in sorted(zk.get_children(path), reverse=True)]
    finally:
        zk.stop()
        zk.close()
    return digest.hexdigest(), count


def _zookeeper(world: World, endpoints: Endpoints) -> dict[str, Any]:
    subtrees = load_config(world.config_path).sync.zk_subtrees
    old = _zk_digest(endpoints.zk_old.hosts, subtrees)
    new = _zk_digest(endpoints.zk_new.hosts, subtrees)
    return {"ok": old == new, "subtrees": subtrees, "znodes_old": old[1], "znodes_new": new[1],
            "sha256_old": old[0][:16], "sha256_new": new[0][:16]}


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
