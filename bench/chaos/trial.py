"""One chaos trial: a fresh demo world, a whole upgrade driven from the command line under
load, faults from the seed at random moments, then the independent checker."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.chaos import checker
from bench.chaos.faults import BY_KIND, FAULTS, RUN_SYNC_FAULTS, Skip, runsync_pid
from bench.chaos.workload import Load
from demo.services import Endpoints
from demo.services.launcher import Launcher
from demo.world import World, WorldOptions
from issu_tui.journal import Journal, OrchestratorState
from tests.orch_world import _stop_pieces, _wipe_data, seed

REPO = Path(__file__).resolve().parents[2]
ISSU = str(Path(sys.executable).parent / "issu")
STEP_TIMEOUT_S = 900.0
MAX_ATTEMPTS = 12


@dataclass
class Injected:
    kind: str
    at_s: float          # since the trial began
    phase: str
    outcome: str         # "injected" / "skipped" / "error"
    note: str = ""
    duration_s: float = 0.0
    recovery_s: float | None = None  # fault end -> run-sync reporting again (or step done)
    together_with: str = ""
    # a run-sync fault drawn before run-sync ran: the moment it was drawn for (it waits for
    # run-sync, then lands at a random moment of run-sync's hold)
    deferred_from_s: float | None = None
    # what the operator saw from the fault's moment until 20 s after it recovered: the
    # journal's warning/error events (`issu events`, the console's events) and failed commands
    seen: list[str] = field(default_factory=list)


@dataclass
class TrialOptions:
    number: int
    seed: int
    net: int
    computes: int
    rate: float
    minutes: float
    install_s: float
    out_dir: Path
    kinds: tuple[str, ...] = tuple(f.kind for f in FAULTS)
    # moments counted from run-sync's start (not the trial's), run-sync held for all of them
    after_run_sync: bool = False


class Daemon:
    """`issu daemon`, restarted a second after it exits (systemd's Restart=always)."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.stop = threading.Event()
        self.restarts = 0
        self.thread = threading.Thread(target=self._keep, name="chaos-daemon", daemon=True)

    def pid(self) -> int | None:
        proc = self.proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def _keep(self) -> None:
        while not self.stop.is_set():
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen([ISSU, "daemon", "-c", str(self.config)],
                                             stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                             start_new_session=True)
            while self.proc.poll() is None and not self.stop.is_set():
                time.sleep(0.2)
            if self.stop.is_set():
                break
            self.restarts += 1
            self.stop.wait(1.0)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.thread.ident is not None:  # started (a trial may fail before)
            self.thread.join(timeout=30)


class Driver:
    """The operator's script, one `issu` command per step, each carried on until it succeeds."""

    def __init__(self, trial: Trial) -> None:
        self.trial = trial
        self.current_step = ""
        self._proc: subprocess.Popen[str] | None = None
        self.attempts: dict[str, int] = {}
        self.intents: list[int] = []
        self.transcript: list[dict[str, Any]] = []

    def current_pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def issu(self, step: str, *args: str) -> tuple[int, dict[str, Any]]:
        argv = [ISSU, *args, "--json", "-c", str(self.trial.config_path)]
        self.current_step = " ".join(args)
        self._proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, cwd=REPO)
        try:
            out, err = self._proc.communicate(timeout=STEP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            out, err = self._proc.communicate()
        code = self._proc.returncode
        self._proc = None
        lines = [ln for ln in out.splitlines() if ln.strip()]
        try:
            result = json.loads(lines[-1]) if lines else {}
        except ValueError:
            result = {}
        if isinstance(result.get("intent"), int):
            self.intents.append(result["intent"])
        self.transcript.append({"at_s": round(self.trial.elapsed(), 1), "step": step,
                                "argv": args, "exit": code, "ok": result.get("ok"),
                                "error": str(result.get("error") or err[-600:] or "")[:600]})
        return code, result

    def carry_on(self, step: str, *args: str, done: Any = None) -> dict[str, Any]:
        """Run the step until it succeeds (a fault may fail an attempt)."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            self.attempts[step] = attempt
            code, result = self.issu(step, *args)
            if code == 0 and result.get("ok") and (done is None or done(result)):
                return result
            self.trial.sleep(3.0)
        raise TrialError(f"{step}: not done after {MAX_ATTEMPTS} attempts; last: "
                         f"{self.transcript[-1]}")

    def run(self) -> None:
        self.carry_on("preflight", "preflight")
        self.carry_on("pair", "pair")
        self.carry_on("pre-sync", "phase", "pre-sync")
        self.carry_on("run-sync", "phase", "run-sync")
        self.trial.run_sync_started.set()
        self.trial.sleep(self.trial.run_sync_hold_s())
        self.carry_on("computes", "compute", "upgrade", "all", "--batch-size", "2",
                      "--parallel", "2", done=lambda r: not r.get("failed"))
        self.trial.read_old_nodes()
        self.trial.finalizing.set()
        self.carry_on("finalize", "finalize")


def draw_schedule(rng: random.Random, minutes: float,
                  kinds: tuple[str, ...]) -> list[tuple[float, list[str]]]:
    """Moments (seconds from the trial's start, or from run-sync's start with
    `after_run_sync`) and the faults at each; a fifth are pairs."""
    count = max(2, round(minutes * 2))
    span = minutes * 60
    moments = sorted(rng.uniform(5, span) for _ in range(count))
    plan = []
    for at in moments:
        drawn = [rng.choice(kinds)]
        if rng.random() < 0.2:
            drawn.append(rng.choice([k for k in kinds if k != drawn[0]]))
        plan.append((at, drawn))
    return plan


class TrialError(Exception):
    pass


class Trial:
    def __init__(self, opts: TrialOptions, launcher: Launcher) -> None:
        self.opts = opts
        self.launcher = launcher
        self.rng = random.Random(opts.seed)
        run_dir = launcher.run_dir
        self.world = World(WorldOptions(
            net=opts.net, computes=opts.computes, run_dir=run_dir,
            config_path=run_dir / "chaos" / "issu.toml", seed_objects=0, workload_rate=0,
            install_s=opts.install_s, datapath_down_s=0.2, services_profile="test"))
        self.config_path = self.world.config_path
        self.state_dir = self.world.dir / "state"
        self.state_disk_mounted = False
        self.state_disk_reason = ""
        self.daemon = Daemon(self.config_path, run_dir / "chaos" / "daemon.log")
        self.driver = Driver(self)
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.faults: list[Injected] = []
        self._fault_threads: list[threading.Thread] = []
        self._finished = threading.Event()
        self.run_sync_started = threading.Event()
        self.finalizing = threading.Event()  # run-sync's faults no longer wait for it
        self.old_nodes: dict[str, Any] | None = None  # old's node records before finalize
        self.old_nodes_note = "not read before finalize"
        self.schedule = draw_schedule(self.rng, opts.minutes, opts.kinds)

    # ------------------------------------------------------------------ helpers
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def journal_state(self) -> OrchestratorState:
        journal = Journal(self.state_dir / "journal.db", read_only=True)
        try:
            return journal.orchestrator_state()
        finally:
            journal.close()

    def phase(self) -> str:
        with contextlib.suppress(Exception):
            journal = Journal(self.state_dir / "journal.db", read_only=True)
            try:
                info = journal.phase()
                return info.phase if info else "plan"
            finally:
                journal.close()
        return "?"

    def read_old_nodes(self) -> None:
        """Old's node records before finalize, for the checker: from finalize's commit the
        reverse replication copies new's changes (its records, the removal of old's) to old.
        A fault may keep old's api-server from answering for a while: a few tries."""
        for attempt in range(1, 11):
            try:
                self.old_nodes = checker.old_node_records(self.world)
                self.old_nodes_note = f"read before finalize ({len(self.old_nodes)})"
                return
            except Exception as exc:
                self.old_nodes_note = (f"not read before finalize ({attempt} tries): "
                                       f"{type(exc).__name__}: {exc}"[:300])
                self.sleep(3.0)

    def run_sync_hold_s(self) -> float:
        """How long the load runs on through run-sync before the computes: half the trial
        from its start, or (`after_run_sync`) until the last fault's moment is past."""
        if self.opts.after_run_sync:
            return self.schedule[-1][0] + 5.0 if self.schedule else 0.0
        return max(0.0, self.opts.minutes * 30 - self.elapsed())

    # ------------------------------------------------------------------ world
    def _mount_state_disk(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            self.state_disk_reason = "not root: no small disk for the state directory"
            return
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs",
                               str(self.state_dir)], capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            self.state_disk_reason = f"mount refused: {done.stderr.strip()}"
            return
        self.state_disk_mounted = True

    def unmount_state_disk(self) -> None:
        if self.state_disk_mounted:
            subprocess.run(["umount", "-l", str(self.state_dir)], capture_output=True,
                           check=False)
            self.state_disk_mounted = False

    def setup(self, endpoints: Endpoints) -> None:
        _stop_pieces(self.world)
        self.unmount_state_disk()
        subprocess.run(["umount", "-l", str(self.state_dir)], capture_output=True, check=False)
        _wipe_data(endpoints, "vnc-config.issu-queue")
        shutil.rmtree(self.world.dir, ignore_errors=True)
        self.world.dir.mkdir(parents=True, exist_ok=True)
        (self.world.dir / "seeded").write_text("by make chaos\n")
        self._mount_state_disk()
        self.daemon.log.parent.mkdir(parents=True, exist_ok=True)
        self.daemon.log.unlink(missing_ok=True)
        self.world.up(progress=lambda _msg: None)
        seed(self.world, projects=2)

    def keep_logs(self, where: Path) -> None:
        """Copy what explains a failure: the journal, run-sync's and the daemon's logs, both
        controllers' logs (api-server and writers) and the load's own log of changes."""
        where.mkdir(parents=True, exist_ok=True)
        controllers = [self.world.controller_dir(side) / f"{name}.log" for side in ("v1", "v2")
                       for name in ("api-server", "control", "analytics-api",
                                    "schema-transformer", "svc-monitor",
                                    "device-manager")]
        for src in (self.state_dir / "journal.db", self.state_dir / "run-sync.log",
                    self.launcher.run_dir / "chaos" / "daemon.log",
                    self.launcher.run_dir / "chaos" / "changes.jsonl", *controllers):
            with contextlib.suppress(OSError):
                shutil.copy2(src, where / f"{src.parent.name}-{src.name}")

    # ------------------------------------------------------------------ faults
    def _inject(self, kinds: list[str]) -> None:
        threads = []
        for kind in kinds:
            record = Injected(kind, round(self.elapsed(), 1), self.phase(), "injected",
                              together_with=",".join(k for k in kinds if k != kind))
            self.faults.append(record)
            thread = threading.Thread(target=self._one, args=(record,), daemon=True,
                                      name=f"fault-{kind}")
            thread.start()
            threads.append(thread)
        self._fault_threads += threads

    def _one(self, record: Injected) -> None:
        rng = random.Random(self.rng.random())
        began = time.monotonic()
        try:
            try:
                record.note = BY_KIND[record.kind].inject(self, rng)
            except Skip:
                if record.kind not in RUN_SYNC_FAULTS or not self._wait_for_run_sync(record, rng):
                    raise
                began = time.monotonic()
                record.note = BY_KIND[record.kind].inject(self, rng)
        except Skip as why:
            record.outcome, record.note = "skipped", str(why)
            return
        except Exception as exc:
            record.outcome, record.note = "error", f"{type(exc).__name__}: {exc}"[:300]
            return
        ended = time.monotonic()
        record.duration_s = round(ended - began, 1)
        record.recovery_s = self._recovery(ended)

    def _wait_for_run_sync(self, record: Injected, rng: random.Random) -> bool:
        """A fault on run-sync drawn while it does not run: before its phase, wait for it and
        land at a random moment of its hold; while it is being restarted, wait up to 60 s.
        False when finalize has begun (run-sync's end is the procedure's, not a fault's)."""
        if not self.run_sync_started.is_set():
            while not self.run_sync_started.wait(0.5):
                if self._finished.is_set() or self.finalizing.is_set():
                    return False
            delay = rng.uniform(5, max(6.0, self.run_sync_hold_s()))
            if self._finished.wait(delay) or self.finalizing.is_set():
                return False
            record.deferred_from_s, record.at_s = record.at_s, round(self.elapsed(), 1)
            record.phase = self.phase()
            return True
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._finished.wait(2.0) or self.finalizing.is_set():
                return False
            with contextlib.suppress(Skip):
                runsync_pid(self)
                return True
        return False

    def _recovery(self, since: float, timeout_s: float = 300.0) -> float | None:
        """Seconds from the fault's end until the executor runs and, while run-sync is
        wanted, run-sync reports again (None: not within the timeout, or the trial ended)."""
        wall_since = time.time() - (time.monotonic() - since)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._finished.is_set():
            if self._healthy(wall_since):
                return round(time.monotonic() - since, 1)
            time.sleep(0.5)
        return None

    def _healthy(self, since_wall: float) -> bool:
        if self.daemon.pid() is None:
            return False
        try:
            journal = Journal(self.state_dir / "journal.db", read_only=True)
        except Exception:
            return False
        try:
            info = journal.phase()
            phase = info.phase if info else "plan"
            if phase not in ("run-sync", "computes"):
                return True
            state = journal.orchestrator_state()
            if not state.runsync_pid or not Path(f"/proc/{state.runsync_pid}").exists():
                return False
            updated = max(journal.counters_updated_at("runsync") or 0.0,
                          journal.counters_updated_at("run-sync") or 0.0)
            return updated > since_wall
        except Exception:
            return False
        finally:
            journal.close()

    def record_seen(self) -> None:
        """Each injected fault's `seen`: the journal's warning/error events and the failed
        commands from its moment until 20 s after it recovered (or 60 s after it ended)."""
        try:
            journal = Journal(self.state_dir / "journal.db", read_only=True)
        except Exception:
            return
        try:
            events = [e for e in journal.events(limit=100_000) if e.level != "info"]
        finally:
            journal.close()
        for fault in self.faults:
            if fault.outcome != "injected":
                continue
            begin = fault.at_s
            end = begin + fault.duration_s + (fault.recovery_s if fault.recovery_s is not None
                                              else 40.0) + 20.0
            seen = [f"{round(e.at - self.started_wall, 1)} s {e.kind} {e.level}: "
                    f"{e.message[:200]}" for e in events
                    if begin <= e.at - self.started_wall <= end]
            seen += [f"{t['at_s']} s `issu {' '.join(t['argv'])}` exit {t['exit']}: "
                     f"{t['error'][:200]}" for t in self.driver.transcript
                     if t["exit"] != 0 and begin <= t["at_s"] <= end]
            fault.seen = seen[:12]

    def _injector(self) -> None:
        base = 0.0
        if self.opts.after_run_sync:
            while not self.run_sync_started.wait(0.5):
                if self._finished.is_set():
                    return
            base = self.elapsed()
        for at, kinds in self.schedule:
            wait = base + at - self.elapsed()
            if wait > 0 and self._finished.wait(wait):
                return
            self._inject(kinds)

    # ------------------------------------------------------------------ the run
    def run(self, endpoints: Endpoints) -> dict[str, Any]:
        result: dict[str, Any] = {"trial": self.opts.number, "seed": self.opts.seed,
                                  "computes": self.opts.computes,
                                  "schedule": [[round(a, 1), k] for a, k in self.schedule]}
        load: Load | None = None
        try:
            self.setup(endpoints)
            result["state_disk"] = ("tmpfs 256 MiB" if self.state_disk_mounted
                                    else f"not separate: {self.state_disk_reason}")
            self.daemon.start()
            changes = self.launcher.run_dir / "chaos" / "changes.jsonl"
            changes.unlink(missing_ok=True)
            load = Load(self.world.api_url("v1"), self.opts.rate, changes, self.opts.seed)
            load.start()
            self.started, self.started_wall = time.monotonic(), time.time()
            injector = threading.Thread(target=self._injector, daemon=True, name="injector")
            injector.start()
            try:
                self.driver.run()
            finally:
                self._finished.set()
                load.stop.set()
                load.join(timeout=120)
                injector.join(timeout=30)
                for thread in self._fault_threads:
                    thread.join(timeout=600)
            result["upgrade_s"] = round(self.elapsed(), 1)
            result["load"] = load.summary()
            result["old_nodes"] = self.old_nodes_note
            result["checks"] = checker.check(self.world, endpoints, changes,
                                             self.driver.intents, self.old_nodes)
            result["ok"] = all(c["ok"] for c in result["checks"].values())
        except Exception as exc:
            self._finished.set()
            result["ok"] = False
            result["error"] = f"{type(exc).__name__}: {exc}"[:2000]
            if load is not None:
                load.stop.set()
        finally:
            with contextlib.suppress(Exception):
                self.record_seen()
            result["faults"] = [vars(f) for f in self.faults]
            result["attempts"] = dict(self.driver.attempts)
            result["daemon_restarts"] = self.daemon.restarts
            result["transcript"] = self.driver.transcript
            self.daemon.close()
            if not result.get("ok"):
                kept = self.opts.out_dir / f"trial-{self.opts.number}-seed-{self.opts.seed}"
                self.keep_logs(kept)
                result["logs_kept"] = str(kept)
            with contextlib.suppress(Exception):
                _stop_pieces(self.world)
            self.unmount_state_disk()
        return result
