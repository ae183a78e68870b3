"""What every `issu` subcommand module shares: loading the config, opening the journal."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from issu_tui.config import ConfigError, IssuConfig, load_config, secret_sources
from issu_tui.journal import Journal

EXIT_CONFIG = 2


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
