"""Upgrade, roll back and reconcile computes; every transition goes through the journal."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from backends.analytics import health_evidence
from backends.apiserver import AnalyticsClient, ApiServerError
from backends.versions import release_matches
from issu_tui.orchestrator.context import Context, OrchestratorError
from issu_tui.orchestrator.scheduler import BatchScheduler, ScheduleOutcome
from issu_tui.orchestrator.steprecorder import StepRecorder

if TYPE_CHECKING:
    from backends.compute import ComputeExecutor, ProbeResult, StepResult

log = logging.getLogger(__name__)

# States a crash can leave behind: the world must be asked before anything else happens.
UNSETTLED = ("queued", "upgrading", "rolling-back", "unknown")


class ComputeRunner:
    def __init__(self, ctx: Context, executor: ComputeExecutor | None = None,
                 health_poll_s: float = 0.5) -> None:
        self.ctx = ctx
        self._executor = executor
        self.health_poll_s = health_poll_s
        # open the SSH connections of the computes next in line while others run
        self.preconnect = True
        # one analytics client per cluster for a run's health gates (a client costs its TLS
        # setup, paid once per run instead of once per compute; shared by the threads)
        self._analytics: dict[str, AnalyticsClient | None] = {}
        self._analytics_lock = threading.Lock()
        # the steps' outputs go to the journal without holding up the next step
        self._steps = StepRecorder(ctx.journal)

    @property
    def executor(self) -> ComputeExecutor:
        if self._executor is None:
            self._executor = self.ctx.compute_executor()
        return self._executor

    # ------------------------------------------------------------------ inventory

    def register_inventory(self) -> None:
        """Every compute of the config is in the journal (a known one keeps its state)."""
        old = self.ctx.config.old
        for compute in self.ctx.config.computes:
            self.ctx.journal.upsert_compute(compute.name, compute.address, state="old",
                                            version=old.version, cluster="old")

    def resolve(self, names: Sequence[str]) -> list[str]:
        """Names as given ("all" = the whole inventory), checked against the inventory."""
        inventory = [c.name for c in self.ctx.config.computes]
        if not names or list(names) == ["all"]:
            return inventory
        unknown = [n for n in names if n not in inventory]
        if unknown:
            raise OrchestratorError(
                f"{self.ctx.config_path}: not in the inventory ([[computes]]): "
                f"{', '.join(unknown)}")
        seen: list[str] = []
        for name in names:
            if name not in seen:
                seen.append(name)
        return seen

    # ------------------------------------------------------------------ batches

    def run(self, action: str, names: Sequence[str], *, batch_size: int | None = None,
            parallel: int | None = None, canary: int | None = None,
            max_failures: int | None = None) -> ScheduleOutcome:
        if action not in ("upgrade", "rollback"):
            raise OrchestratorError(f"unknown compute action {action!r}")
        batch = self.ctx.config.batch
        wanted = self.resolve(names)
        todo = [n for n in wanted if not self._already(action, n)]
        for name in wanted:
            if name not in todo:
                self.ctx.event("compute", f"{name}: already {self._goal(action)}, skipped",
                               compute=name, action=action)
        first_batch = self._next_batch_number()
        for name in todo:
            row = self.ctx.journal.compute(name)
            if row is not None and row.state not in ("upgrading", "rolling-back"):
                self.ctx.journal.transition_compute(name, "queued", f"queued for {action}",
                                                    last_action=action)
        run_one = self.upgrade_one if action == "upgrade" else self.rollback_one
        scheduler = BatchScheduler(
            run_one,
            batch_size=batch_size or batch.size,
            parallel=parallel or batch.parallel,
            canary=batch.canary if canary is None else canary,
            max_failures=batch.max_failures if max_failures is None else max_failures,
            should_stop=self.ctx.stop.is_set,
            wait_if_paused=self.ctx.wait_if_paused,
            on_batch=lambda number, members: self.ctx.event(
                "batch", f"{action} batch {number}: {', '.join(members)}",
                batch=number, action=action, computes=members),
            prepare=self._preconnect,
            lookahead=(parallel or batch.parallel) if self.preconnect else 0,
        )
        try:
            outcome = scheduler.run(todo, first_batch=first_batch)
        finally:
            if self.preconnect:
                self.executor.close_warm()
            self._close_analytics()
        for name in outcome.not_started:
            self._unqueue(name, outcome.stopped_reason)
        outcome.succeeded.extend(n for n in wanted if n not in todo)
        return outcome

    def _preconnect(self, name: str) -> None:
        try:
            self.executor.preconnect(self.ctx.compute_target(name))
        except Exception as exc:  # the action connects itself and reports what fails
            log.debug("%s: no connection ahead: %s", name, exc)

    def _goal(self, action: str) -> str:
        return "on the new cluster" if action == "upgrade" else "on the old cluster"

    def _already(self, action: str, name: str) -> bool:
        row = self.ctx.journal.compute(name)
        if row is None:
            return False
        config = self.ctx.config
        if action == "upgrade":
            return row.state == "upgraded" and release_matches(config.new.version, row.version)
        return row.state == "old" and release_matches(config.old.version, row.version)

    def _next_batch_number(self) -> int:
        numbers = [r.batch for r in self.ctx.journal.computes() if r.batch is not None]
        return (max(numbers) + 1) if numbers else 1

    def _unqueue(self, name: str, reason: str) -> None:
        """A queued compute that never started goes back to where it was."""
        row = self.ctx.journal.compute(name)
        if row is None or row.state != "queued":
            return
        back = {"new": "upgraded", "old": "old"}.get(row.cluster, "unknown")
        self.ctx.journal.transition_compute(name, back, f"not started: {reason}")

    # ------------------------------------------------------------------ one compute

    def _record(self, name: str) -> Callable[[StepResult], None]:
        def on_step(step: StepResult) -> None:
            self._steps.record((name, step.step, step.command, step.exit_code,
                                step.duration_s, step.stdout, step.stderr))
        return on_step

    def upgrade_one(self, name: str, batch: int) -> bool:
        return self._act(name, batch, "upgrade", "upgrading", "new", "upgraded")

    def rollback_one(self, name: str, batch: int) -> bool:
        return self._act(name, batch, "rollback", "rolling-back", "old", "old")

    def _act(self, name: str, batch: int, action: str, busy: str, cluster: str,
             goal: str) -> bool:
        journal = self.ctx.journal
        compute = self.ctx.compute_config(name)
        journal.transition_compute(name, busy, f"{action} to {cluster} (batch {batch})",
                                   batch=batch, last_action=action)
        target = self.ctx.cluster_target(cluster)
        try:
            method = self.executor.upgrade if action == "upgrade" else self.executor.rollback
            try:
                result = method(self.ctx.compute_target(name), compute.profile, target,
                                self._record(name))
            finally:  # its steps' outputs are in the journal before its next state
                self._steps.flush(name)
        except Exception as exc:  # SSH refused, host key mismatch, timeout...
            self._failed(name, f"{action} failed: {exc}")
            return False
        probe = result.probe
        if not result.ok:
            self._failed(name, f"{action} failed: {result.error}", probe)
            return False
        healthy, detail = self.health_gate(name, cluster)
        if not healthy:
            self._failed(name, f"{action} done but the health gate failed: {detail}", probe)
            return False
        fields: dict[str, Any] = {"version": self.ctx.cluster(cluster).version,
                                  "cluster": cluster}
        if probe is not None:
            fields["version"] = probe.version or fields["version"]
            fields["agent_state"] = probe.agent_state
        if result.gap_ms is not None:
            fields["gap_ms"] = result.gap_ms
        gap = f", data-path gap {result.gap_ms:.0f} ms" if result.gap_ms is not None else ""
        journal.transition_compute(name, goal, f"{action} done; {detail}{gap}", **fields)
        return True

    def _failed(self, name: str, detail: str, probe: ProbeResult | None = None) -> None:
        fields: dict[str, Any] = {}
        if probe is not None:
            fields = {"version": probe.version, "agent_state": probe.agent_state,
                      "cluster": self.ctx.cluster_of(list(probe.control_nodes))}
        self.ctx.journal.transition_compute(name, "failed", detail, **fields)

    # ------------------------------------------------------------------ health gate

    def health_gate(self, name: str, cluster: str) -> tuple[bool, str]:
        """The agent reports the cluster's version to its analytics, with an XMPP session up
        to one of its control nodes; without that evidence (no analytics configured, no UVE,
        no XMPP peers) the gate fails and says why."""
        analytics = self._analytics_of(cluster)
        if analytics is None:
            return False, (f"no analytics configured for {cluster} ([{cluster}.analytics] url): "
                           "the health gate needs the agent's vrouter UVE as evidence")
        nodes = {cn.address for cn in self.ctx.cluster(cluster).control_nodes}
        version = self.ctx.cluster(cluster).version
        deadline = time.monotonic() + self.ctx.config.batch.health_timeout_s
        last = "no vrouter UVE yet"
        while True:
            try:
                uve = analytics.vrouter(name)
            except ApiServerError as exc:
                uve, last = None, str(exc)
            else:
                evidence = health_evidence(name, uve, version, nodes)
                if evidence.ok:
                    return True, f"reports to the {cluster} analytics ({evidence.reason})"
                last = evidence.reason
            if time.monotonic() >= deadline or self.ctx.stop.is_set():
                return False, f"{cluster} analytics: {last}"
            time.sleep(self.health_poll_s)

    def _analytics_of(self, cluster: str) -> AnalyticsClient | None:
        with self._analytics_lock:
            if cluster not in self._analytics:
                self._analytics[cluster] = self.ctx.analytics(cluster)
            return self._analytics[cluster]

    def _close_analytics(self) -> None:
        with self._analytics_lock:
            clients, self._analytics = self._analytics, {}
        for client in clients.values():
            if client is not None:
                client.close()

    # ------------------------------------------------------------------ reconcile

    def probe(self, name: str) -> ProbeResult:
        return self.executor.probe(self.ctx.compute_target(name),
                                   self.ctx.compute_config(name).profile)

    def reconcile(self) -> dict[str, str]:
        """After a crash: every compute left half-way is probed for its real version and
        controller, then marked; the result maps name -> state."""
        settled: dict[str, str] = {}
        journal = self.ctx.journal
        inventory = {c.name for c in self.ctx.config.computes}
        for row in journal.computes():
            if row.state not in UNSETTLED or row.name not in inventory:
                continue
            if row.state != "unknown":
                journal.transition_compute(row.name, "unknown",
                                           f"was {row.state} when the executor stopped; probing")
            try:
                probe = self.probe(row.name)
            except Exception as exc:
                journal.transition_compute(row.name, "unknown", f"probe failed: {exc}")
                settled[row.name] = "unknown"
                continue
            settled[row.name] = self._settle(row.name, probe)
        return settled

    def _settle(self, name: str, probe: ProbeResult) -> str:
        cluster = self.ctx.cluster_of(list(probe.control_nodes))
        seen = f"version {probe.version}, controllers {', '.join(probe.control_nodes) or '-'}"
        fields = {"version": probe.version, "cluster": cluster, "agent_state": probe.agent_state}
        if cluster == "new" and probe.runs(self.ctx.config.new.version):
            state = "upgraded"
        elif cluster == "old" and probe.runs(self.ctx.config.old.version):
            state = "old"
        else:
            state = "failed"
            seen += ": half-way; run upgrade or rollback on it again"
        self.ctx.journal.transition_compute(name, state, f"reconciled by probe: {seen}", **fields)
        return state
