"""The dashboard's read-only panes: phase timeline, sync, analytics."""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Sparkline, Static

from issu_tui.console_api import (
    RUNSYNC_SILENT_S,
    AnalyticsSnapshot,
    ConsoleSnapshot,
    CopyRate,
    PhaseView,
    SyncView,
    TableCount,
)
from issu_tui.names import natural_sorted
from screens.format import (
    SEVERITY_NAMES,
    STATE_STYLES,
    clock,
    duration,
    number,
    progress_bar,
    seconds,
)
from screens.state import ConsoleState

STEP_MARKS = {"done": ("✓", "green"), "current": ("▶", "bold yellow"),
              "pending": ("·", "dim"), "skipped": ("✗", "red")}


def timeline(view: PhaseView) -> Text:
    text = Text()
    for i, step in enumerate(view.steps):
        mark, style = STEP_MARKS[step.status]
        if i:
            text.append(" ")
        text.append(f"{mark}{step.name}", style=style)
    return text


def compact_timeline(view: PhaseView) -> Text:
    """`step 6/8 ✓✓✓✓✓▶··`: one mark per phase, the current one counted."""
    text = Text()
    current = next((i for i, s in enumerate(view.steps, start=1) if s.status == "current"),
                   None)
    if current is not None:
        text.append(f"step {current}/{len(view.steps)}", style="bold")
        text.append(" ")
    for step in view.steps:
        mark, style = STEP_MARKS[step.status]
        text.append(mark, style=style)
    return text


def phase_legend(view: PhaseView) -> str:
    """What each phase of the timeline does (the console API has it from the registry)."""
    return "\n".join(f"{step.name}: {step.title}" for step in view.steps if step.title)


def phase_text(view: PhaseView, *, wide: bool = False) -> Group:
    head = Text()
    if view.phase is None:
        head.append("no upgrade planned", style="bold")
    else:
        head.append(view.phase, style="bold reverse" if view.phase not in ("done",) else "green")
        # The space gets a run of its own (see screens/format.py: SVG runs and spaces).
        head.append(" ", style="bold")
        head.append(f"for {duration(view.in_phase_s)}")
        if view.from_version or view.to_version:
            head.append(f" · {view.from_version or '?'}→{view.to_version or '?'}")
        if view.paused:
            head.append("  PAUSED", style="bold yellow")
    # Narrow (80 columns: the dashboard's pane is 36 wide) the timeline is its marks only,
    # so that next and running both keep a line of their own.
    lines = [head, timeline(view) if wide else compact_timeline(view)]
    lines.append(Text.assemble(("next: ", "bold"), view.next_action))
    lines.append(Text.assemble(("running: ", "bold"), view.running))
    if not wide:
        for line in lines:  # one line each: running keeps its line at 80x24
            line.no_wrap, line.overflow = True, "ellipsis"
    if wide:
        lines.append(Text.assemble(("executor: ", "bold"), view.executor))
        if view.note:
            lines.append(Text.assemble(("note: ", "bold"), view.note))
        if view.ring is not None:
            lines.append(Text.assemble(("ring: ", "bold"), view.ring.summary))
        allowed = ", ".join(sorted(view.allowed)) or "none (read-only or finished)"
        lines.append(Text.assemble(("allowed: ", "bold"), allowed))
    return Group(*lines)


class PhasePane(Static):
    _shown: tuple[object, ...] | None = None

    def show(self, snap: ConsoleSnapshot, *, wide: bool = False) -> None:
        # Redraw only on a visible change (the time in phase moves by the second); the pane
        # has a fixed size, so no layout pass is needed.
        key = (snap.phase, int(snap.phase.in_phase_s), wide)
        if key != self._shown:
            self._shown = key
            self.tooltip = phase_legend(snap.phase)
            self.update(phase_text(snap.phase, wide=wide), layout=False)


# A copy with no new slice for this long says so (it may have stopped or failed).
COPY_IDLE_S = 60.0


def copy_lines(rate: CopyRate) -> tuple[Text, Text]:
    """`pre-sync 12.3k cells/s`, then the current table's slices and its ETA."""
    speed = Text.assemble((f"{rate.job} ", "bold"),
                          f"{number(round(rate.cells_per_s))} cells/s"
                          if rate.cells_per_s is not None
                          else "measuring...")
    if rate.idle_s >= COPY_IDLE_S:
        speed.append(" ")
        speed.append(f"no slice for {duration(rate.idle_s)}", style="yellow")
    table = Text.assemble(((rate.table.partition(".")[2] or rate.table) + " ", "bold"),
                          f"{number(rate.slices_done)}/{number(rate.slices_total)}")
    table.append(" ")
    table.append(f"ETA {duration(rate.table_eta_s)}" if rate.table_eta_s is not None
                 else "ETA -")
    for line in (speed, table):  # one line each: the pane has four
        line.no_wrap, line.overflow = True, "ellipsis"
    return speed, table


def sync_text(view: SyncView) -> Group:
    lag = Text.assemble(("lag ", "bold"), seconds(view.lag_s),
                        f"  p50 {seconds(view.lag_p50_s)}  p99 {seconds(view.lag_p99_s)}")
    rate = Text.assemble(("applied ", "bold"), number(view.applied),
                         f" ({number(view.applied_per_s)}/s)  queue {number(view.queue_depth)}")
    if view.runsync == "held":
        lag = Text.assemble(("run-sync ", "bold"), ("HELD stopped", "bold yellow"),
                            " (R starts it)")
    elif (view.runsync == "running" and view.report_age_s is not None
          and view.report_age_s >= RUNSYNC_SILENT_S):
        # the percentiles give way (the pane has four lines): the numbers shown are old
        lag = Text.assemble(("lag ", "bold"), seconds(view.lag_s), "  ",
                            (f"no report for {duration(view.report_age_s)}", "yellow"))
    if view.copy_rate is not None and view.runsync == "not started":
        lag, rate = copy_lines(view.copy_rate)
    elif view.runsync == "not started" and view.lag_s is None:
        # before run-sync (and while a copy has not finished its first slice): no lag to show
        lag = Text.assemble(("run-sync ", "bold"), "not started yet")
    problems = Text.assemble(("failed ", "bold"),
                             Text(f"{number(view.failed)}  ", style="red" if view.failed else ""),
                             ("quarantined ", "bold"),
                             Text(number(view.quarantined),
                                  style="yellow" if view.quarantined else ""))
    if view.verify_at is None:
        verify = Text.assemble(("verify ", "bold"), "not run yet")
    else:
        diffs = view.verify_differences or 0
        verify = Text.assemble(("verify ", "bold"),
                               Text(f"{number(diffs)} differences ",
                                    style="bold red" if diffs else "green"),
                               f"in {number(view.verify_checked)} rows at {clock(view.verify_at)}")
    return Group(lag, rate, problems, verify)


class SyncPane(Vertical):
    def compose(self) -> ComposeResult:
        yield Sparkline([], summary_function=max, classes="lag-sparkline")
        yield Static("", classes="sync-stats")

    _shown: SyncView | None = None

    def show(self, snap: ConsoleSnapshot) -> None:
        view = snap.sync
        if view == self._shown:
            return
        self._shown = view
        # Sparkline redraws when its data list is replaced (not mutated); no lag data yet
        # (before run-sync): no sparkline, rather than one drawn from nothing
        sparkline = self.query_one(Sparkline)
        sparkline.display = bool(view.lag_history)
        sparkline.data = list(view.lag_history) or [0.0]
        self.query_one(".sync-stats", Static).update(sync_text(view), layout=False)


SYNC_COLUMNS = (("scope", "Job"), ("table", "Keyspace.table"), ("progress", "Slices done"),
                ("copied", "Copied"), ("slices", "Slices"), ("to_copy", "To copy"),
                ("deleted", "Deleted"), ("quarantined", "Quarantined"),
                ("old", "Old@verify"), ("new", "New@verify"))


class SyncTables(DataTable[str | Text]):
    """Per keyspace/table counts of pre-sync and post-sync, with a bar of the slices done out
    of the table's slices (a copy checkpoints each slice as it finishes)."""

    def on_mount(self) -> None:
        self.cursor_type = "row"
        for key, label in SYNC_COLUMNS:
            self.add_column(label, key=key)

    def show(self, view: SyncView) -> None:
        rows: list[tuple[str | Text, ...]] = [
            (t.scope, f"{t.keyspace}.{t.table}", progress_bar(t.slices_done, t.slices_total),
             number(t.copied), f"{number(t.slices_done)}/{number(t.slices_total)}", _to_copy(t),
             number(t.deleted), number(t.quarantined), number(t.verify_old),
             number(t.verify_new)) for t in view.tables]
        keys = [f"{r[0]}:{r[1]}" for r in rows]
        with self.app.batch_update():
            if keys != [str(k.value) for k in self.rows]:
                self.clear()
                for key, row in zip(keys, rows, strict=True):
                    self.add_row(*row, key=key)
                return
            for key, row in zip(keys, rows, strict=True):
                for (column, _), value in zip(SYNC_COLUMNS[2:], row[2:], strict=True):
                    if self.get_cell(key, column) != value:
                        self.update_cell(key, column, value)


def _to_copy(table: TableCount) -> str:
    """Slices of the table left to copy (a job checkpoints each slice as it finishes)."""
    left = table.slices_total - table.slices_done
    if table.slices_total and left <= 0:
        return "done"
    return f"{number(left)} slices" if table.slices_total else "-"


def analytics_summary(snap: AnalyticsSnapshot | None, error: str | None, *,
                      age_s: float | None = None,
                      answered_at: Mapping[str, float] | None = None,
                      now: float = 0.0) -> Group:
    """Both clusters in a few lines. After a failed poll (`age_s`: how old what is shown
    is) the first line says so and the rest is dimmed: old data never passes for current."""
    if snap is None:
        return Group(Text(error or "no analytics-api configured (old/new.analytics.url)",
                          style="dim"))
    lines = []
    if age_s is not None:
        stale = Text.assemble(("STALE ", "bold yellow"), f"{duration(age_s)} old: ",
                              error or "")
        stale.no_wrap, stale.overflow = True, "ellipsis"
        lines.append(stale)
    for name, cluster in snap.clusters.items():
        if cluster.ok:
            alarms = len(cluster.alarms)
            lines.append(Text.assemble(
                (f"{name} ", "bold"), ("✓ ", "green"),
                f"{len(cluster.vrouters)} vrouters {len(cluster.control_nodes)} ctl ",
                Text(f"{alarms} alarm{'s' if alarms != 1 else ''}",
                     style="red" if alarms else "")))
        else:
            last = (answered_at or {}).get(name)
            since = f" (answered {duration(now - last)} ago)" if last is not None else ""
            lines.append(Text.assemble((f"{name} ", "bold"), ("✗ ", "red"),
                                       Text((cluster.error or "") + since, style="red")))
    per: dict[str, int] = {}
    for report in snap.computes.values():
        per[report.reports_to or "none"] = per.get(report.reports_to or "none", 0) + 1
    lines.append(Text.assemble(("reports to: ", "bold"),
                               "  ".join(f"{k} {v}" for k, v in sorted(per.items())) or "-"))
    moved = [a for a in snap.alarms if snap.moved_away(a)]
    critical = sum(1 for a in snap.alarms if a.severity == 0 and a not in moved)
    lines.append(Text.assemble(("alarms: ", "bold"), f"{len(snap.alarms)} merged  ",
                               Text(f"{critical} critical", style="bold red")
                               if critical else "",
                               Text(f"{'  ' if critical else ''}{len(moved)} left behind "
                                    "by moved computes", style="dim") if moved else ""))
    if age_s is not None:
        for line in lines[1:]:
            line.stylize("dim")
    for line in lines:  # one line each: a wrapped one pushes the alarms out of the pane
        line.no_wrap, line.overflow = True, "ellipsis"
    return Group(*lines)


class AnalyticsSummary(Static):
    def show(self, state: ConsoleState) -> None:
        self.update(analytics_summary(state.analytics, state.analytics_error,
                                      age_s=state.analytics_age(),
                                      answered_at=state.analytics_answered_at,
                                      now=state.clock()))


def _vrouter_table(snap: AnalyticsSnapshot, cluster: str) -> Table:
    """Name and version whole; where the pane is narrow (80 columns) agent and xmpp give up
    their width first, cut with an ellipsis (rich narrows only wrappable columns, and the
    cells themselves never wrap)."""
    table = Table(expand=True, box=None, pad_edge=False, show_edge=False)
    for col in ("vrouter", "version"):
        table.add_column(col, no_wrap=True)
    for col in ("agent", "xmpp"):
        table.add_column(col)
    data = snap.clusters.get(cluster)
    if data is None:
        return table
    if not data.ok:
        table.add_row(Text(data.error or "", style="red"), "", "", "")
        return table
    for name in natural_sorted(data.vrouters):
        v = data.vrouters[name]
        up = [p.ip for p in v.xmpp_peers if p.up]
        table.add_row(name, v.version or "-", _cut(v.agent_state or "-"),
                      _cut(",".join(up) or "down"))
    return table


def _cut(value: str) -> Text:
    return Text(value, no_wrap=True, overflow="ellipsis")


class AnalyticsDetail(Vertical):
    """Old and new side by side, then the consolidated view and the merged alarms."""

    def compose(self) -> ComposeResult:
        with Horizontal(classes="side-by-side"):
            yield Static("", id="analytics-old", classes="cluster-view")
            yield Static("", id="analytics-new", classes="cluster-view")
        yield DataTable(id="consolidated", cursor_type="row")
        yield DataTable(id="alarms", cursor_type="row")

    def on_mount(self) -> None:
        consolidated = self.query_one("#consolidated", DataTable)
        for key, label in (("name", "Compute"), ("reports", "Reports to"),
                           ("seen", "Seen in"), ("xmpp", "XMPP to"), ("version", "Version"),
                           ("agent", "Agent")):
            consolidated.add_column(label, key=key)
        alarms = self.query_one("#alarms", DataTable)
        for key, label in (("cluster", "Cluster"), ("severity", "Severity"), ("name", "Object"),
                           ("type", "Alarm"), ("description", "Description")):
            alarms.add_column(label, key=key)

    def show(self, snap: AnalyticsSnapshot | None, error: str | None,
             age_s: float | None = None) -> None:
        old = self.query_one("#analytics-old", Static)
        new = self.query_one("#analytics-new", Static)
        if snap is None:
            old.update(analytics_summary(None, error))
            new.update("")
            return
        names = list(snap.clusters)
        for widget, name in ((old, names[0] if names else ""),
                             (new, names[1] if len(names) > 1 else "")):
            widget.border_title = f"{name} cluster" if name else ""
            if name and age_s is not None:
                widget.border_title += f" (STALE, {duration(age_s)} old)"
            widget.update(_vrouter_table(snap, name) if name else "")
        consolidated = self.query_one("#consolidated", DataTable)
        alarms = self.query_one("#alarms", DataTable)
        with self.app.batch_update():
            consolidated.clear()
            for name in natural_sorted(snap.computes):
                report = snap.computes[name]
                style = "yellow" if report.reports_to == "both" else \
                    STATE_STYLES["upgraded"] if report.reports_to == "new" else ""
                consolidated.add_row(report.name, Text(report.reports_to or "-", style=style),
                                     ",".join(report.seen_in), report.xmpp_cluster or "-",
                                     report.version or "-", report.agent_state or "-",
                                     key=report.name)
            alarms.clear()
            for i, alarm in enumerate(snap.alarms):
                severity = SEVERITY_NAMES.get(alarm.severity, str(alarm.severity))
                now_on = snap.moved_away(alarm)
                style = "dim" if now_on else "bold red" if alarm.severity == 0 else "yellow"
                description = (f"expected: reports to {now_on} now. {alarm.description}"
                               if now_on else alarm.description)
                alarms.add_row(alarm.cluster, Text(severity, style=style), alarm.name,
                               alarm.type, description, key=str(i))
