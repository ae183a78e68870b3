"""`issu rehearse --snapshot FILE`: the upgrade played through on a copy of production.

Exit codes: 0 nothing would be lost, 1 something would be lost, quarantined, refused by
preflight or differ after sync (the report says what), 2 bad usage or snapshot file,
3 the rehearsal could not run (scratch clusters failed to start...).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

EXIT_PROBLEM = 1
EXIT_USAGE = 2
EXIT_NOT_RUN = 3


def _versions(config_path: Path | None, from_version: str | None,
              to_version: str | None) -> tuple[str, str]:
    if config_path is not None and (from_version is None or to_version is None):
        from issu_tui.cli_common import load_or_exit

        config = load_or_exit(config_path)
        from_version = from_version or config.old.version
        to_version = to_version or config.new.version
    if not from_version or not to_version:
        raise click.UsageError("give --from-version and --to-version (or -c issu.toml, whose "
                               "old.version and new.version are used)")
    from backends.versions import parse_version

    for option, value in (("--from-version", from_version), ("--to-version", to_version)):
        try:
            parse_version(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=option) from None
    return from_version, to_version


@click.command()
@click.option("--snapshot", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="a db_json_exim.py snapshot (.json or .json.gz)")
@click.option("--from-version", help="the production (old) release, e.g. 4.1.0")
@click.option("--to-version", help="the release to upgrade to, e.g. 5.0.0")
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path),
              help="issu.toml: versions default to its old.version and new.version")
@click.option("--rate", type=click.FloatRange(0, 10_000), default=10.0, show_default=True,
              help="synthetic config changes per second through run-sync (0: no load)")
@click.option("--load-seconds", type=click.FloatRange(0, 3600), default=30.0,
              show_default=True, help="how long the synthetic load runs")
@click.option("--net", type=click.IntRange(1, 254), default=50, show_default=True,
              help="scratch clusters on 127.<net>.0.x")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
              help="the scratch clusters' directory (default .run/rehearse-<net>)")
@click.option("--report", "report_base", type=click.Path(path_type=Path),
              help="write <REPORT>.md and <REPORT>.json (default rehearsal-<UTC time>)")
@click.option("--production-cells", type=click.IntRange(1),
              help="predict for this many cells instead of the snapshot's")
@click.option("--keep-services", is_flag=True,
              help="leave the scratch clusters running (a next rehearsal reuses them)")
@click.option("--provider", help="scratch cluster provider (entry point name; default demo)")
def rehearse(snapshot: Path, from_version: str | None, to_version: str | None,
             config_path: Path | None, rate: float, load_seconds: float, net: int,
             run_dir: Path | None, report_base: Path | None, production_cells: int | None,
             keep_services: bool, provider: str | None) -> None:
    """Rehearse the upgrade on a snapshot of production, on scratch clusters of this machine.

    Imports the snapshot as the old cluster, runs preflight-like checks, pre-sync through
    the real translators, zk-sync, verify, run-sync under a synthetic load and post-sync,
    then stops the scratch clusters. Writes a markdown and a JSON report."""
    from backends.snapshot.format import SnapshotError
    from issu_tui.rehearse import (
        Rehearsal,
        RehearsalError,
        RehearsalOptions,
        scratch_factory,
    )
    from issu_tui.rehearse_report import write_reports

    old_version, new_version = _versions(config_path, from_version, to_version)
    base = report_base or Path(time.strftime("rehearsal-%Y%m%dT%H%M%SZ", time.gmtime()))
    options = RehearsalOptions(snapshot, old_version, new_version, rate=rate,
                               load_seconds=load_seconds, net=net, run_dir=run_dir,
                               keep_services=keep_services, production_cells=production_cells)
    try:
        factory = scratch_factory(provider)
        report = Rehearsal(options, factory, lambda m: click.echo(f"  {m}", err=True)).run()
    except SnapshotError as exc:
        click.echo(f"issu rehearse: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except RehearsalError as exc:
        click.echo(f"issu rehearse: {exc}", err=True)
        sys.exit(EXIT_NOT_RUN)
    md, js = write_reports(report, base)
    _summary(report)
    click.echo(f"report: {md} and {js}")
    sys.exit(0 if report.ok else EXIT_PROBLEM)


def _summary(report: object) -> None:
    from issu_tui.rehearse_report import RehearsalReport

    assert isinstance(report, RehearsalReport)
    r = report
    click.echo(f"rehearsal {r.from_version} -> {r.to_version} of {r.snapshot['path']} "
               f"({r.snapshot['cells']:,} cells, {r.snapshot['znodes']:,} znodes): "
               f"{'PASSED' if r.ok else 'FAILED'}")
    for step in r.steps:
        click.echo(f"  {step.name:<28} {step.seconds:8.1f}s  "
                   f"{'ok' if step.ok else 'FAILED: ' + step.detail}")
    if r.pre_sync:
        click.echo(f"  pre-sync: {r.pre_sync['cells']:,} cells copied "
                   f"({r.pre_sync['cells_per_s']:,.0f} cells/s), "
                   f"{r.pre_sync['quarantined']:,} quarantined")
        for table in r.pre_sync["tables"]:
            if table["quarantined"] or table["status"] != "ok":
                click.echo(f"    {table['table']}: {table['cells']:,} copied, "
                           f"{table['quarantined']:,} quarantined, {table['status']}")
    for name, entry in r.quarantine.get("tables", {}).items():
        for reason, count in entry["reasons"].items():
            click.echo(f"  quarantined in {name}: {count} x {reason}")
        for sample in entry["samples"][:3]:
            click.echo(f"    e.g. key {sample['key']} column {sample['column']}")
    pred = r.prediction
    if pred.get("pre_sync_s") is not None:
        click.echo(f"  predicted on this machine: pre-sync {pred['pre_sync_s']:,.1f}s for "
                   f"{pred['pre_sync_cells']:,} cells"
                   + (f", post-sync {pred['post_sync_s']:,.1f}s for {pred['post_sync_cells']:,}"
                      " cells" if pred.get("post_sync_s") is not None else ""))
    if r.zk_sync:
        click.echo(f"  zk-sync: {r.zk_sync['verified_nodes']:,} nodes verified, "
                   f"{r.zk_sync['differences']} mismatch(es)")
    if r.verify:
        click.echo(f"  verify: {r.verify['differences']} difference(s)")
    rs = r.run_sync
    if rs.get("published") is not None:
        lag = rs.get("lag_p99_s")
        click.echo(f"  run-sync: {rs['published']} changes at {rs['rate']}/s, {rs['applied']} "
                   f"applied, lag p99 " + (f"{lag:.3f}s" if lag is not None else "n/a"))
    for refusal in r.refusals:
        click.echo(f"  preflight would refuse: {refusal}")
    for problem in r.problems:
        click.echo(f"  PROBLEM: {problem}")
