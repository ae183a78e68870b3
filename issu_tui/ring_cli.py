"""`issu ring status|guard`: the live Cassandra ring and ZooKeeper ensemble of one cluster, and
the quorum guard a step that stops nodes must pass.

Exit codes: 0 the step keeps quorum everywhere, 1 refused (each refusal names the keyspace or
ensemble, the nodes and the step) or a service unreachable, 2 bad usage or configuration.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import click

from issu_tui.cli_common import load_or_exit

if TYPE_CHECKING:
    from backends.cassandra.connection import CassandraSide

EXIT_PROBLEM = 1


def _target(config_path: Path | None, cluster: str, cassandra: str | None,
            zookeeper: str | None) -> tuple[CassandraSide | None, list[str]]:
    from backends.cassandra.connection import CassandraSide

    if cassandra or zookeeper:
        side = CassandraSide(cluster, (cassandra,)) if cassandra else None
        return side, [h for h in (zookeeper or "").split(",") if h]
    from issu_tui.sides import cassandra_side

    config = load_or_exit(config_path or Path("issu.toml"))
    if cluster == "old":
        return cassandra_side(config, "old"), list(config.old.zookeeper.hosts)
    return cassandra_side(config, "new"), list(config.new.zookeeper.hosts)


_target_options = [
    click.option("-c", "--config", "config_path", type=click.Path(path_type=Path),
                 help="issu.toml (or issu.conf); default ./issu.toml"),
    click.option("--cluster", type=click.Choice(["old", "new"]), default="old",
                 show_default=True, help="which side of the config"),
    click.option("--cassandra", default=None, metavar="HOST[:PORT]",
                 help="a contact point instead of the config"),
    click.option("--zookeeper", default=None, metavar="HOST:PORT,...",
                 help="the ensemble's members instead of the config"),
]


def _with_target(fn: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(_target_options):
        fn = option(fn)
    return fn


@click.group()
def ring() -> None:
    """The live Cassandra ring and ZooKeeper ensemble, and the quorum guard."""


@ring.command("status")
@_with_target
@click.option("--keyspace", "keyspaces", multiple=True, help="only these (default: all "
              "but system*)")
@click.option("--json", "as_json", is_flag=True)
def status_cmd(config_path: Path | None, cluster: str, cassandra: str | None,
               zookeeper: str | None, keyspaces: tuple[str, ...], as_json: bool) -> None:
    """Nodes (up or down), keyspaces with their replication, ensemble members' modes."""
    from backends.cassandra.connection import CassandraUnavailable, connect
    from backends.cassandra.ring import read_ring
    from backends.zookeeper.ensemble import read_ensemble

    side, zk_hosts = _target(config_path, cluster, cassandra, zookeeper)
    data: dict[str, object] = {}
    try:
        if side is not None:
            with connect(side, request_timeout=15) as conn:
                view = read_ring(conn.cluster, conn.session, keyspaces or None)
            data["cassandra"] = {
                "cluster_name": view.cluster_name,
                "nodes": [{"address": n.address, "up": n.up, "tokens": n.tokens}
                          for n in view.nodes],
                "keyspaces": [{"name": k.name, "strategy": k.strategy, "factor": k.factor}
                              for k in view.keyspaces]}
    except (CassandraUnavailable, KeyError) as exc:
        click.echo(f"issu ring status: {exc}", err=True)
        sys.exit(EXIT_PROBLEM)
    if zk_hosts:
        data["zookeeper"] = [{"member": f"{m.host}:{m.port}", "mode": m.mode}
                             for m in read_ensemble(zk_hosts).members]
    if as_json:
        click.echo(json.dumps(data))
        return
    _print_status(data)


def _print_status(data: dict[str, object]) -> None:
    cass = data.get("cassandra")
    if isinstance(cass, dict):
        click.echo(f"Cassandra ring {cass['cluster_name']!r}")
        for node in cass["nodes"]:
            click.echo(f"  {'UP  ' if node['up'] else 'DOWN'} {node['address']}"
                       f"  tokens {node['tokens']}")
        for ks in cass["keyspaces"]:
            click.echo(f"  keyspace {ks['name']}: {ks['strategy']} RF {ks['factor']}")
    members = data.get("zookeeper")
    if isinstance(members, list):
        click.echo("ZooKeeper ensemble")
        for member in members:
            click.echo(f"  {member['member']}: {member['mode']}")


@ring.command("guard")
@_with_target
@click.option("--stop", "stopping", multiple=True, required=True, metavar="ADDRESS",
              help="a node the step stops (repeat for several)")
@click.option("--step", default="stop nodes", show_default=True,
              help="the step's name, for the message")
@click.option("--min-replicas", type=click.IntRange(min=1), default=None,
              help="require this many live replicas per range (stricter than quorum)")
@click.option("--keyspace", "keyspaces", multiple=True, help="only these (default: all "
              "but system*)")
@click.option("--no-zookeeper", is_flag=True, help="check the Cassandra ring only")
@click.option("--rabbit-status", type=click.File("r"), default=None, metavar="FILE",
              help="`rabbitmqctl cluster_status --formatter json` output ('-': stdin): "
                   "check the RabbitMQ cluster's majority too")
@click.option("--json", "as_json", is_flag=True)
def guard_cmd(config_path: Path | None, cluster: str, cassandra: str | None,
              zookeeper: str | None, stopping: tuple[str, ...], step: str,
              min_replicas: int | None, keyspaces: tuple[str, ...], no_zookeeper: bool,
              rabbit_status: TextIO | None, as_json: bool) -> None:
    """Would stopping these nodes keep every keyspace and the ensemble at quorum? Exit 1
    and the reasons when not."""
    from backends.cassandra.connection import CassandraUnavailable
    from backends.rabbit_cluster import RabbitStatusError, parse_cluster_status
    from issu_tui.orchestrator.quorum import combine, guard_rabbit, live_guard

    side, zk_hosts = _target(config_path, cluster, cassandra, zookeeper)
    try:
        result = live_guard(side, [] if no_zookeeper else zk_hosts, step, stopping,
                            min_replicas=min_replicas, keyspaces=keyspaces or None)
    except (CassandraUnavailable, KeyError, ValueError) as exc:
        click.echo(f"issu ring guard: {exc}", err=True)
        sys.exit(EXIT_PROBLEM)
    if rabbit_status is not None:
        try:
            rabbit = parse_cluster_status(rabbit_status.read())
        except RabbitStatusError as exc:
            click.echo(f"issu ring guard: {rabbit_status.name}: {exc}", err=True)
            sys.exit(2)
        result = combine(result, guard_rabbit(rabbit, step, stopping))
    if as_json:
        click.echo(json.dumps(result.as_dict()))
    else:
        for line in result.checked:
            click.echo(f"checked: {line}")
        for refusal in result.refusals:
            click.echo(str(refusal), err=True)
        if result.ok:
            click.echo(f"step {step!r} keeps quorum: stopping {', '.join(result.stopping)}")
    sys.exit(0 if result.ok else EXIT_PROBLEM)


@ring.command("run")
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path),
              default=Path("issu.toml"), show_default=True)
@click.option("--approach", type=click.Choice(["grow", "stay", "rolling"]), required=True)
@click.option("--when", type=click.Choice(["plan", "computes", "done"]), required=True,
              help="the phase whose ring steps to run (as `issu plan` lists them)")
@click.option("--nodetool", "nodetool_cmd", default=None,
              help="how a database host runs nodetool (e.g. 'docker exec cassandra "
                   "nodetool'); default: the config's ring.nodetool, else `nodetool`")
@click.option("--min-replicas", type=click.IntRange(min=1), default=None)
@click.option("--timeout", "timeout_s", type=click.IntRange(min=1), default=3600,
              show_default=True, metavar="SECONDS",
              help="the longest a step (join, repair, decommission) may take; after a "
                   "timeout a re-run waits for what Cassandra still does")
@click.option("--json", "as_json", is_flag=True, help="machine-readable result")
@click.option("--no-wait", is_flag=True, help="add the intent and return (a daemon runs it)")
def run_cmd(config_path: Path, approach: str, when: str, nodetool_cmd: str | None,
            min_replicas: int | None, timeout_s: int, as_json: bool, no_wait: bool) -> None:
    """Run the approach's ring steps of one phase: the guard before each step that stops a
    node, the step (nodetool over SSH, controller profiles), `nodetool status` after it.
    An intent the executor runs (here, or the daemon's when one runs); each finished step
    is marked in the journal and a re-run continues. Exit 1 when the guard refuses a step
    or a step fails (what ran stays marked)."""
    from issu_tui.intent_submit import submit
    from issu_tui.orchestrator.approaches import config_ring_steps
    from issu_tui.orchestrator.ringplan import RingPlanError

    config = load_or_exit(config_path)
    if nodetool_cmd is not None:
        from issu_tui.config import nodetool_argv

        try:
            nodetool_argv(nodetool_cmd)
        except ValueError as exc:
            click.echo(f"issu ring run: --nodetool: {exc}", err=True)
            sys.exit(2)
    try:
        config_ring_steps(config, approach)
    except RingPlanError as exc:
        click.echo(f"{config_path}: {exc}", err=True)
        sys.exit(2)
    submit(config_path, "ring", {"approach": approach, "when": when, "nodetool": nodetool_cmd,
                                 "min_replicas": min_replicas, "timeout_s": timeout_s},
           as_json=as_json, no_wait=no_wait, timeout=None)
