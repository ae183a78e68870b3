"""The analytics poller against real HTTP servers answering in the analytics-api's shape."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from backends.analytics import AnalyticsPoller

NET = os.environ.get("ISSU_TEST_NET", "36")
OLD_CTL, NEW_CTL = f"127.{NET}.0.101", f"127.{NET}.0.102"


def build_info(version: str) -> str:
    return json.dumps({"build-info": [{"build-version": version, "build-id": "1"}]})


def uve(version: str, ctl: str, up: bool = True, state: str = "Functional") -> dict[str, Any]:
    return {
        "VrouterAgent": {"control_ip": "10.0.0.1", "build_info": build_info(version),
                         "xmpp_peer_list": [{"ip": ctl, "status": up, "primary": True}]},
        "NodeStatus": {"process_status": [{"module_id": "contrail-vrouter-agent",
                                           "state": state}]},
    }


def alarm(kind: str, severity: int) -> dict[str, Any]:
    return {"UVEAlarms": {"alarms": [{"type": kind, "severity": severity, "ack": False,
                                      "timestamp": 1_767_225_600_000_000,
                                      "description": f"{kind} raised"}]}}


OLD = {
    "vrouters": {"cmp-1": uve("4.1.0", OLD_CTL), "cmp-2": uve("4.1.0", OLD_CTL),
                 "cmp-3": {"UVEAlarms": alarm("node-status", 0)["UVEAlarms"]},
                 "cmp-5": uve("4.1.0", OLD_CTL, up=False)},
    "control": ["ctl-old"],
    "alarms": {"vrouter": [{"name": "cmp-3", "value": alarm("node-status", 0)}]},
    "bulk": True,
}
NEW = {
    "vrouters": {"cmp-3": uve("5.0.0", NEW_CTL), "cmp-4": uve("5.0.0", NEW_CTL,
                                                                state="Non-Functional"),
                 "cmp-5": uve("5.0.0", NEW_CTL, up=False)},
    "control": ["ctl-new"],
    "alarms": {"vrouter": [{"name": "cmp-4", "value": alarm("process-status", 1)}]},
    "bulk": False,  # answers vrouter/* with 404: the poller asks one by one
}


def serve(data: dict[str, Any], host: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            body: Any = None
            if path == "/analytics/uves/vrouters":
                body = [{"name": n, "href": f"http://{host}/x/{n}"} for n in data["vrouters"]]
            elif path == "/analytics/uves/vrouter/*":
                if data["bulk"]:
                    body = {"value": [{"name": n, "value": v}
                                      for n, v in data["vrouters"].items()]}
            elif path.startswith("/analytics/uves/vrouter/"):
                body = data["vrouters"].get(path.rsplit("/", 1)[1], {})
            elif path == "/analytics/uves/control-nodes":
                body = [{"name": n, "href": ""} for n in data["control"]]
            elif path == "/analytics/alarms":
                body = data["alarms"]
            payload = json.dumps(body).encode()
            self.send_response(404 if body is None else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer((host, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def clusters() -> Iterator[dict[str, str]]:
    old = serve(OLD, f"127.{NET}.0.201")
    new = serve(NEW, f"127.{NET}.0.202")
    yield {"old": f"http://127.{NET}.0.201:{old.server_port}",
           "new": f"http://127.{NET}.0.202:{new.server_port}"}
    for server in (old, new):
        server.shutdown()
        server.server_close()


def test_consolidated_view_of_both_clusters(clusters: dict[str, str]) -> None:
    with AnalyticsPoller(clusters, {"old": {OLD_CTL}, "new": {NEW_CTL}}) as poller:
        snap = poller.poll()
    assert all(c.ok for c in snap.clusters.values())
    assert set(snap.clusters["old"].vrouters) == {"cmp-1", "cmp-2", "cmp-3", "cmp-5"}
    assert snap.clusters["new"].control_nodes == ("ctl-new",)
    where = {n: (r.reports_to, r.seen_in, r.version) for n, r in snap.computes.items()}
    assert where == {
        "cmp-1": ("old", ("old",), "4.1.0"),
        "cmp-2": ("old", ("old",), "4.1.0"),
        # moved: the old analytics still lists it (down), its XMPP session is with new
        "cmp-3": ("new", ("old", "new"), "5.0.0"),
        "cmp-4": ("new", ("new",), "5.0.0"),
        # listed by both, no XMPP session up: nobody can say
        "cmp-5": ("both", ("old", "new"), "4.1.0"),
    }
    assert snap.clusters["old"].vrouters["cmp-3"].agent_state == "down"
    assert snap.computes["cmp-4"].agent_state == "Non-Functional"
    assert [(a.cluster, a.name, a.type, a.severity) for a in snap.alarms] == [
        ("old", "cmp-3", "node-status", 0), ("new", "cmp-4", "process-status", 1)]
    assert snap.alarms[0].timestamp == 1_767_225_600.0


def test_the_alarm_a_moved_compute_leaves_on_old_is_not_counted_critical(
        clusters: dict[str, str]) -> None:
    """Old raises node failure for every compute issu moved: 12 'critical' on the dashboard
    of a healthy upgrade (seen in `make demo`). Counted apart, and said why in the table."""
    from rich.console import Console

    from screens.widgets.panes import analytics_summary

    with AnalyticsPoller(clusters, {"old": {OLD_CTL}, "new": {NEW_CTL}}) as poller:
        snap = poller.poll()
    moved, on_new = snap.alarms  # cmp-3 reports to new; cmp-4's alarm is new's own
    assert snap.moved_away(moved) == "new" and snap.moved_away(on_new) == ""
    console = Console(width=120, record=True)
    console.print(analytics_summary(snap, None))
    summary = console.export_text()
    assert "alarms: 2 merged  1 left behind by moved computes" in summary
    assert "critical" not in summary
    # an alarm on the cluster a compute still reports to stays critical
    stay = replace(moved, cluster="new")
    assert snap.moved_away(stay) == ""
    console.print(analytics_summary(replace(snap, alarms=(stay, on_new)), None))
    assert "alarms: 2 merged  1 critical" in console.export_text()


def test_one_cluster_down_leaves_the_other_visible(clusters: dict[str, str]) -> None:
    endpoints = {"old": clusters["old"], "new": f"http://127.{NET}.0.203:9"}  # nothing there
    with AnalyticsPoller(endpoints, {"old": {OLD_CTL}, "new": {NEW_CTL}},
                         timeout_s=2) as poller:
        snap = poller.poll()
    assert snap.clusters["old"].ok
    assert not snap.clusters["new"].ok
    assert f"127.{NET}.0.203:9" in (snap.clusters["new"].error or "")
    assert {r.reports_to for r in snap.computes.values()} == {"old"}
