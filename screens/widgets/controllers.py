"""The controller hosts pane (Analytics screen): each host of both clusters with the state of
its services, as their controller profiles' status step says over SSH (polled every
`controllers_interval`). Hidden while no controller inventory is configured."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from issu_tui.controller_view import ControllersView, HostServices, running_state
from screens.format import duration


def _services(host: HostServices) -> Text:
    """`✗ stopped: svc-monitor  ✓ api-server control`: what does not run first, by state,
    then the running ones (one line per host: a narrow pane cuts the running ones)."""
    if host.error is not None:
        return Text(host.error, style="red")
    up = [s for s, state in host.services if running_state(state)]
    down: dict[str, list[str]] = {}
    for service, state in host.services:
        if not running_state(state):
            down.setdefault(state, []).append(service)
    parts = [Text.assemble((f"✗ {state}: ", "bold red"), " ".join(names))
             for state, names in down.items()]
    if up:
        parts.append(Text.assemble(("✓ ", "green"), " ".join(up)))
    return Text("  ").join(parts)


def controllers_table(view: ControllersView | None, error: str | None,
                      age_s: float | None = None) -> Table:
    """One row per host: cluster, host, address, its services' states (those its roles run
    and its profile maps: they say the roles). After a failed poll the title says how old
    the rows are."""
    title = None
    if error is not None:
        title = f"STALE {duration(age_s or 0.0)} old: {error}" if view else error
    table = Table(title=title, title_justify="left", title_style="bold yellow", expand=True,
                  box=None, pad_edge=False, show_edge=False)
    for col in ("cluster", "host", "address"):
        table.add_column(col, no_wrap=True)
    table.add_column("services", ratio=1, no_wrap=True, overflow="ellipsis")
    for host in view.hosts if view else ():
        table.add_row(host.side, host.name, host.address, _services(host),
                      style="dim" if error else "")
    return table


class ControllersPane(Static):
    def show(self, view: ControllersView | None, error: str | None,
             age_s: float | None = None) -> None:
        self.display = view is not None or error is not None
        if self.display:
            self.update(controllers_table(view, error, age_s))
