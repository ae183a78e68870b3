"""When the analytics-api stop answering, the console keeps their last answer on screen but
says it is stale and how old, and marks the agents' states it no longer confirms."""

from __future__ import annotations

from backends.analytics import AnalyticsPoller
from issu_tui.app import IssuApp
from issu_tui.console_api import ConsoleBackend, ConsoleOptions
from issu_tui.journal import Journal
from screens.widgets.computes import ComputePanel
from screens.widgets.panes import analytics_summary
from tests.tui.conftest import settle
from tests.tui.test_analytics import NET, NEW, NEW_CTL, OLD, OLD_CTL, serve
from tests.tui.tui_world import config_for


class Clock:
    def __init__(self) -> None:
        self.now = 1_767_225_600.0

    def __call__(self) -> float:
        return self.now


def summary(app: IssuApp) -> str:
    state = app.state
    group = analytics_summary(state.analytics, state.analytics_error,
                              age_s=state.analytics_age(),
                              answered_at=state.analytics_answered_at, now=state.clock())
    return "\n".join(line.plain for line in group.renderables)


async def poll(pilot, app: IssuApp) -> None:
    polls = app.analytics_polls
    app._fetch_analytics()
    while app.analytics_polls == polls:
        await pilot.pause(0.05)
    await settle(pilot)


async def test_failed_polls_mark_the_last_answer_stale(tmp_path) -> None:
    old = serve(OLD, f"127.{NET}.0.201")
    new = serve(NEW, f"127.{NET}.0.202")
    servers = [old, new]
    journal = Journal.open(tmp_path)
    journal.set_phase("computes")
    for i in range(1, 6):
        journal.upsert_compute(f"cmp-{i}", f"127.{NET}.1.{i}", version="4.1.0", cluster="old")
    clock = Clock()
    poller = AnalyticsPoller({"old": f"http://127.{NET}.0.201:{old.server_port}",
                              "new": f"http://127.{NET}.0.202:{new.server_port}"},
                             {"old": {OLD_CTL}, "new": {NEW_CTL}}, timeout_s=2,
                             clock=clock)
    backend = ConsoleBackend(config_for(tmp_path), journal,
                             ConsoleOptions(owns_executor=True, clock=clock), poller)
    app = IssuApp(backend, refresh_interval=3600, analytics_interval=3600)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await poll(pilot, app)
            grid = app.screen.query_one(ComputePanel).grid
            assert grid.get_cell("cmp-4", "agent") == "Non-Functional"
            assert grid.get_cell("cmp-1", "agent") == "Functional"
            assert "STALE" not in summary(app)

            # new's analytics-api goes away: what only it said is the last answer, marked
            new.shutdown()
            new.server_close()
            servers.remove(new)
            clock.now += 125
            await poll(pilot, app)
            assert grid.get_cell("cmp-4", "agent") == "Non-Functional?"
            assert grid.get_cell("cmp-1", "agent") == "Functional"  # old answered
            assert "new ✗" in summary(app) and "(answered 2m05s ago)" in summary(app)
            assert str(app.screen.query_one(ComputePanel).border_subtitle).endswith(
                "· 1 agent stale (?)")

            # the whole poll fails: every agent's state is the last answer, said so with age
            old.shutdown()
            old.server_close()
            servers.remove(old)
            backend.poll_analytics = _raise  # type: ignore[method-assign]
            clock.now += 60
            await poll(pilot, app)
            assert grid.get_cell("cmp-1", "agent") == "Functional?"
            assert grid.get_cell("cmp-4", "agent") == "Non-Functional?"
            text = summary(app)
            assert text.startswith("STALE 1m00s old: analytics: OSError: unreachable")
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        poller.close()
        journal.close()


def _raise() -> None:
    raise OSError("unreachable")
