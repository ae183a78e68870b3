"""zk-sync against the real old and new ZooKeeper servers of the test network."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient

from backends.zookeeper.sync import TXN_MAX_OPS, ZkSyncer, delete_tree, zk_sync
from backends.zookeeper.tree import read_subtree
from demo.services import Endpoints


@pytest.fixture()
def zks(services: Endpoints) -> Iterator[tuple[KazooClient, KazooClient]]:
    old = KazooClient(hosts=services.zk_old.hosts)
    new = KazooClient(hosts=services.zk_new.hosts)
    old.start(timeout=20)
    new.start(timeout=20)
    yield old, new
    old.stop()
    new.stop()


@pytest.fixture()
def prefixes(zks: tuple[KazooClient, KazooClient]) -> Iterator[tuple[str, str]]:
    """Fresh, unique prefixes per test (tests never see each other's znodes)."""
    tag = uuid.uuid4().hex[:8]
    pair = (f"zkt_{tag}_v1", f"zkt_{tag}_v2")
    yield pair
    old, new = zks
    for zk in (old, new):
        for prefix in pair:
            if zk.exists(f"/{prefix}"):
                zk.delete(f"/{prefix}", recursive=True)


def seed_contrail_tree(zk: KazooClient, root: str) -> dict[str, bytes]:
    """A small Contrail-shaped tree: fq-name index, subnets, ID allocators. Returns path->data."""
    nodes: dict[str, bytes] = {
        f"{root}/fq-name-to-uuid": b"",
        f"{root}/api-server": b"",
        f"{root}/api-server/subnets": b"",
        f"{root}/id": b"",
        f"{root}/id/virtual-networks": b"",
        f"{root}/id/security-groups": b"",
        f"{root}/id/security-groups/id": b"",
    }
    for i in range(40):
        fq = f"virtual_network:default-domain:admin:net-{i}"
        nodes[f"{root}/fq-name-to-uuid/{fq}"] = str(uuid.UUID(int=i + 1)).encode()
        # VN ids are allocated as zero-padded indexes whose data is the owner's fq name.
        nodes[f"{root}/id/virtual-networks/{i + 1:010d}"] = f"default-domain:admin:net-{i}".encode()
        nodes[f"{root}/id/security-groups/id/{8000000 + i:010d}"] = f"sg-{i}".encode()
    for net in ("10.0.0.0/24", "10.0.1.0/24"):
        sub = f"{root}/api-server/subnets/default-domain:admin:net-0:{net.replace('/', '_')}"
        nodes[sub] = b""
        for host in range(1, 4):
            nodes[f"{sub}/10.0.0.{host}"] = b"\x00\xffbinary-" + bytes([host])
    for path in sorted(nodes, key=lambda p: p.count("/")):
        zk.create(path, nodes[path], makepath=True)
    return nodes


def dump(zk: KazooClient, root: str) -> dict[str, bytes]:
    tree = read_subtree(zk, root) or {}
    return {rel: n.data for rel, n in tree.items() if not n.ephemeral}


def test_exact_copy_with_prefix_mapping_and_id_allocators(zks, prefixes):
    old, new = zks
    op, np_ = prefixes
    seeded = seed_contrail_tree(old, f"/{op}")

    report = ZkSyncer(old, new, op, np_).run()

    assert report.ok, report.differences
    assert report.verified_nodes == len(seeded)
    for path, data in seeded.items():
        mapped = path.replace(f"/{op}/", f"/{np_}/", 1)
        assert new.get(mapped)[0] == data, mapped
    # ID allocator nodes keep their exact names (the allocated index) and owners.
    assert sorted(new.get_children(f"/{np_}/id/virtual-networks")) == [
        f"{i:010d}" for i in range(1, 41)
    ]
    assert new.get(f"/{np_}/id/security-groups/id/0008000007")[0] == b"sg-7"


def test_ephemerals_skipped_and_foreign_znodes_untouched(zks, prefixes):
    old, new = zks
    op, np_ = prefixes
    seed_contrail_tree(old, f"/{op}")
    old.create(f"/{op}/api-server/lock-holder", b"me", ephemeral=True)
    old.create(f"/{op}/some-other-app/state", b"old-only", makepath=True)
    # On new: another application's znodes beside and under the prefix, stale content inside
    # a copied subtree, and a live session's ephemeral node inside a copied subtree.
    new.create(f"/{np_}/other-app/config", b"keep me", makepath=True)
    new.create(f"/{np_}-sibling/x", b"keep me too", makepath=True)
    new.create(f"/{np_}/id/virtual-networks/0000009999", b"stale", makepath=True)
    new.create(f"/{np_}/fq-name-to-uuid/live-session", b"eph", ephemeral=True, makepath=True)

    try:
        report = ZkSyncer(old, new, op, np_).run()
        assert report.ok, report.differences
        assert report.totals()["ephemerals_skipped"] == 1
        assert new.exists(f"/{np_}/api-server/lock-holder") is None
        assert new.exists(f"/{np_}/some-other-app") is None  # not a configured subtree
        assert new.get(f"/{np_}/other-app/config")[0] == b"keep me"
        assert new.get(f"/{np_}-sibling/x")[0] == b"keep me too"
        assert new.exists(f"/{np_}/id/virtual-networks/0000009999") is None  # stale: removed
        assert new.get(f"/{np_}/fq-name-to-uuid/live-session")[0] == b"eph"
        # old side never written
        assert old.get(f"/{op}/some-other-app/state")[0] == b"old-only"
    finally:
        new.delete(f"/{np_}-sibling", recursive=True)


def test_mismatch_detected_and_nonzero_exit(zks, prefixes, services, tmp_path):
    old, new = zks
    op, np_ = prefixes
    seed_contrail_tree(old, f"/{op}")
    syncer = ZkSyncer(old, new, op, np_)
    assert syncer.run().ok

    # A deep, data-only change and an extra deep node: neither changes first-level names,
    # which is all the original compared.
    new.set(f"/{np_}/id/virtual-networks/0000000003", b"someone-else")
    new.create(f"/{np_}/api-server/subnets/extra/deep", b"x", makepath=True)
    report = syncer.verify()
    kinds = {(d.path, d.kind) for d in report.differences}
    assert ("virtual-networks/0000000003", "different") in kinds
    assert ("subnets/extra", "extra") in kinds
    assert ("subnets/extra/deep", "extra") in kinds
    assert not report.ok

    from click.testing import CliRunner

    from issu_tui.runsync_cli import zk_command

    conf = tmp_path / "issu.conf"
    conf.write_text(
        "[DEFAULTS]\n"
        "old_version = 4.1.0\nnew_version = 5.0.0\n"
        f"old_zookeeper_address_list = {services.zk_old.hosts}\n"
        f"new_zookeeper_address_list = {services.zk_new.hosts}\n"
        f"odb_prefix = {op}\nndb_prefix = {np_}\n"
        f"old_cassandra_address_list = {services.cassandra_old.host}\n"
        f"new_cassandra_address_list = {services.cassandra_new.host}\n"
        f"old_rabbit_address_list = {services.rabbit.host}\n"
        f"new_rabbit_address_list = {services.rabbit.host}\n"
        "new_rabbit_vhost = /v2\n"  # one broker: new on its own vhost (as v2 runs)
    )
    state = ["--state-dir", str(tmp_path / "state")]
    result = CliRunner().invoke(zk_command, ["-c", str(conf), "--verify-only", *state])
    assert result.exit_code != 0, result.output
    assert "0000000003" in result.output
    # A real sync repairs it and exits 0.
    result = CliRunner().invoke(zk_command, ["-c", str(conf), *state])
    assert result.exit_code == 0, result.output
    assert "zk verified" in result.output

    # The original program name and options: `contrail-issu-zk-sync -c issu.conf`.
    new.set(f"/{np_}/id/virtual-networks/0000000004", b"drifted")
    legacy = subprocess.run(
        [sys.executable, "-c", "from issu_tui.cli import legacy_zk_sync; legacy_zk_sync()",
         "--conf_file", str(conf), "--verify-only", *state],
        capture_output=True, text=True, timeout=120)
    assert legacy.returncode == 1, legacy.stdout + legacy.stderr
    assert "0000000004" in legacy.stdout
    legacy = subprocess.run(
        [sys.executable, "-c", "from issu_tui.cli import legacy_zk_sync; legacy_zk_sync()",
         "-c", str(conf), *state], capture_output=True, text=True, timeout=120)
    assert legacy.returncode == 0, legacy.stdout + legacy.stderr
    assert new.get(f"/{np_}/id/virtual-networks/0000000003")[0] == b"default-domain:admin:net-2"


def test_resync_idempotent_and_follows_old(zks, prefixes, services):
    old, new = zks
    op, np_ = prefixes
    seed_contrail_tree(old, f"/{op}")
    first = zk_sync(services.zk_old.hosts, services.zk_new.hosts, op, np_)
    assert first.ok
    before = dump(new, f"/{np_}")

    again = zk_sync(services.zk_old.hosts, services.zk_new.hosts, op, np_)
    assert again.ok
    assert again.totals()["created"] == again.totals()["updated"] == 0
    assert again.totals()["deleted"] == 0
    assert dump(new, f"/{np_}") == before

    # Changes on old (new id, freed id, renamed data) are followed by the next run.
    old.create(f"/{op}/id/virtual-networks/0000000100", b"default-domain:admin:late")
    old.delete(f"/{op}/id/virtual-networks/0000000001")
    old.set(f"/{op}/fq-name-to-uuid/virtual_network:default-domain:admin:net-5", b"u-5b")
    third = zk_sync(services.zk_old.hosts, services.zk_new.hosts, op, np_)
    assert third.ok
    assert (third.totals()["created"], third.totals()["updated"], third.totals()["deleted"]) == (
        1, 1, 1
    )
    assert dump(new, f"/{np_}") == dump(old, f"/{op}")


def test_configured_subtrees_only_and_missing_subtree_fails_unless_allowed(zks, prefixes):
    """Only the configured subtrees are copied; a subtree absent on old is never treated as
    empty (the new side's copy is kept) and fails the run unless allowed by name."""
    old, new = zks
    op, np_ = prefixes
    seed_contrail_tree(old, f"/{op}")
    new.create(f"/{np_}/missing-on-old/kept", b"k", makepath=True)
    report = ZkSyncer(old, new, op, np_, subtrees=["id", "missing-on-old"]).run()
    assert not report.ok
    assert report.missing_on_old == ["missing-on-old"]
    assert not report.differences
    assert new.get(f"/{np_}/missing-on-old/kept")[0] == b"k"
    assert not ZkSyncer(old, new, op, np_, subtrees=["id", "missing-on-old"]).verify().ok

    report = ZkSyncer(old, new, op, np_, subtrees=["id", "missing-on-old"],
                      allow_missing=["missing-on-old"]).run()
    assert report.ok
    assert [s.subtree for s in report.subtrees if s.skipped_missing_on_old] == ["missing-on-old"]
    assert new.exists(f"/{np_}/fq-name-to-uuid") is None  # not configured: not copied
    assert new.get(f"/{np_}/missing-on-old/kept")[0] == b"k"
    assert dump(new, f"/{np_}/id") == dump(old, f"/{op}/id")

    # A nested subtree name maps the same way.
    rep = ZkSyncer(old, new, f"{op}/api-server", f"{np_}/copied", subtrees=["subnets"]).run()
    assert rep.ok
    assert dump(new, f"/{np_}/copied/subnets") == dump(old, f"/{op}/api-server/subnets")


def test_no_prefix_on_old_maps_to_prefixed_new(zks, prefixes):
    """The old cluster without a prefix (subtrees at `/`) into a prefixed new root."""
    old, new = zks
    _, np_ = prefixes
    name = f"zkt-root-{np_}"  # a unique top-level subtree stands in for `/id`
    old.create(f"/{name}/virtual-networks/0000000001", b"vn-1", makepath=True)
    try:
        report = ZkSyncer(old, new, "", np_, subtrees=[name]).run()
        assert report.ok
        assert new.get(f"/{np_}/{name}/virtual-networks/0000000001")[0] == b"vn-1"
    finally:
        old.delete(f"/{name}", recursive=True)


def test_wrong_odb_prefix_exits_1_naming_the_subtree(zks, prefixes, services, tmp_path):
    """A wrong odb_prefix finds none of the subtrees on old: exit 1, each one named; the ID
    allocators are not silently left behind. --allow-missing accepts a named absence."""
    from click.testing import CliRunner

    from issu_tui.runsync_cli import zk_command

    old, new = zks
    op, np_ = prefixes
    seed_contrail_tree(old, f"/{op}")
    conf = tmp_path / "issu.conf"
    conf.write_text(
        "[DEFAULTS]\n"
        "old_version = 4.1.0\nnew_version = 5.0.0\n"
        f"old_zookeeper_address_list = {services.zk_old.hosts}\n"
        f"new_zookeeper_address_list = {services.zk_new.hosts}\n"
        f"odb_prefix = {op}_typo\nndb_prefix = {np_}\n"
        f"old_cassandra_address_list = {services.cassandra_old.host}\n"
        f"new_cassandra_address_list = {services.cassandra_new.host}\n"
        f"old_rabbit_address_list = {services.rabbit.host}\n"
        f"new_rabbit_address_list = {services.rabbit.host}\n"
        "new_rabbit_vhost = /v2\n"  # one broker: new on its own vhost (as v2 runs)
    )
    state = ["--state-dir", str(tmp_path / "state")]
    for extra in ([], ["--verify-only"]):
        result = CliRunner().invoke(zk_command, ["-c", str(conf), *extra, *state])
        assert result.exit_code == 1, result.output
        assert f"/{op}_typo/id missing on old" in result.output
        assert "--allow-missing id" in result.output
    assert new.exists(f"/{np_}/id") is None

    allowed = [a for name in ("fq-name-to-uuid", "api-server", "id")
               for a in ("--allow-missing", name)]
    result = CliRunner().invoke(zk_command, ["-c", str(conf), *allowed, *state])
    assert result.exit_code == 0, result.output
    assert "(allowed)" in result.output


def test_an_invalid_subtree_name_is_refused_before_connecting() -> None:
    """Nothing listens on 127.0.0.1:1: a connection attempt would end in a timeout error,
    not in the name's ValueError."""
    with pytest.raises(ValueError, match=r"'\.\./etc'"):
        zk_sync("127.0.0.1:1", "127.0.0.2:1", subtrees=["id", "../etc"])
    with pytest.raises(ValueError, match="'zookeeper'"):
        zk_sync("127.0.0.1:1", "127.0.0.2:1", allow_missing=iter(["zookeeper"]))


def test_delete_tree_drops_a_deep_tree_over_several_transactions_and_nothing_else(zks, prefixes):
    """The bench's cleanup (and anyone's): more znodes than one multi request holds, on
    several levels, so parents are deleted in later transactions than their children."""
    old, _new = zks
    op, keep = prefixes
    seeded = seed_contrail_tree(old, f"/{op}")
    many = f"/{op}/fq-name-to-uuid/many"
    old.create(many, b"")
    leaves = 2 * TXN_MAX_OPS + 500
    for start in range(0, leaves, 500):
        txn = old.transaction()
        for i in range(start, start + 500):
            txn.create(f"{many}/leaf-{i:05d}", b"x")
        txn.commit()
    seed_contrail_tree(old, f"/{keep}")
    before = dump(old, f"/{keep}")

    # The root, the seeded znodes below it, `many` and its leaves.
    assert delete_tree(old, f"/{op}") == 1 + len(seeded) + 1 + leaves
    assert old.exists(f"/{op}") is None
    assert dump(old, f"/{keep}") == before
    assert delete_tree(old, f"/{op}") == 0
