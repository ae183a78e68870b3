"""Preflight: refuse what would lose data or strand computes, before anything is changed.

Every check is read-only and says what failed and how to fix it.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from backends.apiserver import CONFIG_TYPES, ApiServerError
from backends.cassandra.connection import CassandraSide
from backends.hostport import HostSet
from issu_tui.config import ClusterConfig
from issu_tui.orchestrator.context import Context, OrchestratorError
from issu_tui.orchestrator.preflight_writers import new_writer_findings, version_findings
from issu_tui.orchestrator.ringplan import RingPlanError, most_down, ring_steps, takes_down
from issu_tui.sides import issu_keyspaces

if TYPE_CHECKING:
    from backends.cassandra.ring import RingView


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    severity: str = "error"  # "error" refuses; "warning" is reported only

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PreflightReport:
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.ok or c.severity == "warning" for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok and c.severity == "error"]


def _guard(name: str, fix: str, fn: Callable[[], list[Check]]) -> list[Check]:
    try:
        return fn()
    except Exception as exc:  # each check reports its own failure; one never hides another
        return [Check(name, False, f"{type(exc).__name__}: {exc}", fix)]


# ----------------------------------------------------------------------------- versions


def check_versions(ctx: Context) -> list[Check]:
    from backends.versions import VersionPathError, version_path

    old, new = ctx.config.old.version, ctx.config.new.version
    try:
        steps = version_path(old, new)
    except (VersionPathError, ValueError) as exc:
        return [Check("version path", False, str(exc),
                      "supported: 3.2.x -> 4.x -> 5.0 -> 5.x (chained); set old.version and "
                      "new.version to the releases actually installed")]
    route = " -> ".join([steps[0][0], *[s[1] for s in steps]]) if steps else "same era"
    return [Check("version path", True, f"{old} -> {new}: {route}")]


# ----------------------------------------------------------------------------- Cassandra


def _side(ctx: Context, cluster: ClusterConfig) -> CassandraSide:
    """The one config -> CassandraSide mapping (the sync commands'), named as the cluster."""
    from issu_tui.sides import cassandra_side

    which: Literal["old", "new"] = "old" if cluster is ctx.config.old else "new"
    return cassandra_side(ctx.config, which, {"name": cluster.name})


def keyspaces_absent_on_old(ctx: Context) -> list[str]:
    """The configured (or registered) keyspaces the old cluster does not have.

    Preflight accepts their absence with a warning unless it is config_db_uuid; finalize's
    verify then excludes exactly these, by name, instead of failing on them."""
    from backends.cassandra.connection import connect
    from backends.cassandra.schema import keyspace_exists

    wanted = issu_keyspaces(ctx.config)
    with connect(_side(ctx, ctx.config.old), request_timeout=15) as conn:
        return [k for k in wanted
                if not keyspace_exists(conn.session, ctx.config.old.cassandra.keyspace(k))]


def check_approach(ctx: Context, approach: str) -> Check:
    """The approach fits the Cassandra hosts: a ring approach whose steps cannot be planned
    on them would run none (pre-sync would copy without converting or joining a node)."""
    from issu_tui.orchestrator.approaches import config_ring_steps
    from issu_tui.orchestrator.ringplan import RingPlanError

    try:
        steps = config_ring_steps(ctx.config, approach)
    except RingPlanError as exc:
        return Check("approach fits the hosts", False, f"{approach}: {exc}",
                     f"set `approach` in {ctx.config_path} (or `issu plan --approach`) to one "
                     "that fits the hosts, or fix old/new.cassandra.hosts (docs/runbook.md)")
    return Check("approach fits the hosts", True,
                 f"{approach}: {len(steps)} ring steps" if steps else f"{approach}: no ring "
                 "steps")


def check_cassandra(ctx: Context, approach: str, db_nodes_down: int | None) -> list[Check]:
    from backends.cassandra.connection import connect
    from backends.cassandra.registry import load_registry
    from backends.cassandra.schema import keyspace_exists

    checks: list[Check] = []
    registry = load_registry()
    wanted = issu_keyspaces(ctx.config, registry)
    unregistered = [k for k in wanted if k not in registry.keyspaces]
    checks.append(Check(
        "keyspaces registered", not unregistered,
        f"unregistered: {', '.join(unregistered)}" if unregistered
        else f"{len(wanted)} keyspaces: {', '.join(wanted)}",
        "register the keyspace through the `issu.keyspaces` entry point, or remove it from "
        "sync.keyspaces"))
    for cluster in (ctx.config.old, ctx.config.new):
        where = f"{cluster.name} Cassandra {', '.join(cluster.cassandra.hosts)}"
        try:
            conn = connect(_side(ctx, cluster), request_timeout=15)
        except Exception as exc:
            checks.append(Check(f"{cluster.name} Cassandra reachable", False, str(exc),
                                f"check {cluster.name}.cassandra hosts/port/user/password and "
                                "that the nodes are up (`nodetool status`)"))
            continue
        with conn:
            hosts = list(conn.cluster.metadata.all_hosts())
            down = [str(h.address) for h in hosts if not h.is_up]
            checks.append(Check(f"{cluster.name} Cassandra reachable", True,
                                f"{where}: {len(hosts)} nodes, {len(down)} down"))
            if cluster.name == "old":
                missing = [k for k in wanted
                           if not keyspace_exists(conn.session, cluster.cassandra.keyspace(k))]
                checks.append(Check(
                    "old keyspaces present", not missing or "config_db_uuid" not in missing,
                    f"absent on old: {', '.join(missing)}" if missing else "all present",
                    "config_db_uuid must exist on old: check old.cassandra.prefix",
                    severity="error" if "config_db_uuid" in missing else "warning"))
            checks.append(_quorum(ctx, cluster, conn, approach, db_nodes_down))
            if cluster.name == "new":
                checks.append(_disk(ctx, conn))
    return checks


def shares_a_host(old: Iterable[str], new: Iterable[str]) -> bool:
    """Whether a database host of new is one of old's, by name or by address (resolved)."""
    old_hosts = HostSet(old)
    return any(host in old_hosts for host in new)


def _quorum(ctx: Context, cluster: ClusterConfig, conn: Any, approach: str,
            db_nodes_down: int | None) -> Check:
    """The quorum guard on the live ring (issu_tui.orchestrator.quorum): every set of as many
    nodes as the approach's plan takes down at once (or --db-nodes-down) must leave every
    ISSU keyspace a quorum of live replicas in every range, counting the nodes down now."""
    from backends.cassandra.ring import read_ring

    old, new = ctx.config.old.cassandra.hosts, ctx.config.new.cassandra.hosts
    planned, step = planned_down(approach, old, new, db_nodes_down,
                                 shared=shares_a_host(old, new))
    wanted = [cluster.cassandra.keyspace(k) for k in issu_keyspaces(ctx.config)]
    return quorum_check(cluster.name, read_ring(conn.cluster, conn.session), wanted,
                        planned, approach, step)


def planned_down(approach: str, old: list[str], new: list[str], db_nodes_down: int | None,
                 *, shared: bool) -> tuple[int, str]:
    """How many database nodes the approach takes down at once, computed from its plan (the
    ring steps' nodes, ringplan.takes_down), and the step that does; the operator's
    --db-nodes-down instead when given. Separate databases: the upgrade stops none.
    Hosts that do not fit the approach's plan: one node at a time, the least a shared
    database goes through (the ring steps refuse such hosts, naming why)."""
    if db_nodes_down is not None:
        return db_nodes_down, f"--db-nodes-down {db_nodes_down}"
    if not shared:
        return 0, ""
    try:
        widest = most_down(ring_steps(approach, list(old), list(new)))
    except RingPlanError as exc:
        return 1, f"one node at a time: the plan does not fit the hosts: {exc}"
    return (len(takes_down(widest)), widest.does) if widest else (0, "")


def quorum_check(cluster: str, ring: RingView, wanted: list[str], planned: int,
                 approach: str, step: str = "") -> Check:
    """Stopping any `planned` live nodes at once (as `step` of the plan does) keeps every
    `wanted` keyspace at quorum.
    With nodes to stop and none of `wanted` in the ring (a wrong prefix or keyspace
    filter), nothing shows the steps safe: refused on old (whose keyspaces must exist),
    a warning on new (pre-sync creates them; the guard checks them before each step)."""
    from itertools import combinations

    from issu_tui.orchestrator.quorum import guard_ring

    down = list(ring.down)
    detail = (f"{cluster}: {len(ring.nodes)} nodes, down now: {', '.join(down) or 'none'}; "
              f"{approach} stops {planned} at a time" + (f" ({step})" if step else ""))
    ring = replace(ring, keyspaces=tuple(k for k in ring.keyspaces if k.name in wanted))
    if planned and not ring.keyspaces:
        return Check(f"{cluster} Cassandra quorum", False,
                     f"{detail}; none of the keyspaces {', '.join(wanted)} is in the ring, "
                     "so nothing shows stopping nodes safe",
                     f"check {cluster}.cassandra.prefix and sync.keyspaces",
                     severity="error" if cluster == "old" else "warning")
    live = [n.address for n in ring.nodes if n.up]
    for stopping in combinations(live, min(planned, len(live))):
        name = f"{approach}: {step or 'stop'} ({', '.join(stopping) or 'nothing'} down)"
        result = guard_ring(ring, name, stopping)
        if not result.ok:
            return Check(f"{cluster} Cassandra quorum", False,
                         f"{detail}; {result.refusals[0]}",
                         "bring the down nodes back (`nodetool status` all UN), raise the "
                         "replication factor, or take fewer nodes down at once "
                         "(`issu ring guard` checks one step)")
    return Check(f"{cluster} Cassandra quorum", True,
                 f"{detail}: every keyspace keeps quorum "
                 f"({', '.join(k.name for k in ring.keyspaces) or 'none to check'})")


def _disk(ctx: Context, conn: Any) -> Check:
    """Room for a full copy of old's ISSU keyspaces (twice, for compaction) on new's disk."""
    old_prefix = ctx.config.old.cassandra.prefix
    needed = 0
    try:
        from backends.cassandra.connection import connect

        with connect(_side(ctx, ctx.config.old), request_timeout=15) as old:
            rows = old.session.execute(
                "SELECT keyspace_name, mean_partition_size, partitions_count "
                "FROM system.size_estimates")
            for keyspace, mean_size, partitions in rows:
                if not old_prefix or keyspace.startswith(f"{old_prefix}_"):
                    needed += int(mean_size or 0) * int(partitions or 0)
    except Exception as exc:
        return Check("new Cassandra disk space", False, f"cannot estimate the data size: {exc}",
                     "check `nodetool tablestats` on old and `df -h` on every new DB node",
                     severity="warning")
    needed *= 2
    hosts = ctx.config.new.cassandra.hosts
    if all(h.startswith("127.") or h == "localhost" for h in hosts):
        free = shutil.disk_usage(Path(ctx.config.state_dir).anchor or "/").free
        ok = free > needed
        return Check("new Cassandra disk space", ok,
                     f"need ~{needed / 1e6:.1f} MB (old data x2), {free / 1e9:.1f} GB free",
                     "free disk space on the new DB nodes' data directories")
    return Check("new Cassandra disk space", True,
                 f"need ~{needed / 1e6:.1f} MB (old data x2) on each new DB node; free space "
                 "of remote nodes is not visible over CQL",
                 f"run `df -h /var/lib/cassandra` on {', '.join(hosts)}", severity="warning")


# ----------------------------------------------------------------------------- ZK, RabbitMQ


def check_zookeeper(ctx: Context) -> list[Check]:
    from backends.zookeeper.sync import connect

    checks = []
    for cluster in (ctx.config.old, ctx.config.new):
        zk = None
        try:
            zk = connect(cluster.zookeeper.connect_string, timeout=10)
            root = cluster.zookeeper.root
            exists = zk.exists(root) is not None
            ok = exists or cluster.name == "new"
            checks.append(Check(f"{cluster.name} ZooKeeper reachable", ok,
                                f"{cluster.zookeeper.connect_string}: root {root} "
                                f"{'exists' if exists else 'absent'}",
                                f"check {cluster.name}.zookeeper.prefix"))
        except Exception as exc:
            checks.append(Check(f"{cluster.name} ZooKeeper reachable", False,
                                f"{cluster.zookeeper.connect_string}: {exc}",
                                f"check {cluster.name}.zookeeper.hosts and that ZooKeeper runs"))
        finally:
            if zk is not None:
                with contextlib.suppress(Exception):
                    zk.stop()
                    zk.close()
    return checks


def check_rabbit(ctx: Context) -> list[Check]:
    from backends.rabbit import connection
    from issu_tui.sides import rabbit_side

    checks = []
    for cluster in (ctx.config.old, ctx.config.new):
        rabbit = cluster.rabbit
        where = f"{', '.join(rabbit.hosts)}:{rabbit.port} vhost {rabbit.vhost}"
        try:
            conn = connection(rabbit_side(cluster))  # run-sync's own connection settings
        except ValueError as exc:  # e.g. an unknown ssl_version
            checks.append(Check(f"{cluster.name} RabbitMQ reachable", False, f"{where}: {exc}",
                                f"check {cluster.name}.rabbit"))
            continue
        try:
            conn.ensure_connection(max_retries=1, timeout=10)
            checks.append(Check(f"{cluster.name} RabbitMQ reachable", True, where))
        except Exception as exc:
            checks.append(Check(f"{cluster.name} RabbitMQ reachable", False,
                                f"{where}: {exc}",
                                f"check {cluster.name}.rabbit user/password/vhost (the vhost "
                                "must exist and the user have permissions on it)"))
        finally:
            conn.release()
    return checks


# ----------------------------------------------------------------------------- api-servers


def check_api(ctx: Context, sync_started: bool) -> list[Check]:
    checks: list[Check] = []
    clients = {}
    for name in ("old", "new"):
        cluster = ctx.cluster(name)
        if cluster.api_server is None:
            checks.append(Check(f"{name} api-server reachable", False, "not configured",
                                f"set [{name}.api_server] url (and credentials)"))
            continue
        client = ctx.api(name)
        try:
            client.ping()
            client.count("bgp-router")
            clients[name] = client
            checks.append(Check(f"{name} api-server reachable", True, cluster.api_server.url))
        except ApiServerError as exc:
            client.close()
            checks.append(Check(f"{name} api-server reachable", False, str(exc),
                                f"check {name}.api_server url/user/password"))
    try:
        if "new" in clients:
            try:
                fenced = clients["new"].fence_state()
                checks.append(Check("new api-server fenced", fenced,
                                    "refuses northbound writes" if fenced
                                    else "ACCEPTS northbound writes",
                                    "close the new api-server for writes until finalize; "
                                    "writes there would be lost or diverge"))
            except ApiServerError as exc:
                checks.append(Check("new api-server fenced", False, str(exc),
                                    "the new api-server must expose the fence admin call",
                                    severity="warning"))
        if "new" in clients and "old" in clients:
            checks.append(_foreign_objects(clients["old"], clients["new"], sync_started))
    finally:
        for client in clients.values():
            client.close()
    return checks


def _foreign_objects(old: Any, new: Any, sync_started: bool) -> Check:
    """The new api-server holds only what the sync wrote (a subset of old's objects)."""
    extra: dict[str, int] = {}
    total = 0
    served = set(new.collection_types()) & set(old.collection_types())
    for obj_type in sorted(served) or CONFIG_TYPES:
        new_ids = new.uuids(obj_type)
        total += len(new_ids)
        if not new_ids:
            continue
        foreign = new_ids - old.uuids(obj_type)
        if foreign:
            extra[obj_type] = len(foreign)
    if extra:
        listing = ", ".join(f"{n} {t}" for t, n in sorted(extra.items()))
        return Check("new api-server holds only synced objects", False,
                     f"objects on new that old does not have: {listing}",
                     "someone wrote to the new cluster; delete those objects or rebuild the "
                     "new cluster's database (they would be overwritten or diverge)")
    state = "after pre-sync" if sync_started else "before pre-sync"
    return Check("new api-server holds only synced objects", True,
                 f"{total} objects on new, all from old ({state})")


def check_analytics(ctx: Context) -> list[Check]:
    checks = []
    for name in ("old", "new"):
        client = ctx.analytics(name)
        if client is None:
            checks.append(Check(f"{name} analytics reachable", False, "not configured",
                                f"set [{name}.analytics] url for the compute health gate",
                                severity="warning"))
            continue
        with client:
            try:
                client.ping()
                checks.append(Check(f"{name} analytics reachable", True, client.url))
            except ApiServerError as exc:
                checks.append(Check(f"{name} analytics reachable", False, str(exc),
                                    f"check {name}.analytics url"))
    return checks


# ----------------------------------------------------------------------------- computes


def check_computes(ctx: Context) -> list[Check]:
    if not ctx.config.computes:
        return [Check("computes over SSH", True, "no computes in the inventory",
                      severity="warning")]
    from issu_tui.config import check_files

    problems = check_files(ctx.config)
    if problems:
        return [Check("computes over SSH", False, "; ".join(problems),
                      "fix the key / known_hosts paths and modes")]
    from issu_tui.orchestrator.computes import ComputeRunner

    runner = ComputeRunner(ctx)

    def one(name: str) -> Check:
        try:
            probe = runner.probe(name)
        except Exception as exc:
            return Check(f"ssh {name}", False, str(exc), _ssh_fix(ctx, name, exc))
        cluster = ctx.cluster_of(list(probe.control_nodes)) or "unknown cluster"
        return Check(f"ssh {name}", True,
                     f"version {probe.version}, agent {probe.agent_state}, on {cluster}")

    names = [c.name for c in ctx.config.computes]
    with ThreadPoolExecutor(max_workers=min(16, len(names))) as pool:
        results = list(pool.map(one, names))
    failed = [r for r in results if not r.ok]
    if len(results) <= 20:
        return results
    ok = Check("computes over SSH", not failed,
               f"{len(results) - len(failed)} of {len(results)} computes answered")
    return [ok, *failed]


def _ssh_fix(ctx: Context, name: str, exc: BaseException) -> str:
    """The advice for why a compute's probe failed, from the SSH error behind it."""
    from backends.ssh import HostKeyError, SshAuthError, SshTimeout, SshUnreachable

    compute = ctx.compute_config(name)
    cause = exc.__cause__ or exc
    if isinstance(cause, HostKeyError):
        return ("add the host key to ssh.known_hosts (ssh-keyscan, then verify the "
                "fingerprint out of band)")
    if isinstance(cause, SshAuthError):
        return (f"add the public key of {compute.ssh_key} to ~{compute.ssh_user}/.ssh/"
                "authorized_keys on the compute")
    if isinstance(cause, SshUnreachable | SshTimeout):
        return (f"check the compute is up and its sshd listens on {compute.address} port "
                f"{compute.ssh_port}")
    return "probe it by hand: ssh -i <ssh_key> <ssh_user>@<address>, then the profile's probe"


# ----------------------------------------------------------------------------- all


def check_northbound(ctx: Context, northbound_file: Path | None) -> list[Check]:
    """Nothing northbound reaches new before finalize: every api client finalize will switch
    (northbound.toml) still names old, its file read where it lives (over SSH on its host)."""
    from issu_tui.orchestrator.northbound import load_clients, not_naming, read_client

    name = "northbound clients name old"
    if ctx.step_done("finalize.switch-northbound.begun"):
        return [Check(name, True, "finalize has switched them (not checked again)")]
    if northbound_file is None or not northbound_file.exists():
        return [Check(name, False, f"{northbound_file or 'northbound.toml'}: no northbound "
                      "clients file: nothing checked", "list the clients finalize re-points "
                      "(runbook step 4)", severity="warning")]
    checks = []
    for client in load_clients(northbound_file):
        if client.kind == "collector":
            continue
        where = f"{client.kind} {f'{client.host}:' if client.host else ''}{client.path}"
        try:
            text = read_client(ctx, client)
            to_old, to_new = (not_naming(ctx, client, text, side) for side in ("old", "new"))
        except OrchestratorError as exc:
            checks.append(Check(f"{name}: {where}", False, str(exc),
                                "make the file readable (its host reachable over SSH)"))
            continue
        if to_new == [] and to_old != []:
            checks.append(Check(
                f"{name}: {where}", False, f"{where} names the NEW api-server already: its "
                "writes would reach new while the sync copies into it",
                "point it back at old (and restart it) until finalize switches it"))
        elif to_old:
            checks.append(Check(f"{name}: {where}", False, f"{where} does not name old: "
                                + "; ".join(to_old), "check the file: finalize switches and "
                                "abort restores these keys", severity="warning"))
        else:
            checks.append(Check(f"{name}: {where}", True, "names old"))
    return checks


def run_preflight(ctx: Context, approach: str, *, db_nodes_down: int | None = None,
                  sync_started: bool = False,
                  northbound_file: Path | None = None) -> PreflightReport:
    checks: list[Check] = []
    checks += _guard("version path", "", lambda: check_versions(ctx))
    checks += _guard("approach", "", lambda: [check_approach(ctx, approach)])
    checks += _guard("Cassandra", "check the cassandra sections of the config",
                     lambda: check_cassandra(ctx, approach, db_nodes_down))
    checks += _guard("ZooKeeper", "check the zookeeper sections",
                     lambda: check_zookeeper(ctx))
    checks += _guard("RabbitMQ", "check the rabbit sections", lambda: check_rabbit(ctx))
    checks += _guard("api-servers", "check the api_server sections",
                     lambda: check_api(ctx, sync_started))
    checks += _guard("analytics", "check the analytics sections", lambda: check_analytics(ctx))
    checks += _guard("computes", "check [ssh] and [[computes]]", lambda: check_computes(ctx))
    checks += _guard("versions running", "check [[old|new.controllers]]", lambda: [
        Check(**asdict(f)) for f in version_findings(ctx.config)])
    checks += _guard("new writers", "check [[new.controllers]]", lambda: [
        Check(**asdict(f)) for f in new_writer_findings(ctx.config)])
    checks += _guard("northbound clients name old", "check northbound.toml",
                     lambda: check_northbound(ctx, northbound_file))
    return PreflightReport(checks)
