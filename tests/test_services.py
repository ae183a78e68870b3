"""The real services the other tests rely on: each answers its own client, the old and new
clusters are really separate, restarts keep state, stop leaves no process behind."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import kombu
import paramiko
import pytest
from cassandra.cluster import Cluster, Session
from kazoo.client import KazooClient

from demo.services import Endpoints, HostPort, Launcher, ServiceError
from demo.services.cassandra import DEFAULT_TIMER_SLACK_US
from demo.services.procs import Command, read_pidfile, spawn_group, terminate_group
from demo.services.zookeeper import ZooKeeperService, four_letter


# ---------------------------------------------------------------- helpers
@pytest.fixture
def cql(services: Endpoints) -> Iterator[dict[str, Session]]:
    clusters = {
        name: Cluster([hp.host], port=hp.port, protocol_version=5)
        for name, hp in (("old", services.cassandra_old), ("new", services.cassandra_new))
    }
    try:
        sessions = {name: c.connect() for name, c in clusters.items()}
        for session in sessions.values():
            session.default_timeout = 120  # schema changes crawl when the 2 cores are crowded
        yield sessions
    finally:
        for c in clusters.values():
            c.shutdown()


def zk_client(hosts: str) -> KazooClient:
    client = KazooClient(hosts=hosts, timeout=10)
    client.start(timeout=15)
    return client


def amqp(services: Endpoints, vhost: str) -> kombu.Connection:
    r = services.rabbit
    return kombu.Connection(
        hostname=r.host, port=r.port, userid=r.user, password=r.password, virtual_host=vhost
    )


def ssh_exec(services: Endpoints, address: str, command: str, known_hosts: Path) -> str:
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            address,
            port=services.ssh.port,
            username=services.ssh.user,
            key_filename=str(services.ssh.key_path),
            allow_agent=False,
            look_for_keys=False,
            timeout=10,
        )
        _, out, _ = client.exec_command(command, timeout=20)
        return out.read().decode()
    finally:
        client.close()


# ---------------------------------------------------------------- no services needed
def test_endpoints_json_roundtrip_hides_password(tmp_path: Path) -> None:
    launcher = Launcher(net=77, profile="test", run_dir=tmp_path, ssh_hosts=["a", "b"])
    endpoints = launcher.endpoints()
    assert endpoints.cassandra_old == HostPort("127.77.0.11", 9042)
    assert endpoints.zk_new.hosts == "127.77.0.22:2181"
    assert endpoints.ssh.addresses == ("127.77.1.1", "127.77.1.2")
    assert endpoints.ssh.address_of("b") == "127.77.1.2"
    path = endpoints.save()
    assert path.stat().st_mode & 0o777 == 0o600
    assert Endpoints.load(tmp_path) == endpoints
    assert endpoints.rabbit.password not in repr(endpoints)
    assert json.loads(path.read_text())["rabbit"]["vhost_new"] == "/v2"


def test_more_than_16_ssh_hosts_get_several_sshd(tmp_path: Path) -> None:
    launcher = Launcher(net=77, profile="test", run_dir=tmp_path, ssh_hosts=40)
    assert [n for n in launcher.names(["ssh"])] == ["sshd-1", "sshd-2", "sshd-3"]
    assert launcher.endpoints().ssh.names[-1] == "compute-40"


def test_a_stray_of_a_services_own_command_line_is_ended_before_its_start(
        tmp_path: Path) -> None:
    """A start cut short under load left the broker's epmd running outside any pid file:
    the next start found its port taken and refused for the rest of a chaos batch. A
    process running exactly one of the service's own command lines is ended; others not."""
    import subprocess

    from demo.services.launcher import _end_strays

    ours = ("sleep", "3600.0417")  # an argv no other process runs
    theirs = subprocess.Popen(["sleep", "3600.0418"], start_new_session=True,
                              env={"HOME": f"{tmp_path}-other/home"})
    stray = subprocess.Popen(list(ours), start_new_session=True)
    # what an `erl` of the broker spawns: another argv, its environment in the service's dir
    spawned = subprocess.Popen(["sleep", "3600.0419"], start_new_session=True,
                               env={"HOME": f"{tmp_path}/home"})

    class Service:
        dir = tmp_path

        def commands(self) -> list[Command]:
            return [Command(ours, {}, tmp_path)]

    # A child forked but not yet exec'd still shows pytest's command line and environment:
    # under load `spawned` was not found yet (the final full run of 2026-12-05, 1 in 1).
    # A leftover the launcher looks for has been running for a while.
    deadline = time.monotonic() + 30
    for proc in (theirs, stray, spawned):
        while (Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")[0] != b"sleep"
               and time.monotonic() < deadline):
            time.sleep(0.05)
    try:
        assert _end_strays(Service())  # type: ignore[arg-type]
        assert stray.wait(timeout=15) is not None and spawned.wait(timeout=15) is not None
        assert theirs.poll() is None
        assert not _end_strays(Service())  # type: ignore[arg-type]
    finally:
        for proc in (stray, spawned, theirs):
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- Cassandra
def test_cql_write_read_on_two_separate_clusters(cql: dict[str, Session]) -> None:
    ks = f"svc_{uuid.uuid4().hex[:8]}"
    old, new = cql["old"], cql["new"]
    names = {n: s.execute("SELECT cluster_name FROM system.local").one()[0] for n, s in cql.items()}
    assert names["old"] != names["new"]
    replication = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    old.execute(f"CREATE KEYSPACE {ks} WITH replication = {replication}")
    try:
        old.execute(f"CREATE TABLE {ks}.t (k text PRIMARY KEY, v text)")
        old.execute(f"INSERT INTO {ks}.t (k, v) VALUES (%s, %s)", ("key", "value-old"))
        assert old.execute(f"SELECT v FROM {ks}.t WHERE k = %s", ("key",)).one()[0] == "value-old"
        on_new = new.execute(
            "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = %s", (ks,)
        )
        assert on_new.one() is None
    finally:
        old.execute(f"DROP KEYSPACE IF EXISTS {ks}")


# ---------------------------------------------------------------- ZooKeeper
def test_zk_create_read_on_both_ensembles(services: Endpoints) -> None:
    path = f"/issu-svc-test/{uuid.uuid4().hex}"
    old, new = zk_client(services.zk_old.hosts), zk_client(services.zk_new.hosts)
    try:
        old.create(path, b"old", makepath=True)
        new.create(path, b"new", makepath=True)
        assert old.get(path)[0] == b"old"
        assert new.get(path)[0] == b"new"
        assert four_letter(services.zk_old.host, services.zk_old.port, "ruok") == "imok"
    finally:
        for client in (old, new):
            client.delete("/issu-svc-test", recursive=True)
            client.stop()
            client.close()


# ---------------------------------------------------------------- RabbitMQ
def test_amqp_publish_consume_on_both_vhosts(services: Endpoints) -> None:
    queue_name = f"svc-test-{uuid.uuid4().hex[:8]}"
    for vhost in (services.rabbit.vhost_old, services.rabbit.vhost_new):
        with amqp(services, vhost) as conn:
            queue = kombu.Queue(queue_name, auto_delete=False, durable=False, channel=conn)
            queue.declare()
            try:
                conn.Producer().publish({"vhost": vhost}, routing_key=queue_name)
                message = conn.SimpleQueue(queue).get(timeout=10)
                assert message.payload == {"vhost": vhost}
                message.ack()
            finally:
                queue.delete()
    # A queue in one vhost does not exist in the other.
    with amqp(services, services.rabbit.vhost_old) as conn:
        kombu.Queue(queue_name + "-only-old", channel=conn).declare()
    with amqp(services, services.rabbit.vhost_new) as conn, pytest.raises(Exception, match="404"):
        kombu.Queue(queue_name + "-only-old", channel=conn.channel()).queue_declare(passive=True)
    with amqp(services, services.rabbit.vhost_old) as conn:
        kombu.Queue(queue_name + "-only-old", channel=conn).delete()


def test_rabbit_restart_keeps_vhosts_user_and_durable_messages(
    services: Endpoints, launcher: Launcher
) -> None:
    queue_name = f"svc-durable-{uuid.uuid4().hex[:8]}"
    with amqp(services, services.rabbit.vhost_new) as conn:
        queue = kombu.Queue(queue_name, durable=True, auto_delete=False, channel=conn)
        queue.declare()
        conn.Producer().publish({"n": 1}, routing_key=queue_name, delivery_mode=2)
    before = read_pidfile(launcher.service("rabbitmq").pidfile)
    assert before is not None
    # epmd, the start script, beam.smp and its helpers (erl_child_setup makes its own session)
    old_processes = before.members()
    assert len(old_processes) >= 3
    launcher.restart("rabbitmq")
    after = read_pidfile(launcher.service("rabbitmq").pidfile)
    assert after is not None and before.pgid != after.pgid
    assert not before.any_alive()
    assert not old_processes & after.members()
    assert not [pid for pid in old_processes if Path(f"/proc/{pid}").exists()]
    assert Endpoints.load(launcher.run_dir).rabbit.password == services.rabbit.password
    with amqp(services, services.rabbit.vhost_old) as conn:
        conn.connect()
    with amqp(services, services.rabbit.vhost_new) as conn:
        message = conn.SimpleQueue(queue_name).get(timeout=10)
        assert message.payload == {"n": 1}
        message.ack()
        kombu.Queue(queue_name, channel=conn).delete()


# ---------------------------------------------------------------- OpenSSH
def test_ssh_exec_on_two_addresses_knows_the_host(services: Endpoints) -> None:
    ssh = services.ssh
    assert len(ssh.addresses) >= 2
    for address, name in list(zip(ssh.addresses, ssh.names, strict=True))[:2]:
        out = ssh_exec(services, address, "printenv ISSU_DEMO_HOST; id -un", ssh.known_hosts_path)
        assert out.split() == [name, ssh.user]


def test_ssh_refuses_wrong_or_unknown_host_key(services: Endpoints, tmp_path: Path) -> None:
    address = services.ssh.addresses[0]
    wrong = tmp_path / "known_hosts"
    # Any other key (here the client's own) stands in for an impostor's host key.
    client_pub = Path(f"{services.ssh.key_path}.pub").read_text().split()
    wrong.write_text(f"{address} {client_pub[0]} {client_pub[1]}\n")
    with pytest.raises(paramiko.BadHostKeyException):
        ssh_exec(services, address, "true", wrong)
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        ssh_exec(services, address, "true", empty)


def test_ssh_refuses_password_login(services: Endpoints) -> None:
    transport = paramiko.Transport((services.ssh.addresses[0], services.ssh.port))
    try:
        transport.start_client(timeout=10)
        with pytest.raises(paramiko.AuthenticationException):
            transport.auth_password(services.ssh.user, "not-a-key")
    finally:
        transport.close()


# ---------------------------------------------------------------- lifecycle
def test_stop_leaves_no_process_and_start_brings_it_back(
    services: Endpoints, launcher: Launcher
) -> None:
    zk = launcher.service("zk-new")
    group = read_pidfile(zk.pidfile)
    assert group is not None and group.all_alive()
    launcher.stop("zk-new")
    try:
        assert not group.any_alive()
        assert not zk.pidfile.exists()
        with pytest.raises(OSError):
            socket.create_connection((services.zk_new.host, services.zk_new.port), timeout=2)
        assert {s.name: s.state for s in launcher.status(["zk-new"])} == {"zk-new": "stopped"}
    finally:
        launcher.start("zk-new")
    assert four_letter(services.zk_new.host, services.zk_new.port, "ruok") == "imok"


def _timer_slack(tid: int | str) -> int:
    return int(Path(f"/proc/{tid}/timerslack_ns").read_text())


def test_every_cassandra_thread_has_the_longer_timer_slack(launcher: Launcher,
                                                           services: Endpoints) -> None:
    group = read_pidfile(launcher.service("cassandra-old").pidfile)
    assert group is not None
    threads = list(Path(f"/proc/{group.pgid}/task").iterdir())
    assert len(threads) > 20  # the JVM's pools, started after exec
    assert {_timer_slack(t.name) for t in threads} == {1000 * DEFAULT_TIMER_SLACK_US}


def test_a_command_gets_its_timer_slack_and_ours_is_restored(tmp_path: Path) -> None:
    ours = _timer_slack(threading.get_native_id())
    wanted = ours + 123_000
    group, popens = spawn_group([Command(("sleep", "30"), {"PATH": "/usr/bin:/bin"}, tmp_path,
                                         timer_slack_ns=wanted)], tmp_path / "sleep.log")
    try:
        assert _timer_slack(popens[0].pid) == wanted
        assert _timer_slack(threading.get_native_id()) == ours
    finally:
        terminate_group(group, 10, popens)


def test_second_launcher_reuses_running_services(services: Endpoints, launcher: Launcher) -> None:
    before = read_pidfile(launcher.service("zk-old").pidfile)
    other = Launcher(net=launcher.net, profile="test", run_dir=launcher.run_dir)
    other.start("zk-old")
    assert read_pidfile(other.service("zk-old").pidfile) == before
    assert {s.state for s in other.status(["zk-old", "rabbitmq"])} == {"ready"}


def test_start_refuses_a_port_held_by_someone_else(
    services: Endpoints, launcher: Launcher, tmp_path: Path
) -> None:
    stranger = Launcher(net=launcher.net, profile="test", run_dir=tmp_path)
    with pytest.raises(ServiceError, match=r"127\.\d+\.0\.21:2181 already in use"):
        stranger.start("zk-old")


def test_cli_status_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from demo.services.__main__ import main

    base = ["--net", "77", "--run-dir", str(tmp_path)]
    assert main(["status", *base, "--only", "zk"]) == 3  # nothing runs in an empty run dir
    assert "zk-old         stopped" in capsys.readouterr().out
    assert main(["status", *base, "--only", "mongodb"]) == 1
    assert "unknown service(s) ['mongodb']" in capsys.readouterr().err
    assert main(["down", *base]) == 0
    assert "nothing was running" in capsys.readouterr().out


def test_ensure_up_revives_a_killed_service(services: Endpoints, launcher: Launcher) -> None:
    import os
    import signal

    group = read_pidfile(launcher.service("zk-new").pidfile)
    assert group is not None
    os.killpg(group.pgid, signal.SIGKILL)
    try:
        deadline = time.monotonic() + 30
        while group.any_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert {s.state for s in launcher.status(["zk-new"], probe=False)} == {"stopped"}
    finally:
        assert launcher.ensure_up() == ["zk-new"]
    assert four_letter(services.zk_new.host, services.zk_new.port, "ruok") == "imok"


def test_failed_start_reports_the_log_tail(tmp_path: Path) -> None:
    launcher = Launcher(net=77, profile="test", run_dir=tmp_path)

    class BrokenZk(ZooKeeperService):
        def listens(self) -> list[tuple[str, int]]:
            return []

        def commands(self):  # type: ignore[no-untyped-def]
            cmd = super().commands()[0]
            argv = tuple(
                "org.example.NoSuchMain" if "ZooKeeperServerMain" in a else a for a in cmd.argv
            )
            return [type(cmd)(argv, cmd.env, cmd.cwd)]

    broken = BrokenZk(launcher.ctx, "zk-broken", "127.77.0.99")
    launcher.services[broken.name] = broken
    with pytest.raises(ServiceError) as info:
        launcher.start("zk-broken")
    message = str(info.value)
    assert "zk-broken" in message and "exited while starting" in message
    assert "org.example.NoSuchMain" in message  # the JVM's own complaint, from the log tail
    assert not broken.pidfile.exists()
