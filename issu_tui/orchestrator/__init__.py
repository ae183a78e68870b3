"""The executor that drives an ISSU from plan to done, with its state in the journal.

Phases: plan -> preflight -> pair -> pre-sync -> run-sync -> computes -> finalize -> done,
plus abort and per-compute rollback. Every step is idempotent and resumable: the executor
reconciles the journal with the world (probing computes, checking run-sync) before acting.
"""

from issu_tui.orchestrator.context import Context, OrchestratorError
from issu_tui.orchestrator.executor import Executor

__all__ = ["Context", "Executor", "OrchestratorError"]
