"""Leaving, losing the terminal, the command line, the palette, the embedded executor."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from click.testing import CliRunner

from issu_tui.app import IssuApp
from issu_tui.console_api import ConsoleBackend
from issu_tui.tui_cli import EmbeddedOrchestrator, start_headless_daemon, tui
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


def write_config(tmp_path) -> Path:
    path = tmp_path / "issu.toml"
    path.write_text(
        f'state_dir = "{tmp_path}"\n'
        "[old]\nname = \"old\"\nversion = \"4.1.0\"\n"
        "[old.cassandra]\nhosts = [\"127.36.0.11\"]\n[old.zookeeper]\nhosts = [\"127.36.0.21\"]\n"
        "[old.rabbit]\nhosts = [\"127.36.0.31\"]\n"
        "[new]\nname = \"new\"\nversion = \"5.0.0\"\n"
        "[new.cassandra]\nhosts = [\"127.36.0.12\"]\n[new.zookeeper]\nhosts = [\"127.36.0.22\"]\n"
        "[new.rabbit]\nhosts = [\"127.36.0.31\"]\nvhost = \"/v2\"\n")
    return path


def test_cli_refuses_a_non_loopback_web_listener(tmp_path) -> None:
    path = write_config(tmp_path)
    result = CliRunner().invoke(tui, ["--config", str(path), "--web", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "loopback only" in result.output
    result = CliRunner().invoke(tui, ["--config", str(path)])  # no terminal here
    assert result.exit_code == 2 and "needs a terminal" in result.output


def test_cli_says_why_the_web_console_cannot_listen(tmp_path) -> None:
    """Each was a traceback from the server."""
    import socket

    path = write_config(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(tui, ["--config", str(path), "--web", "--port", str(port)])
        assert result.exit_code == 2
        assert f"127.0.0.1:{port}: cannot listen: Address already in use" in result.output
    result = CliRunner().invoke(tui, ["--config", str(path), "--web", "--host", "localhost"])
    assert result.exit_code == 2 and "localhost: not an IP address" in result.output
    result = CliRunner().invoke(tui, ["--config", str(path), "--web", "--port", "99999"])
    assert result.exit_code == 2 and "99999 is not in the range" in result.output


def test_cli_refuses_to_serve_a_config_it_cannot_load(tmp_path) -> None:
    """It served a blank page, the reason only in the server's log."""
    import socket

    missing = tmp_path / "nowhere" / "issu.toml"
    broken = write_config(tmp_path)
    broken.write_text(broken.read_text().replace('version = "5.0.0"', 'version = 5'))
    with socket.socket() as taken:  # the old code, past the config, stopped at the port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = CliRunner().invoke(tui, ["--config", str(missing), "--web", "--port", port])
        assert result.exit_code == 2 and f"{missing}: cannot read" in result.output
        result = CliRunner().invoke(tui, ["--config", str(broken), "--web", "--port", port])
    assert result.exit_code == 2 and str(broken) in result.output and "version" in result.output


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
            # A pending pause already reads as paused: wait for a snapshot taken after the
            # executor ran it (its event shown), not only for the journal to say it is done.
            while time.monotonic() < deadline:
                await pilot.pause(0.05)
                done = [i for i in backend.journal.intents("done") if i.kind == "pause"]
                shown = any(e.message.startswith("paused") for e in app.state.events)
                if done and shown and app.state.snapshot and app.state.snapshot.phase.paused:
                    break
            assert [i.kind for i in backend.journal.intents("done")] == ["pause"]
            assert app.state.snapshot.phase.executor == "this console"
            assert any(e.message.startswith("paused") for e in app.state.events)
    finally:
        backend.close()


async def test_lost_terminal_with_work_in_flight_hands_over_to_a_daemon(world, tmp_path) -> None:
    journal, config = world
    journal.transition_compute("cmp-05", "upgrading", "batch 2")
    backend = ConsoleBackend.open(config, with_analytics=False)
    app = IssuApp(backend, refresh_interval=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app._terminal_gone()
        await pilot.pause()
    backend.close()  # what `issu tui` does on the way out: the lock is free again
    assert app.handover and app.return_code == 129
    assert "go to a headless `issu daemon`" in journal.last_events(1)[0].message
    pid = start_headless_daemon(write_config(tmp_path), tmp_path)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            holder = journal.executor()
            if holder and holder["pid"] == pid:
                break
            time.sleep(0.2)
        assert journal.executor()["pid"] == pid, (tmp_path / "daemon.log").read_text()
        assert os.getsid(pid) == pid  # its own session: the SSH hang-up does not reach it
    finally:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if os.waitpid(pid, os.WNOHANG)[0]:
                break
            time.sleep(0.1)


async def test_polls_stay_one_chain_however_many_refreshes_are_asked(make_app) -> None:
    """Every action asks for a poll now (refresh_now); each used to leave a timer chain of
    its own beside the regular one, so the console polled ever more often."""
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        for n in range(2, 6):
            app.action_refresh_now()
            await settle(pilot, refreshes=n)

        def pending_polls() -> int:
            # set_timer wraps the callback: partial(call_next, callback)
            return sum(1 for timer in list(app._timers)
                       if app._poll in (timer._callback, *getattr(timer._callback, "args", ()))
                       and timer._task is not None and not timer._task.done())

        assert pending_polls() == 1
