"""The `issu` command line.

Subcommands live in their own modules and are imported only when used, so `issu --help`
and `issu status` start fast and do not load the Cassandra driver or Textual.

Where a command comes from:
- BUILTIN_COMMANDS: name -> a function importing the command's module and returning its
  click command or group (add a line and a three-line loader for a new one);
- the orchestrator's commands (issu_tui/orch_cli.py `register`), loaded together;
- COMMAND_ENTRY_POINTS: commands other distributions register under the entry-point group
  `issu.commands` (`name = "module:command"`), as the demo does (demo/pyproject.toml).
  A built-in command of the same name wins.

Exit codes shared by every command: 0 success, 1 the operation found a problem
(differences, failed computes, refused preflight), 2 bad configuration or usage,
3 the journal is locked by another executor.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import click

from backends import import_kombu_whole
from backends.versions import parse_version
from issu_tui.cli_common import load_or_exit
from issu_tui.config import (
    ConfigError,
    check_controllers,
    check_files,
    config_as_dict,
    generate_from_api_confs,
    ini_to_dict,
    ini_versions_missing,
    load_config,
    read_config_text,
    resolve_ini_versions,
    to_toml,
    validate_config,
)

EXIT_PROBLEM = 1
EXIT_CONFIG = 2
EXIT_LOCKED = 3
COMMAND_ENTRY_POINTS = "issu.commands"


def _sync() -> click.Command:
    # run-sync, zk-sync and cleanup-queues live in runsync_cli and join the `sync` group
    from issu_tui.runsync_cli import cleanup_queues, run, zk
    from issu_tui.sync_cli import sync

    for name, command in (("run", run), ("zk", zk), ("cleanup-queues", cleanup_queues)):
        sync.add_command(command, name)
    return sync


def _tui() -> click.Command:
    from issu_tui.tui_cli import tui

    return tui


def _db() -> click.Command:
    from issu_tui.db_cli import db

    return db


def _rehearse() -> click.Command:
    from issu_tui.rehearse_cli import rehearse

    return rehearse


def _ring() -> click.Command:
    from issu_tui.ring_cli import ring

    return ring


def _orchestrator(group: click.Group) -> None:
    from issu_tui.orch_cli import register

    register(group)


BUILTIN_COMMANDS: dict[str, Callable[[], click.Command]] = {
    "sync": _sync, "tui": _tui, "db": _db, "rehearse": _rehearse, "ring": _ring}


@functools.cache
def _plugins() -> dict[str, EntryPoint]:
    found = {ep.name: ep for ep in entry_points(group=COMMAND_ENTRY_POINTS)}
    return {name: ep for name, ep in found.items() if name not in BUILTIN_COMMANDS}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_orchestrator()
        return sorted(set(self.commands) | set(BUILTIN_COMMANDS) | set(_plugins()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in BUILTIN_COMMANDS:
            self.add_command(BUILTIN_COMMANDS[cmd_name](), cmd_name)
        if cmd_name not in self.commands:
            self._load_orchestrator()
        if cmd_name not in self.commands:
            plugin = _plugins().get(cmd_name)
            if plugin is not None:
                command = _load_plugin(plugin)
                if command is not None:
                    self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)

    def _load_orchestrator(self) -> None:
        if getattr(self, "_orchestrator_loaded", False):
            return
        self._orchestrator_loaded = True
        _orchestrator(self)


def _load_plugin(plugin: EntryPoint) -> click.Command | None:
    """The entry point's click command; None (and why, on stderr) when it cannot be loaded,
    so one broken plugin does not take `issu --help` down with it."""
    where = f"{plugin.value} ({plugin.dist.name})" if plugin.dist else plugin.value
    try:
        command = plugin.load()
    except Exception as exc:
        click.echo(f"issu: command {plugin.name!r} from {where} cannot be loaded: "
                   f"{type(exc).__name__}: {exc}", err=True)
        return None
    if not isinstance(command, click.Command):
        click.echo(f"issu: command {plugin.name!r} from {where} is not a click command",
                   err=True)
        return None
    return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="issu")
def cli() -> None:
    """In-Service Software Upgrade of a Contrail / Tungsten Fabric controller."""


# ----------------------------------------------------------------------------- config


@cli.group()
def config() -> None:
    """Check, show, convert and generate the configuration."""


config_option = click.option(
    "-c", "--config", "config_path", type=click.Path(path_type=Path), default=Path("issu.toml"),
    show_default=True, help="issu.toml, or the original issu.conf")


@config.command("check")
@config_option
@click.option("--northbound", "northbound_file", type=click.Path(path_type=Path),
              default=None, help="the northbound clients file (default: northbound.toml "
              "beside the config): each client's host must be a controller host with role "
              "northbound")
@click.option("--json", "as_json", is_flag=True, help="machine-readable result")
def config_check(config_path: Path, northbound_file: Path | None, as_json: bool) -> None:
    """Validate the configuration; every problem names the file and the key. Exit 2 if broken."""
    from issu_tui.orchestrator.northbound import inventory_problems

    try:
        cfg = load_config(config_path)
        problems = check_files(cfg) + check_controllers(cfg) + inventory_problems(
            cfg, northbound_file or config_path.parent / "northbound.toml")
    except ConfigError as exc:
        problems = exc.problems
    if as_json:
        click.echo(json.dumps({"file": str(config_path), "ok": not problems,
                               "problems": problems}))
    else:
        for problem in problems:
            click.echo(f"{config_path}: {problem}", err=True)
        if not problems:
            click.echo(f"{config_path}: ok")
    sys.exit(EXIT_CONFIG if problems else 0)


@config.command("show")
@config_option
@click.option("--json", "as_json", is_flag=True)
def config_show(config_path: Path, as_json: bool) -> None:
    """Print the effective configuration with secrets masked."""
    cfg = load_or_exit(config_path)
    data = config_as_dict(cfg, mask_secrets=True)
    click.echo(json.dumps(data, indent=2) if as_json else to_toml(data), nl=not as_json)


@config.command("convert")
@click.argument("ini_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="write here instead of stdout (refuses to overwrite)")
@click.option("--old-version", default=None,
              help="the release old runs (required when the file sets neither old_version "
              "nor old_analytics_url)")
@click.option("--new-version", default=None,
              help="the release new runs (required when the file sets neither new_version "
              "nor new_analytics_url)")
def config_convert(ini_path: Path, output: Path | None, old_version: str | None,
                   new_version: str | None) -> None:
    """Convert the original issu.conf ([DEFAULTS]) into issu.toml.

    Secrets are carried over as written; prefer replacing them by env:VAR or file:/path.
    The versions are never assumed: the original file has none, so give them, or set
    old_analytics_url / new_analytics_url in the file and they are read from the build_info
    of each cluster's config and control nodes (preflight then checks them against what the
    controllers run).
    """
    given = {"old_version": old_version, "new_version": new_version}
    try:
        text = read_config_text(ini_path)
        data = ini_to_dict(ini_path, text)
        missing = [k for k in ini_versions_missing(ini_path, text) if not given[k]
                   and not data[k.split("_")[0]].get("analytics")]
        if missing:
            raise ConfigError(ini_path, [
                f"DEFAULTS.{key}: not set: give --{key.replace('_', '-')} X.Y.Z, the release "
                f"{key.split('_')[0]} runs (the package version of contrail-lib, or the "
                "image tag); issu never assumes one" for key in missing])
        for key, value in given.items():
            if value:
                try:
                    parse_version(value)
                except ValueError as exc:
                    raise ConfigError(ini_path, [f"--{key.replace('_', '-')}: {exc}"]) from None
                data[key.split("_")[0]]["version"] = value
        resolve_ini_versions(ini_path, data)  # the rest, from the clusters' analytics
        for side in ("old", "new"):
            try:
                parse_version(data[side]["version"])
            except ValueError as exc:  # the file's own value (a given one is checked above)
                raise ConfigError(ini_path, [f"DEFAULTS.{side}_version: {exc}"]) from None
        if parse_version(data["new"]["version"]) <= parse_version(data["old"]["version"]):
            raise ConfigError(ini_path, [f"new version {data['new']['version']} must be higher "
                                         f"than old version {data['old']['version']}"])
        validate_config(ini_path, copy.deepcopy(data))  # the rest, before writing anything
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"{exc.path}: {problem}", err=True)
        sys.exit(EXIT_CONFIG)
    data.pop("source", None)
    _write_output(to_toml(data), output)


@config.command("generate")
@click.option("--old-api-conf", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="the old cluster's contrail-api.conf")
@click.option("--new-api-conf", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="the new cluster's contrail-api.conf")
@click.option("--old-version", default=None,
              help="the release old runs (default: read from old's analytics, with "
              "--from-api-servers)")
@click.option("--new-version", default=None, help="the release new runs (likewise)")
@click.option("--state-dir", type=click.Path(path_type=Path), default=Path("/var/lib/issu"),
              show_default=True)
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None)
@click.option("--ssh-key", type=click.Path(path_type=Path), default=None,
              help="also list the controller hosts the confs name ([[old|new.controllers]]), "
              "reached with this key")
@click.option("--known-hosts", type=click.Path(path_type=Path), default=None,
              help="with --ssh-key: the known_hosts holding their host keys "
              "(default: beside the key)")
@click.option("--controller-profile", default="systemd", show_default=True,
              help="with --ssh-key: their controller profile")
@click.option("--from-api-servers", is_flag=True,
              help="also read both api-servers' node records (config-node, analytics-node, "
              "database-node, control nodes' bgp-routers): control nodes, analytics URL, "
              "controller roles, and the versions from analytics")
@click.option("--old-api-token-file", type=click.Path(exists=True, dir_okay=False,
                                                      path_type=Path), default=None,
              help="with --from-api-servers: the old api-server's admin token")
@click.option("--new-api-token-file", type=click.Path(exists=True, dir_okay=False,
                                                      path_type=Path), default=None,
              help="with --from-api-servers: the new api-server's admin token")
def config_generate(old_api_conf: Path, new_api_conf: Path, old_version: str | None,
                    new_version: str | None, state_dir: Path, output: Path | None,
                    ssh_key: Path | None, known_hosts: Path | None,
                    controller_profile: str, from_api_servers: bool,
                    old_api_token_file: Path | None, new_api_token_file: Path | None) -> None:
    """Build issu.toml from both clusters' api-server configs, as the original orchestrators did.

    RabbitMQ passwords are not copied: they are read from ISSU_OLD_RABBIT_PASSWORD and
    ISSU_NEW_RABBIT_PASSWORD at run time. With --ssh-key, the controller hosts the confs
    name are listed with their roles (config, database); with --from-api-servers, also the
    hosts of both clusters' node records (control, analytics) and, with role northbound, the
    hosts their analytics say run kube-manager or the vCenter plugin. `issu config check` then
    names every role still without a host, and every northbound host northbound.toml needs.
    """
    from issu_tui.config import InventorySsh

    inventory = None
    if ssh_key is not None:
        inventory = InventorySsh(ssh_key, known_hosts or ssh_key.parent / "known_hosts",
                                 controller_profile)
    elif known_hosts is not None:
        click.echo("--known-hosts needs --ssh-key", err=True)
        sys.exit(EXIT_CONFIG)
    if not from_api_servers and (old_api_token_file or new_api_token_file):
        click.echo("--old/new-api-token-file need --from-api-servers", err=True)
        sys.exit(EXIT_CONFIG)
    versions = {"old": old_version, "new": new_version}
    for side, given in versions.items():
        if given is None and not from_api_servers:
            click.echo(f"--{side}-version: required (or --from-api-servers to read it from "
                       f"{side}'s analytics)", err=True)
            sys.exit(EXIT_CONFIG)
        if given is not None:
            try:
                parse_version(given)
            except ValueError as exc:
                click.echo(f"--{side}-version: {exc}", err=True)
                sys.exit(EXIT_CONFIG)
    try:
        data = generate_from_api_confs(old_api_conf, new_api_conf, old_version, new_version,
                                       state_dir, inventory)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"{exc.path}: {problem}", err=True)
        sys.exit(EXIT_CONFIG)
    if from_api_servers:
        from issu_tui.generate_nodes import fill_from_api_servers

        problems = fill_from_api_servers(
            data, {"old": old_api_token_file, "new": new_api_token_file}, inventory)
        if problems:
            for problem in problems:
                click.echo(problem, err=True)
            sys.exit(EXIT_CONFIG)
        if inventory is not None:
            click.echo("note: neutron-server reports to no collector, so no cluster tells its "
                       "hosts: add each as a controller host with role northbound (`issu "
                       "config check` names those northbound.toml needs)", err=True)
    _write_output(to_toml(data), output)


def _write_output(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=False)
        return
    # Created 0600 from the start (the text may hold secrets), never over an existing file.
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        click.echo(f"{output}: exists; not overwritten", err=True)
        sys.exit(EXIT_CONFIG)
    except OSError as exc:
        click.echo(f"{output}: cannot create: {exc.strerror}", err=True)
        sys.exit(EXIT_CONFIG)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    click.echo(f"wrote {output}")


# ----------------------------------------------------------------------------- entry points


def main() -> None:
    # Without a logging set-up, the libraries' retry warnings (kazoo's "Connection dropped"
    # while ZooKeeper is down, a dozen a second) reach the terminal through logging's
    # last-resort handler, around the command's own report of the same failure. The sync
    # commands set their own levels (-v shows everything).
    for library in ("kazoo", "cassandra"):
        logging.getLogger(library).setLevel(logging.ERROR)
    import_kombu_whole()
    cli(prog_name="issu")


def legacy_pre_sync() -> None:
    """`contrail-issu-pre-sync -c issu.conf`"""
    from issu_tui import sync_cli

    sync_cli.legacy_pre_sync()


def legacy_post_sync() -> None:
    """`contrail-issu-post-sync -c issu.conf`"""
    from issu_tui import sync_cli

    sync_cli.legacy_post_sync()


def legacy_run_sync() -> None:
    """`contrail-issu-run-sync -c issu.conf`"""
    from issu_tui import runsync_cli

    runsync_cli.legacy_run_sync()


def legacy_zk_sync() -> None:
    """`contrail-issu-zk-sync -c issu.conf`"""
    from issu_tui import runsync_cli

    runsync_cli.legacy_zk_sync()
