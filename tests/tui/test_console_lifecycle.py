"""Leaving, losing the terminal, the command line, the palette, the embedded executor."""

from __future__ import annotations

import time

from click.testing import CliRunner

from issu_tui.app import IssuApp
from issu_tui.console_api import ConsoleBackend
from issu_tui.tui_cli import EmbeddedOrchestrator, tui
from screens.commands import ConsoleCommands
from tests.tui.conftest import settle


async def test_terminal_gone_exits_and_leaves_a_trace(make_app, world) -> None:
    journal, _ = world
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app._terminal_gone()  # what SIGHUP or a dead tty trigger
        await pilot.pause()
    assert app.return_code == 129
    assert journal.last_events(1)[0].message == "console lost its terminal and exits"


async def test_command_palette_offers_the_actions(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        provider = ConsoleCommands(app.screen)
        titles = [str(hit.text) async for hit in provider.discover()]
        assert "Upgrade marked computes" in titles and "Go to Analytics" in titles
        hits = [hit async for hit in provider.search("abort")]
        assert [str(h.match_display) for h in hits] == ["Abort the upgrade"]


def test_cli_refuses_a_non_loopback_web_listener(tmp_path) -> None:
    path = tmp_path / "issu.toml"
    path.write_text(
        f'state_dir = "{tmp_path}"\n'
        "[old]\nname = \"old\"\nversion = \"4.1.0\"\n"
        "[old.cassandra]\nhosts = [\"127.36.0.11\"]\n[old.zookeeper]\nhosts = [\"127.36.0.21\"]\n"
        "[old.rabbit]\nhosts = [\"127.36.0.31\"]\n"
        "[new]\nname = \"new\"\nversion = \"5.0.0\"\n"
        "[new.cassandra]\nhosts = [\"127.36.0.12\"]\n[new.zookeeper]\nhosts = [\"127.36.0.22\"]\n"
        "[new.rabbit]\nhosts = [\"127.36.0.31\"]\n")
    result = CliRunner().invoke(tui, ["--config", str(path), "--web", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "loopback only" in result.output
    result = CliRunner().invoke(tui, ["--config", str(path)])  # no terminal here
    assert result.exit_code == 2 and "needs a terminal" in result.output


async def test_embedded_executor_consumes_the_consoles_intents(world) -> None:
    journal, config = world
    journal.close()
    backend = ConsoleBackend.open(config, with_analytics=False)
    assert backend.options.owns_executor
    embedded = EmbeddedOrchestrator(config, config.state_dir / "issu.toml", backend.journal)
    app = IssuApp(backend, refresh_interval=0.05, executor=embedded)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            await pilot.press("P")  # pause the executor: an intent, run by the executor
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                await pilot.pause(0.05)
                done = [i for i in backend.journal.intents("done") if i.kind == "pause"]
                if done and app.state.snapshot and app.state.snapshot.phase.paused:
                    break
            assert [i.kind for i in backend.journal.intents("done")] == ["pause"]
            assert app.state.snapshot.phase.executor == "this console"
            assert any(e.message.startswith("paused") for e in app.state.events)
    finally:
        backend.close()
