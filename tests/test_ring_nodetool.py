"""How the database hosts run nodetool: the config's `[ring] nodetool`, used by every ring
step (the phases' own ring steps of plan before pre-sync, `issu ring run`), `--nodetool`
overriding it for one run; `issu demo up --approach X` writes the ring's own nodetool there.

The ring steps run over the real sshd of the test network against simulated database hosts
(tests/fakebin/fakectl.py as systemctl, a stand-in nodetool that records its argv and prints
`nodetool status` with every node UN)."""

from __future__ import annotations

import json
import shutil
import socket
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from demo.services import Endpoints
from demo.services.ring import nodetool_path
from demo.world import World, WorldOptions
from issu_tui.cli import cli
from issu_tui.config import load_config
from issu_tui.journal import Journal
from issu_tui.orchestrator.phases import phase_marker
from tests.test_controller import FAKE, ssh  # noqa: F401

NODETOOL = '''#!/usr/bin/env python3
"""nodetool on a simulated ring: argv appended to $FAKE_LOG, `status`: $FAKE_RING all UN."""
import json, os, sys
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps([os.environ.get("ISSU_DEMO_HOST", ""), *sys.argv[1:]]) + "\\n")
if sys.argv[1:2] == ["status"]:
    print("Datacenter: dc1")
    print("--  Address  Load  Tokens  Owns (effective)  Host ID  Rack")
    for i, address in enumerate(os.environ["FAKE_RING"].split(",")):
        print(f"UN  {address}  104.1 KiB  16  100.0%  "
              f"00000000-0000-0000-0000-{i:012d}  rack1")
'''


def _closed_port() -> int:
    with socket.socket() as sock:  # bound, never listening: a connection is refused
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tools(tmp_path: Path) -> tuple[Path, Path]:
    """A bin dir with the fakes (systemctl...) and nodetool; the fakes' state dir."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("systemctl", "supervisorctl", "docker"):
        shutil.copy(FAKE, bin_dir / tool)
    (bin_dir / "nodetool").write_text(NODETOOL)
    for tool in bin_dir.iterdir():
        tool.chmod(stat.S_IRWXU)
    return bin_dir, tmp_path / "fake-state"


def _grow_config(tmp_path: Path, ep: Endpoints, nodetool: str) -> tuple[Path, list[str]]:
    """grow on a ring of one old node and one joining: old.cassandra is the first sshd
    address, new adds the second; both database hosts of the inventory (systemd through
    the fakes); Cassandra's CQL port closed (the factor change after the join fails)."""
    s = ep.ssh
    bin_dir, state = _tools(tmp_path)
    nodes = list(s.addresses[:2])
    for name in s.names[:2]:
        (state / name).mkdir(parents=True)
        (state / name / "state.json").write_text(json.dumps(
            {"systemd:contrail-database": {"running": name == s.names[0], "enabled": True}}))
    systemctl = f"env PATH={bin_dir}:/usr/bin:/bin FAKE_STATE={state} systemctl"

    def host(i: int) -> str:
        return (f'{{ name = "{s.names[i]}", address = "{nodes[i]}", roles = ["database"], '
                f'ssh_user = "{s.user}", ssh_key = "{s.key_path}", ssh_port = {s.port}, '
                f'profile = "site" }}')

    port = _closed_port()
    path = tmp_path / "issu.toml"
    path.write_text(f"""state_dir = "{tmp_path / 'state'}"
{nodetool}
[ssh]
known_hosts = "{s.known_hosts_path}"
connect_timeout_s = 10
[controller_profiles.site]
base = "systemd"
systemctl = "{systemctl}"
[old]
name = "old"
version = "4.1.0"
cassandra = {{ hosts = ["{nodes[0]}"], port = {port} }}
zookeeper = {{ hosts = ["{nodes[0]}:2181"] }}
rabbit = {{ hosts = ["{nodes[0]}"] }}
controllers = [{host(0)}]
[new]
name = "new"
version = "5.0.0"
cassandra = {{ hosts = ["{nodes[0]}", "{nodes[1]}"], port = {port}, prefix = "v2" }}
zookeeper = {{ hosts = ["{nodes[1]}:2181"], prefix = "v2" }}
rabbit = {{ hosts = ["{nodes[1]}"], vhost = "/v2" }}
controllers = [{host(1)}]
""")
    journal = Journal.open(tmp_path / "state")
    journal.set_phase("pair", status="done")
    journal.set_approach("grow")
    for name in ("plan", "preflight", "pair"):
        journal.mark_step(phase_marker(name))
    journal.close()
    return path, nodes


def _nodetool_command(tmp_path: Path, nodes: list[str], log: str) -> str:
    return (f"env FAKE_LOG={tmp_path / log} FAKE_RING={','.join(nodes)} "
            f"{tmp_path / 'bin' / 'nodetool'}")


def _calls(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.services
def test_the_phases_ring_steps_run_the_configured_nodetool_and_the_option_overrides_it(
        ssh: Endpoints, tmp_path: Path) -> None:  # noqa: F811
    """`[ring] nodetool` set, no --nodetool anywhere: `issu phase pre-sync` runs grow's
    join through it (the node started, every node seen UN by it, the step marked), and
    `issu ring run --nodetool X` runs X instead for that run. Before, the phases ran a plain
    `nodetool` (none on these hosts: "the ring's nodes could not be read", nothing joined)
    and the config had no such key (refused as unknown)."""
    s = ssh.ssh
    path, nodes = _grow_config(tmp_path, ssh, "")  # the command is written below
    configured = _nodetool_command(tmp_path, nodes, "configured.jsonl")
    text = path.read_text().replace(
        "\n[ssh]", f"\n[ring]\nnodetool = \"{configured}\"\n[ssh]", 1)
    path.write_text(text)

    phase = CliRunner().invoke(cli, ["phase", "pre-sync", "-c", str(path)])
    # the join ran; the factor change after it needs CQL, which is closed here
    assert phase.exit_code == 1, phase.output
    assert "could not be read" not in phase.output, phase.output
    assert "did not answer" in phase.output, phase.output
    journal = Journal.open(tmp_path / "state", read_only=True)
    try:
        assert f"ring.0.join.{nodes[1]}" in journal.steps_done()
        assert phase_marker("pre-sync") not in journal.steps_done()
    finally:
        journal.close()
    state = json.loads((tmp_path / "fake-state" / s.names[1] / "state.json").read_text())
    assert state["systemd:contrail-database"]["running"]  # the joining node started
    seen = _calls(tmp_path / "configured.jsonl")
    assert {host for host, *args in seen if args == ["status"]} == set(s.names[:2]), seen

    # --nodetool for one run: the other command runs, the configured one does not
    before = len(seen)
    other = _nodetool_command(tmp_path, nodes, "other.jsonl")
    run = CliRunner().invoke(cli, ["ring", "run", "-c", str(path), "--approach", "grow",
                                   "--when", "plan", "--nodetool", other])
    assert run.exit_code == 1 and "did not answer" in run.output, run.output
    assert _calls(tmp_path / "other.jsonl"), run.output
    assert len(_calls(tmp_path / "configured.jsonl")) == before


@pytest.mark.parametrize(("value", "why"), [
    ('""', "empty: give the command a database host runs nodetool with"),
    ("\"docker exec 'cassandra nodetool\"", "not a command line (No closing quotation)")])
def test_a_bad_ring_nodetool_is_refused_naming_file_and_key(
        tmp_path: Path, value: str, why: str) -> None:
    path = tmp_path / "issu.toml"
    path.write_text(f"""[ring]
nodetool = {value}
[old]
name = "old"
version = "4.1.0"
cassandra = {{ hosts = ["10.0.0.1"] }}
zookeeper = {{ hosts = ["10.0.0.1:2181"] }}
rabbit = {{ hosts = ["10.0.0.1"] }}
[new]
name = "new"
version = "5.0.0"
cassandra = {{ hosts = ["10.0.0.2"] }}
zookeeper = {{ hosts = ["10.0.0.2:2181"] }}
rabbit = {{ hosts = ["10.0.0.2"] }}
""")
    result = CliRunner().invoke(cli, ["config", "check", "-c", str(path)])
    assert result.exit_code == 2, result.output
    assert str(path) in result.output and f"ring.nodetool: {why}" in result.output, \
        result.output
    bad = CliRunner().invoke(cli, ["ring", "run", "-c", str(path), "--approach", "grow",
                                   "--when", "plan", "--nodetool", "'unclosed"])
    assert bad.exit_code == 2, bad.output


def test_the_demo_ring_worlds_config_names_the_rings_own_nodetool(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`issu demo up --approach rolling` writes `[ring] nodetool` = the ring's own wrapper,
    so `issu phase run-sync` runs the ring steps of plan without a --nodetool; a world with
    a Cassandra per side has none (the default, `nodetool`)."""
    for approach, expected in (("rolling", str(nodetool_path(tmp_path / "run"))),
                               (None, "nodetool")):
        world = World(WorldOptions(net=204, computes=1, run_dir=tmp_path / "run",
                                   config_path=tmp_path / "issu.toml", approach=approach))
        world.dir.mkdir(parents=True, exist_ok=True)
        monkeypatch.setattr(world, "hosts", lambda: {"127.204.1.1": "compute-1"})
        config = load_config(world.write_config(world.launcher(1).endpoints()))
        assert config.ring.nodetool == expected
