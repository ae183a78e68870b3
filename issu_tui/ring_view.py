"""The console's view of a shared-hardware approach's ring steps (grow, stay, rolling): how
many are done, the group the current phase may run, its steps not done yet, and why they
wait when they cannot run now. The steps themselves are the orchestrator's (ringplan.py);
`n` runs a group through a `ring` intent, as `issu ring run --when` does."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from issu_tui.config import IssuConfig
from issu_tui.orchestrator.approaches import config_ring_steps
from issu_tui.orchestrator.ringplan import (
    SHARED_APPROACHES,
    RingPlanError,
    RingStep,
    pending_steps,
    step_marker,
    way_back_refusal,
    when_in_phase,
)


@dataclass(frozen=True)
class RingView:
    approach: str
    done: int
    total: int
    when: str | None                  # the group the current phase may run; None: none
    pending: tuple[RingStep, ...]     # that group's steps not done yet, in order
    waits: str = ""                   # why `pending` cannot run now ('': it can)

    @property
    def summary(self) -> str:
        """`rolling: 2 of 5 ring steps done; next (computes): convert 127.0.0.2 to v2`."""
        text = f"{self.approach}: {self.done} of {self.total} ring steps done"
        if self.pending and self.when is not None:
            text += f"; next ({self.when}): {self.pending[0].does}"
            if len(self.pending) > 1:
                text += f" (+{len(self.pending) - 1} more)"
        return text

    def detail(self) -> str:
        """The pending steps for a confirmation: what each does, what it stops (checked by
        the quorum guard first), its risks and its way back."""
        lines = []
        for step in self.pending:
            lines.append(f"- {step.does}")
            if step.stops:
                lines.append(f"  stops {', '.join(step.stops)} (the quorum guard checks the "
                             "live ring first and refuses a step that would lose quorum)")
            lines += [f"  risk: {risk}" for risk in step.risks]
            lines.append(f"  way back: {step.inverse or 'none'}")
        return "\n".join(lines)


def ring_view(config: IssuConfig, approach: str | None, phase: str | None,
              done: Collection[str], way_back_closed: bool) -> RingView | None:
    """The ring steps of `approach` as phase `phase` sees them, from the journal's markers
    `done`; None when the approach has no ring steps (separate) or the hosts do not fit it
    (`issu plan` says why)."""
    if approach not in SHARED_APPROACHES:
        return None
    try:
        steps = config_ring_steps(config, approach)
    except RingPlanError:
        return None
    finished = sum(1 for i, s in enumerate(steps) if step_marker(i, s) in done)
    when = when_in_phase(phase)
    pending = tuple(s for _, s in pending_steps(steps, when, done)) if when else ()
    waits = ""
    if pending and when == "plan":
        waits = "pre-sync runs them before it copies anything"
    elif pending and when == "done":
        waits = way_back_refusal(steps, when, done, way_back_closed) or ""
    return RingView(approach, finished, len(steps), when if pending else None, pending, waits)

