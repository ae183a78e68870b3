"""run-sync against its replay ceiling and the original tool's approach, in one run: drain
rate of one backlog, lag under a steady stream of config changes, then verification that
new == old (translated).

    .venv/bin/python -m bench.bench_runsync --net 33 --drain 20000 \
        --fractions 0.2,0.4,0.6,0.8 --seconds 20 --original --plot docs/plots/runsync-lag.png

Uses the launcher's real Cassandra (old and new clusters) and RabbitMQ. run-sync runs as its
own process (`python -m issu_tui.runsync_cli run`), as under systemd. The load generator
(bench/load_generator.py, `--generators` processes of `--threads` threads) writes
Contrail-shaped objects into old (creates 50%, updates 40%, deletes 10%) and announces each
change on the old exchange like the api-server (a create or delete is one batch, as the
api-server writes it), recording each change. Its writes are asynchronous (`--in-flight`
outstanding per process): threads that each waited for their own write offered only
0.20-0.43x of the ceiling's rate on the loaded 2-core box.

`--drain N`: N changes written while run-sync is paused (SIGSTOP); the replay ceiling
(bench/replay_peers.py) applies that recorded stream from memory, then run-sync is resumed
and drains it. `--fractions` sets the rates as fractions of the ceiling's rate. Lag is
measured end to end from outside: the time a change's republished message arrives on the
NEW vhost minus the time the change was written to old (run-sync republishes after its write
on new). `--original` then measures the original tool's approach (one consumer, per message
a read and one write per cell) the same way, on a queue and a new keyspace of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import kombu

from backends.cassandra.connection import CassandraSide, connect
from backends.cassandra.registry import load_registry
from backends.cassandra.tables import SyncSettings
from backends.cassandra.verify import Verifier
from backends.rabbit import RabbitSide, connection, object_update_exchange, queue_depth
from bench.load_generator import ANNOUNCED, Generator, GeneratorPool
from bench.machine import Machine, bench_services
from bench.replay_peers import (
    PacedResult,
    Recorded,
    Statements,
    paced_replay,
    replay_ceiling,
)
from bench.spy import Recording, summary
from demo.services import Endpoints, Launcher
from demo.services.procs import read_pidfile
from tests import contrail_data as cd
from tests.runsync_config import runsync_toml

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DB = {"config_db_uuid": cd.CONTRAIL_TABLES["config_db_uuid"]}


_TICK = os.sysconf("SC_CLK_TCK")


def with_children(pids: set[int]) -> set[int]:
    """`pids` and their live descendants (run-sync's apply processes)."""
    found, todo = set(pids), list(pids)
    while todo:
        pid = todo.pop()
        with contextlib.suppress(OSError, ValueError):
            for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
                if int(child) not in found:
                    found.add(int(child))
                    todo.append(int(child))
    return found


def cpu_seconds(pids: set[int]) -> float:
    """utime + stime of `pids` (their live threads included), from /proc."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / _TICK


class CpuSplit:
    """CPU seconds per process over an interval: run-sync, the bench (load generator and
    listener), each service of the launcher, and the whole box (/proc/stat)."""

    def __init__(self, launcher: Launcher, names: list[str], runsync_pid: int,
                 label: str = "run-sync", generators: set[int] | None = None) -> None:
        """`generators`: the load generator's processes besides this one."""
        self.groups: dict[str, set[int]] = {label: with_children({runsync_pid}),
                                            "generator": {os.getpid(), *(generators or ())}}
        for name in names:
            group = read_pidfile(launcher.service(name).pidfile)
            self.groups[name] = group.members() if group is not None else set()
        self._start: dict[str, float] = {}
        self._t0 = 0.0

    @staticmethod
    def _box() -> float:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        values = [int(f) for f in fields]
        return (sum(values) - values[3] - values[4]) / _TICK  # busy = all but idle, iowait

    def start(self) -> None:
        self._start = {k: cpu_seconds(v) for k, v in self.groups.items()}
        self._start["box"] = self._box()
        self._t0 = time.monotonic()

    def stop(self) -> dict[str, float]:
        """Cores used per process (CPU s / wall s) since start()."""
        wall = max(1e-6, time.monotonic() - self._t0)
        used = {k: (cpu_seconds(v) - self._start[k]) / wall for k, v in self.groups.items()}
        used["box"] = (self._box() - self._start["box"]) / wall
        return used


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


class Listener(threading.Thread):
    """Receives the republished messages on the new vhost and records their arrival."""

    def __init__(self, rabbit: RabbitSide) -> None:
        """`rabbit`: the new side, with the exchange to listen on."""
        super().__init__(daemon=True)
        self.rabbit = rabbit
        self.arrived: dict[str, float] = {}
        self.announced: dict[str, float] = {}  # when the load generator announced it
        self.types: set[str] = set()
        self.stop = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        conn = connection(self.rabbit)
        conn.connect()
        channel = conn.channel()
        queue = kombu.Queue(f"bench-listener-{uuid.uuid4().hex[:6]}",
                            object_update_exchange(self.rabbit), exclusive=True)

        def on_message(message: kombu.Message) -> None:
            arrived = time.time()
            body = json.loads(message.body)
            rid = body.get("request-id", "")
            self.arrived[rid] = arrived
            if ANNOUNCED in body:
                self.announced[rid] = body[ANNOUNCED]
            self.types.add(body.get("type", ""))

        with kombu.Consumer(channel, queues=[queue], on_message=on_message, no_ack=True):
            self.ready.set()
            while not self.stop.is_set():
                with contextlib.suppress(TimeoutError):
                    conn.drain_events(timeout=0.2)
                conn.heartbeat_check()
        conn.release()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net", type=int, default=int(os.environ.get("ISSU_TEST_NET", "33")))
    parser.add_argument("--rates", default="100,500,1000")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=2,
                        help="load generator threads (per generator process), each starting "
                             "writes at its share of the rate without waiting for them")
    parser.add_argument("--in-flight", type=int, default=64,
                        help="load generator writes outstanding at most, per process")
    parser.add_argument("--generators", type=int, default=4,
                        help="load generator processes (default 4: one is held to one "
                             "core's share by its interpreter, bench/load_generator.py)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="run-sync's sync.concurrency: 8x as many lanes (default 8 = 64 "
                             "lanes, as the product's)")
    parser.add_argument("--processes", type=int, default=2,
                        help="run-sync's sync.apply_processes (default 2, as the product's)")
    parser.add_argument("--drain", type=int, default=0, metavar="N",
                        help="first: N changes written while run-sync is paused, applied by "
                             "the replay ceiling from memory, then drained by run-sync")
    parser.add_argument("--fractions", metavar="F,F",
                        help="rates as fractions of the replay ceiling's (needs --drain), "
                             "instead of --rates")
    parser.add_argument("--ceiling-lag", action="store_true",
                        help="then the replay ceiling at each rate (paced, the load "
                             "generator writing beside it, run-sync paused): the lag of the "
                             "ceiling's approach itself on this box (needs --drain)")
    parser.add_argument("--original", action="store_true",
                        help="then the original tool's approach (bench/replay_peers.py), "
                             "measured the same way")
    parser.add_argument("--original-drain", type=int, default=2000, metavar="N",
                        help="its backlog (default 2000)")
    parser.add_argument("--profile", metavar="FILE", type=Path,
                        help="py-spy record of run-sync's drain (its processes, on-CPU "
                             "samples, collapsed stacks) into this file, summarised in the "
                             "report")
    parser.add_argument("--profile-gil", action="store_true",
                        help="with --profile: only the thread holding the GIL (run-sync's own "
                             "Python CPU; a loaded box shows waiting threads as on-CPU)")
    parser.add_argument("--profile-steps", action="store_true",
                        help="with --profile: also record each rate step, into "
                             "<profile>-<rate>.txt, summarised in the report")
    parser.add_argument("--idle", type=float, default=0.0, metavar="S",
                        help="first: run-sync's CPU over S seconds with no change flowing")
    parser.add_argument("--reconcile-step", type=int, default=0, metavar="N",
                        help="run-sync is asked for a reconciliation pass (SIGUSR1) as the "
                             "Nth rate starts (1: the first): its lag while a pass runs")
    parser.add_argument("--hog", type=int, default=0, metavar="N",
                        help="N busy-looping processes beside the run (CPU contention)")
    parser.add_argument("--plot", type=Path, metavar="PNG",
                        help="plot p50 and p99 lag against the achieved rate (matplotlib, "
                             "from the bench extras)")
    parser.add_argument("--write", type=Path, metavar="MD", nargs="?",
                        const=ROOT / "docs" / "benchmarks.md",
                        help="put the results between the run-sync markers of this page "
                             "(default docs/benchmarks.md)")
    parser.add_argument("--block", default="runsync", metavar="NAME",
                        help="the markers --write puts the results between: <!-- NAME:begin "
                             "--> and <!-- NAME:end --> (default runsync; make bench writes "
                             "its profiled run to runsync-profile)")
    parser.add_argument("--keep", action="store_true",
                        help="leave the services running at the end (default: stop those "
                             "this run started)")
    args = parser.parse_args()
    if args.plot:  # said now, not after the whole run (whose report it would lose)
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib: .venv/bin/pip install -e '.[bench]' "
                         "(make bench installs the bench extras)")

    services = ["cassandra-old", "cassandra-new", "rabbitmq"]
    launcher = Launcher(net=args.net, profile="test")
    machine = Machine.now()
    print(f"machine: {machine.line()}", flush=True)
    # CPU contention on purpose: busy loops beside everything, for the whole run
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(args.hog)]
    try:
        with bench_services(launcher, services, keep=args.keep) as eps:
            code, lines = run(args, launcher, eps, services)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    print(f"machine: {machine.finish().line()}")
    if args.write:
        write_report(args.write, machine, lines, args.block)
    return code


def plot_lag(rows: list[RateRow], ceiling_rate: float, path: Path) -> None:
    """p50 and p99 lag of each peer against the rate achieved (a fraction of the replay
    ceiling's when it was measured)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.plots import draw_lag

    series: dict[str, list[tuple[float, float, float]]] = {}
    for who, _, achieved, _, _, p50, p99, _, _ in rows:
        series.setdefault(who, []).append(
            (achieved / (ceiling_rate or 1.0), p50 * 1000, p99 * 1000))
    draw_lag(plt, series, bool(ceiling_rate), path)


def wait_idle(state: Path, rabbit: RabbitSide, queue: str,
              timeout: float = 600.0) -> float:
    """Seconds until run-sync has nothing left: its queue empty on the broker, nothing in
    flight in its lanes, and its applied count still for 5 s (its journal counters are
    written every 2 s). Raises if that does not happen within `timeout`."""
    from issu_tui.journal import Journal

    started = time.monotonic()
    still_since, last_applied = time.monotonic(), -1.0
    conn = connection(rabbit)
    journal = Journal(state / "journal.db", read_only=True)
    try:
        conn.connect()
        channel = conn.channel()
        while True:
            counters = journal.counters("runsync")
            applied = counters.get("applied", 0.0)
            busy = queue_depth(channel, queue) > 0 or counters.get("in_flight", 0.0) > 0
            if busy or applied != last_applied:
                still_since, last_applied = time.monotonic(), applied
            elif time.monotonic() - still_since >= 5.0:
                return time.monotonic() - started - 5.0
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"run-sync still busy after {timeout:.0f} s: {counters}")
            time.sleep(0.25)
    finally:
        journal.close()
        conn.release()


Load = Generator | GeneratorPool  # the load generator, in this process or in several

RateRow = tuple[str, float, float, int, int, float, float, float, float]
# who, target/s, achieved/s, changes, republished, p50 s, p99 s, max s, load (1 min)


@dataclass
class Drained:
    who: str
    changes: int
    done: int
    seconds: float
    cores: dict[str, float]  # cores used per process while it ran

    @property
    def rate(self) -> float:
        return self.done / max(1e-6, self.seconds)


def wait_republished(listener: Listener, ids: list[str], timeout: float) -> float:
    """Seconds until every one of `ids` arrived on the listener (or `timeout`)."""
    started = time.monotonic()
    pending = list(ids)
    while pending and time.monotonic() - started < timeout:
        pending = [i for i in pending if i not in listener.arrived]
        if pending:
            time.sleep(0.05)
    return time.monotonic() - started


SplitRow = tuple[str, float, float, float, float, float]
# who, target/s, p50 / p99 s written -> announced (the generator), p50 / p99 s announced ->
# republished message arrived (the broker, the peer, the broker)


def measure_rates(args: argparse.Namespace, who: str, rates: list[float], gen: Load,
                  listener: Listener, split: CpuSplit, pid: int | None = None,
                  splits: list[SplitRow] | None = None
                  ) -> tuple[list[RateRow], list[tuple[float, dict[str, float], float]]]:
    """Each rate for args.seconds; lag of each change from written on old to republished
    (`splits`: its two parts appended, when the messages carry the announcement time;
    `pid`: with --profile-steps, py-spy records it during each rate)."""
    rows: list[RateRow] = []
    cpu = []
    for step, rate in enumerate(rates, 1):
        before = set(gen.written)
        if pid is not None and step == args.reconcile_step:
            os.kill(pid, signal.SIGUSR1)
            print(f"{who} at {rate:.0f}/s: a reconciliation pass asked for", flush=True)
        spy = None
        if pid is not None and args.profile and args.profile_steps:
            spy = Recording(pid, step_profile(args.profile, rate), gil=args.profile_gil)
        split.start()
        achieved = gen.run(rate, args.seconds, args.threads)
        used = split.stop()
        if spy is not None:
            spy.stop()
        ids = [i for i in gen.written if i not in before]
        after = wait_republished(listener, ids, 300)
        cpu.append((rate, used, after))
        lags = [listener.arrived[i] - gen.written[i] for i in ids if i in listener.arrived]
        told = [i for i in ids if i in listener.announced]
        if splits is not None and told:
            gen_part = [listener.announced[i] - gen.written[i] for i in told]
            rest = [listener.arrived[i] - listener.announced[i] for i in told]
            splits.append((who, rate, quantile(gen_part, 0.5), quantile(gen_part, 0.99),
                           quantile(rest, 0.5), quantile(rest, 0.99)))
            print(f"{who} at {rate:.0f}/s: written -> announced p50/p99 "
                  f"{splits[-1][2] * 1000:.0f}/{splits[-1][3] * 1000:.0f} ms, announced -> "
                  f"arrived {splits[-1][4] * 1000:.0f}/{splits[-1][5] * 1000:.0f} ms",
                  flush=True)
        rows.append((who, rate, achieved, len(ids), len(lags), quantile(lags, 0.5),
                     quantile(lags, 0.99), max(lags) if lags else float("nan"),
                     os.getloadavg()[0]))
        print(f"{who} at {rate:.0f}/s: achieved {achieved:.0f}/s, p50 "
              f"{rows[-1][5] * 1000:.0f} ms, p99 {rows[-1][6] * 1000:.0f} ms", flush=True)
        if achieved < 0.95 * rate:  # the lag then is not the lag at the rate asked
            print(f"{who} at {rate:.0f}/s: the load generator offered only "
                  f"{achieved / rate:.0%} of it", flush=True)
    return rows, cpu



def paced_ceiling(args: argparse.Namespace, rates: list[float], gen: Load,
                  stream: list[Recorded], old_session: object, new_side: CassandraSide,
                  old_prefix: str, lanes: int, split: CpuSplit,
                  proc: subprocess.Popen[bytes], listener: Listener
                  ) -> tuple[list[RateRow], list[tuple[str, float, dict[str, float], float]]]:
    """The replay ceiling at each rate (bench/replay_peers.paced_replay), into a keyspace of
    its own, while the load generator writes at that rate beside it and run-sync is paused:
    the same cores busy with the same writes, without the broker or run-sync. What the
    generator wrote meanwhile run-sync applies after, before the next rate."""
    who = "replay ceiling"
    rows: list[RateRow] = []
    cpu: list[tuple[str, float, dict[str, float], float]] = []
    new = connect(new_side)
    cd.create_schema(new.session, new_side.prefix, tables=CONFIG_DB)
    try:
        st = Statements(old_session, new.session, cd.ks_name(old_prefix, "config_db_uuid"),
                        cd.ks_name(new_side.prefix, "config_db_uuid"))
        for rate in rates:
            before = set(gen.written)
            result: list[PacedResult] = []
            proc.send_signal(signal.SIGSTOP)
            try:
                pacer = threading.Thread(target=lambda rate=rate, result=result: result.append(
                    paced_replay(st, stream, lanes, rate, args.seconds)))
                own, wall = time.process_time(), time.monotonic()
                split.start()
                pacer.start()
                achieved = gen.run(rate, args.seconds, args.threads)
                pacer.join()
                used = split.stop()
                own, wall = time.process_time() - own, time.monotonic() - wall
            finally:
                proc.send_signal(signal.SIGCONT)
            (paced,) = result
            if paced.errors:
                raise RuntimeError(f"the paced replay ceiling failed {len(paced.errors)} "
                                   f"changes: {paced.errors[:3]}")
            # this process ran the ceiling's lanes beside the generator's coordination
            used[who] = own / wall
            used["generator"] = max(0.0, used["generator"] - used[who])
            lags = paced.lags
            rows.append((who, rate, achieved, len(lags), len(lags), quantile(lags, 0.5),
                         quantile(lags, 0.99), max(lags) if lags else float("nan"),
                         os.getloadavg()[0]))
            cpu.append((who, rate, used, 0.0))
            print(f"{who} at {rate:.0f}/s beside the generator ({achieved:.0f}/s): p50 "
                  f"{rows[-1][5] * 1000:.0f} ms, p99 {rows[-1][6] * 1000:.0f} ms", flush=True)
            ids = [i for i in gen.written if i not in before]
            wait_republished(listener, ids, 600)  # run-sync caught up: the next rate is clean
    finally:
        cd.drop_schema(new.session, new_side.prefix)
        new.close()
    return rows, cpu


def step_profile(profile: Path, rate: float) -> Path:
    return profile.with_name(f"{profile.stem}-{rate:.0f}{profile.suffix or '.txt'}")


def backlog(proc: subprocess.Popen[bytes], gen: Load, n: int, threads: int) -> list[str]:
    """`n` changes written while `proc` is paused (SIGSTOP); their request ids."""
    before = set(gen.written)
    proc.send_signal(signal.SIGSTOP)
    try:
        gen.run(100_000.0, 900.0, threads, limit=n)
    except BaseException:
        proc.send_signal(signal.SIGCONT)
        raise
    return [i for i in gen.written if i not in before]


def drain(who: str, proc: subprocess.Popen[bytes], ids: list[str], listener: Listener,
          split: CpuSplit, profile: Path | None = None, gil: bool = False) -> Drained:
    """Resume `proc` and time its drain of the backlog `ids`, nothing else running
    (`profile`: py-spy records it meanwhile, into that file)."""
    spy = Recording(proc.pid, profile, gil=gil) if profile else None
    split.start()
    proc.send_signal(signal.SIGCONT)
    took = wait_republished(listener, ids, 1200)
    used = split.stop()
    if spy is not None:
        spy.stop()
    done = sum(1 for i in ids if i in listener.arrived)
    print(f"{who}: drained {done} of {len(ids)} in {took:.1f} s = {done / took:.0f}/s",
          flush=True)
    return Drained(who, len(ids), done, took, used)


def run_ceiling(old_session: object, new_side: CassandraSide, old_prefix: str,
                changes: list[Recorded], lanes: int, split: CpuSplit) -> Drained:
    """The replay ceiling on `changes`, into a keyspace of its own on new."""
    new = connect(new_side)
    cd.create_schema(new.session, new_side.prefix, tables=CONFIG_DB)
    try:
        st = Statements(old_session, new.session, cd.ks_name(old_prefix, "config_db_uuid"),
                        cd.ks_name(new_side.prefix, "config_db_uuid"))
        split.start()
        result = replay_ceiling(st, changes, lanes)
        used = split.stop()
    finally:
        cd.drop_schema(new.session, new_side.prefix)
        new.close()
    if result.errors:
        raise RuntimeError(f"the replay ceiling failed {len(result.errors)} changes: "
                           f"{result.errors[:3]}")
    print(f"ceiling: {result.changes} changes in {result.seconds:.1f} s = "
          f"{result.changes / result.seconds:.0f}/s", flush=True)
    return Drained("replay ceiling", result.changes, result.changes, result.seconds, used)


def wait_for_line(proc: subprocess.Popen[bytes], log_path: Path, line: str,
                  timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while line not in log_path.read_text():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"{proc.args} did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.2)


def run(args: argparse.Namespace, launcher: Launcher, eps: Endpoints,
        services: list[str]) -> tuple[int, list[str]]:
    tag = uuid.uuid4().hex[:6]
    old_prefix, new_prefix, queue = f"bro{tag}", f"brn{tag}", f"bench-issu-{tag}"
    old_side = CassandraSide("old", (eps.cassandra_old.host,), eps.cassandra_old.port,
                             prefix=old_prefix, version="4.1.0")
    new_side = CassandraSide("new", (eps.cassandra_new.host,), eps.cassandra_new.port,
                             prefix=new_prefix, version="5.0.0")
    r = eps.rabbit
    old_rabbit = RabbitSide("old", (r.host,), r.port, r.user, r.password, r.vhost_old)
    new_rabbit = RabbitSide("new", (r.host,), r.port, r.user, r.password, r.vhost_new)
    old = connect(old_side)
    cd.create_schema(old.session, old_prefix, tables=CONFIG_DB)
    ds = cd.Dataset()
    dom = cd.add_object(ds, "domain", ["default-domain"])
    project = cd.add_object(ds, "project", ["default-domain", "bench"], parent=("domain", dom))
    cd.write(old.session, old_prefix, ds)

    listener = Listener(new_rabbit)
    listener.start()
    listener.ready.wait(30)
    state = Path(tempfile.mkdtemp(prefix="bench-runsync-"))
    (state / "issu.toml").write_text(runsync_toml(
        eps, state_dir=state, queue=queue, old_prefix=old_prefix, new_prefix=new_prefix,
        password_env="BENCH_RABBIT_PASSWORD", concurrency=args.concurrency,
        apply_processes=args.processes, slices_per_table=16, reconcile_interval_s=3600))
    log_path = state / "run-sync.log"
    env = {**os.environ, "BENCH_RABBIT_PASSWORD": r.password}
    proc = subprocess.Popen(
        [sys.executable, "-m", "issu_tui.runsync_cli", "run", "-c", str(state / "issu.toml")],
        cwd=ROOT, env=env, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    lanes = args.concurrency * 8  # run-sync's lanes (issu_tui/sides.py)
    drains: list[Drained] = []
    rows: list[RateRow] = []
    splits: list[SplitRow] = []
    idle: dict[str, float] = {}
    cpu: list[tuple[str, float, dict[str, float], float]] = []
    ceiling_rate = 0.0
    stream: list[Recorded] = []
    ok = False
    gen: Load = (
        GeneratorPool(args.generators, old_side, old_prefix, old_rabbit, project,
                      in_flight=args.in_flight)
        if args.generators > 1 else Generator(old.session, old_prefix, old_rabbit, project,
                                              in_flight=args.in_flight))
    gen_pids = gen.pids() if isinstance(gen, GeneratorPool) else set()
    try:
        wait_for_line(proc, log_path, "replaying changes")
        # its reconciliation pass after the catch-up copy, while the keyspace is nearly
        # empty: run-sync starts one once its queue is first empty, which otherwise fell at a
        # random point of the drain or the rates (a whole pass beside them for 30-115 s)
        wait_for_line(proc, log_path, "reconcile pass:", timeout=120)
        split = CpuSplit(launcher, services, proc.pid, generators=gen_pids)
        if args.idle:
            time.sleep(2.0)  # its start-up's last requests answered
            split.start()
            time.sleep(args.idle)
            idle = split.stop()
            print(f"run-sync idle for {args.idle:.0f} s: {idle['run-sync']:.3f} cores "
                  f"(box {idle['box']:.2f}, load {os.getloadavg()[0]:.1f})", flush=True)
        if args.drain:
            # the same backlog, applied by the ceiling from memory, then drained by run-sync
            # (resumed): nothing else running on the box but the services
            ids = backlog(proc, gen, args.drain, args.threads)
            wanted = set(ids)
            stream = [c for c in gen.recorded if c.rid in wanted]
            drains.append(run_ceiling(old.session, replace(new_side, prefix=f"brc{tag}"),
                                      old_prefix, stream, lanes, split))
            ceiling_rate = drains[-1].rate
            drains.append(drain("run-sync", proc, ids, listener, split, args.profile,
                                 args.profile_gil))
        if args.fractions:
            if not ceiling_rate:
                raise SystemExit("--fractions needs --drain (the ceiling's rate)")
            rates = [float(f) * ceiling_rate for f in args.fractions.split(",")]
        else:
            rates = [float(x) for x in args.rates.split(",")]
        got, used = measure_rates(args, "run-sync", rates, gen, listener, split, proc.pid,
                                  splits)
        rows += got
        cpu += [("run-sync", *u) for u in used]
        if args.ceiling_lag and stream:
            got, used = paced_ceiling(args, rates, gen, stream, old.session,
                                      replace(new_side, prefix=f"brp{tag}"), old_prefix,
                                      lanes, split, proc, listener)
            rows += got
            cpu += used
        # every change republished is not yet every change applied and acknowledged (a
        # quarantined one is never republished): verify only once run-sync is idle
        idle_s = wait_idle(state, old_rabbit, queue)
        started = time.monotonic()
        new = connect(new_side)
        old2 = connect(old_side)
        report = Verifier(old2, new, load_registry(),
                          SyncSettings(slices_per_table=16, concurrency=4,
                                       keyspaces=("config_db_uuid",)),
                          recheck_delay_s=1.0).run()
        verify_s = time.monotonic() - started
        ok = report.ok
        from issu_tui.journal import Journal

        journal = Journal(state / "journal.db", read_only=True)
        counters = journal.counters("runsync")
        journal.close()
        new.close()
        old2.close()
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
        listener.stop.set()
        dropper = connect(new_side)
        cd.drop_schema(dropper.session, new_prefix)
        dropper.close()
        delete_queues(old_rabbit, queue, queue + ".quarantine")
    try:
        if args.original:
            orig_rows, orig_cpu, orig_drain = run_original(
                args, launcher, eps, services, gen, old_prefix, f"bog{tag}", tag, rates,
                env, state)
            rows += orig_rows
            cpu += orig_cpu
            drains += orig_drain
    finally:
        if isinstance(gen, GeneratorPool):
            gen.close()
        cd.drop_schema(old.session, old_prefix)
        old.close()

    if args.plot and rows:
        plot_lag(rows, ceiling_rate, args.plot)
        print(f"plot of lag against rate written to {args.plot}")
    out = report_lines(args, drains, rows, cpu, ceiling_rate)
    out += split_lines(splits, ceiling_rate, idle, args.idle)
    if args.profile and args.profile.exists():
        out += ["", "Where run-sync's CPU goes while it drains the backlog (py-spy, its main "
                "and apply processes, on-CPU samples):", "", *summary(args.profile)]
    for rate in rates if args.profile and args.profile_steps else []:
        path = step_profile(args.profile, rate)
        if path.exists():
            out += ["", f"Where run-sync's CPU goes with the generator at {rate:.0f}/s "
                    "(py-spy):", "", *summary(path)]
    out += ["", f"run-sync idle (queue empty, nothing in flight) {idle_s:.1f} s after the "
            "last change was republished; verify after the run: "
            f"{'**0 differences**' if ok else '**DIFFERENCES**'} ({report.totals()}) in "
            f"{verify_s:.1f} s"]
    for table in report.tables:
        out += [f"- difference: {diff}" for diff in table.samples[:10]]
    if args.reconcile_step:
        out.append(f"A reconciliation pass was asked for (SIGUSR1) as rate {args.reconcile_step} "
                   "started.")
    passes = [line.split("service: ", 1)[-1][:160] for line in
              log_path.read_text(errors="replace").splitlines() if "reconcile pass:" in line]
    out += [f"run-sync's reconciliation passes: {'; '.join(passes) or 'none'}"]
    out.append(f"run-sync counters: applied={counters.get('applied')}, failed="
               f"{counters.get('failed')}, quarantined={counters.get('quarantined')}, "
               f"object_writes={counters.get('object_writes')}, coalesced="
               f"{counters.get('coalesced')}; exit code after SIGTERM: {code}; republished "
               f"types: {sorted(listener.types)}")
    print("\n".join(out))
    return (0 if ok else 1), out


def split_lines(splits: list[SplitRow], ceiling_rate: float, idle: dict[str, float],
                idle_s: float) -> list[str]:
    """The report's lines on where the lag went and on run-sync's idle CPU."""
    out: list[str] = []
    if splits:
        out += ["", "The lag in two parts: written on old -> announced by the load generator "
                "(its write acknowledged, its callback, its publisher thread), and announced "
                "-> the republished message arrived (the broker, run-sync, the broker):", "",
                "| who | target /s | target vs ceiling | written -> announced p50 / p99 ms | "
                "announced -> arrived p50 / p99 ms |", "|---|---:|---:|---|---|"]
        for who, rate, g50, g99, r50, r99 in splits:
            of = f"{rate / ceiling_rate:.2f}x" if ceiling_rate else "-"
            out.append(f"| {who} | {rate:.0f} | {of} | {g50 * 1000:.0f} / {g99 * 1000:.0f} | "
                       f"{r50 * 1000:.0f} / {r99 * 1000:.0f} |")
    if idle:
        out += ["", f"run-sync idle (nothing flowing) for {idle_s:.0f} s: "
                f"{idle['run-sync']:.3f} cores (" + ", ".join(
                    f"{k} {v:.3f}" for k, v in idle.items() if k != "run-sync") + ")"]
    return out


def delete_queues(rabbit: RabbitSide, *names: str) -> None:
    conn = connection(rabbit)
    try:
        ch = conn.channel()
        for name in names:
            ch.queue_delete(name)
    finally:
        conn.release()


def run_original(args: argparse.Namespace, launcher: Launcher, eps: Endpoints,
                 services: list[str], gen: Load, old_prefix: str, new_prefix: str,
                 tag: str, rates: list[float], env: dict[str, str], state: Path
                 ) -> tuple[list[RateRow], list[tuple[str, float, dict[str, float], float]],
                            list[Drained]]:
    """The original tool's approach (bench/replay_peers.py), measured the same way: its
    drain of a backlog, then the rates it can keep up with (up to 1.5x its drain rate; when
    none of them, 0.8x its drain rate)."""
    r = eps.rabbit
    old_rabbit = RabbitSide("old", (r.host,), r.port, r.user, r.password, r.vhost_old)
    exchange, queue = f"bench-original-{tag}", f"bench-original-{tag}"
    listener = Listener(RabbitSide("new", (r.host,), r.port, r.user, r.password, r.vhost_new,
                                   exchange=exchange))
    listener.start()
    listener.ready.wait(30)
    new = connect(CassandraSide("new", (eps.cassandra_new.host,), eps.cassandra_new.port,
                                prefix=new_prefix, version="5.0.0"))
    cd.create_schema(new.session, new_prefix, tables=CONFIG_DB)
    log_path = state / "original.log"
    c_old, c_new = eps.cassandra_old, eps.cassandra_new
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.replay_peers", "original",
         "--old", f"{c_old.host}:{c_old.port}", "--new", f"{c_new.host}:{c_new.port}",
         "--old-ks", cd.ks_name(old_prefix, "config_db_uuid"),
         "--new-ks", cd.ks_name(new_prefix, "config_db_uuid"),
         "--rabbit", f"{r.host}:{r.port}", "--user", r.user, "--vhost-old", r.vhost_old,
         "--vhost-new", r.vhost_new, "--queue", queue, "--exchange", exchange],
        cwd=ROOT, env=env, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    drains: list[Drained] = []
    try:
        wait_for_line(proc, log_path, "original: consuming")
        split = CpuSplit(launcher, services, proc.pid, label="original",
                         generators=gen.pids() if isinstance(gen, GeneratorPool) else None)
        if args.original_drain:
            ids = backlog(proc, gen, args.original_drain, args.threads)
            drains.append(drain("original", proc, ids, listener, split))
            limit = 1.5 * drains[-1].rate
            # none it can follow: one point at 0.8x its own drain rate, for the plot
            rates = [x for x in rates if x <= limit] or [0.8 * drains[-1].rate]
        rows, used = measure_rates(args, "original", rates, gen, listener, split)
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait(timeout=60)
        listener.stop.set()
        delete_queues(old_rabbit, queue)
        cd.drop_schema(new.session, new_prefix)
        new.close()
    return rows, [("original", *u) for u in used], drains


def report_lines(args: argparse.Namespace, drains: list[Drained], rows: list[RateRow],
                 cpu: list[tuple[str, float, dict[str, float], float]],
                 ceiling_rate: float) -> list[str]:
    out: list[str] = []

    def of_ceiling(rate: float) -> str:
        return f"{rate / ceiling_rate:.2f}x" if ceiling_rate else "-"

    if drains:
        services = [k for k in drains[0].cores if k.startswith(("cassandra", "rabbit"))]
        out += ["The same kind of backlog, each peer alone (written while it was paused; the "
                "ceiling applies run-sync's backlog from memory, in the bench's own process), "
                "and the CPU per change of each process:", "",
                "| who | changes | seconds | changes/s | vs ceiling | peer ms CPU/change | "
                + " | ".join(f"{n} ms/change" for n in services) + " | box cores |",
                "|---|---:|---:|---:|---:|---:|" + "---:|" * len(services) + "---:|"]
        for d in drains:
            per = {k: v * d.seconds / max(1, d.done) * 1000 for k, v in d.cores.items()}
            peer = per["generator" if d.who == "replay ceiling" else d.who]
            out.append(f"| {d.who} | {d.done:,} | {d.seconds:.1f} | **{d.rate:,.0f}** | "
                       f"{of_ceiling(d.rate)} | {peer:.2f} | "
                       + " | ".join(f"{per.get(n, 0.0):.2f}" for n in services)
                       + f" | {d.cores.get('box', 0.0):.2f} |")
        out.append("")
    out += ["Lag from written on old to republished on new, the load generator at each rate "
            f"for {args.seconds:.0f} s:", "",
            "| who | target changes/s | target vs ceiling | achieved/s | achieved vs ceiling "
            "| changes | republished | lag p50 ms | lag p99 ms | lag max ms | load avg (1 min) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for who, rate, achieved, n, got, p50, p99, mx, load in rows:
        out.append(f"| {who} | {rate:.0f} | {of_ceiling(rate)} | {achieved:.0f} | "
                   f"{of_ceiling(achieved)} | {n} | {got} | {p50 * 1000:.0f} | "
                   f"{p99 * 1000:.0f} | {mx * 1000:.0f} | {load:.1f} |")
    if any(row[0] == "replay ceiling" for row in rows):
        out += ["", "replay ceiling rows: the ceiling's approach at that rate (each change due "
                "at its place in the stream, applied from memory, no broker), the load "
                "generator writing at the same rate beside it and run-sync paused; lag = "
                "written on new minus due."]
    out += ["", "cores used while the generator ran (CPU s / wall s; the box has "
            f"{os.cpu_count()} cores), and the peer's CPU per change:", ""]
    names = [n for n in (cpu[0][2] if cpu else {}) if n not in ("run-sync", "original")]
    out += ["| who | target /s | peer | " + " | ".join(names) + " | peer ms CPU per change | "
            "republished all after s |", "|---|---|---|" + "---|" * (len(names) + 2)]
    for (who, rate, used, after), row in zip(cpu, rows, strict=True):
        per_change = used[who] * args.seconds / max(1, row[3]) * 1000
        out.append(f"| {who} | {rate:.0f} | {used[who]:.2f} | "
                   + " | ".join(f"{used[n]:.2f}" for n in names)
                   + f" | {per_change:.2f} | {after:.1f} |")
    return out


def write_report(path: Path, machine: Machine, lines: list[str], block_name: str) -> None:
    """The run's tables between the `block_name` markers of `path` (docs/benchmarks.md)."""
    from bench.page import measured, write_block

    title = {"runsync": "### Latest",
             "runsync-profile": "### Where run-sync's CPU goes (py-spy), latest"}.get(
                 block_name, f"### Latest ({block_name})")
    write_block(path, block_name,
                [title, "", *measured(machine.line(), "bench.bench_runsync"), *lines],
                new_page="# Benchmarks\n\n## run-sync\n")

if __name__ == "__main__":
    sys.exit(main())
