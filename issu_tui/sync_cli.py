"""`issu sync pre|post|verify|translate` and the original `contrail-issu-pre-sync` /
`contrail-issu-post-sync` entry points (`-c issu.conf` plus the original options).

Exit codes: 0 ok; 1 differences, failed slices or tables, unreachable cluster;
2 configuration or usage error (including an unsupported version path).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from issu_tui.cli_common import load_or_exit, open_journal_or_warn, setup_logging
from issu_tui.config import IssuConfig
from issu_tui.sides import cassandra_side, sync_settings

if TYPE_CHECKING:
    from backends.cassandra.registry import Registry
    from backends.cassandra.tables import SyncSettings
    from issu_tui.journal import Journal

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_CONFIG = 2
MAX_PRINT_DEFAULT = 50

log = logging.getLogger("issu.sync")


# --------------------------------------------------------------------------- helpers

def _journal(config: IssuConfig, state_dir: Path | None) -> Journal | None:
    return open_journal_or_warn(config, state_dir, "this run keeps its checkpoints in memory "
                                "and cannot be resumed")


def _setup_logging(verbose: bool) -> None:
    # The driver warns about protocol negotiation and server-side notes; keep them for -v.
    setup_logging(verbose, {"cassandra": logging.ERROR})


@contextmanager
def _connections(config: IssuConfig, overrides: dict[str, dict[str, Any]] | None = None
                 ) -> Iterator[tuple[Any, Any]]:
    from backends.cassandra.connection import CassandraUnavailable, connect

    overrides = overrides or {}
    try:
        old = connect(cassandra_side(config, "old", overrides.get("old")))
    except CassandraUnavailable as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_PROBLEM)
    try:
        new = connect(cassandra_side(config, "new", overrides.get("new")))
    except CassandraUnavailable as exc:
        old.close()
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_PROBLEM)
    try:
        yield old, new
    finally:
        old.close()
        new.close()


def _registry() -> Registry:
    from backends.cassandra.registry import RegistryError, load_registry

    try:
        return load_registry()
    except RegistryError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)


def _guard_config_errors(fn: Callable[[], int]) -> int:
    """Version-path, registry and same-cluster problems are configuration errors (exit 2)."""
    from backends.cassandra.identity import SameClusterError
    from backends.cassandra.registry import RegistryError
    from backends.cassandra.schema import SchemaError
    from backends.versions import VersionPathError

    try:
        return fn()
    except (VersionPathError, RegistryError, SameClusterError) as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_CONFIG
    except SchemaError as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_PROBLEM


def _check_before_connecting(config: IssuConfig, registry: Any, settings: SyncSettings,
                             phase: str) -> int:
    """What the config alone can tell is wrong (a keyspace not registered, a version path
    not supported), raised before any connection is tried. On a reversed registry the
    config is reversed too (old is the newer release): the path is taken the other way."""
    from backends.versions import version_path

    registry.tables(settings.keyspaces, phase=phase)
    if getattr(registry, "reverse", False):
        version_path(config.new.version, config.old.version)
    else:
        version_path(config.old.version, config.new.version)
    return EXIT_OK


def _check_tables(registry: Any, tables: tuple[str, ...]) -> int:
    from backends.cassandra.registry import RegistryError

    for name in tables:
        keyspace, dot, table = name.partition(".")
        if not dot or "." in table:
            raise RegistryError(f"{name!r} is not keyspace.table")
        registry.table(keyspace, table)
    return EXIT_OK


# --------------------------------------------------------------------------- output

def _print_copy(report: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    click.echo(f"{report.job} (run {report.run_id}):")
    click.echo(f"  {'table':<52} {'status':<8} {'parts':>8} {'cells':>10} {'deleted':>8} "
               f"{'quar.':>6} {'slices':>9} {'time':>7}")
    for t in report.tables:
        slices = f"{t.slices_done + t.slices_resumed}/{t.slices}"
        click.echo(f"  {t.keyspace + '.' + t.table:<52} {t.status:<8} {t.partitions:>8} "
                   f"{t.cells:>10} {t.deleted:>8} {t.quarantined:>6} {slices:>9} "
                   f"{t.duration_s:>6.1f}s")
        if t.note:
            click.echo(f"      note: {t.note}")
        for err in t.errors:
            click.echo(f"      error: {err}")
    totals = report.totals()
    click.echo(f"  total: {int(totals['cells'])} cells copied, {int(totals['deleted'])} deleted, "
               f"{int(totals['quarantined'])} quarantined, {int(totals['tables_failed'])} "
               f"table(s) failed, {report.duration_s:.1f}s")
    if totals["quarantined"]:
        click.echo(f"  quarantined cells are in {report.quarantine_table}")


def _print_verify(report: Any, as_json: bool, max_print: int) -> None:
    if as_json:
        data = report.as_dict()
        for table in data["tables"]:
            table["samples"] = table["samples"][:max_print]
        click.echo(json.dumps(data, indent=2))
        return
    printed = 0
    for t in report.tables:
        name = f"{t.keyspace}.{t.table}"
        if t.status == "skipped":
            click.echo(f"  {name}: skipped ({t.note})")
            continue
        click.echo(f"  {name}: {t.status}: {t.cells_compared} cells compared, "
                   f"{t.missing} missing, {t.extra} extra, {t.different} different"
                   + (f", {t.quarantined} quarantined" if t.quarantined else "")
                   + (f" ({t.note})" if t.note else ""))
        for err in t.errors:
            click.echo(f"    error: {err}")
        for d in t.samples:
            if printed >= max_print:
                break
            click.echo(f"    {d.kind:<9} key={d.key!r} column={d.column!r}"
                       + (f" {d.detail}" if d.detail else ""))
            printed += 1
    totals = report.totals()
    total = totals["missing"] + totals["extra"] + totals["different"]
    click.echo(f"verify: {'no differences' if report.ok else 'DIFFERENCES'}: {total} "
               f"({totals['missing']} missing, {totals['extra']} extra, {totals['different']} "
               f"different) in {totals['cells_compared']} cells, {report.duration_s:.1f}s"
               + (f"; first {max_print} printed" if total > max_print else ""))
    if report.unverified:
        click.echo(f"verify: FAILED: absent on old, not verified: {', '.join(report.unverified)}")


# --------------------------------------------------------------------------- commands

config_option = click.option(
    "-c", "--config", "config_path", type=click.Path(path_type=Path), default=Path("issu.toml"),
    show_default=True, help="issu.toml, or the original issu.conf")
state_option = click.option("--state-dir", type=click.Path(path_type=Path), default=None,
                            help="journal directory (default: state_dir of the config)")
keyspace_option = click.option("-k", "--keyspace", "keyspaces", multiple=True,
                               help="only this registered keyspace (repeatable)")
json_option = click.option("--json", "as_json", is_flag=True, help="machine-readable report")
tuning = [
    click.option("--slices", type=click.IntRange(1, 65536), default=None,
                 help="token slices per table (default: sync.slices_per_table)"),
    click.option("--concurrency", type=click.IntRange(1, 256), default=None,
                 help="slices in flight (default: sync.concurrency)"),
    click.option("--page-size", type=click.IntRange(10, 100_000), default=None,
                 help="rows per page (default: sync.page_size)"),
]
verbose_option = click.option("-v", "--verbose", is_flag=True)


def _tuning(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(tuning):
        fn = option(fn)
    return fn


@click.group()
def sync() -> None:
    """Copy, replicate and verify the config database (old -> new, translated)."""


def run_copy(config: IssuConfig, *, job: str, phase: str, state_dir: Path | None,
             keyspaces: tuple[str, ...], fresh: bool, as_json: bool, slices: int | None,
             concurrency: int | None, page_size: int | None,
             overrides: dict[str, dict[str, Any]] | None = None, reverse: bool = False) -> int:
    """`reverse`: new -> old through the translators' inverses (revert's post-sync-back),
    refused as the reverse replication is before finalize's commit and once the way back
    is closed; its checkpoints are a job of their own (`<job>-back`)."""
    import functools

    from backends.cassandra.connection import connect_pair
    from backends.cassandra.copy import CopyEngine
    from backends.cassandra.registry import load_registry, load_reverse_registry
    from backends.cassandra.slice_processes import CopyWorkerSpec
    from backends.progress import MemoryCheckpoints
    from issu_tui.sides import reversed_config

    if reverse:
        refusal = _reverse_copy_refusal(config, state_dir)
        if refusal:
            click.echo(f"sync {phase} --reverse refused: {refusal}", err=True)
            return EXIT_CONFIG
        config, job = reversed_config(config), f"{job}-back"
    settings = sync_settings(config, keyspaces=keyspaces, slices=slices,
                             concurrency=concurrency, page_size=page_size)
    overrides = overrides or {}
    # the copy processes connect on their own (a picklable factory of the same sides)
    processes = CopyWorkerSpec(
        functools.partial(connect_pair, cassandra_side(config, "old", overrides.get("old")),
                          cassandra_side(config, "new", overrides.get("new"))),
        processes=config.sync.copy_processes,
        registry=load_reverse_registry if reverse else load_registry,
        log_level=logging.getLogger().getEffectiveLevel())
    registry = _registry().reversed() if reverse else _registry()
    problem = _guard_config_errors(lambda: _check_before_connecting(config, registry,
                                                                    settings, phase))
    if problem:
        return problem
    journal = _journal(config, state_dir)
    try:
        with _connections(config, overrides) as (old, new):
            def go() -> int:
                engine = CopyEngine(old, new, registry, settings,
                                    checkpoints=journal or MemoryCheckpoints(),
                                    events=journal, counters=journal, processes=processes)
                report = engine.run(job, phase=phase, fresh=fresh)
                _print_copy(report, as_json)
                return EXIT_OK if report.ok else EXIT_PROBLEM
            return _guard_config_errors(go)
    finally:
        if journal is not None:
            journal.close()


def _reverse_copy_refusal(config: IssuConfig, state_dir: Path | None) -> str | None:
    """Why a copy new -> old must not run now: it makes old equal to new, so only after
    finalize's commit (before it new is the lagging copy) and until the way back is closed."""
    from issu_tui.orchestrator.finalize import COMMIT_STEP
    from issu_tui.orchestrator.phases import WAY_BACK_CLOSED

    journal = _journal(config, state_dir)
    if journal is None:
        return "no journal to read finalize's commit from (state_dir)"
    try:
        done = journal.steps_done()
        if COMMIT_STEP not in done:
            return (f"the journal {journal.path} records no finalize commit ({COMMIT_STEP}): "
                    "old is still the cluster serving")
        if WAY_BACK_CLOSED in done:
            return (f"the way back was closed (issu close-way-back, {WAY_BACK_CLOSED} in "
                    f"{journal.path}): old no longer follows new")
        return None
    finally:
        journal.close()


def _copy_command(name: str, job: str, phase: str, summary: str,
                  reversible: bool = False) -> click.Command:
    """`issu sync pre` and `issu sync post`: one copy command, two jobs."""

    @sync.command(name, help=summary)
    @config_option
    @state_option
    @keyspace_option
    @click.option("--fresh", is_flag=True, help="ignore checkpoints of an unfinished run")
    @json_option
    @_tuning
    @verbose_option
    def command(config_path: Path, state_dir: Path | None, keyspaces: tuple[str, ...],
                fresh: bool, as_json: bool, slices: int | None, concurrency: int | None,
                page_size: int | None, verbose: bool, reverse: bool = False) -> None:
        _setup_logging(verbose)
        config = load_or_exit(config_path)
        sys.exit(run_copy(config, job=job, phase=phase, state_dir=state_dir,
                          keyspaces=keyspaces, fresh=fresh, as_json=as_json, slices=slices,
                          concurrency=concurrency, page_size=page_size, reverse=reverse))

    if reversible:
        command = click.option(
            "--reverse", is_flag=True,
            help="new -> old through the inverse translators (issu revert after finalize: "
            "what new's writers wrote since); refused before finalize's commit and once "
            "the way back is closed")(command)
    return command


pre = _copy_command("pre", "pre-sync", "pre", (
    "pre-sync: copy every registered keyspace old -> new (translated, replacing);\n"
    "resumes an interrupted run from its checkpoints."))
post = _copy_command("post", "post-sync", "post", (
    "post-sync: final copy of every keyspace except config_db_uuid (after the old\n"
    "config services are stopped)."), reversible=True)


@sync.command("verify")
@config_option
@state_option
@keyspace_option
@click.option("--phase", type=click.Choice(["pre", "post"]), default="pre", show_default=True,
              help="pre: every registered keyspace; post: all but config_db_uuid")
@click.option("--max-print", type=click.IntRange(0), default=MAX_PRINT_DEFAULT,
              show_default=True, help="differences printed (counts are always complete)")
@click.option("--no-recheck", is_flag=True,
              help="report first-pass differences without comparing them again")
@click.option("--recheck-delay", type=float, default=1.0, show_default=True,
              help="seconds to wait before re-checking differing keys")
@click.option("--allow-missing", "allow_missing", multiple=True, metavar="KEYSPACE",
              help="registered keyspace that may be absent on old (repeatable; default: none, "
              "a keyspace or table absent on old fails verify with exit 1)")
@json_option
@_tuning
@verbose_option
def verify(config_path: Path, state_dir: Path | None, keyspaces: tuple[str, ...], phase: str,
           max_print: int, no_recheck: bool, recheck_delay: float,
           allow_missing: tuple[str, ...], as_json: bool, slices: int | None,
           concurrency: int | None, page_size: int | None, verbose: bool) -> None:
    """Compare old (translated) with new; exit 1 on any difference. Safe during run-sync."""
    _setup_logging(verbose)
    config = load_or_exit(config_path)
    from backends.cassandra.verify import Verifier

    settings = sync_settings(config, keyspaces=keyspaces, slices=slices,
                             concurrency=concurrency, page_size=page_size)
    registry = _registry()
    problem = _guard_config_errors(lambda: _check_before_connecting(config, registry,
                                                                    settings, phase))
    if problem:
        sys.exit(problem)
    journal = _journal(config, state_dir)
    try:
        with _connections(config) as (old, new):
            def go() -> int:
                verifier = Verifier(old, new, registry, settings, events=journal,
                                    max_samples=max(max_print, 1), recheck=not no_recheck,
                                    recheck_delay_s=recheck_delay,
                                    allow_missing=allow_missing)
                report = verifier.run(phase=phase)
                _print_verify(report, as_json, max_print)
                return EXIT_OK if report.ok else EXIT_PROBLEM
            code = _guard_config_errors(go)
    finally:
        if journal is not None:
            journal.close()
    sys.exit(code)


@sync.command("translate")
@config_option
@click.option("--dry-run", is_flag=True, required=True,
              help="show before/after rows without writing anything (required)")
@click.option("--sample", type=click.IntRange(1, 10_000), default=5, show_default=True,
              help="partitions shown")
@click.option("-t", "--table", "tables", multiple=True,
              default=("config_db_uuid.obj_uuid_table", "config_db_uuid.obj_fq_name_table"),
              show_default=True, help="keyspace.table (repeatable)")
@click.option("--max-columns", type=click.IntRange(1), default=40, show_default=True,
              help="cells shown per partition")
@json_option
@verbose_option
def translate(config_path: Path, dry_run: bool, sample: int, tables: tuple[str, ...],
              max_columns: int, as_json: bool, verbose: bool) -> None:
    """Show how the old cluster's rows translate to the new release, without writing."""
    _setup_logging(verbose)
    config = load_or_exit(config_path)
    from backends.cassandra.connection import CassandraUnavailable, connect
    from backends.cassandra.dryrun import dry_run_samples

    registry = _registry()
    problem = _guard_config_errors(lambda: _check_tables(registry, tables))
    if problem:
        sys.exit(problem)
    try:
        old = connect(cassandra_side(config, "old"))
    except CassandraUnavailable as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_PROBLEM)
    try:
        def go() -> int:
            result = dry_run_samples(old, registry, config.old.version, config.new.version,
                                     list(tables), sample=sample, max_columns=max_columns)
            if as_json:
                click.echo(json.dumps(result, indent=2))
            else:
                _print_translate(result)
            return EXIT_OK
        code = _guard_config_errors(go)
    finally:
        old.close()
    sys.exit(code)


def _print_translate(result: dict[str, Any]) -> None:
    click.echo(f"translation {result['from']} -> {result['to']} "
               f"(steps: {', '.join(result['steps']) or 'none'})")
    for table in result["tables"]:
        click.echo(f"== {table['table']} [{table['translator']}]"
                   + (f": {table['note']}" if table.get("note") else ""))
        for part in table["partitions"]:
            renamed = f" -> {part['new_key']!r}" if part["new_key"] != part["key"] else ""
            click.echo(f"  key {part['key']!r}{renamed}")
            for change in part["cells"]:
                before, after = change["before"], change["after"]
                if before is None:
                    click.echo(f"    + {after['column']} = {after['value']}   (added)")
                elif after is None:
                    click.echo(f"    ! {before['column']} = {before['value']}   "
                               f"(quarantined: {change['reason']})")
                elif before == after:
                    click.echo(f"      {before['column']} = {before['value']}")
                else:
                    click.echo(f"    - {before['column']} = {before['value']}")
                    click.echo(f"    + {after['column']} = {after['value']}")
            if part.get("truncated"):
                click.echo(f"    ... {part['truncated']} more cells")


# --------------------------------------------------------------------------- legacy entry points

_LEGACY_CASSANDRA = {
    "cassandra_address_list": "hosts", "cassandra_user": "user",
    "cassandra_password": "password", "cassandra_use_ssl": "use_ssl",
    "cassandra_ca_certs": "ca_certs",
}
_LEGACY_IGNORED = [
    f"--{side}_{name}" for side in ("old", "new") for name in (
        "rabbit_user", "rabbit_password", "rabbit_ha_mode", "rabbit_q_name", "rabbit_vhost",
        "rabbit_port", "rabbit_use_ssl", "rabbit_ssl_version", "rabbit_ssl_ca_certs",
        "rabbit_ssl_keyfile", "rabbit_ssl_certfile", "rabbit_address_list",
        "zookeeper_address_list")] + ["--reset_config", "--new_api_info"]


def legacy_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=(
        "Compatible with the original Contrail tool: -c issu.conf ([DEFAULTS]) or issu.toml; "
        "the original command-line options override the file."))
    parser.add_argument("-c", "--conf_file", action="append", required=True, metavar="FILE",
                        help="issu.conf (the last one given is used)")
    for side in ("old", "new"):
        parser.add_argument(f"--{side}_cassandra_address_list", nargs="+")
        for name in ("cassandra_user", "cassandra_password", "cassandra_use_ssl",
                     "cassandra_ca_certs"):
            parser.add_argument(f"--{side}_{name}")
    parser.add_argument("--odb_prefix", "--old_db_prefix", dest="odb_prefix")
    parser.add_argument("--ndb_prefix", "--new_db_prefix", dest="ndb_prefix")
    for flag in _LEGACY_IGNORED:
        parser.add_argument(flag, nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="machine-readable report")
    parser.add_argument("--fresh", action="store_true",
                        help="ignore checkpoints of an unfinished run")
    return parser


def legacy_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The original command-line options, checked as the same options in the file are;
    raises ValueError naming every option that is wrong."""
    from issu_tui.config import check_cassandra_hosts, check_prefix, parse_bool

    out: dict[str, dict[str, Any]] = {"old": {}, "new": {}}
    problems: list[str] = []
    for side in ("old", "new"):
        for name, field in _LEGACY_CASSANDRA.items():
            value = getattr(args, f"{side}_{name}")
            if value is None:
                continue
            try:
                if field == "hosts":
                    value = tuple(check_cassandra_hosts(
                        [h for v in value for h in v.replace(",", " ").split()]))
                elif field == "use_ssl":
                    value = parse_bool(value)
            except ValueError as exc:
                problems.append(f"--{side}_{name}: {exc}")
                continue
            out[side][field] = value
    for side, option in (("old", "odb_prefix"), ("new", "ndb_prefix")):
        prefix = getattr(args, option)
        if prefix is not None:
            try:
                out[side]["prefix"] = check_prefix(prefix)
            except ValueError as exc:
                problems.append(f"--{option}: {exc}")
    if problems:
        raise ValueError("\n".join(problems))
    return out


def _legacy_main(prog: str, job: str, phase: str, argv: list[str] | None) -> int:
    args = legacy_parser(prog).parse_args(sys.argv[1:] if argv is None else argv)
    _setup_logging(False)
    config = load_or_exit(Path(args.conf_file[-1]))
    try:
        overrides = legacy_overrides(args)
    except ValueError as exc:
        click.echo(f"{prog}: {exc}".replace("\n", f"\n{prog}: "), err=True)
        return EXIT_CONFIG
    return run_copy(config, job=job, phase=phase, state_dir=None, keyspaces=(),
                    fresh=args.fresh, as_json=args.json, slices=None, concurrency=None,
                    page_size=None, overrides=overrides)


def legacy_pre_sync(argv: list[str] | None = None) -> None:
    """`contrail-issu-pre-sync -c issu.conf [original options]`"""
    sys.exit(_legacy_main("contrail-issu-pre-sync", "pre-sync", "pre", argv))


def legacy_post_sync(argv: list[str] | None = None) -> None:
    """`contrail-issu-post-sync -c issu.conf [original options]`"""
    sys.exit(_legacy_main("contrail-issu-post-sync", "post-sync", "post", argv))
