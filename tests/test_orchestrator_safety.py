"""Orchestrator safety guards against the real services (no demo world): abort
--drop-new-data never drops old's data, whatever the host strings say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cassandra.cluster import Cluster
from kazoo.client import KazooClient

from demo.services import Endpoints
from issu_tui.config import IssuConfig
from issu_tui.journal import Journal
from issu_tui.orchestrator.abort import drop_new
from issu_tui.orchestrator.context import Context, OrchestratorError

pytestmark = pytest.mark.timeout(300)


def config_for(services: Endpoints, state_dir: Path) -> IssuConfig:
    def side(name: str, version: str) -> dict[str, Any]:
        old = name == "old"
        cass = services.cassandra_old if old else services.cassandra_new
        zk = services.zk_old if old else services.zk_new
        rabbit = services.rabbit
        return {"name": name, "version": version,
                "cassandra": {"hosts": [cass.host], "port": cass.port, "prefix": "safety"},
                "zookeeper": {"hosts": [zk.hosts], "prefix": "safety"},
                "rabbit": {"hosts": [rabbit.host], "port": rabbit.port, "user": rabbit.user,
                           "password": rabbit.password,
                           "vhost": rabbit.vhost_old if old else rabbit.vhost_new}}

    return IssuConfig.model_validate({
        "state_dir": str(state_dir), "old": side("old", "4.1.0"), "new": side("new", "5.0.0"),
        "sync": {"keyspaces": ["config_db_uuid"]}})


def new_pointing_at_old(config: IssuConfig) -> IssuConfig:
    """new's Cassandra and ZooKeeper are old's, same prefix. Config validation refuses the
    obvious spellings of this; an alias, a VIP or a DNS name would not be caught there."""
    new = config.new.model_copy(update={"cassandra": config.old.cassandra,
                                        "zookeeper": config.old.zookeeper})
    return config.model_copy(update={"new": new})


def _ctx(config: IssuConfig, tmp_path: Path) -> Context:
    return Context(config=config, config_path=tmp_path / "issu.toml",
                   journal=Journal.open(tmp_path / "state"))


def _old_data(services: Endpoints) -> tuple[Cluster, KazooClient]:
    """old's config_db_uuid (prefix safety) and ZooKeeper /safety/id, as a cluster would hold."""
    hp = services.cassandra_old
    cluster = Cluster([hp.host], port=hp.port)
    session = cluster.connect()
    session.execute("CREATE KEYSPACE IF NOT EXISTS safety_config_db_uuid WITH replication = "
                    "{'class': 'SimpleStrategy', 'replication_factor': 1}")
    zk = KazooClient(hosts=services.zk_old.hosts)
    zk.start(timeout=15)
    zk.ensure_path("/safety/id/bgp/route-targets")
    return cluster, zk


def _keyspaces(cluster: Cluster) -> set[str]:
    return {r[0] for r in cluster.connect().execute(
        "SELECT keyspace_name FROM system_schema.keyspaces")}


def test_drop_new_refuses_when_new_is_old(services: Endpoints, tmp_path: Path) -> None:
    cluster, zk = _old_data(services)
    try:
        config = new_pointing_at_old(config_for(services, tmp_path / "state"))
        ctx = _ctx(config, tmp_path)
        with pytest.raises(OrchestratorError, match="refusing to drop safety_config_db_uuid"):
            drop_new(ctx)
        assert "safety_config_db_uuid" in _keyspaces(cluster)
        assert zk.exists("/safety/id/bgp/route-targets") is not None

        # Cassandra really separate, ZooKeeper still old's with the same root: refused too,
        # and nothing at all is dropped (checks come before any drop)
        real = config_for(services, tmp_path / "state")
        zk_only = real.model_copy(update={"new": real.new.model_copy(
            update={"zookeeper": real.old.zookeeper})})
        with pytest.raises(OrchestratorError, match="old's ensemble"):
            drop_new(_ctx(zk_only, tmp_path))
        assert zk.exists("/safety/id/bgp/route-targets") is not None
        assert "safety_config_db_uuid" in _keyspaces(cluster)
        ctx.journal.close()
    finally:
        zk.stop()
        zk.close()
        cluster.shutdown()


def test_drop_new_drops_only_new(services: Endpoints, tmp_path: Path) -> None:
    cluster, zk = _old_data(services)
    hp = services.cassandra_new
    new_cluster = Cluster([hp.host], port=hp.port)
    new_zk = KazooClient(hosts=services.zk_new.hosts)
    new_zk.start(timeout=15)
    try:
        new_cluster.connect().execute(
            "CREATE KEYSPACE IF NOT EXISTS safety_config_db_uuid WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}")
        new_zk.ensure_path("/safety/id/bgp")
        ctx = _ctx(config_for(services, tmp_path / "state"), tmp_path)
        message = drop_new(ctx)
        assert "safety_config_db_uuid" in message and "/safety/id" in message
        assert "safety_config_db_uuid" not in _keyspaces(new_cluster)
        assert new_zk.exists("/safety/id") is None
        assert "safety_config_db_uuid" in _keyspaces(cluster)
        assert zk.exists("/safety/id/bgp/route-targets") is not None
        ctx.journal.close()
    finally:
        for client in (zk, new_zk):
            client.stop()
            client.close()
        cluster.shutdown()
        new_cluster.shutdown()
