"""`issu rehearse` end to end: scratch clusters from the demo's services launcher (real
Cassandra, ZooKeeper and RabbitMQ on their own loopback net), a snapshot imported as old, the
real translators, zk-sync, verify and run-sync under load."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from backends.snapshot.writer import open_snapshot
from issu_tui.cli import cli
from issu_tui.rehearse import scratch_factory
from tests import contrail_data as cd

BASE_TS = 1_700_000_000_000_000
# the scratch net: the test net + 10 (demo and rehearsal nets are the test net's + 10)
REHEARSAL_NET = int(os.environ.get("ISSU_TEST_NET", "30")) + 10

ZK_TREE = {
    "fq-name-to-uuid/virtual-network:default-domain:project-0:vn-0": b"uuid-1",
    "api-server/subnets/default-domain:project-0:vn-0:10.0.0.0/24/10.0.0.1": b"uuid-1",
    "id/virtual-networks/0000000001": b"default-domain:project-0:vn-0",
    "id/security-groups/id/0000008000": b"default-domain:project-0:default",
}


def write_snapshot(path: Path, ds: cd.Dataset) -> None:
    """The dataset as a production snapshot (4.x shapes), ZooKeeper included."""
    with open_snapshot(path) as w:
        for keyspace, tables in cd.CONTRAIL_TABLES.items():
            w.keyspace(keyspace)
            for table in tables:
                w.table(table)
                for key, cells in ds.tables.get((keyspace, table), {}).items():
                    w.row(key)
                    for i, (column, value) in enumerate(sorted(cells.items())):
                        w.cell(column, value, BASE_TS + i)
        for rel, data in ZK_TREE.items():
            w.znode(f"/{rel}/", data, (1, 1, 0, 0, 0, 0, 0, 0, len(data), 0, 1))


def _rehearse(tmp_path: Path, snapshot: Path, name: str, *extra: str):  # type: ignore[no-untyped-def]
    base = tmp_path / name
    args = ["rehearse", "--snapshot", str(snapshot), "--from-version", "4.1.0",
            "--to-version", "5.0.0", "--net", str(REHEARSAL_NET), "--rate", "5",
            "--load-seconds", "4", "--report", str(base), *extra]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    report = json.loads(base.with_name(name + ".json").read_text()) if \
        base.with_name(name + ".json").exists() else None
    return result, report


@pytest.mark.slow
def test_rehearsal_clean_then_quarantined(launcher, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """One pair of scratch clusters serves both rehearsals (kept up after the first)."""
    try:
        _clean_then_quarantined(tmp_path)
    finally:  # whatever failed, nothing stays running
        scratch_factory()(REHEARSAL_NET, None).down()


def _clean_then_quarantined(tmp_path: Path) -> None:
    ds = cd.generate(2, 3, 2)
    clean = tmp_path / "clean.json.gz"
    write_snapshot(clean, ds)
    result, report = _rehearse(tmp_path, clean, "clean", "--keep-services")
    assert result.exit_code == 0, result.output
    assert report["ok"] and not report["problems"] and not report["refusals"]
    assert report["import"]["cells"] == ds.cell_count()
    assert report["pre_sync"]["quarantined"] == 0
    assert report["verify"]["differences"] == 0 and report["zk_sync"]["differences"] == 0
    assert report["run_sync"]["applied"] == report["run_sync"]["published"] > 0
    assert report["run_sync"]["verify_after"]["differences"] == 0
    translated = {s["table"] for s in report["translated"]}
    assert "config_db_uuid.obj_uuid_table" in translated
    assert any(c["before"] and c["before"][0] == "type" and c["after"][1] != c["before"][1]
               for s in report["translated"] for c in s["changes"])
    assert report["prediction"]["pre_sync_s"] is not None
    assert (tmp_path / "clean.md").read_text().count("PASSED") == 1

    poisoned = cd.generate(2, 3, 2)
    vn = poisoned.uuids_of("virtual-network")[0]
    poisoned.tables[cd.UUID_TABLE][vn]["prop:broken"] = "{not json"
    bad = tmp_path / "poisoned.json"
    write_snapshot(bad, poisoned)
    result, report = _rehearse(tmp_path, bad, "poisoned")
    assert result.exit_code == 1, result.output
    assert report["quarantine"]["count"] == 1
    entry = report["quarantine"]["tables"]["config_db_uuid.obj_uuid_table"]
    assert entry["samples"] == [{"key": vn, "column": "prop:broken",
                                 "reason": entry["samples"][0]["reason"]}]
    assert "not JSON" in entry["samples"][0]["reason"]
    assert any("quarantined" in p for p in report["problems"])
    assert "quarantined in config_db_uuid.obj_uuid_table: 1 x value is not JSON" in result.output


def test_truncated_snapshot_is_refused_before_any_service_starts(tmp_path: Path) -> None:
    snapshot = tmp_path / "cut.json"
    write_snapshot(snapshot, cd.generate(1, 1, 1))
    text = snapshot.read_text()
    snapshot.write_text(text[: len(text) // 2])
    result = CliRunner().invoke(cli, ["rehearse", "--snapshot", str(snapshot),
                                      "--from-version", "4.1.0", "--to-version", "5.0.0",
                                      "--net", str(REHEARSAL_NET)])
    assert result.exit_code == 2
    assert f"{snapshot}, offset" in result.output and "truncated" in result.output
