"""A state_dir reused by a later upgrade: the files an upgrade keeps beside its journal
(the northbound clients it switched, the records it removed, its reverse replication's pid)
are not taken for the new upgrade's own (audit of issue 14: abort would point back clients
this upgrade never switched)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from issu_tui.cli import cli
from issu_tui.journal import PER_UPGRADE_FILES
from tests.test_ringplan import NEW, OLD, _write_config


def test_a_new_upgrade_in_a_state_dir_with_an_earlier_ones_files_is_refused_naming_them(
        tmp_path: Path) -> None:
    path = _write_config(tmp_path, OLD, NEW)
    state = tmp_path / "state"
    state.mkdir()
    # the earlier upgrade's journal was moved away, its other files left behind
    (state / "northbound-switched.json").write_text(
        '[{"kind": "neutron", "path": "/etc/neutron/plugins/opencontrail/ContrailPlugin.ini"}]')
    (state / "removed-old-node-records.json").write_text("[]")
    start = ["phase", "preflight", "-c", str(path), "--no-wait"]
    refused = CliRunner().invoke(cli, start)
    assert refused.exit_code != 0
    assert (f"{state}: holds northbound-switched.json, removed-old-node-records.json of an "
            "earlier upgrade, and no journal of it") in refused.output
    assert "Use a fresh state_dir" in refused.output
    assert not (state / "journal.db").exists()  # nothing started

    for name in PER_UPGRADE_FILES:
        (state / name).unlink(missing_ok=True)
    started = CliRunner().invoke(cli, start)
    assert started.exit_code == 0, started.output
    assert (state / "journal.db").exists()
    # the upgrade's own files, written once its journal exists, are its own
    (state / "northbound-switched.json").write_text("[]")
    again = CliRunner().invoke(cli, start)
    assert "of an earlier upgrade" not in again.output, again.output
