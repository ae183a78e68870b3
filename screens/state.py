"""UI state shared by every screen: the newest data and the operator's marks.

Screens render from here; only the App writes the data fields (from its workers' results).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from issu_tui.console_api import AnalyticsSnapshot, ConsoleSnapshot
from issu_tui.journal import Event

EVENT_KEEP = 2000


@dataclass
class ConsoleState:
    snapshot: ConsoleSnapshot | None = None
    analytics: AnalyticsSnapshot | None = None
    analytics_error: str | None = None
    events: list[Event] = field(default_factory=list)
    marks: set[str] = field(default_factory=set)
    refresh_paused: bool = False
    read_only: bool = False
    read_only_reason: str = ""
    status: str = ""      # READ-ONLY, refresh paused, poll errors: shown on every screen
    generation: int = 0  # bumped on every new snapshot, so screens skip what they have

    def add_events(self, new: list[Event] | tuple[Event, ...]) -> None:
        self.events.extend(new)
        if len(self.events) > EVENT_KEEP:
            del self.events[: len(self.events) - EVENT_KEEP]

    @property
    def last_event_id(self) -> int:
        return self.events[-1].id if self.events else 0
