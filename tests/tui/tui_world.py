"""A real journal with a believable upgrade in it, for the console's tests and benchmarks.

Everything is written through the Journal's own API; timestamps are then pinned to fixed
values so snapshots of the screens are identical from run to run.
"""

from __future__ import annotations

from pathlib import Path

from backends.analytics import (
    Alarm,
    AnalyticsSnapshot,
    ClusterAnalytics,
    Vrouter,
    XmppPeer,
    consolidate,
)
from issu_tui.config import IssuConfig
from issu_tui.console_api import ConsoleBackend, ConsoleOptions
from issu_tui.journal import Journal

T0 = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC
NOW = T0 + 3 * 3600 + 125.0


def config_for(state_dir: Path, *, analytics: dict[str, str] | None = None) -> IssuConfig:
    return IssuConfig.model_validate(config_data(state_dir, analytics=analytics))


def config_data(state_dir: Path, *, analytics: dict[str, str] | None = None
                ) -> dict[str, object]:
    """The config's data (for to_toml when a test needs the file)."""
    def cluster(name: str, version: str, octet: int) -> dict[str, object]:
        data: dict[str, object] = {
            "name": name, "version": version,
            "cassandra": {"hosts": [f"127.36.0.1{octet}"]},
            "zookeeper": {"hosts": [f"127.36.0.2{octet}:2181"]},
            "rabbit": {"hosts": ["127.36.0.31"], "vhost": "/" if octet == 1 else "/v2"},
            "control_nodes": [{"name": f"ctl-{name}", "address": f"127.36.0.10{octet}"}],
        }
        if analytics and name in analytics:
            data["analytics"] = {"url": analytics[name]}
        return data

    return {
        "old": cluster("old", "4.1.0", 1), "new": cluster("new", "5.0.0", 2),
        "state_dir": str(state_dir), "batch": {"size": 4, "parallel": 2},
    }


def build_journal(state_dir: Path, computes: int = 12, *, phase: str = "computes",
                  upgraded: int = 3, failed: int = 1, events: int = 40) -> Journal:
    journal = Journal.open(state_dir)
    journal.set_phase("plan", from_version="4.1.0", to_version="5.0.0", note="planned")
    for step in ("preflight", "pair", "pre-sync", "run-sync", "computes", "finalize", "done"):
        if phase == "plan":
            break
        journal.set_phase(step, note=f"{step} started")
        if step == phase:
            break
    width = len(str(computes))
    for i in range(1, computes + 1):
        journal.upsert_compute(f"cmp-{i:0{width}d}", f"127.36.{1 + i // 250}.{i % 250 + 1}",
                               version="4.1.0", cluster="old")
    names = [c.name for c in journal.computes()]
    for n, name in enumerate(names[:upgraded]):
        journal.transition_compute(name, "queued", "upgrade intent #1", batch=1)
        journal.transition_compute(name, "upgrading", "batch 1", last_action="upgrade")
        journal.record_command(name, "install", f"apt-get install -y contrail-vrouter=5.0.0 "
                               f"# {name}", 0, 12.5, "Setting up contrail-vrouter (5.0.0)\n", "")
        journal.transition_compute(name, "upgraded", "healthy on new", version="5.0.0",
                                   cluster="new", agent_state="Functional",
                                   gap_ms=180.0 + 10 * n)
    for name in names[upgraded:upgraded + failed]:
        journal.transition_compute(name, "queued", "upgrade intent #1", batch=1)
        journal.transition_compute(name, "upgrading", "batch 1", last_action="upgrade")
        journal.record_command(name, "restart", "systemctl restart contrail-vrouter-agent", 1,
                               3.0, "", "Job for contrail-vrouter-agent.service failed\n")
        journal.transition_compute(name, "failed", "restart failed (exit 1)",
                                   agent_state="Non-Functional")
    for name in names[upgraded + failed:]:
        journal.transition_compute(name, "old", "probed", agent_state="Functional")
    journal.set_counters("runsync", {"lag_s": 0.42, "lag_p50_s": 0.31, "lag_p99_s": 1.9,
                                     "applied": 12840, "failed": 0, "quarantined": 2,
                                     "applied_per_s": 37.5, "queue_depth": 3,
                                     "reconciled": 4})
    for table, copied in (("obj_uuid_table", 48213), ("obj_fq_name_table", 48213),
                          ("obj_shared_table", 12)):
        journal.set_counters("presync", {f"config_db_uuid.{table}.copied": copied,
                                         f"config_db_uuid.{table}.deleted": 0,
                                         f"config_db_uuid.{table}.quarantined":
                                             2 if table == "obj_uuid_table" else 0,
                                         f"config_db_uuid.{table}.slices_done": 64,
                                         f"config_db_uuid.{table}.slices_total": 64})
    journal.set_counters("verify", {"differences": 0, "checked": 96438, "at": T0 + 3 * 3600})
    for i in range(events):
        journal.event("runsync", f"reconciled range {i}: 0 differences")
    pin_times(journal)
    return journal


def pin_times(journal: Journal) -> None:
    """Replace every wall-clock timestamp with a fixed one (one second apart, in order)."""
    with journal.transaction() as db:
        for table in ("events", "compute_history", "command_output", "phase_history",
                      "intents"):
            db.execute(f"UPDATE {table} SET at = ? + id", (T0,))
        db.execute("UPDATE computes SET updated_at = ?", (T0,))
        db.execute("UPDATE counters SET updated_at = ?", (T0 + 3 * 3600,))
        db.execute("UPDATE upgrade SET phase_started_at = ?", (T0 + 3 * 3600,))


def make_backend(journal: Journal, config: IssuConfig, *, read_only: bool = False,
                 owns: bool = True, lag_history: bool = True) -> ConsoleBackend:
    options = ConsoleOptions(read_only=read_only,
                             read_only_reason="started with --read-only" if read_only else "",
                             owns_executor=owns and not read_only, config_path="issu.toml",
                             clock=lambda: NOW, actor="tui:test")
    backend = ConsoleBackend(config, journal, options)
    if lag_history:  # as if run-sync had been running
        backend.seed_lag_history([0.3, 0.5, 0.4, 0.9, 1.6, 0.8, 0.5, 0.4, 0.35, 0.3, 0.6,
                                  0.42])
    return backend


def frozen_analytics(journal: Journal) -> AnalyticsSnapshot:
    """What both analytics-api would say about the journal's computes (fixed times)."""
    old: dict[str, Vrouter] = {}
    new: dict[str, Vrouter] = {}
    for row in journal.computes():
        on_new = row.cluster == "new"
        target = new if on_new else old
        ctl = "127.36.0.102" if on_new else "127.36.0.101"
        state = "Non-Functional" if row.state == "failed" else "Functional"
        target[row.name] = Vrouter(row.name, "new" if on_new else "old", row.address,
                                   row.version or "4.1.0", state,
                                   (XmppPeer(ctl, row.state != "failed", True),))
    alarms = (Alarm("old", "vrouter", "cmp-04", "process-status", 0, "Process Failure.", False,
                    T0 + 3 * 3600),
              Alarm("new", "control-node", "ctl-new", "bgp-connectivity", 1,
                    "BGP peer mismatch. Not enough BGP peers are up.", False, T0 + 3 * 3600))
    clusters = {
        "old": ClusterAnalytics("old", "http://127.36.0.101:8081", NOW, vrouters=old,
                                control_nodes=("ctl-old",), alarms=alarms[:1]),
        "new": ClusterAnalytics("new", "http://127.36.0.102:8081", NOW, vrouters=new,
                                control_nodes=("ctl-new",), alarms=alarms[1:]),
    }
    computes = consolidate(clusters, {"old": {"127.36.0.101"}, "new": {"127.36.0.102"}})
    return AnalyticsSnapshot(clusters, computes, alarms, NOW)


PREFLIGHT_CHECKS = [
    {"name": "versions", "ok": True, "severity": "error",
     "detail": "old 4.1.0 -> new 5.0.0: a supported path", "fix": ""},
    {"name": "cassandra old", "ok": True, "severity": "error",
     "detail": "3/3 nodes up, quorum holds with 1 down", "fix": ""},
    {"name": "disk new 127.36.0.12", "ok": False, "severity": "error",
     "detail": "12.0 GiB free under /var/lib/cassandra; the copy needs 18.4 GiB "
               "(config_db_uuid 9.2 GiB x 2)",
     "fix": "free 6.4 GiB on 127.36.0.12 (nodetool clearsnapshot) or add disk, then run "
            "preflight again"},
    {"name": "ssh cmp-07", "ok": False, "severity": "error",
     "detail": "host key for 127.36.1.8 not in known_hosts (/etc/issu/known_hosts)",
     "fix": "ssh-keyscan -t ed25519 127.36.1.8 >> /etc/issu/known_hosts after checking its "
            "fingerprint"},
    {"name": "writers on new", "ok": False, "severity": "warning",
     "detail": "contrail-api runs on 127.36.0.22 (new)", "fix": "pre-sync stops it"},
    {"name": "analytics", "ok": True, "severity": "error",
     "detail": "both analytics-api answer (old 12 vrouters, new 0)", "fix": ""},
]


def add_preflight(journal: Journal, *, passed: bool = False) -> int:
    """A finished preflight run (as the executor records it), at a fixed time."""
    import json

    checks = [dict(c, ok=True) for c in PREFLIGHT_CHECKS] if passed else PREFLIGHT_CHECKS
    intent = journal.add_intent("phase", {"target": "preflight"}, "tui:alice@ops1")
    result = {"ok": True, "phase": "preflight", "done": [], "checks": checks} if passed else \
        {"ok": False, "error": "preflight refused: 2 checks", "checks": checks}
    journal.finish_intent(intent, "done" if passed else "failed", json.dumps(result))
    pin_times(journal)  # the intent and the events it wrote too
    return intent
