"""The controller inventory in issu.toml: hosts with roles and profiles, and `issu config
check` naming every missing host or role."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from issu_tui.cli import cli
from issu_tui.config import check_controllers, config_as_dict, load_config, to_toml
from tests.test_config import GOOD, write
from tests.test_config import workdir as workdir  # the fixture

INVENTORY = """
[[old.controllers]]
name = "old-ctl-1"
address = "127.0.0.101"
roles = ["config", "control", "analytics"]
ssh_key = "id_ed25519"
profile = "supervisord"

[[old.controllers]]
name = "old-db-1"
address = "127.0.0.11"
roles = ["database"]
ssh_key = "id_ed25519"
profile = "supervisord"

[[old.controllers]]
name = "old-db-2"
address = "127.0.0.21"
roles = ["database"]
ssh_key = "id_ed25519"

[[old.controllers]]
name = "old-rabbit"
address = "127.0.0.31"
roles = ["database", "northbound"]
ssh_key = "id_ed25519"

[[new.controllers]]
name = "new-ctl-1"
address = "127.0.0.12"
roles = ["config", "control", "analytics", "database"]
ssh_key = "id_ed25519"
profile = "site-docker"

[[new.controllers]]
name = "new-zk"
address = "127.0.0.22"
roles = ["database"]
ssh_key = "id_ed25519"
profile = "site-docker"

[[new.controllers]]
name = "new-rabbit"
address = "127.0.0.31"
roles = ["database"]
ssh_key = "id_ed25519"
profile = "site-docker"

[controller_profiles.site-docker]
base = "docker"
docker = "sudo -n docker"
[controller_profiles.site-docker.services]
schema-transformer = "tf_config_schema_1"
"""


def test_a_complete_inventory_loads_and_checks_clean(workdir: Path) -> None:
    path = write(workdir, GOOD + INVENTORY)
    cfg = load_config(path)
    assert [h.name for h in cfg.old.controllers] == ["old-ctl-1", "old-db-1", "old-db-2",
                                                     "old-rabbit"]
    assert cfg.old.controllers[0].roles == ["config", "control", "analytics"]
    assert cfg.old.controllers[2].profile == "systemd"  # the default
    assert cfg.new.controllers[0].ssh_key == (workdir / "id_ed25519").resolve()
    assert check_controllers(cfg) == []
    result = CliRunner().invoke(cli, ["config", "check", "-c", str(path)])
    assert result.exit_code == 0, result.output
    # the config as shown reads back as the same inventory and profile override
    shown = tomllib.loads(to_toml(config_as_dict(cfg)))
    assert shown["controller_profiles"]["site-docker"]["services"] == {
        "schema-transformer": "tf_config_schema_1"}
    assert shown["new"]["controllers"][0]["roles"] == ["config", "control", "analytics",
                                                       "database"]


def test_check_names_every_missing_role_and_host(workdir: Path) -> None:
    partial = INVENTORY.replace('roles = ["config", "control", "analytics", "database"]',
                                'roles = ["config", "database"]')
    partial = partial.replace('address = "127.0.0.21"', 'address = "127.0.0.29"')
    path = write(workdir, GOOD + partial)
    problems = check_controllers(load_config(path))
    assert problems == [
        "old.zookeeper.hosts.0: 127.0.0.21:2181 is not in old.controllers with role database",
        "new.controllers: no host with role control",
        "new.controllers: no host with role analytics",
    ]
    result = CliRunner().invoke(cli, ["config", "check", "-c", str(path)])
    assert result.exit_code == 2
    for problem in problems:
        assert f"{path}: {problem}" in result.output


@pytest.mark.parametrize(("edit", "message"), [
    (('profile = "site-docker"', 'profile = "upstart"', 1),
     "new.controllers.0.profile: unknown controller profile 'upstart'"),
    (('schema-transformer = "tf_config_schema_1"', 'schema-transformer = "x; reboot"', 1),
     "controller_profiles.site-docker.services.schema-transformer: 'x; reboot'"),
    (('roles = ["database", "northbound"]', 'roles = ["database", "compute"]', 1),
     "old.controllers.3.roles.1: Input should be 'config'"),
    (('name = "new-zk"', 'name = "old-db-1"', 1), "controllers: duplicate names old-db-1"),
    (('base = "docker"', 'base = "lxc"', 1),
     "controller_profiles.site-docker.base: unknown profile 'lxc'"),
    (('docker = "sudo -n docker"', 'fence = "iptables -I INPUT -p tcp --dport 8082 -j DROP"',
      1), "controller profile site-docker: steps fence and unfence go together"),
])
def test_bad_inventory_is_explained_by_key(workdir: Path, edit: tuple[str, str, int],
                                          message: str) -> None:
    old, new, count = edit
    path = write(workdir, GOOD + INVENTORY.replace(old, new, count))
    result = CliRunner().invoke(cli, ["config", "check", "-c", str(path)])
    assert result.exit_code == 2
    assert message in result.output, result.output


def test_a_config_without_inventory_is_unchanged(workdir: Path) -> None:
    cfg = load_config(write(workdir, GOOD))
    assert cfg.old.controllers == [] and cfg.controller_profiles == {}
    assert check_controllers(cfg) == []


def test_check_names_every_northbound_host_the_clients_file_needs(workdir: Path) -> None:
    """Issue 14 bullet 1: `config check` named no northbound host: a client on a host the
    inventory lacks, or has without role northbound, showed up only at preflight or
    finalize; so did new's kube-manager host (a writer prepare-new stops)."""
    path = write(workdir, GOOD + INVENTORY)
    northbound = workdir / "northbound.toml"
    northbound.write_text(
        '[[client]]\nkind = "neutron"\nhost = "old-rabbit"\n'
        'path = "/etc/neutron/plugins/opencontrail/ContrailPlugin.ini"\n'
        '[[client]]\nkind = "neutron"\nhost = "neutron-9"\n'
        'path = "/etc/neutron/plugins/opencontrail/ContrailPlugin.ini"\n'
        '[[client]]\nkind = "k8s"\nhost = "new-ctl-1"\n'
        'path = "/etc/contrail/contrail-kubernetes.conf"\n')
    result = CliRunner().invoke(cli, ["config", "check", "-c", str(path)])
    assert result.exit_code == 2
    said = [line.removeprefix(f"{path}: ") for line in result.output.splitlines()]
    assert said == [
        f"{northbound}: client.1 (neutron /etc/neutron/plugins/opencontrail/ContrailPlugin.ini):"
        " host neutron-9 is not in the controller inventory: add it to [[old.controllers]] or "
        "[[new.controllers]] with role northbound",
        f"{northbound}: client.2 (k8s /etc/contrail/contrail-kubernetes.conf): host new-ctl-1 "
        "(new.controllers.0) has no role northbound",
        f"new.controllers: no host with role northbound, although {northbound} lists a k8s "
        "client: new's kube-manager (a writer) would not be stopped before pre-sync; add its "
        "host with role northbound",
    ]
    # the same file given by --northbound; fixed, the config checks clean
    fixed = path.read_text().replace('roles = ["config", "control", "analytics", "database"]',
                                     'roles = ["config", "control", "analytics", "database", '
                                     '"northbound"]')
    path.write_text(fixed)
    elsewhere = workdir / "clients.toml"
    elsewhere.write_text(northbound.read_text().replace('"neutron-9"', '"old-rabbit"'))
    northbound.unlink()
    result = CliRunner().invoke(cli, ["config", "check", "-c", str(path),
                                      "--northbound", str(elsewhere)])
    assert result.exit_code == 0, result.output
