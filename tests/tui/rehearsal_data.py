"""A rehearsal report as `issu rehearse` writes it (through its own model and writer), with
frozen figures: a snapshot with one row the 4.x -> 5.0 translator rejects."""

from __future__ import annotations

from pathlib import Path

from issu_tui.rehearse_report import RehearsalReport, Step, write_reports

VN = "3f6b2a1e-0c4d-4e5f-8a9b-1c2d3e4f5a6b"
REASON = "value is not JSON: Expecting property name enclosed in double quotes"


def _copy(tables: list[tuple[str, int, int, float, str]], seconds: float) -> dict[str, object]:
    cells = sum(t[1] for t in tables)
    return {"ok": True, "run_id": "r-1", "cells": cells,
            "quarantined": sum(t[2] for t in tables), "deleted": 0, "seconds": seconds,
            "cells_per_s": round(cells / seconds, 1),
            "tables": [{"table": name, "status": "ok", "cells": n, "partitions": n // 4,
                        "quarantined": q, "deleted": 0, "seconds": s, "translator": tr,
                        "errors": [], "note": ""} for name, n, q, s, tr in tables]}


def poisoned_report() -> RehearsalReport:
    report = RehearsalReport(
        snapshot={"path": "/srv/snapshots/prod-2026-12-01.json.gz", "cells": 1342,
                  "rows": 301, "znodes": 4, "keyspaces": ["config_db_uuid", "useragent"],
                  "zk_cluster_ids": [""], "tables": {}},
        from_version="4.1.0", to_version="5.0.0", started_at="2026-12-04 11:50:00 UTC",
        machine={"cpu": "Intel Xeon (2 cores)", "cores": 2, "kernel": "6.1"})
    report.steps = [Step(name, seconds) for name, seconds in (
        ("scratch clusters up", 41.2), ("clean the scratch clusters", 0.8),
        ("import the snapshot as old", 1.4), ("preflight", 0.1), ("pre-sync", 6.3),
        ("translated samples", 0.2), ("zk-sync", 0.4), ("verify", 2.9),
        ("run-sync under load", 9.7), ("post-sync", 3.1))]
    report.import_ = {"cells": 1342, "znodes": 4, "znodes_ignored": 0, "ephemerals_skipped": 0,
                      "seconds": 1.4, "cells_per_s": 958.6}
    report.pre_sync = _copy([("config_db_uuid.obj_uuid_table", 1040, 1, 4.1,
                              "contrail 4.x->5.0 obj_uuid_table"),
                             ("config_db_uuid.obj_fq_name_table", 160, 0, 1.2,
                              "contrail 4.x->5.0 obj_fq_name_table"),
                             ("config_db_uuid.obj_shared_table", 6, 0, 1.0, "identity")], 6.3)
    report.post_sync = _copy([("to_bgp_keyspace.route_target_table", 6, 0, 0.9, "identity"),
                              ("useragent.useragent_keyval_table", 1, 0, 0.8, "identity")],
                             3.1)
    report.quarantine = {"count": 1, "tables": {"config_db_uuid.obj_uuid_table": {
        "count": 1, "reasons": {REASON: 1},
        "samples": [{"key": VN, "column": "prop:broken", "reason": REASON}]}}}
    report.translated = [{"table": "config_db_uuid.obj_uuid_table", "old_key": VN,
                          "new_key": VN, "changed_cells": 2, "changes": [
                              {"before": ["type", '"virtual-network"'],
                               "after": ["type", '"virtual_network"']},
                              {"before": None, "after": ["prop:perms2", '{"owner": "admin"}']}]}]
    report.zk_sync = {"ok": True, "verified_nodes": 4, "differences": 0, "samples": [],
                      "missing_on_old": [], "seconds": 0.4}
    report.verify = {"ok": True, "totals": {"cells_compared": 1218, "missing": 0, "extra": 0,
                                            "different": 0},
                     "unverified": [], "differences": 0, "samples": [], "seconds": 2.9}
    report.run_sync = {"published": 20, "rate": 5.0, "load_seconds": 4.0, "applied": 20,
                       "failed": 0, "quarantined": 0, "lag_p50_s": 0.21, "lag_p99_s": 0.64,
                       "verify_after": {"ok": True, "differences": 0}}
    report.prediction = {"version_steps": ["4.x -> 5.0"], "production_cells": 1342,
                         "basis": "the snapshot's size", "pre_sync_cells": 1206,
                         "pre_sync_s": 6.3, "post_sync_cells": 7, "post_sync_s": 0.1}
    report.problems = ["1 cell(s) quarantined by the translators: they would not reach the "
                       "new cluster"]
    return report


def write_poisoned(directory: Path) -> Path:
    """`<directory>/poisoned.json` (and .md), as `issu rehearse --report` writes them."""
    _, js = write_reports(poisoned_report(), directory / "poisoned")
    return js
