"""Real Cassandra, ZooKeeper, RabbitMQ and sshd on loopback addresses, for the demo and tests.

    from demo.services import Launcher, Endpoints
    launcher = Launcher(net=30, profile="test", ssh_hosts=4)
    endpoints = launcher.up()          # start or reuse everything, wait for readiness
    launcher.restart("rabbitmq")
    launcher.down()

Other processes read the same endpoints with ``Endpoints.load(run_dir)``.
"""

from demo.services.base import ServiceError
from demo.services.endpoints import Endpoints, HostPort, RabbitEndpoint, SshEndpoint, ZkEndpoint
from demo.services.launcher import GROUPS, Launcher, ServiceStatus
from demo.services.plan import DEFAULT_TEST_NET, DEMO_NET, AddressPlan, default_run_dir

__all__ = [
    "DEFAULT_TEST_NET",
    "DEMO_NET",
    "GROUPS",
    "AddressPlan",
    "Endpoints",
    "HostPort",
    "Launcher",
    "RabbitEndpoint",
    "ServiceError",
    "ServiceStatus",
    "SshEndpoint",
    "ZkEndpoint",
    "default_run_dir",
]
