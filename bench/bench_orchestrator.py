"""Orchestrator benchmark: N simulated computes over real sshd, parallelism P.

    .venv/bin/python bench/bench_orchestrator.py --net 37 --computes 1000 --parallel 50

Each compute is a directory on this machine reached over SSH (one OpenSSH sshd listens on
at most 16 loopback addresses, so the launcher runs several). The command profile is a
cheap shell version of a real one: probe reads the state files, install sleeps
`--work-s` (the package download and unpack a real compute spends) and writes the
version, point writes the control nodes, restart sleeps 0.2 s, health checks the files.

Measured:
- issu: the orchestrator's batch scheduler + ComputeExecutor + the real journal (SQLite,
  one transaction per transition and per command output), as `issu compute upgrade all`
  runs it. Per compute: the action's wall time (upgrading -> upgraded in the journal) and
  the time spent in the remote commands (sum of step durations); the difference is the
  orchestrator's own overhead (SSH connect, scheduling, journal writes).
- issu-before: the same with each action opening its own SSH connection (the code before
  the runner opened the connections of the computes next in line ahead), in the same run.
- baseline: an Ansible-like run (linear strategy, forks = P): each step runs on every host
  before the next step starts, over a new SSH connection per task and host.
- memory: the process RSS sampled every 0.5 s (start, peak, end).

Results are printed as JSON and, with --write, appended to docs/benchmarks-orchestrator.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backends.ssh import SshExecutor, SshTarget  # noqa: E402
from bench.machine import Machine, bench_services  # noqa: E402
from demo.services import Endpoints  # noqa: E402
from demo.services.launcher import Launcher  # noqa: E402
from issu_tui.config import IssuConfig  # noqa: E402
from issu_tui.journal import Journal  # noqa: E402
from issu_tui.orchestrator.computes import ComputeRunner  # noqa: E402
from issu_tui.orchestrator.context import Context  # noqa: E402

PROBE = ('d="$0/$1"; echo "version=$(cat "$d/version")"; '
         'echo "control_nodes=$(cat "$d/control_nodes")"; echo collectors=; '
         'echo agent_state=connected')
INSTALL = 'sleep "$2"; echo "$3" > "$0/$1/version"'
POINT = 'echo "$2" > "$0/$1/control_nodes"'
HEALTH = 'test "$(cat "$0/$1/version")" = "$2"'


def bench_profile(state_root: Path, work_s: float) -> dict[str, str]:
    root = str(state_root)

    def sh(script: str, *args: str) -> str:
        quoted = script.replace("{", "{{").replace("}", "}}").replace("'", "'\\''")
        return f"sh -c '{quoted}' {root} " + " ".join(args)

    return {
        "base": "demo",
        "probe": sh(PROBE, "{name}"),
        "drain": "",
        "stop": "",
        "install": sh(INSTALL, "{name}", f"{work_s:g}", "{version}"),
        "point": sh(POINT, "{name}", "{control_nodes}"),
        "restart": "sleep 0.2",
        "health": sh(HEALTH, "{name}", "{version}"),
        "gap": "",
        "undrain": "",
        "host": "true",
    }


class RssSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[int] = []
        self.times: list[float] = []
        self.stop = threading.Event()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append(self.rss())
            self.times.append(time.time())
            time.sleep(0.5)

    def by_progress(self, finished_at: list[float]) -> dict[str, float]:
        """RSS (MiB) when 25/50/75/100 % of the computes had finished: flat memory means
        these stay level however many computes went through."""
        ends = sorted(finished_at)
        out: dict[str, float] = {}
        for pct in (25, 50, 75, 100):
            when = ends[max(0, len(ends) * pct // 100 - 1)]
            rss = [r for t, r in zip(self.times, self.samples, strict=True) if t <= when + 0.5]
            out[f"{pct}%"] = round((rss[-1] if rss else self.samples[0]) / 2**20, 1)
        return out


class AnalyticsStub:
    """The health gate's evidence: each compute's vrouter UVE, made from its state files (the
    version its install wrote, the control node it points at), as a cluster's analytics-api
    would report it: the gate passes only on what the remote commands left behind."""

    def __init__(self, state_root: Path) -> None:
        import http.server

        root = state_root

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                prefix = "/analytics/uves/vrouter/"
                name = self.path.split("?", 1)[0][len(prefix):]
                host = root / name
                if not self.path.startswith(prefix) or "/" in name or not host.is_dir():
                    self.send_error(404)
                    return
                version = (host / "version").read_text().strip()
                control = (host / "control_nodes").read_text().strip().split(":")[0]
                build = json.dumps({"build-info": [{"build-version": version}]})
                body = json.dumps({"VrouterAgent": {
                    "build_info": build, "control_ip": "127.0.0.1",
                    "xmpp_peer_list": [{"ip": control, "status": True, "primary": True}]},
                    "NodeStatus": {"process_status": [{"module_id": "contrail-vrouter-agent",
                                                       "state": "Functional"}]}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def reset_hosts(state_root: Path, names: list[str], version: str, control: str) -> None:
    shutil.rmtree(state_root, ignore_errors=True)
    for name in names:
        d = state_root / name
        d.mkdir(parents=True)
        (d / "version").write_text(version + "\n")
        (d / "control_nodes").write_text(control + "\n")


def make_config(args: argparse.Namespace, endpoints: Any, state_root: Path,
                state_dir: Path, analytics_url: str) -> IssuConfig:
    ssh = endpoints.ssh
    names = list(ssh.names[:args.computes])
    addresses = list(ssh.addresses[:args.computes])

    def cluster(name: str, version: str, control: str) -> dict[str, Any]:
        return {"name": name, "version": version,
                "cassandra": {"hosts": ["127.0.0.1"], "prefix": name},
                "zookeeper": {"hosts": ["127.0.0.1"], "prefix": name},
                "rabbit": {"hosts": ["127.0.0.1"], "vhost": "/" if name == "old" else "/v2"},
                "analytics": {"url": analytics_url},
                "control_nodes": [{"name": f"{name}-control", "address": control}]}

    return IssuConfig.model_validate({
        "state_dir": str(state_dir),
        "old": cluster("old", "4.1.0", "127.0.0.101"),
        "new": cluster("new", "5.0.0", "127.0.0.102"),
        "batch": {"size": args.computes, "parallel": args.parallel, "canary": 1,
                  "max_failures": 0, "health_timeout_s": 60},
        "ssh": {"known_hosts": str(ssh.known_hosts_path), "connect_timeout_s": 30,
                "command_timeout_s": 600},
        "profiles": {"bench": bench_profile(state_root, args.work_s)},
        "computes": [{"name": n, "address": a, "ssh_user": ssh.user,
                      "ssh_key": str(ssh.key_path), "ssh_port": ssh.port, "profile": "bench"}
                     for n, a in zip(names, addresses, strict=True)],
    })


def run_issu(config: IssuConfig, args: argparse.Namespace,
             preconnect: bool = True) -> dict[str, Any]:
    """`preconnect` False: each compute's action opens its SSH connection itself (the code
    before connections were opened ahead for the computes next in line)."""
    shutil.rmtree(config.state_dir, ignore_errors=True)
    journal = Journal.open(config.state_dir)
    ctx = Context(config=config, config_path=Path("bench.toml"), journal=journal)
    runner = ComputeRunner(ctx)
    runner.preconnect = preconnect
    runner.register_inventory()
    sampler = RssSampler()
    sampler.start()
    began = time.monotonic()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    outcome = runner.run("upgrade", ["all"], batch_size=args.computes,
                         parallel=args.parallel)
    wall = time.monotonic() - began
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    sampler.stop.set()
    sampler.join()
    actions, steps, ends = [], [], []
    for row in journal.computes():
        history = journal.compute_history(row.name)
        start = next((h["at"] for h in history if h["to_state"] == "upgrading"), None)
        if start is None:  # not started: the run stopped (the failure says why)
            continue
        end = next(h["at"] for h in reversed(history) if h["to_state"] in ("upgraded",
                                                                             "failed"))
        actions.append(end - start)
        ends.append(end)
        steps.append(sum(o["duration_s"] or 0 for o in journal.command_output(row.name, 100)))
    journal.close()
    overhead = [a - s for a, s in zip(actions, steps, strict=True)]
    return {
        "ok": outcome.ok, "failed": len(outcome.failed),
        "not_started": len(outcome.not_started), "stopped_reason": outcome.stopped_reason,
        "wall_s": round(wall, 2),
        "cpu_s": round((cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime), 2),
        "action_mean_s": round(statistics.mean(actions), 3),
        "remote_steps_mean_s": round(statistics.mean(steps), 3),
        "overhead_mean_s": round(statistics.mean(overhead), 3),
        "overhead_p95_s": round(sorted(overhead)[int(len(overhead) * 0.95) - 1], 3),
        "overhead_pct_of_compute_work": round(100 * statistics.mean(overhead)
                                              / statistics.mean(steps), 2),
        "rss_mib": {"start": round(sampler.samples[0] / 2**20, 1),
                    "peak": round(max(sampler.samples) / 2**20, 1),
                    "end": round(sampler.samples[-1] / 2**20, 1),
                 "when_done": sampler.by_progress(ends)},
    }


def run_baseline(config: IssuConfig, args: argparse.Namespace) -> dict[str, Any]:
    """Ansible's linear strategy: task by task across all hosts (forks = parallel), a new
    SSH connection per task and host, a barrier between tasks."""
    import shlex

    from backends.compute import build_profiles

    assert config.ssh is not None
    profile = build_profiles(config.profiles)["bench"]
    ssh = SshExecutor(config.ssh.known_hosts, 30, 600)
    values_new = {"version": config.new.version, "control_nodes": "127.0.0.102:5269"}
    tasks = ["probe", "install", "point", "restart", "health", "probe"]
    began = time.monotonic()
    failures = 0
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        for task in tasks:
            def one(c: Any, task: str = task) -> bool:
                values = {**values_new, "name": c.name, "address": c.address,
                          "health_timeout_s": "60", "cluster": "new",
                          "collectors": "", "dns_servers": "", "control_nodes_csv": "",
                          "collectors_csv": "", "dns_servers_csv": ""}
                argv = profile.render(task, values)
                target = SshTarget(c.name, c.address, c.ssh_port, c.ssh_user, c.ssh_key)
                with ssh.connect(target) as session:
                    return bool(session.run(argv).ok)
            failures += sum(not ok for ok in pool.map(one, config.computes))
    wall = time.monotonic() - began
    del shlex
    return {"wall_s": round(wall, 2), "failed": failures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--net", type=int, default=int(os.environ.get("ISSU_TEST_NET", 37)))
    parser.add_argument("--computes", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=50)
    parser.add_argument("--work-s", type=float, default=2.0)
    parser.add_argument("--baseline-first", action="store_true",
                        help="run the baseline before issu (to see the effect of load drift)")
    parser.add_argument("--keep", action="store_true", help="leave the sshd instances up")
    parser.add_argument("--skip-baseline", action="store_true",
                        help="run issu only (profiling; the result has no baseline ratio)")
    parser.add_argument("--skip-before", action="store_true",
                        help="leave out issu with the connection opened in each action (the "
                             "code before connections were opened ahead)")
    parser.add_argument("--write", action="store_true",
                        help="append the result to docs/benchmarks-orchestrator.md")
    args = parser.parse_args()

    run_dir = ROOT / ".run" / f"bench-{args.net}"
    launcher = Launcher(args.net, "test", run_dir, ssh_hosts=args.computes)
    machine = Machine.now()
    print(f"machine: {machine.line()}", flush=True)
    began = time.monotonic()
    with bench_services(launcher, ["ssh"], keep=args.keep) as endpoints:
        result = measure(args, launcher, endpoints, run_dir, time.monotonic() - began)
    result["machine"] = machine.finish().line()
    print(json.dumps(result, indent=2))
    if args.write:
        doc = ROOT / "docs" / "benchmarks-orchestrator.md"
        with open(doc, "a") as fh:
            fh.write(f"\n### Run of {time.strftime('%Y-%m-%d %H:%M')}\n\n```json\n"
                     f"{json.dumps(result, indent=2)}\n```\n")


def measure(args: argparse.Namespace, launcher: Launcher, endpoints: Endpoints,
            run_dir: Path, setup_s: float) -> dict[str, Any]:
    sshd_count = len([n for n in launcher.names(["ssh"])])
    work = run_dir / "bench"
    state_root = work / "hosts"
    names = list(endpoints.ssh.names[:args.computes])
    shutil.rmtree(work / "state", ignore_errors=True)
    analytics = AnalyticsStub(state_root)
    config = make_config(args, endpoints, state_root, work / "state", analytics.url)
    results: dict[str, dict[str, Any]] = {}
    order = ["baseline", "issu-before", "issu"] if args.baseline_first else \
        ["issu-before", "issu", "baseline"]
    if args.skip_baseline:
        order.remove("baseline")
    if args.skip_before:
        order.remove("issu-before")
    runners = {"issu": lambda: run_issu(config, args),
               "issu-before": lambda: run_issu(config, args, preconnect=False),
               "baseline": lambda: run_baseline(config, args)}
    for which in order:
        reset_hosts(state_root, names, "4.1.0", "127.0.0.101:5269")
        load = os.getloadavg()[0]
        results[which] = runners[which]()
        results[which]["load_avg_1m_at_start"] = round(load, 1)
        print(f"{which}: {json.dumps(results[which])}", flush=True)
    issu = results["issu"]
    baseline = results.get("baseline", {"wall_s": float("nan"), "skipped": True})
    return {"computes": args.computes, "parallel": args.parallel, "work_s": args.work_s,
            "order": order, "sshd_instances": sshd_count, "sshd_setup_s": round(setup_s, 1),
            "cpus": os.cpu_count(), "issu": issu,
            "issu_connect_in_action": results.get("issu-before", {"skipped": True}),
            "ansible_like_linear": baseline,
            "speedup_vs_baseline": round(baseline["wall_s"] / issu["wall_s"], 2)}


if __name__ == "__main__":
    main()
