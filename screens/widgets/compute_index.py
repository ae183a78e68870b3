"""The compute grid's data, kept beside the widget so that no cost follows the fleet's size.

`ComputeStore` (one per console) holds every compute by name, in natural order (cmp-2 before
cmp-10), the width of each column and a short log of which names changed at each refresh; it
is fed only the rows the journal says changed. `ComputeView` (one per grid) is the filtered,
sorted list of names a grid shows, brought up to date from the store's log: a refresh costs
the number of changes, a filter one pass over the computes, a key a lookup by position.

No Textual here: the widget (screens/widgets/computes.py) renders the visible rows only.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from operator import attrgetter
from typing import Any

from rich.cells import cell_len

from issu_tui.journal import ComputeRow
from issu_tui.names import natural_key
from screens.format import gap

COLUMNS = (
    ("mark", " "), ("name", "Name"), ("state", "State"), ("version", "Version"),
    ("cluster", "Cluster"), ("agent", "Agent"), ("gap", "Gap"), ("batch", "Batch"),
    ("address", "Address"), ("last", "Last action"),
)
COLUMN_KEYS = tuple(key for key, _ in COLUMNS)
FILTER_FIELDS = ("name", "state", "version", "cluster", "agent", "address")
EXACT_FIELDS = {"addr": "address"}  # `addr:127.24.1.1` is that address, not 127.24.1.10
# After an agent's state that analytics no longer confirm (their poll failed): the last
# answer, not the present.
STALE_MARK = "?"
# The widest value each column can take, so that no column widens while the upgrade runs:
# every state and agent state, a gap up to 9999ms, batches up to 9999.
WIDEST = {"state": "rolling-back", "agent": "Non-Functional" + STALE_MARK, "gap": "9999ms",
          "batch": "9999", "cluster": "unknown"}
# `S` cycles the grid's order through these (name is natural order: cmp-2 before cmp-10).
SORTS = ("name", "state", "version", "cluster", "gap")
# Operational order: what needs a look first.
STATE_ORDER = {s: i for i, s in enumerate(("failed", "unknown", "upgrading", "rolling-back",
                                           "queued", "old", "upgraded"))}
MARK = "●"
LOG_KEEP = 256          # refreshes a view may fall behind before it rebuilds
REBUILD_AT = 2048       # more changes than this at once: rebuild a view instead of patching it

Cells = tuple[str, ...]
Terms = list[tuple[str | None, str]]

_FIELD: dict[str, Callable[[ComputeRow], object]] = {
    "name": attrgetter("name"), "state": attrgetter("state"),
    "version": attrgetter("version"), "cluster": attrgetter("cluster"),
    "agent": attrgetter("agent_state"), "address": attrgetter("address"),
}

def cells_of(row: ComputeRow, marked: bool) -> Cells:
    return (MARK if marked else " ", row.name, row.state, row.version or "-",
            row.cluster or "-", row.agent_state or "-", gap(row.gap_ms),
            "-" if row.batch is None else str(row.batch), row.address, row.last_action or "-")


def parse_filter(text: str) -> Terms:
    """`state:failed web` -> [("state", "failed"), (None, "web")]: fields AND-ed together."""
    terms: Terms = []
    for word in text.split():
        key, sep, value = word.partition(":")
        if sep and (key.lower() in FILTER_FIELDS or key.lower() in EXACT_FIELDS):
            terms.append((key.lower(), value.lower()))
        else:
            terms.append((None, word.lower()))
    return terms


def matches(row: ComputeRow, terms: Terms) -> bool:
    for key, value in terms:
        if key is None:
            if value not in row.name.lower() and value not in row.address.lower():
                return False
        elif key in EXACT_FIELDS:
            if value != str(_FIELD[EXACT_FIELDS[key]](row)).lower():
                return False
        elif value not in str(_FIELD[key](row)).lower():
            return False
    return True


def _width(text: str) -> int:
    return len(text) if text.isascii() else cell_len(text)


class ComputeStore:
    """Every compute the console knows, by name, in natural order; fed the changes only."""

    def __init__(self) -> None:
        self.rows: dict[str, ComputeRow] = {}
        self.order: list[str] = []
        self.version = 0
        # a column is as wide as the longest value it can take, or has held (never cut)
        self.widths = [max(_width(label), _width(WIDEST.get(key, ""))) for key, label in
                       COLUMNS]
        self._keys: dict[str, tuple[tuple[str | int, ...], str]] = {}
        # the agent's state as the analytics say it (the analytics screen's source); the
        # journal's, recorded at the compute's last move, only where analytics say nothing
        self._agents: dict[str, str] = {}
        self._log: deque[tuple[int, tuple[str, ...]]] = deque(maxlen=LOG_KEEP)

    def __len__(self) -> int:
        return len(self.rows)

    def key(self, name: str) -> tuple[tuple[str | int, ...], str]:
        return self._keys[name]

    def apply(self, rows: Iterable[ComputeRow]) -> tuple[str, ...]:
        """Take the changed rows; returns the names that really changed."""
        changed: list[str] = []
        new: list[str] = []
        known = self.rows
        widths = self.widths
        agents = self._agents
        for row in rows:
            name = row.name
            agent = agents.get(name)
            if agent is not None and agent != row.agent_state:
                row = replace(row, agent_state=agent)
            old = known.get(name)
            if old == row:
                continue
            if old is None:
                new.append(name)
                self._keys[name] = natural_key(name)
            known[name] = row
            changed.append(name)
            for i, text in enumerate(cells_of(row, False)):
                width = _width(text)
                if width > widths[i]:
                    widths[i] = width
        if new:
            if len(new) > 64:
                self.order.extend(new)
                self.order.sort(key=self._keys.__getitem__)
            else:
                for name in new:
                    insort(self.order, name, key=self._keys.__getitem__)
        if changed:
            self.version += 1
            self._log.append((self.version, tuple(changed)))
        return tuple(changed)

    def apply_agents(self, agents: Mapping[str, str], *,
                     failed: bool = False) -> tuple[str, ...]:
        """The agents' states from the analytics; returns the names whose state changed.
        `failed`: an analytics-api did not answer, so the agents it said nothing of keep
        their last state, marked stale (`Functional?`), rather than passing for current."""
        fresh = {name: state for name, state in agents.items() if state}
        if failed:
            for name, state in self._agents.items():
                if name not in fresh:
                    fresh[name] = state if state.endswith(STALE_MARK) else state + STALE_MARK
        self._agents = fresh
        moved = [replace(row, agent_state=self._agents[name])
                 for name, row in self.rows.items()
                 if name in self._agents and row.agent_state != self._agents[name]]
        return self.apply(moved)

    @property
    def stale_agents(self) -> int:
        """How many agents' states are the last answer, not a current one."""
        return sum(1 for state in self._agents.values() if state.endswith(STALE_MARK))

    def changed_since(self, version: int) -> set[str] | None:
        """Names changed after `version`; None when the log no longer reaches back to it."""
        if version == self.version:
            return set()
        if version <= 0 or not self._log or self._log[0][0] > version + 1:
            return None
        names: set[str] = set()
        for at, changed in reversed(self._log):
            if at <= version:
                break
            names.update(changed)
        return names

    @property
    def table_width(self) -> int:
        """Every column with its padding of one cell on each side."""
        return sum(self.widths) + 2 * len(self.widths)


class ComputeView:
    """The names one grid shows: the store's order, filtered; patched from the store's log."""

    def __init__(self, store: ComputeStore) -> None:
        self.store = store
        self.terms: Terms = []
        self.shown: list[str] = []
        self._members: set[str] = set()
        self.version = -1
        self.sort = "name"
        self._positions: dict[str, int] = {}  # by another column than name: name -> index

    def set_sort(self, column: str) -> None:
        """Order by `column` (one of SORTS); names in natural order within equal values."""
        if column not in SORTS:
            raise ValueError(f"cannot sort by {column!r}; by one of {', '.join(SORTS)}")
        self.sort = column
        self.rebuild()

    def __len__(self) -> int:
        return len(self.shown)

    def __contains__(self, name: object) -> bool:
        return name in self._members

    def set_filter(self, text: str) -> None:
        self.terms = parse_filter(text)
        self.rebuild()

    def rebuild(self) -> None:
        store, terms = self.store, self.terms
        if terms:
            rows = store.rows
            self.shown = [n for n in store.order if matches(rows[n], terms)]
        else:
            self.shown = list(store.order)
        if self.sort != "name":
            # a stable sort of the natural order: equal values keep their names' order
            by, rows = _SORT_KEYS[self.sort], store.rows
            self.shown.sort(key=lambda name: by(rows[name]))
            self._positions = {name: i for i, name in enumerate(self.shown)}
        self._members = set(self.shown)
        self.version = store.version

    def sync(self) -> tuple[bool, set[str]]:
        """Catch up with the store: (whether names came or went, the names that changed)."""
        store = self.store
        changed = store.changed_since(self.version)
        if changed is None or len(changed) > REBUILD_AT or (changed and self.sort != "name"):
            # by another column a change can move a row anywhere: sort again (only then)
            before = self.shown
            self.rebuild()
            return before != self.shown, set(self.shown)
        moved = False
        rows, terms, key = store.rows, self.terms, store.key
        for name in changed:
            now = not terms or matches(rows[name], terms)
            if now == (name in self._members):
                continue
            moved = True
            if now:
                insort(self.shown, name, key=key)
                self._members.add(name)
            else:
                del self.shown[bisect_left(self.shown, key(name), key=key)]
                self._members.discard(name)
        self.version = store.version
        return moved, changed

    def index(self, name: str | None) -> int | None:
        """Where `name` is in the view (a binary search), None when it is not shown."""
        if name is None or name not in self._members:
            return None
        if self.sort != "name":
            return self._positions[name]
        return bisect_left(self.shown, self.store.key(name), key=self.store.key)


def _gap_key(row: ComputeRow) -> tuple[int, float]:
    return (1, 0.0) if row.gap_ms is None else (0, -row.gap_ms)  # the longest gap first


_SORT_KEYS: dict[str, Callable[[ComputeRow], Any]] = {
    "state": lambda row: STATE_ORDER.get(row.state, len(STATE_ORDER)),
    "version": lambda row: natural_key(row.version or "")[0],
    "cluster": lambda row: row.cluster or "~",
    "gap": _gap_key,
}
