"""Scratch clusters for `issu rehearse`: the demo's services launcher, registered through the
entry point group `issu.scratch_clusters` (the product never imports demo/).

A real Cassandra, ZooKeeper pair and RabbitMQ (vhosts `/` and `/v2`) on 127.<net>.0.x, in a run
directory of their own (`.run/rehearse-<net>` unless given): no sshd, no simulated Contrail.
"""

from __future__ import annotations

from pathlib import Path

from demo.services.launcher import Launcher
from demo.services.plan import default_run_dir
from issu_tui.rehearse import ScratchEndpoints

SCRATCH_SERVICES = ("cassandra", "zk", "rabbit")


class DemoScratchClusters:
    def __init__(self, net: int, run_dir: Path | None = None) -> None:
        self.run_dir = run_dir or default_run_dir("demo", net).with_name(f"rehearse-{net}")
        self.launcher = Launcher(net, profile="demo", run_dir=self.run_dir, ssh_hosts=0)

    def up(self) -> ScratchEndpoints:
        eps = self.launcher.up(only=SCRATCH_SERVICES)
        return ScratchEndpoints(
            cassandra_old=(eps.cassandra_old.host, eps.cassandra_old.port),
            cassandra_new=(eps.cassandra_new.host, eps.cassandra_new.port),
            zk_old=eps.zk_old.hosts, zk_new=eps.zk_new.hosts,
            rabbit_host=eps.rabbit.host, rabbit_port=eps.rabbit.port,
            rabbit_user=eps.rabbit.user, rabbit_password=eps.rabbit.password,
            rabbit_vhost_old=eps.rabbit.vhost_old, rabbit_vhost_new=eps.rabbit.vhost_new,
            where=str(self.run_dir))

    def down(self) -> None:
        self.launcher.down()


def scratch_clusters(net: int, run_dir: Path | None = None) -> DemoScratchClusters:
    """The `issu.scratch_clusters` entry point."""
    return DemoScratchClusters(net, run_dir)
