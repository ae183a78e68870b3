"""The demo's writers create their keyspaces at start while the others do (three processes,
a ring of several nodes): a CREATE TABLE that reaches Cassandra before its keyspace is there
waits for it and succeeds, instead of killing the writer (svc-monitor died at start in a
rolling world: "Keyspace 'useragent' doesn't exist"). Real Cassandra."""

from __future__ import annotations

import threading
import time
import uuid

from cassandra import InvalidRequest
from cassandra.cluster import Cluster

from demo.controller.writers import schema_change
from demo.services import Endpoints


def test_a_table_whose_keyspace_comes_a_moment_later_is_created(services: Endpoints) -> None:
    keyspace = f"writers_{uuid.uuid4().hex[:8]}"
    table = f'CREATE TABLE IF NOT EXISTS "{keyspace}".t (key text PRIMARY KEY, value text)'
    cluster = Cluster([services.cassandra_old.host], port=services.cassandra_old.port,
                      protocol_version=5)
    session = cluster.connect()
    try:
        try:
            session.execute(table)
            raise AssertionError("the keyspace was there already")
        except InvalidRequest as exc:
            assert "doesn't exist" in str(exc)  # what killed svc-monitor

        def create_keyspace() -> None:
            time.sleep(2)
            session.execute(f'CREATE KEYSPACE "{keyspace}" WITH replication = '
                            "{'class': 'SimpleStrategy', 'replication_factor': 1}")

        other_writer = threading.Thread(target=create_keyspace)
        other_writer.start()
        began = time.monotonic()
        schema_change(session, cluster, table, timeout_s=60)
        other_writer.join()
        assert time.monotonic() - began >= 1.5  # it waited for the keyspace
        assert "t" in cluster.metadata.keyspaces[keyspace].tables
        session.execute(f'DROP KEYSPACE "{keyspace}"')
    finally:
        cluster.shutdown()
