"""Start and stop a controller as a child process (used by `issu demo up` and the tests).

    spec_path = write_spec(run_dir / "controller-v1", spec_dict, secrets)
    proc = ControllerProcess(spec_path); proc.start(); proc.wait_ready(60); ...; proc.stop()
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from .spec import load_spec, write_secrets


class ControllerStartError(Exception):
    """The controller exited or did not answer in time; the message points at its log."""


def write_spec(directory: Path, spec: dict[str, Any], secrets: dict[str, str]) -> Path:
    """Write `spec.json` and the private `secrets.json` it names; return the spec path."""
    directory.mkdir(parents=True, exist_ok=True)
    secrets_path = directory / "secrets.json"
    write_secrets(secrets_path, secrets)
    body = dict(spec)
    body["secrets_file"] = str(secrets_path)
    body.setdefault("state_dir", str(directory / "state"))
    spec_path = directory / "spec.json"
    spec_path.write_text(json.dumps(body, indent=2))
    return spec_path


class ControllerProcess:
    def __init__(self, spec_path: Path, log_path: Path | None = None):
        self.spec_path = spec_path
        self.spec = load_spec(spec_path)
        self.log_path = log_path or spec_path.parent / "controller.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "demo.controller", "--spec", str(self.spec_path)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=str(Path(__file__).resolve().parents[2]), start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        finally:
            log.close()
        (self.spec_path.parent / "controller.pid").write_text(str(self.proc.pid))

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        url = self.spec.api_url + "/issu/status"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ControllerStartError(
                    f"controller {self.spec.cluster} exited with {self.proc.returncode}; "
                    f"see {self.log_path}")
            try:
                resp = httpx.get(url, timeout=2.0)
                # the answer must come from our process, not from a leftover on the address
                if resp.status_code == 200 and (
                        self.proc is None or resp.json().get("pid") == self.proc.pid):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.3)
        raise ControllerStartError(
            f"controller {self.spec.cluster} not ready at {url} after {timeout_s:.0f}s; "
            f"see {self.log_path}")

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
