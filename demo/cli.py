"""`issu demo up|down|status`: the whole demo world on this machine (see docs/demo.md).

Registered with `issu` through the entry-point group `issu.commands` (demo/pyproject.toml):
the product never imports the demo.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from issu_tui.config import ConfigError, check_files, load_config

if TYPE_CHECKING:
    from demo.world import World

EXIT_PROBLEM = 1
EXIT_CONFIG = 2


def _world(net: int, computes: int | None, config: Path | None, **extra: object) -> World:
    from demo.world import DEFAULT_CONFIG, World, WorldOptions

    options = WorldOptions(net=net, computes=computes, config_path=config or DEFAULT_CONFIG)
    for key, value in extra.items():
        if value is not None:
            setattr(options, key, value)
    return World(options)


_net = click.option("--net", type=click.IntRange(1, 254), default=20, show_default=True,
                    help="addresses 127.<net>.x.y")
_config = click.option("--config", "config", type=click.Path(path_type=Path),
                       help="where to write the tool's config (default demo/issu.toml)")


@click.group()
def demo() -> None:
    """The demo world: real services, simulated Contrail v1 and v2, computes over SSH."""


@demo.command()
@_net
@_config
@click.option("--computes", type=click.IntRange(1, 1000),
              help="number of computes (default 12, or as the running world)")
@click.option("--controllers", type=click.IntRange(1, 3),
              help="controller hosts per cluster, each its own address (default 1, or as "
                   "the running world): the first runs api-server, control, analytics-api "
                   "and the writers, the others api-server and the writers (active-backup)")
@click.option("--approach", type=click.Choice(["separate", "rolling", "grow", "stay"]),
              help="build the world for this approach (default separate, or as the running "
                   "world): separate gives each side a Cassandra (2 JVMs); the others put "
                   "old and new on one shared ring of Cassandra nodes, each a database host "
                   "over SSH (new's keyspaces v2_*), for `issu plan --approach X` and `issu "
                   "ring run`: rolling 3 nodes, grow 3 and 2 spares that join (5 JVMs at "
                   "the peak), stay 5. A ring node holds ~560-625 MiB resident (heap 256 "
                   "MiB); on 2 cores the CPU is the limit (docs/demo.md)")
@click.option("--objects", "seed_objects", type=click.IntRange(0, 1_000_000),
              help="objects seeded into v1 on the first up (default 3000)")
@click.option("--rate", "workload_rate", type=click.FloatRange(0, 1000),
              help="workload changes per second on v1 (default 5)")
@click.option("--install-seconds", "install_s", type=click.FloatRange(0, 3600),
              help="how long a compute's package install takes (default 4)")
@click.option("--failure-rate", type=click.FloatRange(0, 1),
              help="chance that a compute's install fails (default 0)")
@click.option("--wait-seed", is_flag=True, default=None,
              help="return only once v1 is seeded (default: seed in the background)")
@click.option("--snapshot", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="v1 starts from this config database snapshot (db_json_exim.py format, "
                   "or `issu db export`'s; .gz or not) instead of seeded tenants: a fresh "
                   "world only")
@click.option("--containers", "modes", flag_value="yes", multiple=True,
              help="each controller service and compute agent in a container (podman, "
                   "runc; images built once from Debian's packages)")
@click.option("--loopback", "modes", flag_value="no", multiple=True,
              help="each host a loopback address with its own directory (no engine)")
@click.option("--containers-if-possible", "modes", flag_value="auto", multiple=True,
              help="containers when the engine works here, else loopback hosts, saying why "
                   "(what `make demo` runs); a running world keeps its mode")
@click.option("--console", "console", is_flag=True,
              help="show the world coming up in the terminal at once, then open the console "
                   "on it (what `make demo` runs)")
def up(net: int, config: Path | None, computes: int | None, controllers: int | None,
       approach: str | None, seed_objects: int | None,
       workload_rate: float | None, install_s: float | None,
       failure_rate: float | None, wait_seed: bool | None, snapshot: Path | None,
       modes: tuple[str, ...], console: bool) -> None:
    """Start (or reuse) every piece and write the tool's config."""
    from backends.snapshot.format import SnapshotError
    from demo.services.base import ServiceError
    from demo.world import WorldError

    if len(set(modes)) > 1:
        raise click.UsageError("--containers, --loopback and --containers-if-possible "
                               "exclude each other: give one")
    containers = modes[0] if modes else None
    if snapshot is not None and (seed_objects or wait_seed):
        raise click.UsageError("--snapshot is v1's data: --objects and --wait-seed do not go "
                               "with it")
    world = _world(net, computes, config, seed_objects=seed_objects,
                   workload_rate=workload_rate, install_s=install_s, failure_rate=failure_rate,
                   wait_seed=wait_seed, snapshot=snapshot, controllers=controllers,
                   approach=approach)
    world.opts.containers = _containers_mode(world, _loopback_if_needed(world, containers))
    if console:
        _up_in_console(world)
        return
    try:
        world.up(lambda msg: click.echo(f"  {msg}"))
        path = world.config_path
        cfg = load_config(path)
        problems = check_files(cfg)
    except SnapshotError as exc:
        click.echo(f"issu demo up: {exc} (nothing started)", err=True)
        sys.exit(EXIT_CONFIG)
    except ConfigError as exc:
        click.echo(f"issu demo up: the generated config is invalid:\n{exc}", err=True)
        sys.exit(EXIT_CONFIG)
    except (WorldError, ServiceError, RuntimeError, OSError) as exc:
        # The message says which piece failed and where its log is.
        click.echo(f"issu demo up: {exc}", err=True)
        sys.exit(EXIT_PROBLEM)
    if problems:
        click.echo("issu demo up: " + "; ".join(problems), err=True)
        sys.exit(EXIT_CONFIG)
    click.echo(world.how_to_connect())


def _loopback_if_needed(world: World, asked: str | None) -> str | None:
    """The mode flag for a world that runs on loopback hosts only (a ring approach, 2..3
    controllers): decided before anything starts, so that a world stopped earlier in
    containers mode does not make it fail halfway up; --containers (or --snapshot on a
    ring) refused. Other worlds: `asked` unchanged."""
    layout = world.ring()
    ring = layout is not None
    what = (f"--approach {layout.approach}" if layout is not None
            else "--controllers 2..3" if world.controller_count() > 1 else None)
    if what is None:
        return asked
    if asked == "yes":
        raise click.UsageError(f"{what} runs on loopback hosts: drop --containers (or give "
                               "--loopback)")
    if ring and world.opts.snapshot is not None:
        raise click.UsageError(f"{what} runs on seeded tenants: drop --snapshot")
    if asked is None and world.running_mode() is None:
        return "no"
    return asked


def _containers_mode(world: World, asked: str | None) -> bool | None:
    """--containers / --loopback as asked; --containers-if-possible: the running world's
    mode, else containers when the engine works and the images are there or can be built,
    else loopback hosts with the reason on one line."""
    if asked != "auto":
        return {"yes": True, "no": False}.get(asked or "")
    running = world.running_mode()
    if running is not None:
        return running
    if (world.opts.controllers or 1) > 1:
        click.echo("issu demo up: loopback hosts, not containers (--controllers 2..3)")
        return False
    if world.ring() is not None:
        click.echo("issu demo up: loopback hosts, not containers (--approach on a ring)")
        return False
    from demo.containers.engine import EngineUnavailable, engine_problem
    from demo.containers.images import ensure_images

    problem = engine_problem()
    if problem is None:
        try:
            ensure_images()
        except (EngineUnavailable, OSError) as exc:
            problem = f"the images cannot be built: {exc}"
    if problem:
        click.echo(f"issu demo up: loopback hosts, not containers ({problem})")
        return False
    return True


def _up_in_console(world: World) -> None:
    """The world coming up on a screen of its own (demo/startup.py), then the console."""
    from demo.startup import WorldStartup

    app = WorldStartup(world)
    result = app.run()
    if result != "ready":
        if app.error:
            click.echo(f"issu demo up: {app.error}", err=True)
        sys.exit(EXIT_PROBLEM)
    try:
        problems = check_files(load_config(world.config_path))
    except ConfigError as exc:
        click.echo(f"issu demo up: the generated config is invalid:\n{exc}", err=True)
        sys.exit(EXIT_CONFIG)
    if problems:
        click.echo("issu demo up: " + "; ".join(problems), err=True)
        sys.exit(EXIT_CONFIG)
    from issu_tui.tui_cli import run_console

    sys.exit(run_console(world.config_path,
                         greeting=ended_upgrade_hint(world.config_path, world.opts.net)))


def ended_upgrade_hint(config_path: Path, net: int) -> str | None:
    """What to tell when the console opens on a demo whose upgrade has ended: the console
    shows that upgrade (its journal), and a second `make demo` would otherwise look stuck."""
    from demo.ended import ended_phase, new_demo

    try:
        phase = ended_phase(load_config(config_path).state_dir)
    except (ConfigError, OSError):
        return None  # the console itself says what is wrong with it
    if phase is None:
        return None
    return (f"this demo's upgrade has ended (phase {phase}): the console shows it. "
            f"For a new one: quit (q), then {new_demo(net)}")


@demo.command()
@_net
def down(net: int) -> None:
    """Stop every process the demo started; files stay in the run directory."""
    from demo.console_exit import stop_daemons
    from demo.services.base import ServiceError

    world = _world(net, None, None)
    left = stop_daemons(world, click.echo)
    if left:
        click.echo(f"issu demo down: the daemon (pid {' '.join(map(str, left))}) has not "
                   "stopped yet; the world goes down under it", err=True)
    try:
        world.down(lambda msg: click.echo(msg))
    except (ServiceError, RuntimeError, OSError) as exc:
        click.echo(f"issu demo down: {exc}", err=True)
        sys.exit(EXIT_PROBLEM)


@demo.command()
@_net
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def status(net: int, as_json: bool) -> None:
    """Show each piece of the demo world; exit 1 unless all run (or are off by choice)."""
    world = _world(net, None, None)
    pieces = world.status()
    if as_json:
        click.echo(json.dumps([p.__dict__ for p in pieces], indent=2))
    else:
        for p in pieces:
            click.echo(f"{p.name:<16} {p.state:<8} {p.detail}")
    healthy = {"ready", "running", "done", "off"}
    sys.exit(0 if all(p.state in healthy for p in pieces) else EXIT_PROBLEM)
