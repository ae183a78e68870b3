"""`issu config generate --from-api-servers` lists the northbound hosts the clusters tell
(issue 14 bullet 1): kube-manager and the vCenter plugin report their NodeStatus in their
host's config-node UVE, so each cluster's analytics-api names their hosts. A loopback
api-server and analytics-api per cluster (addresses of the test net) stand in for both."""

from __future__ import annotations

import http.server
import os
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from issu_tui.cli import cli
from tests.http_reply import send_json

NET = int(os.environ.get("ISSU_TEST_NET", "0"))


def _cluster(address: str, config_node: str, uves: dict[str, list[str]]
             ) -> dict[str, Any]:
    """The answers of one cluster's api-server (8082) and analytics-api (8081) by path."""
    gsc = "default-global-system-config"
    return {
        "/config-nodes": {"config-nodes": [{"config-node": {
            "fq_name": [gsc, config_node], "uuid": f"{config_node}-uuid",
            "config_node_ip_address": address}}]},
        "/analytics-nodes": {"analytics-nodes": [{"analytics-node": {
            "fq_name": [gsc, f"{config_node}-an"], "uuid": f"{config_node}-an-uuid",
            "analytics_node_ip_address": address}}]},
        "/database-nodes": {"database-nodes": []},
        "/bgp-routers": {"bgp-routers": []},
        "/analytics/uves/config-nodes": [{"name": n, "href": ""} for n in uves],
        **{f"/analytics/uves/config-node/{n}": {"NodeStatus": {"process_status": [
            {"module_id": m, "instance_id": "0", "state": "Functional"} for m in modules]}}
           for n, modules in uves.items()},
    }


def _serve(address: str, port: int, answers: dict[str, Any]) -> http.server.HTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            send_json(self, answers.get(path, {}), 200 if path in answers else 404)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((address, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def clusters() -> Iterator[tuple[str, str]]:
    if not NET:
        pytest.skip("needs ISSU_TEST_NET (loopback addresses of the test net)")
    old, new = f"127.{NET}.0.61", f"127.{NET}.0.62"
    old_answers = _cluster(old, "ctl-a", {"ctl-a": ["contrail-api", "contrail-schema"],
                                          "k8s-master-1": ["contrail-kube-manager"]})
    new_answers = _cluster(new, "ctl-b", {"ctl-b": ["contrail-api",
                                                    "contrail-vcenter-plugin"]})
    servers = [_serve(a, p, answers) for a, answers in ((old, old_answers),
                                                        (new, new_answers))
               for p in (8081, 8082)]
    try:
        yield old, new
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_generate_lists_the_hosts_running_kube_manager_or_the_vcenter_plugin(
        tmp_path: Path, clusters: tuple[str, str]) -> None:
    old, new = clusters
    confs = []
    for name, address in (("old", old), ("new", new)):
        conf = tmp_path / f"{name}-contrail-api.conf"
        conf.write_text(f"[DEFAULTS]\nlisten_ip_addr = {address}\ncassandra_server_list = "
                        f"{address}:9042\nzk_server_ip = {address}:2181\nrabbit_server = "
                        f"{address}\nrabbit_vhost = /{name}\ncluster_id = {name}\n")
        confs.append(conf)
    key = tmp_path / "id_ed25519"
    key.write_text("")
    out = tmp_path / "issu.toml"
    result = CliRunner().invoke(cli, [
        "config", "generate", "--old-api-conf", str(confs[0]), "--new-api-conf",
        str(confs[1]), "--old-version", "4.1.0", "--new-version", "5.0.0", "-o", str(out),
        "--state-dir", str(tmp_path / "state"), "--ssh-key", str(key), "--from-api-servers"])
    assert result.exit_code == 0, result.output
    data = tomllib.loads(out.read_text())
    roles = {side: {h["address"]: h["roles"] for h in data[side]["controllers"]}
             for side in ("old", "new")}
    # old: kube-manager on a host no node record names: listed by its host name
    assert roles["old"]["k8s-master-1"] == ["northbound"]
    assert "northbound" not in roles["old"][old]
    # new: the vCenter plugin beside the api-server: that host gets the role too
    assert "northbound" in roles["new"][new] and "config" in roles["new"][new]
    # neutron-server reports to no collector: the operator is told to add its hosts
    assert "neutron-server" in result.output
