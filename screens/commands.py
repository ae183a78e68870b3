"""Command palette provider: every console action by name (ctrl+p)."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from screens.console import SCREENS

ACTIONS = (
    ("Next step", "next_step", "the next safe action (the phase pane names it), confirmed"),
    ("Verify new against old", "verify", "any time once run-sync runs; differences counted"),
    ("Upgrade marked computes", "upgrade", "the marked computes, or the one under the cursor"),
    ("Roll back marked computes", "rollback", "the marked computes, or the one under the cursor"),
    ("Stop run-sync", "runsync('stop')", "hold it stopped until started again (confirmed)"),
    ("Start run-sync again", "runsync('start')", "after a stop by hand (confirmed)"),
    ("Finalize the upgrade", "finalize", "only when every compute is upgraded"),
    ("Abort the upgrade", "abort", "roll everything back (before finalize)"),
    ("Close the way back", "close_way_back", "after finalize: drain and stop the reverse "
     "replication; revert refused after (confirmed)"),
    ("Pause / resume the executor", "toggle_executor", "no new compute starts while paused"),
    ("Pause / resume refresh", "pause_refresh", "freeze the screen"),
    ("Refresh now", "refresh_now", "poll the journal now"),
    ("Help: keys", "help", "every key and its id"),
    ("Quit", "quit", "leave the console (never stops the upgrade)"),
)


class ConsoleCommands(Provider):
    def _commands(self) -> list[tuple[str, str, str]]:
        commands = list(ACTIONS)
        commands += [(f"Go to {title}", f"show('{name}')", f"screen {i}")
                     for i, (name, title) in enumerate(SCREENS, start=1)]
        return commands

    async def discover(self) -> Hits:
        for title, action, help_text in self._commands():
            yield DiscoveryHit(title, partial(self.app.run_action, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, action, help_text in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title),
                          partial(self.app.run_action, action), help=help_text)
