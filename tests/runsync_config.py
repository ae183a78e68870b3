"""The issu.toml of a run-sync started as its own process against the test services (old and
new Cassandra under their own prefixes, the two vhosts of one broker): one template for
tests/test_runsync.py and bench/bench_runsync.py, written by the product's TOML writer."""

from __future__ import annotations

from pathlib import Path

from demo.services.endpoints import Endpoints
from issu_tui.config import to_toml


def runsync_toml(endpoints: Endpoints, *, state_dir: Path, queue: str, old_prefix: str,
                 new_prefix: str, password_env: str, **sync: object) -> str:
    """`password_env`: the variable the RabbitMQ password is read from (never written in
    the file); `sync`: keys of the [sync] table beside the queue and a metrics endpoint on
    a free loopback port."""
    r = endpoints.rabbit

    def side(which: str, version: str) -> dict[str, object]:
        old = which == "old"
        cassandra = endpoints.cassandra_old if old else endpoints.cassandra_new
        zookeeper = endpoints.zk_old if old else endpoints.zk_new
        return {
            "name": which, "version": version,
            "cassandra": {"hosts": [cassandra.host], "port": cassandra.port,
                          "prefix": old_prefix if old else new_prefix},
            "zookeeper": {"hosts": [zookeeper.hosts]},
            "rabbit": {"hosts": [r.host], "port": r.port, "user": r.user,
                       "password": f"env:{password_env}",
                       "vhost": r.vhost_old if old else r.vhost_new},
        }

    return to_toml({
        "state_dir": str(state_dir),
        "sync": {"queue_name": queue, "metrics_listen": "127.0.0.1:0", **sync},
        "old": side("old", "4.1.0"),
        "new": side("new", "5.0.0"),
    })
