"""`python -m demo.controller.writers --spec SPEC --service NAME`: one of a controller's own
writers, simulated. Contrail's schema-transformer, svc-monitor and device-manager write to the
config database on their own, outside the api-server; these do the same to the demo's, as
separate processes that the `demo` controller profile stops and starts (hostctl):

- schema-transformer: for every virtual network, a route target for its routing instance
  (`<vn fq_name>:<vn name>`): an id allocated under ZooKeeper `/id/bgp/route-targets` (node
  `<id, 10 digits>` holding the routing instance's name, ids from 8000000, lowest free first)
  and the row `to_bgp_keyspace.route_target_table[<ri>]["rtgt_num"]`; both go when the network
  goes. Through the api-server's REST API (as the real one does with vnc_api), the
  `route-target` object `target:<asn>:<id>` and the network's `routing-instance` child
  referring to it; the api-server deletes the instance with its network, the
  schema-transformer then the route target. A fenced api-server refuses them: those passes
  write only ZooKeeper and to_bgp_keyspace (what the fence-matters test shows).
- svc-monitor: `svc_monitor_keyspace.service_instance_table[<project>:snat-si]` for every
  project with networks, and the neutron plugin's `useragent.useragent_keyval_table` entry
  `neutron:network:<uuid>` of every network.
- device-manager: `dm_keyspace.dm_ni_ipv6_ll_table[<ri>]["ip"]`, a link-local address per
  routing instance.

Each pass reads the networks from `obj_fq_name_table` and writes only what changed; a pass
runs every second and at once when the api-server's notification arrives on the writer's
own queue (demo/controller/notifications.py: acked once a later pass finished). Every
table of the four keyspaces is created at start (as Contrail's services create theirs), so a
v1 world has all the keyspaces an upgrade copies. On the new cluster they must not run while
issu copies into it: there they allocate their own ids for what the sync copied, which
is the conflict issu's preparation (stop and disable them) prevents.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import time
import uuid as uuidlib
from pathlib import Path

import httpx
from cassandra import InvalidRequest
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import ExponentialReconnectionPolicy, RoundRobinPolicy
from kazoo.client import KazooClient
from kazoo.exceptions import LockTimeout, NodeExistsError, NoNodeError

from .hostctl import WRITERS as SERVICES
from .notifications import Notifications
from .spec import ControllerSpec, SpecError, load_secrets, load_spec

log = logging.getLogger("demo.writers")

# Every table of the keyspaces these services own (the registry's Contrail keyspaces).
KEYSPACES: dict[str, tuple[str, ...]] = {
    "to_bgp_keyspace": ("route_target_table", "service_chain_ip_address_table",
                        "service_chain_table", "service_chain_uuid_table"),
    "useragent": ("useragent_keyval_table",),
    "svc_monitor_keyspace": ("service_instance_table", "pool_table", "loadbalancer_table",
                             "healthmonitor_table"),
    "dm_keyspace": ("dm_pr_vn_ip_table", "dm_pr_asn_table", "dm_ni_ipv6_ll_table",
                    "dm_pnf_resource_table"),
}
RT_PATH = "id/bgp/route-targets"
# its networks (ip-fabric, __link_local__, default-virtual-network) have their instances
DEFAULT_PROJECT = "default-domain:default-project"
RT_MIN_ID = 8_000_000


def schema_change(session: Session, cluster: Cluster, statement: str,
                  timeout_s: float = 120.0) -> None:
    """On a ring of several nodes the three writers create the same keyspaces at once: a
    CREATE TABLE can reach a coordinator that has not seen its keyspace yet ("Keyspace ...
    doesn't exist": svc-monitor died at start in a rolling world). As Contrail's services
    do, wait for the schema to agree and try again."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            session.execute(statement, timeout=60)
            return
        except InvalidRequest as exc:
            if "doesn't exist" not in str(exc) or time.monotonic() > deadline:
                raise
            log.info("schema not agreed yet (%s): waiting", exc)
            cluster.control_connection.wait_for_schema_agreement(wait_time=10)
            time.sleep(0.5)


class Network:
    __slots__ = ("fq_name", "uuid")

    def __init__(self, fq_name: str, uuid: str) -> None:
        self.fq_name, self.uuid = fq_name, uuid

    @property
    def routing_instance(self) -> str:
        return f"{self.fq_name}:{self.fq_name.rsplit(':', 1)[-1]}"

    @property
    def project(self) -> str:
        return self.fq_name.rsplit(":", 1)[0]


class Fenced(Exception):
    """The api-server refuses writes (403): the REST objects wait for a later pass."""


class RestObjects:
    """The schema-transformer's objects on the api-server: a route-target per allocated id
    and each network's own routing instance referring to it."""

    def __init__(self, api_url: str, asn: int) -> None:
        self.asn = asn
        self.http = httpx.Client(base_url=api_url.rstrip("/"), timeout=30,
                                 headers={"Content-Type": "application/json"})
        self.instances: set[str] | None = None  # routing instances (fq_name joined) present

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, body: object = None) -> httpx.Response:
        answer = self.http.request(method, path, json=body)
        if answer.status_code == 403:
            raise Fenced(answer.text[:200])
        return answer

    def _create(self, res_type: str, body: dict[str, object]) -> bool:
        """False when the api-server answers 404: what the object hangs on (its parent
        network, a route target it refers to) went away since the pass read it."""
        answer = self._call("POST", f"/{res_type}s", {res_type: body})
        if answer.status_code == 404:
            return False
        if answer.status_code not in (200, 409):  # 409: there already
            answer.raise_for_status()
        return True

    def load(self) -> set[str]:
        if self.instances is None:
            answer = self._call("GET", "/routing-instances")
            answer.raise_for_status()
            self.instances = {":".join(item["fq_name"])
                              for item in answer.json().get("routing-instances", [])}
        return self.instances

    def target(self, rt_id: int) -> str:
        return f"target:{self.asn}:{rt_id}"

    def ensure(self, routing_instance: str, rt_id: int) -> bool:
        """The network's routing instance and its route target; False (skipped, not the end
        of the pass) when the network was deleted meanwhile: the next pass forgets it."""
        target = self.target(rt_id)
        made = self._create("route-target", {"fq_name": [target]}) and self._create(
            "routing-instance", {
                "fq_name": routing_instance.split(":"), "parent_type": "virtual-network",
                "route_target_refs": [{"to": [target], "attr": {"import_export": None}}]})
        if made:
            self.load().add(routing_instance)
        return made

    def forget(self, routing_instance: str, rt_id: int) -> None:
        self.load().discard(routing_instance)
        answer = self._call("POST", "/fqname-to-id",
                            {"type": "route-target", "fq_name": [self.target(rt_id)]})
        if answer.status_code == 200:
            uuid = answer.json()["uuid"]
            gone = self._call("DELETE", f"/route-target/{uuid}")
            if gone.status_code not in (200, 404, 409):  # 409: still referred, a later pass
                gone.raise_for_status()


def vn_db_type(version: str) -> str:
    """virtual-network's type name in obj_fq_name_table: 4.x dashes, 5.x underscores."""
    return "virtual_network" if int(version.split(".")[0]) >= 5 else "virtual-network"


class Writer:
    def __init__(self, spec: ControllerSpec, service: str) -> None:
        self.spec, self.service = spec, service
        secrets = load_secrets(spec.secrets_file)
        auth = None
        if secrets.cassandra_user:
            password = secrets.cassandra_password.get_secret_value() \
                if secrets.cassandra_password else ""
            auth = PlainTextAuthProvider(secrets.cassandra_user, password)
        profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=30)
        self.cluster = Cluster(contact_points=spec.cassandra.hosts, port=spec.cassandra.port,
                               auth_provider=auth, protocol_version=5, connect_timeout=10,
                               execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                               reconnection_policy=ExponentialReconnectionPolicy(1.0, 10.0))
        self.session: Session = self.cluster.connect()
        self.zk = KazooClient(hosts=",".join(spec.zookeeper.hosts), timeout=15)
        self.zk.start(timeout=30)
        self._ensure_schema()
        self.rt_path = spec.zookeeper.path(RT_PATH)
        self.route_targets: dict[str, int] = {}  # routing instance -> id (ours, from ZooKeeper)
        self.rest = RestObjects(spec.api_url, spec.asn)
        self.fenced_said = False

    def close(self) -> None:
        self.rest.close()
        self.zk.stop()
        self.zk.close()
        self.cluster.shutdown()

    def ks(self, name: str) -> str:
        return self.spec.cassandra.keyspace(name)

    def _ensure_schema(self) -> None:
        for keyspace, tables in KEYSPACES.items():
            ks = self.ks(keyspace)
            schema_change(
                self.session, self.cluster,
                f'CREATE KEYSPACE IF NOT EXISTS "{ks}" WITH replication = '
                "{'class': 'SimpleStrategy', 'replication_factor': "
                f"{self.spec.cassandra.replication_factor}}}")
            for table in tables:
                schema_change(
                    self.session, self.cluster, f'CREATE TABLE IF NOT EXISTS "{ks}"."{table}" '
                    "(key text, column1 text, value text, PRIMARY KEY (key, column1))")

    # ------------------------------------------------------------------ reads
    def networks(self) -> list[Network]:
        ks = self.ks("config_db_uuid")
        try:
            rows = self.session.execute(
                f'SELECT column1 FROM "{ks}".obj_fq_name_table WHERE key = %s',
                (vn_db_type(self.spec.version),))
        except Exception as exc:  # config_db_uuid not there yet (new before pre-sync)
            log.debug("no networks yet: %s", exc)
            return []
        out = []
        for row in rows:
            name, _, uuid = str(row.column1).rpartition(":")
            if name:
                out.append(Network(name, uuid))
        return out

    def _blobs(self, keyspace: str, table: str) -> set[str]:
        """The table's columns stored as blob (Contrail's own tables, as an operator's
        snapshot has them) rather than text (the demo's own layout)."""
        meta = self.cluster.metadata.keyspaces[self.ks(keyspace)].tables[table]
        return {name for name, col in meta.columns.items() if col.cql_type == "blob"}

    def _enc(self, blobs: set[str], column: str, text: str) -> str | bytes:
        return text.encode() if column in blobs else text

    @staticmethod
    def _dec(value: object) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    def keys(self, keyspace: str, table: str) -> dict[str, str]:
        """key -> the value of the table's only column we write (first column)."""
        rows = self.session.execute(f'SELECT key, value FROM "{self.ks(keyspace)}"."{table}"')
        return {self._dec(r.key): self._dec(r.value) for r in rows}

    def put(self, keyspace: str, table: str, key: str, column: str, value: str) -> None:
        blobs = self._blobs(keyspace, table)
        self.session.execute(
            f'INSERT INTO "{self.ks(keyspace)}"."{table}" (key, column1, value) '
            "VALUES (%s, %s, %s)", (self._enc(blobs, "key", key),
                                    self._enc(blobs, "column1", column),
                                    self._enc(blobs, "value", value)))

    def drop(self, keyspace: str, table: str, key: str) -> None:
        blobs = self._blobs(keyspace, table)
        self.session.execute(f'DELETE FROM "{self.ks(keyspace)}"."{table}" WHERE key = %s',
                             (self._enc(blobs, "key", key),))

    # ------------------------------------------------------------------ passes
    def sync_rows(self, keyspace: str, table: str, column: str,
                  wanted: dict[str, str]) -> int:
        have = self.keys(keyspace, table)
        changes = 0
        for key, value in wanted.items():
            if have.get(key) != value:
                self.put(keyspace, table, key, column, value)
                changes += 1
        for key in have.keys() - wanted.keys():
            self.drop(keyspace, table, key)
            changes += 1
        return changes

    def load_route_targets(self) -> None:
        self.zk.ensure_path(self.rt_path)
        self.route_targets.clear()
        for child in self.zk.get_children(self.rt_path):
            data, _ = self.zk.get(f"{self.rt_path}/{child}")
            self.route_targets[data.decode()] = int(child)

    def allocate(self, routing_instance: str) -> int:
        used = set(self.route_targets.values())
        candidate = RT_MIN_ID
        while True:
            while candidate in used:
                candidate += 1
            try:
                self.zk.create(f"{self.rt_path}/{candidate:010d}", routing_instance.encode())
            except NodeExistsError:
                used.add(candidate)  # allocated by someone else: the next one
                continue
            self.route_targets[routing_instance] = candidate
            return candidate

    def schema_transformer(self, networks: list[Network]) -> int:
        wanted = {n.routing_instance for n in networks}
        if not self.route_targets:
            self.load_route_targets()
        for ri in sorted(wanted - self.route_targets.keys()):
            self.allocate(ri)
        gone = {ri: self.route_targets.pop(ri)
                for ri in sorted(self.route_targets.keys() - wanted)}
        for with_id in gone.values():
            with contextlib.suppress(NoNodeError):
                self.zk.delete(f"{self.rt_path}/{with_id:010d}")
        changes = self.sync_rows("to_bgp_keyspace", "route_target_table", "rtgt_num",
                                 {ri: str(self.route_targets[ri]) for ri in wanted})
        own = {n.routing_instance for n in networks if n.project != DEFAULT_PROJECT}
        try:
            for ri, with_id in gone.items():
                self.rest.forget(ri, with_id)
            for ri in sorted(own - self.rest.load()):
                changes += self.rest.ensure(ri, self.route_targets[ri])
            self.fenced_said = False
        except Fenced:
            if not self.fenced_said:
                log.info("api-server fenced: routing instances and route targets wait")
                self.fenced_said = True
        return changes

    def svc_monitor(self, networks: list[Network]) -> int:
        changes = self.sync_rows("svc_monitor_keyspace", "service_instance_table", "state",
                                 {f"{n.project}:snat-si": "active" for n in networks})
        return changes + self.sync_rows("useragent", "useragent_keyval_table", "value",
                                        {f"neutron:network:{n.uuid}": n.fq_name
                                         for n in networks})

    def device_manager(self, networks: list[Network]) -> int:
        def link_local(n: Network) -> str:
            try:
                low = uuidlib.UUID(n.uuid).int & 0xFFFF_FFFF
            except ValueError:
                low = sum(n.uuid.encode())
            return f"fe80::{low >> 16:x}:{low & 0xFFFF:x}"
        return self.sync_rows("dm_keyspace", "dm_ni_ipv6_ll_table", "ip",
                              {n.routing_instance: link_local(n) for n in networks})

    def one_pass(self) -> int:
        networks = self.networks()
        if self.service == "schema-transformer":
            return self.schema_transformer(networks)
        if self.service == "svc-monitor":
            return self.svc_monitor(networks)
        return self.device_manager(networks)


ELECTION_PATH = "issu-demo-writers"


def _elected(spec: ControllerSpec, service: str, stop: threading.Event
             ) -> KazooClient | None:
    """With several config hosts: wait until this host's `service` is the active one (a lock
    under the cluster's ZooKeeper, held for the process's life; backups wait for it). The
    held lock's session, or None when stopped first."""
    zk = KazooClient(hosts=",".join(spec.zookeeper.hosts), timeout=10)
    zk.start(timeout=30)
    lock = zk.Lock(spec.zookeeper.path(ELECTION_PATH, service), identifier=spec.listen)
    log.info("%s: backup until elected (%s)", service, spec.listen)
    while not stop.is_set():
        try:
            lock.acquire(timeout=1.0)  # raises LockTimeout while another host holds it
        except LockTimeout:
            continue
        log.info("%s: active (%s)", service, spec.listen)
        return zk
    zk.stop()
    zk.close()
    return None


def run(spec_path: Path, service: str, interval_s: float, stop: threading.Event) -> int:
    spec = load_spec(spec_path)
    election = _elected(spec, service, stop) if spec.writers_elect else None
    if spec.writers_elect and election is None:
        return 0
    try:
        return _run_active(spec, service, interval_s, stop)
    finally:
        if election is not None:
            election.stop()  # the lock's node goes with the session: a backup takes over
            election.close()


def _run_active(spec: ControllerSpec, service: str, interval_s: float,
                stop: threading.Event) -> int:
    writer = Writer(spec, service)
    secrets = load_secrets(spec.secrets_file)
    notes = Notifications(spec.rabbit, secrets.rabbit_user,
                          secrets.rabbit_password.get_secret_value(), service, spec.listen)
    notes.start()
    notes.ready.wait(30)  # consuming before the first pass: no change falls between
    log.info("%s of %s (%s) writing (queue %s)", service, spec.cluster, spec.version,
             notes.queue_name)
    try:
        while not stop.is_set():
            notes.wake.clear()
            notes.passes_begun += 1
            began = notes.passes_begun
            try:
                changes = writer.one_pass()
                notes.passes_done = began  # what arrived before it began is handled
                if changes:
                    log.info("%s: %d row(s) written or removed", service, changes)
            except Exception as exc:  # a timeout on a loaded box: the next pass retries
                log.warning("%s: pass failed: %s: %s", service, type(exc).__name__, exc)
                writer.route_targets.clear()  # re-read ZooKeeper's truth next time
                writer.rest.instances = None    # and the api-server's
            if not stop.is_set():
                notes.wake.wait(interval_s)  # a notification, or the next periodic pass
    finally:
        notes.stop()
        writer.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.controller.writers")
    parser.add_argument("--spec", required=True, type=Path, help="controller spec JSON file")
    parser.add_argument("--service", required=True, choices=SERVICES)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between passes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("cassandra").setLevel(logging.WARNING)
    logging.getLogger("kazoo").setLevel(logging.WARNING)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        return run(args.spec, args.service, args.interval, stop)
    except SpecError as exc:
        print(f"demo.controller.writers: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        print(f"demo.controller.writers: {args.service}: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
