"""Pytest fixtures for the real services (Cassandra, ZooKeeper, RabbitMQ, sshd) on loopback.

``launcher``: the session's Launcher for network ``$ISSU_TEST_NET`` (default 30); starts nothing
by itself. ``services``: the Endpoints, starting (or reusing) everything on first use. At the
end of the session whatever the launcher started or reused is stopped, unless
``ISSU_KEEP_SERVICES=1``. Tests restart services mid-run with ``launcher.restart("rabbitmq")``,
``launcher.stop(name)`` / ``launcher.start(name)``; names: zk-old, zk-new, rabbitmq, sshd-1...,
cassandra-old, cassandra-new. ``ISSU_TEST_SSH_HOSTS`` (default 4) sets the simulated ssh hosts.

The first start happens before the test's pytest-timeout clock runs (see
``pytest_runtest_protocol``), so a slow box delays the suite instead of failing a test.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Generator, Iterator

import pytest

from demo.services import DEFAULT_TEST_NET, Endpoints, Launcher, ServiceError

SERVICE_FIXTURES = frozenset({"launcher", "services"})


class _Session:
    launcher: Launcher | None = None
    endpoints: Endpoints | None = None
    error: ServiceError | None = None


def test_net() -> int:
    return int(os.environ.get("ISSU_TEST_NET", DEFAULT_TEST_NET))


test_net.__test__ = False  # type: ignore[attr-defined]  # not a test despite the name


def keep_services() -> bool:
    return os.environ.get("ISSU_KEEP_SERVICES", "") not in ("", "0", "false", "no")


def _launcher() -> Launcher:
    if _Session.launcher is None:
        ssh_hosts = int(os.environ.get("ISSU_TEST_SSH_HOSTS", "4"))
        _Session.launcher = Launcher(net=test_net(), profile="test", ssh_hosts=ssh_hosts)
    return _Session.launcher


def _up() -> Endpoints:
    if _Session.error is not None:
        raise _Session.error
    if _Session.endpoints is None:
        try:
            _Session.endpoints = _launcher().up()
        except ServiceError as exc:
            _Session.error = exc  # do not retry a failed start for every test
            raise
    return _Session.endpoints


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the real services, so ``-m 'not services'`` skips them."""
    for item in items:
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    # Runs before pytest-timeout arms its timer for this item (its wrapper is not tryfirst).
    wanted = "services" in getattr(item, "fixturenames", ())
    if wanted and _Session.endpoints is None and _Session.error is None:
        with contextlib.suppress(ServiceError):  # the services fixture re-raises it in setup
            _up()
    yield


@pytest.fixture(scope="session")
def launcher() -> Iterator[Launcher]:
    lau = _launcher()
    try:
        yield lau
    finally:
        if lau.touched and not keep_services():
            lau.down()
        _Session.launcher = None
        _Session.endpoints = None
        _Session.error = None


@pytest.fixture(scope="session")
def services(launcher: Launcher) -> Endpoints:
    """Everything up and answering (one Cassandra after the other); reused when healthy."""
    return _up()
