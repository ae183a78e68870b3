"""The executor: reconcile the journal with the world, then run intents one at a time.

The TUI and the CLI add intents to the journal; exactly one executor (the writer lock)
claims them, runs them in a worker thread and finishes them with a JSON result. pause,
resume and abort are handled while a long intent runs. An intent that was running when the
executor died is run again at the next start: every step skips what is already done.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from issu_tui.journal import PHASES, Intent
from issu_tui.orchestrator import finalize as fin
from issu_tui.orchestrator.computes import UNSETTLED, ComputeRunner, require_computes_phase
from issu_tui.orchestrator.context import ORCH_SCOPE, Context, OrchestratorError, Stopped
from issu_tui.orchestrator.plan import APPROACHES, default_approach
from issu_tui.orchestrator.preflight import run_preflight
from issu_tui.orchestrator.syncproc import RunSync, run_step

WORK_KINDS = ("upgrade", "rollback", "finalize", "abort", "phase", "unpair")
CONTROL_KINDS = ("pause", "resume")


def phase_marker(phase: str) -> str:
    return f"phase.{phase}"


class Executor:
    def __init__(self, ctx: Context, runner: ComputeRunner | None = None,
                 northbound_file: Path | None = None) -> None:
        self.ctx = ctx
        self.runner = runner or ComputeRunner(ctx)
        self.runsync = RunSync(ctx)
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
        if self.ctx.journal.counters(ORCH_SCOPE).get("paused"):
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
            self.ctx.mark_step(phase_marker("plan"))
        if approach is not None or "approach" not in journal.counters(ORCH_SCOPE):
            chosen = approach or default_approach(self.ctx.config)
            journal.set_counters(ORCH_SCOPE, {"approach": APPROACHES.index(chosen)})
        self.runner.register_inventory()

    @property
    def approach(self) -> str:
        index = int(self.ctx.journal.counters(ORCH_SCOPE).get("approach", 0))
        return APPROACHES[index]

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
        phase = self.ctx.journal.phase()
        if phase is None or phase.phase in ("done", "aborting", "aborted"):
            return False
        return (self.ctx.step_done(phase_marker("run-sync"))
                and not self.ctx.step_done(fin.RUNSYNC_STOPPING)
                and not self.ctx.step_done("finalize.stop-run-sync"))

    def supervise(self) -> str:
        """run-sync must run from its phase until finalize stops it (Restart=always)."""
        with self.ctx.runsync_lock:
            if not self.runsync_wanted():
                return "not needed" if not self.runsync.running() else "running"
            if self.runsync.running():
                return "running"
            self.runsync.start()
        self.ctx.event("sync", "run-sync was not running: restarted", level="warning")
        return "restarted"

    # ------------------------------------------------------------------ the loop

    def serve(self, *, until_idle: bool = False, poll_s: float = 0.2,
              heartbeat_s: float = 2.0, supervise_s: float = 5.0) -> None:
        """Run intents until `shutdown` is set (or, with until_idle, nothing is left)."""
        last_beat = last_supervise = 0.0
        while not self.shutdown.is_set():
            now = time.monotonic()
            if now - last_beat >= heartbeat_s:
                self.ctx.journal.heartbeat()
                last_beat = now
            # run-sync is watched always, whatever runs (a crash during a long batch or a
            # phase is restarted): finalize and abort mark their stop under runsync_lock
            # first, so the supervisor never restarts what they stopped on purpose.
            if now - last_supervise >= supervise_s:
                self.supervise()
                last_supervise = now
            pending = self.ctx.journal.intents("pending")
            for intent in pending:
                if intent.kind in CONTROL_KINDS:
                    self._control(intent)
                elif intent.kind == "abort" and self.busy:
                    self.ctx.stop.set()  # the running intent stops; abort runs after it
                    break
                elif not self.busy:
                    self._launch(intent)
                    break
            if until_idle and not self.busy and not self.ctx.journal.intents("pending"):
                return
            time.sleep(poll_s)
        self.ctx.stop.set()
        if self._worker is not None:
            self._worker.join()

    @property
    def busy(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def _control(self, intent: Intent) -> None:
        # Recorded in the journal too, so a restarted executor stays paused.
        if intent.kind == "pause":
            self.ctx.paused.set()
            self.ctx.journal.set_counters(ORCH_SCOPE, {"paused": 1})
            self.ctx.event("executor", "paused: running computes finish, no new one starts")
        else:
            self.ctx.paused.clear()
            self.ctx.journal.set_counters(ORCH_SCOPE, {"paused": 0})
            self.ctx.event("executor", "resumed")
        self.ctx.journal.finish_intent(intent.id, "done", json.dumps({"ok": True}))

    def _launch(self, intent: Intent) -> None:
        self.ctx.journal.finish_intent(intent.id, "running")
        self.ctx.stop.clear()
        self._current = intent
        self._worker = threading.Thread(target=self._run_intent, args=(intent,),
                                        name=f"intent-{intent.id}", daemon=True)
        self._worker.start()

    def _run_intent(self, intent: Intent) -> None:
        journal = self.ctx.journal
        try:
            result = self.handle(intent)
            status = "done" if result.get("ok", True) else "failed"
            journal.finish_intent(intent.id, status, json.dumps(result, default=str))
        except Stopped as exc:
            if self.shutdown.is_set():
                journal.finish_intent(intent.id, "pending", "executor stopped; will resume")
            else:
                journal.finish_intent(intent.id, "failed", json.dumps(
                    {"ok": False, "error": str(exc)}))
        except Exception as exc:
            self.ctx.event("executor", f"{intent.kind} failed: {exc}", level="error",
                           intent=intent.id)
            payload = getattr(exc, "payload", {})
            journal.finish_intent(intent.id, "failed", json.dumps(
                {"ok": False, "error": f"{exc}", **payload}, default=str))

    # ------------------------------------------------------------------ intents

    def handle(self, intent: Intent) -> dict[str, Any]:
        args = intent.args
        phase = self.ctx.journal.phase()
        if phase is not None and phase.phase in ("aborted", "done"):
            raise OrchestratorError(f"the upgrade is {phase.phase}; nothing more to do "
                                    "(a new upgrade starts with a fresh state_dir)")
        if intent.kind in ("upgrade", "rollback"):
            return self.computes(intent.kind, args)
        if intent.kind == "finalize":
            return self.finalize(args)
        if intent.kind == "abort":
            return self.abort(args)
        if intent.kind == "phase":
            return self.advance(str(args.get("target", "")), args)
        if intent.kind == "unpair":
            if self.ctx.step_done("finalize.unpair"):
                return {"ok": True, "detail": "already unpaired by finalize"}
            return {"ok": True, "detail": fin.unpair(self.ctx)}
        raise OrchestratorError(f"unknown intent kind {intent.kind!r}")

    def computes(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        phase = self.ctx.journal.phase()
        require_computes_phase(phase.phase if phase else None)
        if phase is not None and phase.phase == "run-sync":
            self.ctx.journal.set_phase("computes", note="computes moving")
        if self.ctx.step_done(fin.COMMIT_STEP) and action == "rollback":
            raise OrchestratorError("finalize committed: computes can no longer go back to the "
                                    "old cluster (its control plane is being retired)")
        outcome = self.runner.run(action, list(args.get("computes") or []),
                                  batch_size=args.get("batch_size"),
                                  parallel=args.get("parallel"),
                                  canary=args.get("canary"),
                                  max_failures=args.get("max_failures"))
        return {"ok": outcome.ok, "action": action, "succeeded": outcome.succeeded,
                "failed": outcome.failed, "not_started": outcome.not_started,
                "stopped_reason": outcome.stopped_reason, "batches": outcome.batches_run}

    # ------------------------------------------------------------------ phases

    def advance(self, target: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        args = args or {}
        if target not in PHASES:
            raise OrchestratorError(f"unknown phase {target!r}; phases: {', '.join(PHASES)}")
        if target in ("finalize", "done"):
            return self.finalize(args)
        done: list[str] = []
        for phase in PHASES[1:PHASES.index(target) + 1]:
            # A finished phase is skipped, except preflight and pair asked for by name:
            # both are safe to repeat (read-only checks, idempotent bgp-routers).
            repeatable = phase == target and phase in ("preflight", "pair")
            if self.ctx.step_done(phase_marker(phase)) and not repeatable:
                continue
            self.ctx.check_stop(phase)
            detail = self.run_phase(phase, args)
            done.append(f"{phase}: {detail}")
        result: dict[str, Any] = {"ok": True, "phase": target, "done": done}
        if self.last_checks is not None:
            result["checks"] = self.last_checks
        return result

    def run_phase(self, phase: str, args: dict[str, Any]) -> str:
        """Run one phase; a re-run of a finished one (preflight again) leaves the phase be."""
        journal = self.ctx.journal
        rerun = self.ctx.step_done(phase_marker(phase))
        if not rerun:
            journal.set_phase(phase, status="entered")
        try:
            detail = getattr(self, "_phase_" + phase.replace("-", "_"))(args)
        except Exception as exc:
            if not rerun:
                journal.set_phase(phase, status="failed", note=str(exc)[:2000])
            raise
        if rerun:
            self.ctx.event("phase", f"{phase} re-run: {detail}", phase=phase)
            return detail
        if phase != "computes":
            journal.set_phase(phase, status="done", note=detail)
        self.ctx.mark_step(phase_marker(phase))
        return detail

    def _phase_preflight(self, args: dict[str, Any]) -> str:
        report = run_preflight(self.ctx, args.get("approach") or self.approach,
                               db_nodes_down=args.get("db_nodes_down"),
                               sync_started=self.ctx.step_done(phase_marker("pre-sync")))
        for check in report.checks:
            level = "info" if check.ok else ("warning" if check.severity == "warning"
                                             else "error")
            self.ctx.event("preflight", f"{'ok' if check.ok else 'FAIL'} {check.name}: "
                           f"{check.detail}", level=level, **check.as_dict())
        self.last_checks = [c.as_dict() for c in report.checks]
        if not report.ok:
            lines = [f"- {c.name}: {c.detail}\n  fix: {c.fix}" for c in report.failures]
            error = OrchestratorError("preflight refused:\n" + "\n".join(lines))
            error.payload = {"checks": self.last_checks}  # type: ignore[attr-defined]
            raise error
        return f"{len(report.checks)} checks passed"

    def _phase_pair(self, args: dict[str, Any]) -> str:
        return fin.pair(self.ctx)

    def _phase_pre_sync(self, args: dict[str, Any]) -> str:
        run = run_step(self.ctx, "pre-sync")
        if run.exit_code != 0:
            raise OrchestratorError(f"pre-sync failed (exit {run.exit_code}); it resumes from "
                                    f"its checkpoints when run again:\n{run.output}")
        return f"copied in {run.duration_s:.1f}s; {fin.check_pairing(self.ctx)}"

    def _phase_run_sync(self, args: dict[str, Any]) -> str:
        self.runsync.start()
        counters = self.runsync.wait_reporting()
        return (f"running (pid {self.runsync.pid()}), lag {counters.get('lag_s', 0):.1f}s, "
                f"queue {counters.get('queue_depth', 0):.0f}")

    def _phase_computes(self, args: dict[str, Any]) -> str:
        return "computes may move (issu compute upgrade ...)"

    # ------------------------------------------------------------------ finalize / abort

    def finalize(self, args: dict[str, Any]) -> dict[str, Any]:
        if not self.ctx.step_done(phase_marker("run-sync")):
            raise OrchestratorError("finalize needs run-sync to have run (phases pair, "
                                    "pre-sync, run-sync); nothing to finalize yet")
        journal = self.ctx.journal
        force = bool(args.get("force"))
        reason = str(args.get("reason") or "")
        journal.set_phase("finalize", status="entered",
                          note=f"forced: {reason}" if force else "")
        try:
            steps = fin.finalize(self.ctx, force=force, reason=reason,
                                 old_stopped=bool(args.get("old_stopped")),
                                 northbound_file=self.northbound_file,
                                 no_northbound=bool(args.get("no_northbound")))
        except Exception as exc:
            journal.set_phase("finalize", status="failed", note=str(exc)[:2000])
            raise
        journal.set_phase("done", status="done", note="the new cluster serves")
        self.ctx.mark_step(phase_marker("finalize"))
        return {"ok": True, "steps": steps}

    def abort(self, args: dict[str, Any]) -> dict[str, Any]:
        journal = self.ctx.journal
        self.ctx.stop.clear()
        journal.set_phase("aborting", status="entered")
        try:
            done = fin.abort(self.ctx, self.runner, drop_new_data=bool(args.get("drop_new_data")))
        except Exception as exc:
            journal.set_phase("aborting", status="failed", note=str(exc)[:2000])
            raise
        journal.set_phase("aborted", status="done", note="; ".join(done))
        return {"ok": True, "done": done}
