"""Controller service profiles over the real sshd of the test network.

systemctl, supervisorctl and docker are the stand-ins of tests/fakebin/fakectl.py, put on
the PATH of the commands issu runs on the simulated host (through the profile's tool
variable, as a deployment would add `sudo`); they record their argv and keep each service's
state, so each test checks what ran, argument by argument, and the state it left."""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import shutil
import stat
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from backends.compute import ProfileError
from backends.controller import (
    BUILTIN_CONTROLLER_PROFILES,
    OPTIONAL_WRITERS,
    WRITERS,
    ControllerError,
    ControllerExecutor,
    build_controller_profiles,
    parse_state,
    parse_version_output,
)
from backends.ssh import SshTarget
from demo.controller.process import write_spec
from demo.services import Endpoints, Launcher
from demo.services.procs import read_pidfile, terminate_group
from issu_tui.config import ApiServerConfig, IssuConfig
from issu_tui.journal import Journal
from issu_tui.orchestrator.context import Context, OrchestratorError
from issu_tui.orchestrator.northbound import (
    load_clients,
    record_switched,
    revert_clients,
    switch_client,
)
from issu_tui.orchestrator.preflight_writers import new_writer_findings, version_findings

FAKE = Path(__file__).parent / "fakebin" / "fakectl.py"
CONFIG_WRITERS = [w for w in WRITERS if w not in OPTIONAL_WRITERS]


@pytest.fixture(scope="module")
def ssh(launcher: Launcher) -> Endpoints:
    return launcher.up(only=["ssh"])


@dataclass
class Host:
    target: SshTarget
    state_dir: Path  # the fakes' state of this simulated host
    tools: str       # `env PATH=... FAKE_STATE=...`: the prefix that puts the fakes on PATH

    def seed(self, services: dict[str, dict[str, object]]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "state.json").write_text(json.dumps(services))

    def state(self) -> dict[str, dict[str, object]]:
        return dict(json.loads((self.state_dir / "state.json").read_text()))

    def calls(self) -> list[list[str]]:
        log = self.state_dir / "calls.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture
def host(ssh: Endpoints, tmp_path: Path) -> Iterator[Host]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("systemctl", "supervisorctl", "docker", "dpkg-query", "apt-get"):
        shutil.copy(FAKE, bin_dir / tool)
        (bin_dir / tool).chmod(stat.S_IRWXU)
    s = ssh.ssh
    target = SshTarget(s.names[1], s.addresses[1], s.port, s.user, s.key_path)
    state = tmp_path / "state"
    yield Host(target, state / s.names[1],
               f"env PATH={bin_dir}:/usr/bin:/bin FAKE_STATE={state}")


def _executor(ssh: Endpoints, overrides: dict[str, dict[str, object]]) -> ControllerExecutor:
    return ControllerExecutor(ssh.ssh.known_hosts_path, 10, 60, overrides)


def test_systemd_stops_disables_signals_and_starts_units(ssh: Endpoints, host: Host) -> None:
    units = {"contrail-schema": "schema-transformer", "contrail-svc-monitor": "svc-monitor",
             "contrail-device-manager": "device-manager", "contrail-api": "api-server"}
    host.seed({f"systemd:{u}": {"running": True, "enabled": True} for u in units})
    ex = _executor(ssh, {"systemd": {"systemctl": f"{host.tools} systemctl"}})

    states = ex.status(host.target, "systemd", CONFIG_WRITERS)
    assert [(s.service, s.state, s.running) for s in states] == [
        ("schema-transformer", "active", True), ("svc-monitor", "active", True),
        ("device-manager", "active", True)]
    ex.act(host.target, "systemd", "stop", CONFIG_WRITERS)
    ex.act(host.target, "systemd", "disable", CONFIG_WRITERS)
    ex.act(host.target, "systemd", "signal", ["api-server"], signal="HUP")
    # stopped and disabled, the api-server untouched but signalled; a stopped unit's status
    # (systemctl exits 3) is a state, not an error
    assert [s.state for s in ex.status(host.target, "systemd", CONFIG_WRITERS)] == \
        ["inactive"] * 3
    state = host.state()
    for unit in ("contrail-schema", "contrail-svc-monitor", "contrail-device-manager"):
        assert state[f"systemd:{unit}"] == {"running": False, "enabled": False}
    assert state["systemd:contrail-api"] == {"running": True, "enabled": True,
                                            "signals": ["HUP"]}
    assert ["systemctl", "stop", "contrail-schema"] in host.calls()
    assert ["systemctl", "disable", "contrail-device-manager"] in host.calls()
    assert ["systemctl", "kill", "--signal=HUP", "contrail-api"] in host.calls()

    ex.act(host.target, "systemd", "enable", CONFIG_WRITERS)
    ex.act(host.target, "systemd", "start", CONFIG_WRITERS)
    assert all(s.running for s in ex.status(host.target, "systemd", CONFIG_WRITERS))

    # a unit the host does not have: the step fails naming host, step and service
    with pytest.raises(ControllerError, match=rf"{host.target.name}: stop kube-manager "
                                              r"failed \(exit 5\)"):
        ex.act(host.target, "systemd", "stop", ["kube-manager"])


def test_unknown_service_or_signal_is_refused_before_anything_runs(ssh: Endpoints,
                                                                   host: Host) -> None:
    host.seed({"systemd:contrail-schema": {"running": True, "enabled": True}})
    ex = _executor(ssh, {"systemd": {"systemctl": f"{host.tools} systemctl"}})
    with pytest.raises(ControllerError, match=r"unknown service 'schema; reboot'"):
        ex.act(host.target, "systemd", "stop", ["schema-transformer", "schema; reboot"])
    with pytest.raises(ControllerError, match=r"'HUP; reboot' is not a signal name"):
        ex.act(host.target, "systemd", "signal", ["schema-transformer"], signal="HUP; reboot")
    with pytest.raises(ControllerError, match="unknown controller profile 'upstart'"):
        ex.act(host.target, "upstart", "stop", ["schema-transformer"])
    assert host.calls() == []
    assert host.state()["systemd:contrail-schema"]["running"] is True


def test_service_names_are_overridable_and_checked(ssh: Endpoints, host: Host) -> None:
    host.seed({"systemd:tf-schema@1": {"running": True, "enabled": True}})
    ex = _executor(ssh, {"systemd": {"systemctl": f"{host.tools} systemctl",
                                     "services": {"schema-transformer": "tf-schema@1"}},
                         "site": {"base": "systemd", "systemctl": f"{host.tools} systemctl"}})
    ex.act(host.target, "systemd", "stop", ["schema-transformer"])
    assert host.state()["systemd:tf-schema@1"]["running"] is False
    assert host.calls() == [["systemctl", "stop", "tf-schema@1"]]
    # a profile based on a built-in keeps the built-in names
    assert ex.profile("site").argv("stop", "svc-monitor")[-1] == "contrail-svc-monitor"
    with pytest.raises(ProfileError, match=r"services.schema-transformer: 'a b; reboot'"):
        build_controller_profiles({"systemd": {"services": {"schema-transformer":
                                                            "a b; reboot"}}})
    with pytest.raises(ProfileError, match="unknown profile 'runit'"):
        build_controller_profiles({"x": {"base": "runit"}})


def test_a_service_mapped_to_nothing_is_one_the_hosts_do_not_run(tmp_path: Path) -> None:
    """A deployment without contrail-dns/named (or the demo's containers) says so with "":
    the console's controller pane does not ask for them (a missing container made every
    host's line an error), and a step naming one is refused before anything runs."""
    from issu_tui.config import ControllerHostConfig
    from issu_tui.controller_poll import shown_services

    profiles = build_controller_profiles({"site": {"base": "docker",
                                                   "services": {"dns": "", "named": ""}}})
    site = profiles["site"]
    assert "dns" not in site.services and "named" not in site.services
    assert site.services["control"] == "control_control_1"  # the others kept
    key = tmp_path / "key"
    key.write_text("x")
    host = ControllerHostConfig.model_validate({"name": "ctl-1", "address": "10.0.0.1",
                                                "ssh_key": str(key), "profile": "site",
                                                "roles": ["control"]})
    assert shown_services(host, set(site.services)) == ["control"]
    with pytest.raises(ControllerError, match="unknown service 'dns'"):
        site.argv("status", "dns")


def test_supervisord_controls_programs_and_edits_autostart(ssh: Endpoints, host: Host,
                                                           tmp_path: Path) -> None:
    sock = "unix:///var/run/supervisord_config.sock"
    host.seed({f"supervisord:{sock}:{p}": {"running": True} for p in
               ("contrail-schema", "contrail-svc-monitor", "contrail-device-manager")})
    files = tmp_path / "etc" / "supervisord_config_files"
    files.mkdir(parents=True)
    for program in ("contrail-schema", "contrail-svc-monitor", "contrail-device-manager"):
        (files / f"{program}.ini").write_text(
            f"[program:{program}]\ncommand=/usr/bin/{program} --conf_file "
            f"/etc/contrail/{program}.conf\npriority=440\nautostart=true\n"
            "killasgroup=true\n\n[eventlistener:x]\nautostart=true\n")
    ex = _executor(ssh, {"supervisord": {"supervisorctl": f"{host.tools} supervisorctl",
                                         "conf_dir": str(tmp_path / "etc")}})

    assert [s.state for s in ex.status(host.target, "supervisord", CONFIG_WRITERS)] == \
        ["RUNNING"] * 3
    ex.act(host.target, "supervisord", "stop", CONFIG_WRITERS)
    ex.act(host.target, "supervisord", "disable", CONFIG_WRITERS)
    states = ex.status(host.target, "supervisord", CONFIG_WRITERS)
    assert [(s.state, s.running) for s in states] == [("STOPPED", False)] * 3
    assert ["supervisorctl", "-s", sock, "stop", "contrail-schema"] in host.calls()
    ini = (files / "contrail-schema.ini").read_text()
    assert ini == ("[program:contrail-schema]\ncommand=/usr/bin/contrail-schema --conf_file "
                   "/etc/contrail/contrail-schema.conf\npriority=440\nautostart=false\n"
                   "killasgroup=true\n\n[eventlistener:x]\nautostart=true\n")
    ex.act(host.target, "supervisord", "enable", ["schema-transformer"])
    assert "\nautostart=true\nkillasgroup" in (files / "contrail-schema.ini").read_text()
    ex.act(host.target, "supervisord", "signal", ["svc-monitor"], signal="SIGHUP")
    assert ["supervisorctl", "-s", sock, "signal", "SIGHUP", "contrail-svc-monitor"] in \
        host.calls()
    # an ini file that is not there: nothing written, the error names it
    with pytest.raises(ControllerError, match=r"contrail-api\.ini: no such file"):
        ex.act(host.target, "supervisord", "disable", ["api-server"])


def test_ini_edit_stores_hostile_values_literally_or_refuses(ssh: Endpoints, host: Host,
                                                            tmp_path: Path) -> None:
    conf = tmp_path / "contrail-schema.conf"
    conf.write_text("[DEFAULTS]\napi_server_ip=10.0.0.1\nzk_server_ip=10.0.0.2:2181\n")
    ex = _executor(ssh, {})
    hostile = "10.0.1.1 $(touch /tmp/pwned) `id`; & | \\1"
    ex.set_ini(host.target, "systemd", str(conf), [("DEFAULTS", "api_server_ip", hostile),
                                                   ("KEYSTONE", "insecure", "True")])
    assert conf.read_text() == (f"[DEFAULTS]\napi_server_ip={hostile}\n"
                                "zk_server_ip=10.0.0.2:2181\n[KEYSTONE]\ninsecure=True\n")
    before = conf.read_text()
    with pytest.raises(ControllerError, match="line break; nothing was changed"):
        ex.set_ini(host.target, "systemd", str(conf), [("DEFAULTS", "a", "1\n[x]")])
    with pytest.raises(ControllerError, match="absolute path"):
        ex.set_ini(host.target, "systemd", "contrail-schema.conf", [("DEFAULTS", "a", "1")])
    assert conf.read_text() == before


def test_docker_containers_by_name(ssh: Endpoints, host: Host) -> None:
    host.seed({name: {"container": name, "running": True, "restart": "always"}
               for name in ("config_schema_1", "config_svcmonitor_1", "config_devicemgr_1",
                            "config_api_1")})
    ex = _executor(ssh, {"docker": {"docker": f"{host.tools} docker"}})
    assert [s.state for s in ex.status(host.target, "docker", CONFIG_WRITERS)] == \
        ["running"] * 3
    ex.act(host.target, "docker", "disable", CONFIG_WRITERS)
    ex.act(host.target, "docker", "stop", CONFIG_WRITERS)
    ex.act(host.target, "docker", "signal", ["api-server"], signal="HUP")
    states = ex.status(host.target, "docker", CONFIG_WRITERS)
    assert [(s.state, s.running) for s in states] == [("exited", False)] * 3
    state = host.state()
    assert state["config_schema_1"] == {"container": "config_schema_1", "running": False,
                                        "restart": "no"}
    assert state["config_api_1"]["signals"] == ["HUP"]
    assert ["docker", "inspect", "--format", "{{.State.Status}}", "config_schema_1"] in \
        host.calls()
    assert ["docker", "update", "--restart=no", "config_devicemgr_1"] in host.calls()
    # a container that is not there ("No such object"): absent, not running
    (control,) = ex.status(host.target, "docker", ["control"])
    assert (control.state, control.running, control.absent) == ("absent", False, True)


def test_docker_compose_services_and_restart_policy(ssh: Endpoints, host: Host,
                                                    tmp_path: Path) -> None:
    host.seed({f"compose:config:{svc}": {"id": f"id-{svc}", "running": True,
                                         "restart": "always"}
               for svc in ("schema", "svcmonitor", "devicemgr")})
    ex = _executor(ssh, {"docker-compose": {"docker": f"{host.tools} docker",
                                            "compose_dir": str(tmp_path / "contrail")}})
    compose = f"{tmp_path}/contrail/config/docker-compose.yaml"
    ex.act(host.target, "docker-compose", "stop", CONFIG_WRITERS)
    ex.act(host.target, "docker-compose", "disable", CONFIG_WRITERS)
    states = ex.status(host.target, "docker-compose", CONFIG_WRITERS)
    assert [(s.state, s.running) for s in states] == [("exited", False)] * 3
    assert ["docker", "compose", "-f", compose, "stop", "schema"] in host.calls()
    assert ["docker", "compose", "-f", compose, "ps", "-a", "-q", "devicemgr"] in host.calls()
    assert ["docker", "update", "--restart=no", "id-devicemgr"] in host.calls()
    assert {k: v["restart"] for k, v in host.state().items()} == {
        "compose:config:schema": "no", "compose:config:svcmonitor": "no",
        "compose:config:devicemgr": "no"}
    ex.act(host.target, "docker-compose", "enable", ["schema-transformer"])
    ex.act(host.target, "docker-compose", "start", ["schema-transformer"])
    assert host.state()["compose:config:schema"] == {"id": "id-schema", "running": True,
                                                     "restart": "always"}


def test_version_step_reads_dpkg_and_image_tags(ssh: Endpoints, host: Host,
                                                tmp_path: Path) -> None:
    host.seed({"dpkg:contrail-lib": {"version": "5.0.1-0.214~ubuntu18.04"},
               "config_api_1": {"container": "config_api_1", "running": True,
                                "image": "registry:5000/contrail-controller-config-api:"
                                         "5.0.0-0.40"}})
    systemd_version = BUILTIN_CONTROLLER_PROFILES["systemd"]["version"]
    ex = _executor(ssh, {"systemd": {"version": f"{host.tools} {systemd_version}"},
                         "docker": {"docker": f"{host.tools} docker"}})
    assert ex.version(host.target, "systemd") == ("api-server", "5.0.1-0.214~ubuntu18.04")
    assert ["dpkg-query", "-W", "-f=${Version}\\n", "contrail-lib"] in host.calls()
    assert ex.version(host.target, "docker") == ("api-server", "5.0.0-0.40")

    # preflight: new's config host runs 5.0.1 where the config says 5.0.0: refused, both named
    config = _inventory_config(ssh, host, tmp_path)
    config.controller_profiles["site"]["version"] = f"{host.tools} {systemd_version}"
    findings = {f.name: f for f in version_findings(config)}
    old, new = findings["old version running"], findings["new version running on new-ctl-1"]
    assert not old.ok and old.severity == "warning"
    assert not new.ok and new.severity == "error"
    assert new.detail == ("new-ctl-1 runs 5.0.1-0.214~ubuntu18.04 (api-server), the config "
                          "says new.version = 5.0.0")
    host.seed({"dpkg:contrail-lib": {"version": "5.0.0-0.40"}})
    new = {f.name: f for f in version_findings(config)}["new version running on new-ctl-1"]
    assert new.ok and new.detail == "api-server 5.0.0-0.40"


def test_preflight_asks_every_controller_host_at_once(ssh: Endpoints, host: Host,
                                                    tmp_path: Path) -> None:
    """Preflight's version and writer checks asked the hosts one after the other; now at
    once: three new config hosts' slowed version steps overlap, findings in inventory order."""
    s = ssh.ssh
    base = _inventory_config(ssh, host, tmp_path)
    site = base.controller_profiles["site"]
    ctl = base.new.controllers[0]
    logs = [tmp_path / f"version-{i}.log" for i in range(3)]
    hosts = [ctl.model_copy(update={"name": f"new-ctl-{i}", "profile": f"site-{i}",
                                    "address": s.addresses[i]}) for i in range(3)]
    slow = {f"site-{i}": {**site, "version": (
        "sh -c 'echo begin $(date +%s.%N) >> \"$0\"; sleep 0.6; "
        f"echo end $(date +%s.%N) >> \"$0\"; echo 5.0.0-0.40' {shlex.quote(str(log))}")}
        for i, log in enumerate(logs)}
    config = base.model_copy(update={"new": base.new.model_copy(update={"controllers": hosts}),
                                     "controller_profiles": {"site": site, **slow}})
    found = [f for f in version_findings(config) if f.name.startswith("new ")]
    assert [(f.name, f.ok) for f in found] == [
        (f"new version running on new-ctl-{i}", True) for i in range(3)]
    spans = []
    for log in logs:
        times = [float(line.split()[1]) for line in log.read_text().splitlines()]
        spans.append((min(times), max(times)))
    assert max(b for b, _ in spans) < min(e for _, e in spans), spans


def test_status_output_of_each_tool_is_read() -> None:
    assert parse_version_output("opencontrail/contrail-controller-config-api:5.0.1-0.214\n") \
        == "5.0.1-0.214"
    # no tag: the reference as printed (it matches no release, and names itself)
    assert parse_version_output("registry:5000/contrail-api\n") == "registry:5000/contrail-api"
    assert parse_version_output("2:5.0.1~ubuntu18.04\n") == "2:5.0.1~ubuntu18.04"
    assert parse_version_output("") == ""
    assert parse_state("active\n") == "active"
    assert parse_state("contrail-schema                  STOPPED   Dec 04 03:55 AM\n") == \
        "STOPPED"
    assert parse_state("running\n") == "running"
    assert parse_state("") == ""


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _wait(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_demo_profile_stops_and_starts_a_demo_controller(services: Endpoints,
                                                         tmp_path: Path) -> None:
    """The demo's controller host command, run over SSH by the `demo` profile, against a
    real simulated controller (real Cassandra, ZooKeeper, RabbitMQ behind it)."""
    net = services.ssh.addresses[0].split(".")[1]
    address = f"127.{net}.0.113"  # not the demo world's nor tests/test_compute.py's
    cass, zk = services.cassandra_new, services.zk_new
    directory = tmp_path / "ctl"
    write_spec(directory, {
        "cluster": "v2", "version": "5.0.0", "listen": address,
        "cassandra": {"hosts": [cass.host], "port": cass.port, "prefix": "ctlprof"},
        "zookeeper": {"hosts": [zk.hosts], "prefix": "ctlprof"},
        "rabbit": {"host": services.rabbit.host, "port": services.rabbit.port,
                   "vhost": services.rabbit.vhost_new},
        "control_nodes": [{"name": "v2-control-1", "address": address}],
    }, {"rabbit_user": services.rabbit.user, "rabbit_password": services.rabbit.password})
    host_command = shlex.join([sys.executable, "-m", "demo.controller.hostctl",
                               "--dir", str(directory)])
    ex = ControllerExecutor(services.ssh.known_hosts_path, 10, 120,
                            {"demo-v2": {"base": "demo", "host": host_command}})
    s = services.ssh
    target = SshTarget(s.names[0], s.addresses[0], s.port, s.user, s.key_path)
    api, analytics = f"http://{address}:8082/", f"http://{address}:8081/"
    roles = ["api-server", "control", "analytics-api"]
    try:
        assert [x.state for x in ex.status(target, "demo-v2", roles)] == ["stopped"] * 3
        ex.act(target, "demo-v2", "start", roles)
        _wait(lambda: _answers(api) and _answers(analytics), "the started controller")
        assert all(x.running for x in ex.status(target, "demo-v2", roles))
        # a process each: the api-server stopped alone, as finalize stops old's
        ex.act(target, "demo-v2", "stop", ["api-server"])
        assert [x.running for x in ex.status(target, "demo-v2", roles)] == [False, True, True]
        assert not _answers(api) and _answers(analytics)
        assert _answers(f"http://{address}:8083/")  # the control node's introspect
        ex.act(target, "demo-v2", "disable", ["api-server"])
        assert (directory / "api-server.disabled").exists()
        ex.act(target, "demo-v2", "enable", ["api-server"])
        assert not (directory / "api-server.disabled").exists()
        with pytest.raises(ControllerError, match="unknown service 'collector'"):
            ex.act(target, "demo-v2", "stop", ["collector"])
    finally:
        for role in roles:
            group = read_pidfile(directory / f"{role}.pid")
            if group is not None:
                terminate_group(group, 20.0)


def _inventory_config(ssh: Endpoints, host: Host, tmp_path: Path) -> IssuConfig:
    s = ssh.ssh
    def side(host: str) -> dict[str, object]:  # nothing listens there: never contacted
        return {key: {"hosts": [f"{host}:1"]} for key in ("cassandra", "zookeeper", "rabbit")}

    return IssuConfig.model_validate({
        "state_dir": str(tmp_path / "state-dir"),
        "old": {"name": "old", "version": "4.1.0", **side("127.0.0.1")},
        "new": {"name": "new", "version": "5.0.0", **side("127.0.0.2"), "controllers": [
            {"name": "new-ctl-1", "address": host.target.address, "ssh_port": s.port,
             "ssh_user": s.user, "ssh_key": str(s.key_path), "profile": "site",
             "roles": ["config", "control", "analytics", "database"]},
            {"name": "new-k8s", "address": host.target.address, "ssh_port": s.port,
             "ssh_user": s.user, "ssh_key": str(s.key_path), "profile": "site",
             "roles": ["northbound"]}]},
        "ssh": {"known_hosts": str(s.known_hosts_path)},
        "controller_profiles": {"site": {"base": "systemd",
                                         "systemctl": f"{host.tools} systemctl"}},
    })


def test_preflight_refuses_while_a_writer_runs_on_new(ssh: Endpoints, host: Host,
                                                      tmp_path: Path) -> None:
    host.seed({f"systemd:{u}": {"running": u != "contrail-device-manager", "enabled": True}
               for u in ("contrail-schema", "contrail-svc-monitor", "contrail-device-manager",
                         "contrail-kube-manager")})
    config = _inventory_config(ssh, host, tmp_path)
    findings = {f.name: f for f in new_writer_findings(config)}
    ctl, k8s = findings["new writers stopped on new-ctl-1"], findings[
        "new writers stopped on new-k8s"]
    assert not ctl.ok and ctl.severity == "warning"
    where = f"new-ctl-1 ({host.target.address})"
    # both inventory hosts are this one simulated host: its kube-manager runs for both (a
    # config host is asked for kube-manager and vcenter-manager too: where present)
    assert ctl.detail.startswith(f"running on new {where}: schema-transformer (active), "
                                 "svc-monitor (active), kube-manager (active);")
    assert "pre-sync stops and disables them first" in ctl.detail
    assert "device-manager" not in ctl.detail
    assert ctl.fix == ("nothing, or stop and disable them on new-ctl-1 yourself: "
                       f"{host.tools} systemctl stop contrail-schema; "
                       f"{host.tools} systemctl stop contrail-svc-monitor; "
                       f"{host.tools} systemctl stop contrail-kube-manager; "
                       f"{host.tools} systemctl disable contrail-schema; "
                       f"{host.tools} systemctl disable contrail-svc-monitor; "
                       f"{host.tools} systemctl disable contrail-kube-manager")
    assert not k8s.ok and "kube-manager (active)" in k8s.detail
    # asking changed nothing
    assert all(s["running"] for k, s in host.state().items() if "device" not in k)

    ex = ControllerExecutor(ssh.ssh.known_hosts_path, 10, 60, config.controller_profiles)
    ex.act(host.target, "site", "stop", ["schema-transformer", "svc-monitor", "kube-manager"])
    findings = {f.name: f for f in new_writer_findings(config)}
    assert all(f.ok for f in findings.values()), findings
    # a unit that does not exist (vcenter-manager) is absent, told by its LoadState; before,
    # `systemctl is-active` alone said `inactive`, as of one installed and stopped
    assert findings["new writers stopped on new-ctl-1"].detail == (
        "schema-transformer inactive, svc-monitor inactive, device-manager inactive, "
        "kube-manager inactive, vcenter-manager absent (not on this host)")


def test_preflight_without_inventory_warns_and_an_unreachable_host_refuses(
        ssh: Endpoints, host: Host, tmp_path: Path) -> None:
    config = _inventory_config(ssh, host, tmp_path)
    bare = config.model_copy(update={"new": config.new.model_copy(update={"controllers": []})})
    (warning,) = new_writer_findings(bare)
    assert not warning.ok and warning.severity == "warning"
    assert "no [[new.controllers]] host with role config" in warning.detail
    # a host whose sshd does not answer: not a pass, the host is named
    gone = config.new.controllers[0].model_copy(update={"ssh_port": 1})
    lost = config.model_copy(update={"new": config.new.model_copy(
        update={"controllers": [gone]})})
    (finding,) = new_writer_findings(lost)
    assert not finding.ok and finding.severity == "error"
    assert finding.detail.startswith("cannot tell: new-ctl-1")


def _nb_context(config: IssuConfig, tmp_path: Path, overrides: dict[str, object] | None = None
                ) -> Context:
    new = config.new.model_copy(update={"api_server": ApiServerConfig(
        url="http://10.9.0.2:8082")})
    config = config.model_copy(update={"new": new})
    if overrides:
        config = config.model_copy(update={"controller_profiles": {
            "site": {**config.controller_profiles["site"], **overrides}}})
    return Context(config=config, config_path=tmp_path / "issu.toml",
                   journal=Journal.open(tmp_path / "journal"))


def test_northbound_switch_over_ssh_reads_back_and_restarts(ssh: Endpoints, host: Host,
                                                            tmp_path: Path) -> None:
    """neutron-server reads the plugin's api_server_ip only when it starts: the profile's
    default for it is a restart (a SIGHUP would leave it on old), then its status is read
    back; a client may ask for a signal instead."""
    host.seed({"systemd:neutron-server": {"running": True, "enabled": True}})
    plugin = tmp_path / "ContrailPlugin.ini"
    original = ("[APISERVER]\napi_server_ip = 10.9.0.1\napi_server_port = 8082\n"
                "contrail_extensions = ipam\n")
    plugin.write_text(original)
    listing = tmp_path / "northbound.toml"
    listing.write_text(f'[[client]]\nkind = "neutron"\nhost = "new-k8s"\npath = "{plugin}"\n'
                       'service = "neutron-server"\n')
    (client,) = load_clients(listing)
    ctx = _nb_context(_inventory_config(ssh, host, tmp_path), tmp_path)
    try:
        done = switch_client(ctx, client)
        assert done == (f"neutron new-k8s:{plugin}: rewritten, read back, neutron-server "
                        "restarted, running")
        assert plugin.read_text() == ("[APISERVER]\napi_server_ip=10.9.0.2\n"
                                      "api_server_port=8082\ncontrail_extensions = ipam\n")
        assert Path(f"{plugin}.issu-backup").read_text() == original
        assert host.state()["systemd:neutron-server"]["restarts"] == 1
        assert ["systemctl", "kill", "--signal=HUP", "neutron-server"] not in host.calls()
        assert ["systemctl", "is-active", "neutron-server"] in host.calls()
        # a client that takes a signal (its own choice), read back too
        signalled = client.model_copy(update={"reload": "signal"})
        assert switch_client(ctx, signalled).endswith("SIGHUP to neutron-server, running")
        assert ["systemctl", "kill", "--signal=HUP", "neutron-server"] in host.calls()
        # again: nothing to rewrite, the first state's backup kept
        assert "already new, read back" in switch_client(ctx, client)
        assert Path(f"{plugin}.issu-backup").read_text() == original
    finally:
        ctx.journal.close()

    # an edit step that changes nothing: the read-back names the key, nothing is signalled
    plugin.write_text(original)
    calls = len(host.calls())
    ctx = _nb_context(_inventory_config(ssh, host, tmp_path), tmp_path, {"set_ini": "true"})
    try:
        with pytest.raises(OrchestratorError, match=r"new-k8s: .*ContrailPlugin.ini read back: "
                           r"\[APISERVER\] api_server_ip is '10.9.0.1', not '10.9.0.2'"):
            switch_client(ctx, client)
        assert len(host.calls()) == calls
        unknown = client.model_copy(update={"host": "neutron-9"})
        with pytest.raises(OrchestratorError, match="'neutron-9' is not in the controller "
                           "inventory"):
            switch_client(ctx, unknown)
    finally:
        ctx.journal.close()
    # an unreachable host: named, the file untouched
    config = _inventory_config(ssh, host, tmp_path)
    gone = config.new.controllers[1].model_copy(update={"ssh_port": 1})
    config = config.model_copy(update={"new": config.new.model_copy(
        update={"controllers": [config.new.controllers[0], gone]})})
    ctx = _nb_context(config, tmp_path)
    try:
        with pytest.raises(OrchestratorError, match="northbound neutron on new-k8s: new-k8s"):
            switch_client(ctx, client)
    finally:
        ctx.journal.close()
    assert plugin.read_text() == original

    # a neutron-server that does not come up after its restart: an error naming host and
    # service (the file stays switched: a retry restarts it again)
    host.seed({"systemd:neutron-server": {"running": True, "enabled": True,
                                          "fail_restart": True}})
    ctx = _nb_context(_inventory_config(ssh, host, tmp_path), tmp_path)
    try:
        with pytest.raises(OrchestratorError, match="northbound neutron on new-k8s: "
                           "neutron-server is 'inactive' after its restart"):
            switch_client(ctx, client)
    finally:
        ctx.journal.close()


def test_a_vcenter_plugin_on_its_own_host_is_switched_and_pointed_back_over_ssh(
        ssh: Endpoints, host: Host, tmp_path: Path) -> None:
    """The vCenter plugin's properties file (no sections) on a northbound host: load_clients
    refused a vcenter client with `host` ("edited on the executor's host only"). Now its
    `api.hostname=` / `api.port=` lines are set over SSH, every other line kept, read back,
    the plugin restarted; abort's way back restores the file."""
    host.seed({"systemd:contrail-vcenter-plugin": {"running": True, "enabled": True}})
    props = tmp_path / "contrail-vcenter-plugin.properties"
    original = ("# vcenter plugin\nvcenter.url=https://vc.example/sdk\napi.hostname=10.9.0.1\n"
                "api.port=8082\nmode=vcenter-only\n")
    props.write_text(original)
    listing = tmp_path / "northbound.toml"
    listing.write_text(f'[[client]]\nkind = "vcenter"\nhost = "new-k8s"\npath = "{props}"\n'
                       'service = "vcenter-plugin"\n')
    clients = load_clients(listing)
    config = _inventory_config(ssh, host, tmp_path)
    config = config.model_copy(update={"old": config.old.model_copy(update={
        "api_server": ApiServerConfig(url="http://10.9.0.1:8082")})})
    config.state_dir.mkdir(parents=True, exist_ok=True)
    ctx = _nb_context(config, tmp_path)
    try:
        record_switched(ctx, clients)
        done = switch_client(ctx, clients[0])
        assert done == (f"vcenter new-k8s:{props}: rewritten, read back, vcenter-plugin "
                        "restarted, running")
        assert props.read_text() == original.replace("10.9.0.1", "10.9.0.2")
        assert Path(f"{props}.issu-backup").read_text() == original
        # the plugin reads its properties when it starts: restarted (the profile's default)
        assert ["systemctl", "restart", "contrail-vcenter-plugin"] in host.calls()
        assert "already new, read back" in switch_client(ctx, clients[0])
        assert revert_clients(ctx) == (f"northbound pointed back at old: vcenter new-k8s:"
                                       f"{props}: restored, read back, vcenter-plugin "
                                       "restarted, running")
        assert props.read_text() == original
    finally:
        ctx.journal.close()


def test_northbound_revert_over_ssh_restores_the_backup_and_reads_back(
        ssh: Endpoints, host: Host, tmp_path: Path) -> None:
    """switch-northbound's inverse (abort while new is still fenced): the file as it was
    before the switch, read back naming old again, the client restarted; then nothing left."""
    host.seed({"systemd:neutron-server": {"running": True, "enabled": True}})
    plugin = tmp_path / "ContrailPlugin.ini"
    original = ("[APISERVER]\napi_server_ip = 10.9.0.1\napi_server_port = 8082\n"
                "contrail_extensions = ipam\n")
    plugin.write_text(original)
    listing = tmp_path / "northbound.toml"
    listing.write_text(f'[[client]]\nkind = "neutron"\nhost = "new-k8s"\npath = "{plugin}"\n'
                       'service = "neutron-server"\n')
    clients = load_clients(listing)
    config = _inventory_config(ssh, host, tmp_path)
    config = config.model_copy(update={"old": config.old.model_copy(update={
        "api_server": ApiServerConfig(url="http://10.9.0.1:8082")})})
    config.state_dir.mkdir(parents=True, exist_ok=True)
    ctx = _nb_context(config, tmp_path)
    try:
        assert revert_clients(ctx) == "northbound: no client was switched"
        record_switched(ctx, clients)
        switch_client(ctx, clients[0])
        assert "api_server_ip=10.9.0.2" in plugin.read_text()
        restarts = host.calls().count(["systemctl", "restart", "neutron-server"])
        done = revert_clients(ctx)
        assert done == (f"northbound pointed back at old: neutron new-k8s:{plugin}: restored, "
                        "read back, neutron-server restarted, running")
        assert plugin.read_text() == original
        assert not Path(f"{plugin}.issu-backup").exists()
        assert host.calls().count(["systemctl", "restart", "neutron-server"]) == restarts + 1
        assert revert_clients(ctx) == "northbound: no client was switched"

        # a backup that does not name old (edited by hand since): refused, naming the key,
        # before anything is replaced (the restore checked after replacing: review S2)
        record_switched(ctx, clients)
        switch_client(ctx, clients[0])
        switched = plugin.read_text()
        Path(f"{plugin}.issu-backup").write_text(original.replace("10.9.0.1", "10.9.9.9"))
        with pytest.raises(OrchestratorError, match=r"new-k8s: its backup .* does not name "
                           r"old \(\[APISERVER\] api_server_ip is '10.9.9.9', not "
                           r"'10.9.0.1'\): nothing restored"):
            revert_clients(ctx)
        assert plugin.read_text() == switched
        assert Path(f"{plugin}.issu-backup").exists()
        # pointed back by hand, the backup gone: a re-run reads the file back and signals
        plugin.write_text(original)
        Path(f"{plugin}.issu-backup").unlink()
        assert revert_clients(ctx).endswith(f"neutron new-k8s:{plugin}: names old, read "
                                            "back, neutron-server restarted, running")
    finally:
        ctx.journal.close()


def _fenceable_config(ssh: Endpoints, host: Host, tmp_path: Path) -> IssuConfig:
    """The inventory config plus two old config hosts and fence/unfence steps that behave as
    `iptables -I` / `iptables -D` do: each fence adds a rule, each unfence removes one and
    fails when there is none. old-ctl-2's fence fails before it applies anything."""
    rules = {name: tmp_path / f"rules-{name}" for name in ("new", "old-1", "old-2")}
    for file in rules.values():
        file.write_text("")

    def steps(file: Path, fence: str = "") -> dict[str, str]:
        return {"fence": fence or f"sh -c 'echo REJECT >> \"$0\"' {shlex.quote(str(file))}",
                "unfence": "sh -c 'grep -q REJECT \"$0\" && sed -i 1d \"$0\"' "
                           f"{shlex.quote(str(file))}"}

    config = _inventory_config(ssh, host, tmp_path)
    site = config.controller_profiles["site"]
    ctl = config.new.controllers[0]
    old = [ctl.model_copy(update={"name": f"old-ctl-{i}", "profile": f"site-old-{i}"})
           for i in (1, 2)]
    return config.model_copy(update={
        "old": config.old.model_copy(update={"controllers": old}),
        "controller_profiles": {
            "site": {**site, **steps(rules["new"])},
            "site-old-1": {**site, **steps(rules["old-1"])},
            "site-old-2": {**site, **steps(rules["old-2"], fence="false")}}})


def test_a_profile_fence_runs_once_and_abort_undoes_a_half_done_fence_old(
        ssh: Endpoints, host: Host, tmp_path: Path) -> None:
    """Review M1/M4: prepare-new runs on every pre-sync run, and fence steps like
    `iptables -I` stack a rule each time while one unfence removes one: new stayed closed
    after open-new. A fence-old that fenced old-ctl-1 and then failed on old-ctl-2 was not
    undone by abort (old-ctl-1 stayed closed), and unfencing a host never fenced failed."""
    from issu_tui.orchestrator import abort as aborting
    from issu_tui.orchestrator import finalize as fin
    from issu_tui.orchestrator.controllers import prepare_new

    host.seed({f"systemd:{u}": {"running": True, "enabled": True}
               for u in ("contrail-schema", "contrail-svc-monitor", "contrail-device-manager",
                         "contrail-kube-manager")})
    config = _fenceable_config(ssh, host, tmp_path)
    config.state_dir.mkdir(parents=True, exist_ok=True)
    ctx = Context(config=config, config_path=tmp_path / "issu.toml",
                  journal=Journal.open(tmp_path / "journal"))
    rules = {name: tmp_path / f"rules-{name}" for name in ("new", "old-1", "old-2")}
    try:
        first = prepare_new(ctx)
        assert "new's api-server fenced by the profile's fence step on new-ctl-1" in first
        again = prepare_new(ctx)  # pre-sync run again
        assert "new-ctl-1 (fenced already by this upgrade)" in again
        assert rules["new"].read_text() == "REJECT\n"  # fence twice = once
        run = fin.FinalizeRun(ctx)
        assert fin.open_new(run).startswith("new api-server accepts writes")
        assert rules["new"].read_text() == ""  # open: no rule left

        with pytest.raises(OrchestratorError, match="old-ctl-2"):
            fin._run_once(run, fin.step("fence-old"))
        assert rules["old-1"].read_text() == "REJECT\n"
        undone = aborting.undo_finalize(aborting.AbortRun(ctx, runner=None))  # type: ignore[arg-type]
        assert rules["old-1"].read_text() == ""  # abort opened the host fence-old closed
        assert any("old-ctl-2: unfence failed" in line and "had not completed" in line
                   for line in undone), undone
        # abort again (a re-run): nothing left fenced, nothing run, no failure
        assert fin.unfence_old(ctx) == ("old api-server open for writes again: old's "
                                        "api-server: no config host was fenced by this upgrade")
    finally:
        ctx.journal.close()


def test_settle_old_writers_waits_on_their_queues_and_refuses_on_timeout(
        ssh: Endpoints, launcher: Launcher, host: Host, tmp_path: Path) -> None:
    """Review M6: "tables unchanged for 5 s" let a writer further behind pass, and a timeout
    only warned. With a `queues` step (rabbitmqctl on the broker's host, here the real broker
    over the real sshd) old's writers' own queues must be drained and acknowledged; not
    within the timeout: refused naming the queue, unless --force. Review 28: a writer's queue
    goes when it stops, so one queue is expected per configured writer: a missing one (no
    queue at all included) is refused naming writer and host, --force --reason journaled."""
    import kombu

    from issu_tui.orchestrator.settle import settle_old_writers

    rabbit_endpoints = launcher.up(only=["rabbit"]).rabbit
    rabbit = launcher.service("rabbitmq")
    ctl = rabbit.ctl()  # type: ignore[attr-defined]
    env = " ".join(shlex.quote(f"{k}={v}") for k, v in ctl["env"].items())
    env = env.replace("{", "{{").replace("}", "}}")  # a template: braces are its variables
    queues_step = (f"env {env} /usr/lib/rabbitmq/bin/rabbitmqctl -n {ctl['nodename']} -q "
                   "list_queues -p {vhost} --no-table-headers name messages_ready "
                   "messages_unacknowledged")
    config = _inventory_config(ssh, host, tmp_path)
    ctl_name = f"old-{tmp_path.name}"  # unique on the session's broker
    old_host = config.new.controllers[0].model_copy(update={"name": ctl_name,
                                                            "profile": "site-old"})
    old_rabbit = {"hosts": [f"{rabbit_endpoints.host}:{rabbit_endpoints.port}"],
                  "user": rabbit_endpoints.user, "password": rabbit_endpoints.password,
                  "vhost": rabbit_endpoints.vhost_old}
    config = config.model_copy(update={
        "old": config.old.model_copy(update={
            "controllers": [old_host],
            "rabbit": type(config.old.rabbit).model_validate(old_rabbit)}),
        "sync": config.sync.model_copy(update={"writers_settle_timeout_s": 4.0}),
        "controller_profiles": {**config.controller_profiles,
                                "site-old": {**config.controller_profiles["site"],
                                             "queues": queues_step}}})
    config.state_dir.mkdir(parents=True, exist_ok=True)
    ctx = Context(config=config, config_path=tmp_path / "issu.toml",
                  journal=Journal.open(tmp_path / "journal"))
    where = f"on {ctl_name} ({old_host.address})"
    # Contrail names the queue after the host name or its FQDN; the demo after the address
    st, sm = f"schema_transformer.{ctl_name}", f"svc_monitor.{ctl_name}.example.org"
    dm = f"device_manager.{old_host.address}"
    conn = kombu.Connection(hostname=rabbit_endpoints.host, port=rabbit_endpoints.port,
                            userid=rabbit_endpoints.user, password=rabbit_endpoints.password,
                            virtual_host=rabbit_endpoints.vhost_old)
    bound: dict[str, Any] = {}
    try:
        # no writer queue at all: the writers are not running, not "nothing to wait for"
        with pytest.raises(OrchestratorError, match=(
                rf"no queue of old's schema-transformer {re.escape(where)}: no queue "
                rf"schema_transformer\.<host> .*; svc-monitor {re.escape(where)}.*; "
                rf"device-manager {re.escape(where)}.* after 4s; writer queues present: none"
                r".*not running.*finalize --force")):
            settle_old_writers(ctx)
        forced = settle_old_writers(ctx, force=True, reason="writers stopped by hand")
        assert forced.endswith("forced: writers stopped by hand")
        [event] = ctx.journal.events(kind="finalize", text="no queue of old's")
        assert "writers stopped by hand" in event.message

        exchange = kombu.Exchange("vnc_config.object-update", type="fanout", durable=False)
        channel = conn.channel()
        bound.update({name: kombu.Queue(name, exchange, durable=False)(channel)
                      for name in (st, sm, dm)})
        for queue in bound.values():
            queue.declare()
        # a notification old's schema-transformer has not handled yet
        kombu.Producer(channel).publish({"oper": "CREATE"}, routing_key=st, serializer="json")
        with pytest.raises(OrchestratorError, match=rf"settle-old-writers: old's writers' "
                           rf"queues not drained after 4s \({st} 1 ready, 0 unacknowledged"
                           r"\).*finalize --force"):
            settle_old_writers(ctx)
        # delivered but not yet acknowledged: still not settled
        message = bound[st].get(no_ack=False)
        assert message is not None
        with pytest.raises(OrchestratorError, match=rf"{st} 0 ready, 1 unacknowledged"):
            settle_old_writers(ctx)
        message.ack()
        # a leftover writer queue of a host not in the inventory does not hold it up
        foreign = kombu.Queue(f"schema_transformer.gone-{tmp_path.name}", exchange,
                              durable=False)(channel)
        foreign.declare()
        bound["foreign"] = foreign
        kombu.Producer(channel).publish({"oper": "CREATE"}, routing_key=foreign.name,
                                        serializer="json")
        patient = Context(config=config.model_copy(update={  # two quiet polls on a busy box
            "sync": config.sync.model_copy(update={"writers_settle_timeout_s": 120.0})}),
            config_path=ctx.config_path, journal=ctx.journal)
        done = settle_old_writers(patient)
        assert done.startswith("old's writers settled: their queues on old's broker are "
                               "empty and acknowledged (")
        assert all(name in done for name in (st, sm, dm)) and foreign.name not in done
        # device-manager stopped: its queue went with it
        bound[dm].delete()
        with pytest.raises(OrchestratorError, match=(
                rf"no queue of old's device-manager {re.escape(where)}.*writer queues "
                rf"present: .*{st}")):
            settle_old_writers(ctx)
    finally:
        for queue in bound.values():  # a leftover queue would hold up other tests' settles
            with contextlib.suppress(Exception):
                queue.delete()
        conn.release()
        ctx.journal.close()


def test_preflight_refuses_a_northbound_client_that_names_new_already(
        ssh: Endpoints, host: Host, tmp_path: Path) -> None:
    """Item 4 of the fence: nothing northbound reaches new before finalize. Each api client
    of northbound.toml is read where it lives (over SSH on its host): one naming new already
    refuses preflight, naming the file; one naming old passes; an unreachable host is an
    error naming it."""
    from issu_tui.orchestrator.preflight import check_northbound

    plugin = tmp_path / "ContrailPlugin.ini"
    listing = tmp_path / "northbound.toml"
    listing.write_text(f'[[client]]\nkind = "neutron"\nhost = "new-k8s"\npath = "{plugin}"\n'
                       'service = "neutron-server"\n')
    config = _inventory_config(ssh, host, tmp_path)
    config = config.model_copy(update={"old": config.old.model_copy(update={
        "api_server": ApiServerConfig(url="http://10.9.0.1:8082")})})
    ctx = _nb_context(config, tmp_path)
    where = f"neutron new-k8s:{plugin}"
    try:
        plugin.write_text("[APISERVER]\napi_server_ip = 10.9.0.1\napi_server_port = 8082\n")
        (ok,) = check_northbound(ctx, listing)
        assert ok.ok and ok.name == f"northbound clients name old: {where}"
        plugin.write_text("[APISERVER]\napi_server_ip = 10.9.0.2\napi_server_port = 8082\n")
        (refused,) = check_northbound(ctx, listing)
        assert not refused.ok and refused.severity == "error"
        assert refused.detail.startswith(f"{where} names the NEW api-server already")
        (missing,) = check_northbound(ctx, tmp_path / "absent.toml")
        assert not missing.ok and missing.severity == "warning"
    finally:
        ctx.journal.close()
    gone = config.new.controllers[1].model_copy(update={"ssh_port": 1})
    config = config.model_copy(update={"new": config.new.model_copy(
        update={"controllers": [config.new.controllers[0], gone]})})
    ctx = _nb_context(config, tmp_path)
    try:
        (unreachable,) = check_northbound(ctx, listing)
        assert not unreachable.ok and unreachable.severity == "error"
        assert unreachable.detail.startswith("northbound neutron on new-k8s: new-k8s")
    finally:
        ctx.journal.close()


def test_kube_and_vcenter_managers_are_stopped_where_present_and_said_absent_elsewhere(
        ssh: Endpoints, host: Host, tmp_path: Path) -> None:
    """new's kube-manager and vcenter-manager are writers where a deployment has them: a
    config host with neither (systemd: `systemctl stop` of a missing unit exits 5) and a
    Kubernetes host with a kube-manager container but no vcenter-manager one (docker: "No
    such container"). Preflight names the one running; prepare-new stops and disables the
    present ones and says which are absent where, instead of failing; start-new-writers
    starts kube-manager again and abort's stop-new-writers-again stops it again."""
    host.seed({f"systemd:{u}": {"running": True, "enabled": True}
               for u in ("contrail-schema", "contrail-svc-monitor", "contrail-device-manager")})
    k8s_state = tmp_path / "k8s-state"
    k8s_home = k8s_state / host.state_dir.name  # the fakes' state of this simulated host
    k8s_home.mkdir(parents=True)
    (k8s_home / "state.json").write_text(json.dumps({"kubemanager": {
        "container": "kubemanager_kubemanager_1", "running": True, "restart": "always"}}))
    k8s_tools = host.tools.replace(f"FAKE_STATE={host.state_dir.parent}",
                                   f"FAKE_STATE={k8s_state}")
    config = _inventory_config(ssh, host, tmp_path)
    k8s = config.new.controllers[1].model_copy(update={"profile": "k8s"})
    config = config.model_copy(update={
        "new": config.new.model_copy(update={"controllers": [config.new.controllers[0], k8s]}),
        "controller_profiles": {**config.controller_profiles,
                                "k8s": {"base": "docker", "docker": f"{k8s_tools} docker"}}})

    def k8s_container() -> dict[str, Any]:
        return dict(json.loads((k8s_home / "state.json").read_text())["kubemanager"])

    findings = {f.name: f for f in new_writer_findings(config)}
    running = findings["new writers stopped on new-k8s"]
    assert not running.ok and running.detail.startswith(
        f"running on new new-k8s ({host.target.address}): kube-manager (running);")
    ctx = _nb_context(config, tmp_path)
    from issu_tui.orchestrator import controllers as ctl

    try:
        done = ctl.prepare_new(ctx)
        assert done == ("stopped and disabled on new: new-ctl-1: schema-transformer, "
                        "svc-monitor, device-manager; new-k8s: kube-manager; new-ctl-1: "
                        "kube-manager, vcenter-manager absent (not on this host), skipped; "
                        "new-k8s: vcenter-manager absent (not on this host), skipped")
        assert k8s_container() == {"container": "kubemanager_kubemanager_1",
                                   "running": False, "restart": "no"}
        assert all(not s["running"] and not s["enabled"] for s in host.state().values())
        absent = ctx.journal.events(kind="controllers", text="absent")
        assert sorted((e.fields["host"], e.fields["absent"]) for e in absent) == [
            ("new-ctl-1", ["kube-manager", "vcenter-manager"]),
            ("new-k8s", ["vcenter-manager"])]
        findings = {f.name: f for f in new_writer_findings(config)}
        assert findings["new writers stopped on new-k8s"].ok
        assert findings["new writers stopped on new-k8s"].detail == (
            "kube-manager exited, vcenter-manager absent (not on this host)")

        started = ctl.start_new_writers(ctx)
        assert started.startswith("enabled and started on new: new-ctl-1: schema-transformer, "
                                  "svc-monitor, device-manager; new-k8s: kube-manager;")
        assert "new-k8s: vcenter-manager absent (not on this host), skipped" in started
        assert k8s_container()["running"] is True and k8s_container()["restart"] == "always"

        again = ctl.stop_new_writers_again(ctx)
        assert again.startswith("new's writers stopped and disabled again: new-ctl-1: "
                                "schema-transformer, svc-monitor, device-manager; new-k8s: "
                                "kube-manager;")
        assert k8s_container()["running"] is False
    finally:
        ctx.journal.close()
