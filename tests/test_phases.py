"""The phase registry is the one source of phase knowledge: the journal, the plan, the
executor, the console and docs/phases.md follow it; the orchestrator's state is a typed
journal row, carried over from the counters form of schema 1."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from issu_tui.console_api import ConsoleBackend, ConsoleOptions
from issu_tui.journal import _MIGRATIONS, Journal, JournalError, OrchestratorState
from issu_tui.orchestrator import abort, finalize, phases, phases_doc
from issu_tui.orchestrator.approaches import default_approach
from issu_tui.orchestrator.context import Context, OrchestratorError
from issu_tui.orchestrator.executor import INTENT_HANDLERS, PHASE_RUNNERS, Executor
from issu_tui.orchestrator.plan import build_plan
from tests.test_orchestrator_units import _config

REPO = Path(__file__).resolve().parents[1]


def test_docs_page_is_generated_from_the_registry_and_up_to_date() -> None:
    page = (REPO / "docs" / "phases.md").read_text()
    assert page == phases_doc.render(), \
        "docs/phases.md is out of date: run `python -m issu_tui.orchestrator.phases_doc`"
    for spec in phases.PHASES:
        assert f"| `{spec.name}` | {spec.title} |" in page
    for step in finalize.STEPS:
        assert f"`{step.name}`" in page


def test_generator_check_mode_reports_a_stale_page(tmp_path: Path) -> None:
    stale = tmp_path / "phases.md"
    stale.write_text("# old\n")
    assert phases_doc.main([str(stale), "--check"]) == 1
    assert stale.read_text() == "# old\n"
    assert phases_doc.main([str(stale)]) == 0
    assert phases_doc.main([str(stale), "--check"]) == 0


def test_every_phase_and_intent_of_the_registry_has_its_code() -> None:
    assert set(PHASE_RUNNERS) == set(phases.RUNNABLE)
    assert set(INTENT_HANDLERS) == set(phases.INTENT_KINDS)
    for spec in phases.PHASES:
        assert spec.offers <= spec.accepts, spec.name
        assert spec.accepts <= set(phases.INTENT_KINDS), spec.name
        assert bool(spec.accepts) or spec.refusal, spec.name


def test_journal_and_plan_follow_the_registry(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path)
    for name in phases.PHASE_NAMES:
        journal.set_phase(name)
    with pytest.raises(JournalError, match="unknown phase"):
        journal.set_phase("sideways")
    journal.close()
    for approach in ("separate", "grow"):
        plan = build_plan(_config(tmp_path), approach)
        order = [s.phase for s in plan]
        assert order == sorted(order, key=phases.FORWARD.index)
        assert {s.phase for s in plan} >= set(phases.RUNNABLE) | {"finalize"}
    # the point of no return is finalize's commit step, and only what comes before it
    # has an inverse abort can run
    plan = build_plan(_config(tmp_path), "separate")
    (commit,) = [s for s in plan if s.point_of_no_return]
    assert commit.title.startswith(finalize.step("commit").does)
    assert all(s.undo is None for s in finalize.STEPS[len(finalize.before_commit()):])
    assert [s.name for s in finalize.before_commit() if s.undo] == [
        "fence-old", "stop-old-services", "bind-reverse-queue", "start-new-writers",
        "switch-northbound"]
    # the point of no return is the opening of the new api-server, right after it and the
    # start of the reverse replication (bound before new takes a write: the way back)
    names = [s.name for s in finalize.STEPS]
    # the reverse queue is bound before anything can write to new (its writers, a client
    # once new is open or committed early at check-new-fenced)
    assert names.index("bind-reverse-queue") < min(
        names.index(n) for n in ("check-new-fenced", "start-new-writers", "open-new"))
    assert names[names.index("commit"):names.index("open-new") + 1] == [
        "commit", "start-reverse-sync", "open-new"]


def _executor(tmp_path: Path) -> tuple[Journal, Executor]:
    journal = Journal.open(tmp_path)
    ctx = Context(config=_config(tmp_path), config_path=tmp_path / "issu.toml", journal=journal)
    executor = Executor(ctx)
    executor.start()
    return journal, executor


def _run(journal: Journal, executor: Executor, kind: str, **args: object) -> dict[str, object]:
    intent_id = journal.add_intent(kind, args, "test")
    executor.serve(until_idle=True, poll_s=0.01)
    intent = next(i for i in journal.intents(None) if i.id == intent_id)
    result = json.loads(intent.result)
    result["status"] = intent.status
    return result


def test_the_current_phase_decides_which_intents_run(tmp_path: Path) -> None:
    journal, executor = _executor(tmp_path)
    journal.set_phase("pre-sync")
    refused = _run(journal, executor, "upgrade", computes=["c1"])
    assert refused["status"] == "failed"
    assert "computes move only once run-sync is running (phase is pre-sync)" in \
        str(refused["error"])
    assert _run(journal, executor, "finalize")["status"] == "failed"
    paused = _run(journal, executor, "pause")
    assert paused["status"] == "done" and journal.orchestrator_state().paused
    journal.set_phase("aborting")
    again = _run(journal, executor, "phase", target="preflight")
    assert again["status"] == "failed" and "run `issu abort` again" in str(again["error"])
    journal.set_phase("done")
    for kind in ("resume", "abort", "unpair"):
        ended = _run(journal, executor, kind)
        assert ended["status"] == "failed" and "the upgrade is done" in str(ended["error"])
    # revert is taken in done, and refused there without finalize's commit + reverse-sync
    closed = _run(journal, executor, "revert")
    assert closed["status"] == "failed" and "not started at the commit" in str(closed["error"])
    assert journal.phase().phase == "done"
    assert journal.orchestrator_state().paused  # the refused resume changed nothing
    unknown = _run(journal, executor, "reboot")
    assert unknown["status"] == "failed"
    executor.close()
    journal.close()


def test_console_offers_what_the_registry_says(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path)
    journal.set_phase("plan", from_version="4.1.0", to_version="5.0.0")
    journal.upsert_compute("c1", "127.0.0.1", state="upgraded", version="5.0.0",
                           cluster="new")
    backend = ConsoleBackend(_config(tmp_path), journal, ConsoleOptions())
    for name in phases.FORWARD[:-1]:
        journal.set_phase(name)
        view = backend.snapshot().phase
        assert [s.name for s in view.steps] == list(phases.FORWARD)
        assert [s.title for s in view.steps] == [phases.phase(p).title for p in phases.FORWARD]
        assert view.allowed <= phases.phase(name).offers
        assert ("finalize" in view.allowed) == ("finalize" in phases.phase(name).offers)
    assert "abort" not in backend.snapshot().phase.allowed  # in finalize: the CLI's
    journal.set_phase("aborting")
    assert backend.snapshot().phase.allowed == frozenset()
    journal.close()


def _schema_one_journal(state: Path, orchestrator: dict[str, float]) -> None:
    """A journal as issu wrote it before the orchestrator table: schema 1, counters form."""
    state.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(state / "journal.db")
    for statement in _MIGRATIONS[0].split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    db.executemany("INSERT INTO counters VALUES (?, ?, ?, ?)",
                   [("orchestrator", k, v, 1.0) for k, v in orchestrator.items()]
                   + [("runsync", "lag_s", 0.25, 1.0), ("steps", "phase.plan", 5.0, 1.0)])
    db.execute("INSERT INTO upgrade VALUES (1, 'computes', 1.0, '4.1.0', '5.0.0', '')")
    db.commit()
    db.close()


def test_an_existing_journal_keeps_its_approach_pause_and_runsync_pid(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _schema_one_journal(state, {"approach": 1.0, "paused": 1.0, "runsync_pid": 4242.0,
                                "runsync_started_at": 1700000000.5})
    expected = OrchestratorState("grow", True, 4242, 1700000000.5)
    # a watcher opening it before any writer did reads the old form
    reader = Journal.open(state, read_only=True)
    assert reader.schema_version == 1 and reader.orchestrator_state() == expected
    assert reader.steps_done() == {"phase.plan": 5.0}
    reader.close()
    journal = Journal.open(state)
    assert journal.schema_version == len(_MIGRATIONS) >= 2
    assert journal.orchestrator_state() == expected
    assert journal.counters("orchestrator") == {}
    assert journal.counters("runsync") == {"lag_s": 0.25}
    assert journal.counters("steps") == {}
    assert journal.steps_done() == {"phase.plan": 5.0}
    journal.close()
    # the executor resumes paused with the approach it had (not the config's default)
    journal = Journal.open(state)
    ctx = Context(config=_config(tmp_path), config_path=tmp_path / "issu.toml", journal=journal)
    executor = Executor(ctx)
    executor.ensure_plan()
    assert default_approach(ctx.config) == "separate"
    assert executor.approach == "grow" and journal.orchestrator_state().approach == "grow"
    journal.close()


def test_a_stopped_runsync_and_no_approach_carry_over_as_none(tmp_path: Path) -> None:
    _schema_one_journal(tmp_path, {"runsync_pid": 0.0, "paused": 0.0})
    journal = Journal.open(tmp_path)
    assert journal.orchestrator_state() == OrchestratorState(None, False, None, None)
    journal.set_approach("rolling")
    journal.set_paused(True)
    journal.set_runsync_process(77, 12.5)
    journal.set_runsync_process(None)  # stopped: the start time stays for the reports
    for marker in ("phase.run-sync", "finalize.fence-old", "finalize.commit", "finalize_x"):
        journal.mark_step(marker)
    journal.clear_steps("finalize.")  # what abort forgets: finalize's markers, no other
    journal.close()
    journal = Journal.open(tmp_path, read_only=True)
    assert journal.orchestrator_state() == OrchestratorState("rolling", True, None, 12.5)
    assert set(journal.steps_done()) == {"phase.plan", "phase.run-sync", "finalize_x"}
    journal.close()


def test_abort_and_finalize_step_names_are_unique() -> None:
    for steps in (finalize.STEPS, abort.STEPS):
        names = [s.name for s in steps]
        assert len(names) == len(set(names))
    assert finalize.COMMIT_STEP == "finalize.commit"


def test_a_daemon_leaves_once_the_upgrade_is_finished(tmp_path: Path) -> None:
    """`issu daemon` (serve until_finished) stops by itself at done; before, it serves."""
    import threading

    journal, executor = _executor(tmp_path)
    journal.set_phase("computes")
    serving = threading.Thread(target=executor.serve,
                               kwargs={"until_finished": True, "poll_s": 0.01})
    serving.start()
    try:
        paused = journal.add_intent("pause", {}, "test")
        deadline = time.monotonic() + 60
        while journal.intents("pending") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert serving.is_alive()  # computes: not finished, the daemon keeps serving
        assert [i.status for i in journal.intents(None) if i.id == paused] == ["done"]
        journal.set_phase("done")
        serving.join(60)
        assert not serving.is_alive()
    finally:
        executor.shutdown.set()
        serving.join(60)
    said = [e.message for e in journal.events(kind="executor")]
    assert any("the upgrade is done: the executor" in m and "stops" in m for m in said), said
    executor.close()
    journal.close()


def _fence_answering(northbound_open: bool | None):  # type: ignore[no-untyped-def]
    """A loopback api-server that answers GET /issu/status (404 for None: no fence call)."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = northbound_open is not None and self.path == "/issu/status"
            body = json.dumps({"northbound_open": northbound_open}).encode()
            self.send_response(200 if found else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _fence_ctx(tmp_path: Path, url: str, journal: Journal) -> Context:
    config = _config(tmp_path)
    api = config.new.api_server.model_copy(update={"url": url})
    config = config.model_copy(update={"new": config.new.model_copy(update={"api_server": api})})
    return Context(config=config, config_path=tmp_path / "issu.toml", journal=journal)


@pytest.mark.parametrize("northbound_open", [False, None])
def test_the_point_of_no_return_comes_before_new_starts_unless_new_is_shown_fenced(
        tmp_path: Path, northbound_open: bool | None) -> None:
    """new's writers and the northbound switch come before the point of no return only when
    new's api-server says it refuses writes. Audit D2: an api-server without a fence call
    (every real Contrail api-server) made finalize commit here, abort refused for good;
    now finalize is refused, nothing committed, and told what the operator can do."""
    server = _fence_answering(northbound_open)
    journal = Journal.open(tmp_path)
    try:
        ctx = _fence_ctx(tmp_path, f"http://127.0.0.1:{server.server_address[1]}", journal)
        names = [s.name for s in finalize.STEPS]
        assert names.index("check-new-fenced") < names.index("start-new-writers")
        if northbound_open is None:
            with pytest.raises(OrchestratorError) as refused:
                finalize.check_new_fenced(finalize.FinalizeRun(ctx))
            said = str(refused.value)
            assert said.startswith("check-new-fenced: the new api-server has no fence call")
            assert "Nothing was committed: abort is still possible" in said
            assert "`fence_status` step" in said and "--commit-early" in said
        else:
            detail = finalize.check_new_fenced(finalize.FinalizeRun(ctx))
            assert detail == "the new api-server reports itself fenced"
        assert not ctx.step_done(finalize.COMMIT_STEP)
    finally:
        journal.close()
        server.shutdown()


def test_an_api_server_that_does_not_answer_is_asked_again_then_refused(
        tmp_path: Path) -> None:
    """Audit D2: a timeout or restart of new's api-server at check-new-fenced was turned
    into finalize's point of no return. Now it is asked again, then refused (abort open)."""
    import socket

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    journal = Journal.open(tmp_path)
    try:
        ctx = _fence_ctx(tmp_path, f"http://127.0.0.1:{port}", journal)
        run = finalize.FinalizeRun(ctx, fence_tries=3, fence_retry_s=0.1)
        with pytest.raises(OrchestratorError, match=r"check-new-fenced: new's fence cannot be "
                           r"confirmed after 3 tries .*Nothing was committed"):
            finalize.check_new_fenced(run)
        assert not ctx.step_done(finalize.COMMIT_STEP)
        tries = [e.message for e in journal.events(kind="finalize", text="check-new-fenced: try")]
        assert [m.split(":")[1] for m in tries] == [" try 1 of 3", " try 2 of 3", " try 3 of 3"]
    finally:
        journal.close()


def test_new_open_takes_the_point_of_no_return_only_after_the_reverse_queue(
        tmp_path: Path) -> None:
    """New says it is open: writes can reach it from start-new-writers on, so the point of no
    return is taken here, but only once the reverse replication runs (its queue declared:
    issu revert can carry those writes back). Here it cannot start (nothing listens at the
    clusters' addresses): nothing is committed."""
    server = _fence_answering(True)
    journal = Journal.open(tmp_path)
    try:
        ctx = _fence_ctx(tmp_path, f"http://127.0.0.1:{server.server_address[1]}", journal)
        ctx.config.state_dir.mkdir(parents=True, exist_ok=True)
        with pytest.raises(OrchestratorError, match="reverse"):
            finalize.check_new_fenced(finalize.FinalizeRun(ctx))
        assert not ctx.step_done(finalize.COMMIT_STEP)
        assert journal.events(kind="finalize", text="start-reverse-sync: running")
    finally:
        journal.close()
        server.shutdown()
        finalize.ReverseSyncSupervisor(ctx).stop()


def test_the_local_northbound_way_back_uses_this_upgrades_backup_and_checks_it_first(
        tmp_path: Path) -> None:
    """A `.issu-backup` left by an earlier upgrade is replaced at the switch (abort would
    restore a file of a year ago); a backup that does not name old is refused before anything
    is replaced; a re-run after the restore still reads the file back."""
    from issu_tui.orchestrator.context import OrchestratorError
    from issu_tui.orchestrator.northbound import load_clients, revert_clients

    config = _northbound_config(tmp_path)
    plugin = tmp_path / "ContrailPlugin.ini"
    original = "[APISERVER]\napi_server_ip = 10.9.0.1\napi_server_port = 8082\nkeep = 1\n"
    plugin.write_text(original)
    backup = tmp_path / "ContrailPlugin.ini.issu-backup"
    backup.write_text(original.replace("10.9.0.1", "10.8.0.1").replace("keep = 1", "old = 1"))
    listing = tmp_path / "northbound.toml"
    listing.write_text(f'[[client]]\nkind = "neutron"\npath = "{plugin}"\n')
    journal = Journal.open(tmp_path)
    try:
        ctx = Context(config=config, config_path=tmp_path / "issu.toml", journal=journal)
        run = finalize.FinalizeRun(ctx, clients=load_clients(listing))
        finalize.switch_northbound(run)
        assert "10.9.0.2" in plugin.read_text() and backup.read_text() == original
        finalize.switch_northbound(run)  # a re-run keeps this upgrade's backup
        assert backup.read_text() == original
        assert "restored" in revert_clients(ctx)
        assert plugin.read_text() == original and not backup.exists()

        finalize.switch_northbound(run)
        backup.write_text(original.replace("10.9.0.1", "10.9.9.9"))  # edited by hand since
        switched = plugin.read_text()
        with pytest.raises(OrchestratorError, match=r"its backup .* does not name old .*"
                           r"api_server_ip is '10.9.9.9', not '10.9.0.1'"):
            revert_clients(ctx)
        assert plugin.read_text() == switched and backup.exists()  # nothing replaced
        plugin.write_text(original)  # pointed back by hand
        backup.unlink()
        assert "names old" in revert_clients(ctx)
    finally:
        journal.close()


def test_a_client_a_killed_switch_never_reached_gets_a_fresh_backup(tmp_path: Path) -> None:
    from issu_tui.orchestrator.context import OrchestratorError
    from issu_tui.orchestrator.northbound import load_clients, revert_clients

    config = _northbound_config(tmp_path)
    original = "[APISERVER]\napi_server_ip = 10.9.0.1\napi_server_port = 8082\n"
    a, b, c = (tmp_path / f"{n}.ini" for n in "abc")
    a.write_text(original)
    c.write_text(original)
    leftover = original + "from = the previous upgrade\n"
    (tmp_path / "c.ini.issu-backup").write_text(leftover)
    listing = tmp_path / "northbound.toml"
    listing.write_text("".join(f'[[client]]\nkind = "neutron"\npath = "{p}"\n'
                               for p in (a, b, c)))
    journal = Journal.open(tmp_path)
    try:
        ctx = Context(config=config, config_path=tmp_path / "issu.toml", journal=journal)
        run = finalize.FinalizeRun(ctx, clients=load_clients(listing))
        with pytest.raises(OrchestratorError, match=r"b\.ini: cannot read"):
            finalize.switch_northbound(run)  # b's host down: c never reached
        b.write_text(original)
        finalize.switch_northbound(run)
        assert (tmp_path / "c.ini.issu-backup").read_text() == original
        revert_clients(ctx)
        assert c.read_text() == original and a.read_text() == original
    finally:
        journal.close()


def _northbound_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    """The units' config with old's and new's api-servers named (never contacted)."""
    from issu_tui.config import ApiServerConfig

    config = _config(tmp_path)
    config = config.model_copy(update={
        "old": config.old.model_copy(update={"api_server": ApiServerConfig(
            url="http://10.9.0.1:8082")}),
        "new": config.new.model_copy(update={"api_server": ApiServerConfig(
            url="http://10.9.0.2:8082")})})
    config.state_dir.mkdir(parents=True, exist_ok=True)
    return config


@pytest.mark.parametrize("marker", ["finalize.start-new-writers.begun",
                                    "finalize.start-new-writers"])
def test_abort_after_new_writers_ran_needs_drop_new_data(tmp_path: Path, marker: str) -> None:
    """Once new's writers ran (even half-started), new holds cells with current writetimes
    that no later copy from old overwrites: abort without --drop-new-data is refused before
    anything changes (the phase stays finalize, so finalize can go on)."""
    journal, executor = _executor(tmp_path)
    try:
        journal.set_phase("finalize", status="failed", note="stopped at switch-northbound")
        journal.mark_step(marker)
        result = _run(journal, executor, "abort")
        assert result["status"] == "failed"
        assert "abort refused without --drop-new-data" in str(result["error"])
        assert "writetimes" in str(result["error"])
        assert journal.phase().phase == "finalize"
        assert journal.step_done(marker)  # nothing forgotten
        assert abort.refusal(executor.ctx, drop_new_data=True) is None
    finally:
        executor.close()
        journal.close()


def test_old_records_are_removed_from_new_only_when_asked(tmp_path: Path) -> None:
    """Issue 14 bullet 5: old's bgp-routers and node records leave new "when asked". Not
    asked (the default): finalize's unpair and remove-old-nodes touch nothing on new, say
    they were skipped (journal, plan); asked (--remove-old-records): they run."""
    import http.server
    import threading

    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _any(self) -> None:
            seen.append(f"{self.command} {self.path}")
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_PUT = do_DELETE = _any

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    journal = Journal.open(tmp_path)
    try:
        ctx = _fence_ctx(tmp_path, f"http://127.0.0.1:{server.server_address[1]}", journal)
        assert ctx.config.finalize.remove_old_records is False
        run = finalize.FinalizeRun(ctx)
        for name in ("unpair", "remove-old-nodes"):
            finalize._run_once(run, finalize.step(name))
            assert ctx.step_done(finalize.step(name).skipped_marker)
            assert not ctx.step_done(finalize.step(name).marker)
        assert seen == []  # nothing asked of new's api-server
        said = [e.message for e in journal.events(kind="finalize")]
        assert said == [f"{n}: skipped, not asked: old's records stay on new ([finalize] "
                        "remove_old_records = true or `issu finalize --remove-old-records` "
                        "asks for it; or by hand when you retire old: runbook 7, step 12)"
                        for n in ("unpair", "remove-old-nodes")]
        plan = " ".join(" ".join(s.touches) for s in build_plan(ctx.config, "separate"))
        assert "old's bgp-routers and node records kept on new: not asked" in plan

        asked = finalize.FinalizeRun(ctx, remove_old_records=True)
        ctx.clear_steps(finalize.step("remove-old-nodes").skipped_marker)
        with pytest.raises(OrchestratorError, match="remove-old-nodes: "):
            finalize._run_once(asked, finalize.step("remove-old-nodes"))
        assert seen  # asked: new's api-server is read for old's records
    finally:
        journal.close()
        server.shutdown()


@pytest.mark.parametrize("committed", [False, True])
def test_revert_takes_skip_client_too_and_refuses_a_name_that_is_no_switched_client(
        tmp_path: Path, committed: bool) -> None:
    """`issu revert --skip-client` (before the commit: abort's; after it: the way back
    through the reverse replication) leaves a dead northbound host's clients as they are;
    a name that is no switched client is refused before anything runs, naming the clients
    that were switched."""
    from issu_tui.orchestrator.northbound import NorthboundClient, record_switched

    journal, executor = _executor(tmp_path)
    journal.set_phase("done" if committed else "finalize")
    journal.set_approach("separate")
    if committed:
        for marker in (finalize.COMMIT_STEP, finalize.REVERSE_STARTED):
            journal.mark_step(marker)
    record_switched(executor.ctx, [NorthboundClient(
        kind="neutron", host="neutron-2", path=Path("/etc/neutron/ContrailPlugin.ini"))])
    result = _run(journal, executor, "revert", skip_clients=["neutron-9"], drop_new_data=True)
    assert result["status"] == "failed"
    assert ("--skip-client neutron-9: no switched northbound client of that host or path "
            "(switched: neutron neutron-2:/etc/neutron/ContrailPlugin.ini)") in str(result)
    info = journal.phase()
    assert info is not None and info.phase == ("done" if committed else "finalize")
