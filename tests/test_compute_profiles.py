"""Command profiles: templates, overrides, quoting, and parsing what computes print."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from backends.compute import (
    BUILTIN_PROFILES,
    ComputeExecutor,
    ComputeTarget,
    ProfileError,
    build_profiles,
    cluster_target,
    parse_gap,
    parse_probe,
)
from demo.compute.layout import read_ini, set_ini

TARGET = ComputeTarget("cmp-1", "10.0.0.5", 22, "root", Path("/k"))
V2 = cluster_target("new", "5.0.0", ["10.1.0.1", "10.1.0.2:5270"], ["10.1.0.9"])


def _values(executor: ComputeExecutor | None = None) -> dict[str, str]:
    ex = executor or ComputeExecutor(Path("/nonexistent"), profiles={})
    return ex._values(TARGET, V2)


def test_builtin_profiles_render_every_step() -> None:
    profiles = build_profiles()
    assert set(profiles) == set(BUILTIN_PROFILES)
    for profile in profiles.values():
        for step in ("probe", "install", "point", "restart", "health"):
            assert profile.render(step, _values())


def test_list_variables_carry_contrail_default_ports() -> None:
    demo = build_profiles({"demo": {"host": "/opt/py -m demo.compute.host --world '/w d'"}})["demo"]
    argv = demo.render("point", _values())
    assert argv[:5] == ["/opt/py", "-m", "demo.compute.host", "--world", "/w d"]
    assert argv[5:] == ["configure", "--control-nodes", "10.1.0.1:5269 10.1.0.2:5270",
                        "--collectors", "10.1.0.9:8086", "--dns", "10.1.0.1:53 10.1.0.2:5270"]


def test_values_are_never_split_or_interpreted() -> None:
    evil = cluster_target("new", "5.0; rm -rf /", ["10.1.0.1"])
    ex = ComputeExecutor(Path("/x"))
    argv = build_profiles()["package-apt"].render("install", ex._values(TARGET, evil))
    assert "contrail-vrouter-agent=5.0; rm -rf /" in argv


def test_override_replaces_a_step_and_new_profile_extends_a_builtin() -> None:
    profiles = build_profiles({
        "package-apt": {"restart": "service contrail-vrouter-agent restart"},
        "esxi": {"base": "package-apt", "drain": "maint-enter {name}",
                 "undrain": "maint-exit {name}"},
    })
    assert profiles["package-apt"].render("restart", _values()) == [
        "service", "contrail-vrouter-agent", "restart"]
    assert profiles["esxi"].render("drain", _values()) == ["maint-enter", "cmp-1"]
    install = profiles["esxi"].render("install", _values())
    assert install[:2] == ["env", "DEBIAN_FRONTEND=noninteractive"]


@pytest.mark.parametrize("override, message", [
    ({"x": {"base": "demo", "probe": "echo {nope}"}}, "unknown variable {nope}"),
    ({"x": {"probe": "echo"}}, "required step"),
    ({"x": {"base": "windows"}}, "unknown profile 'windows'"),
    ({"demo": {"version": "1"}}, "reserved"),
    ({"demo": {"probe": "echo 'unclosed"}}, "No closing quotation"),
])
def test_bad_profiles_are_refused_with_the_reason(override: dict, message: str) -> None:
    with pytest.raises(ProfileError, match=message.replace("{", r"\{").replace("}", r"\}")):
        build_profiles(override)


def test_parse_probe_json_and_key_value() -> None:
    as_json = parse_probe('{"version": "5.0.0", "control_nodes": ["a:5269"], '
                          '"collectors": ["a:8086"], "agent_state": "connected"}')
    as_kv = parse_probe("version=5.0.0\ncontrol_nodes=a:5269\ncollectors=a:8086\n"
                        "agent_state=connected\n")
    assert as_json == as_kv
    assert as_json.points_at(cluster_target("new", "5.0.0", ["a"]))
    with pytest.raises(ValueError):
        parse_probe("hello")


def test_parse_gap() -> None:
    assert parse_gap('{"gap_ms": 412.5, "ongoing": false}') == 412.5
    assert parse_gap("gap 37 ms") == 37.0
    assert parse_gap("") is None


def test_point_script_rewrites_keys_and_keeps_everything_else(tmp_path: Path) -> None:
    conf = tmp_path / "contrail-vrouter-agent.conf"
    conf.write_text("# comment\n[DEFAULT]\ncollectors=1.1.1.1:8086\nlog_level=SYS_NOTICE\n\n"
                    "[CONTROL-NODE]\nservers = 1.1.1.1:5269\n")
    argv = build_profiles()["package-apt"].render("point", _values())
    argv[argv.index("/etc/contrail/contrail-vrouter-agent.conf")] = str(conf)
    subprocess.run(argv, check=True)
    ini = read_ini(conf)
    assert ini[("CONTROL-NODE", "servers")] == "10.1.0.1:5269 10.1.0.2:5270"
    assert ini[("DEFAULT", "collectors")] == "10.1.0.9:8086"
    assert ini[("DNS", "servers")] == "10.1.0.1:53 10.1.0.2:5270"
    assert ini[("DEFAULT", "log_level")] == "SYS_NOTICE"
    assert conf.read_text().startswith("# comment\n")


def test_demo_set_ini_keeps_comments(tmp_path: Path) -> None:
    conf = tmp_path / "a.conf"
    conf.write_text("[DEFAULT]\n# keep me\ncollectors=a\n\n[CONTROL-NODE]\nservers=x\n")
    report = set_ini(conf, [("CONTROL-NODE", "servers", "y:5269"), ("DNS", "servers", "y:53")])
    assert report[0] == "[CONTROL-NODE] servers: x -> y:5269"
    text = conf.read_text()
    assert "# keep me" in text and "servers=y:5269" in text and "[DNS]\nservers=y:53" in text


# Values that a sed program built from them would treat as syntax: delimiters, `&`, back
# references, flags (`w FILE`, `e`), and shell or awk escapes. Each must land in the file as is.
HOSTILE_VALUES = [
    "a|b", "x&y", "back\\slash \\1 \\n \\t", "x|w {canary}", "x|e touch {canary}", "\\",
    "$(touch {canary})", "`touch {canary}`", "'\"", "a=b", "-n", " spaced ", "s/a/b/g;p",
    "10.0.0.1,10.0.0.2",
]


def _script_argv(profile: str, step: str) -> tuple[str, str]:
    """The (script, $0) of a built-in step that is `sh -c SCRIPT NAME FILE ...`."""
    argv = build_profiles()[profile].render(step, _values())
    assert argv[:2] == ["sh", "-c"]
    return argv[2], argv[3]


ENV_TEXT = ("# managed by the installer\nCONTRAIL_VERSION=4.1.0\nCONTROL_NODES=10.0.0.1\n"
            "CONTROL_NODES_EXTRA=keep\nANALYTICS_NODES=10.0.0.1\nLOG_LEVEL=SYS_NOTICE\n")


@pytest.mark.parametrize("raw", HOSTILE_VALUES)
def test_env_writer_stores_hostile_values_literally(tmp_path: Path, raw: str) -> None:
    canary = tmp_path / "canary"
    value = raw.format(canary=canary)
    env = tmp_path / "common_vrouter.env"
    env.write_text(ENV_TEXT)
    env.chmod(0o640)
    script, name = _script_argv("container", "point")
    subprocess.run(["sh", "-c", script, name, str(env), "CONTROL_NODES", value,
                    "DNS_NODES", value], check=True, capture_output=True)
    expected = ENV_TEXT.replace("CONTROL_NODES=10.0.0.1\n", f"CONTROL_NODES={value}\n")
    assert env.read_text() == expected + f"DNS_NODES={value}\n"
    assert env.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["common_vrouter.env"]  # no w FILE


INI_TEXT = ("# agent config\n[DEFAULT]\ncollectors = 10.0.0.1:8086\nlog_level=SYS_NOTICE\n\n"
            "[CONTROL-NODE]\nservers=10.0.0.1:5269\n")


@pytest.mark.parametrize("raw", HOSTILE_VALUES)
def test_ini_writer_stores_hostile_values_literally(tmp_path: Path, raw: str) -> None:
    canary = tmp_path / "canary"
    value = raw.format(canary=canary)
    conf = tmp_path / "agent.conf"
    conf.write_text(INI_TEXT)
    conf.chmod(0o640)
    script, name = _script_argv("package-apt", "point")
    subprocess.run(["sh", "-c", script, name, str(conf), "CONTROL-NODE", "servers", value,
                    "DNS", "servers", value], check=True, capture_output=True)
    expected = INI_TEXT.replace("servers=10.0.0.1:5269\n", f"servers={value}\n")
    assert conf.read_text() == expected + f"[DNS]\nservers={value}\n"
    assert conf.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.conf"]


@pytest.mark.parametrize("profile, where, args", [
    ("container", "common_vrouter.env", ["CONTROL_NODES", "a\ne touch {canary}\n#",
                                         "DNS_NODES", "fine"]),
    ("container", "common_vrouter.env", ["DNS_NODES", "fine", "CONTROL_NODES", "a\rb"]),
    ("package-apt", "agent.conf", ["DEFAULT", "collectors", "fine",
                                   "CONTROL-NODE", "servers", "x\n[DEFAULT]\nevil=1"]),
])
def test_line_breaks_in_values_are_refused_and_change_nothing(
        tmp_path: Path, profile: str, where: str, args: list[str]) -> None:
    canary = tmp_path / "canary"
    path = tmp_path / where
    original = ENV_TEXT if profile == "container" else INI_TEXT
    path.write_text(original)
    script, name = _script_argv(profile, "point")
    result = subprocess.run(["sh", "-c", script, name, str(path),
                             *(a.format(canary=canary) for a in args)],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert str(path) in result.stderr and "line break" in result.stderr
    assert path.read_text() == original  # not even the valid pairs before the bad one
    assert sorted(p.name for p in tmp_path.iterdir()) == [where]


def test_demo_set_ini_refuses_line_breaks(tmp_path: Path) -> None:
    conf = tmp_path / "a.conf"
    conf.write_text(INI_TEXT)
    with pytest.raises(ValueError, match="line break"):
        set_ini(conf, [("DNS", "servers", "ok"), ("CONTROL-NODE", "servers", "x\n[DEFAULT]")])
    assert conf.read_text() == INI_TEXT


def test_container_profile_names_the_engine_and_per_compute_paths() -> None:
    profiles = build_profiles({"container": {
        "docker": "/opt/py -m demo.containers.docker",
        "compose_file": "/w/{name}/etc/contrail/vrouter/docker-compose.yaml",
        "env_file": "/w/{name}/etc/contrail/common_vrouter.env",
        "introspect": "{address}:8085"}})
    compose = ["/opt/py", "-m", "demo.containers.docker", "compose", "--env-file",
               "/w/cmp-1/etc/contrail/common_vrouter.env",
               "-f", "/w/cmp-1/etc/contrail/vrouter/docker-compose.yaml"]
    container = profiles["container"]
    assert container.render("restart", _values()) == [*compose, "up", "-d"]
    assert container.render("stop", _values()) == [*compose, "down"]
    assert container.render("install", _values()) == ["env", "CONTRAIL_VERSION=5.0.0",
                                                      *compose, "pull"]
    probe = container.render("probe", _values())
    assert probe[3:] == ["probe", "/w/cmp-1/etc/contrail/common_vrouter.env", "10.0.0.5:8085",
                         *compose]
    # the built-in defaults are a Contrail 5.x compute's
    assert build_profiles()["container"].render("restart", _values()) == [
        "docker", "compose", "--env-file", "/etc/contrail/common_vrouter.env", "-f",
        "/etc/contrail/vrouter/docker-compose.yaml", "up", "-d"]


def test_a_variable_naming_an_unknown_value_is_refused_with_its_name() -> None:
    with pytest.raises(ProfileError, match=r"variable compose_file: unknown variable \{nme\}"):
        build_profiles({"container": {"compose_file": "/w/{nme}/dc.yaml"}})
