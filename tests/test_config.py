"""Config loading: the good file loads; every broken one is explained by file and key, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from issu_tui.cli import cli
from issu_tui.config import ConfigError, IssuConfig, load_config
from tests.fuzz.configs import GOOD_TOML

# The fuzz tests' good configuration, with the old broker's password taken from the environment.
GOOD = "\n" + GOOD_TOML.replace('password = "secret-old"', 'password = "env:ISSU_TEST_RABBIT_PW"')

SECRET_ENV = "s3cr3t-from-env"
SECRET_FILE = "s3cr3t-from-file"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ISSU_TEST_RABBIT_PW", SECRET_ENV)
    (tmp_path / "rabbit.secret").write_text(SECRET_FILE + "\n")
    (tmp_path / "known_hosts").write_text("")
    key = tmp_path / "id_ed25519"
    key.write_text("key")
    key.chmod(0o600)
    return tmp_path


def write(workdir: Path, text: str, name: str = "issu.toml") -> Path:
    path = workdir / name
    path.write_text(textwrap.dedent(text))
    return path


def test_good_config_loads_with_secrets_resolved(workdir: Path) -> None:
    cfg = load_config(write(workdir, GOOD))
    assert isinstance(cfg, IssuConfig)
    assert cfg.old.cassandra.keyspace("config_db_uuid") == "v1_config_db_uuid"
    assert cfg.new.cassandra.keyspace("config_db_uuid") == "config_db_uuid"
    assert cfg.old.zookeeper.root == "/v1"
    assert cfg.old.rabbit.password.get_secret_value() == SECRET_ENV
    assert cfg.new.rabbit.password.get_secret_value() == SECRET_FILE
    assert cfg.state_dir == (workdir / "state").resolve()
    assert cfg.computes[0].ssh_key == (workdir / "id_ed25519").resolve()


def test_check_passes_and_show_masks_secrets(workdir: Path) -> None:
    path = write(workdir, GOOD)
    runner = CliRunner()
    ok = runner.invoke(cli, ["config", "check", "-c", str(path)])
    assert ok.exit_code == 0, ok.output
    shown = runner.invoke(cli, ["config", "show", "-c", str(path)])
    assert shown.exit_code == 0
    assert SECRET_ENV not in shown.output and SECRET_FILE not in shown.output
    assert "********" in shown.output
    as_json = runner.invoke(cli, ["config", "show", "--json", "-c", str(path)])
    assert SECRET_ENV not in as_json.output


def replace(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


# (description, broken text, the key the error must name, a word of the explanation)
BROKEN = [
    ("not toml", "old = [", "", "not valid TOML"),
    ("unknown top key", GOOD + "\nbogus = 1\n", "bogus", "unknown key"),
    ("unknown nested key", replace('prefix = "v1"\n[old.zookeeper]',
                                   'prefix = "v1"\ncolour = 1\n[old.zookeeper]'),
     "old.cassandra.colour", "unknown key"),
    ("missing new", GOOD.split("[new]")[0], "new", "required"),
    ("missing cassandra hosts", replace('hosts = ["127.0.0.12"]\n', ""),
     "new.cassandra.hosts", "required"),
    ("empty cassandra hosts", replace('hosts = ["127.0.0.12"]', "hosts = []"),
     "new.cassandra.hosts", "at least 1"),
    ("bad port", replace('hosts = ["127.0.0.22"]', 'hosts = ["127.0.0.22:70000"]'),
     "new.zookeeper.hosts", "invalid port"),
    ("port type", replace('hosts = ["127.0.0.12"]', 'hosts = ["127.0.0.12"]\nport = "x"'),
     "new.cassandra.port", "integer"),
    ("bad version", replace('version = "5.0.0"', 'version = "five"'),
     "new.version", "release number"),
    ("downgrade", replace('version = "5.0.0"', 'version = "3.2.0"'),
     "", "must be higher"),
    ("env secret unset", replace("env:ISSU_TEST_RABBIT_PW", "env:ISSU_NOT_SET_ANYWHERE"),
     "old.rabbit.password", "ISSU_NOT_SET_ANYWHERE"),
    ("file secret missing", replace("file:rabbit.secret", "file:/nonexistent/secret"),
     "new.rabbit.password", "cannot read"),
    ("bad url", replace('url = "http://127.0.0.101:8082"', 'url = "127.0.0.101:8082"'),
     "old.api_server.url", "URL"),
    ("bad control node ip", replace('address = "127.0.0.101"', 'address = "ctl"'),
     "old.control_nodes.0.address", "IP"),
    ("duplicate compute", GOOD + '\n[[computes]]\nname = "compute-1"\naddress = "127.0.0.51"\n'
     'ssh_key = "id_ed25519"\n', "", "duplicate names compute-1"),
    ("bad compute name", replace('name = "compute-1"', 'name = "compute 1; rm"'),
     "computes.0.name", "pattern"),
    ("hostile address", replace('address = "127.0.0.50"', 'address = "-oProxyCommand=x"'),
     "computes.0.address", "not a host"),
    ("bad ssh user", replace('profile = "demo"', 'profile = "demo"\nssh_user = "root;id"'),
     "computes.0.ssh_user", "pattern"),
    ("computes without ssh", replace('[ssh]\nknown_hosts = "known_hosts"', ""),
     "", "ssh: required"),
    ("shared db same prefix", replace('hosts = ["127.0.0.12"]', 'hosts = ["127.0.0.11"]\n'
                                      'prefix = "v1"'), "", "same prefix"),
    ("shared db other spelling", replace('hosts = ["127.0.0.12"]',
                                         'hosts = ["localhost"]').replace(
        'hosts = ["127.0.0.11"]', 'hosts = ["127.0.0.1:9042"]').replace(
        'prefix = "v1"\n[old.zookeeper]', '[old.zookeeper]'), "", "same prefix"),
    ("shared zookeeper same root", replace('hosts = ["127.0.0.22"]',
                                           'hosts = ["127.0.0.21:2181"]\nprefix = "v1"'),
     "", "same root"),
    # the forward and reverse run-sync queues and both api-servers' notifications would mix
    ("shared broker same vhost", replace('hosts = ["127.0.0.31"]\nvhost = "/v2"',
                                         'hosts = ["127.0.0.31:5672"]'),
     "", "[old.rabbit] and [new.rabbit] name the same RabbitMQ broker 127.0.0.31 and the "
         "same vhost '/'"),
    ("shared broker same named vhost",
     replace('password = "env:', 'vhost = "/v2"\npassword = "env:'),
     "", "same vhost '/v2'"),
    ("bad prefix", replace('prefix = "v1"\n[old.zookeeper]', 'prefix = "v-1"\n[old.zookeeper]'),
     "old.cassandra.prefix", "letters"),
    ("metrics off loopback", GOOD + '\n[sync]\nmetrics_listen = "0.0.0.0:9109"\n',
     "sync.metrics_listen", "loopback"),
    ("metrics port out of range", GOOD + '\n[sync]\nmetrics_listen = "127.0.0.1:99999"\n',
     "sync.metrics_listen", "port 0-65535"),
    ("zero concurrency", GOOD + "\n[sync]\nconcurrency = 0\n", "sync.concurrency",
     "greater than or equal"),
    ("batch parallel negative", GOOD + "\n[batch]\nparallel = -1\n", "batch.parallel",
     "greater than or equal"),
    ("asn out of range", replace('cluster_id = "v1"', 'cluster_id = "v1"\nasn = 0'),
     "old.asn", "greater than"),
]


@pytest.mark.parametrize(("name", "text", "key", "words"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_config_names_file_and_key(workdir: Path, name: str, text: str, key: str,
                                          words: str) -> None:
    path = write(workdir, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert str(path) in message
    if key:
        assert f"{key}:" in message, message
    assert words in message, message
    result = CliRunner().invoke(cli, ["config", "check", "-c", str(path)])
    assert result.exit_code == 2
    assert str(path) in result.output
    assert SECRET_ENV not in result.output and SECRET_FILE not in result.output


def test_one_broker_with_a_vhost_each_or_two_brokers_load(workdir: Path) -> None:
    """Old and new may share a broker host on their own vhosts, or a host on other ports."""
    other_port = replace('hosts = ["127.0.0.31"]\nvhost = "/v2"',
                         'hosts = ["127.0.0.31:5673"]')
    for text in (GOOD, other_port):
        cfg = load_config(write(workdir, text))
        assert cfg.new.rabbit.hosts[0].startswith("127.0.0.31")


def test_check_reports_missing_files_and_loose_key(workdir: Path) -> None:
    path = write(workdir, GOOD)
    (workdir / "id_ed25519").chmod(0o644)
    (workdir / "known_hosts").unlink()
    result = CliRunner().invoke(cli, ["config", "check", "-c", str(path)])
    assert result.exit_code == 2
    assert "ssh.known_hosts" in result.output
    assert "computes.0.ssh_key" in result.output and "chmod 600" in result.output


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["config", "check", "-c", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2
    assert "nope.toml: cannot read" in result.output


ORIGINAL_INI = """
[DEFAULTS]
old_rabbit_user = guest
old_rabbit_password = {old_pw}
old_rabbit_vhost = /
old_rabbit_port = 5672
old_rabbit_ha_mode = False
old_rabbit_q_name = vnc-config.issu-queue
old_rabbit_address_list = 10.0.0.1 10.0.0.2
new_rabbit_user = guest
new_rabbit_password = guest
new_rabbit_vhost = /v2
new_rabbit_address_list = 10.0.1.1
old_cassandra_address_list = 10.0.0.1:9042 10.0.0.2:9042
new_cassandra_address_list = 10.0.1.1:9042
old_zookeeper_address_list = 10.0.0.1:2181
new_zookeeper_address_list = 10.0.1.1:2181
odb_prefix = v1
ndb_prefix = v2
reset_config = False
new_api_info = {{"10.0.1.1": ["admin", "{api_pw}"]}}
"""


def test_original_issu_conf_is_accepted_and_converts(tmp_path: Path) -> None:
    ini = tmp_path / "issu.conf"
    ini.write_text(ORIGINAL_INI.format(old_pw="rabbitpw", api_pw="apipw"))
    # loaded directly (the legacy commands), a file without versions is refused, naming
    # both ways to give them: nothing assumes 4.1.0 -> 5.0.0 any more
    with pytest.raises(ConfigError) as refused:
        load_config(ini)
    for side in ("old", "new"):
        assert (f"{ini}: DEFAULTS.{side}_version: not set, and no DEFAULTS.{side}_analytics_url"
                in str(refused.value))
    with pytest.raises(ConfigError) as bad_url:
        load_config_text_with(ini, "old_version = 4.0.1\nnew_analytics_url = ftp://x\n")
    assert f"{ini}: DEFAULTS.new_analytics_url: " in str(bad_url.value)
    ini.write_text(ORIGINAL_INI.format(old_pw="rabbitpw", api_pw="apipw"))
    cfg = load_config_text_with(ini, "old_version = 4.0.1\nnew_version = 5.0.1\n")
    assert (cfg.old.version, cfg.new.version) == ("4.0.1", "5.0.1")
    assert cfg.source == "ini"
    assert cfg.old.cassandra.hosts == ["10.0.0.1", "10.0.0.2"]
    assert cfg.old.cassandra.keyspace("config_db_uuid") == "v1_config_db_uuid"
    assert cfg.new.rabbit.vhost == "/v2"
    assert cfg.old.rabbit.ha_mode is False
    assert cfg.sync.queue_name == "vnc-config.issu-queue"
    assert cfg.new.api_server is not None and cfg.new.api_server.user == "admin"
    ini.write_text(ORIGINAL_INI.format(old_pw="rabbitpw", api_pw="apipw"))
    out = tmp_path / "issu.toml"
    # the original file names no version: convert asks for them instead of assuming
    unsaid = CliRunner().invoke(cli, ["config", "convert", str(ini), "-o", str(out)])
    assert unsaid.exit_code == 2 and not out.exists()
    assert f"{ini}: DEFAULTS.old_version: not set: give --old-version X.Y.Z" in unsaid.output
    assert f"{ini}: DEFAULTS.new_version: not set: give --new-version X.Y.Z" in unsaid.output
    backwards = CliRunner().invoke(cli, ["config", "convert", str(ini), "-o", str(out),
                                         "--old-version", "5.0.1", "--new-version", "5.0.0"])
    assert backwards.exit_code == 2 and "5.0.0 must be higher than old version 5.0.1" in \
        backwards.output
    result = CliRunner().invoke(cli, ["config", "convert", str(ini), "-o", str(out),
                                      "--old-version", "3.2.1", "--new-version", "5.0.1"])
    assert result.exit_code == 0, result.output
    converted = load_config(out)
    assert (converted.old.version, converted.new.version) == ("3.2.1", "5.0.1")
    assert converted.old.cassandra.hosts == cfg.old.cassandra.hosts
    assert converted.new.rabbit.vhost == "/v2"
    assert converted.old.rabbit.password.get_secret_value() == "rabbitpw"
    assert os.stat(out).st_mode & 0o077 == 0
    again = CliRunner().invoke(cli, ["config", "convert", str(ini), "-o", str(out),
                                     "--old-version", "3.2.1", "--new-version", "5.0.1"])
    assert again.exit_code == 2 and "not overwritten" in again.output
    nowhere = tmp_path / "no-such-dir" / "issu.toml"
    missing = CliRunner().invoke(cli, ["config", "convert", str(ini), "-o", str(nowhere),
                                       "--old-version", "3.2.1", "--new-version", "5.0.1"])
    assert missing.exit_code == 2, missing.output
    assert f"{nowhere}: cannot create: No such file or directory" in missing.output


def load_config_text_with(ini: Path, extra: str) -> IssuConfig:
    """`ini` loaded with `extra` lines appended (the file is rewritten)."""
    ini.write_text(ini.read_text() + extra)
    return load_config(ini)


@pytest.mark.parametrize(("line", "key"), [
    ("old_rabbit_ha_mode = maybe", "DEFAULTS.old_rabbit_ha_mode"),
    ("old_cassandra_adress_list = 1.2.3.4", "DEFAULTS.old_cassandra_adress_list"),
    ('new_api_info = ["10.0.1.1"]', "DEFAULTS.new_api_info"),
    ("old_cassandra_address_list = 10.0.0.1:notaport", "DEFAULTS.old_cassandra_address_list"),
    ("new_cassandra_address_list = 10.0.1.1:9042 10.0.1.2:9160",
     "DEFAULTS.new_cassandra_address_list"),
])
def test_original_issu_conf_errors_name_the_option(tmp_path: Path, line: str, key: str) -> None:
    ini = tmp_path / "issu.conf"
    text = ORIGINAL_INI.format(old_pw="x", api_pw="y")
    option = line.split(" = ")[0]
    lines = [ln for ln in text.splitlines() if not ln.startswith(option + " ")]
    ini.write_text("\n".join([*lines, line]) + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(ini)
    assert f"{key}:" in str(caught.value)
    assert str(ini) in str(caught.value)


def test_generate_from_api_server_configs(tmp_path: Path) -> None:
    old = tmp_path / "old-contrail-api.conf"
    new = tmp_path / "new-contrail-api.conf"
    old.write_text("[DEFAULTS]\nlisten_ip_addr = 10.0.0.1\ncassandra_server_list = "
                   "10.0.0.1:9160 10.0.0.2:9160\nzk_server_ip = 10.0.0.1:2181\n"
                   "rabbit_server = 10.0.0.1\nrabbit_vhost = /\ncluster_id = v1\n")
    new.write_text("[DEFAULTS]\nlisten_ip_addr = 10.0.1.1\ncassandra_server_list = "
                   "10.0.1.1:9042\nzk_server_ip = 10.0.1.1:2181\nrabbit_server = 10.0.1.1\n"
                   "rabbit_vhost = /v2\ncluster_id = v2\n")
    out = tmp_path / "issu.toml"
    result = CliRunner().invoke(cli, [
        "config", "generate", "--old-api-conf", str(old), "--new-api-conf", str(new),
        "--old-version", "4.1.0", "--new-version", "5.0.0", "-o", str(out),
        "--state-dir", str(tmp_path / "state")])
    assert result.exit_code == 0, result.output
    os.environ["ISSU_OLD_RABBIT_PASSWORD"] = "a"
    os.environ["ISSU_NEW_RABBIT_PASSWORD"] = "b"
    try:
        cfg = load_config(out)
    finally:
        del os.environ["ISSU_OLD_RABBIT_PASSWORD"], os.environ["ISSU_NEW_RABBIT_PASSWORD"]
    assert cfg.old.cassandra.port == 9042  # Thrift 9160 mapped to CQL
    assert cfg.old.cassandra.prefix == "v1" and cfg.new.cassandra.prefix == "v2"
    assert cfg.new.rabbit.vhost == "/v2"
    assert cfg.new.api_server is not None
    assert cfg.new.api_server.url == "http://10.0.1.1:8082"


def test_generate_lists_the_controller_hosts_with_ssh_key(tmp_path: Path) -> None:
    old = tmp_path / "old-contrail-api.conf"
    new = tmp_path / "new-contrail-api.conf"
    old.write_text("[DEFAULTS]\nlisten_ip_addr = 10.0.0.1\ncassandra_server_list = "
                   "10.0.0.1:9042 10.0.0.2:9042\nzk_server_ip = 10.0.0.1:2181\n"
                   "rabbit_server = 10.0.0.1\n")
    new.write_text("[DEFAULTS]\nlisten_ip_addr = 10.0.1.1\ncassandra_server_list = "
                   "10.0.1.1:9042\nzk_server_ip = 10.0.1.1:2181\nrabbit_server = 10.0.1.1\n")
    key = tmp_path / "id_ed25519"
    key.write_text("not read by generate\n")
    out = tmp_path / "issu.toml"
    result = CliRunner().invoke(cli, [
        "config", "generate", "--old-api-conf", str(old), "--new-api-conf", str(new),
        "--old-version", "4.1.0", "--new-version", "5.0.0", "-o", str(out),
        "--state-dir", str(tmp_path / "state"), "--ssh-key", str(key),
        "--controller-profile", "docker"])
    assert result.exit_code == 0, result.output
    os.environ["ISSU_OLD_RABBIT_PASSWORD"] = "a"
    os.environ["ISSU_NEW_RABBIT_PASSWORD"] = "b"
    try:
        cfg = load_config(out)
    finally:
        del os.environ["ISSU_OLD_RABBIT_PASSWORD"], os.environ["ISSU_NEW_RABBIT_PASSWORD"]
    assert [(h.name, h.roles, h.profile) for h in cfg.old.controllers] == [
        ("old-10.0.0.1", ["config", "database"], "docker"),
        ("old-10.0.0.2", ["database"], "docker")]
    assert [h.address for h in cfg.new.controllers] == ["10.0.1.1"]
    assert cfg.ssh is not None and cfg.ssh.known_hosts == tmp_path / "known_hosts"
    # what the confs cannot say is named by config check
    check = CliRunner().invoke(cli, ["config", "check", "-c", str(out)],
                               env={"ISSU_OLD_RABBIT_PASSWORD": "a",
                                    "ISSU_NEW_RABBIT_PASSWORD": "b"})
    assert check.exit_code == 2
    assert "old.controllers: no host with role control" in check.output
    assert "new.controllers: no host with role analytics" in check.output


def test_generate_names_missing_key(tmp_path: Path) -> None:
    old = tmp_path / "a.conf"
    old.write_text("[DEFAULTS]\nzk_server_ip = 1.2.3.4\n")
    result = CliRunner().invoke(cli, [
        "config", "generate", "--old-api-conf", str(old), "--new-api-conf", str(old),
        "--old-version", "4.1.0", "--new-version", "5.0.0"])
    assert result.exit_code == 2
    assert "DEFAULTS.cassandra_server_list: required key is missing" in result.output


def test_toml_writer_round_trips_hostile_strings() -> None:
    import tomllib

    from issu_tui.config import to_toml

    data = {"old": {"note": 'line\nbreak "quoted" back\\slash\ttab é',
                    "hosts": ['a"b', "c\\d"], "port": 9042, "ssl": False},
            "computes": [{"name": "c1", "ssh_key": "/k\n"}]}
    assert tomllib.loads(to_toml(data)) == data


def _unreachable_config(workdir: Path) -> Path:
    """GOOD with both Cassandra clusters where nothing listens (port 1)."""
    return write(workdir, GOOD.replace('hosts = ["127.0.0.11"]', 'hosts = ["127.0.0.11"]\nport = 1')
                 .replace('hosts = ["127.0.0.12"]', 'hosts = ["127.0.0.12"]\nport = 1'))


def test_an_unreachable_cassandra_is_one_line_not_a_traceback(workdir: Path) -> None:
    """The driver logs a traceback when it cannot connect; the command says it in one line
    of its own and exits 1 (-v keeps the driver's traceback)."""
    config = _unreachable_config(workdir)
    issu = Path(sys.executable).parent / "issu"
    run = subprocess.run([str(issu), "sync", "verify", "-c", str(config)], cwd=workdir,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    assert "error: cannot connect to the old Cassandra at 127.0.0.11:1" in run.stderr
    assert "Traceback" not in run.stderr
    # the driver's own lines keep the exception's text (its message ends in ':')
    assert not [line for line in run.stderr.splitlines() if line.rstrip().endswith(":")]


@pytest.mark.parametrize(("options", "named"), [
    (["--old_cassandra_address_list", "127.0.0.1:x"], ["--old_cassandra_address_list"]),
    (["--new_cassandra_address_list", "127.0.0.9:1,127.0.0.8:2"],
     ["--new_cassandra_address_list"]),
    (["--old_cassandra_use_ssl", "maybe", "--ndb_prefix", "../x"],
     ["--old_cassandra_use_ssl", "--ndb_prefix"]),
])
def test_original_command_line_options_are_checked_like_the_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str],
        named: list[str]) -> None:
    """Checked before anything connects (nothing listens on the file's port 1: a
    connection attempt would exit 1, not 2)."""
    from issu_tui.sync_cli import legacy_pre_sync

    ini = tmp_path / "issu.conf"
    ini.write_text(ORIGINAL_INI.format(old_pw="x", api_pw="y")
                   .replace("10.0.0.", "127.0.0.").replace("10.0.1.1", "127.0.1.1")
                   .replace(":9042", ":1") + "old_version = 4.1.0\nnew_version = 5.0.0\n")
    with pytest.raises(SystemExit) as caught:
        legacy_pre_sync(["-c", str(ini), *options])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    for option in named:
        assert f"contrail-issu-pre-sync: {option}: " in err


@pytest.mark.parametrize(("args", "message"), [
    (["pre", "--keyspace", "nosuch"], "keyspace(s) not registered: nosuch"),
    (["post", "--keyspace", "nosuch"], "keyspace(s) not registered: nosuch"),
    (["verify", "--keyspace", "nosuch"], "keyspace(s) not registered: nosuch"),
    (["translate", "--dry-run", "-t", "config_db_uuid.nosuch"],
     "config_db_uuid.nosuch is not a registered table"),
    (["translate", "--dry-run", "-t", "a.b.c"], "'a.b.c' is not keyspace.table"),
])
def test_what_the_config_alone_tells_is_refused_before_connecting(
        workdir: Path, args: list[str], message: str) -> None:
    """Exit 2 with the reason; a connection attempt (nothing listens) would exit 1."""
    result = CliRunner().invoke(cli, ["sync", *args, "-c", str(_unreachable_config(workdir))])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_compute_status_refuses_a_name_not_in_the_inventory(workdir: Path) -> None:
    from issu_tui.journal import Journal

    config = write(workdir, GOOD)
    Journal.open(workdir / "state").close()
    known = CliRunner().invoke(cli, ["compute", "status", "-c", str(config), "compute-1"])
    assert known.exit_code == 0, known.output
    assert known.output.startswith("compute-1 ")
    typo = CliRunner().invoke(cli, ["compute", "status", "-c", str(config), "compute-1",
                                    "compute-99"])
    assert typo.exit_code == 2, typo.output
    assert "not in the inventory ([[computes]]): compute-99" in typo.output


def test_an_unreachable_zookeeper_is_said_once(workdir: Path) -> None:
    """kazoo warns "Connection dropped" a dozen times a second while it retries; zk-sync
    reports the failure in one line of its own (nothing listens on the config's ZooKeeper
    addresses; the connection attempt times out after 15 s)."""
    config = write(workdir, GOOD)
    issu = Path(sys.executable).parent / "issu"
    run = subprocess.run([str(issu), "sync", "zk", "-c", str(config)], cwd=workdir,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    assert run.stderr.strip().splitlines() == [
        "zk-sync failed: KazooTimeoutError: Connection time-out"]


def test_an_orchestrator_command_names_a_state_dir_it_cannot_use(workdir: Path) -> None:
    (workdir / "state").write_text("a file where the journal's directory should be")
    config = write(workdir, GOOD)
    result = CliRunner().invoke(cli, ["compute", "upgrade", "-c", str(config), "compute-1",
                                      "--no-wait"])
    assert result.exit_code == 2, result.output
    assert f"{workdir / 'state'} is a file, not a directory" in result.output
