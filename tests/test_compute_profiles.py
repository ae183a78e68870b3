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
