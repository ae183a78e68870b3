"""Pytest fixtures for the real services (Cassandra, ZooKeeper, RabbitMQ, sshd) on loopback.

``launcher``: the session's Launcher for network ``$ISSU_TEST_NET`` (default 30); starts nothing
by itself. ``services``: the Endpoints, starting (or reusing) everything on first use. At the
end of the session whatever the launcher started or reused is stopped, unless
``ISSU_KEEP_SERVICES=1``. Tests restart services mid-run with ``launcher.restart("rabbitmq")``,
``launcher.stop(name)`` / ``launcher.start(name)``; names: zk-old, zk-new, rabbitmq, sshd-1...,
cassandra-old, cassandra-new.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from demo.services import DEFAULT_TEST_NET, Endpoints, Launcher

SERVICE_FIXTURES = frozenset({"launcher", "services"})


def test_net() -> int:
    return int(os.environ.get("ISSU_TEST_NET", DEFAULT_TEST_NET))


test_net.__test__ = False  # type: ignore[attr-defined]  # not a test despite the name


def keep_services() -> bool:
    return os.environ.get("ISSU_KEEP_SERVICES", "") not in ("", "0", "false", "no")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the real services, so ``-m 'not services'`` skips them."""
    for item in items:
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


@pytest.fixture(scope="session")
def launcher() -> Iterator[Launcher]:
    ssh_hosts = int(os.environ.get("ISSU_TEST_SSH_HOSTS", "4"))
    lau = Launcher(net=test_net(), profile="test", ssh_hosts=ssh_hosts)
    yield lau
    if lau.touched and not keep_services():
        lau.down()


@pytest.fixture(scope="session")
def services(launcher: Launcher) -> Endpoints:
    """Everything up and answering (one Cassandra after the other); reused when healthy."""
    return launcher.up()
