#!/usr/bin/python3
"""The simulated contrail-vrouter-agent inside the demo's container image (Python standard
library only: it runs on the image's Debian python3, not in issu's venv).

Configured the container way, from the environment (`common_vrouter.env`): CONTROL_NODES,
ANALYTICS_NODES, DNS_NODES (comma-separated addresses), VROUTER_HOSTNAME, VROUTER_IP. Its
release is the image's (/etc/contrail/contrail-version). Every HEARTBEAT_S it reports to the
first analytics node that answers (`POST :8081/issu-demo/agent-report`, what the demo's
analytics-api takes in place of the sandesh session) and to each control node on its XMPP
port (`POST <node>:5269/issu-demo/agent-report`, the XMPP session), and it answers the
agent's introspect on VROUTER_IP:8085 (`Snh_AgentXmppConnectionStatusReq`: Established per
control node while that node accepts the reports). On SIGTERM (`docker stop`) it reports
itself stopped and exits.
"""

import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION_FILE = "/etc/contrail/contrail-version"


def csv(name):
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def with_port(address, port):
    return address if address.count(":") == 1 else f"{address}:{port}"


class Agent:
    def __init__(self):
        with open(VERSION_FILE) as fh:
            self.version = fh.read().strip()
        self.name = os.environ.get("VROUTER_HOSTNAME") or os.uname().nodename
        self.address = os.environ.get("VROUTER_IP", "127.0.0.1")
        self.control_nodes = [with_port(a, 5269) for a in csv("CONTROL_NODES")]
        self.collectors = [with_port(a, 8086) for a in csv("ANALYTICS_NODES")]
        self.dns = [with_port(a, 53) for a in csv("DNS_NODES")]
        self.api_port = int(os.environ.get("ANALYTICS_API_PORT", "8081"))
        self.heartbeat_s = float(os.environ.get("HEARTBEAT_S", "2"))
        self.connected_at = 0.0
        self.xmpp_at = {}  # control node -> when it last accepted a report
        self.collector = ""
        self.stopping = threading.Event()

    def log(self, message):
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} contrail-vrouter-agent {self.version}: "
              f"{message}", flush=True)

    def report(self, state):
        body = json.dumps({
            "name": self.name, "version": self.version, "control_ip": self.address,
            "control_nodes": self.control_nodes, "collectors": self.collectors,
            "dns_servers": self.dns, "process_state": state, "build_id": f"{self.version}-40",
            "vm_count": 2, "interface_count": 3, "vn_count": 1,
        }).encode()
        for node in self.control_nodes:
            try:
                self.post(f"http://{node}/issu-demo/agent-report", body)
                self.xmpp_at[node] = time.monotonic()
            except (urllib.error.URLError, OSError, ValueError):
                self.xmpp_at.pop(node, None)
        errors = []
        for collector in ([self.collector] if state != "PROCESS_STATE_RUNNING" and
                          self.collector else self.collectors):
            host = collector.rsplit(":", 1)[0]
            try:
                cluster = self.post(f"http://{host}:{self.api_port}/issu-demo/agent-report",
                                    body).get("cluster", "")
                if state == "PROCESS_STATE_RUNNING":
                    if not self.connected():
                        self.log(f"connected to {collector} (cluster {cluster})")
                    self.collector, self.connected_at = collector, time.monotonic()
                return
            except (urllib.error.URLError, OSError, ValueError) as exc:
                errors.append(f"{collector}: {exc}")
        if errors:
            self.log("no collector accepted the report: " + "; ".join(errors))

    @staticmethod
    def post(url, body):
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as resp:
            return json.loads(resp.read() or b"{}")

    def recent(self, at):
        return bool(at) and time.monotonic() - at < 3 * self.heartbeat_s + 5

    def connected(self):
        return self.recent(self.connected_at)

    def xmpp_established(self, node):
        return self.recent(self.xmpp_at.get(node, 0.0))

    def loop(self):
        self.log(f"started: control nodes {' '.join(self.control_nodes)}, collectors "
                 f"{' '.join(self.collectors)}")
        while not self.stopping.is_set():
            self.report("PROCESS_STATE_RUNNING")
            self.stopping.wait(self.heartbeat_s)


def introspect(agent):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if not self.path.startswith("/Snh_AgentXmppConnectionStatusReq"):
                self.send_error(404)
                return
            peers = "".join(
                f"<AgentXmppData><controller_ip>{node.rsplit(':', 1)[0]}</controller_ip>"
                f"<state>{'Established' if agent.xmpp_established(node) else 'Active'}"
                "</state></AgentXmppData>" for node in agent.control_nodes)
            body = (f"<?xml version=\"1.0\"?><AgentXmppConnectionStatus><peer>{peers}</peer>"
                    f"<version>{agent.version}</version></AgentXmppConnectionStatus>").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((agent.address, 8085), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main():
    agent = Agent()
    server = introspect(agent)

    def stop(signum, frame):
        agent.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    agent.loop()
    agent.report("PROCESS_STATE_STOPPED")
    agent.log("stopped")
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
