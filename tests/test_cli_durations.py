"""Duration options refuse what is not a finite number of seconds above 0 (`nan` was taken,
and a wait with `--timeout nan` never timed out; a negative reconciliation interval was
taken too)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from issu_tui.cli import cli


@pytest.mark.parametrize("value", ["nan", "NaN", "-1", "0", "inf", "soon"])
@pytest.mark.parametrize("command", [["pause", "--timeout"],
                                     ["sync", "run", "--reconcile-interval"]])
def test_a_duration_that_is_not_seconds_is_a_usage_error(command: list[str],
                                                         value: str) -> None:
    result = CliRunner().invoke(cli, [*command, value, "-c", "/nonexistent/issu.toml"])
    assert result.exit_code == 2, result.output
    assert command[-1] in result.output and "Traceback" not in result.output
