"""`issu tui --rehearsal REPORT.json`: a rehearsal's report shown like an upgrade, read-only.

The report is written by `issu rehearse`'s own model and writer (tests/tui/rehearsal_data.py);
the screen is driven with Pilot and compared with SVG snapshots at 80x24 and 160x50.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from issu_tui.app import RehearsalApp
from issu_tui.cli import cli
from issu_tui.rehearsal_view import RehearsalFileError, load_rehearsal
from tests.tui.rehearsal_data import REASON, VN, write_poisoned

SIZES = [(80, 24), (160, 50)]


@pytest.fixture
def report(tmp_path: Path) -> Path:
    return write_poisoned(tmp_path)


def test_the_report_reads_as_the_upgrades_phases(report: Path) -> None:
    view = load_rehearsal(report)
    assert not view.ok
    phases = {p.name: p for p in view.phases}
    assert list(phases) == ["snapshot", "preflight", "pair", "pre-sync", "run-sync",
                            "computes", "finalize"]
    assert phases["pre-sync"].status == "problems" and "1 quarantined" in phases["pre-sync"].what
    assert phases["pre-sync"].seconds == pytest.approx(6.5)   # pre-sync + translated samples
    assert phases["pre-sync"].predicted_s == pytest.approx(6.3)
    assert phases["finalize"].seconds == pytest.approx(6.4)   # post-sync, zk-sync, verify
    assert phases["pair"].status == phases["computes"].status == "not-rehearsed"
    assert phases["run-sync"].status == "ok" and "20 applied" in phases["run-sync"].what
    uuid_table = next(t for t in view.tables if t.table == "config_db_uuid.obj_uuid_table")
    assert (uuid_table.job, uuid_table.copied, uuid_table.quarantined) == ("pre-sync", 1040, 1)
    [quarantined] = view.quarantine
    assert quarantined.samples == ((VN, "prop:broken", REASON),)
    assert any("would not reach the new cluster" in p for p in view.problems)


def test_a_failed_step_and_refusals_show_on_their_phase(tmp_path: Path, report: Path) -> None:
    data = json.loads(report.read_text())
    data["steps"] = [s for s in data["steps"] if s["name"] not in ("pre-sync", "verify")]
    data["steps"].append({"name": "verify", "seconds": 1.0, "ok": False,
                          "detail": "NoHostAvailable: new"})
    data["refusals"] = ["version path 4.1.0 -> 9.0.0: no path"]
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    phases = {p.name: p for p in load_rehearsal(path).phases}
    assert phases["finalize"].status == "failed" and "NoHostAvailable" in phases["finalize"].what
    assert phases["preflight"].status == "problems"
    assert phases["pre-sync"].seconds == pytest.approx(0.2)   # the samples' step alone


@pytest.mark.parametrize("text,names", [
    ("not json {", "not JSON"),
    ("[1, 2]", "the document: expected an object"),
    ('{"snapshot": {"path": "p"}}', "steps: expected list (missing)"),
    ('{"snapshot": {"path": "p"}, "steps": [{"name": "x", "ok": "yes"}]}', "steps[0].ok"),
    ('{"snapshot": {"path": "p"}, "steps": [], "ok": true, "from_version": "4.1.0", '
     '"to_version": "5.0.0", "pre_sync": {"tables": [{"table": 7}]}}',
     "pre_sync.tables[0].table"),
])
def test_a_file_that_is_not_a_report_is_refused_naming_the_key(tmp_path: Path, text: str,
                                                                names: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(RehearsalFileError) as caught:
        load_rehearsal(path)
    assert str(caught.value).startswith(f"{path}: ") and names in str(caught.value)
    result = CliRunner().invoke(cli, ["tui", "--rehearsal", str(path)])
    assert result.exit_code == 2 and f"issu tui: {path}: " in result.output
    assert "Traceback" not in result.output


async def test_the_screen_shows_the_phases_tables_and_findings(report: Path) -> None:
    app = RehearsalApp(load_rehearsal(report))
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        phases = app.screen.query_one("#rehearsal-phases", DataTable)
        assert phases.row_count == 7
        assert str(phases.get_cell("pre-sync", "result")) == "would lose data"
        assert phases.get_cell("pre-sync", "predicted") == "6.3s"
        tables = app.screen.query_one("#rehearsal-tables", DataTable)
        assert str(tables.get_cell("pre-sync:config_db_uuid.obj_uuid_table",
                                   "quarantined")) == "1"
        console = Console(width=160, record=True)
        console.print(app.screen.query_one("#rehearsal-findings-text", Static).content)
        text = console.export_text()
        assert "What would go wrong on the day" in text and "prop:broken" in text
        # read-only: the upgrade's action keys do nothing here
        for key in ("u", "F", "X", "n", "enter"):
            await pilot.press(key)
        assert app.is_running and len(app.screen_stack) == 2
        await pilot.press("q")
    assert app.return_code == 0


def _settle():  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot) -> None:
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot(snap_compare, tmp_path: Path, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    app = RehearsalApp(load_rehearsal(write_poisoned(tmp_path)))
    assert snap_compare(app, terminal_size=size, run_before=_settle())
