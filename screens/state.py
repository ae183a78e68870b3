"""UI state shared by every screen: the newest data and the operator's marks.

Screens render from here; only the App writes the data fields (from its workers' results).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from issu_tui.console_api import AnalyticsSnapshot, ConsoleSnapshot
from issu_tui.controller_view import ControllersView
from issu_tui.journal import ComputeRow, Event
from screens.widgets.compute_index import ComputeStore

EVENT_KEEP = 2000


@dataclass
class ConsoleState:
    snapshot: ConsoleSnapshot | None = None
    analytics: AnalyticsSnapshot | None = None
    analytics_error: str | None = None
    # per cluster, when its analytics-api last answered (what is shown of it is from then)
    analytics_answered_at: dict[str, float] = field(default_factory=dict)
    controllers: ControllersView | None = None  # the controller hosts' services
    controllers_error: str | None = None
    events: list[Event] = field(default_factory=list)
    marks: set[str] = field(default_factory=set)
    computes: ComputeStore = field(default_factory=ComputeStore)  # every compute, by name
    compute_seq: int = 0  # the journal's change number the store is up to
    refresh_paused: bool = False
    read_only: bool = False
    read_only_reason: str = ""
    status: str = ""      # READ-ONLY, refresh paused, poll errors: shown on every screen
    clock: Callable[[], float] = time.time  # the backend's (tests pin it)
    generation: int = 0  # bumped on every new snapshot, so screens skip what they have

    def add_events(self, new: list[Event] | tuple[Event, ...]) -> None:
        self.events.extend(new)
        if len(self.events) > EVENT_KEEP:
            del self.events[: len(self.events) - EVENT_KEEP]

    def add_computes(self, rows: Iterable[ComputeRow], seq: int) -> None:
        """The computes changed since `compute_seq`, read at journal change number `seq`. A
        poll that finishes after a newer one brings nothing newer: it is dropped."""
        if seq < self.compute_seq:
            return
        self.computes.apply(rows)
        self.compute_seq = seq

    def controllers_age(self) -> float | None:
        if self.controllers is None or self.controllers_error is None:
            return None
        return max(0.0, self.clock() - self.controllers.fetched_at)

    def analytics_age(self) -> float | None:
        """How old the analytics on screen are when the last poll failed (None: current)."""
        if self.analytics is None or self.analytics_error is None:
            return None
        return max(0.0, self.clock() - self.analytics.fetched_at)

    @property
    def last_event_id(self) -> int:
        return self.events[-1].id if self.events else 0
