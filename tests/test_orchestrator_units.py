"""Orchestrator pieces that need no services: batch scheduler semantics, northbound file
edits, the plan of each approach, the phase/intent bookkeeping in a real journal."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from issu_tui.config import AnalyticsConfig, IssuConfig
from issu_tui.journal import Journal
from issu_tui.orchestrator.approaches import APPROACHES
from issu_tui.orchestrator.northbound import Edit, apply_edits
from issu_tui.orchestrator.plan import build_plan
from issu_tui.orchestrator.scheduler import BatchScheduler, make_batches


class Recorder:
    """A run_one that records start order and the highest concurrency seen."""

    def __init__(self, fail: set[str] = frozenset(), hold_s: float = 0.02) -> None:
        self.fail = set(fail)
        self.hold_s = hold_s
        self.started: list[tuple[str, int]] = []
        self.running = 0
        self.peak = 0
        self.lock = threading.Lock()
        self.canary_alone: list[bool] = []

    def __call__(self, name: str, batch: int) -> bool:
        with self.lock:
            self.started.append((name, batch))
            self.running += 1
            self.peak = max(self.peak, self.running)
        time.sleep(self.hold_s)
        with self.lock:
            self.running -= 1
        return name not in self.fail


NAMES = [f"c{i:02}" for i in range(1, 11)]


def test_batches_split_in_order() -> None:
    assert make_batches(NAMES[:5], 2) == [["c01", "c02"], ["c03", "c04"], ["c05"]]
    with pytest.raises(ValueError):
        make_batches(NAMES, 0)


def test_canary_runs_alone_first_then_parallel_limit_holds() -> None:
    rec = Recorder(hold_s=0.05)
    seen_while_canary: list[int] = []

    def run_one(name: str, batch: int) -> bool:
        if name == "c01":
            seen_while_canary.append(len(rec.started))
        return rec(name, batch)

    outcome = BatchScheduler(run_one, batch_size=4, parallel=3, canary=1).run(NAMES)
    assert outcome.ok and sorted(outcome.succeeded) == NAMES
    assert rec.started[0][0] == "c01"
    assert seen_while_canary == [0]
    # nothing else started before the canary finished: the second start came after it
    assert rec.peak <= 3
    # the canary is a batch of its own, then batches of 4: [1] [4] [4] [1]
    assert [b for _, b in rec.started] == [1, 2, 2, 2, 2, 3, 3, 3, 3, 4]
    assert outcome.batches_run == 4


def test_computes_waiting_for_a_slot_are_prepared_before_they_start() -> None:
    """The runner opens the SSH connections of the computes next in line (prepare) while
    others run: every compute after the canary is prepared before it starts, at most
    `lookahead` ahead of the running ones, and none is started twice."""
    rec = Recorder(hold_s=0.02)
    prepared: list[str] = []
    started_when_prepared: dict[str, int] = {}

    def prepare(name: str) -> None:
        if name not in prepared:
            prepared.append(name)
            started_when_prepared[name] = len(rec.started)

    outcome = BatchScheduler(rec, batch_size=10, parallel=2, canary=1, prepare=prepare,
                             lookahead=2).run(NAMES)
    assert outcome.ok and sorted(outcome.succeeded) == NAMES
    assert [n for n, _ in rec.started].count("c05") == 1
    # c01 is the canary (alone); c02 and c03 start at once; from c04 on each was prepared
    assert set(NAMES[3:]) <= set(prepared) and "c01" not in prepared
    for name in NAMES[3:]:
        started_before = [n for n, _ in rec.started].index(name)
        assert started_when_prepared[name] <= started_before
        assert started_before - started_when_prepared[name] <= 2 + 2  # running + lookahead


def test_failed_canary_stops_everything() -> None:
    rec = Recorder(fail={"c01"})
    outcome = BatchScheduler(rec, batch_size=5, parallel=5, canary=2, max_failures=3).run(NAMES)
    # canaries run one at a time; the second still runs (it was started as a canary)
    assert outcome.failed == ["c01"]
    assert [n for n, _ in rec.started] == ["c01"]
    assert sorted(outcome.not_started) == NAMES[1:]
    assert "canary" in outcome.stopped_reason


def test_threshold_stops_new_starts_and_lets_running_finish() -> None:
    rec = Recorder(fail={"c02", "c03"}, hold_s=0.01)
    outcome = BatchScheduler(rec, batch_size=3, parallel=1, canary=0,
                             max_failures=1).run(NAMES)
    # c01 ok, c02 fails (1 <= threshold), c03 fails (2 > 1): nothing after it starts
    assert [n for n, _ in rec.started] == ["c01", "c02", "c03"]
    assert outcome.failed == ["c02", "c03"]
    assert outcome.not_started == NAMES[3:]
    assert "threshold" in outcome.stopped_reason


def test_failures_within_threshold_go_on() -> None:
    rec = Recorder(fail={"c04"})
    outcome = BatchScheduler(rec, batch_size=5, parallel=2, canary=1,
                             max_failures=1).run(NAMES)
    assert outcome.failed == ["c04"] and not outcome.not_started
    assert len(outcome.succeeded) == 9


def test_stop_and_pause() -> None:
    stop = threading.Event()
    paused = threading.Event()
    rec = Recorder(hold_s=0.01)

    def run_one(name: str, batch: int) -> bool:
        if name == "c03":
            stop.set()
        return rec(name, batch)

    outcome = BatchScheduler(run_one, batch_size=10, parallel=1, canary=0,
                             should_stop=stop.is_set).run(NAMES)
    assert [n for n, _ in rec.started] == ["c01", "c02", "c03"]
    assert outcome.not_started == NAMES[3:]
    assert outcome.stopped_reason == "stopped by the operator"

    waits = []

    def wait_if_paused() -> None:
        waits.append(paused.is_set())

    outcome = BatchScheduler(Recorder(), batch_size=2, parallel=2, canary=0,
                             wait_if_paused=wait_if_paused).run(NAMES[:4])
    assert outcome.ok and len(waits) == 4  # asked before every start


def test_northbound_edits_keep_other_lines() -> None:
    text = ("# neutron contrail plugin\n[APISERVER]\napi_server_ip = 10.0.0.1\n"
            "api_server_port = 8082\nmultitenancy = True\n\n[KEYSTONE]\nauth_url = x\n")
    out = apply_edits(text, [Edit("APISERVER", "api_server_ip", "10.0.0.2"),
                             Edit("APISERVER", "api_server_port", "9082")])
    assert "api_server_ip = 10.0.0.2" in out and "api_server_port = 9082" in out
    assert "# neutron contrail plugin" in out and "multitenancy = True" in out
    assert "auth_url = x" in out and "10.0.0.1" not in out
    assert apply_edits(out, [Edit("APISERVER", "api_server_ip", "10.0.0.2")]) == out
    # a missing section or key is added; properties files have no sections
    added = apply_edits("[DEFAULT]\nlog_level = INFO\n", [Edit("VNC", "vnc_endpoint_ip", "h")])
    assert added.endswith("[VNC]\nvnc_endpoint_ip = h\n")
    props = apply_edits("api.hostname=old\nvcenter.url=x\n", [Edit(None, "api.hostname", "n"),
                                                               Edit(None, "api.port", "8082")])
    assert props == "api.hostname=n\nvcenter.url=x\napi.port=8082\n"


def _config(tmp_path: Path, shared: bool = False) -> IssuConfig:
    new_cass = "10.0.0.11" if shared else "10.0.1.11"
    return IssuConfig.model_validate({
        "state_dir": str(tmp_path),
        "old": {"name": "old", "version": "4.1.0",
                "cassandra": {"hosts": ["10.0.0.11"], "prefix": "v1" if shared else ""},
                "zookeeper": {"hosts": ["10.0.0.21"]}, "rabbit": {"hosts": ["10.0.0.31"]},
                "api_server": {"url": "http://10.0.0.101:8082"},
                "control_nodes": [{"name": "old-ctl", "address": "10.0.0.101"}]},
        "new": {"name": "new", "version": "5.0.0",
                "cassandra": {"hosts": [new_cass], "prefix": "v2" if shared else ""},
                "zookeeper": {"hosts": ["10.0.1.21"]}, "rabbit": {"hosts": ["10.0.1.31"]},
                "api_server": {"url": "http://10.0.1.102:8082"},
                "control_nodes": [{"name": "new-ctl", "address": "10.0.1.102"}]},
    })


def test_plan_per_approach_names_what_it_touches(tmp_path: Path) -> None:
    config = _config(tmp_path)
    for approach in APPROACHES:
        steps = build_plan(config, approach)
        phases = [s.phase for s in steps]
        assert phases.index("preflight") < phases.index("pair") < phases.index("pre-sync") \
            < phases.index("run-sync") < phases.index("computes") < phases.index("finalize")
        assert sum(s.point_of_no_return for s in steps) == 1
        assert all(s.touches for s in steps)
    shared = _config(tmp_path, shared=True)
    grow = build_plan(shared.model_copy(update={"new": shared.new.model_copy(update={
        "cassandra": shared.new.cassandra.model_copy(
            update={"hosts": ["10.0.0.11", "10.0.0.12", "10.0.0.13"]})})}), "grow")
    assert next(s.phase for s in grow if "10.0.0.12" in " ".join(s.touches)) == "plan"
    assert any("replication factor 3" in s.title and s.phase == "plan" for s in grow)
    assert any("back to replication factor 1" in s.title for s in grow)
    stay = build_plan(config, "stay")
    assert any("stay keeps 5 database nodes" in s.title for s in stay)
    pair = next(s for s in build_plan(config, "separate") if s.phase == "pair")
    assert any("10.0.1.102" in t for t in pair.touches)
    with pytest.raises(ValueError):
        build_plan(config, "sideways")


def test_step_markers_and_intents_survive_reopen(tmp_path: Path) -> None:
    from issu_tui.orchestrator.context import Context
    from issu_tui.orchestrator.executor import Executor

    config = _config(tmp_path)
    journal = Journal.open(tmp_path)
    ctx = Context(config=config, config_path=tmp_path / "issu.toml", journal=journal)
    executor = Executor(ctx)
    executor.start()
    assert journal.phase().phase == "plan"
    ctx.mark_step("finalize.fence-old")
    intent = journal.add_intent("pause", {}, "test")
    executor.serve(until_idle=True)
    assert ctx.paused.is_set()
    assert journal.intents(None)[-1].id == intent and journal.intents(None)[-1].status == "done"
    bad = journal.add_intent("upgrade", {"computes": ["x"]}, "test")
    executor.serve(until_idle=True)
    failed = next(i for i in journal.intents(None) if i.id == bad)
    assert failed.status == "failed" and "run-sync" in failed.result
    executor.close()
    journal.close()
    # a second executor sees the same markers and re-queues nothing that finished
    journal = Journal.open(tmp_path)
    ctx = Context(config=config, config_path=tmp_path / "issu.toml", journal=journal)
    assert ctx.step_done("finalize.fence-old")
    summary = Executor(ctx).start()
    assert summary["requeued_intents"] == []
    journal.close()


def test_northbound_switch_rewrites_and_signals(tmp_path: Path) -> None:
    import subprocess
    import sys

    from issu_tui.orchestrator.context import Context
    from issu_tui.orchestrator.northbound import load_clients, switch_client

    config = _config(tmp_path)
    config.new.analytics = AnalyticsConfig(url="http://10.0.1.102:8081")
    plugin = tmp_path / "ContrailPlugin.ini"
    plugin.write_text("[APISERVER]\napi_server_ip = 10.0.0.101\napi_server_port = 8082\n"
                      "contrail_extensions = ipam\n")
    nodemgr = tmp_path / "nodemgr.conf"
    nodemgr.write_text("[DEFAULT]\ncollectors = 10.0.0.101:8086\nlog_level = SYS_INFO\n")
    # a client process that reports each SIGHUP it gets
    marker = tmp_path / "hup"
    child = subprocess.Popen([sys.executable, "-c", (
        "import signal, sys, time, pathlib\n"
        f"p = pathlib.Path({str(marker)!r})\n"
        "signal.signal(signal.SIGHUP, lambda *a: p.write_text(str(int(p.read_text() or 0) + 1)"
        " if p.exists() else '1'))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        (tmp_path / "client.pid").write_text(f"{child.pid}\n")
        (tmp_path / "northbound.toml").write_text(
            '[[client]]\nkind = "neutron"\npath = "ContrailPlugin.ini"\n'
            'pid_file = "client.pid"\n'
            '[[client]]\nkind = "collector"\npath = "nodemgr.conf"\n')
        clients = load_clients(tmp_path / "northbound.toml")
        journal = Journal.open(tmp_path)
        ctx = Context(config=config, config_path=tmp_path / "issu.toml", journal=journal)
        def hups(count: str) -> None:
            deadline = time.monotonic() + 10
            while not (marker.exists() and marker.read_text() == count):
                assert time.monotonic() < deadline, f"the client saw no SIGHUP number {count}"
                time.sleep(0.05)

        first = switch_client(ctx, clients[0])
        assert "rewritten" in first and f"SIGHUP to pid {child.pid}" in first
        hups("1")
        text = plugin.read_text()
        assert "api_server_ip = 10.0.1.102" in text and "contrail_extensions = ipam" in text
        assert (tmp_path / "ContrailPlugin.ini.issu-backup").read_text().count("10.0.0.101")
        assert "already new" in switch_client(ctx, clients[0])  # signalled again: idempotent
        hups("2")
        switch_client(ctx, clients[1])
        assert "collectors = 10.0.1.102:8086" in nodemgr.read_text()
        assert "log_level = SYS_INFO" in nodemgr.read_text()
        journal.close()
    finally:
        child.kill()
        child.wait()


def test_quarantined_cells_block_finalize_unless_forced(tmp_path: Path) -> None:
    from issu_tui.orchestrator.context import Context, OrchestratorError
    from issu_tui.orchestrator.finalize import quarantine_gate

    journal = Journal.open(tmp_path)
    ctx = Context(config=_config(tmp_path), config_path=tmp_path / "issu.toml", journal=journal)
    report = {"totals": {"missing": 0, "extra": 0, "different": 0, "quarantined": 3},
              "tables": [{"keyspace": "config_db_uuid", "table": "obj_uuid_table",
                          "quarantined": 2, "samples": []},
                         {"keyspace": "config_db_uuid", "table": "obj_fq_name_table",
                          "quarantined": 1, "samples": []},
                         {"keyspace": "useragent", "table": "useragent_keyval_table",
                          "quarantined": 0, "samples": []}]}
    with pytest.raises(OrchestratorError) as refused:
        quarantine_gate(ctx, report, force=False, reason="")
    message = str(refused.value)
    assert "3 quarantined" in message
    assert "config_db_uuid.obj_uuid_table (2)" in message
    assert "config_db_uuid.obj_fq_name_table (1)" in message and "useragent" not in message
    accepted = quarantine_gate(ctx, report, force=True, reason="ticket 42: stale objects")
    assert "forced: ticket 42" in accepted
    recorded = [e for e in journal.events() if "quarantined" in e.message]
    assert recorded and "ticket 42" in recorded[-1].message
    assert quarantine_gate(ctx, {"tables": [{"keyspace": "k", "table": "t", "quarantined": 0}]},
                           force=False, reason="") == ""
    journal.close()


def test_runsync_is_supervised_during_a_long_intent_and_left_stopped_by_finalize(
        tmp_path: Path) -> None:
    """A run-sync crash during a long batch is noticed (supervise runs while busy); once
    finalize marked its stop, the supervisor no longer wants run-sync."""
    from issu_tui.orchestrator import finalize as fin
    from issu_tui.orchestrator.context import Context
    from issu_tui.orchestrator.executor import Executor
    from issu_tui.orchestrator.phases import phase_marker

    release = threading.Event()

    class LongBatch(Executor):
        supervised_while_busy = 0

        def handle(self, intent: Any) -> dict[str, Any]:
            release.wait(30)
            return {"ok": True}

        def supervise(self) -> str:
            if self.busy:
                LongBatch.supervised_while_busy += 1
                release.set()
            return "running"

    journal = Journal.open(tmp_path)
    ctx = Context(config=_config(tmp_path), config_path=tmp_path / "issu.toml", journal=journal)
    executor = LongBatch(ctx)
    executor.start()
    journal.add_intent("phase", {"target": "post-sync"}, "test")  # a long phase, say
    executor.serve(until_idle=True, poll_s=0.01, supervise_s=0.01)
    assert LongBatch.supervised_while_busy > 0
    executor.close()

    plain = Executor(ctx)
    journal.set_phase("computes")
    ctx.mark_step(phase_marker("run-sync"))
    assert plain.runsync_wanted()
    ctx.mark_step(fin.RUNSYNC_STOPPING)
    assert not plain.runsync_wanted()
    assert plain.supervise() == "not needed"
    journal.close()


def test_finalize_refuses_without_northbound_file_unless_told(tmp_path: Path) -> None:
    from issu_tui.orchestrator import finalize as fin
    from issu_tui.orchestrator.context import Context, OrchestratorError, StepInterrupted
    from issu_tui.orchestrator.northbound import load_clients

    journal = Journal.open(tmp_path)
    ctx = Context(config=_config(tmp_path), config_path=tmp_path / "issu.toml", journal=journal)
    with pytest.raises(OrchestratorError, match=r"no northbound clients file.*--no-northbound"):
        fin.finalize(ctx, northbound_file=tmp_path / "northbound.toml")
    (tmp_path / "northbound.toml").write_text("# nobody\n")
    with pytest.raises(OrchestratorError, match=r"lists no \[\[client\]\]"):
        fin.finalize(ctx, northbound_file=tmp_path / "northbound.toml")
    with pytest.raises(OrchestratorError):
        load_clients(None)
    assert not any(s.startswith("finalize.") for s in journal.steps_done())
    # --no-northbound goes on, and says so in the journal (stopped before the first step:
    # the unit config's clusters are not reachable)
    ctx.stop.set()
    with pytest.raises(StepInterrupted):
        fin.finalize(ctx, northbound_file=tmp_path / "absent.toml", no_northbound=True)
    recorded = [e for e in journal.events() if e.fields.get("no_northbound")]
    assert recorded and "--no-northbound" in recorded[0].message
    journal.close()


def test_a_leaving_executor_hands_over_only_what_the_operator_stopped(tmp_path: Path) -> None:
    """An executor leaving (its console lost the terminal) requeues a run that its leaving
    stopped; a run the failure gate stopped stays stopped, so the next executor does not
    retry its failed computes with a fresh failure budget."""
    from issu_tui.orchestrator.context import Context, StepInterrupted
    from issu_tui.orchestrator.executor import Executor
    from issu_tui.orchestrator.scheduler import OPERATOR_STOP, ScheduleOutcome

    class Runner:
        def __init__(self, reason: str) -> None:
            self.reason = reason

        def run(self, action: str, names: list[str], **_: Any) -> ScheduleOutcome:
            return ScheduleOutcome(succeeded=["c1"], failed=["c2", "c3"],
                                   not_started=["c4"], stopped_reason=self.reason)

    journal = Journal.open(tmp_path)
    ctx = Context(config=_config(tmp_path), config_path=tmp_path / "issu.toml", journal=journal)
    gate = Executor(ctx, runner=Runner("2 failures passed the threshold of 1"))  # type: ignore[arg-type]
    gate.shutdown.set()
    result = gate.computes("upgrade", {"computes": ["c1", "c2", "c3", "c4"]})
    assert result["stopped_reason"].startswith("2 failures") and not result["ok"]
    leaving = Executor(ctx, runner=Runner(OPERATOR_STOP))  # type: ignore[arg-type]
    leaving.shutdown.set()
    with pytest.raises(StepInterrupted, match="the next one resumes"):
        leaving.computes("upgrade", {"computes": ["c1", "c2", "c3", "c4"]})
    journal.close()


def test_runsync_intent_holds_runsync_stopped_until_started_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`R` in the console: a runsync stop intent stops run-sync and the supervisor leaves it
    stopped (finalize refuses meanwhile); a start intent runs it again."""
    import json
    import sys

    from issu_tui.orchestrator import finalize as fin
    from issu_tui.orchestrator import phases, syncproc
    from issu_tui.orchestrator.context import Context, OrchestratorError
    from issu_tui.orchestrator.executor import Executor

    # run-sync's own start-up is not the subject: a long-lived process stands in for it
    monkeypatch.setattr(syncproc, "issu_argv",
                        lambda: [sys.executable, "-c", "import time; time.sleep(600)"])
    journal = Journal.open(tmp_path)
    ctx = Context(config=_config(tmp_path), config_path=tmp_path / "issu.toml", journal=journal)
    executor = Executor(ctx)
    try:
        journal.set_phase("run-sync")
        journal.add_intent("runsync", {"action": "stop"}, "test")  # before its phase ran
        executor.serve(until_idle=True, poll_s=0.01)
        refused = journal.intents(None)[-1]
        assert refused.status == "failed" and "not been started" in refused.result
        ctx.mark_step(phases.phase_marker("run-sync"))
        executor.runsync.start()
        pid = executor.runsync.pid()
        assert pid is not None and executor.runsync.running()

        journal.add_intent("runsync", {"action": "stop"}, "tui:test")
        executor.serve(until_idle=True, poll_s=0.01)
        assert journal.intents(None)[-1].status == "done"
        assert not executor.runsync.running() and not syncproc._alive(pid)
        assert executor.supervise() == "not needed"  # held: not restarted
        assert not executor.runsync.running()
        with pytest.raises(OrchestratorError, match="held stopped by the operator"):
            executor.finalize({})
        assert any("held stopped" in e.message for e in journal.events())

        journal.add_intent("runsync", {"action": "start"}, "tui:test")
        executor.serve(until_idle=True, poll_s=0.01)
        started = journal.intents(None)[-1]
        assert started.status == "done", started.result
        assert json.loads(started.result)["action"] == "start"
        assert executor.runsync.running() and executor.runsync.pid() != pid
        assert not journal.step_done(phases.RUNSYNC_HELD)

        ctx.mark_step(fin.RUNSYNC_STOPPING)  # finalize stops it from now on, not the operator
        journal.add_intent("runsync", {"action": "stop"}, "tui:test")
        executor.serve(until_idle=True, poll_s=0.01)
        assert "finalize stops run-sync itself" in journal.intents(None)[-1].result
    finally:
        executor.runsync.stop()
        journal.close()


def test_plan_says_what_settle_old_writers_waits_on(tmp_path: Path) -> None:
    """The queues of old's writers where an old controller's profile can list them, else
    the tables (said to be a heuristic)."""
    config = _config(tmp_path)

    def finalize_touches(config: IssuConfig) -> str:
        return " | ".join(t for s in build_plan(config, "separate") if s.phase == "finalize"
                          for t in s.touches)

    assert ("old's writers' tables on old unchanged for 5s (no `queues` step in old's "
            "controller profiles: a heuristic)") in finalize_touches(config)
    key = tmp_path / "key"
    key.write_text("x")
    ctl = {"name": "old-ctl-1", "address": "10.0.0.101", "ssh_key": str(key),
           "profile": "site", "roles": ["config", "database"]}
    with_queues = IssuConfig.model_validate({
        **config.model_dump(mode="json"),
        "old": {**config.old.model_dump(mode="json"), "controllers": [ctl]},
        "ssh": {"known_hosts": str(key)},
        "controller_profiles": {"site": {
            "base": "systemd", "queues": "rabbitmqctl -q list_queues -p {vhost} "
            "--no-table-headers name messages_ready messages_unacknowledged"}}})
    assert ("old's writers' queues on old's broker (vhost /) drained and acknowledged, "
            "listed over SSH on old-ctl-1 (profile site, step queues); one queue expected "
            "per writer: schema-transformer on old-ctl-1, svc-monitor on old-ctl-1, "
            "device-manager on old-ctl-1") in finalize_touches(with_queues)


def test_settle_lists_the_queues_on_the_brokers_host(tmp_path: Path) -> None:
    """`rabbitmqctl` answers for the node it runs on: of the old hosts whose profile has a
    `queues` step, the one on old's broker is asked, whatever the inventory's order (a
    database host listed first that runs no broker made finalize fail)."""
    from issu_tui.orchestrator.settle import queues_host

    config = _config(tmp_path)
    key = tmp_path / "key"
    key.write_text("x")

    def host(name: str, address: str) -> dict[str, object]:
        return {"name": name, "address": address, "ssh_key": str(key), "profile": "site",
                "roles": ["database"]}

    def with_hosts(*hosts: dict[str, object]) -> IssuConfig:
        return IssuConfig.model_validate({
            **config.model_dump(mode="json"),
            "old": {**config.old.model_dump(mode="json"), "controllers": list(hosts),
                    "rabbit": {**config.old.rabbit.model_dump(mode="json"),
                               "hosts": ["10.0.0.31"]}},
            "ssh": {"known_hosts": str(key)},
            "controller_profiles": {"site": {"base": "systemd", "queues": "rabbitmqctl -q "
                                             "list_queues -p {vhost} name"}}})

    chosen = queues_host(with_hosts(host("cassandra-1", "10.0.0.11"),
                                    host("rabbitmq-1", "10.0.0.31")))
    assert chosen is not None and chosen.name == "rabbitmq-1"
    # no host on the broker: the first that can list them
    chosen = queues_host(with_hosts(host("cassandra-1", "10.0.0.11")))
    assert chosen is not None and chosen.name == "cassandra-1"


def test_settle_expects_one_queue_per_writer_on_any_of_its_hosts(tmp_path: Path) -> None:
    """With several config hosts Contrail's writers are active-backup (only the active one
    has a queue): one queue per writer, named after any of its hosts (name, FQDN, address);
    a queue named after no host of the inventory does not count."""
    from issu_tui.orchestrator.settle import expected_writers, queue_of

    config = _config(tmp_path)
    key = tmp_path / "key"
    key.write_text("x")
    hosts = [{"name": f"ctl-{i}", "address": f"10.0.0.{i}", "ssh_key": str(key),
              "profile": "systemd", "roles": ["config"]} for i in (1, 2, 3)]
    three = IssuConfig.model_validate({
        **config.model_dump(mode="json"),
        "old": {**config.old.model_dump(mode="json"), "controllers": hosts},
        "ssh": {"known_hosts": str(key)}})
    expected = expected_writers(three)
    assert sorted(expected) == ["device-manager", "schema-transformer", "svc-monitor"]
    assert [h.name for h in expected["svc-monitor"]] == ["ctl-1", "ctl-2", "ctl-3"]
    st = expected["schema-transformer"]
    assert queue_of("schema-transformer", st, ["schema_transformer.ctl-2.example.org"])
    assert queue_of("schema-transformer", st, ["schema_transformer.10.0.0.3"])
    assert queue_of("svc-monitor", expected["svc-monitor"], ["svc_mon.ctl-1"])
    assert queue_of("schema-transformer", st, ["schema_transformer.ctl-22",
                                               "device_manager.ctl-1"]) is None


def test_abort_waits_for_old_api_server_it_just_started_before_unfencing_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Abort starts old's config services, then reopens old's api-server: one in a container
    takes seconds to listen, and its first refused connection failed the whole abort (seen
    in `make demo`, container mode, at revert). A real socket that starts listening late."""
    import socket
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from issu_tui.orchestrator import finalize as fin
    from issu_tui.orchestrator.context import Context
    from tests.http_reply import send_json

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    asked: list[str] = []

    class Api(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            asked.append(self.path)
            send_json(self, {"northbound_open": True})

        def log_message(self, *_: object) -> None:
            pass

    servers: list[HTTPServer] = []

    def listen_late() -> None:
        time.sleep(1.5)
        server = HTTPServer(("127.0.0.1", port), Api)
        servers.append(server)
        server.serve_forever(poll_interval=0.05)

    base = _config(tmp_path)
    config = IssuConfig.model_validate({**base.model_dump(mode="json"), "old": {
        **base.old.model_dump(mode="json"),
        "api_server": {"url": f"http://127.0.0.1:{port}"}}})
    monkeypatch.setattr(fin, "API_START_POLL_S", 0.2)
    ctx = Context(config=config, config_path=tmp_path / "issu.toml",
                  journal=Journal.open(tmp_path / "journal"))
    thread = threading.Thread(target=listen_late, daemon=True)
    thread.start()
    try:
        assert fin.unfence_old(ctx) == "old api-server open for writes again"
        assert asked == ["/issu/open"]
        assert any("not answering yet" in e.message for e in ctx.journal.events())
    finally:
        for server in servers:
            server.shutdown()
        ctx.journal.close()
