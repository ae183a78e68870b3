"""`python -m demo.controller.neutron --ini FILE --state FILE`: the demo's neutron-server, as
far as ISSU sees it.

Like the Contrail neutron plugin, it reads `[APISERVER] api_server_ip` / `api_server_port`
from its plugin ini when it starts (the plugin is loaded), and talks to that api-server
only: every `--interval` seconds it lists the virtual networks there
(`X-Contrail-Useragent: <host>:neutron-server`, as vnc_api clients send), and writes what
it reached to the state file (JSON: the api-server, requests answered, the last error).
A SIGHUP does not re-point it, as it does not re-point a real neutron-server (oslo reloads
its mutable options; the plugin's api-server connection is made once): it logs the address
the file now names and keeps the one it has. Restarting it is what takes the new file, and
what issu's profiles do by default. A missing or unreadable ini stops it (exit 1).
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from types import FrameType

import httpx

USERAGENT = f"{socket.gethostname()}:neutron-server"


def read_api_server(ini: Path) -> str:
    """`ip:port` of the api-server the plugin ini names; ValueError saying what is wrong."""
    parser = configparser.ConfigParser()
    try:
        if not parser.read(ini):
            raise ValueError(f"{ini}: cannot read")
    except configparser.Error as exc:
        raise ValueError(f"{ini}: {exc}") from None
    ip = parser.get("APISERVER", "api_server_ip", fallback="").strip()
    port = parser.get("APISERVER", "api_server_port", fallback="8082").strip()
    if not ip:
        raise ValueError(f"{ini}: no [APISERVER] api_server_ip")
    return f"{ip}:{port}"


def _write_state(path: Path, state: dict[str, object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(state) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.controller.neutron")
    parser.add_argument("--ini", required=True, type=Path, help="the Contrail plugin ini")
    parser.add_argument("--state", required=True, type=Path, help="what it reached (JSON)")
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    reread = False

    def on_hup(_signum: int, _frame: FrameType | None) -> None:
        nonlocal reread
        reread = True

    signal.signal(signal.SIGHUP, on_hup)
    try:
        api = read_api_server(args.ini)
    except ValueError as exc:
        print(f"neutron-server: {exc}", file=sys.stderr)
        return 1
    answered = hups = 0
    state: dict[str, object] = {"pid": os.getpid(), "api_server": api, "answered": answered,
                                "sighups": hups, "since": time.time(), "last_ok": None,
                                "last_error": None}
    print(f"neutron-server: contrail plugin talks to the api-server at {api}", flush=True)
    with httpx.Client(timeout=5.0, headers={"X-Contrail-Useragent": USERAGENT}) as client:
        while True:
            if reread:
                reread, hups = False, hups + 1
                state["sighups"] = hups
                try:
                    named = read_api_server(args.ini)
                except ValueError as exc:
                    named = str(exc)
                print(f"neutron-server: SIGHUP: configuration reloaded; the contrail plugin "
                      f"keeps the api-server at {api} (the file names {named}: restart "
                      "neutron-server to use it)", flush=True)
            try:
                answer = client.get(f"http://{api}/virtual-networks")
                answer.raise_for_status()
                answered += 1
                state.update(answered=answered, last_ok=time.time(), last_error=None)
            except httpx.HTTPError as exc:
                state["last_error"] = f"{type(exc).__name__}: {exc}"[:300]
            _write_state(args.state, state)
            time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
