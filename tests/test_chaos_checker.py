"""The chaos checker (bench/chaos/checker.py) allows exactly what finalize changes on purpose
(old's node records removed from new, new's own node records, the unpaired bgp-routers) and
still reports any other difference, including one on the same objects in the other
direction."""

from __future__ import annotations

from bench.chaos.checker import (
    Node,
    NodeRecords,
    classify_nodes,
    unexpected_cells,
    writers_znodes,
    znode_differences,
)

GSC = "c2cb5472-0ff8-4651-8a41-11a85eb258a8"
OLD_CFG = Node("config-node", ["default-global-system-config", "v1-config-1"], "127.9.0.10",
               "5e08f99b-0b20-4a63-a8cd-1e05e6616cd3")
OLD_DB = Node("database-node", ["default-global-system-config", "v1-database-1"], "127.9.0.2",
              "a4e55c46-e4b5-4ff4-8513-1b31c690a351")
NEW_CFG = Node("config-node", ["default-global-system-config", "v2-config-1"], "127.9.0.20",
               "c1e24af3-eaf1-46f9-af2f-84c2ae0de5b9")
NEW_AN = Node("analytics-node", ["default-global-system-config", "v2-analytics-1"],
              "127.9.0.20", "4b81d46d-d4d9-4a01-b2ed-61b6c81ec1f1")
NEW_DB = Node("database-node", ["default-global-system-config", "v2-database-1"], "127.9.0.3",
              "2391ba45-4b1f-4de6-88af-c117da587ca7")
NEW_ADDRESSES = {"127.9.0.20", "127.9.0.3"}
NETWORK = "e9bd0d64-e16b-423d-9e9f-6f07cfbb7bab"


def _by_uuid(*nodes: Node) -> dict[str, tuple[Node, str]]:
    return {n.uuid: (n, GSC) for n in nodes}


def _finalized() -> NodeRecords:
    return classify_nodes(_by_uuid(OLD_CFG, OLD_DB), _by_uuid(NEW_CFG, NEW_AN, NEW_DB),
                          NEW_ADDRESSES)


def test_node_records_as_finalize_leaves_them_are_expected() -> None:
    nodes = _finalized()
    assert nodes.problems == []
    assert nodes.removed_uuids() == {OLD_CFG.uuid, OLD_DB.uuid}
    assert nodes.own_uuids() == {NEW_CFG.uuid, NEW_AN.uuid, NEW_DB.uuid}


def test_an_old_record_left_on_new_or_new_missing_its_own_is_a_problem() -> None:
    left = classify_nodes(_by_uuid(OLD_CFG), _by_uuid(OLD_CFG, NEW_CFG, NEW_AN, NEW_DB),
                          NEW_ADDRESSES)
    assert [p for p in left.problems if OLD_CFG.uuid in p and "still on new" in p]
    bare = classify_nodes(_by_uuid(OLD_CFG), _by_uuid(NEW_CFG), NEW_ADDRESSES)
    assert "new has no analytics-node record of its own" in bare.problems
    assert "new has no database-node record of its own" in bare.problems
    stranger = Node("config-node", ["default-global-system-config", "x"], "10.0.0.1",
                    "0b7c8a4e-1111-4d2e-9a3b-2f6c7d8e9f00")
    odd = classify_nodes({}, _by_uuid(NEW_CFG, NEW_AN, NEW_DB, stranger), NEW_ADDRESSES)
    assert [p for p in odd.problems if stranger.uuid in p]


def test_verify_allows_only_the_node_records_in_the_direction_finalize_leaves_them() -> None:
    nodes = _finalized()
    allowed = [
        ("missing", OLD_CFG.uuid, "prop:config_node_ip_address"),
        ("missing", OLD_CFG.uuid, "META:latest_col_ts"),
        ("missing", GSC, f"children:config_node:{OLD_CFG.uuid}"),
        ("missing", "config_node", f"default-global-system-config:v1-config-1:{OLD_CFG.uuid}"),
        ("extra", NEW_DB.uuid, "fq_name"),
        ("extra", GSC, f"children:database_node:{NEW_DB.uuid}"),
        ("different", GSC, "META:latest_col_ts"),
    ]
    wrong, _ = unexpected_cells(allowed, ["control-1"], nodes)
    assert wrong == []
    lost = [
        ("missing", NETWORK, "prop:display_name"),       # a real loss on new
        ("extra", OLD_CFG.uuid, "fq_name"),              # old's record back on new
        ("missing", NEW_DB.uuid, "fq_name"),             # new's own record lost
        ("different", OLD_CFG.uuid, "prop:config_node_ip_address"),
        ("different", GSC, "prop:autonomous_system"),    # the parent, beyond its timestamp
    ]
    wrong, _ = unexpected_cells(allowed + lost, ["control-1"], nodes)
    assert wrong == [f"{kind} {key} {column}" for kind, key, column in lost]


def test_verify_allows_the_unpaired_control_nodes_bgp_routers_missing_only() -> None:
    router = "7d1e2f3a-4b5c-4d6e-8f90-a1b2c3d4e5f6"
    instance = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
    lines = [
        ("missing", "bgp_router",
         f"default-domain:default-project:ip-fabric:__default__:control-1:{router}"),
        ("missing", router, f"parent:routing_instance:{instance}"),
        ("missing", instance, f"children:bgp_router:{router}"),
        ("different", instance, "META:latest_col_ts"),
    ]
    wrong, unpaired = unexpected_cells(lines, ["control-1"], NodeRecords())
    assert (wrong, unpaired) == ([], {router})
    wrong, _ = unexpected_cells([*lines, ("extra", router, "fq_name")], ["control-1"],
                                NodeRecords())
    assert wrong == [f"extra {router} fq_name"]
    # another cluster's control node is not unpaired by finalize: its loss is reported
    wrong, unpaired = unexpected_cells(lines[:1], ["control-9"], NodeRecords())
    assert len(wrong) == 1 and unpaired == set()


def test_zookeeper_sets_aside_only_the_node_records_fq_name_locks() -> None:
    nodes = _finalized()
    common = {"/fq-name-to-uuid": b"", f"/fq-name-to-uuid/virtual_network:a:b:{NETWORK}": b"x",
              "/id/virtual-networks/0000000007": b"default-domain:p:net"}
    old_cfg = "/fq-name-to-uuid/config-node:default-global-system-config:v1-config-1"  # 4.x
    new_an = "/fq-name-to-uuid/analytics_node:default-global-system-config:v2-analytics-1"
    assert old_cfg in OLD_CFG.znodes() and new_an in NEW_AN.znodes()
    old = {**common, old_cfg: OLD_CFG.uuid.encode(),
           "/fq-name-to-uuid/database-node:default-global-system-config:v1-database-1":
           OLD_DB.uuid.encode()}
    new = {**common, new_an: NEW_AN.uuid.encode(),
           "/fq-name-to-uuid/config_node:default-global-system-config:v2-config-1":
           NEW_CFG.uuid.encode(),
           "/fq-name-to-uuid/database_node:default-global-system-config:v2-database-1":
           NEW_DB.uuid.encode()}
    differing, set_aside = znode_differences(old, new, nodes)
    assert differing == [] and len(set_aside) == 5
    # zk-sync copied old's locks as they are and nothing released them: equal, no difference
    assert znode_differences({**old, **new}, {**old, **new}, nodes) == ([], set())

    lost = dict(new)
    del lost["/id/virtual-networks/0000000007"]
    wrong_owner = {**new, new_an: b"someone-else"}
    old_back = {**new, old_cfg: b"someone-else"}
    assert znode_differences(old, lost, nodes)[0] == ["/id/virtual-networks/0000000007"]
    assert znode_differences(old, wrong_owner, nodes)[0] == [new_an]
    assert znode_differences(old, old_back, nodes)[0] == [old_cfg]


def test_objects_derived_on_new_are_allowed_extra_only() -> None:
    ri = Node("routing-instance", ["default-domain", "p", "net", "net"], "",
              "31c8e0b2-6d0f-4b6a-9f0e-5a1b2c3d4e5f")
    rt = Node("route-target", ["target:64512:8000002"], "",
              "81ce0288-961a-4211-bc0c-49aef8ca0577")
    nodes = NodeRecords(derived=[ri, rt], parents={NETWORK})
    made = [("extra", ri.uuid, "fq_name"),
            ("extra", NETWORK, f"children:routing_instance:{ri.uuid}"),
            ("different", NETWORK, "META:latest_col_ts"),
            ("extra", "route_target", f"target:64512:8000002:{rt.uuid}"),
            ("extra", rt.uuid, f"backref:routing_instance:{ri.uuid}")]
    assert unexpected_cells(made, [], nodes)[0] == []
    # a route target on both sides that the derived routing instance refers to (an id the
    # schema-transformer reused): its back-reference and timestamp, nothing else
    shared_rt = "d2e77ff0-390b-4663-a21c-a06d5bf3a128"
    referring = [("extra", shared_rt, f"backref:routing_instance:{ri.uuid}"),
                 ("different", shared_rt, "META:latest_col_ts")]
    assert unexpected_cells(referring, [], nodes)[0] == ["different " + shared_rt
                                                         + " META:latest_col_ts"]
    nodes.parents.add(shared_rt)
    assert unexpected_cells(made + referring, [], nodes)[0] == []
    lost = [("missing", ri.uuid, "fq_name"), ("different", NETWORK, "prop:display_name"),
            ("different", shared_rt, "prop:display_name")]
    assert unexpected_cells(made + lost, [], nodes)[0] == [f"{k} {key} {c}" for k, key, c in lost]
    lock = "/fq-name-to-uuid/route_target:target:64512:8000002"
    assert znode_differences({}, {lock: rt.uuid.encode()}, nodes) == ([], {lock})
    assert znode_differences({lock: b"other"}, {lock: rt.uuid.encode()}, nodes)[0] == [lock]


def test_zookeeper_sets_aside_new_records_the_reverse_replication_copied_to_old() -> None:
    """After finalize the reverse replication copies new's own node records' rows to old's
    Cassandra (both sides: `kept`); their fq-name locks stay on new only (ZooKeeper goes back
    only with revert). Set aside where they hold the record's uuid, nowhere else."""
    nodes = classify_nodes(_by_uuid(OLD_CFG, NEW_CFG, NEW_AN, NEW_DB),
                           _by_uuid(NEW_CFG, NEW_AN, NEW_DB), NEW_ADDRESSES)
    assert {n.uuid for n in nodes.kept} == {NEW_CFG.uuid, NEW_AN.uuid, NEW_DB.uuid}
    lock = "/fq-name-to-uuid/config_node:default-global-system-config:v2-config-1"
    assert znode_differences({}, {lock: NEW_CFG.uuid.encode()}, nodes) == ([], {lock})
    assert znode_differences({}, {lock: b"another"}, nodes)[0] == [lock]
    assert znode_differences({lock: b"another"}, {lock: NEW_CFG.uuid.encode()},
                             nodes)[0] == [lock]


def test_what_new_writers_made_after_zk_sync_is_set_aside_on_new_only() -> None:
    since = 1_700_000_000.0
    late, early = "2023-11-14T22:15:00.000001", "2023-11-14T22:00:00"  # since = 22:13:20
    ri = {"uuid": "ri-1", "fq_name": ["default-domain", "p", "net", "net"],
          "id_perms": {"created": late},
          "route_target_refs": [{"to": ["target:64512:8000021"], "uuid": "rt-1"}]}
    rt = {"uuid": "rt-1", "fq_name": ["target:64512:8000021"], "id_perms": {"created": late}}
    old_ri = {**ri, "uuid": "ri-0", "fq_name": ["default-domain", "p", "old", "old"],
              "id_perms": {"created": early}}
    objects = {o["uuid"]: o for o in (ri, rt, old_ri)}
    new_only = {
        "/fq-name-to-uuid/routing_instance:default-domain:p:net:net": b"ri-1",
        "/fq-name-to-uuid/route_target:target:64512:8000021": b"rt-1",
        "/id/bgp/route-targets/0008000021": b"default-domain:p:net:net",
        # before zk-sync: zk-sync should have copied it to old; not allowed
        "/fq-name-to-uuid/routing_instance:default-domain:p:old:old": b"ri-0",
        "/id/bgp/route-targets/0008000030": b"default-domain:p:net:net",  # not referred
        "/fq-name-to-uuid/route_target:target:64512:8000099": b"rt-1",    # not its name
        "/fq-name-to-uuid/routing_instance:default-domain:p:gone:gone": b"ri-9",  # absent
    }
    allowed = writers_znodes(new_only, lambda _t, uuid: objects.get(uuid), since)
    assert allowed == set(list(new_only)[:3])
    nodes = NodeRecords()
    differing, set_aside = znode_differences({}, new_only, nodes, allowed)
    assert set_aside == allowed and differing == sorted(list(new_only)[3:])
    # on old too (with another value): a difference, whoever wrote it
    path = next(iter(new_only))
    assert path in znode_differences({path: b"x"}, new_only, nodes, allowed)[0]
