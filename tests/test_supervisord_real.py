"""The `supervisord` controller profile against a real supervisord (Debian's `supervisor`),
over the real sshd of the test network.

Two supervisords run as this test's own processes, each with its config and its socket under
the test's tmp dir, laid out as a Contrail 3.x / 4.x node's: `supervisord_config.conf`
(socket `supervisord_config.sock`, programs from `supervisord_config_files/*.ini`) with
contrail-api, contrail-schema, contrail-svc-monitor and contrail-device-manager, and
`supervisord_openstack` with neutron-server. The programs are small python sleepers. The
profile's `socket_dir` and `conf_dir` point there; every command runs over SSH.

What an operator relies on: pre-sync's prepare-new stops the writers and sets `autostart=false`,
so a reboot (here: supervisord started again) does not bring them back; start-new-writers
undoes both; a writer the node has not got (kube-manager: no `supervisord_kubernetes`;
vcenter-manager: no such program) is said absent and skipped, not an error; preflight names
the host and the writer while one runs; neutron-server is restarted (a new pid).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backends.controller import ControllerExecutor
from backends.ssh import SshTarget
from demo.services import Endpoints
from issu_tui.config import IssuConfig
from issu_tui.journal import Journal
from issu_tui.orchestrator import controllers as ctl
from issu_tui.orchestrator.context import Context
from issu_tui.orchestrator.preflight_writers import new_writer_findings
from tests.test_controller import ssh  # noqa: F401

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]

GROUPS = {"config": ("contrail-api", "contrail-schema", "contrail-svc-monitor",
                     "contrail-device-manager"),
          "openstack": ("neutron-server",)}
CONFIG_WRITERS = ["schema-transformer", "svc-monitor", "device-manager"]


@dataclass
class Node:
    """A Contrail node's supervisords, under `root`: etc/ (conf_dir), run/ (socket_dir)."""

    root: Path
    procs: dict[str, subprocess.Popen[bytes]]

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def run(self) -> Path:
        return self.root / "run"

    def ini(self, program: str, group: str = "config") -> Path:
        return self.etc / f"supervisord_{group}_files" / f"{program}.ini"

    def ctl(self, group: str, *args: str) -> str:
        done = subprocess.run(["supervisorctl", "-s",
                               f"unix://{self.run}/supervisord_{group}.sock", *args],
                              capture_output=True, text=True, timeout=60, check=False)
        return done.stdout

    def states(self, group: str = "config") -> dict[str, str]:
        """program -> state, as supervisorctl status prints them."""
        out = {}
        for line in self.ctl(group, "status").splitlines():
            words = line.split()
            if len(words) >= 2:
                out[words[0]] = words[1]
        return out

    def pid(self, program: str, group: str) -> int:
        words = self.ctl(group, "pid", program).split()
        return int(words[0]) if words and words[0].isdigit() else 0

    def start(self, group: str) -> None:
        """supervisord of `group` (its autostart programs started), ready: a node's boot."""
        conf = self.etc / f"supervisord_{group}.conf"
        log = self.root / f"supervisord_{group}.log"
        self.procs[group] = subprocess.Popen(["supervisord", "-n", "-c", str(conf)],
                                             stdout=log.open("ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not (self.run / f"supervisord_{group}.sock").exists() or \
                not self.ctl(group, "status").strip():
            assert self.procs[group].poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"supervisord_{group} not ready"
            time.sleep(0.2)

    def stop(self, group: str) -> None:
        proc = self.procs.pop(group)
        proc.terminate()
        proc.wait(timeout=60)

    def reboot(self, group: str = "config") -> None:
        self.stop(group)
        self.start(group)
        time.sleep(2)  # startsecs=1: what autostarts is RUNNING by then


def _write_node(root: Path) -> Node:
    node = Node(root, {})
    node.run.mkdir(parents=True)
    for group, programs in GROUPS.items():
        files = node.etc / f"supervisord_{group}_files"
        files.mkdir(parents=True)
        for program in programs:
            node.ini(program, group).write_text(
                f"[program:{program}]\n"
                f"command={sys.executable} -c \"import time; time.sleep(86400)\"\n"
                "priority=440\nautostart=true\nautorestart=true\nstartsecs=1\n"
                "stopwaitsecs=10\nkillasgroup=true\nstopasgroup=true\n"
                f"stdout_logfile={root}/{program}.log\nredirect_stderr=true\n")
        sock = node.run / f"supervisord_{group}.sock"
        (node.etc / f"supervisord_{group}.conf").write_text(
            f"[unix_http_server]\nfile={sock}\nchmod=0700\n\n"
            f"[supervisord]\nlogfile={root}/supervisord_{group}.log\n"
            f"pidfile={node.run}/supervisord_{group}.pid\nchildlogdir={root}\n\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
            f"[supervisorctl]\nserverurl=unix://{sock}\n\n"
            f"[include]\nfiles = {files}/*.ini\n")
    return node


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    if shutil.which("supervisord") is None:
        pytest.fail("supervisord not installed: run `make services-install` (Debian's "
                    "supervisor package)")
    node = _write_node(tmp_path / "node")
    try:
        for group in GROUPS:
            node.start(group)
        time.sleep(2)
        yield node
    finally:
        for group in list(node.procs):
            node.stop(group)


def _context(ssh: Endpoints, node: Node, tmp_path: Path) -> Context:  # noqa: F811
    s = ssh.ssh

    def side(where: str) -> dict[str, object]:  # nothing listens there: never contacted
        return {key: {"hosts": [f"{where}:1"]} for key in ("cassandra", "zookeeper", "rabbit")}

    config = IssuConfig.model_validate({
        "state_dir": str(tmp_path / "state-dir"),
        "old": {"name": "old", "version": "4.1.0", **side("127.0.0.1")},
        "new": {"name": "new", "version": "4.1.1", **side("127.0.0.2"), "controllers": [
            {"name": "new-ctl-1", "address": s.addresses[1], "ssh_port": s.port,
             "ssh_user": s.user, "ssh_key": str(s.key_path), "profile": "node",
             "roles": ["config", "control", "analytics", "database"]}]},
        "ssh": {"known_hosts": str(s.known_hosts_path)},
        # the built-in supervisord profile, its sockets and confs where this node has them;
        # vcenter-manager named as a program of the config supervisord, which has none
        "controller_profiles": {"node": {
            "base": "supervisord", "socket_dir": str(node.run), "conf_dir": str(node.etc),
            "services": {"vcenter-manager": "config/contrail-vcenter-manager"}}},
    })
    config.state_dir.mkdir(parents=True, exist_ok=True)
    return Context(config=config, config_path=tmp_path / "issu.toml",
                   journal=Journal.open(tmp_path / "journal"))


def test_supervisord_writers_stopped_kept_down_at_boot_started_again_and_absent_ones_said(
        ssh: Endpoints, node: Node, tmp_path: Path) -> None:  # noqa: F811
    running = {p: "RUNNING" for p in GROUPS["config"]}
    assert node.states() == running
    ctx = _context(ssh, node, tmp_path)
    target = SshTarget("new-ctl-1", ssh.ssh.addresses[1], ssh.ssh.port, ssh.ssh.user,
                       ssh.ssh.key_path)
    ex = ctl.executor(ctx)
    try:
        # status over SSH: supervisorctl's states; the writers the node has not got, absent
        states = ex.status(target, "node", [*CONFIG_WRITERS, "kube-manager", "vcenter-manager"])
        assert [(s.service, s.state, s.running) for s in states] == [
            ("schema-transformer", "RUNNING", True), ("svc-monitor", "RUNNING", True),
            ("device-manager", "RUNNING", True), ("kube-manager", "absent", False),
            ("vcenter-manager", "absent", False)]
        # preflight names the host and each writer running on it
        (finding,) = new_writer_findings(ctx.config)
        assert not finding.ok
        assert finding.detail.startswith(
            f"running on new new-ctl-1 ({ssh.ssh.addresses[1]}): schema-transformer "
            "(RUNNING), svc-monitor (RUNNING), device-manager (RUNNING);"), finding.detail

        done = ctl.prepare_new(ctx)
        assert done == ("stopped and disabled on new: new-ctl-1: schema-transformer, "
                        "svc-monitor, device-manager; new-ctl-1: kube-manager, "
                        "vcenter-manager absent (not on this host), skipped")
        stopped = {**running, **{p: "STOPPED" for p in GROUPS["config"][1:]}}
        assert node.states() == stopped
        assert "\nautostart=false\n" in node.ini("contrail-schema").read_text()
        assert "\nautostart=true\n" in node.ini("contrail-api").read_text()
        assert new_writer_findings(ctx.config)[0].ok
        # the node reboots: the api-server comes back, the writers do not
        node.reboot()
        assert node.states() == stopped

        started = ctl.start_new_writers(ctx)
        assert started == ("enabled and started on new: new-ctl-1: schema-transformer, "
                           "svc-monitor, device-manager; new-ctl-1: kube-manager, "
                           "vcenter-manager absent (not on this host), skipped")
        assert node.states() == running
        node.reboot()
        assert node.states() == running

        # abort after start-new-writers: stopped and disabled again
        ctl.stop_new_writers_again(ctx)
        node.reboot()
        assert node.states() == stopped
    finally:
        ctx.journal.close()


def test_supervisord_restarts_neutron_server_and_signals_a_program(
        ssh: Endpoints, node: Node, tmp_path: Path) -> None:  # noqa: F811
    """neutron-server, mapped by the built-in profile to the OpenStack node's supervisord
    (`openstack/neutron-server`), restarted by the profile's restart step (the northbound
    switch's default for it): a new process, running."""
    ctx = _context(ssh, node, tmp_path)
    target = SshTarget("new-ctl-1", ssh.ssh.addresses[1], ssh.ssh.port, ssh.ssh.user,
                       ssh.ssh.key_path)
    ex: ControllerExecutor = ctl.executor(ctx)
    try:
        before = node.pid("neutron-server", "openstack")
        assert before > 0
        assert ex.profile("node").reload_for("neutron-server") == "restart"
        ex.act(target, "node", "restart", ["neutron-server"])
        (state,) = ex.status(target, "node", ["neutron-server"])
        assert state.running and state.state == "RUNNING"
        after = node.pid("neutron-server", "openstack")
        assert after > 0 and after != before
        # a signal reaches the program's process (SIGTERM: supervisord sees it exit and,
        # autorestart=true, starts it again under another pid)
        old = node.pid("contrail-svc-monitor", "config")
        ex.act(target, "node", "signal", ["svc-monitor"], signal="TERM")
        deadline = time.monotonic() + 30
        while node.pid("contrail-svc-monitor", "config") in (0, old):
            assert time.monotonic() < deadline, node.ctl("config", "status")
            time.sleep(0.3)
    finally:
        ctx.journal.close()
