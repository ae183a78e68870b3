"""The executor: reconcile the journal with the world, then run intents one at a time.

The TUI and the CLI add intents to the journal; exactly one executor (the writer lock)
claims them, runs them in a worker thread and finishes them with a JSON result. pause,
resume and abort are handled while a long intent runs. An intent that was running when the
executor died is run again at the next start: every step skips what is already done.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from issu_tui.journal import Intent
from issu_tui.orchestrator import abort as aborting
from issu_tui.orchestrator import finalize as fin
from issu_tui.orchestrator import phases
from issu_tui.orchestrator.approaches import APPROACHES, config_ring_steps, default_approach
from issu_tui.orchestrator.computes import UNSETTLED, ComputeRunner
from issu_tui.orchestrator.context import Context, OrchestratorError, StepInterrupted
from issu_tui.orchestrator.controllers import prepare_new
from issu_tui.orchestrator.pairing import check_pairing, pair, unpair
from issu_tui.orchestrator.preflight import run_preflight
from issu_tui.orchestrator.syncproc import ReverseSyncSupervisor, RunSyncSupervisor, run_step

log = logging.getLogger(__name__)
JOURNAL_RETRY_S = 2.0  # while the journal cannot be written (its disk full), between attempts


class Executor:
    def __init__(self, ctx: Context, runner: ComputeRunner | None = None,
                 northbound_file: Path | None = None) -> None:
        self.ctx = ctx
        self.runner = runner or ComputeRunner(ctx)
        self.runsync = RunSyncSupervisor(ctx)
        self.reverse = ReverseSyncSupervisor(ctx)
        self.northbound_file = northbound_file or ctx.config_path.parent / "northbound.toml"
        self.shutdown = threading.Event()
        self._worker: threading.Thread | None = None
        self._current: Intent | None = None
        self.last_checks: list[dict[str, Any]] | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> dict[str, Any]:
        """Become the executor (raises JournalLocked otherwise) and reconcile."""
        self.ctx.journal.acquire_writer()
        self.ensure_plan()
        if self.ctx.journal.orchestrator_state().paused:
            self.ctx.paused.set()
        return self.reconcile()

    def close(self) -> None:
        self.ctx.journal.release_writer()

    def ensure_plan(self, approach: str | None = None) -> None:
        journal = self.ctx.journal
        if journal.phase() is None:
            journal.set_phase("plan", status="done", from_version=self.ctx.config.old.version,
                              to_version=self.ctx.config.new.version,
                              note=f"{self.ctx.config.old.version} -> "
                                   f"{self.ctx.config.new.version}")
            self.ctx.mark_step(phases.phase_marker("plan"))
        if approach is not None or journal.orchestrator_state().approach is None:
            chosen = approach or default_approach(self.ctx.config)
            if chosen not in APPROACHES:
                raise OrchestratorError(f"unknown approach {chosen!r}; choose one of "
                                        f"{', '.join(APPROACHES)}")
            journal.set_approach(chosen)
        self.runner.register_inventory()

    @property
    def approach(self) -> str:
        return self.ctx.journal.orchestrator_state().approach or default_approach(
            self.ctx.config)

    def reconcile(self) -> dict[str, Any]:
        """After a crash: re-queue interrupted intents, probe unsettled computes, check
        run-sync. Nothing here repeats work: it only finds out where things stand."""
        journal = self.ctx.journal
        requeued = []
        for intent in journal.intents("running"):
            journal.finish_intent(intent.id, "pending", "re-queued after an executor restart")
            requeued.append(intent.id)
        unsettled = [r.name for r in journal.computes() if r.state in UNSETTLED]
        settled = self.runner.reconcile() if unsettled else {}
        runsync = self.supervise()
        summary = {"requeued_intents": requeued, "computes": settled, "run_sync": runsync}
        self.ctx.event("reconcile", f"reconciled: {len(requeued)} intent(s) re-queued, "
                       f"{len(settled)} compute(s) probed, run-sync {runsync}", **summary)
        return summary

    def runsync_wanted(self) -> bool:
        current = self.ctx.journal.phase()
        if current is None or not phases.phase(current.phase).keeps_runsync:
            return False
        return (self.ctx.step_done(phases.phase_marker("run-sync"))
                and not self.ctx.step_done(fin.RUNSYNC_STOPPING)
                and not self.ctx.step_done(phases.RUNSYNC_HELD)
                and not self.ctx.step_done(fin.step("stop-run-sync").marker))

    def supervise(self) -> str:
        """run-sync must run from its phase until finalize stops it (Restart=always); the
        reverse replication from finalize's commit until revert stops it."""
        with self.ctx.runsync_lock:
            if (self.ctx.step_done(fin.REVERSE_STARTED)
                    and not self.ctx.step_done(fin.REVERSE_STOPPING)
                    and not self.reverse.running()):
                self.reverse.start()
                self.ctx.event("sync", "reverse-sync was not running: restarted",
                               level="warning")
            if not self.runsync_wanted():
                return "not needed" if not self.runsync.running() else "running"
            if self.runsync.running():
                return "running"
            self.runsync.start()
        self.ctx.event("sync", "run-sync was not running: restarted", level="warning")
        return "restarted"

    # ------------------------------------------------------------------ the loop

    def serve(self, *, until_idle: bool = False, until_finished: bool = False,
              poll_s: float = 0.2, heartbeat_s: float = 2.0, supervise_s: float = 5.0) -> None:
        """Run intents until `shutdown` is set (or, with until_idle, nothing is left; with
        until_finished, the upgrade is done or aborted and nothing runs)."""
        last_beat = last_supervise = 0.0
        unwritable = False
        while not self.shutdown.is_set():
            now = time.monotonic()
            try:
                if now - last_beat >= heartbeat_s:
                    self.ctx.journal.heartbeat()
                    last_beat = now
                # run-sync is watched always, whatever runs (a crash during a long batch or a
                # phase is restarted): finalize and abort mark their stop under runsync_lock
                # first, so the supervisor never restarts what they stopped on purpose.
                if now - last_supervise >= supervise_s:
                    self.supervise()
                    last_supervise = now
                if self._serve_intents(until_idle=until_idle, until_finished=until_finished):
                    return
            except sqlite3.OperationalError as exc:
                # e.g. the state directory's disk full: wait for room rather than die with a
                # traceback and leave the running intent to the next executor
                if not unwritable:
                    log.error("journal %s cannot be written (%s): the executor waits for it "
                              "(is the state directory's disk full?)", self.ctx.journal.path,
                              exc)
                unwritable = True
                self.shutdown.wait(JOURNAL_RETRY_S)
                continue
            if unwritable:
                log.warning("journal %s written again: the executor carries on",
                            self.ctx.journal.path)
                unwritable = False
            time.sleep(poll_s)
        self.ctx.stop.set()
        if self._worker is not None:
            self._worker.join()

    def _serve_intents(self, *, until_idle: bool, until_finished: bool) -> bool:
        """Start or apply what is pending; True when serve() should return."""
        pending = self.ctx.journal.intents("pending")
        for intent in pending:
            kind = phases.intent(intent.kind)
            if kind is not None and kind.control:
                self._control(intent)
            elif kind is not None and kind.interrupts and self.busy:
                self.ctx.stop.set()  # the running intent stops; this one runs after it
                break
            elif not self.busy:
                self._launch(intent)
                break
        if until_idle and not self.busy and not self.ctx.journal.intents("pending"):
            return True
        return until_finished and not self.busy and self._finished()

    def _finished(self) -> bool:
        """The upgrade reached its end (done, aborted): no intent can run any more."""
        current = self.ctx.journal.phase()
        if current is None or not phases.phase(current.phase).terminal:
            return False
        if self.ctx.journal.intents("pending"):
            return False  # each is refused (and says why) before the executor leaves
        self.ctx.event("executor", f"the upgrade is {current.phase}: the executor (pid "
                       f"{os.getpid()}) stops, nothing is left to run")
        return True

    @property
    def busy(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def _control(self, intent: Intent) -> None:
        """A control intent, at once (in the serve loop, whatever work runs)."""
        try:
            result = self.handle(intent)
        except OrchestratorError as exc:
            self.ctx.journal.finish_intent(intent.id, "failed", json.dumps(
                {"ok": False, "error": str(exc)}))
            return
        self.ctx.journal.finish_intent(intent.id, "done", json.dumps(result))

    def _launch(self, intent: Intent) -> None:
        self.ctx.journal.finish_intent(intent.id, "running")
        # who runs what: a console's executor, then after a handover the headless daemon
        self.ctx.event("executor", f"intent #{intent.id} {intent.kind} (asked by {intent.by})"
                       f": run by pid {os.getpid()} on {socket.gethostname()}",
                       intent=intent.id, pid=os.getpid())
        self.ctx.stop.clear()
        self._current = intent
        self._worker = threading.Thread(target=self._run_intent, args=(intent,),
                                        name=f"intent-{intent.id}", daemon=True)
        self._worker.start()

    def _run_intent(self, intent: Intent) -> None:
        try:
            result = self.handle(intent)
            status = "done" if result.get("ok", True) else "failed"
            self._finish_intent(intent.id, status, json.dumps(result, default=str))
        except StepInterrupted as exc:
            if self.shutdown.is_set():
                self._finish_intent(intent.id, "pending", "executor stopped; will resume")
            else:
                self._finish_intent(intent.id, "failed", json.dumps(
                    {"ok": False, "error": str(exc)}))
        except Exception as exc:
            with contextlib.suppress(sqlite3.Error):  # the failure itself may be the journal's
                self.ctx.event("executor", f"{intent.kind} failed: {exc}", level="error",
                               intent=intent.id)
            payload = getattr(exc, "payload", {})
            self._finish_intent(intent.id, "failed", json.dumps(
                {"ok": False, "error": f"{exc}", **payload}, default=str))

    def _finish_intent(self, intent_id: int, status: str, result: str) -> None:
        """Record the intent's end, waiting out a journal that cannot be written (its disk
        full): left `running`, a command waiting for it would wait forever. An executor that
        is stopping gives up (the next one re-queues the intent)."""
        while True:
            try:
                self.ctx.journal.finish_intent(intent_id, status, result)
                return
            except sqlite3.OperationalError as exc:
                if self.shutdown.is_set():
                    raise
                log.error("journal %s cannot be written (%s): intent #%d's end waits for "
                          "it (is the state directory's disk full?)", self.ctx.journal.path,
                          exc, intent_id)
                self.shutdown.wait(JOURNAL_RETRY_S)

    # ------------------------------------------------------------------ intents

    def handle(self, intent: Intent) -> dict[str, Any]:
        """Run one intent through its handler, if the current phase takes it."""
        current = self.ctx.journal.phase()
        refused = phases.refusal(current.phase if current else "plan", intent.kind)
        if refused is not None:
            raise OrchestratorError(refused)
        return INTENT_HANDLERS[intent.kind](self, intent.args)

    def run_phases(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.advance(str(args.get("target", "")), args)

    def upgrade(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.computes("upgrade", args)

    def rollback(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.ctx.step_done(fin.COMMIT_STEP):
            raise OrchestratorError("finalize committed: computes can no longer go back to the "
                                    "old cluster (its control plane is being retired)")
        return self.computes("rollback", args)

    def _note_where_computes_are(self, action: str) -> None:
        """The phase's note after a run: where the computes are now (it said "computes
        moving" while the last had long arrived)."""
        current = self.ctx.journal.phase()
        if current is None or current.phase != "computes":
            return
        rows = self.ctx.journal.computes()
        on_new = sum(1 for r in rows if r.cluster == "new")
        failed = sum(1 for r in rows if r.state == "failed")
        note = f"{on_new} of {len(rows)} computes on new" + (f", {failed} failed" if failed
                                                             else "")
        if note != current.note:
            self.ctx.journal.set_phase("computes", note=note, status=f"{action} run ended")

    def computes(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        current = self.ctx.journal.phase()
        if current is not None and current.phase == "run-sync":
            # the first compute to move opens the computes phase
            self.ctx.journal.set_phase("computes", note="computes moving")
        outcome = self.runner.run(action, list(args.get("computes") or []),
                                  batch_size=args.get("batch_size"),
                                  parallel=args.get("parallel"),
                                  canary=args.get("canary"),
                                  max_failures=args.get("max_failures"))
        self._note_where_computes_are(action)
        if outcome.not_started and self.shutdown.is_set() and outcome.stopped_by_operator:
            # This executor is leaving (a console that lost its terminal): the computes not
            # started stay asked for; the next executor runs the intent again, skipping
            # those already moved. A run the failure gate or the canary stopped stays
            # stopped: the next executor must not retry it with a fresh failure budget.
            raise StepInterrupted(f"{action}: {len(outcome.not_started)} compute(s) not "
                                  "started yet; the executor stopped, the next one resumes")
        return {"ok": outcome.ok, "action": action, "succeeded": outcome.succeeded,
                "failed": outcome.failed, "not_started": outcome.not_started,
                "stopped_reason": outcome.stopped_reason, "batches": outcome.batches_run}

    def verify(self, args: dict[str, Any]) -> dict[str, Any]:
        """Compare new against old now. While run-sync runs, changes not replayed yet show as
        differences: the count is what it is at this moment, finalize verifies again."""
        report: dict[str, object] = {}
        code, differences, detail = fin.run_verify(self.ctx, report)
        if differences is None:
            raise OrchestratorError(f"verify failed (exit {code}):\n{detail}")
        checked = self.ctx.journal.counters("verify").get("checked", 0)
        said = f"verify: {differences:.0f} differences in {checked:.0f} cells"
        self.ctx.event("verify", said + (f"; first ones:\n{detail}" if detail else ""),
                       level="warning" if differences else "info",
                       differences=differences, checked=checked)
        return {"ok": True, "differences": differences, "checked": checked,
                "samples": detail}

    def runsync_hold(self, args: dict[str, Any]) -> dict[str, Any]:
        """Stop run-sync and keep it stopped (`action: stop`), or start it again (`start`).
        What changes on old meanwhile waits in run-sync's durable queue on the old RabbitMQ;
        finalize refuses until it runs again."""
        action = str(args.get("action", ""))
        if action not in ("stop", "start"):
            raise OrchestratorError(f"runsync: action must be stop or start, not {action!r}")
        if not self.ctx.step_done(phases.phase_marker("run-sync")):
            raise OrchestratorError("run-sync has not been started by its phase yet")
        with self.ctx.runsync_lock:
            if self.ctx.step_done(fin.RUNSYNC_STOPPING):
                raise OrchestratorError("finalize stops run-sync itself; it is not started or "
                                        "stopped by hand any more")
            if action == "stop":
                self.ctx.mark_step(phases.RUNSYNC_HELD)  # first: no supervisor restarts it
                was_running = self.runsync.stop()
            else:
                self.ctx.clear_steps(phases.RUNSYNC_HELD)
                started = self.runsync.start()
        if action == "stop":
            said = ("run-sync stopped by the operator" if was_running
                    else "run-sync was not running") + (
                        "; held stopped: changes on old wait in its queue until it is started "
                        "again")
        else:
            said = ("run-sync started again by the operator: it replays what waited in its "
                    "queue" if started else "run-sync was already running: no longer held")
        self.ctx.event("sync", said, step="run-sync", action=action)
        return {"ok": True, "action": action, "detail": said}

    def unpair(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.ctx.step_done(fin.step("unpair").marker):
            return {"ok": True, "detail": "already unpaired by finalize"}
        return {"ok": True, "detail": unpair(self.ctx)}

    def pause(self, args: dict[str, Any]) -> dict[str, Any]:
        # Recorded in the journal too, so a restarted executor stays paused.
        self.ctx.paused.set()
        self.ctx.journal.set_paused(True)
        self.ctx.event("executor", "paused: running computes finish, no new one starts")
        return {"ok": True}

    def resume(self, args: dict[str, Any]) -> dict[str, Any]:
        self.ctx.paused.clear()
        self.ctx.journal.set_paused(False)
        self.ctx.event("executor", "resumed")
        return {"ok": True}

    # ------------------------------------------------------------------ phases

    def advance(self, target: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run every phase up to `target` not done yet (finalize and done: finalize)."""
        args = args or {}
        self.last_checks = None  # only this advance's preflight checks go with its result
        if target not in phases.FORWARD:
            raise OrchestratorError(f"unknown phase {target!r}; phases: "
                                    f"{', '.join(phases.FORWARD)}")
        runnable = phases.RUNNABLE
        if target in runnable:
            todo = runnable[:runnable.index(target) + 1]
        elif phases.FORWARD.index(target) < phases.FORWARD.index(runnable[0]):
            todo = ()  # plan: recorded when the executor starts
        else:
            return self.finalize(args)  # what follows the runnable phases is finalize's
        done: list[str] = []
        for name in todo:
            spec = phases.phase(name)
            # A finished phase is skipped, unless it is asked for by name and repeatable.
            repeat = name == target and spec.repeatable
            if self.ctx.step_done(spec.marker) and not repeat:
                continue
            self.ctx.check_stop(name)
            if name == "pre-sync":
                ring = self.ring_steps_before_sync(args)
                if ring:
                    done.append(ring)
            detail = self.run_phase(name, args)
            done.append(f"{name}: {detail}")
        result: dict[str, Any] = {"ok": True, "phase": target, "done": done}
        if self.last_checks is not None:
            result["checks"] = self.last_checks
        return result

    def run_phase(self, name: str, args: dict[str, Any]) -> str:
        """Run one phase; a re-run of a finished one (preflight again) leaves the phase be."""
        journal = self.ctx.journal
        spec = phases.phase(name)
        rerun = self.ctx.step_done(spec.marker)
        if not rerun:
            journal.set_phase(name, status="entered")
        try:
            detail = PHASE_RUNNERS[name](self, args)
        except Exception as exc:
            if not rerun:
                journal.set_phase(name, status="failed", note=str(exc)[:2000])
            raise
        if rerun:
            self.ctx.event("phase", f"{name} re-run: {detail}", phase=name)
            return detail
        if spec.runs is not phases.Runs.INTENTS:  # such a phase stays open for its intents
            journal.set_phase(name, status="done", note=detail)
        self.ctx.mark_step(spec.marker)
        return detail

    # ------------------------------------------------------------------ finalize / abort

    def finalize(self, args: dict[str, Any]) -> dict[str, Any]:
        if not self.ctx.step_done(phases.phase_marker("run-sync")):
            # run-sync's phase entered but failed: the phase alone does not tell
            raise OrchestratorError(phases.INTENT_KINDS["finalize"].refused)
        if self.ctx.step_done(phases.RUNSYNC_HELD):
            raise OrchestratorError("run-sync is held stopped by the operator: start it again "
                                    "(R in the console) so it replays what waited in its "
                                    "queue, then finalize")
        ring_left = self._ring_finalize_refusal()
        if ring_left:
            raise OrchestratorError(ring_left)
        journal = self.ctx.journal
        force = bool(args.get("force"))
        reason = str(args.get("reason") or "")
        journal.set_phase("finalize", status="entered",
                          note=f"forced: {reason}" if force else "")
        try:
            steps = fin.finalize(self.ctx, force=force, reason=reason,
                                 old_stopped=bool(args.get("old_stopped")),
                                 northbound_file=self.northbound_file,
                                 no_northbound=bool(args.get("no_northbound")),
                                 commit_early=bool(args.get("commit_early")),
                                 remove_old_records=bool(args.get("remove_old_records")))
        except Exception as exc:
            journal.set_phase("finalize", status="failed", note=str(exc)[:2000])
            raise
        journal.set_phase("done", status="done", note="the new cluster serves")
        self.ctx.mark_step(phases.phase_marker("finalize"))
        return {"ok": True, "steps": steps}

    def abort(self, args: dict[str, Any]) -> dict[str, Any]:
        journal = self.ctx.journal
        drop_new_data = bool(args.get("drop_new_data"))
        skip = tuple(str(n) for n in args.get("skip_clients") or ())
        # refused before the phase changes: finalize can still go on
        refused = aborting.refusal(self.ctx, drop_new_data=drop_new_data, skip=skip)
        if refused:
            raise OrchestratorError(refused)
        self.ctx.stop.clear()
        journal.set_phase("aborting", status="entered")
        try:
            done = aborting.abort(self.ctx, self.runner, drop_new_data=drop_new_data,
                                  skip=skip)
        except Exception as exc:
            journal.set_phase("aborting", status="failed", note=str(exc)[:2000])
            raise
        journal.set_phase("aborted", status="done", note="; ".join(done))
        return {"ok": True, "done": done}

    def ring(self, args: dict[str, Any]) -> dict[str, Any]:
        """The ring steps of one phase of a shared-hardware approach (issu ring run): each
        guarded by the quorum guard computed from the live ring, checked after, marked in
        the journal (ringrun.RingRunner); a re-run (or the next executor, the intent
        re-queued) continues after the last marked step."""
        from backends.cassandra.connection import CassandraUnavailable
        from backends.cassandra.nodetool import NodetoolError
        from backends.cassandra.ringops import RingOpError
        from backends.controller import ControllerError
        from issu_tui.config import nodetool_argv
        from issu_tui.orchestrator.ringplan import (
            RingPlanError,
            ring_run_refusal,
            way_back_refusal,
        )
        from issu_tui.orchestrator.ringrun import RingStepRefused
        from issu_tui.ringhooks import controller_runner

        config, journal = self.ctx.config, self.ctx.journal
        approach = str(args.get("approach") or self.approach)
        when = str(args.get("when") or "")
        try:
            steps = config_ring_steps(config, approach)
        except RingPlanError as exc:
            raise OrchestratorError(f"{self.ctx.config_path}: {exc}") from None
        if when not in {s.when for s in steps} | {"plan", "computes", "done"}:
            raise OrchestratorError(f"ring: when must be plan, computes or done, not {when!r}")
        current = journal.phase()
        refusal = ring_run_refusal(when, approach, current.phase if current else None,
                                   journal.orchestrator_state().approach)
        if refusal is None:
            done = journal.steps_done()
            refusal = way_back_refusal(steps, when, done, phases.WAY_BACK_CLOSED in done)
        if refusal is not None:
            raise OrchestratorError(refusal)
        min_replicas = args.get("min_replicas")
        try:
            # --nodetool for this run, else the config's ring.nodetool (validated at load)
            runner = controller_runner(
                config, nodetool_argv(str(args.get("nodetool") or config.ring.nodetool)),
                int(min_replicas) if min_replicas is not None else None, journal,
                float(args.get("timeout_s") or 3600))
            first = next((i for i, s in enumerate(steps) if s.when == when), len(steps))
            runner.run([s for s in steps if s.when == when], first_index=first)
        except (RingStepRefused, RingOpError, NodetoolError, ControllerError,
                CassandraUnavailable, ValueError) as exc:
            self.ctx.event("ring", f"ring step failed: {exc}", level="error")
            raise OrchestratorError(str(exc)) from None
        return {"ok": True, "done": f"{approach}: the ring steps of {when} are done"}

    def _ring_finalize_refusal(self) -> str | None:
        """Why finalize waits for the approach's ring steps of computes (None: it need not)."""
        from issu_tui.orchestrator.ringplan import RingPlanError, finalize_refusal

        try:
            steps = config_ring_steps(self.ctx.config, self.approach)
        except RingPlanError:
            return None  # the hosts do not fit the approach: its ring steps are the operator's
        return finalize_refusal(self.approach, steps, self.ctx.journal.steps_done())

    def ring_steps_before_sync(self, args: dict[str, Any]) -> str:
        """The approach's ring steps of `plan` (grow: the new nodes join, the factor goes
        up) run by the phases before pre-sync copies anything, unless all are marked done
        (`issu ring run --when plan` ran them); '' when the approach has none. The phase
        intent's `nodetool` argument says how the hosts run nodetool (default: the config's
        `ring.nodetool`)."""
        from issu_tui.orchestrator.ringplan import RingPlanError, pending_steps

        config = self.ctx.config
        try:
            steps = config_ring_steps(config, self.approach)
        except RingPlanError as exc:
            # the approach recorded by default (shared hosts: grow) may not fit this ring;
            # `issu plan` names why, the steps are then the operator's (as before)
            self.ctx.event("ring", f"no ring steps run before pre-sync: "
                           f"{self.ctx.config_path}: {exc}", level="warning")
            return ""
        pending = pending_steps(steps, "plan", self.ctx.journal.steps_done())
        if not pending:
            return ""
        self.ctx.event("ring", f"{self.approach}: {len(pending)} ring step(s) of plan before "
                       "pre-sync", approach=self.approach)
        try:
            result = self.ring({"approach": self.approach, "when": "plan",
                                "nodetool": args.get("nodetool"),
                                "min_replicas": args.get("min_replicas")})
        except OrchestratorError as exc:
            raise OrchestratorError(f"the ring steps of {self.approach} before pre-sync: "
                                    f"{exc}") from None
        return f"ring: {result['done']}"

    def revert(self, args: dict[str, Any]) -> dict[str, Any]:
        """issu revert: before finalize's commit it is abort; after it, the way back
        through the reverse replication (revert.py)."""
        from issu_tui.orchestrator.revert import check_revert_open, revert_after_commit

        journal = self.ctx.journal
        current = journal.phase()
        if not self.ctx.step_done(fin.COMMIT_STEP) and (current is None
                                                        or current.phase != "done"):
            return self.abort(args)
        skip = tuple(str(n) for n in args.get("skip_clients") or ())
        check_revert_open(self.ctx, drop_new_data=bool(args.get("drop_new_data")), skip=skip)
        self.ctx.stop.clear()
        journal.set_phase("aborting", status="entered", note="revert after finalize")
        try:
            done = revert_after_commit(self.ctx, self.runner,
                                       drop_new_data=bool(args.get("drop_new_data")),
                                       skip=skip)
        except Exception as exc:
            journal.set_phase("aborting", status="failed", note=str(exc)[:2000])
            raise
        journal.set_phase("aborted", status="done",
                          note="reverted after finalize: " + "; ".join(done))
        return {"ok": True, "done": done}

    def close_way_back(self, args: dict[str, Any]) -> dict[str, Any]:
        """issu close-way-back: the reverse replication drained, stopped, its queues
        deleted; revert refused from then on (revert.close_way_back)."""
        from issu_tui.orchestrator.revert import close_way_back

        timeout = float(args.get("timeout_s") or 600)
        return {"ok": True, "done": close_way_back(self.ctx, drain_timeout_s=timeout)}


# ----------------------------------------------------------------------------- phase runners
# One function per phase of phases.RUNNABLE (a test checks that none is missing): what the
# phase does, its detail for the journal as the result.

PhaseRunner = Callable[[Executor, dict[str, Any]], str]


def run_preflight_phase(executor: Executor, args: dict[str, Any]) -> str:
    ctx = executor.ctx
    report = run_preflight(ctx, args.get("approach") or executor.approach,
                           db_nodes_down=args.get("db_nodes_down"),
                           sync_started=ctx.step_done(phases.phase_marker("pre-sync")),
                           northbound_file=executor.northbound_file)
    for check in report.checks:
        level = "info" if check.ok else ("warning" if check.severity == "warning" else "error")
        ctx.event("preflight", f"{'ok' if check.ok else 'FAIL'} {check.name}: "
                  f"{check.detail}", level=level, **check.as_dict())
    executor.last_checks = [c.as_dict() for c in report.checks]
    if not report.ok:
        lines = [f"- {c.name}: {c.detail}\n  fix: {c.fix}" for c in report.failures]
        raise PreflightRefused("preflight refused:\n" + "\n".join(lines),
                               executor.last_checks)
    return f"{len(report.checks)} checks passed"


class PreflightRefused(OrchestratorError):
    """Preflight found problems; `payload` carries every check for the intent's result."""

    def __init__(self, message: str, checks: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.payload = {"checks": checks}


def run_pair_phase(executor: Executor, args: dict[str, Any]) -> str:
    return pair(executor.ctx)


def run_pre_sync_phase(executor: Executor, args: dict[str, Any]) -> str:
    # new's writers must not write into the database being copied into (refused, named)
    prepare_new(executor.ctx)
    run = run_step(executor.ctx, "pre-sync")
    if run.exit_code != 0:
        raise OrchestratorError(f"pre-sync failed (exit {run.exit_code}); it resumes from "
                                f"its checkpoints when run again:\n{run.output}")
    return f"copied in {run.duration_s:.1f}s; {check_pairing(executor.ctx)}"


def run_run_sync_phase(executor: Executor, args: dict[str, Any]) -> str:
    executor.runsync.start()
    counters = executor.runsync.wait_reporting()
    return (f"running (pid {executor.runsync.pid()}), lag {counters.get('lag_s', 0):.1f}s, "
            f"queue {counters.get('queue_depth', 0):.0f}")


def open_computes_phase(executor: Executor, args: dict[str, Any]) -> str:
    return "computes may move (issu compute upgrade ...)"


PHASE_RUNNERS: dict[str, PhaseRunner] = {
    "preflight": run_preflight_phase,
    "pair": run_pair_phase,
    "pre-sync": run_pre_sync_phase,
    "run-sync": run_run_sync_phase,
    "computes": open_computes_phase,
}

# One handler per intent of phases.INTENTS (a test checks that none is missing); the phase
# registry decides first whether the current phase takes the intent.
IntentHandler = Callable[[Executor, dict[str, Any]], dict[str, Any]]

INTENT_HANDLERS: dict[str, IntentHandler] = {
    "phase": Executor.run_phases,
    "upgrade": Executor.upgrade,
    "rollback": Executor.rollback,
    "finalize": Executor.finalize,
    "abort": Executor.abort,
    "revert": Executor.revert,
    "close-way-back": Executor.close_way_back,
    "ring": Executor.ring,
    "verify": Executor.verify,
    "runsync": Executor.runsync_hold,
    "unpair": Executor.unpair,
    "pause": Executor.pause,
    "resume": Executor.resume,
}
