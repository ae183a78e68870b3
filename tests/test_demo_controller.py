"""The simulated controllers against real Cassandra, ZooKeeper and RabbitMQ.

A v1 (4.1.0) and a v2 (5.0.0, fenced) controller run as processes, each under a fresh keyspace /
znode prefix, and are driven with the public contrail-api-client (`vnc_api`).
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import RoundRobinPolicy
from kazoo.client import KazooClient
from kombu import Connection, Exchange, Queue

from demo.controller.process import ControllerProcess, write_spec
from demo.services import Endpoints

vnc_api = pytest.importorskip("vnc_api.vnc_api")

AGENT_TIMEOUT_S = 2.0


def _profiles() -> dict[object, ExecutionProfile]:
    # one policy object per Cluster: a load-balancing policy holds that cluster's hosts
    return {EXEC_PROFILE_DEFAULT: ExecutionProfile(load_balancing_policy=RoundRobinPolicy(),
                                                   request_timeout=60)}


@dataclass
class Cluster_:
    name: str
    address: str
    prefix: str
    cassandra: tuple[str, int]
    zk: str
    vhost: str
    admin_token: str
    proc: ControllerProcess

    @property
    def api(self) -> str:
        return f"http://{self.address}:8082"

    @property
    def analytics(self) -> str:
        return f"http://{self.address}:8081"

    @property
    def introspect(self) -> str:
        return f"http://{self.address}:8083"

    def client(self) -> Any:
        return vnc_api.VncApi(api_server_host=self.address, api_server_port=8082,
                              auth_type="noauth")


def _spec(services: Endpoints, name: str, version: str, address: str, prefix: str,
          fenced: bool, peer_address: str) -> dict[str, Any]:
    cass = services.cassandra_old if name == "v1" else services.cassandra_new
    zk = services.zk_old if name == "v1" else services.zk_new
    vhost = services.rabbit.vhost_old if name == "v1" else services.rabbit.vhost_new
    return {
        "cluster": name, "version": version, "listen": address,
        "cassandra": {"hosts": [cass.host], "port": cass.port, "prefix": prefix},
        "zookeeper": {"hosts": [zk.hosts], "prefix": prefix},
        "rabbit": {"host": services.rabbit.host, "port": services.rabbit.port, "vhost": vhost},
        "fenced": fenced,
        "control_nodes": [{"name": f"{name}-control-1", "address": address}],
        "peer": {"name": "peer", "introspect_url": f"http://{peer_address}:8083"},
        "agent_timeout_s": AGENT_TIMEOUT_S,
    }


@pytest.fixture(scope="module")
def clusters(services: Endpoints) -> Iterator[dict[str, Cluster_]]:
    net = services.cassandra_old.host.split(".")[1]
    addr = {"v1": f"127.{net}.0.101", "v2": f"127.{net}.0.102"}
    tag = secrets.token_hex(3)
    root = services.run_dir / "test-controller" / tag
    out: dict[str, Cluster_] = {}
    try:
        for name, version, fenced in (("v1", "4.1.0", False), ("v2", "5.0.0", True)):
            prefix = f"t{tag}{name}"
            token = secrets.token_urlsafe(16)
            peer = addr["v2" if name == "v1" else "v1"]
            spec_path = write_spec(
                root / name, _spec(services, name, version, addr[name], prefix, fenced, peer),
                {"rabbit_user": services.rabbit.user,
                 "rabbit_password": services.rabbit.password, "admin_token": token})
            proc = ControllerProcess(spec_path)
            proc.start()
            cass = services.cassandra_old if name == "v1" else services.cassandra_new
            zk = services.zk_old if name == "v1" else services.zk_new
            out[name] = Cluster_(name, addr[name], prefix, (cass.host, cass.port), zk.hosts,
                                 "/" if name == "v1" else "/v2", token, proc)
        for c in out.values():
            c.proc.wait_ready(90)
        yield out
    finally:
        for c in out.values():
            c.proc.stop()
        for c in out.values():
            _drop(c)


def _drop(c: Cluster_) -> None:
    cluster = Cluster([c.cassandra[0]], port=c.cassandra[1],
                      execution_profiles=_profiles())
    try:
        session = cluster.connect()
        session.execute(f'DROP KEYSPACE IF EXISTS "{c.prefix}_config_db_uuid"', timeout=60)
    finally:
        cluster.shutdown()
    zk = KazooClient(hosts=c.zk)
    zk.start(timeout=15)
    try:
        zk.delete(f"/{c.prefix}", recursive=True)
    finally:
        zk.stop()
        zk.close()


@pytest.fixture(scope="module")
def cql(clusters: dict[str, Cluster_]) -> Iterator[Callable[[str, str], dict[str, str]]]:
    sessions = {}
    handles = []
    for name, c in clusters.items():
        h = Cluster([c.cassandra[0]], port=c.cassandra[1],
                    execution_profiles=_profiles())
        handles.append(h)
        sessions[name] = (h.connect(), c.prefix)

    def row(cluster: str, key: str, table: str = "obj_uuid_table") -> dict[str, str]:
        session, prefix = sessions[cluster]
        rs = session.execute(
            f'SELECT column1, value FROM "{prefix}_config_db_uuid"."{table}" WHERE key = %s',
            (key,))
        return {r.column1: r.value for r in rs}

    yield row
    for h in handles:
        h.shutdown()


@pytest.fixture(scope="module")
def zk(clusters: dict[str, Cluster_]) -> Iterator[dict[str, KazooClient]]:
    clients = {}
    for name, c in clusters.items():
        client = KazooClient(hosts=c.zk)
        client.start(timeout=15)
        clients[name] = client
    yield clients
    for client in clients.values():
        client.stop()
        client.close()


def _eventually(check: Callable[[], Any], timeout_s: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"not reached within {timeout_s}s: {what} (last: {last!r})")


# -- api-server ------------------------------------------------------------------------------
def test_vnc_api_crud_on_v1_writes_contrail_layout(clusters, cql, zk) -> None:
    v1 = clusters["v1"]
    api = v1.client()
    domain = api.domain_read(fq_name=["default-domain"])
    project = vnc_api.Project("tenant-a", domain)
    api.project_create(project)
    ipam = vnc_api.NetworkIpam("ipam-a", project)
    api.network_ipam_create(ipam)
    vn = vnc_api.VirtualNetwork("vn-a", project)
    subnet = vnc_api.IpamSubnetType(subnet=vnc_api.SubnetType("10.10.0.0", 24))
    vn.add_network_ipam(ipam, vnc_api.VnSubnetsType([subnet]))
    api.virtual_network_create(vn)
    vmi = vnc_api.VirtualMachineInterface("vmi-a", project)
    vmi.add_virtual_network(vn)
    api.virtual_machine_interface_create(vmi)
    iip = vnc_api.InstanceIp("iip-a")
    iip.add_virtual_network(vn)
    iip.add_virtual_machine_interface(vmi)
    api.instance_ip_create(iip)
    sg = vnc_api.SecurityGroup("sg-a", project)
    api.security_group_create(sg)

    # read back through the client
    got = api.virtual_network_read(id=vn.uuid)
    assert got.get_fq_name() == ["default-domain", "tenant-a", "vn-a"]
    vn_id = got.virtual_network_network_id
    assert isinstance(vn_id, int) and vn_id > 0
    refs = got.get_network_ipam_refs()
    assert [r["uuid"] for r in refs] == [ipam.uuid]
    assert refs[0]["attr"].ipam_subnets[0].subnet.ip_prefix == "10.10.0.0"
    address = api.instance_ip_read(id=iip.uuid).instance_ip_address
    assert address.startswith("10.10.0.")

    # Cassandra rows, 4.x shape under the cluster prefix
    row = cql("v1", vn.uuid)
    assert json.loads(row["type"]) == "virtual-network"
    assert json.loads(row["fq_name"]) == ["default-domain", "tenant-a", "vn-a"]
    assert json.loads(row["prop:virtual_network_network_id"]) == vn_id
    assert "prop:perms2" not in row
    assert f"parent:project:{project.uuid}" in row
    assert json.loads(row[f"ref:network-ipam:{ipam.uuid}"])["is_weakref"] is False
    assert "META:latest_col_ts" in row
    assert f"backref:virtual-network:{vn.uuid}" in cql("v1", ipam.uuid)
    assert f"children:virtual-network:{vn.uuid}" in cql("v1", project.uuid)
    fq_row = cql("v1", "virtual-network", "obj_fq_name_table")
    assert f"default-domain:tenant-a:vn-a:{vn.uuid}" in fq_row

    # ZooKeeper: fq-name lock and VN id, SG id, IIP address under the prefix
    root = f"/{v1.prefix}"
    data, _ = zk["v1"].get(f"{root}/fq-name-to-uuid/virtual-network:default-domain:tenant-a:vn-a")
    assert data.decode() == vn.uuid
    data, _ = zk["v1"].get(f"{root}/id/virtual-networks/{vn_id:010d}")
    assert data.decode() == "default-domain:tenant-a:vn-a"
    sg_id = api.security_group_read(id=sg.uuid).security_group_id
    assert zk["v1"].exists(f"{root}/id/security-groups/id/{int(sg_id):010d}")
    ip_int = int.from_bytes(bytes(int(x) for x in address.split(".")), "big")
    assert zk["v1"].exists(f"{root}/api-server/subnets/default-domain:tenant-a:vn-a:10.10.0.0/24/"
                           f"{ip_int:010d}")

    # update, list with detail, fq_name_to_id, ref-update
    got.set_display_name("Network A")
    api.virtual_network_update(got)
    assert api.virtual_network_read(id=vn.uuid).display_name == "Network A"
    assert json.loads(cql("v1", vn.uuid)["prop:display_name"]) == "Network A"
    listed = api.virtual_networks_list(parent_id=project.uuid, detail=True)
    assert [o.uuid for o in listed] == [vn.uuid]
    assert listed[0].get_network_ipam_refs()[0]["uuid"] == ipam.uuid
    assert api.fq_name_to_id("virtual-network", ["default-domain", "tenant-a", "vn-a"]) == vn.uuid
    assert api.id_to_fq_name(vn.uuid) == ["default-domain", "tenant-a", "vn-a"]
    api.ref_update("virtual-machine-interface", vmi.uuid, "security-group", sg.uuid, None, "ADD")
    assert [r["uuid"] for r in api.virtual_machine_interface_read(id=vmi.uuid)
            .get_security_group_refs()] == [sg.uuid]
    assert f"backref:virtual-machine-interface:{vmi.uuid}" in cql("v1", sg.uuid)

    # deleting a referred object is refused; in order, everything goes
    with pytest.raises(vnc_api.RefsExistError):
        api.virtual_network_delete(id=vn.uuid)
    api.instance_ip_delete(id=iip.uuid)
    api.virtual_machine_interface_delete(id=vmi.uuid)
    api.virtual_network_delete(id=vn.uuid)
    api.security_group_delete(id=sg.uuid)
    api.network_ipam_delete(id=ipam.uuid)
    api.project_delete(id=project.uuid)
    assert cql("v1", vn.uuid) == {}
    assert f"default-domain:tenant-a:vn-a:{vn.uuid}" not in cql(
        "v1", "virtual-network", "obj_fq_name_table")
    assert f"children:project:{project.uuid}" not in cql("v1", domain.uuid)
    assert not zk["v1"].exists(f"{root}/id/virtual-networks/{vn_id:010d}")
    assert not zk["v1"].exists(
        f"{root}/fq-name-to-uuid/virtual-network:default-domain:tenant-a:vn-a")
    with pytest.raises(vnc_api.NoIdError):
        api.virtual_network_read(id=vn.uuid)


def test_change_on_v1_is_published_in_the_real_format(clusters, services) -> None:
    v1 = clusters["v1"]
    r = services.rabbit
    received: list[dict[str, Any]] = []
    with Connection(hostname=r.host, port=r.port, userid=r.user, password=r.password,
                    virtual_host=r.vhost_old) as conn:
        exchange = Exchange("vnc_config.object-update", type="fanout", durable=False)
        queue = Queue(f"test-ctl-{uuid.uuid4()}", exchange=exchange, exclusive=True,
                      auto_delete=True)
        with conn.Consumer(queue, callbacks=[lambda body, msg: (received.append(body),
                                                                 msg.ack())],
                           accept=["json"]):
            api = v1.client()
            project = vnc_api.Project("tenant-bus", api.domain_read(fq_name=["default-domain"]))
            api.project_create(project)
            vn = vnc_api.VirtualNetwork("vn-bus", project)
            api.virtual_network_create(vn)
            vn.set_display_name("bus")
            api.virtual_network_update(vn)
            api.virtual_network_delete(id=vn.uuid)
            api.project_delete(id=project.uuid)
            deadline = time.monotonic() + 20
            while len(received) < 5 and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=1)
                except TimeoutError:
                    continue
    vn_msgs = [m for m in received if m["uuid"] == vn.uuid]
    assert [m["oper"] for m in vn_msgs] == ["CREATE", "UPDATE", "DELETE"]
    create = vn_msgs[0]
    assert create["type"] == "virtual-network"
    assert create["fq_name"] == ["default-domain", "tenant-bus", "vn-bus"]
    assert create["request-id"].startswith("req-")
    assert create["obj_dict"]["parent_type"] == "project"
    assert create["obj_dict"]["virtual_network_network_id"] > 0
    assert vn_msgs[1]["obj_dict"]["display_name"] == "bus"
    assert {m["oper"] for m in received if m["uuid"] == project.uuid} == {"CREATE", "DELETE"}


# -- v2: fenced until opened, 5.0 shape -----------------------------------------------------
def test_v2_refuses_writes_until_opened_and_reads_the_v2_schema(clusters, cql) -> None:
    v2 = clusters["v2"]
    api = v2.client()
    # a fenced v2 creates nothing of its own: its database holds only what the sync writes
    assert api.domains_list() == {"domains": []}
    with pytest.raises(vnc_api.PermissionDenied, match="ISSU in progress"):
        api.domain_create(vnc_api.Domain("default-domain"))
    resp = httpx.post(f"{v2.api}/projects", json={"project": {"fq_name": ["d", "p"]}})
    assert resp.status_code == 403 and "POST /issu/open" in resp.text

    # objects the sync wrote in the 5.0 shape are readable through vnc_api
    synced = _write_synced_vn(v2, cql)
    vn = api.virtual_network_read(id=synced)
    assert vn.virtual_network_network_id == 42
    assert vn.get_fq_name() == ["default-domain", "synced", "vn-s"]

    assert httpx.post(f"{v2.api}/issu/open", headers={"X-Auth-Token": "wrong"}).status_code == 401
    opened = httpx.post(f"{v2.api}/issu/open", headers={"X-Auth-Token": v2.admin_token})
    assert opened.status_code == 200 and opened.json() == {"northbound_open": True}
    assert httpx.get(f"{v2.api}/issu/status").json()["northbound_open"] is True

    domain = api.domain_read(fq_name=["default-domain"])  # created when opened
    project = vnc_api.Project("tenant-v2", domain)
    api.project_create(project)
    net = vnc_api.VirtualNetwork("vn-v2", project)
    api.virtual_network_create(net)
    row = cql("v2", net.uuid)
    assert json.loads(row["type"]) == "virtual_network"
    assert "prop:virtual_network_id" in row and "prop:virtual_network_network_id" not in row
    assert json.loads(row["prop:perms2"])["owner"] == "cloud-admin"
    assert f"parent:project:{project.uuid}" in row
    assert f"default-domain:tenant-v2:vn-v2:{net.uuid}" in cql(
        "v2", "virtual_network", "obj_fq_name_table")
    assert api.virtual_network_read(id=net.uuid).virtual_network_network_id != 42


def _write_synced_vn(v2: Cluster_, cql: Callable[..., Any]) -> str:
    """Rows as the sync engine writes them on v2 (translated to the 5.0 shape)."""
    cluster = Cluster([v2.cassandra[0]], port=v2.cassandra[1],
                      execution_profiles=_profiles())
    vn_uuid, proj_uuid = str(uuid.uuid4()), str(uuid.uuid4())
    ks = f'"{v2.prefix}_config_db_uuid"'
    cells = [
        (proj_uuid, "fq_name", json.dumps(["default-domain", "synced"])),
        (proj_uuid, "type", json.dumps("project")),
        (proj_uuid, f"children:virtual_network:{vn_uuid}", "null"),
        (vn_uuid, "fq_name", json.dumps(["default-domain", "synced", "vn-s"])),
        (vn_uuid, "type", json.dumps("virtual_network")),
        (vn_uuid, "parent_type", json.dumps("project")),
        (vn_uuid, f"parent:project:{proj_uuid}", "null"),
        (vn_uuid, "prop:virtual_network_id", "42"),
        (vn_uuid, "prop:perms2", json.dumps({"owner": "cloud-admin", "owner_access": 7,
                                             "global_access": 0, "share": []})),
    ]
    try:
        session = cluster.connect()
        for key, col, val in cells:
            session.execute(f"INSERT INTO {ks}.obj_uuid_table (key, column1, value) "
                            "VALUES (%s, %s, %s)", (key, col, val))
        session.execute(f"INSERT INTO {ks}.obj_fq_name_table (key, column1, value) "
                        "VALUES (%s, %s, %s)",
                        ("virtual_network", f"default-domain:synced:vn-s:{vn_uuid}", "null"))
    finally:
        cluster.shutdown()
    return vn_uuid


# -- analytics --------------------------------------------------------------------------------
def test_analytics_shows_reporting_agent_and_alarms_when_it_stops(clusters) -> None:
    v1 = clusters["v1"]
    report = {"name": "compute-t1", "version": "4.1.0", "control_ip": "127.0.9.1",
              "control_nodes": [f"{v1.address}:5269"], "collectors": [f"{v1.address}:8086"],
              "dns_servers": [f"{v1.address}:53"]}
    resp = httpx.post(f"{v1.analytics}/issu-demo/agent-report", json=report)
    assert resp.status_code == 200 and resp.json()["cluster"] == "v1"

    names = [v["name"] for v in httpx.get(f"{v1.analytics}/analytics/uves/vrouters").json()]
    assert "compute-t1" in names
    uve = httpx.get(f"{v1.analytics}/analytics/uves/vrouter/compute-t1?flat").json()
    agent = uve["VrouterAgent"]
    assert agent["control_ip"] == "127.0.9.1"
    assert json.loads(agent["build_info"])["build-info"][0]["build-version"] == "4.1.0"
    assert agent["xmpp_peer_list"] == [{"ip": v1.address, "status": True, "primary": True,
                                        "setup_time": agent["xmpp_peer_list"][0]["setup_time"]}]
    proc = uve["NodeStatus"]["process_info"][0]
    assert proc["process_name"] == "contrail-vrouter-agent"
    assert proc["process_state"] == "PROCESS_STATE_RUNNING"
    assert "UVEAlarms" not in uve

    # the control node knows only the sessions that reach its XMPP port
    def xmpp() -> list[dict[str, Any]]:
        neighbours = httpx.get(f"{v1.introspect}/Snh_BgpNeighborReq").json()
        return [n for n in neighbours["BgpNeighborListResp"]["neighbors"]
                if n["encoding"] == "XMPP" and n["peer"] == "compute-t1"]

    assert xmpp() == []
    resp = httpx.post(f"http://{v1.address}:5269/issu-demo/agent-report", json=report)
    assert resp.status_code == 200 and resp.json()["cluster"] == "v1"
    _eventually(lambda: [n["state"] for n in xmpp()] == ["Established"], what="XMPP up")
    # ... and the analytics-api reads it from the control node's introspect
    cn = httpx.get(f"{v1.analytics}/analytics/uves/control-node/v1-control-1").json()
    assert cn["BgpRouterState"]["num_xmpp_peer"] == 1
    assert cn["BgpRouterState"]["num_up_xmpp_peer"] == 1

    bad = httpx.post(f"{v1.analytics}/issu-demo/agent-report", json={"name": "x"})
    assert bad.status_code == 400 and "version" in bad.json()["error"]

    # silence: after the timeout the agent is down and alarmed
    def alarmed() -> Any:
        alarms = httpx.get(f"{v1.analytics}/analytics/alarms").json()
        return [a for a in alarms.get("vrouter", []) if a["name"] == "compute-t1"]

    found = _eventually(alarmed, timeout_s=AGENT_TIMEOUT_S * 10, what="vrouter alarm")
    alarm = found[0]["value"]["UVEAlarms"]["alarms"][0]
    assert alarm["type"] == "default-global-system-config:system-defined-node-status"
    assert alarm["ack"] is False
    uve = httpx.get(f"{v1.analytics}/analytics/uves/vrouter/compute-t1").json()
    assert "NodeStatus" not in uve and "UVEAlarms" in uve

    # a stopped agent (graceful) raises the process-status alarm instead; a report clears it
    httpx.post(f"{v1.analytics}/issu-demo/agent-report",
               json={**report, "process_state": "PROCESS_STATE_STOPPED"})
    types = [a["type"] for a in alarmed()[0]["value"]["UVEAlarms"]["alarms"]]
    assert types == ["default-global-system-config:system-defined-process-status"]
    httpx.post(f"{v1.analytics}/issu-demo/agent-report", json=report)
    assert alarmed() == []


# -- control node: iBGP between the clusters -------------------------------------------------
def _bgp_router(api: Any, name: str, address: str) -> Any:
    ri = api.routing_instance_read(
        fq_name=["default-domain", "default-project", "ip-fabric", "__default__"])
    params = vnc_api.BgpRouterParams(address=address, autonomous_system=64512,
                                     identifier=address, router_type="control-node",
                                     address_families=vnc_api.AddressFamilies(
                                         ["route-target", "inet-vpn", "e-vpn", "inet6-vpn"]))
    router = vnc_api.BgpRouter(name, ri, bgp_router_parameters=params)
    try:
        api.bgp_router_create(router)
    except vnc_api.RefsExistError:  # the cluster's own control node: provisioned at start
        return api.bgp_router_read(fq_name=router.get_fq_name())
    return router


def _states(c: Cluster_) -> dict[str, str]:
    data = httpx.get(f"{c.introspect}/Snh_BgpNeighborReq", params={"encoding": "BGP"}).json()
    return {n["peer_address"]: n["state"] for n in data["BgpNeighborListResp"]["neighbors"]}


def test_bgp_peering_established_when_both_sides_have_bgp_routers(clusters) -> None:
    v1, v2 = clusters["v1"], clusters["v2"]
    httpx.post(f"{v2.api}/issu/open", headers={"X-Auth-Token": v2.admin_token})
    a1 = v1.client()
    # the orchestrator's pairing: both control nodes as bgp-routers (meshed, same ASN)
    local = _bgp_router(a1, "v1-control-1", v1.address)
    remote = _bgp_router(a1, "v2-control-1", v2.address)
    # only one side configured: the session is not up
    assert _eventually(lambda: _states(v1).get(v2.address) == "Active", what="Active")
    cn = httpx.get(f"{v1.analytics}/analytics/uves/control-node/v1-control-1").json()
    assert cn["BgpRouterState"]["num_bgp_peer"] == 1
    assert cn["BgpRouterState"]["num_up_bgp_peer"] == 0

    a2 = v2.client()
    _bgp_router(a2, "v2-control-1", v2.address)
    theirs = _bgp_router(a2, "v1-control-1", v1.address)
    assert _eventually(lambda: _states(v1).get(v2.address) == "Established", what="v1 side")
    assert _eventually(lambda: _states(v2).get(v1.address) == "Established", what="v2 side")
    cn = httpx.get(f"{v1.analytics}/analytics/uves/control-node/v1-control-1").json()
    assert cn["BgpRouterState"]["num_up_bgp_peer"] == 1
    # an explicit peering ref is symmetric, as Contrail stores it: both rows carry `ref:`
    a1.ref_update("bgp-router", local.uuid, "bgp-router", remote.uuid, None, "ADD",
                  vnc_api.BgpPeeringAttributes())
    peer = a1.bgp_router_read(id=remote.uuid)
    assert [r["uuid"] for r in peer.get_bgp_router_refs()] == [local.uuid]
    a1.ref_update("bgp-router", local.uuid, "bgp-router", remote.uuid, None, "DELETE")

    # unpairing on one side (the old node's bgp-router removed from v2) takes it down again
    a2.bgp_router_delete(id=theirs.uuid)
    assert _eventually(lambda: _states(v1).get(v2.address) == "Active", what="unpaired")
    assert _eventually(lambda: v1.address not in _states(v2), what="v2 forgot v1")


# -- seeder and workload ---------------------------------------------------------------------
def test_seeder_and_workload_drive_v1(clusters) -> None:
    import asyncio

    from demo.controller.seed import SeedPlan, seed
    from demo.controller.workload import Workload

    v1 = clusters["v1"]
    plan = SeedPlan(projects=2, vns_per_project=2, vmis_per_vn=2, prefix="seedtest")
    result = asyncio.run(seed(v1.api, plan))
    assert result.total == plan.total() == 2 * (5 + 2 * 5)
    assert result.created["instance-ip"] == 8
    api = v1.client()
    project = api.project_read(fq_name=["default-domain", "seedtest-001"])
    vns = api.virtual_networks_list(parent_id=project.uuid, detail=True)
    assert sorted(vn.name for vn in vns) == ["vn-000", "vn-001"]
    assert all(vn.get_network_policy_refs() for vn in vns)
    again = asyncio.run(seed(v1.api, plan))  # idempotent: existing objects are kept
    assert again.total == result.total
    assert len(api.virtual_networks_list(parent_id=project.uuid)["virtual-networks"]) == 2

    async def churn() -> Any:
        wl = Workload(v1.api, rate=50, project="wl-test", pool=10, seed=7)
        try:
            return await wl.run(asyncio.Event(), duration_s=3, report_every_s=0), wl.live
        finally:
            await wl.close()

    stats, live = asyncio.run(churn())
    assert stats.errors == {}
    assert stats.done["create"] > 0 and stats.done["update"] > 0
    ids = {o.uuid for o in live}
    wl_project = api.project_read(fq_name=["default-domain", "wl-test"])
    present = {sg["uuid"] for sg in api.security_groups_list(
        parent_id=wl_project.uuid)["security-groups"]}
    assert {o.uuid for o in live if o.res_type == "security-group"} == present & ids


def test_v1_keeps_publishing_after_a_rabbitmq_restart(clusters, services, launcher) -> None:
    v1 = clusters["v1"]
    launcher.restart("rabbitmq")
    r = services.rabbit
    api = v1.client()
    with Connection(hostname=r.host, port=r.port, userid=r.user, password=r.password,
                    virtual_host=r.vhost_old) as conn:
        exchange = Exchange("vnc_config.object-update", type="fanout", durable=False)
        queue = Queue(f"test-ctl-{uuid.uuid4()}", exchange=exchange, exclusive=True,
                      auto_delete=True)
        received: list[dict[str, Any]] = []
        with conn.Consumer(queue, callbacks=[lambda body, msg: (received.append(body),
                                                                 msg.ack())],
                           accept=["json"]):
            sg = vnc_api.SecurityGroup("sg-after-restart",
                                       api.project_read(fq_name=["default-domain",
                                                                 "default-project"]))
            api.security_group_create(sg)
            deadline = time.monotonic() + 30
            while not received and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=1)
                except TimeoutError:
                    continue
    assert [(m["oper"], m["uuid"]) for m in received] == [("CREATE", sg.uuid)]


def test_list_by_uuids_uses_bulk_collection_and_checks_types(clusters) -> None:
    v1 = clusters["v1"]
    api = v1.client()
    project = api.project_read(fq_name=["default-domain", "default-project"])
    ids = []
    for i in range(30):  # more than vnc_api's threshold of 25: POST /list-bulk-collection
        sg = vnc_api.SecurityGroup(f"bulk-{i:02d}", project)
        ids.append(api.security_group_create(sg))
    got = api.security_groups_list(obj_uuids=ids, detail=True)
    assert sorted(o.uuid for o in got) == sorted(ids)
    assert {o.name for o in got} == {f"bulk-{i:02d}" for i in range(30)}
    assert api.virtual_networks_list(obj_uuids=ids[:3]) == {"virtual-networks": []}
    counted = api.security_groups_list(parent_id=project.uuid, count=True)
    assert counted["security-groups"]["count"] >= 30


# -- with the real sync engine ----------------------------------------------------------------
def test_fenced_5_0_api_server_serves_what_pre_sync_copied_from_v1(clusters, services) -> None:
    """v1 (4.1.0) -> pre-sync (translator 4.x -> 5.0) -> a fresh fenced 5.0 controller."""
    from backends.cassandra.connection import CassandraSide, connect
    from backends.cassandra.copy import CopyEngine
    from backends.cassandra.registry import load_registry
    from backends.cassandra.tables import SyncSettings
    from backends.progress import MemoryCheckpoints, MemoryEvents

    v1 = clusters["v1"]
    api1 = v1.client()
    project = vnc_api.Project("tenant-sync", api1.domain_read(fq_name=["default-domain"]))
    api1.project_create(project)
    ipam = vnc_api.NetworkIpam("ipam-s", project)
    api1.network_ipam_create(ipam)
    vn = vnc_api.VirtualNetwork("vn-s", project)
    vn.add_network_ipam(ipam, vnc_api.VnSubnetsType(
        [vnc_api.IpamSubnetType(subnet=vnc_api.SubnetType("10.77.0.0", 24))]))
    api1.virtual_network_create(vn)
    vn_id = api1.virtual_network_read(id=vn.uuid).virtual_network_network_id

    net = v1.address.split(".")[1]
    tag = secrets.token_hex(3)
    prefix = f"t{tag}v3"
    token = secrets.token_urlsafe(16)
    spec = _spec(services, "v2", "5.0.0", f"127.{net}.0.103", prefix, True, v1.address)
    spec_path = write_spec(services.run_dir / "test-controller" / tag / "v3", spec,
                           {"rabbit_user": services.rabbit.user,
                            "rabbit_password": services.rabbit.password, "admin_token": token})
    proc = ControllerProcess(spec_path)
    v3 = Cluster_("v3", f"127.{net}.0.103", prefix,
                  (services.cassandra_new.host, services.cassandra_new.port),
                  services.zk_new.hosts, "/v2", token, proc)
    proc.start()
    try:
        proc.wait_ready(90)
        api3 = v3.client()
        assert api3.projects_list() == {"projects": []}
        old = connect(CassandraSide("old", (v1.cassandra[0],), v1.cassandra[1],
                                    prefix=v1.prefix, version="4.1.0"))
        new = connect(CassandraSide("new", (v3.cassandra[0],), v3.cassandra[1],
                                    prefix=v3.prefix, version="5.0.0"))
        try:
            report = CopyEngine(old, new, load_registry(),
                                SyncSettings(slices_per_table=8, concurrency=4,
                                             keyspaces=("config_db_uuid",)),
                                checkpoints=MemoryCheckpoints(),  # type: ignore[arg-type]
                                events=MemoryEvents()).run("pre-sync", phase="pre", fresh=True)
        finally:
            old.close()
            new.close()
        assert report.ok

        got = api3.virtual_network_read(id=vn.uuid)
        assert got.virtual_network_network_id == vn_id
        assert got.get_fq_name() == ["default-domain", "tenant-sync", "vn-s"]
        assert [r["uuid"] for r in got.get_network_ipam_refs()] == [ipam.uuid]
        assert api3.fq_name_to_id("project", ["default-domain", "tenant-sync"]) == project.uuid
        assert [o.uuid for o in api3.virtual_networks_list(parent_id=project.uuid,
                                                           detail=True)] == [vn.uuid]
        assert api3.network_ipam_read(id=ipam.uuid, fields=["virtual_network_back_refs"]
                                      ).get_virtual_network_back_refs()[0]["uuid"] == vn.uuid
        # still fenced: the copy is readable, not writable
        with pytest.raises(vnc_api.PermissionDenied):
            api3.virtual_network_delete(id=vn.uuid)
    finally:
        proc.stop()
        _drop(v3)


def test_annotations_through_prop_collection_update(clusters, cql) -> None:
    api = clusters["v1"].client()
    project = api.project_read(fq_name=["default-domain", "default-project"])
    sg = vnc_api.SecurityGroup("sg-annotated", project)
    sg.add_annotations(vnc_api.KeyValuePair("owner", "team-a"))
    api.security_group_create(sg)  # POST + POST /prop-collection-update
    got = api.security_group_read(id=sg.uuid)
    assert [(kv.key, kv.value) for kv in got.get_annotations().key_value_pair] == [
        ("owner", "team-a")]
    got.add_annotations(vnc_api.KeyValuePair("tier", "web"))
    got.del_annotations("owner")
    api.security_group_update(got)
    again = api.security_group_read(id=sg.uuid)
    assert [(kv.key, kv.value) for kv in again.get_annotations().key_value_pair] == [
        ("tier", "web")]
    stored = json.loads(cql("v1", sg.uuid)["prop:annotations"])
    assert stored == {"key_value_pair": [{"key": "tier", "value": "web"}]}


def test_concurrent_creates_of_one_name_make_one_object(clusters) -> None:
    from concurrent.futures import ThreadPoolExecutor

    v1 = clusters["v1"]
    body = {"security-group": {"fq_name": ["default-domain", "default-project", "sg-race"],
                               "parent_type": "project"}}
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: httpx.post(f"{v1.api}/security-groups", json=body,
                                                   timeout=60).status_code, range(8)))
    assert sorted(codes) == [200] + [409] * 7
    listed = httpx.get(f"{v1.api}/security-groups",
                       params={"fq_names": "default-domain:default-project:sg-race"}).json()
    assert len(listed["security-groups"]) == 1
