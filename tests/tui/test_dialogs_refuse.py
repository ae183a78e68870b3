"""Dialogs and keys that refuse what cannot happen, and say why where the operator looks."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Button, Input, Static

from issu_tui.app import IssuApp
from issu_tui.console_api import ConsoleBackend
from issu_tui.tui_cli import _open
from screens.dialogs import MoveConfirm, StepConfirm, TypedConfirm
from screens.widgets.computes import ComputeGrid
from tests.tui.conftest import settle


async def _to(pilot, name: str) -> ComputeGrid:
    grid = pilot.app.screen.query_one(ComputeGrid)
    while grid.current_name() != name:
        await pilot.press("j")
    return grid


def _messages(app: IssuApp) -> list[str]:
    return [n.message for n in app._notifications]


def _text(widget: Static) -> str:
    return str(widget.render())


async def test_rollback_of_nothing_eligible_offers_no_yes(make_app, world) -> None:
    journal, _ = world
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await _to(pilot, "cmp-06")  # still old: nothing to roll back
        await pilot.press("r")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, MoveConfirm)
        assert not dialog.query("#yes")
        assert "Nothing to roll back" in _text(dialog.query_one(".title", Static))
        assert "cmp-06" in _text(dialog.query_one("#move-skipped", Static))
        assert str(dialog.query_one("#no", Button).label) == "Close"
        await pilot.press("enter")
        await settle(pilot)
        assert not isinstance(app.screen, MoveConfirm)
    assert journal.intents(None) == []


async def test_upgrade_of_nothing_eligible_offers_no_yes(make_app, world) -> None:
    journal, _ = world
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await _to(pilot, "cmp-02")  # already upgraded
        await pilot.press("u")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, MoveConfirm)
        assert not dialog.query("#yes")
        assert "Nothing to upgrade" in _text(dialog.query_one(".title", Static))
        await pilot.press("escape")
        await settle(pilot)
    assert journal.intents(None) == []


async def test_letters_in_batch_size_are_refused_next_to_the_field(make_app, world) -> None:
    journal, _ = world
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await _to(pilot, "cmp-06")
        await pilot.press("u")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, MoveConfirm)
        field = dialog.query_one("#batch-size", Input)
        field.focus()
        await pilot.press("end", "x")
        await pilot.pause()
        assert field.value == "4"  # refused, not taken
        assert _text(dialog.query_one("#move-error", Static)) == \
            "batch size: whole numbers only, 'x' refused"
        await pilot.press("backspace")  # empty: not a batch size either
        await pilot.pause()
        assert _text(dialog.query_one("#move-error", Static)) == "batch size: at least 1"
        assert dialog.query_one("#yes", Button).disabled
        await pilot.press("7")
        await pilot.pause()
        assert _text(dialog.query_one("#move-error", Static)) == ""
        assert not dialog.query_one("#yes", Button).disabled
        await pilot.click("#yes")
        await settle(pilot, refreshes=2)
    assert [(i.kind, i.args["batch_size"]) for i in journal.intents("pending")] == \
        [("upgrade", 7)]


async def test_mistyped_word_says_why_the_button_is_disabled(make_app, world) -> None:
    journal, _ = world
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("X")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, TypedConfirm)
        hint = dialog.query_one("#typed-hint", Static)
        await pilot.press(*"abrt")
        await pilot.pause()
        assert dialog.query_one("#yes", Button).disabled
        assert _text(hint) == "'abrt' is not 'abort': Abort stays disabled"
        await pilot.press(*["backspace"] * 4, *"abo")
        await pilot.pause()
        assert _text(hint) == "Abort stays disabled until the whole word 'abort' is typed"
        await pilot.press(*"rt")
        await pilot.pause()
        assert _text(hint) == ""
        assert not dialog.query_one("#yes", Button).disabled
        await pilot.press("escape")
        await settle(pilot)
    assert journal.intents(None) == []


async def test_read_only_answers_every_action_key(world) -> None:
    journal, config = world
    journal.acquire_writer()  # someone else drives the upgrade
    backend = ConsoleBackend.open(config, with_analytics=False, read_only=True)
    try:
        app = IssuApp(backend, refresh_interval=3600)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            assert "finalize" not in app.state.snapshot.phase.allowed
            for key, action in (("u", "upgrade"), ("r", "rollback"), ("F", "finalize"),
                                ("X", "abort"), ("P", "pause / resume the executor"),
                                ("n", "next step"), ("V", "verify")):
                before = len(_messages(app))
                await pilot.press(key)
                await settle(pilot)
                assert not isinstance(app.screen, MoveConfirm | TypedConfirm | StepConfirm)
                said = _messages(app)[before:]
                assert said == [f"{action}: refused, this console is read-only "
                                "(started with --read-only)"], key
    finally:
        backend.close()
    assert journal.intents(None) == []


async def test_finalize_key_says_why_not_now(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert "finalize" not in app.state.snapshot.phase.allowed
        await pilot.press("F")
        await settle(pilot)
        assert not isinstance(app.screen, TypedConfirm)
        assert _messages(app)[-1] == "finalize is not allowed now (phase computes)"


def _write_config(path: Path, state_dir: Path) -> None:
    def cluster(name: str, version: str, octet: int) -> str:
        vhost = "/" if name == "old" else "/v2"
        return (f'[{name}]\nname = "{name}"\nversion = "{version}"\n'
                f'cassandra = {{ hosts = ["127.36.0.1{octet}"] }}\n'
                f'zookeeper = {{ hosts = ["127.36.0.2{octet}:2181"] }}\n'
                f'rabbit = {{ hosts = ["127.36.0.31"], vhost = "{vhost}" }}\n'
                f'control_nodes = [{{ name = "ctl-{name}", address = "127.36.0.10{octet}" }}]\n')

    path.write_text(f'state_dir = "{state_dir}"\n' + cluster("old", "4.1.0", 1)
                    + cluster("new", "5.0.0", 2), encoding="utf-8")


async def test_plain_console_while_a_daemon_drives_names_attach(world, tmp_path) -> None:
    journal, _ = world
    journal.acquire_writer()  # the daemon
    config_path = tmp_path / "issu.toml"
    _write_config(config_path, tmp_path)
    _, backend = _open(config_path, read_only=False, attach=False)
    try:
        assert backend.read_only
        reason = backend.options.read_only_reason
        assert f"issu tui --attach --config {config_path}" in reason
        assert "driven by pid" in reason
        app = IssuApp(backend, refresh_interval=3600)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            await pilot.press("X")
            await settle(pilot)
            assert "--attach" in _messages(app)[-1]
    finally:
        backend.close()
