"""Versions of an original issu.conf read from the clusters' analytics-api, never assumed.

The analytics-api here is a small simulated opserver (Contrail's own process, answering its
documented UVE shapes); the demo world's real one is read in tests/test_controller_steps.py.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from issu_tui.cli import cli
from issu_tui.config import ConfigError, load_config
from tests.fuzz.configs import GOOD_INI
from tests.http_reply import send_json

# The original file: every option it knew, no version.
ORIGINAL = "".join(line + "\n" for line in GOOD_INI.splitlines()
                   if not line.startswith(("old_version", "new_version")))


def _build_info(version: str) -> str:
    return json.dumps({"build-info": [{"build-version": version, "build-id": f"{version}-7"}]})


class Opserver:
    """`nodes`: {"config-node/NAME" or "control-node/NAME": build-version or None}."""

    def __init__(self, nodes: dict[str, str | None]) -> None:
        self.nodes = nodes
        self.requests = 0
        opserver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                opserver.requests += 1
                path = self.path.split("?")[0].removeprefix("/analytics/uves/")
                body: Any = None
                for kind in ("config-node", "control-node"):
                    if path == f"{kind}s":
                        body = [{"name": n.split("/", 1)[1], "href": "x"}
                                for n in opserver.nodes if n.startswith(kind + "/")]
                    elif path.startswith(f"{kind}/") and path in opserver.nodes:
                        version = opserver.nodes[path]
                        status = {"build_info": _build_info(version)} if version else {}
                        body = {"NodeStatus": status} if kind == "config-node" else {
                            "BgpRouterState": status}
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                send_json(self, body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def clusters() -> Iterator[tuple[Opserver, Opserver]]:
    old = Opserver({"config-node/cfg-1": "4.1.0.0", "control-node/ctl-1": "4.1.0.0"})
    new = Opserver({"config-node/cfg-2": "5.0.1", "config-node/cfg-3": "5.0.1",
                    "control-node/ctl-2": "5.0.1"})
    yield old, new
    old.close()
    new.close()


def _ini(tmp_path: Path, extra: str) -> Path:
    ini = tmp_path / "issu.conf"
    ini.write_text(ORIGINAL + extra)
    return ini


def test_versions_are_read_from_each_clusters_build_info(
        tmp_path: Path, clusters: tuple[Opserver, Opserver]) -> None:
    old, new = clusters
    ini = _ini(tmp_path, f"old_analytics_url = {old.url}\nnew_analytics_url = {new.url}\n")
    config = load_config(ini)
    assert (config.old.version, config.new.version) == ("4.1.0", "5.0.1")
    assert config.new.analytics is not None and config.new.analytics.url == new.url
    out = tmp_path / "issu.toml"
    converted = CliRunner().invoke(cli, ["config", "convert", str(ini), "-o", str(out)])
    assert converted.exit_code == 0, converted.output
    again = load_config(out)
    assert (again.old.version, again.new.version) == ("4.1.0", "5.0.1")
    # a version the file sets wins over the cluster's (preflight then compares them)
    pinned = load_config(_ini(tmp_path, f"old_version = 4.1.1\nnew_analytics_url = {new.url}\n"))
    assert (pinned.old.version, pinned.new.version) == ("4.1.1", "5.0.1")


def test_versions_read_once_are_pinned_in_the_state_dir(
        tmp_path: Path, clusters: tuple[Opserver, Opserver]) -> None:
    """Review M3: every load of an INI without versions asked both analytics-apis for every
    node's UVE (every CLI command, the daemon's every start). Once the upgrade's state_dir
    exists, the releases read are kept there with the cluster they came from, and later
    loads ask only which nodes answer there (the two node listings)."""
    old, new = clusters
    state = tmp_path / "state"
    ini = _ini(tmp_path, f"old_analytics_url = {old.url}\nnew_analytics_url = {new.url}\n"
               f"state_dir = {state}\n")
    load_config(ini)  # no state_dir yet: nothing kept (a check creates nothing)
    assert not state.exists()
    state.mkdir()
    first = load_config(ini)
    asked = (old.requests, new.requests)
    assert asked[0] > 2 and asked[1] > 2
    for n in range(1, 4):
        again = load_config(ini)
        assert (again.old.version, again.new.version) == (first.old.version,
                                                          first.new.version) == ("4.1.0",
                                                                                 "5.0.1")
        # the config-nodes and control-nodes listings only, no node's UVE
        assert (old.requests, new.requests) == (asked[0] + 2 * n, asked[1] + 2 * n)
    pins = json.loads((state / "versions-read.json").read_text())
    assert pins["old"]["url"] == old.url and pins["new"]["version"] == "5.0.1"
    assert pins["new"]["identity"] == "config-node/cfg-2,config-node/cfg-3,control-node/ctl-2"
    # another analytics URL: that side is read again, not taken from the pin
    other = Opserver({"config-node/cfg-9": "5.0.2", "control-node/ctl-9": "5.0.2"})
    try:
        ini.write_text(ini.read_text().replace(new.url, other.url))
        assert load_config(ini).new.version == "5.0.2" and other.requests > 2
    finally:
        other.close()


def test_a_pin_is_not_applied_to_another_cluster_at_the_same_url(
        tmp_path: Path, clusters: tuple[Opserver, Opserver]) -> None:
    """Review 28: pins were keyed by URL only, so a cluster rebuilt (or another one) behind
    the same analytics URL was given the release read from the first. Now the pin holds
    only for the same nodes and database prefix at that URL."""
    old, new = clusters
    state = tmp_path / "state"
    state.mkdir()
    ini = _ini(tmp_path, f"old_analytics_url = {old.url}\nnew_analytics_url = {new.url}\n"
               f"state_dir = {state}\n")
    assert load_config(ini).old.version == "4.1.0"
    # another cluster answers at old's URL now (other nodes, another release)
    old.nodes = {"config-node/lab-cfg-1": "4.1.1", "control-node/lab-ctl-1": "4.1.1"}
    assert load_config(ini).old.version == "4.1.1"
    pins = json.loads((state / "versions-read.json").read_text())
    assert pins["old"]["version"] == "4.1.1"
    assert pins["old"]["identity"] == "config-node/lab-cfg-1,control-node/lab-ctl-1"
    # the same nodes under another database prefix: another cluster too, read again
    before = old.requests
    other_prefix = ini.read_text().replace("odb_prefix = ", "odb_prefix = lab")
    assert other_prefix != ini.read_text()
    ini.write_text(other_prefix)
    assert load_config(ini).old.version == "4.1.1" and old.requests > before + 2
    # unreachable: no pin is taken on trust, the load names the option
    old.close()
    with pytest.raises(ConfigError, match=r"DEFAULTS\.old_version: not set, and it could "
                       r"not be read from DEFAULTS\.old_analytics_url"):
        load_config(ini)


@pytest.mark.parametrize(("nodes", "expected"), [
    ({"config-node/cfg-2": "5.0.1", "control-node/ctl-2": "5.0.0"},
     "the nodes report different releases (config-node/cfg-2 5.0.1; control-node/ctl-2 5.0.0)"),
    ({"config-node/cfg-2": "5.0.1", "control-node/ctl-2": None},
     "no build_info build-version in the UVE of control-node/ctl-2"),
    ({"config-node/cfg-2": "master"},
     "config-node/cfg-2 reports build-version 'master', not a release number"),
    ({}, "the analytics-api lists no config or control node"),
])
def test_a_release_that_cannot_be_read_is_refused_naming_why(
        tmp_path: Path, nodes: dict[str, str | None], expected: str) -> None:
    new = Opserver(nodes)
    try:
        ini = _ini(tmp_path, f"old_version = 4.1.0\nnew_analytics_url = {new.url}\n")
        with pytest.raises(ConfigError) as refused:
            load_config(ini)
        assert (f"{ini}: DEFAULTS.new_version: not set, and it could not be read from "
                f"DEFAULTS.new_analytics_url: {new.url}: {expected}") in str(refused.value)
        out = tmp_path / "issu.toml"
        result = CliRunner().invoke(cli, ["config", "convert", str(ini), "-o", str(out)])
        assert result.exit_code == 2 and expected in result.output and not out.exists()
    finally:
        new.close()


def test_an_unreachable_analytics_is_refused_naming_it(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    ini = _ini(tmp_path, f"old_analytics_url = {url}\nnew_version = 5.0.0\n")
    with pytest.raises(ConfigError) as refused:
        load_config(ini)
    assert f"DEFAULTS.old_version: not set, and it could not be read from " \
           f"DEFAULTS.old_analytics_url: {url}: ConnectError" in str(refused.value)


def test_legacy_command_refuses_a_file_without_versions(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from issu_tui.sync_cli import legacy_pre_sync

    ini = _ini(tmp_path, "")
    with pytest.raises(SystemExit) as caught:
        legacy_pre_sync(["-c", str(ini)])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "DEFAULTS.old_version: not set, and no DEFAULTS.old_analytics_url" in err
    assert "DEFAULTS.new_version: not set, and no DEFAULTS.new_analytics_url" in err
