"""What every `issu` subcommand module shares: loading the config, opening the journal."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from pathlib import Path

import click

from issu_tui.config import ConfigError, IssuConfig, load_config, secret_sources
from issu_tui.journal import Journal

EXIT_CONFIG = 2


class _NoLibraryTracebacks(logging.Filter):
    """The named libraries' records keep their exception's one-line text, not its
    traceback (the driver ends its message with ':' and counts on the traceback)."""

    def __init__(self, libraries: tuple[str, ...]) -> None:
        super().__init__()
        self.libraries = libraries

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.name.split(".", 1)[0] in self.libraries:
            exc = record.exc_info[1]
            if exc is not None:
                record.msg = f"{record.getMessage()} {type(exc).__name__}: {exc}"
                record.args = ()
            record.exc_info, record.exc_text = None, None
        return True


class Seconds(click.FloatRange):
    """A duration option: a finite number of seconds above 0 (click's FloatRange lets `nan`
    through: every comparison with it is false)."""

    name = "seconds"

    def __init__(self) -> None:
        super().__init__(min=0, min_open=True, max=1e9)

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        seconds = float(super().convert(value, param, ctx))  # type: ignore[arg-type]  # click passes the raw option text, typed float in its stubs
        if seconds != seconds:  # NaN
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        return seconds


def setup_logging(verbose: bool, libraries: Mapping[str, int]) -> None:
    """Log to stderr; each library's logger at its level here (INFO with -v). Without -v
    their records lose their tracebacks: e.g. the Cassandra driver logs one when it cannot
    connect, and the command reports that failure in a line of its own."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    for name, level in libraries.items():
        logging.getLogger(name).setLevel(logging.INFO if verbose else level)
    if not verbose:
        quiet = _NoLibraryTracebacks(tuple(libraries))
        for handler in logging.getLogger().handlers:
            handler.addFilter(quiet)


def load_or_exit(path: Path) -> IssuConfig:
    """Load the config for a command; print every problem and exit 2 when it is broken."""
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"{exc.path}: {problem}", err=True)
        sys.exit(EXIT_CONFIG)


def open_journal_or_warn(config: IssuConfig, state_dir: Path | None,
                         consequence: str) -> Journal | None:
    """The journal with every configured secret scrubbed, or None and a warning saying
    `consequence` when it cannot be opened (a copy can still run without it)."""
    directory = state_dir or config.state_dir
    try:
        journal = Journal.open(directory)
    except Exception as exc:
        click.echo(f"warning: journal in {directory} not available ({exc}); {consequence}",
                   err=True)
        return None
    journal.scrub(secret_sources(config))
    return journal
