"""`python -m demo.controller.kubemanager --conf FILE --state FILE`: the demo's kube-manager,
as far as ISSU sees it: a writer of new's that prepare-new must stop and finalize start.

It reads `[VNC] vnc_endpoint_ip` / `vnc_endpoint_port` from its contrail-kubernetes.conf when
it starts, as Contrail's kube-manager does, writes them and its start time to the state file
(JSON), and then waits: with no Kubernetes behind it there is nothing to translate. A
SIGHUP does not make it read the file again (it is ignored): a restart does. A missing conf
stops it (exit 1). Only the demo's v2 controller host has one (hostctl: the
other hosts have no kube-manager, and say so).
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import signal
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.controller.kubemanager")
    parser.add_argument("--conf", required=True, type=Path, help="contrail-kubernetes.conf")
    parser.add_argument("--state", required=True, type=Path, help="what it read (JSON)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the address is read once, at start
    conf = configparser.ConfigParser()
    if not conf.read(args.conf) or not conf.get("VNC", "vnc_endpoint_ip", fallback=""):
        print(f"{args.conf}: no [VNC] vnc_endpoint_ip", file=sys.stderr)
        return 1
    port = conf.get("VNC", "vnc_endpoint_port", fallback="8082")
    api = f"{conf.get('VNC', 'vnc_endpoint_ip')}:{port}"
    tmp = args.state.with_name(f".{args.state.name}.tmp")
    tmp.write_text(json.dumps({"api_server": api, "started": time.time()}) + "\n")
    os.replace(tmp, args.state)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
