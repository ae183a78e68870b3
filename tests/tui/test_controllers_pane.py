"""The Analytics screen's controller hosts pane: every controller host of both clusters with
its services' states (each host's profile status over SSH, tests/test_demo_controllers3.py
polls a real 3-controller world); hidden without an inventory, kept but said to be stale
after a failed poll."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console

from issu_tui.app import IssuApp
from issu_tui.controller_view import ControllersView, HostServices
from screens.widgets.controllers import ControllersPane, controllers_table
from tests.tui.conftest import settle

SERVICES = ("api-server", "schema-transformer", "svc-monitor", "device-manager", "control",
            "analytics-api")


def _view(at: float) -> ControllersView:
    hosts = []
    for side, cid in (("old", "v1"), ("new", "v2")):
        for i in (1, 2, 3):
            name = f"controller-{cid}" + (f"-{i}" if i > 1 else "")
            states = tuple((s, "stopped" if side == "new" and s == "svc-monitor" else "running")
                           for s in SERVICES)
            hosts.append(HostServices(side, name, f"127.36.0.{100 + 10 * i}",
                                      ("config", "control", "analytics"), states))
    hosts[-1] = HostServices("new", "controller-v2-3", "127.36.0.130", ("config",),
                             error="controller-v2-3: ssh: connection refused")
    return ControllersView(tuple(hosts), fetched_at=at)


def _text(view: ControllersView | None, error: str | None, age: float | None = None) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(controllers_table(view, error, age))
    return console.export_text()


async def test_every_controller_host_and_its_services(make_app: Callable[..., IssuApp]
                                                      ) -> None:
    app = make_app()
    async with app.run_test(size=(200, 50)) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        pane = app.screen.query_one(ControllersPane)
        assert not pane.display  # no poll yet (the test config lists no controller host)
        view = _view(app.state.clock())
        app.apply_controllers(view, None)
        await settle(pilot)
        assert pane.display and pane.region.height == 9  # a line per host, header, border
        shot = app.export_screenshot()
        for host in view.hosts:
            assert host.name in shot, host.name
    text = _text(view, None)
    lines = {line.split()[1]: line.rstrip() for line in text.splitlines()
             if line.strip().startswith(("old", "new"))}
    assert set(lines) == {h.name for h in view.hosts}
    for name in ("controller-v1", "controller-v1-2", "controller-v1-3"):
        assert lines[name].endswith("✓ " + " ".join(SERVICES)), lines[name]
    assert lines["controller-v2-2"].endswith(
        "✗ stopped: svc-monitor  "
        "✓ api-server schema-transformer device-manager control analytics-api"), \
        lines["controller-v2-2"]
    assert "connection refused" in lines["controller-v2-3"]


async def test_a_failed_poll_keeps_the_hosts_said_stale(make_app: Callable[..., IssuApp]
                                                        ) -> None:
    app = make_app()
    async with app.run_test(size=(200, 50)) as pilot:
        await settle(pilot)
        await pilot.press("4")
        app.apply_controllers(_view(app.state.clock() - 95), None)
        app.apply_controllers(None, "TimeoutError: ssh")
        await settle(pilot)
        assert app.state.controllers is not None and app.state.controllers_error
        assert app.screen.query_one(ControllersPane).display
    text = _text(app.state.controllers, app.state.controllers_error,
                 app.state.controllers_age())
    assert "STALE 1m35s old: TimeoutError: ssh" in text, text
    assert "controller-v1-2" in text
