"""The northbound switch reaches a running neutron-server, over the real sshd of the test
network (audit D9).

The northbound host runs the demo's neutron-server (demo/controller/neutron.py, started and
restarted by the `demo` controller profile's hostctl over SSH). Like a real one it reads the
plugin's `api_server_ip` / `api_server_port` when it starts, and keeps listing virtual
networks from that api-server; a SIGHUP does not re-point it. Old's and new's api-servers
are two small HTTP servers here that count the requests of each X-Contrail-Useragent (the
demo api-server does the same; it needs Cassandra): what the test asks is which of them
neutron-server reaches.
"""

from __future__ import annotations

import json
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from demo.controller import hostctl
from demo.services import Endpoints
from demo.services.procs import read_pidfile
from issu_tui.config import IssuConfig
from issu_tui.journal import Journal
from issu_tui.orchestrator import abort as aborting
from issu_tui.orchestrator import finalize as fin
from issu_tui.orchestrator.context import Context
from issu_tui.orchestrator.northbound import load_clients
from tests.http_reply import send_json
from tests.test_controller import ssh  # noqa: F401

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]
AGENT = "neutron-server"


class ApiServer:
    """An api-server stand-in: answers GET /virtual-networks, counts each client."""

    def __init__(self, address: str) -> None:
        counts: dict[str, int] = {}
        self.counts = counts

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                agent = self.headers.get("X-Contrail-Useragent", "")
                counts[agent] = counts.get(agent, 0) + 1
                send_json(self, {"virtual-networks": []})

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((address, 0), Handler)
        self.url = f"http://{address}:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def neutron_requests(self) -> int:
        return sum(n for agent, n in self.counts.items() if agent.endswith(f":{AGENT}"))


def _eventually(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.2)


def _reaches(api: ApiServer, other: ApiServer) -> bool:
    """neutron-server's requests go to `api` and no longer to `other` (two seconds of it:
    its interval is one second)."""
    before, other_before = api.neutron_requests(), other.neutron_requests()
    time.sleep(2.5)
    return api.neutron_requests() >= before + 2 and other.neutron_requests() == other_before


@pytest.fixture
def northbound(ssh: Endpoints, tmp_path: Path) -> Iterator[dict[str, object]]:  # noqa: F811
    net = ssh.ssh.addresses[0].split(".")[1]
    old, new = ApiServer(f"127.{net}.0.1"), ApiServer(f"127.{net}.0.1")
    directory = tmp_path / "northbound"
    directory.mkdir()
    plugin = directory / hostctl.PLUGIN_INI
    host, port = old.url.removeprefix("http://").split(":")
    plugin.write_text(f"[APISERVER]\napi_server_ip = {host}\napi_server_port = {port}\n"
                      "contrail_extensions = ipam\n")
    hostctl.start(directory, hostctl.NEUTRON)
    try:
        yield {"old": old, "new": new, "dir": directory, "plugin": plugin}
    finally:
        hostctl.stop(directory, hostctl.NEUTRON)
        old.server.shutdown()
        new.server.shutdown()


def _context(ssh: Endpoints, tmp_path: Path, nb: dict[str, object],  # noqa: F811
             reload: str | None) -> tuple[Context, Path]:
    s = ssh.ssh
    old, new = nb["old"], nb["new"]
    assert isinstance(old, ApiServer) and isinstance(new, ApiServer)

    def side(where: str) -> dict[str, object]:  # nothing listens there: never contacted
        return {key: {"hosts": [f"{where}:1"]} for key in ("cassandra", "zookeeper", "rabbit")}

    config = IssuConfig.model_validate({
        "state_dir": str(tmp_path / "state-dir"),
        "old": {"name": "old", "version": "4.1.0", **side("127.0.0.1"),
                "api_server": {"url": old.url}},
        "new": {"name": "new", "version": "5.0.0", **side("127.0.0.2"),
                "api_server": {"url": new.url}, "controllers": [
                    {"name": "northbound", "address": s.addresses[1], "ssh_port": s.port,
                     "ssh_user": s.user, "ssh_key": str(s.key_path), "profile": "demo-nb",
                     "roles": ["northbound"]}]},
        "ssh": {"known_hosts": str(s.known_hosts_path)},
        "controller_profiles": {"demo-nb": {"base": "demo", "host": shlex.join([
            sys.executable, "-m", "demo.controller.hostctl", "--dir", str(nb["dir"])])}},
    })
    config.state_dir.mkdir(parents=True, exist_ok=True)
    listing = tmp_path / "northbound.toml"
    listing.write_text(f'[[client]]\nkind = "neutron"\nhost = "northbound"\n'
                       f'path = "{nb["plugin"]}"\nservice = "neutron-server"\n'
                       + (f'reload = "{reload}"\n' if reload else ""))
    return (Context(config=config, config_path=tmp_path / "issu.toml",
                    journal=Journal.open(tmp_path / "journal")), listing)


def test_after_the_switch_neutron_talks_to_new_and_after_abort_to_old_again(
        ssh: Endpoints, tmp_path: Path, northbound: dict[str, object]) -> None:  # noqa: F811
    """finalize's switch-northbound re-points the plugin file over SSH and restarts the
    host's neutron-server (the demo profile's default for it): from then on its requests
    reach new's api-server and none reach old's. abort points the file back and restarts it
    again: it talks to old's. Before, the switch only signalled neutron-server (or nothing),
    and it went on talking to old, read-back or not."""
    old, new = northbound["old"], northbound["new"]
    assert isinstance(old, ApiServer) and isinstance(new, ApiServer)
    directory = northbound["dir"]
    assert isinstance(directory, Path)
    _eventually("neutron-server talks to old", lambda: _reaches(old, new))
    first = read_pidfile(hostctl.pidfile(directory, hostctl.NEUTRON))
    ctx, listing = _context(ssh, tmp_path, northbound, None)
    try:
        run = fin.FinalizeRun(ctx, clients=load_clients(listing))
        fin._run_once(run, fin.step("switch-northbound"))
        _eventually("neutron-server talks to new, not old", lambda: _reaches(new, old))
        said = [e.message for e in ctx.journal.events(kind="finalize", text="switch-north")]
        assert any(m.endswith("rewritten, read back, neutron-server restarted, running")
                   for m in said), said
        restarted = read_pidfile(hostctl.pidfile(directory, hostctl.NEUTRON))
        assert first is not None and restarted is not None and restarted.pgid != first.pgid

        done = aborting.undo_finalize(aborting.AbortRun(ctx, runner=None))  # type: ignore[arg-type]
        assert any("northbound pointed back at old" in d and "neutron-server restarted, "
                   "running" in d for d in done), done
        _eventually("neutron-server talks to old again, not new", lambda: _reaches(old, new))
    finally:
        ctx.journal.close()


def test_a_signal_leaves_neutron_on_old_which_is_why_restart_is_its_default(
        ssh: Endpoints, tmp_path: Path, northbound: dict[str, object]) -> None:  # noqa: F811
    """The choice is the client's: `reload = "signal"` sends SIGHUP, read back (it runs);
    the file names new, yet neutron-server, which reads it only when it starts, still talks
    to old: what the switch did before, and why a restart is the default."""
    old, new = northbound["old"], northbound["new"]
    assert isinstance(old, ApiServer) and isinstance(new, ApiServer)
    _eventually("neutron-server talks to old", lambda: _reaches(old, new))
    ctx, listing = _context(ssh, tmp_path, northbound, "signal")
    try:
        run = fin.FinalizeRun(ctx, clients=load_clients(listing))
        fin._run_once(run, fin.step("switch-northbound"))
        said = [e.message for e in ctx.journal.events(kind="finalize", text="switch-north")]
        assert any(m.endswith("rewritten, read back, SIGHUP to neutron-server, running")
                   for m in said), said
        state = northbound["dir"] / f"{hostctl.NEUTRON}.state"  # type: ignore[operator]
        _eventually("the SIGHUP reached neutron-server",
                    lambda: json.loads(state.read_text())["sighups"] == 1)
        assert _reaches(old, new)
    finally:
        ctx.journal.close()


def test_kube_manager_is_restarted_by_default_and_takes_new_then_old_again(
        ssh: Endpoints, tmp_path: Path) -> None:  # noqa: F811
    """A k8s client (contrail-kubernetes.conf's `[VNC] vnc_endpoint_ip/port`) names no
    `reload`: the profile's reload table restarts kube-manager, which reads the file only
    when it starts (the demo's, demo/controller/kubemanager.py, as Contrail's): after the
    switch the running kube-manager is a new process that took new's api-server, the file
    read back; abort restarts it on old's. A signal would have left it on old."""
    s = ssh.ssh
    directory = tmp_path / "k8s"
    directory.mkdir()
    conf = directory / hostctl.KUBE_CONF
    conf.write_text("[VNC]\nvnc_endpoint_ip = 10.9.0.1\nvnc_endpoint_port = 8082\n"
                    "[KUBERNETES]\ncluster_name = k8s\n")
    state = directory / f"{hostctl.KUBE_MANAGER}.state"

    def took() -> str:
        try:
            return str(json.loads(state.read_text())["api_server"])
        except (OSError, ValueError, KeyError):
            return ""

    hostctl.start(directory, hostctl.KUBE_MANAGER)
    config = IssuConfig.model_validate({
        "state_dir": str(tmp_path / "state-dir"),
        "old": {"name": "old", "version": "4.1.0", "api_server": {"url": "http://10.9.0.1:8082"},
                **{k: {"hosts": ["127.0.0.1:1"]} for k in ("cassandra", "zookeeper", "rabbit")}},
        "new": {"name": "new", "version": "5.0.0", "api_server": {"url": "http://10.9.0.2:8082"},
                **{k: {"hosts": ["127.0.0.2:1"]} for k in ("cassandra", "zookeeper", "rabbit")},
                "controllers": [
                    {"name": "k8s-master", "address": s.addresses[1], "ssh_port": s.port,
                     "ssh_user": s.user, "ssh_key": str(s.key_path), "profile": "demo-k8s",
                     "roles": ["northbound"]}]},
        "ssh": {"known_hosts": str(s.known_hosts_path)},
        "controller_profiles": {"demo-k8s": {"base": "demo", "host": shlex.join([
            sys.executable, "-m", "demo.controller.hostctl", "--dir", str(directory)])}},
    })
    config.state_dir.mkdir(parents=True, exist_ok=True)
    listing = tmp_path / "northbound.toml"
    listing.write_text(f'[[client]]\nkind = "k8s"\nhost = "k8s-master"\npath = "{conf}"\n'
                       'service = "kube-manager"\n')
    ctx = Context(config=config, config_path=tmp_path / "issu.toml",
                  journal=Journal.open(tmp_path / "journal"))
    try:
        _eventually("kube-manager took old's api-server", lambda: took() == "10.9.0.1:8082")
        first = read_pidfile(hostctl.pidfile(directory, hostctl.KUBE_MANAGER))
        run = fin.FinalizeRun(ctx, clients=load_clients(listing))
        fin._run_once(run, fin.step("switch-northbound"))
        said = [e.message for e in ctx.journal.events(kind="finalize", text="switch-north")]
        assert any(m.endswith(f"k8s k8s-master:{conf}: rewritten, read back, kube-manager "
                              "restarted, running") for m in said), said
        assert "vnc_endpoint_ip=10.9.0.2\nvnc_endpoint_port=8082\n" in conf.read_text()
        restarted = read_pidfile(hostctl.pidfile(directory, hostctl.KUBE_MANAGER))
        assert first is not None and restarted is not None and restarted.pgid != first.pgid
        _eventually("kube-manager took new's api-server", lambda: took() == "10.9.0.2:8082")

        done = aborting.undo_finalize(aborting.AbortRun(ctx, runner=None))  # type: ignore[arg-type]
        assert any("northbound pointed back at old" in d and "kube-manager restarted, "
                   "running" in d for d in done), done
        _eventually("kube-manager took old's api-server again",
                    lambda: took() == "10.9.0.1:8082")
    finally:
        ctx.journal.close()
        hostctl.stop(directory, hostctl.KUBE_MANAGER)
